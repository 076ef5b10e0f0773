"""Late rows: rows committed after the watermark passed their timestamp.

A window reads the rows after the watermark, so a row that becomes visible only after a
window covering its timestamp was read (a writer's long transaction, a file of old rows
dropped into the folder) lands behind the watermark and would never be read again.

Each check therefore re-reads the *keys* (timestamp, id) of the rows behind the watermark, back
to `window.lookback`, and compares them with the keys already checked there. Keys not checked
yet are late rows: they are read whole and checked with the next window, and counted
(`driftd_late_rows_total`).

The bookkeeping ("which keys in the look-back were checked") is a 64-bit hash of each checked
(timestamp, id) whose timestamp is still inside the look-back, stored per window in the state
store and committed in the same transaction as the window's result and new watermark, so a
crash can neither skip a late row nor count one twice. Entries older than the look-back are
pruned in that transaction too: the bookkeeping holds at most the keys of one look-back span
(plus one window), 8 bytes a row.

`audit_from` is the time below which nothing is audited: the start of the model's first window
(older rows were never meant to be checked), later the watermark minus the look-back at the last
commit — so shortening and then lengthening `lookback` never re-checks rows whose keys were pruned.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from monitor.core.clock import utc_series
from monitor.core.config import Columns

# The bookkeeping's types live in the core (the state store keeps them); re-exported here.
from monitor.core.records import NO_AUDIT as NO_AUDIT
from monitor.core.records import Audit as Audit
from monitor.core.records import Seen as Seen
from monitor.core.records import decode as decode
from monitor.core.results import Watermark
from monitor.sources.base import Source, WindowQuery

_UTC_NS = pd.DatetimeTZDtype("ns", "UTC")


def nanoseconds(stamps: pd.Series) -> np.ndarray:
    """UTC timestamps as int64 nanoseconds since the epoch (sources hand them over as
    datetime64[ns, UTC] already; anything else is converted)."""
    series = pd.Series(stamps)
    if series.dtype != _UTC_NS:
        series = utc_series(series)
    return series.array.asi8


def key_hashes(frame: pd.DataFrame, columns: Columns) -> np.ndarray:
    """A stable 64-bit hash of each row's (timestamp, id): the same row hashes alike in every
    process and every read (pandas' hash is seeded with a fixed key)."""
    if frame.empty:
        return np.empty(0, dtype=np.uint64)
    keys = pd.DataFrame({"ts": nanoseconds(frame[columns.timestamp]), "id": frame[columns.id].to_numpy()})
    return pd.util.hash_pandas_object(keys, index=False).to_numpy(dtype=np.uint64)


def find_late(source: Source, columns: Columns, wanted: tuple[str, ...], after: Watermark, audit: Audit,
              lookback_ns: int) -> pd.DataFrame:
    """The rows at or before `after` (within the look-back) whose keys were never checked."""
    if audit.audit_from is None or lookback_ns <= 0:
        return pd.DataFrame()
    mark = pd.Timestamp(after.timestamp)
    lower = max(audit.audit_from, mark - pd.Timedelta(lookback_ns, unit="ns"))
    if lower >= mark:
        return pd.DataFrame()
    key_columns = (columns.timestamp, columns.id)
    keys = source.read(WindowQuery(key_columns, until=mark.to_pydatetime(), since=lower.to_pydatetime(), through=after))
    if keys.empty:
        return pd.DataFrame()
    hashes = key_hashes(keys, columns)
    unseen = ~audit.checked(hashes)
    if not unseen.any():
        return pd.DataFrame()
    late_ids = list(dict.fromkeys(_plain(i) for i in keys[columns.id][unseen]))
    rows = source.read_ids(wanted, late_ids)
    if rows.empty:  # deleted between the two reads: nothing left to check
        return rows
    # An id may be reused at other times: keep exactly the unseen (timestamp, id) pairs.
    wanted_keys = Audit(audit.audit_from, np.sort(hashes[unseen]))
    rows = rows[wanted_keys.checked(key_hashes(rows, columns))]
    return rows.reset_index(drop=True)


def seen_block(frame: pd.DataFrame, columns: Columns, watermark: Watermark, audit_from: pd.Timestamp,
               lookback_ns: int) -> Seen:
    """The keys of `frame` (a window about to be recorded with `watermark`) still inside the look-back."""
    stamps = nanoseconds(frame[columns.timestamp]) if not frame.empty else np.empty(0, dtype=np.int64)
    return seen_block_of_keys(stamps, key_hashes(frame, columns), watermark, audit_from, lookback_ns)


def seen_block_of_keys(stamps: np.ndarray, hashes: np.ndarray, watermark: Watermark, audit_from: pd.Timestamp,
                       lookback_ns: int) -> Seen:
    """seen_block from a window's keys already hashed (int64 ns timestamps and key_hashes,
    row for row), as a streamed window keeps them."""
    mark_ns = pd.Timestamp(watermark.timestamp).value
    start_ns = max(pd.Timestamp(audit_from).value, mark_ns - lookback_ns) if lookback_ns > 0 else mark_ns
    inside = stamps > start_ns
    hashes = hashes[inside] if inside.any() else np.empty(0, dtype=np.uint64)
    low = int(stamps[inside].min()) if inside.any() else start_ns
    high = int(stamps[inside].max()) if inside.any() else start_ns
    return Seen(audit_from_ns=start_ns, min_ts_ns=low, max_ts_ns=high, hashes=hashes)


def _plain(value: Any) -> str | int:
    plain: str | int = value.item() if hasattr(value, "item") else value
    return plain


def audit_start(audit: Audit, window_start: datetime | None) -> pd.Timestamp | None:
    """Where auditing starts for a window about to be recorded: the stored point, or for a
    model's first window the window's own start."""
    if audit.audit_from is not None:
        return audit.audit_from
    return pd.Timestamp(window_start) if window_start is not None else None
