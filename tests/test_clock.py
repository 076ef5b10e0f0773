"""The one time-zone rule (monitor.core.clock.utc): naive means UTC, everything comes back aware UTC."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd

from monitor.core.clock import utc, utc_series, utc_timestamp


def test_naive_times_are_utc_and_aware_ones_are_converted() -> None:
    assert utc(datetime(2024, 5, 1, 12)) == datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    paris = datetime(2024, 5, 1, 14, tzinfo=timezone(timedelta(hours=2)))
    assert utc(paris).tzinfo is timezone.utc and utc(paris).hour == 12


def test_pandas_timestamps_keep_their_nanoseconds() -> None:
    stamp = utc_timestamp("2024-05-01T12:00:00.000000001+02:00")
    assert isinstance(stamp, pd.Timestamp) and stamp.nanosecond == 1 and stamp.hour == 10 and str(stamp.tz) == "UTC"
    assert utc(pd.Timestamp("2024-05-01 12:00:00.000000007")).value == pd.Timestamp("2024-05-01 12:00:00.000000007", tz="UTC").value


def test_series_become_nanosecond_utc() -> None:
    naive = pd.Series(pd.to_datetime(["2024-05-01 12:00:00", "2024-05-01 13:00:00"]).as_unit("us"))
    assert str(utc_series(naive).dtype) == "datetime64[ns, UTC]"
    aware = pd.Series(pd.to_datetime(["2024-05-01 12:00:00+02:00"]))
    assert utc_series(aware).iloc[0].hour == 10
