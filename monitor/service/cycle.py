"""One model's check as the daemon runs it: reference -> the window after the watermark -> check -> record.

The daemon runs a cycle on every tick and `driftd backfill` runs them back to back over past
windows, so both cut the same windows and record them the same way. What follows a countable
window — the policy's decision, alerts, a retrain — is `monitor.service.consequences`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from monitor.check.inputs import open_inputs as open_inputs  # re-exported: the daemon opens its inputs through here
from monitor.check.run import Inputs, WindowSpec
from monitor.core.clock import Clock, SystemClock
from monitor.core.config import ModelConfig
from monitor.core.logs import set_check_id
from monitor.core.results import CheckResult, CheckStatus
from monitor.service.executors.base import CheckJob, Executor, ExecutorError
from monitor.service.executors.local import LocalExecutor
from monitor.service.reference import Loaded, ReferenceError, References
from monitor.sources.base import SourceError
from monitor.state.store import StateStore

if TYPE_CHECKING:
    from retrain.registry import Champion


@dataclass(frozen=True)
class Turn:
    """One cycle's outcome: the check, the champion it was compared with, and whether it was recorded."""

    result: CheckResult
    loaded: Loaded | None = None  # the reference and champion, None when they could not be found
    snapshot: Any = None  # the Evidently snapshot, for the HTML report
    recorded: bool = False  # the result (and its watermark) is in the state store

    @property
    def champion(self) -> Champion | None:
        return self.loaded.champion if self.loaded else None

    @property
    def countable(self) -> bool:
        """A verdict on drift: only these windows vote in the policy."""
        return self.result.status in (CheckStatus.OK, CheckStatus.DRIFT)


class Cycle:
    """Checks a model's next window. `inputs` opens (or reuses) the model's sources."""

    def __init__(self, store: StateStore, references: References, inputs: Callable[[ModelConfig], Inputs],
                 clock: Clock | None = None, executor: Executor | None = None) -> None:
        self.store = store
        self._references = references
        self._inputs = inputs
        self._clock = clock or SystemClock()
        self._executor = executor or LocalExecutor()  # computes the check; this process records it

    def run(self, model: ModelConfig, *, until: datetime | None = None, start: datetime | None = None) -> Turn:
        """Check the window after the model's watermark, up to `until` (default, and at most, the live
        edge: now - window.lateness). With no watermark yet the window begins at `start`, or covers
        the last window.size when `start` is None (the daemon's first window). Never raises for bad
        data, sources or references: the result says what went wrong."""
        try:
            loaded = self._references.get(model)
        except ReferenceError as exc:
            return Turn(failed(model, str(exc), self._clock.now()))
        try:
            inputs = self._inputs(model)
        except SourceError as exc:  # e.g. a missing SQLite file or database driver
            return Turn(replace(failed(model, str(exc), self._clock.now()), details={"source_error": exc.kind}), loaded)
        # The window's end is taken only now, after the (possibly slow) reference preparation,
        # so it is as close as possible to the moment the rows are read.
        now = self._clock.now()
        edge = live_edge(model, now)
        spec = WindowSpec(after=self.store.watermark(model.name) or start, until=min(until, edge) if until else edge,
                          audit=self.store.audit(model.name))
        try:
            checked = self._executor.check(CheckJob(model, loaded, spec, now, self._references.attribution(model, loaded), inputs))
        except ExecutorError as exc:  # the executor itself failed (a Ray cluster gone): recorded, the window is retried next tick
            result = replace(failed(model, str(exc), now), details={"executor_error": self._executor.options.type})
            self.store.record_check(result)
            return Turn(result, loaded, recorded=True)
        set_check_id(checked.result.check_id)
        self.store.record_check(checked.result, checked.seen)  # with the late-row bookkeeping, in one transaction
        return Turn(checked.result, loaded, checked.snapshot, recorded=True)


def live_edge(model: ModelConfig, now: datetime) -> datetime:
    # Rows may be committed a little after their timestamp; the lateness keeps them in play.
    return now - model.window.lateness


def failed(model: ModelConfig, message: str, now: datetime | None = None) -> CheckResult:
    """An error result for a check that could not even read its window (its message masked)."""
    from monitor.core.redact import mask

    now = now or datetime.now(timezone.utc)
    return CheckResult(check_id=uuid.uuid4().hex, model=model.name, status=CheckStatus.ERROR, started_at=now,
                       window_start=None, window_end=now, message=mask(message))
