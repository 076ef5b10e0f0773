"""`executor: {type: local}`: checks on the daemon's worker threads (`processes: 0`) or in a pool of
worker processes (monitor.service.executors.pool), retrains in an isolated child process."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from monitor.core.config import Config, LocalExecutorConfig
from monitor.service.executors.base import CheckJob, Executor, RetrainWork

if TYPE_CHECKING:
    from monitor.check.run import Checked
    from monitor.service.executors.pool import CheckPool
    from monitor.service.isolation import IsolatedRun


class LocalExecutor(Executor):
    config_model = LocalExecutorConfig
    options: LocalExecutorConfig

    def __init__(self, options: LocalExecutorConfig | None = None, config: Config | None = None) -> None:
        super().__init__(options or LocalExecutorConfig(type="local"), config)
        self._running: IsolatedRun | None = None
        self.pool: CheckPool | None = None
        processes = self.options.processes
        if processes == "auto":
            from retrain.train import available_cores

            processes = available_cores()
        if processes:
            from monitor.core.redact import url_secrets
            from monitor.service.executors.pool import CheckPool

            urls = (config.state_url, config.mlflow.tracking_uri) if config else ()
            self.pool = CheckPool(processes, tuple(s for url in urls for s in url_secrets(url)))

    def check(self, job: CheckJob) -> Checked:
        if self.pool is not None:
            return self.pool.check(job)
        from monitor.check.run import run_check

        return run_check(job.inputs, job.loaded.prepared, job.spec, now=job.now, attribution=job.attribution, signals=job.loaded.signals)

    def retrain(self, work: RetrainWork) -> Any:
        from monitor.service.isolation import IsolatedRun

        run = self._running = IsolatedRun(work.target, work.limits)
        try:
            return run.run(work.config, work.model, work.trigger, now=work.now, progress=work.progress)
        finally:
            self._running = None

    def stop_retrain(self) -> None:
        running = self._running
        if running is not None:
            running.kill()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
