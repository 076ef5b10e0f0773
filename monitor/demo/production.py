"""Simulated production: a served model logging predictions to SQLite, labels arriving late.

Time is compressed, not faked: rows carry real timestamps and the daemon uses the real clock;
the demo just runs short windows at a high row rate.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

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


class Production(threading.Thread):
    """Every tick: draw applications, predict with the current champion, log rows; later, the truth."""

    def __init__(self, tables: LogTables, serve: Callable[[], tuple[str, Predictor]], *, rows_per_second: float,
                 label_delay: timedelta, seed: int = 7, tick: float = 0.25) -> None:
        super().__init__(name="demo-production", daemon=True)
        self._tables, self._serve = tables, serve
        self._rows_per_tick = max(1, round(rows_per_second * tick))
        self._label_delay, self._tick = label_delay, tick
        self._rng = np.random.default_rng(seed)
        self._halt = threading.Event()
        self._pending: list[tuple[datetime, pd.DataFrame]] = []
        self.phase = Phase()
        self.next_id = 0
        self.error: BaseException | None = None

    def shift(self, drift: float) -> datetime:
        """Inject a covariate shift and concept change from now on; returns when it started."""
        self.phase = Phase(drift, datetime.now(timezone.utc))
        return self.phase.started_at

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def run(self) -> None:
        try:
            while not self._halt.wait(self._tick):
                self._log_predictions()
                self._log_labels()
        except BaseException as exc:  # surfaced by the demo instead of dying silently in a thread
            self.error = exc

    def _log_predictions(self) -> None:
        now = datetime.now(timezone.utc)
        rows = make_loans(self._rows_per_tick, seed=int(self._rng.integers(2**31)), drift=self.phase.drift,
                          start=now, every=timedelta(microseconds=1), first_id=self.next_id)
        self.next_id += len(rows)
        version, predict = self._serve()
        labels, proba = predict(rows[NUMERICAL + CATEGORICAL])
        phase = "shifted" if self.phase.drift > 0 else "baseline"
        logged = rows.drop(columns=[TARGET]).assign(prediction=labels.astype(int), probability=proba,
                                                   model_version=version, phase=phase)
        with self._tables.engine.begin() as conn:
            conn.execute(self._tables.predictions.insert(), logged.to_dict("records"))
        self._pending.append((now, rows[["id", "ts", TARGET]]))

    def _log_labels(self) -> None:
        due = datetime.now(timezone.utc) - self._label_delay
        ready = [frame for at, frame in self._pending if at <= due]
        self._pending = [(at, frame) for at, frame in self._pending if at > due]
        if not ready:
            return
        truth = pd.concat(ready).assign(ts=datetime.now(timezone.utc))
        with self._tables.engine.begin() as conn:
            conn.execute(self._tables.outcomes.insert(), truth.to_dict("records"))
