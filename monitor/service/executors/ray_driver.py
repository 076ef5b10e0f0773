"""The Ray side of `executor: ray`: the driver process the daemon talks to, and the tasks it submits.

The daemon never imports Ray itself. A Ray driver terminates its whole process when it loses the
cluster's GCS for 60 s ("GCS may have been killed ... The program will terminate", Ray 2.60):
inside the daemon that would be a crash. So the driver is a child process ("spawn": no copy of the
daemon's threads, locks or connections; it gets no database URL), fed through one pipe:

    daemon -> driver  (id, "put", key, object)          keep an object in Ray's object store
                      (id, "check" | "retrain", spec)   submit a task
                      (id, "cancel", target id, force)
    driver -> daemon  (id, "ok", value) | (id, "failed", (kind, message))

If the driver dies, the daemon fails what was in flight and starts a new one on the next submit.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitor.check.attribution import Attribution
    from monitor.check.run import WindowSpec
    from monitor.core.config import Config, ModelConfig
    from monitor.service.isolation import Limits

log = logging.getLogger("driftd.executor")

# Failure kinds the driver reports: the task's own code raised / the retrain's process failed /
# cancelled / Ray itself (cluster, node or worker lost).
TASK, RETRAIN, CANCELLED, SYSTEM = "task", "retrain", "cancelled", "system"


@dataclass(frozen=True)
class Sealed:
    """Settings on their way to a worker: whatever prints it (an error, the dashboard) shows the model's name, not its URLs."""

    model: ModelConfig
    config: Config | None = None  # only for a retrain, its state_url withheld

    def __repr__(self) -> str:
        return f"<driftd settings of model {self.model.name!r}>"


@dataclass(frozen=True)
class Shared:
    """One champion version's prepared reference and signals, put in the object store once."""

    prepared: Any  # monitor.check.drift.PreparedReference
    signals: Any  # monitor.check.estimates.Signals

    def __repr__(self) -> str:
        return f"<driftd reference {self.prepared.version}>"


@dataclass(frozen=True)
class Drifted:
    """What the daemon needs to render a drifted window's HTML report with its own reference."""

    current: Any  # the checked sample
    plan: Any


@dataclass(frozen=True)
class Placement:
    """Where a task ran: recorded on the check (details.executor) and logged for a retrain."""

    node_id: str
    pid: int
    host: str

    def as_details(self) -> dict[str, Any]:
        return {"type": "ray", "node_id": self.node_id, "pid": self.pid, "host": self.host}


@dataclass(frozen=True)
class Done:
    value: Any  # monitor.check.run.Checked (snapshot removed) or the retrain's outcome
    placement: Placement
    seconds: float  # the task's own time in its worker
    drifted: Drifted | None = None


@dataclass(frozen=True)
class Submit:
    """A task to submit: `refs` name objects already put, passed unresolved so workers can keep them."""

    task: str  # "check" | "retrain"
    name: str  # the task's name in Ray: driftd-check:<model>
    num_cpus: float
    memory: int | None
    refs: tuple[str, ...]
    args: tuple[Any, ...]


# --- the driver process ---------------------------------------------------------------------


def driver_main(connection: Connection, address: str, namespace: str, level: int) -> None:
    """Connect to the cluster, then serve the daemon's requests until the pipe closes."""
    from monitor.core.logs import setup_logging

    setup_logging(logging.getLevelName(level))  # its own lines (Ray's included) through the masker, on the daemon's stderr
    send_lock = threading.Lock()

    def send(message: tuple[Any, ...]) -> None:
        with send_lock:
            connection.send(message)

    try:
        import ray

        ray.init(address=address, namespace=namespace, log_to_driver=False, logging_level=logging.WARNING,
                 configure_logging=False)
    except BaseException as exc:  # noqa: BLE001 - whatever it was, the daemon records it
        send((0, "failed", (SYSTEM, f"cannot connect: {type(exc).__name__}: {_first_line(exc)}")))
        return
    send((0, "ok", ray.get_runtime_context().get_node_id()))
    Driver(ray, connection, send).serve()
    # The daemon closed the pipe: leave at once (the GCS frees what this driver held); a normal
    # exit would wait on Ray's own threads.
    logging.shutdown()
    os._exit(0)


