"""Prediction-log sources: open one from its configuration, and find a window's watermark."""

from __future__ import annotations

import pandas as pd

from monitor.config import Columns, FilesSource, SqlSource
from monitor.results import Watermark
from monitor.sources.base import Source, SourceError, WindowQuery

__all__ = ["Source", "SourceError", "WindowQuery", "open_source", "watermark_of"]


def open_source(cfg: FilesSource | SqlSource, columns: Columns) -> Source:
    """The reader for `cfg`; `columns` names its timestamp and id (and categorical) columns.

    SQL sources hold a connection pool: call `.close()` on them when done."""
    if isinstance(cfg, FilesSource):
        from monitor.sources.files import FileLogSource

        return FileLogSource(cfg, columns)
    if isinstance(cfg, SqlSource):
        from monitor.sources.sql import SqlLogSource

        return SqlLogSource(cfg, columns)
    raise TypeError(f"unknown source configuration {type(cfg).__name__}")


def watermark_of(frame: pd.DataFrame, columns: Columns) -> Watermark | None:
    """The watermark after `frame` (its last row's timestamp and id), or None when it is empty.

    The timestamp stays a pandas Timestamp (a datetime) so nanoseconds survive; the id becomes
    a plain int or str, the id column's own type."""
    if frame.empty:
        return None
    stamp = pd.Timestamp(frame[columns.timestamp].iloc[-1])
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    ident = frame[columns.id].iloc[-1]
    ident = ident.item() if hasattr(ident, "item") else ident
    return Watermark(stamp, ident)
