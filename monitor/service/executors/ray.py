"""`executor: {type: ray}`: checks and retrains as Ray tasks; the daemon schedules and records.

The daemon talks to Ray through a driver child process (monitor.service.executors.ray_driver says why).
What travels, and how:
- a model's settings go to the object store once (`Sealed`: its repr names the model only, so an
  error or the dashboard printing an argument shows no URL); a retrain's settings go without the
  state store's URL (only the daemon writes the state store), and the driver process gets none;
- each champion version's prepared reference and signals go to the object store once, and each
  worker keeps the last ones it read: a check ships its window spec and gets back its result;
- nothing goes through `runtime_env` (the dashboard and state API show its environment variables);
  workers log through driftd's masking formatter into Ray's worker logs, not forwarded to the daemon.

A failure of Ray itself (no cluster, a lost node or worker, the driver process ending, a check
waiting past `check_timeout`) raises ExecutorError: the daemon records a failed check and the next
tick tries again, with a new driver process if the old one ended.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor.core.config import Config, RayExecutorConfig
from monitor.core.redact import mask, url_secrets
from monitor.service.executors.base import CheckJob, Executor, ExecutorError, RetrainWork
from monitor.service.executors.ray_driver import CANCELLED, RETRAIN, Done, Sealed, Shared, Submit, driver_main

if TYPE_CHECKING:
    from monitor.check.run import Checked

log = logging.getLogger("driftd.executor")

WITHHELD = "withheld://the-daemon-alone-writes-the-state-store"  # what a retrain on Ray sees as state_url
RETRAIN_GRACE = timedelta(minutes=2)  # past retrain.timeout: the child's own timeout fires first, in the worker
RECONNECT_AFTER = 5.0  # seconds a failed connection is not retried (the other workers' checks fail fast meanwhile)
PUT_TIMEOUT = 120.0
PING_EVERY = 5.0  # seconds a task may go unanswered before the cluster is asked whether it is still there
PING_TIMEOUT = 10.0


class _Link:
    """The daemon's end of one driver process: requests out, answers matched back by id."""

    def __init__(self, options: RayExecutorConfig, level: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(target=driver_main, name="driftd-ray-driver", daemon=True,
                                        args=(child, options.address, options.namespace, level))
        self._process.start()
        child.close()
        self._pending: dict[int, Future[tuple[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self.alive = True
        self.objects: set[str] = set()  # keys put through this driver
        try:
            timeout = options.connect_timeout.total_seconds()
            if not self._connection.poll(timeout):
                raise ExecutorError(f"no cluster joined within executor.connect_timeout ({timeout:g} s): is the address right and the head up?")
            _, status, value = self._connection.recv()
        except (EOFError, OSError):
            self.close()
            raise ExecutorError(f"the Ray driver process ended while connecting (exit code {self._process.exitcode})") from None
        except ExecutorError:
            self.close()
            raise
        if status != "ok":
            self.close()
            raise ExecutorError(str(value[1]))
        self.node_id = value
        threading.Thread(target=self._read, name="driftd-ray-link", daemon=True).start()

    def request(self, kind: str, *payload: Any) -> tuple[int, Future[tuple[str, Any]]]:
        request_id, future = next(self._ids), Future[tuple[str, Any]]()
        with self._lock:
            if not self.alive:
                raise ExecutorError("the Ray driver process has ended")
            self._pending[request_id] = future
        self.tell(request_id, kind, *payload)
        return request_id, future

    def tell(self, request_id: int, kind: str, *payload: Any) -> None:
        try:
            with self._send_lock:
                self._connection.send((request_id, kind, *payload))
        except (OSError, ValueError) as exc:  # the pipe is closed: the driver is gone
            self._ended(f"cannot reach the Ray driver process: {exc}")
            raise ExecutorError("the Ray driver process has ended") from None

    def _read(self) -> None:
        while True:
            try:
                request_id, status, value = self._connection.recv()
            except (EOFError, OSError, TypeError):  # TypeError: close() closed the connection under this recv
                self._process.join(1)
                self._ended(f"the Ray driver process ended (exit code {self._process.exitcode}; lost the cluster?)")
                return
            with self._lock:
                future = self._pending.pop(request_id, None)
            if future is not None:
                future.set_result((status, value))

    def _ended(self, why: str) -> None:
        with self._lock:
            self.alive, pending, self._pending = False, self._pending, {}
        for future in pending.values():
            future.set_exception(ExecutorError(why))

    def close(self) -> None:
        if self._process.exitcode is not None and self._connection.closed:
            return
        self._connection.close()  # the driver's recv ends and it exits at once (os._exit); SIGTERM's 10 s budget holds
        self._process.join(2)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        self._ended("the Ray executor was closed")


class RayExecutor(Executor):
    config_model = RayExecutorConfig
    options: RayExecutorConfig

    def __init__(self, options: RayExecutorConfig, config: Config | None = None) -> None:
        super().__init__(options, config)
        self._lock = threading.Lock()
        self._link: _Link | None = None
        self._failed_at = 0.0
        self._failure: ExecutorError | None = None
        self._references: dict[str, tuple[object, str]] = {}  # model -> (the Loaded last put, its key)
        self._retrain: tuple[_Link, int] | None = None
        self._closed = False
        self._secrets = tuple(s for url in ((config.state_url, config.mlflow.tracking_uri) if config else ()) for s in url_secrets(url))
        # (model, seconds) a check spent in Ray beyond its own computation (pipe, transfers, scheduling), latest checks.
        self.overheads: deque[tuple[str, float]] = deque(maxlen=10_000)

    def _connected(self) -> _Link:
        with self._lock:
            if self._closed:
                raise ExecutorError("the Ray executor is closed: the daemon is stopping")
            if self._link is not None and self._link.alive:
                return self._link
            if self._failure is not None and time.monotonic() - self._failed_at < RECONNECT_AFTER:
                raise self._failure
            try:
                self._link = _Link(self.options, logging.getLogger().getEffectiveLevel())
            except ExecutorError as exc:
                self._failed_at, self._failure = time.monotonic(), self._error("cannot connect", str(exc))
                raise self._failure from None
            self._failure = None
            self._references.clear()
            log.info("connected to Ray at %s (driver on node %s)", self.options.address, self._link.node_id)
            return self._link

    def _error(self, what: str, message: str) -> ExecutorError:
        return ExecutorError(mask(f"Ray executor ({self.options.address}) {what}: {message}; the window is checked "
                                  "again on the next tick", self._secrets))

    def _put(self, link: _Link, key: str, make: Callable[[], Any]) -> str:
        if key not in link.objects:
            _, future = link.request("put", key, make())
            status, value = _result(future, PUT_TIMEOUT, "putting an object in Ray's object store")
            if status != "ok":
                raise self._error("could not put an object in the object store", str(value[1]))
            link.objects.add(key)
        return key

    def _reference(self, link: _Link, job: CheckJob) -> str:
        """The key of the champion version's reference, put once per version (References keeps one Loaded per version)."""
        name = job.model.name
        with self._lock:
            known = self._references.get(name)
        if known is not None and known[0] is job.loaded and known[1] in link.objects:
            return known[1]
        key = self._put(link, f"reference:{name}:{job.loaded.prepared.version}:{id(job.loaded)}",
                        lambda: Shared(job.loaded.prepared, job.loaded.signals))
        with self._lock:
            self._references[name] = (job.loaded, key)
        if known is not None and known[1] != key:
            link.tell(0, "forget", known[1])
        log.info("reference %s of %s put in Ray's object store", job.loaded.prepared.version, name)
        return key

    # --- checks -------------------------------------------------------------------------------

    def check(self, job: CheckJob) -> Checked:
        began = time.perf_counter()
        link = self._connected()
        settings = self._put(link, f"settings:{job.model.name}", lambda: Sealed(job.model))
        reference = self._reference(link, job)
        resources = self.options.resources(job.model.name, "check")
        attribution = replace(job.attribution, score_of=None) if job.attribution else None  # scores are asked here, after
        request_id, future = link.request("submit", Submit(
            "check", f"driftd-check:{job.model.name}", resources.num_cpus, int(resources.memory) if resources.memory else None,
            (settings, reference), (job.spec, job.now, attribution, logging.getLogger().getEffectiveLevel())))
        try:
            status, value = self._wait(link, request_id, future, self.options.check_timeout.total_seconds(), "the check")
        except ExecutorError as exc:
            raise self._error("lost the check", str(exc)) from None
        if status != "ok":
            raise self._error(f"check failed ({value[0]})", value[1])
        done: Done = value
        self.overheads.append((job.model.name, max(0.0, time.perf_counter() - began - done.seconds)))
        return _finish(job, done)

    def _wait(self, link: _Link, request_id: int, future: Future[tuple[str, Any]], timeout: float, what: str) -> tuple[str, Any]:
        """The task's answer. Every PING_EVERY seconds without one, ask the cluster whether it is still there:
        a lost cluster is noticed within PING_EVERY + PING_TIMEOUT, not after `timeout` (Ray itself ends a
        driver only 60 s after losing the GCS). Past `timeout` the task is cancelled."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return future.result(timeout=min(PING_EVERY, max(0.0, deadline - time.monotonic())))
            except FutureTimeout:
                pass
            if time.monotonic() >= deadline:
                link.tell(0, "cancel", request_id, True)
                raise ExecutorError(f"{what} did not finish within {timeout:g} s (no free CPUs for its num_cpus/memory "
                                    "request, or a lost worker)")
            if not self._answers(link):
                raise ExecutorError("the cluster does not answer (its head is gone?)")

    def _answers(self, link: _Link) -> bool:
        """Whether the cluster answers a GCS call; if not, this driver is ended, so the next task connects afresh."""
        try:
            _, future = link.request("ping")
            if _result(future, PING_TIMEOUT, "asking the cluster")[0] == "ok":
                return True
        except ExecutorError:
            pass
        log.warning("Ray cluster at %s does not answer; reconnecting on the next task", self.options.address)
        with self._lock:
            if self._link is link:
                self._link = None
        link.close()
        return False

    # --- retrains -----------------------------------------------------------------------------

    def retrain(self, work: RetrainWork) -> Any:
        from monitor.service.isolation import RetrainProcessFailed

        link = self._connected()
        resources = self.options.resources(work.model.name, "retrain")
        config = work.config.model_copy(update={"state_url": WITHHELD})
        key = self._put(link, f"retrain:{work.model.name}:{id(work)}", lambda: Sealed(work.model, config))
        report = work.trigger.drift_report
        data = Path(report).read_bytes() if report is not None and Path(report).exists() else None
        request_id, future = link.request("submit", Submit(
            "retrain", f"driftd-retrain:{work.model.name}", resources.num_cpus, int(resources.memory) if resources.memory else None,
            (key,), (work.target, work.limits, replace(work.trigger, drift_report=None), data, work.now,
                     logging.getLogger().getEffectiveLevel())))
        self._retrain = (link, request_id)
        try:
            status, value = self._wait(link, request_id, future, (work.limits.timeout + RETRAIN_GRACE).total_seconds(), "the retrain")
        except ExecutorError as exc:
            raise RetrainProcessFailed(mask(f"retrain on Ray: {exc}", self._secrets)) from None
        finally:
            self._retrain = None
            if link.alive:
                link.tell(0, "forget", key)
        if status != "ok":
            kind, message = value
            if kind == RETRAIN:  # crashed, hung or raised in its process on the worker
                raise RetrainProcessFailed(mask(message, self._secrets))
            if kind == CANCELLED:
                raise RetrainProcessFailed("retrain was stopped: the daemon is shutting down")
            raise self._error(f"retrain failed ({kind})", message)
        done: Done = value
        log.info("retrain of %s ran on Ray node %s (pid %d on %s) in %.1f s", work.model.name, done.placement.node_id,
                 done.placement.pid, done.placement.host, done.seconds)
        return done.value

    def stop_retrain(self) -> None:
        running = self._retrain
        if running is not None and running[0].alive:
            try:
                running[0].tell(0, "cancel", running[1], False)  # KeyboardInterrupt in the task: its IsolatedRun kills the child
            except ExecutorError:
                pass

    def close(self) -> None:
        with self._lock:
            self._closed, link, self._link = True, self._link, None
        if link is not None:
            link.close()


def _result(future: Future[tuple[str, Any]], timeout: float, what: str) -> tuple[str, Any]:
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        raise ExecutorError(f"{what} did not finish within {timeout:g} s (no free CPUs for its num_cpus/memory "
                            "request, or a lost worker)") from None


def _finish(job: CheckJob, done: Done) -> Checked:
    """The worker's result as the local executor would have returned it, plus where it ran."""
    from monitor.check.drift import DeferredSnapshot

    checked = done.value
    result = replace(checked.result, details={**checked.result.details, "executor": done.placement.as_details()})
    if job.attribution is not None and job.attribution.score_of is not None and result.quality is not None:
        score_of = job.attribution.score_of  # asked by the daemon, which holds the registry client and its cache
        others = tuple(replace(o, validation_score=score_of(o.version)) for o in result.quality.others)
        result = replace(result, quality=replace(result.quality, others=others))
    snapshot = DeferredSnapshot(done.drifted.current, job.loaded.prepared, done.drifted.plan) if done.drifted else None
    return replace(checked, result=result, snapshot=snapshot)