class Driver:
    def __init__(self, ray: Any, connection: Connection, send: Any) -> None:
        self._ray, self._connection, self._send = ray, connection, send
        self._objects: dict[str, Any] = {}  # key -> ObjectRef
        self._by_id: dict[int, Any] = {}  # request id -> ObjectRef of its running task
        self._lock = threading.Lock()
        self._tasks = {"check": ray.remote(max_retries=0)(check_task), "retrain": ray.remote(max_retries=0)(retrain_task)}

    def serve(self) -> None:
        while True:
            try:
                request_id, kind, *payload = self._connection.recv()
            except (EOFError, OSError):  # the daemon is gone or closed us
                return
            try:
                self._handle(request_id, kind, payload)
            except Exception as exc:  # one bad request fails alone
                self._send((request_id, "failed", (SYSTEM, f"{type(exc).__name__}: {_first_line(exc)}")))

    def _handle(self, request_id: int, kind: str, payload: list[Any]) -> None:
        if kind == "put":
            key, value = payload
            self._objects[key] = self._ray.put(value)
            self._send((request_id, "ok", None))
        elif kind == "forget":
            self._objects.pop(payload[0], None)
        elif kind == "submit":
            submit: Submit = payload[0]
            refs = [self._objects[key] for key in submit.refs]
            options: dict[str, Any] = {"name": submit.name, "num_cpus": submit.num_cpus}
            if submit.memory:
                options["memory"] = submit.memory
            ref = self._tasks[submit.task].options(**options).remote(refs, *submit.args)
            with self._lock:
                self._by_id[request_id] = ref
            # One waiting thread per task in flight (at most the daemon's workers + one retrain): each
            # answer goes back the moment its task ends, with no polling delay.
            threading.Thread(target=self._answer, args=(request_id, ref), name="driftd-ray-get", daemon=True).start()
        elif kind == "ping":  # is the cluster still there? (a GCS call; it blocks while the GCS is gone)
            threading.Thread(target=lambda: self._send((request_id, "ok", self._ray.cluster_resources())), daemon=True).start()
        elif kind == "cancel":
            target, force = payload
            with self._lock:
                ref = self._by_id.get(target)
            if ref is not None:
                try:
                    self._ray.cancel(ref, force=force)
                except Exception as exc:  # finished meanwhile
                    log.debug("cancel: %s", exc)
        else:
            raise ValueError(f"unknown request {kind!r}")

    def _answer(self, request_id: int, ref: Any) -> None:
        outcome = self._outcome(ref)
        with self._lock:
            self._by_id.pop(request_id, None)
        self._send((request_id, *outcome))

    def _outcome(self, ref: Any) -> tuple[str, Any]:
        from ray import exceptions

        from monitor.service.isolation import RetrainProcessFailed

        try:
            return "ok", self._ray.get(ref)
        except exceptions.TaskCancelledError:
            return "failed", (CANCELLED, "the task was cancelled")
        except exceptions.RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, RetrainProcessFailed):
                return "failed", (RETRAIN, str(cause))
            return "failed", (TASK, f"{type(cause).__name__}: {_first_line(cause or exc)}")
        except Exception as exc:  # worker, node or cluster lost
            return "failed", (SYSTEM, f"{type(exc).__name__}: {_first_line(exc)}")


def _first_line(exc: BaseException | None) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


# --- in a Ray worker --------------------------------------------------------------------------

_WORKER_LOCK = threading.Lock()
_READ: OrderedDict[str, Any] = OrderedDict()  # ObjectRef hex -> object, the latest few this worker read
_INPUTS: dict[str, Any] = {}  # settings ObjectRef hex -> the model's open sources (SQL pools reused across checks)
_KEEP = 32
_logging_ready = False


def _worker_logging(level: int) -> None:
    global _logging_ready
    if not _logging_ready:
        from monitor.core.logs import setup_logging

        setup_logging(logging.getLevelName(level))  # driftd's masking formatter, on the worker's stderr (its Ray log file)
        _logging_ready = True


def _read(ref: Any) -> Any:
    import ray

    key = ref.hex()
    with _WORKER_LOCK:
        if key in _READ:
            _READ.move_to_end(key)
            return _READ[key]
    value = ray.get(ref)
    with _WORKER_LOCK:
        _READ[key] = value
        while len(_READ) > _KEEP:
            _READ.popitem(last=False)
    return value


def _placement() -> Placement:
    import socket

    import ray

    return Placement(ray.get_runtime_context().get_node_id(), os.getpid(), socket.gethostname())


def check_task(refs: list[Any], spec: WindowSpec, now: datetime, attribution: Attribution | None, level: int) -> Done:
    """One check, as `monitor.service.executors.local` runs it, on a Ray worker."""
    from monitor.check.drift import DeferredSnapshot
    from monitor.check.inputs import open_inputs
    from monitor.check.run import Checked, run_check
    from monitor.core.logs import log_context
    from monitor.service.cycle import failed
    from monitor.sources.base import SourceError

    began = time.perf_counter()
    _worker_logging(level)
    sealed: Sealed = _read(refs[0])
    shared: Shared = _read(refs[1])
    model = sealed.model
    with log_context(model=model.name):
        inputs = _INPUTS.get(refs[0].hex())
        if inputs is None:
            try:
                inputs = _INPUTS[refs[0].hex()] = open_inputs(model)
            except SourceError as exc:
                result = replace(failed(model, str(exc), now), details={"source_error": exc.kind})
                return Done(Checked(result), _placement(), time.perf_counter() - began)
        checked = run_check(inputs, shared.prepared, spec, now=now, attribution=attribution, signals=shared.signals)
    snapshot, drifted = checked.snapshot, None
    if checked.result.dataset_drifted and isinstance(snapshot, DeferredSnapshot):  # its report may be rendered for a retrain
        drifted = Drifted(snapshot._current, snapshot._plan)
    return Done(replace(checked, snapshot=None), _placement(), time.perf_counter() - began, drifted)


def retrain_task(refs: list[Any], target: str, limits: Limits, trigger: Any, report: bytes | None, now: datetime, level: int) -> Done:
    """One retrain on a Ray worker, in the same isolated child process (timeout, memory limit) as locally."""
    from monitor.core.logs import log_context
    from monitor.service.isolation import IsolatedRun

    began = time.perf_counter()
    _worker_logging(level)
    sealed: Sealed = _read(refs[0])
    assert sealed.config is not None
    with log_context(model=sealed.model.name), tempfile.TemporaryDirectory(prefix="driftd-retrain-") as tmp:
        if report is not None:  # the drift report, written where this worker can read it
            path = Path(tmp) / "drift-report.html"
            path.write_bytes(report)
            trigger = replace(trigger, drift_report=path)
        run = IsolatedRun(target, limits)
        try:
            outcome = run.run(sealed.config, sealed.model, trigger, now=now, progress=lambda line: log.info("retrain: %s", line))
        except KeyboardInterrupt:  # ray.cancel: the child goes with this task
            run.kill()
            raise
        except Exception:
            log.error("retrain failed on its worker:\n%s", traceback.format_exc())
            raise
    return Done(outcome, _placement(), time.perf_counter() - began)
