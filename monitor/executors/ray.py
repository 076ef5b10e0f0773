"""`executor: {type: ray}`: checks and retrains as Ray tasks; the daemon schedules and records.

What travels, and how:
- a model's settings go to the object store once (`_Sealed`: its repr names the model only, so an
  error or the dashboard that prints an argument shows no URL); a retrain's settings go without
  the state store's URL, since only the daemon writes the state store;
- each champion version's prepared reference and signals go to the object store once, and each
  worker keeps the last ones it read, so a check ships only its window spec and gets back its result;
- nothing goes through `runtime_env` (its environment variables are shown by the dashboard and
  the state API), and workers log through driftd's masking formatter into Ray's worker logs,
  which are not forwarded to the daemon (`log_to_driver=False`).

A failure of Ray itself (no cluster, a lost worker, a check waiting past `check_timeout`) raises
ExecutorError: the daemon records a failed check, and the next tick tries again (reconnecting).
Ray is imported only here, and only when the first check is submitted.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor.config import Config, ModelConfig, RayExecutorConfig
from monitor.executors.base import CheckJob, Executor, ExecutorError, RetrainWork
from monitor.redact import mask, url_secrets

if TYPE_CHECKING:
    from monitor.attribution import Attribution
    from monitor.check import Checked, WindowSpec
    from monitor.isolation import Limits

log = logging.getLogger("driftd.executor")

WITHHELD = "withheld://the-daemon-alone-writes-the-state-store"  # what a retrain on Ray sees as state_url
RETRAIN_GRACE = timedelta(minutes=2)  # past retrain.timeout: the child's own timeout fires first, in the worker


@dataclass(frozen=True)
class _Sealed:
    """Settings on their way to a worker: whatever prints it shows the model's name, not its URLs."""

    model: ModelConfig
    config: Config | None = None  # only for a retrain, state_url withheld

    def __repr__(self) -> str:
        return f"<driftd settings of model {self.model.name!r}>"


@dataclass(frozen=True)
class _Shared:
    """One champion version's prepared reference and signals, put in the object store once."""

    prepared: Any  # monitor.drift.PreparedReference
    signals: Any  # monitor.estimates.Signals

    def __repr__(self) -> str:
        return f"<driftd reference {self.prepared.version}>"


@dataclass(frozen=True)
class _Drifted:
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
class _Done:
    checked: Any  # monitor.check.Checked, snapshot removed
    drifted: _Drifted | None
    placement: Placement
    seconds: float  # the task's own time, from start of the function to its return


