"""The retrain hand-off: runs `retrain.run_retrain` off the scheduler thread, one job at a time.

One worker for the whole daemon: retraining is CPU-bound and a 2-core machine gains nothing
from two at once; the state store already refuses a second job for the same model.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from monitor.config import Config, ModelConfig
from monitor.logs import log_context
from monitor.metrics import Metrics
from monitor.state import RetrainJob, StateStore

log = logging.getLogger("driftd.retrain")


class RetrainHandoff:
    def __init__(self, config: Config, store: StateStore, metrics: Metrics) -> None:
        self._config, self._store, self._metrics = config, store, metrics
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="driftd-retrain")
        self._futures: set[Future] = set()
        self._lock = threading.Lock()

    def submit(self, job: RetrainJob, model: ModelConfig, trigger) -> Future:
        future = self._pool.submit(self._run, job, model, trigger)
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._forget)
        return future

    def busy(self) -> bool:
        with self._lock:
            return bool(self._futures)

    def _forget(self, future: Future) -> None:
        with self._lock:
            self._futures.discard(future)

    def _run(self, job: RetrainJob, model: ModelConfig, trigger) -> None:
        from retrain import run_retrain

        with log_context(model=model.name, check_id=trigger.check_id or "-"):
            self._store.update_retrain_job(job.job_id, status="running")
            log.info("retrain %s started: %s", job.job_id, trigger.reason)
            try:
                outcome = run_retrain(self._config, model, trigger, progress=lambda line: log.info("retrain: %s", line))
            except Exception as exc:  # run_retrain reports failures itself; this is the last line of defence
                log.exception("retrain %s crashed", job.job_id)
                self._store.update_retrain_job(job.job_id, status="failed", outcome="failed", reason=f"crashed: {exc}")
                self._metrics.retrain_finished(model.name, "failed", 0.0)
                return
            status = "failed" if outcome.outcome == "failed" else "succeeded"
            self._store.update_retrain_job(job.job_id, status=status, outcome=outcome.outcome, reason=outcome.reason, run_id=outcome.run_id, version=outcome.version)
            self._metrics.retrain_finished(model.name, outcome.outcome, outcome.duration_seconds)
            if outcome.compressed_size:
                self._metrics.model_size(model.name, "original", outcome.original_size or 0)
                self._metrics.model_size(model.name, "compressed", outcome.compressed_size)
            if outcome.outcome == "promoted" and outcome.version:
                self._metrics.champion(model.name, outcome.version)
            log.info("retrain %s %s: %s", job.job_id, outcome.outcome, outcome.reason)

    def shutdown(self, wait: bool) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)
