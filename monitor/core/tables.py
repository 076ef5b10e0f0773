"""Reading a reference table file: Parquet, CSV or JSON lines, by extension.

A neutral module: the check's reference cache (monitor.service.reference) and the model registry
(retrain.registry) both read reference files, and neither may import the other for it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


class ReferenceError(Exception):
    """No usable reference; the message says where driftd looked and what to do."""


def read_table(path: Path) -> pd.DataFrame:
    """Read a reference file: Parquet, CSV or JSON lines, by extension."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return _read_parquet(path)
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in (".jsonl", ".json", ".ndjson"):
            return pd.read_json(path, lines=True)
    except FileNotFoundError:
        raise ReferenceError(f"reference file {path} does not exist") from None
    except Exception as exc:  # pyarrow/pandas raise many types for a corrupt file
        raise ReferenceError(f"cannot read reference file {path}: {exc}") from None
    raise ReferenceError(f"reference file {path}: unknown format {suffix!r} (use .parquet, .csv or .jsonl)")


def _read_parquet(path: Path) -> pd.DataFrame:
    """pandas.read_parquet on one thread, Arrow's freed pages handed back: Arrow's threads would
    allocate the frame's blocks in malloc arenas of their own, which keep their pages for the life
    of the process (a 100k-row reference held 25 MB more)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = pq.read_table(path, use_threads=False).to_pandas(use_threads=False)
    pa.default_memory_pool().release_unused()
    return frame
