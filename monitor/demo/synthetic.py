"""Synthetic prediction logs: seeded, so every run sees the same rows (tests and benchmarks).

A log row looks like what a binary classifier serving in production would write:
`ts` (UTC), `id` (unique int), numerical features `age`, `income`, `score`, categorical
features `country`, `device`, the model's `prediction` (0/1) and `probability`, and the
eventually-known `target`. `shift` moves the feature distributions to simulate drift.
Shipped with the package (beside the demo's loan world) so bench scripts need nothing from tests/.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import sqlalchemy as sa

from monitor.core.config import Columns

NUMERICAL = ["age", "income", "score"]
CATEGORICAL = ["country", "device"]
COUNTRIES = ["de", "fr", "us", "uk", "in"]
DEVICES = ["ios", "android", "web"]
START = datetime(2024, 5, 1, tzinfo=timezone.utc)


def columns(*, target: bool = True) -> Columns:
    """The column roles matching `predictions()` frames."""
    return Columns(
        timestamp="ts",
        id="id",
        prediction="prediction",
        probability="probability",
        target="target" if target else None,
        numerical=list(NUMERICAL),
        categorical=list(CATEGORICAL),
    )


def predictions(
    n: int,
    *,
    seed: int = 0,
    start: datetime = START,
    every: timedelta = timedelta(seconds=1),
    first_id: int = 0,
    shift: float = 0.0,
    timestamps: int | None = None,
) -> pd.DataFrame:
    """`n` prediction-log rows, one every `every` from `start`, ids `first_id`…, sorted by (ts, id).

    `timestamps=k` puts the rows on only k distinct timestamps (many rows per timestamp),
    which is what exercises watermark tie-breaking. `shift` (in standard deviations) drifts
    the numerical features and tilts the categorical mix towards the last categories.
    """
    rng = np.random.default_rng(seed)
    if timestamps is None:
        offsets = np.arange(n)
    else:
        offsets = np.sort(rng.integers(0, timestamps, size=n))
    ts = pd.Timestamp(start) + pd.to_timedelta(offsets * every.total_seconds(), unit="s")
    age = rng.normal(40 + 12 * shift, 12, n).clip(18, 95)
    income = rng.lognormal(10.5 + 0.5 * shift, 0.6, n)
    score = rng.normal(shift, 1, n)
    country = rng.choice(COUNTRIES, n, p=_tilt(len(COUNTRIES), shift))
    device = rng.choice(DEVICES, n, p=_tilt(len(DEVICES), shift))
    logit = 0.04 * (age - 40) + 0.8 * score + 0.5 * (device == "ios") - 0.3
    probability = 1 / (1 + np.exp(-logit))
    frame = pd.DataFrame(
        {
            "ts": pd.DatetimeIndex(ts).as_unit("us"),
            "id": np.arange(first_id, first_id + n, dtype="int64"),
            "age": age.round(1),
            "income": income.round(2),
            "score": score,
            "country": pd.Series(country, dtype=object),
            "device": pd.Series(device, dtype=object),
            "prediction": (probability >= 0.5).astype("int64"),
            "probability": probability,
            "target": (rng.random(n) < probability).astype("int64"),
        }
    )
    return frame.sort_values(["ts", "id"], kind="stable").reset_index(drop=True)


def _tilt(k: int, shift: float) -> np.ndarray:
    weights = np.exp(np.linspace(0, shift, k))
    return weights / weights.sum()


class PredictionTable:
    """A uniquely named table of `predictions()` rows in a real database (tests and benches
    feed the daemon through it); `drop()` removes it."""

    def __init__(self, url: str) -> None:
        self.name = f"preds_{uuid.uuid4().hex[:10]}"
        self.engine = sa.create_engine(url)
        self.next_id = 0
        self.appended = 0
        meta = sa.MetaData()
        self.table = sa.Table(
            self.name, meta,
            sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
            sa.Column("id", sa.BigInteger, primary_key=True),
            *[sa.Column(c, sa.Float) for c in NUMERICAL],
            *[sa.Column(c, sa.String) for c in CATEGORICAL],
            sa.Column("prediction", sa.Integer), sa.Column("probability", sa.Float), sa.Column("target", sa.Integer),
        )
        meta.create_all(self.engine)

    def append(self, rows: int, *, shift: float = 0.0, seed: int | None = None) -> pd.DataFrame:
        """Append `rows` rows stamped just before now, after every row appended so far."""
        start = datetime.now(timezone.utc) - timedelta(milliseconds=rows)
        frame = predictions(rows, seed=seed if seed is not None else self.next_id, start=start,
                            every=timedelta(milliseconds=1), first_id=self.next_id, shift=shift)
        with self.engine.begin() as conn:
            conn.execute(self.table.insert(), frame.to_dict("records"))
        self.next_id += rows
        self.appended += rows
        return frame

    def drop(self) -> None:
        self.table.drop(self.engine)
        self.engine.dispose()
