"""Where a check's computation and a retrain run: `executor: {type: local}` (default) or `{type: ray}`.

The daemon stays the scheduler and the only writer of the state store; an executor only computes
(monitor.service.executors.base says what it is handed and returns).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.core.config import Config
    from monitor.service.executors.base import Executor


def open_executor(config: Config) -> Executor:
    """The executor the configuration names (monitor.core.plugins.EXECUTORS); nothing connects yet."""
    from monitor.core.plugins import EXECUTORS

    return EXECUTORS.get(config.executor.type)(config.executor, config)