class RayExecutor(Executor):
    config_model = RayExecutorConfig
    options: RayExecutorConfig

    def __init__(self, options: RayExecutorConfig, config: Config | None = None) -> None:
        super().__init__(options, config)
        self._lock = threading.Lock()
        self._ray: Any = None  # the ray module, once connected
        self._tasks: tuple[Any, Any] | None = None  # the remote check and retrain functions
        self._sealed: dict[str, Any] = {}  # model -> ObjectRef of its _Sealed settings
        self._shared: dict[str, tuple[Any, Any]] = {}  # model -> (the Loaded it was put for, its ObjectRef)
        self._retrain_ref: Any = None
        self._secrets = tuple(s for url in ((config.state_url, config.mlflow.tracking_uri) if config else ()) for s in url_secrets(url))
        # Seconds a check spent in Ray beyond its own computation (submit, transfer, scheduling), latest checks.
        self.overheads: deque[float] = deque(maxlen=10_000)

    # --- connection -------------------------------------------------------------------------

    def _connect(self) -> Any:
        with self._lock:
            if self._ray is not None:
                return self._ray
            import ray

            try:
                # The daemon's own log stays its own: workers' lines stay in Ray's (masked) worker logs.
                ray.init(address=self.options.address, namespace=self.options.namespace, log_to_driver=False,
                         logging_level=logging.WARNING, configure_logging=False, ignore_reinit_error=True)
            except Exception as exc:  # ConnectionError, RuntimeError, ValueError...: all say "no cluster here"
                raise self._error("cannot connect", exc) from None
            self._ray = ray
            self._tasks = (ray.remote(max_retries=0)(_check_task), ray.remote(max_retries=0)(_retrain_task))
            log.info("connected to Ray at %s (namespace %s)", self.options.address, self.options.namespace)
            return ray

    def _disconnect(self) -> None:
        """Forget the connection and everything put through it; the next task reconnects."""
        with self._lock:
            ray, self._ray, self._tasks = self._ray, None, None
            self._sealed.clear()
            self._shared.clear()
        if ray is not None:
            try:
                ray.shutdown()
            except Exception as exc:  # a cluster already gone can make shutdown complain; nothing is left to release
                log.debug("ray.shutdown after a failure: %s", exc)

    def _error(self, what: str, exc: BaseException) -> ExecutorError:
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        return ExecutorError(mask(f"Ray executor ({self.options.address}) {what}: {type(exc).__name__}: {first}; "
                                  "the window is checked again on the next tick", self._secrets))

    def _refs(self, ray: Any, job: CheckJob) -> tuple[Any, Any]:
        name = job.model.name
        with self._lock:
            sealed = self._sealed.get(name)
            shared = self._shared.get(name)
        if sealed is None:
            sealed = ray.put(_Sealed(job.model))
        if shared is None or shared[0] is not job.loaded:  # once per champion version (References keeps one Loaded per version)
            shared = (job.loaded, ray.put(_Shared(job.loaded.prepared, job.loaded.signals)))
            log.info("reference %s of %s put in Ray's object store", job.loaded.prepared.version, name)
        with self._lock:
            self._sealed[name], self._shared[name] = sealed, shared
        return sealed, shared[1]

    # --- checks -------------------------------------------------------------------------------

    def check(self, job: CheckJob) -> Checked:
        ray = self._connect()
        began = time.perf_counter()
        try:
            sealed, shared = self._refs(ray, job)
            remote = self._remote(0)
            resources = self.options.resources(job.model.name, "check")
            # The refs go inside a list, so Ray passes them unresolved and a worker reuses what it already read.
            attribution = replace(job.attribution, score_of=None) if job.attribution else None  # scores are asked here
            ref = remote.options(name=f"driftd-check:{job.model.name}", num_cpus=resources.num_cpus,
                                 memory=int(resources.memory) if resources.memory else None).remote(
                [sealed, shared], job.spec, job.now, attribution, logging.getLogger().getEffectiveLevel())
        except ExecutorError:
            raise
        except Exception as exc:
            self._disconnect()
            raise self._error("could not submit the check", exc) from None
        done = self._get(ray, ref, self.options.check_timeout.total_seconds(), "check")
        self.overheads.append(max(0.0, time.perf_counter() - began - done.seconds))
        return self._finish(job, done)

    def _get(self, ray: Any, ref: Any, timeout: float, what: str) -> Any:
        from ray import exceptions

        try:
            return ray.get(ref, timeout=timeout)
        except exceptions.GetTimeoutError:
            _cancel(ray, ref, force=True)
            raise ExecutorError(f"the {what} did not finish on Ray within executor.check_timeout "
                                f"({timeout:g} s): no free CPUs for its num_cpus/memory request, or a lost worker; "
                                "it is tried again on the next tick") from None
        except exceptions.RayTaskError as exc:  # our code raised in the worker: a bug, said as such
            cause = exc.cause if exc.cause is not None else exc
            raise self._error(f"{what} raised in its worker", cause) from None
        except Exception as exc:  # the cluster, the node or the worker is gone
            self._disconnect()
            raise self._error(f"lost the {what}", exc) from None

    def _remote(self, which: int) -> Any:
        with self._lock:
            if self._tasks is None:
                raise ExecutorError(f"Ray executor ({self.options.address}) was disconnected; tried again on the next tick")
            return self._tasks[which]

    @staticmethod
    def _finish(job: CheckJob, done: _Done) -> Checked:
        from monitor.drift import DeferredSnapshot

        checked = done.checked
        result = replace(checked.result, details={**checked.result.details, "executor": done.placement.as_details()})
        if job.attribution is not None and job.attribution.score_of is not None and result.quality is not None:
            score_of = job.attribution.score_of  # asked by the daemon, which holds the registry client and its cache
            others = tuple(replace(o, validation_score=score_of(o.version)) for o in result.quality.others)
            result = replace(result, quality=replace(result.quality, others=others))
        snapshot = DeferredSnapshot(done.drifted.current, job.loaded.prepared, done.drifted.plan) if done.drifted else None
        return replace(checked, result=result, snapshot=snapshot)

    # --- retrains -----------------------------------------------------------------------------

    def retrain(self, work: RetrainWork) -> Any:
        from monitor.isolation import RetrainProcessFailed

        ray = self._connect()
        resources = self.options.resources(work.model.name, "retrain")
        config = work.config.model_copy(update={"state_url": WITHHELD})
        report = work.trigger.drift_report
        data = Path(report).read_bytes() if report is not None and Path(report).exists() else None
        try:
            ref = self._remote(1).options(name=f"driftd-retrain:{work.model.name}", num_cpus=resources.num_cpus,
                                          memory=int(resources.memory) if resources.memory else None).remote(
                ray.put(_Sealed(work.model, config)), work.target, work.limits, replace(work.trigger, drift_report=None), data,
                work.now, logging.getLogger().getEffectiveLevel())
        except ExecutorError:
            raise
        except Exception as exc:
            self._disconnect()
            raise self._error("could not submit the retrain", exc) from None
        self._retrain_ref = ref
        try:
            done = self._get_retrain(ray, ref, (work.limits.timeout + RETRAIN_GRACE).total_seconds())
        finally:
            self._retrain_ref = None
        if isinstance(done, str):
            raise RetrainProcessFailed(done)
        outcome, placement = done
        log.info("retrain of %s ran on Ray node %s (pid %d on %s)", work.model.name, placement.node_id, placement.pid, placement.host)
        return outcome

    def _get_retrain(self, ray: Any, ref: Any, timeout: float) -> Any:
        from ray import exceptions

        from monitor.isolation import RetrainProcessFailed

        try:
            return ray.get(ref, timeout=timeout)
        except exceptions.GetTimeoutError:
            _cancel(ray, ref, force=True)
            return f"retrain did not finish on Ray within retrain.timeout + {RETRAIN_GRACE}; its task was cancelled"
        except exceptions.TaskCancelledError:
            return "retrain was stopped: the daemon is shutting down"
        except exceptions.RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, RetrainProcessFailed):  # crashed, hung or raised in its process, on the worker
                return mask(str(cause), self._secrets)
            raise self._error("retrain task raised in its worker", cause or exc) from None
        except Exception as exc:
            self._disconnect()
            raise self._error("lost the retrain", exc) from None

    def stop_retrain(self) -> None:
        ref, ray = self._retrain_ref, self._ray
        if ref is not None and ray is not None:
            _cancel(ray, ref, force=False)  # KeyboardInterrupt in the task: its IsolatedRun kills the child's group

    def close(self) -> None:
        if self._ray is not None:
            self._disconnect()


