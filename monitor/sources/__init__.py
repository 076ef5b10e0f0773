"""Prediction-log sources: open one from its configuration, and find a window's watermark."""

from __future__ import annotations

import pandas as pd

from monitor.core.clock import utc_timestamp
from monitor.core.config import Columns, SourceConfig
from monitor.core.plugins import SOURCES
from monitor.core.results import Watermark
from monitor.sources.base import Source, SourceError, WindowQuery

__all__ = ["Source", "SourceError", "WindowQuery", "open_source", "source_class", "watermark_of"]


def source_class(kind: str) -> type[Source]:
    """The class registered for source `type: kind` (built in or a plug-in's)."""
    cls: type[Source] = SOURCES.get(kind)
    return cls


def open_source(cfg: SourceConfig, columns: Columns) -> Source:
    """The reader for `cfg`; `columns` names its timestamp and id (and categorical) columns.

    SQL sources hold a connection pool: call `.close()` on them when done."""
    return source_class(cfg.type)(cfg, columns)


def watermark_of(frame: pd.DataFrame, columns: Columns) -> Watermark | None:
    """The watermark after `frame` (its last row's timestamp and id), or None when it is empty.

    The timestamp stays a pandas Timestamp (a datetime) so nanoseconds survive; the id becomes
    a plain int or str, the id column's own type."""
    if frame.empty:
        return None
    stamp = utc_timestamp(frame[columns.timestamp].iloc[-1])
    ident = frame[columns.id].iloc[-1]
    ident = ident.item() if hasattr(ident, "item") else ident
    return Watermark(stamp, ident)
