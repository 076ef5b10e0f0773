"""CSV and JSON-lines prediction logs: read whole, or streamed block by block.

A streamed file is parsed in blocks of TEXT_BLOCK_BYTES by pyarrow's streaming readers, so a
window of a big CSV file is held one block at a time. Those readers fix each column's type from
the first block and fail when a later block does not fit it (an integer column that turns 1.5
after 200k rows), where the whole-file readers promote the type. Such a file is read whole from
where its stream failed: the same rows and values as a whole read, in bounded memory whenever
the types hold.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from monitor.sources.base import SourceError

TEXT_BLOCK_BYTES = 16 << 20  # bytes of text parsed at a time when a file is streamed


def corrupt_file(path: Path, exc: BaseException) -> SourceError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return SourceError(
        f"cannot read {path}: {reason}. The file is corrupt, truncated or still being written; "
        "fix it or move it out of the source path (driftd retries on the next check)",
        kind="corrupt",
    )


def missing_columns(path: Path, missing: list[str], present: Sequence[str]) -> SourceError:
    names = ", ".join(repr(m) for m in missing)
    return SourceError(
        f"column {names} missing from {path} (it has: {', '.join(present)}); "
        "fix the column names under `columns` in the configuration or the logging that writes the file",
        kind="schema",
        missing=tuple(missing),
    )


def read_text_file(path: Path, fmt: str, wanted: list[str], categorical: frozenset[str]) -> pa.Table:
    """The `wanted` columns of a whole CSV or JSON-lines file."""
    try:
        if fmt == "csv":
            try:
                return pacsv.read_csv(path, convert_options=_csv_options(wanted, categorical))
            except KeyError:  # pyarrow's ArrowKeyError: a wanted column is not in the header
                present = pacsv.open_csv(path).schema.names
                raise missing_columns(path, [c for c in wanted if c not in present], present) from None
        table = pajson.read_json(path)
    except SourceError:
        raise
    except (pa.ArrowException, OSError) as exc:
        raise corrupt_file(path, exc) from None
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise missing_columns(path, missing, table.column_names)
    return table.select(wanted)


def stream_text_file(path: Path, fmt: str, wanted: list[str], categorical: frozenset[str]) -> Iterator[pa.Table]:
    """The `wanted` columns of a CSV or JSON-lines file, a block at a time; the rest of the file
    read whole (read_text_file, with its errors) when the stream cannot go on."""
    consumed = 0
    try:
        for batch in _open(path, fmt, wanted, categorical):
            if any(c not in batch.schema.names for c in wanted):
                break  # JSON: a column absent from the first block; the whole read decides
            consumed += batch.num_rows
            yield pa.Table.from_batches([batch]).select(wanted)
        else:
            return
    except (pa.ArrowException, OSError, KeyError):
        pass  # a type that changed after the first block, or a broken file: the whole read tells which
    rest = read_text_file(path, fmt, wanted, categorical)
    yield rest.slice(consumed)


def _open(path: Path, fmt: str, wanted: list[str], categorical: frozenset[str]) -> Iterator[pa.RecordBatch]:
    if fmt == "csv":
        read = pacsv.ReadOptions(block_size=TEXT_BLOCK_BYTES)
        return iter(pacsv.open_csv(path, read_options=read, convert_options=_csv_options(wanted, categorical)))
    return iter(pajson.open_json(path, read_options=pajson.ReadOptions(block_size=TEXT_BLOCK_BYTES)))


def _csv_options(wanted: list[str], categorical: frozenset[str]) -> pacsv.ConvertOptions:
    # Categorical codes like "007" must stay text, not become the number 7.
    text = {c: pa.string() for c in wanted if c in categorical}
    return pacsv.ConvertOptions(include_columns=wanted, column_types=text)
