"""What every prediction-log source offers: read one time window, only the needed columns."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

import pandas as pd

from monitor.core.config import Columns, SourceConfig
from monitor.core.results import Watermark

if TYPE_CHECKING:
    import pyarrow as pa


class SourceError(Exception):
    """A source could not be read. `kind` is a bounded label for driftd_source_errors_total."""

    def __init__(self, message: str, *, kind: str = "read", missing: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.kind = kind  # unreachable | read | corrupt | schema
        self.missing = missing  # the requested columns the source does not have (kind "schema")


@dataclass(frozen=True)
class WindowQuery:
    """Rows with (timestamp, id) strictly after `after` (or timestamp > `since` when there is
    no watermark yet), timestamp <= `until` and, when given, (timestamp, id) <= `through`;
    ordered by (timestamp, id); at most `limit`. Rows without a timestamp are never returned."""

    columns: tuple[str, ...]
    until: datetime
    after: Watermark | None = None
    since: datetime | None = None
    limit: int | None = None
    through: Watermark | None = None


class Source(ABC):
    """Base of every prediction-log (and label) source.

    A source type is a subclass with `config_model` (a `monitor.core.config.SourceConfig` subclass
    validating its section) and an `__init__(config, columns)`; built-ins are `files` and `sql`,
    a package adds one through the `driftd.sources` entry-point group (monitor.core.plugins)."""

    config_model: ClassVar[type[SourceConfig]]

    def __init__(self, config: SourceConfig, columns: Columns) -> None:  # noqa: B027 - the signature every source has
        """Open what `config` describes; `columns` names the timestamp, id and feature columns.
        Raise SourceError (kind "unreachable") with an actionable message when it cannot be."""

    @abstractmethod
    def read(self, query: WindowQuery) -> pd.DataFrame:
        """Return the window's rows (only `query.columns`), sorted by (timestamp, id).

        Timestamps come back as timezone-aware UTC `datetime64[ns, UTC]`.
        Raises SourceError with an actionable message on any failure."""

    # Optional (built-in sources have it; a source without it is read whole with read()):
    #   scan(query) -> Iterator[pd.DataFrame]: the same rows as read() in batches, so a window
    #   is checked in bounded memory; `scan_ordered` says whether the batches come in
    #   (timestamp, id) order (then the window's watermark is its last row's key, as the
    #   source orders keys) or in any order (then it is the largest key).

    @abstractmethod
    def read_ids(self, columns: tuple[str, ...], ids: Sequence[str | int]) -> pd.DataFrame:
        """Rows whose id column is in `ids` (for delayed labels). Same errors as read()."""

    @abstractmethod
    def null_timestamps(self) -> int:
        """How many rows have no timestamp: no window can ever hold them. Same errors as read()."""

    def close(self) -> None:  # noqa: B027 - most sources hold nothing to release
        """Release connections; the source may not be used afterwards."""


def scan(source: Source, query: WindowQuery, *, arrow: bool = False) -> Iterator[pd.DataFrame | pa.Table]:
    """The window's rows in batches: the source's own scan() when it has one, else read() whole.
    With `arrow`, a source's `scan_arrow` (Arrow tables, FileLogSource) is preferred."""
    streamed = (arrow and getattr(source, "scan_arrow", None)) or getattr(source, "scan", None)
    if streamed is not None:
        yield from streamed(query)
        return
    frame = source.read(query)
    if not frame.empty:
        yield frame


def scan_ordered(source: Source) -> bool:
    """Whether scan(source, ...) yields rows in (timestamp, id) order (read() always does)."""
    return getattr(source, "scan_ordered", True) if hasattr(source, "scan") else True
