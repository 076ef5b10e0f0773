"""`executor: {type: local}`: checks on the daemon's worker threads, retrains in an isolated child process."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from monitor.core.config import Config, LocalExecutorConfig
from monitor.service.executors.base import CheckJob, Executor, RetrainWork

if TYPE_CHECKING:
    from monitor.check.run import Checked
    from monitor.service.isolation import IsolatedRun


class LocalExecutor(Executor):
    config_model = LocalExecutorConfig

    def __init__(self, options: LocalExecutorConfig | None = None, config: Config | None = None) -> None:
        super().__init__(options or LocalExecutorConfig(type="local"), config)
        self._running: IsolatedRun | None = None

    def check(self, job: CheckJob) -> Checked:
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
