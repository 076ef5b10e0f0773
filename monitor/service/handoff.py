"""The retrain hand-off: runs `retrain.run_retrain` off the scheduler thread, one job at a time, on
the executor (monitor.service.executors): locally each in its own child process (monitor.service.isolation) bounded by
`retrain.timeout` and `retrain.memory_limit`, on Ray as a task that runs that same child.

One worker for the whole daemon: retraining is CPU-bound and a 2-core machine gains nothing
from two at once; the state store already refuses a second job for the same model.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor

from monitor.core.clock import Clock, SystemClock
from monitor.core.config import Config, ModelConfig
from monitor.core.logs import log_context
from monitor.core.records import RetrainJob
from monitor.core.redact import mask, url_secrets
from monitor.core.statuses import RetrainOutcome
from monitor.observe.metrics import Metrics
from monitor.service.executors.base import Executor, ExecutorError, RetrainWork
from monitor.service.executors.local import LocalExecutor
from monitor.service.isolation import DEFAULT_TARGET, Limits, RetrainProcessFailed
from monitor.service.jobs import run_job
from monitor.state.store import StateStore

log = logging.getLogger("driftd.retrain")


class RetrainHandoff:
    def __init__(self, config: Config, store: StateStore, metrics: Metrics, clock: Clock | None = None,
                 target: str = DEFAULT_TARGET, executor: Executor | None = None) -> None:
        """`target` names the retrain function ('module:function'), resolved where the retrain runs;
        tests name one that raises, hangs or aborts. `executor` runs it (default: a local child process)."""
        self._config, self._store, self._metrics = config, store, metrics
        self._clock = clock or SystemClock()
        self._target = target
        self._executor = executor or LocalExecutor()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="driftd-retrain")
        self._submitted: list[Future] = []

    def submit(self, job: RetrainJob, model: ModelConfig, trigger) -> Future:
        future = self._pool.submit(self._run, job, model, trigger)
        self._submitted = [f for f in self._submitted if not f.done()] + [future]
        return future

    def idle(self) -> bool:
        """No retrain queued or running (its outcome recorded and published)."""
        return all(f.done() for f in self._submitted)

    def _run(self, job: RetrainJob, model: ModelConfig, trigger) -> None:
        with log_context(model=model.name, check_id=trigger.check_id or "-"):
            try:
                log.info("retrain %s started: %s", job.job_id, trigger.reason)
                outcome = run_job(self._store, job, lambda: self._retrain(model, trigger), self._failure)
            except (RetrainProcessFailed, ExecutorError) as exc:  # crashed, hung or raised, or its executor failed: the daemon carries on
                log.error("retrain %s failed: %s", job.job_id, self._failure(exc))
                self._metrics.retrain_finished(model.name, RetrainOutcome.FAILED, None)
                return
            except Exception:  # run_retrain reports its own failures; this is the last line of defence
                log.exception("retrain %s crashed", job.job_id)
                self._metrics.retrain_finished(model.name, RetrainOutcome.FAILED, None)
                return
            finally:
                if trigger.drift_report is not None:  # logged to the run by now; the temp copy can go
                    trigger.drift_report.unlink(missing_ok=True)
            self._publish(model, outcome)
            log.info("retrain %s %s: %s", job.job_id, outcome.outcome, outcome.reason)

    def _failure(self, exc: BaseException) -> str:
        """The reason a retrain that raised is recorded with (run_job records it)."""
        return self._masked(str(exc) if isinstance(exc, (RetrainProcessFailed, ExecutorError)) else f"crashed: {exc}")

    def _retrain(self, model: ModelConfig, trigger):
        limits = Limits(timeout=model.retrain.timeout, memory_limit=model.retrain.memory_limit)
        # The daemon's clock, so a simulation's retrain trains on the simulation's recent rows.
        return self._executor.retrain(RetrainWork(self._target, limits, self._config, model, trigger, self._clock.now(),
                                                  progress=lambda line: log.info("retrain: %s", line)))

    def _masked(self, reason: str) -> str:
        # The child's message may quote a connection string; the store's and MLflow's credentials go.
        return mask(reason, [*url_secrets(self._config.state_url), *url_secrets(self._config.mlflow.tracking_uri)])

    def _publish(self, model: ModelConfig, outcome) -> None:
        self._metrics.retrain_finished(model.name, outcome.outcome, outcome.duration_seconds)
        if outcome.outcome == RetrainOutcome.PROMOTED and outcome.version:
            # Sizes describe the champion: a rejected challenger's would mislead the dashboard.
            self._metrics.champion(model.name, outcome.version)
            if outcome.compressed_size:
                self._metrics.model_size(model.name, "original", outcome.original_size or 0)
                self._metrics.model_size(model.name, "compressed", outcome.compressed_size)

    def shutdown(self, wait: bool) -> None:
        if not wait:  # a retrain must not outlive the daemon
            self._executor.stop_retrain()
        self._pool.shutdown(wait=wait, cancel_futures=True)