def _cancel(ray: Any, ref: Any, *, force: bool) -> None:
    try:
        ray.cancel(ref, force=force)
    except Exception as exc:  # already finished, or the cluster is gone
        log.debug("could not cancel a Ray task: %s", exc)


# --- in the worker ----------------------------------------------------------------------------

_WORKER_LOCK = threading.Lock()
_READ: OrderedDict[str, Any] = OrderedDict()  # ObjectRef hex -> object, the latest few this worker read
_INPUTS: dict[str, Any] = {}  # settings ObjectRef hex -> the model's open sources (SQL pools reused across checks)
_KEEP = 32
_logging_ready = False


def _worker_logging(level: int) -> None:
    global _logging_ready
    if not _logging_ready:
        from monitor.logs import setup_logging

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


def _check_task(refs: list[Any], spec: WindowSpec, now: datetime, attribution: Attribution | None, level: int) -> _Done:
    """One check, as `monitor.executors.local` runs it, on a Ray worker."""
    from monitor.check import Checked, run_check
    from monitor.cycle import failed, open_inputs
    from monitor.drift import DeferredSnapshot
    from monitor.logs import log_context
    from monitor.sources.base import SourceError

    began = time.perf_counter()
    _worker_logging(level)
    sealed: _Sealed = _read(refs[0])
    shared: _Shared = _read(refs[1])
    model = sealed.model
    with log_context(model=model.name):
        inputs = _INPUTS.get(refs[0].hex())
        if inputs is None:
            try:
                inputs = _INPUTS[refs[0].hex()] = open_inputs(model)
            except SourceError as exc:
                result = replace(failed(model, str(exc), now), details={"source_error": exc.kind})
                return _Done(Checked(result), None, _placement(), time.perf_counter() - began)
        checked = run_check(inputs, shared.prepared, spec, now=now, attribution=attribution, signals=shared.signals)
    snapshot = checked.snapshot
    drifted = None
    if checked.result.dataset_drifted and isinstance(snapshot, DeferredSnapshot):  # the report of a drifted window may be rendered
        drifted = _Drifted(snapshot._current, snapshot._plan)
    return _Done(replace(checked, snapshot=None), drifted, _placement(), time.perf_counter() - began)


def _retrain_task(sealed: _Sealed, target: str, limits: Limits, trigger: Any, report: bytes | None, now: datetime,
                  level: int) -> tuple[Any, Placement]:
    """One retrain on a Ray worker, in the same isolated child process (timeout, memory limit) as locally."""
    from monitor.isolation import IsolatedRun
    from monitor.logs import log_context

    _worker_logging(level)
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
    return outcome, _placement()
