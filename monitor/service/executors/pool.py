"""`executor: {type: local, processes: N}`: checks computed in a pool of worker processes.

The daemon's checks on threads share one GIL: on 2 cores they use about one. A pool of worker
processes computes them on every core, while the daemon stays the scheduler and the only writer of
the state store (a worker reads its window, validates, scores drift, quality and estimates, and
returns the result; the daemon records it).

- Workers are started with "spawn" (the daemon has threads, locks and open connections: a fork
  would copy them half-held) and live as long as the pool: their imports (pandas, scipy, scikit-learn)
  are paid once per worker, and each pins BLAS to one thread as the daemon does.
- A check ships the model's settings, its window spec and the champion's prepared reference and
  signals, pickled anew each time: 2.45 MiB at 20k rows x 20 features, 1-3 ms to pickle plus as
  much to unpickle, against ~130 ms of CPU for the check itself. Keeping references instead (per
  worker, or their bytes in the daemon) would cost 2.45 MiB per model per copy: 2.45 GB per worker
  at 1,000 models, over the memory budget.
  Bootstrap null samples a worker draws for a reference come back with the result and join the
  daemon's NullCache, so the next check of that version carries them and is not calibrated again.
- A worker opens the model's sources for one check and closes them (no pool of connections per
  model per worker). Settings reach it through the pool's pipe, never its command line; what it
  logs goes through driftd's masking formatter; an error it returns is masked again here.
- A worker that dies (segfault, OOM kill) fails the checks the pool held then with a clear
  ExecutorError (the daemon records them, the windows are retried next tick) and the pool is
  rebuilt on the next check. `close` ends the workers (the daemon calls it at stop).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from monitor.core.redact import mask
from monitor.service.executors.base import CheckJob, ExecutorError

if TYPE_CHECKING:
    import numpy as np

    from monitor.check.attribution import Attribution
    from monitor.check.drift import PreparedReference
    from monitor.check.estimates import Signals
    from monitor.check.run import Checked, WindowSpec
    from monitor.core.config import ModelConfig

log = logging.getLogger("driftd.executor")


@dataclass(frozen=True)
class PoolJob:
    """One check on its way to a worker: its repr names the model only (no URL in a traceback)."""

    model: ModelConfig
    prepared: PreparedReference
    signals: Signals | None
    spec: WindowSpec
    now: datetime
    attribution: Attribution | None  # without score_of (the daemon asks the registry afterwards)

    def __repr__(self) -> str:
        return f"<driftd check of model {self.model.name!r}>"


@dataclass(frozen=True)
class PoolDone:
    checked: Checked | None  # snapshot removed (it holds the reference); None when the worker's code raised
    error: str | None
    pid: int
    seconds: float  # the check's own time in its worker
    nulls: dict[tuple[str, int], np.ndarray]  # null samples the worker drew for this reference version
    current: Any = None  # a drifted window's checked sample and plan, for the daemon's HTML report
    plan: Any = None


class CheckPool:
    """A pool of `processes` worker processes computing checks; thread-safe (the daemon's workers call `check`)."""

    def __init__(self, processes: int, secrets: tuple[str, ...] = ()) -> None:
        self.processes = processes
        self._secrets = secrets
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False

    def _current(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise ExecutorError("the check pool is closed: the daemon is stopping")
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_worker_start, initargs=(logging.getLogger().getEffectiveLevel(),))
            return self._pool

    def _rebuild(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:
                self._pool = None  # the next check starts fresh workers
        broken.shutdown(wait=False, cancel_futures=True)

    def pids(self) -> list[int]:
        """The worker processes' PIDs (those started so far)."""
        with self._lock:
            pool = self._pool
        return sorted(getattr(pool, "_processes", None) or {}) if pool is not None else []

    def check(self, job: CheckJob) -> Checked:
        prepared = job.loaded.prepared
        attribution = replace(job.attribution, score_of=None) if job.attribution else None  # a registry client stays here
        pool = self._current()
        try:
            future = pool.submit(check_in_worker, PoolJob(job.model, _for_worker(prepared), job.loaded.signals, job.spec, job.now, attribution))
            done: PoolDone = future.result()
        except BrokenProcessPool:
            self._rebuild(pool)
            raise ExecutorError("a check worker process died (killed, out of memory or crashed) while checks were "
                                "running; the pool is restarted and the window is checked again on the next tick") from None
        except RuntimeError as exc:  # submit after shutdown: the daemon is stopping
            raise ExecutorError(f"the check pool is shut down: {exc}") from None
        except Exception as exc:  # the job or its result did not pickle: the worker's own errors come back in PoolDone
            raise ExecutorError(mask(f"a check could not be passed to or from its worker process: {type(exc).__name__}: "
                                     f"{exc}", self._secrets)) from None
        if done.nulls:
            prepared.nulls.merge(done.nulls)
        if done.checked is None:
            raise ExecutorError(mask(f"the check failed in its worker process {done.pid}: {done.error}", self._secrets))
        return _finish(job, done)

    def close(self) -> None:
        """End the workers (in-flight checks are abandoned; the daemon waited for them already)."""
        with self._lock:
            self._closed, pool, self._pool = True, self._pool, None
        if pool is None:
            return
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + 5
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():  # stuck in a check: it would hold the daemon's exit
                process.kill()
                process.join(2)


def _for_worker(prepared: PreparedReference) -> PreparedReference:
    """The reference without its Evidently Dataset: an HTML report is rendered in the daemon, and
    once built the Dataset would travel with every check (`reload` is dropped by the reference's
    own pickling). The null cache is the same object."""
    return replace(prepared, evidently=None)  # type: ignore[arg-type]  # a worker never reads it


def _finish(job: CheckJob, done: PoolDone) -> Checked:
    """The worker's result as the thread path returns it, plus where it ran."""
    from monitor.check.drift import DeferredSnapshot

    assert done.checked is not None
    checked = done.checked
    result = replace(checked.result, details={**checked.result.details, "executor": {"type": "local", "pid": done.pid}})
    if job.attribution is not None and job.attribution.score_of is not None and result.quality is not None:
        score_of = job.attribution.score_of
        others = tuple(replace(o, validation_score=score_of(o.version)) for o in result.quality.others)
        result = replace(result, quality=replace(result.quality, others=others))
    snapshot = DeferredSnapshot(done.current, job.loaded.prepared, done.plan) if done.current is not None else None
    return replace(checked, result=result, snapshot=snapshot)


# --- in a worker process -----------------------------------------------------------------------


def _worker_start(level: int) -> None:
    """Once per worker: driftd's masking log formatter, one BLAS thread, the check's imports."""
    from monitor.core.logs import setup_logging
    from monitor.core.threads import pin_blas

    setup_logging(logging.getLevelName(level))
    pin_blas()
    import monitor.check.drift  # noqa: F401  (pandas, scipy: seconds, paid here, not in the first check)
    import monitor.check.run  # noqa: F401


def check_in_worker(job: PoolJob) -> PoolDone:
    """One check, as the thread path runs it: the model's sources opened for it and closed after."""
    from monitor.check.drift import DeferredSnapshot
    from monitor.check.inputs import opened_inputs
    from monitor.check.run import Checked, run_check
    from monitor.core.logs import log_context
    from monitor.service.cycle import failed
    from monitor.sources.base import SourceError

    began = time.perf_counter()
    pid = os.getpid()
    before = set(job.prepared.nulls.drawn())
    with log_context(model=job.model.name):
        try:
            with opened_inputs(job.model) as inputs:
                checked = run_check(inputs, job.prepared, job.spec, now=job.now, attribution=job.attribution, signals=job.signals)
        except SourceError as exc:
            checked = Checked(replace(failed(job.model, str(exc), job.now), details={"source_error": exc.kind}))
        except Exception as exc:  # run_check does not raise for bad data; this is a bug, reported with its origin
            log.error("check failed in worker %d:\n%s", pid, traceback.format_exc())
            return PoolDone(None, f"{type(exc).__name__}: {exc}", pid, time.perf_counter() - began, {})
    nulls = {key: sample for key, sample in job.prepared.nulls.drawn().items() if key not in before}
    snapshot, current, plan = checked.snapshot, None, None
    if checked.result.dataset_drifted and isinstance(snapshot, DeferredSnapshot):  # its report may be rendered for a retrain
        current, plan = snapshot._current, snapshot._plan
    return PoolDone(replace(checked, snapshot=None), None, pid, time.perf_counter() - began, nulls, current, plan)
