"""`type: testplugin-source`: a prediction log generated from a seed, held in memory.

Rows arrive one every `spacing` from `start`; from `shift_from` on, every numerical feature
is moved by `shift` standard deviations. Deterministic: the same section gives the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from monitor.core.config import Columns, PositiveDuration, SourceConfig
from monitor.sources.base import Source, SourceError, WindowQuery

LEVELS = ("a", "b", "c")


class SyntheticConfig(SourceConfig):
    type: Literal["testplugin-source"]
    start: datetime
    rows: int = Field(gt=0, le=1_000_000)
    spacing: PositiveDuration = timedelta(seconds=1)  # driftd's own duration type: "6s", "1m"
    seed: int = 0
    shift: float = 0.0
    shift_from: datetime | None = None


class SyntheticSource(Source):
    config_model = SyntheticConfig

    def __init__(self, config: SourceConfig, columns: Columns) -> None:
        assert isinstance(config, SyntheticConfig)
        if config.start.tzinfo is None:
            raise SourceError("testplugin-source: give `start` with a time zone, e.g. 2024-05-01T00:00:00Z", kind="unreachable")
        self.frame = generate(config, columns)
        self._ts, self._id = columns.timestamp, columns.id

    def read(self, query: WindowQuery) -> pd.DataFrame:
        rows = self.frame
        ts, ident = rows[self._ts], rows[self._id]
        if query.after is not None:
            after = pd.Timestamp(query.after.timestamp)
            keep = (ts > after) | ((ts == after) & (ident > query.after.id))
        else:
            keep = ts > pd.Timestamp(query.since) if query.since is not None else pd.Series(True, index=rows.index)
        keep &= ts <= pd.Timestamp(query.until)
        if query.through is not None:
            through = pd.Timestamp(query.through.timestamp)
            keep &= (ts < through) | ((ts == through) & (ident <= query.through.id))
        selected = rows.loc[keep]
        if query.limit is not None:
            selected = selected.head(query.limit)
        return self._only(selected, query.columns)

    def read_ids(self, columns: tuple[str, ...], ids: Sequence[str | int]) -> pd.DataFrame:
        return self._only(self.frame[self.frame[self._id].isin(list(ids))], columns)

    def null_timestamps(self) -> int:
        return 0

    def _only(self, frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise SourceError(f"testplugin-source generates no column(s) {missing}", kind="schema", missing=tuple(missing))
        return frame.loc[:, list(columns)].reset_index(drop=True)


def generate(config: SyntheticConfig, columns: Columns) -> pd.DataFrame:
    """The whole log the section describes, sorted by (timestamp, id)."""
    rng = np.random.default_rng(config.seed)
    n = config.rows
    stamps = pd.Timestamp(config.start).tz_convert("UTC") + pd.to_timedelta(np.arange(n) * config.spacing.total_seconds(), unit="s")
    frame = pd.DataFrame({columns.timestamp: stamps.as_unit("ns"), columns.id: np.arange(n, dtype=np.int64)})
    shifted = np.zeros(n, dtype=bool) if config.shift_from is None else np.asarray(stamps >= pd.Timestamp(config.shift_from))
    for name in columns.numerical:
        frame[name] = rng.normal(size=n) + config.shift * shifted
    for name in columns.categorical:
        frame[name] = rng.choice(LEVELS, size=n)
    score = frame[columns.numerical].sum(axis=1).to_numpy() if columns.numerical else rng.normal(size=n)
    probability = 1 / (1 + np.exp(-score))
    frame[columns.prediction] = (probability > 0.5).astype(np.int64)
    if columns.probability:
        frame[columns.probability] = probability
    if columns.target:
        frame[columns.target] = (rng.random(n) < probability).astype(np.int64)
    return frame
