"""`driftd backfill`: past windows checked back to back, exactly as the daemon would check them.

Each window goes through the daemon's own cycle (cut from the watermark, checked, recorded with
its new watermark in one transaction) and, when countable, the same policy (`consequences.judge`:
the decision is recorded with its reasons and the alert state moves). Alerts are sent only when
asked (`--alerts`); retrains are never started — the windows are history — and the recorded
decision says so when one was due.

The watermark is shared with the daemon: a backfill continues from the model's watermark when it
has one (within --since..--until) and leaves it where its last full window ends, so the daemon
started afterwards carries on from there. Run it before starting the daemon, not beside it; to
look at history while a daemon runs, use `--dry-run`, which runs everything against a throwaway
in-memory state store, starts at --since whatever the real watermark, and writes nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TextIO

from monitor.check.inputs import open_inputs
from monitor.check.policy import Decision
from monitor.check.run import Inputs
from monitor.core.config import Config, ModelConfig
from monitor.core.results import CheckStatus, Watermark
from monitor.service.cycle import Cycle, Turn, live_edge
from monitor.state.store import StateStore

IN_MEMORY = "sqlite://"
NOT_STARTED = "backfill: retrains are not started for past windows"


class BackfillError(Exception):
    """The backfill cannot start as asked; the message says why and what to run instead."""


@dataclass(frozen=True)
class Window:
    """One backfilled window: what the daemon would have recorded, and what its policy decided."""

    turn: Turn
    decision: Decision | None  # None when the window was not countable (insufficient data, error)

    def to_dict(self, *, dry_run: bool) -> dict:
        data = self.turn.result.to_dict()
        data["decision"] = None if self.decision is None else {
            "alert": self.decision.alert, "retrain": self.decision.retrain, "reasons": list(self.decision.reasons),
        }
        data["dry_run"] = dry_run
        return data


@dataclass
class Summary:
    windows: list[Window] = field(default_factory=list)
    note: str | None = None  # e.g. resumed after the watermark

    @property
    def drifted(self) -> int:
        return sum(w.turn.result.status is CheckStatus.DRIFT for w in self.windows)

    @property
    def failed(self) -> Window | None:
        last = self.windows[-1] if self.windows else None
        return last if last is not None and last.turn.result.status is CheckStatus.ERROR else None


def backfill(config: Config, model: ModelConfig, *, since: datetime, until: datetime, dry_run: bool = False,
             alerts: bool = False, on_window: Callable[[Window], None] = lambda w: None,
             say: Callable[[str], None] = lambda line: None) -> Summary:
    """Check `model`'s windows from `since` (or its watermark) to `until` back to back; `say`
    hears where it starts when that is not --since."""
    from monitor.service.consequences import judge
    from monitor.service.reference import References

    if until <= since:
        raise BackfillError(f"--until {until.isoformat()} is not after --since {since.isoformat()}")
    store = StateStore(IN_MEMORY if dry_run else config.state_url)
    opened: dict[str, Inputs] = {}
    notifier = _notifier(config) if alerts else None
    try:
        store.migrate()
        mark = store.watermark(model.name)
        summary = Summary(note=_resume_note(mark, model, since, until))
        if summary.note:
            say(summary.note)
        if mark is not None and mark.timestamp >= until:
            return summary
        cycle = Cycle(store, References(config), lambda m: opened.get(m.name) or opened.setdefault(m.name, open_inputs(m)))
        while True:
            turn = cycle.run(model, until=until, start=since)
            decision = None
            if turn.countable:
                verdict = judge(store, model, turn.result, turn.champion, now=turn.result.started_at,
                                labelled_rows=lambda: None, alert_valid_for=3 * (model.schedule.every or model.window.size),
                                not_started=NOT_STARTED)
                decision = verdict.decision
                if notifier is not None and verdict.alert is not None:
                    notifier.notify(verdict.alert, model.alerts)
            window = Window(turn, decision)
            summary.windows.append(window)
            on_window(window)
            end = turn.result.window_end
            if not turn.countable or end >= min(until, live_edge(model, turn.result.started_at)):
                return summary
    finally:
        if notifier is not None:
            notifier.close(timeout=30)
        for inputs in opened.values():
            inputs.close()
        store.close()


def _resume_note(mark: Watermark | None, model: ModelConfig, since: datetime, until: datetime) -> str | None:
    """Where a recorded backfill starts: at --since, or after the model's watermark; never with a gap."""
    if mark is None:
        return None
    if mark.timestamp < since:
        raise BackfillError(
            f"{model.name}'s watermark is at {mark.timestamp.isoformat()}, before --since {since.isoformat()}: "
            "starting at --since would leave the rows in between unchecked. Backfill from "
            f"--since {mark.timestamp.isoformat()}, or look at the past with --dry-run (which writes nothing)"
        )
    if mark.timestamp >= until:
        return (f"nothing to do: {model.name} is already checked up to {mark.timestamp.isoformat()} (its watermark); "
                "use --dry-run to look at earlier windows again")
    return f"{model.name} is already checked up to {mark.timestamp.isoformat()}: continuing after its watermark"


def _notifier(config: Config):
    from monitor import __version__
    from monitor.observe.alerts import Notifier
    from monitor.observe.metrics import Metrics

    return Notifier(config.alerts.channels, Metrics(version=__version__))


# --- what a person sees ----------------------------------------------------------------------


class Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal. The bar spans
    from the first window's start (--since, or the watermark it continued after) to --until."""

    WIDTH = 30

    def __init__(self, until: datetime, stream: TextIO = sys.stderr) -> None:
        self._until = until
        self._origin: datetime | None = None
        self._stream = stream
        self.enabled = stream.isatty()

    def update(self, start: datetime | None, reached: datetime, windows: int) -> None:
        if not self.enabled:
            return
        self._origin = self._origin or start or reached
        span = max((self._until - self._origin).total_seconds(), 1e-9)
        share = min(max((reached - self._origin).total_seconds() / span, 0.0), 1.0)
        done = int(share * self.WIDTH)
        self._stream.write(f"\r[{'#' * done}{'.' * (self.WIDTH - done)}] {share:4.0%}  {windows} windows, up to {reached:%Y-%m-%d %H:%M}")
        self._stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self._stream.write("\r\033[K")
            self._stream.flush()


def window_line(window: Window) -> str:
    result = window.turn.result
    start = f"{result.window_start:%Y-%m-%d %H:%M:%S}" if result.window_start else "?"
    head = f"{start} .. {result.window_end:%Y-%m-%d %H:%M:%S}  {result.rows:7d} rows"
    if result.status in (CheckStatus.OK, CheckStatus.DRIFT):
        verdict = "DRIFT" if result.status is CheckStatus.DRIFT else "ok"
        decision = window.decision
        action = ", ".join(filter(None, [f"alert {decision.alert}" if decision and decision.alert else None,
                                         "retrain due (not started)" if decision and decision.retrain else None]))
        return f"{head}  {result.drifted_share:4.0%} drifted  {verdict:5s}  {action}".rstrip()
    if result.status is CheckStatus.INSUFFICIENT_DATA:
        return f"{head}  waiting for rows: {result.message}"
    return f"{head}  ERROR: {result.message}"
