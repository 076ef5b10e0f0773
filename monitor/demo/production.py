"""Simulated production: a served model logging predictions to SQLite, labels arriving late.

It runs on the demo's simulated clock: rows carry simulated timestamps, the daemon reads the
same clock, and the demo advances it window by window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa

from monitor.demo.world import CATEGORICAL, NUMERICAL, TARGET, make_loans

Predictor = Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class LogTables:
    engine: sa.Engine
    predictions: sa.Table
    outcomes: sa.Table


def create_tables(url: str) -> LogTables:
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    predictions = sa.Table(
        "predictions", meta,
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False, index=True),
        *[sa.Column(c, sa.Float) for c in NUMERICAL],
        *[sa.Column(c, sa.String) for c in CATEGORICAL],
        sa.Column("prediction", sa.Integer),
        sa.Column("probability", sa.Float),
        sa.Column("model_version", sa.String),
        sa.Column("phase", sa.String),  # simulation ground truth (not a feature): "baseline" or "shifted"
    )
    outcomes = sa.Table("outcomes", meta, sa.Column("id", sa.String, primary_key=True),
                        sa.Column("ts", sa.DateTime(timezone=True)), sa.Column(TARGET, sa.Integer))
    meta.drop_all(engine)
    meta.create_all(engine)
    return LogTables(engine, predictions, outcomes)


@dataclass
class Phase:
    drift: float = 0.0
    started_at: datetime | None = None


class Production:
    """The served model on the demo's clock: `advance(to)` logs the predictions made up to `to`
    (evenly spread, predicted by the current champion) and the labels that have arrived by then.

    Nothing here reads the machine's clock, so a slow machine logs the same rows at the same
    (simulated) times as a fast one."""

    def __init__(self, tables: LogTables, serve: Callable[[], tuple[str, Predictor]], *, rows_per_second: float,
                 label_delay: timedelta, start: datetime, seed: int = 7) -> None:
        self._tables, self._serve = tables, serve
        self._rate, self._label_delay = rows_per_second, label_delay
        self._rng = np.random.default_rng(seed)
        self._pending: list[pd.DataFrame] = []  # predictions whose truth is not known yet
        self._logged_until = start
        self.phase = Phase()
        self.next_id = 0

    def shift(self, drift: float) -> datetime:
        """Inject a covariate shift and concept change from now (the last logged time) on."""
        self.phase = Phase(drift, self._logged_until)
        return self._logged_until

    def advance(self, to: datetime) -> int:
        """Log the predictions made in (last time, `to`] and the labels known by `to`; returns the rows logged."""
        span = (to - self._logged_until).total_seconds()
        rows = int(round(span * self._rate))
        if rows > 0:
            self._log_predictions(rows, to)
        self._logged_until = to
        self._log_labels(to)
        return rows

    def _log_predictions(self, n: int, to: datetime) -> None:
        every = (to - self._logged_until) / n
        frame = make_loans(n, seed=int(self._rng.integers(2**31)), drift=self.phase.drift,
                           start=self._logged_until + every, every=every, first_id=self.next_id)
        self.next_id += n
        version, predict = self._serve()
        labels, proba = predict(frame[NUMERICAL + CATEGORICAL])
        phase = "shifted" if self.phase.drift > 0 else "baseline"
        logged = frame.drop(columns=[TARGET]).assign(prediction=labels.astype(int), probability=proba,
                                                     model_version=version, phase=phase)
        with self._tables.engine.begin() as conn:
            conn.execute(self._tables.predictions.insert(), logged.to_dict("records"))
        self._pending.append(frame[["id", "ts", TARGET]])

    def _log_labels(self, now: datetime) -> None:
        if not self._pending:
            return
        pending = pd.concat(self._pending, ignore_index=True)
        due = pending["ts"] <= now - self._label_delay
        self._pending = [pending[~due]]
        if not due.any():
            return
        truth = pending[due].assign(ts=now)
        with self._tables.engine.begin() as conn:
            conn.execute(self._tables.outcomes.insert(), truth.to_dict("records"))
