"""Where driftd reads the time: one small protocol, so a simulation (the demo, tests) can
drive the daemon on its own clock instead of the machine's; and the one rule for time zones
(`utc`): a time without a zone is UTC, every time driftd keeps is timezone-aware UTC."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Protocol, TypeVar

import pandas as pd

_Time = TypeVar("_Time", bound=datetime)


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class SimulatedClock:
    """A clock that moves only when told to: the same story plays out at any machine speed."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("SimulatedClock needs a timezone-aware start time")
        self._now = start.astimezone(timezone.utc)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, by: timedelta) -> datetime:
        if by < timedelta(0):
            raise ValueError("time does not run backwards")
        with self._lock:
            self._now += by
            return self._now


def utc(value: _Time) -> _Time:
    """`value` in UTC; a naive value is taken to be UTC already (logs, ISO text and Parquet
    without a zone are written in UTC). A pandas Timestamp stays one, nanoseconds included."""
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def utc_timestamp(value: datetime | str) -> pd.Timestamp:
    """`value` as a timezone-aware UTC pandas Timestamp (by `utc`'s rule)."""
    return utc(pd.Timestamp(value))


def utc_series(values: pd.Series) -> pd.Series:
    """A datetime column as `datetime64[ns, UTC]` (by `utc`'s rule)."""
    series = values.dt.tz_localize("UTC") if values.dt.tz is None else values
    return series.dt.tz_convert("UTC").dt.as_unit("ns")
