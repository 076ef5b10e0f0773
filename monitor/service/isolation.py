"""Runs one retrain in a child process, so a crash, a hang or a hostile pickle in it cannot
take the daemon down.

The child is started with the "spawn" context: forking a daemon that runs scheduler, server and
database threads would copy their locks in whatever state they were in. The configuration goes
to the child through multiprocessing's pipe (pickled), never on its command line or in its
environment. The child reports back through one Pipe: its log records, its progress lines and
finally the outcome or the exception's message. The parent waits at most `timeout` and then kills
the child's process group by the child's PID (never by name), so trainers' own worker processes
go with it.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger("driftd.retrain")

# The production retrain; tests name their own function the same way (a module path resolved in the child).
DEFAULT_TARGET = "retrain.pipeline:run_retrain"


class RetrainProcessFailed(Exception):
    """The child ended without an outcome; the message says why and what to do."""


@dataclass(frozen=True)
class Limits:
    timeout: timedelta
    memory_limit: int | None = None  # bytes of address space (Linux), None: unlimited


class IsolatedRun:
    """One retrain child. `run` blocks until it reports an outcome, dies or exceeds the timeout;
    `kill` (from any thread) ends it early, e.g. when the daemon shuts down."""

    def __init__(self, target: str, limits: Limits) -> None:
        self._target, self._limits = target, limits
        self._process: Any = None
        self._killed = False

    def run(self, *args: Any, progress: Callable[[str], None] | None = None, **kwargs: Any) -> Any:
        context = multiprocessing.get_context("spawn")
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_child, name="driftd-retrain",
                                  args=(send, self._target, self._limits.memory_limit, logging.getLogger().getEffectiveLevel(), args, kwargs))
        self._process = process
        process.start()
        send.close()  # the child holds the only write end now: EOF means it is gone
        try:
            return self._wait(process, receive, progress)
        finally:
            receive.close()
            if process.is_alive():
                _kill(process)
            process.join()
            process.close()

    def kill(self) -> None:
        self._killed = True
        process = self._process
        if process is not None:
            try:
                if process.is_alive():
                    _kill(process)
            except ValueError:  # already closed by run(): nothing left to kill
                pass

    def _wait(self, process: Any, receive: Connection, progress: Callable[[str], None] | None) -> Any:
        timeout = self._limits.timeout.total_seconds()
        # Real elapsed time, not the daemon's clock: a simulated clock must not kill or spare a real process.
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _kill(process)
                raise RetrainProcessFailed(f"retrain exceeded retrain.timeout ({_seconds(timeout)}); the process was killed. "
                                           "Raise retrain.timeout, shorten retrain.training_window or turn off retrain.tune")
            if not receive.poll(min(remaining, 1.0)):
                continue
            try:
                kind, payload = receive.recv()
            except (EOFError, OSError):
                raise RetrainProcessFailed(self._death(process)) from None
            if kind == "log":
                level, name, message = payload
                logging.getLogger(name).log(level, "%s", message)
            elif kind == "progress":
                if progress is not None:
                    progress(payload)
            elif kind == "outcome":
                return payload
            elif kind == "error":
                raise RetrainProcessFailed(payload)

    def _death(self, process: Any) -> str:
        process.join(5)
        code = process.exitcode
        if self._killed:
            return "retrain process was stopped: the daemon is shutting down"
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            hint = " (out of memory? check retrain.memory_limit and the host's memory)" if name == "SIGKILL" else ""
            return f"retrain process died with signal {name}{hint} before reporting an outcome; see the daemon log for its last lines"
        return f"retrain process exited with code {code} before reporting an outcome; see the daemon log for its last lines"


def _kill(process: Any) -> None:
    """SIGKILL the child's process group (it made itself leader), or the child alone if it had not yet."""
    pid = process.pid
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
            return
    except (ProcessLookupError, PermissionError, AttributeError):
        pass
    process.kill()


def _seconds(seconds: float) -> str:
    return f"{seconds:g} s"


# --- the child ----------------------------------------------------------------------------


class _Sender:
    """The child's end of the pipe; a trainer's threads may log at once, and one message must not cut into another."""

    def __init__(self, connection: Connection) -> None:
        self._connection, self._lock = connection, threading.Lock()

    def send(self, message: tuple[str, Any]) -> None:
        with self._lock:
            self._connection.send(message)


class _PipeHandler(logging.Handler):
    """Sends the child's log records to the parent, which logs them through the daemon's handlers
    (and so through its masking formatter)."""

    def __init__(self, send: _Sender) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + "".join(traceback.format_exception(*record.exc_info))
            self._send.send(("log", (record.levelno, record.name, message)))
        except Exception:
            self.handleError(record)


def _child(connection: Connection, target: str, memory_limit: int | None, level: int, args: tuple, kwargs: dict) -> None:
    send = _Sender(connection)
    if hasattr(os, "setpgid"):
        os.setpgid(0, 0)  # our own group, so a kill reaches trainers' worker processes too
    root = logging.getLogger()
    root.handlers[:] = [_PipeHandler(send)]
    root.setLevel(level)
    try:
        if memory_limit is not None:
            _limit_memory(memory_limit)
        function = _resolve(target)
        outcome = function(*args, progress=lambda line: send.send(("progress", line)), **kwargs)
        send.send(("outcome", outcome))
    except MemoryError:
        send.send(("error", f"retrain ran out of memory under retrain.memory_limit ({memory_limit} bytes); "
                            "raise retrain.memory_limit or shorten retrain.training_window"))
    except BaseException as exc:  # noqa: BLE001 - whatever it was, the parent records it
        logging.getLogger("driftd.retrain").error("retrain process failed:\n%s", traceback.format_exc())
        send.send(("error", f"retrain failed in its process: {type(exc).__name__}: {exc}"))
    finally:
        connection.close()


def _limit_memory(limit: int) -> None:
    if not sys.platform.startswith("linux"):
        logging.getLogger("driftd.retrain").warning("retrain.memory_limit is only enforced on Linux; running without it")
        return
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _resolve(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")
    if not module or not name:
        raise ValueError(f"retrain target {target!r} must look like 'package.module:function'")
    return getattr(importlib.import_module(module), name)

