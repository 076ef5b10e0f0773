"""Where a check's computation and a retrain run: `executor: {type: local}` (default) or `{type: ray}`.

The daemon stays the scheduler and the only writer of the state store; an executor only computes
(monitor.executors.base says what it is handed and returns).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.config import Config
    from monitor.executors.base import Executor


def open_executor(config: Config) -> Executor:
    """The executor the configuration names (monitor.plugins.EXECUTORS); nothing connects yet."""
    from monitor.plugins import EXECUTORS

    return EXECUTORS.get(config.executor.type)(config.executor, config)
