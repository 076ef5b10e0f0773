"""The executor plug point: what the daemon hands an executor and what it gets back.

A check's computation (read the window -> validate -> drift -> quality -> estimates) arrives as a
`CheckJob` and returns the `Checked` that `monitor.check.run.run_check` returns; the daemon then
records it (result + watermark, one transaction) exactly as before. A retrain arrives as a
`RetrainWork` and returns the pipeline's outcome. An executor that cannot run the work at all
(its cluster is gone) raises `ExecutorError`: the daemon records a failed check and the window is
tried again on the next tick.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from monitor.core.config import Config, ExecutorConfig, ModelConfig

if TYPE_CHECKING:
    from monitor.check.attribution import Attribution
    from monitor.check.run import Checked, Inputs, WindowSpec
    from monitor.service.isolation import Limits
    from monitor.service.reference import Loaded


class ExecutorError(Exception):
    """The executor could not run the work (not: the work failed). The message is masked and says what to do."""


@dataclass(frozen=True)
class CheckJob:
    model: ModelConfig
    loaded: Loaded  # the prepared reference and the champion's signals
    spec: WindowSpec
    now: datetime
    attribution: Attribution | None
    inputs: Inputs  # the daemon's open sources; a remote executor opens its own from `model`


@dataclass(frozen=True)
class RetrainWork:
    target: str  # "module:function", resolved where the retrain runs
    limits: Limits
    config: Config
    model: ModelConfig
    trigger: Any  # retrain.Trigger
    now: datetime
    progress: Callable[[str], None]


class Executor(ABC):
    """One per daemon. `check` is called from the scheduler's worker threads (several at once);
    `retrain` from the hand-off's single thread."""

    config_model: ClassVar[type[ExecutorConfig]]

    def __init__(self, options: ExecutorConfig, config: Config | None = None) -> None:
        self.options, self.config = options, config

    @abstractmethod
    def check(self, job: CheckJob) -> Checked:
        """The check's outcome; raises ExecutorError only when the executor itself failed."""

    @abstractmethod
    def retrain(self, work: RetrainWork) -> Any:
        """The retrain's outcome; raises monitor.service.isolation.RetrainProcessFailed when it crashed, hung or
        raised, ExecutorError when the executor itself failed."""

    def stop_retrain(self) -> None:  # noqa: B027 - optional: an executor without a running retrain has nothing to stop
        """End the running retrain now (the daemon is shutting down); callable from any thread."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections; the daemon calls it once, at stop."""
