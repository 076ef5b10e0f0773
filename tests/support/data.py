"""Synthetic prediction logs for tests and benchmarks: seeded, so every run sees the same rows.

A log row looks like what a binary classifier serving in production would write:
`ts` (UTC), `id` (unique int), numerical features `age`, `income`, `score`, categorical
features `country`, `device`, the model's `prediction` (0/1) and `probability`, and the
eventually-known `target`. `shift` moves the feature distributions to simulate drift.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from monitor.config import Columns, ModelConfig

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


def write_parts(frame: pd.DataFrame, directory: Path, parts: int, fmt: str = "parquet") -> list[Path]:
    """Split `frame` into `parts` consecutive files (part-000.parquet, …) like a log shipper would."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, chunk in enumerate(np.array_split(np.arange(len(frame)), parts)):
        part = frame.iloc[chunk]
        path = directory / f"part-{i:03d}.{fmt}"
        if fmt == "parquet":
            part.to_parquet(path, index=False)
        elif fmt == "csv":
            part.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
        elif fmt == "jsonl":
            part.to_json(path, orient="records", lines=True, date_format="iso", date_unit="us")
        else:
            raise ValueError(f"unknown format {fmt!r}; use parquet, csv or jsonl")
        paths.append(path)
    return paths


def model_config(
    source: dict[str, object] | None = None, *, task: str = "binary_classification", target: bool = True, **overrides: object
) -> ModelConfig:
    """A validated ModelConfig for `predictions()` frames (files source at a dummy path by default)."""
    return ModelConfig.model_validate(
        {
            "name": "churn",
            "source": source or {"type": "files", "path": "/nonexistent/*.parquet"},
            "columns": columns(target=target).model_dump(),
            "task": task,
            **overrides,
        }
    )
