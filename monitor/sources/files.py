"""Prediction logs in files: a glob of Parquet, CSV or JSON-lines files.

Parquet is the efficient format: the time window and the column list are pushed down into
pyarrow's scanner, so row groups outside the window are skipped using their statistics and
unused columns are never decoded. CSV and JSON-lines files are parsed whole (only the
requested columns are kept) and filtered afterwards; a streamed window parses them block by
block (monitor.sources.textfiles).

`scan` streams a window as batches of rows in bounded memory (Parquet is read batch by batch with
pre-buffering off: pre-buffering whole row groups grew peak memory with the window); `read`
returns the window whole and sorted, for reads with a row limit and small key reads.

Timestamps may be stored as Parquet/Arrow timestamps or as ISO-8601 text. Values without a
time zone are taken as UTC. Everything comes back as `datetime64[ns, UTC]`.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from monitor.core.config import Columns, FilesSource
from monitor.sources.base import Source, SourceError, WindowQuery
from monitor.sources.parquet import BATCH_ROWS, parquet_null_count, parquet_schema, read_parquet_group, stream_parquet_group
from monitor.sources.pushdown import FilterFor, apply_filter, ids_filter, pushable, window_filter
from monitor.sources.textfiles import read_text_file, stream_text_file

_SUFFIXES = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".csv.gz": "csv",
    ".jsonl": "jsonl",
    ".jsonl.gz": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_UTC_NS = pa.timestamp("ns", tz="UTC")


class FileLogSource(Source):
    """Reads windows of prediction logs from the files matching one glob."""

    config_model = FilesSource
    scan_ordered = False  # scan() yields batches in file order, not (timestamp, id) order

    def __init__(self, cfg: FilesSource, columns: Columns) -> None:
        self._pattern = cfg.path
        self._format = cfg.format
        self._ts = columns.timestamp
        self._id = columns.id
        self._categorical = frozenset(columns.categorical)

    def read(self, query: WindowQuery) -> pd.DataFrame:
        return _to_frame(self._read_table(query), query.columns)

    def _read_table(self, query: WindowQuery) -> pa.Table:
        """The window whole, sorted by (timestamp, id), at most `query.limit` rows."""
        wanted = _with_keys(query.columns, (self._ts, self._id))
        table = self._scan(wanted, partial(window_filter, query, self._ts, self._id))
        table = table.sort_by([(self._ts, "ascending"), (self._id, "ascending")])
        return table.slice(0, query.limit) if query.limit is not None else table

    def scan(self, query: WindowQuery) -> Iterator[pd.DataFrame]:
        """The window's rows (only `query.columns`) as frames of at most BATCH_ROWS rows, in file
        order; categorical text stays Arrow-backed (`string[pyarrow]`), no Python str per value.
        A query with a limit needs the whole window ordered: it is read with read() instead."""
        text = [c for c in query.columns if c in self._categorical]
        for table in self.scan_arrow(query):
            yield _to_frame(_plain_text(table), query.columns, text=text)

    def scan_arrow(self, query: WindowQuery) -> Iterator[pa.Table]:
        """scan() without the conversion to pandas: Arrow tables of the columns in
        `query.columns` order. Categorical text stored as Parquet strings comes dictionary-encoded
        (decoded once per distinct value, not per row); other text as Arrow strings.
        monitor.check.stream counts and samples these, converting only the rows its sample keeps."""
        if query.limit is not None:
            table = self._read_table(query)
            if table.num_rows:
                yield table.select(list(query.columns))
            return
        wanted = _with_keys(query.columns, (self._ts, self._id))
        filter_for = partial(window_filter, query, self._ts, self._id)
        schemas: dict[Path, pa.Schema] = {}
        for origin, table in self._batches(wanted, filter_for):
            schema = _plain_schema(table.schema)
            if schemas.get(origin) != schema:  # a text file read whole after its stream failed has its own types
                schemas[origin] = schema
                self._unified(list(schemas.values()))
            if table.num_rows:
                yield table.select(list(query.columns))

    def read_ids(self, columns: tuple[str, ...], ids: Sequence[str | int]) -> pd.DataFrame:
        wanted = _with_keys(columns, (self._id,))
        if not ids:
            return _empty(columns, self._ts)
        table = self._scan(wanted, partial(ids_filter, ids, self._id))
        keys = [(c, "ascending") for c in (self._ts, self._id) if c in wanted]
        return _to_frame(table.sort_by(keys), columns)

    def null_timestamps(self) -> int:
        """Parquet answers from its column statistics; other files are read and parsed."""
        nulls = 0
        for fmt, group in _by_format(self._files(), self._format).items():
            for path in group:
                counted = parquet_null_count(path, self._ts) if fmt == "parquet" else None
                if counted is None:
                    if fmt == "parquet":
                        tables = [read_parquet_group([path], parquet_schema(path, [self._ts]), [self._ts], None)]
                    else:
                        tables = list(stream_text_file(path, fmt, [self._ts], self._categorical))
                    counted = sum(self._normalize(table, path)[self._ts].null_count for table in tables)
                nulls += counted
        return nulls

    # --- scanning ------------------------------------------------------------------------

    def close(self) -> None:
        """Nothing to release: every read opens and closes its files."""

    def _scan(self, wanted: list[str], filter_for: FilterFor) -> pa.Table:
        files = self._files()
        tables = []
        for fmt, group in _by_format(files, self._format).items():
            if fmt == "parquet":
                tables.extend(self._scan_parquet(group, wanted, filter_for))
            else:
                for path in group:
                    table = self._normalize(read_text_file(path, fmt, wanted, self._categorical), path)
                    tables.append(apply_filter(table, filter_for))
        if not tables:
            return _empty_table(wanted, self._ts)
        try:
            return pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise self._schema_conflict(exc) from None

    def _schema_conflict(self, exc: Exception) -> SourceError:
        return SourceError(
            f"files matching {self._pattern} disagree on column types ({exc}); make every file write each column with the same type",
            kind="schema",
        )

    def _batches(self, wanted: list[str], filter_for: FilterFor) -> Iterator[tuple[Path, pa.Table]]:
        """Batches, each with the file (or first file of a group read alike) it came from."""
        for fmt, group in _by_format(self._files(), self._format).items():
            if fmt == "parquet":
                yield from self._parquet_batches(group, wanted, filter_for)
                continue
            for path in group:  # text files have no row groups to skip: streamed in blocks, handed on in slices
                for block in stream_text_file(path, fmt, wanted, self._categorical):
                    table = apply_filter(self._normalize(block, path), filter_for)
                    for offset in range(0, table.num_rows, BATCH_ROWS):
                        yield path, table.slice(offset, BATCH_ROWS)

    def _parquet_batches(self, paths: list[Path], wanted: list[str], filter_for: FilterFor) -> Iterator[tuple[Path, pa.Table]]:
        groups: dict[tuple[tuple[str, str], ...], list[Path]] = {}
        schemas: dict[tuple[tuple[str, str], ...], pa.Schema] = {}
        for path in paths:  # as in _scan_parquet: files agreeing on the physical types scan together
            schema = parquet_schema(path, wanted)
            key = tuple((f.name, str(f.type)) for f in schema)
            groups.setdefault(key, []).append(path)
            schemas[key] = schema
        for key, group in groups.items():
            schema = schemas[key]
            pushdown = filter_for(schema) if pushable(schema, self._ts) else None
            text = [f.name for f in schema if f.name in self._categorical and pa.types.is_string(f.type)]
            for batch in stream_parquet_group(group, schema, wanted, pushdown, dictionary=text, batch_rows=BATCH_ROWS):
                table = self._normalize(batch, group[0])
                # The pushed-down filter is exact (window_filter floors to the stored unit), so
                # only text timestamps, parsed after reading, are filtered here.
                yield group[0], table if pushdown is not None else apply_filter(table, filter_for)

    def _unified(self, schemas: list[pa.Schema]) -> None:
        """What read() finds when it concatenates the files: column types that cannot be merged."""
        if len(schemas) < 2 or all(s == schemas[0] for s in schemas[1:]):
            return
        try:
            pa.unify_schemas(schemas, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise self._schema_conflict(exc) from None

    def _scan_parquet(self, paths: list[Path], wanted: list[str], filter_for: FilterFor) -> list[pa.Table]:
        # Files with the same physical types for the wanted columns are scanned as one
        # dataset; differing files (e.g. an id that was int32 last month) get their own.
        groups: dict[tuple[tuple[str, str], ...], list[Path]] = {}
        schemas: dict[tuple[tuple[str, str], ...], pa.Schema] = {}
        for path in paths:
            schema = parquet_schema(path, wanted)
            key = tuple((f.name, str(f.type)) for f in schema)
            groups.setdefault(key, []).append(path)
            schemas[key] = schema
        tables = []
        for key, group in groups.items():
            schema = schemas[key]
            pushdown = filter_for(schema) if pushable(schema, self._ts) else None
            table = read_parquet_group(group, schema, wanted, pushdown)
            table = self._normalize(table, group[0])
            tables.append(apply_filter(table, filter_for))
        return tables

    def _normalize(self, table: pa.Table, path: Path) -> pa.Table:
        """Timestamps to UTC nanoseconds, categorical features to text, as every file must agree."""
        for name in table.column_names:
            column = table[name]
            if name == self._ts:
                column = _utc_timestamps(column, name, path)
            elif name in self._categorical and not _is_text(column.type):
                column = _as_text(column)
            else:
                continue
            table = table.set_column(table.schema.get_field_index(name), name, column)
        return table

    def _files(self) -> list[Path]:
        matches = sorted(Path(p) for p in glob.glob(self._pattern, recursive=True) if os.path.isfile(p))
        if not matches:
            root = _glob_root(self._pattern)
            if not root.is_dir():
                raise SourceError(
                    f"no prediction logs at {self._pattern}: directory {root} does not exist "
                    "(check source.path in the configuration, or mount the log volume)",
                    kind="unreachable",
                )
        return matches


# --- helpers ---------------------------------------------------------------------------


def _with_keys(columns: Sequence[str], keys: Sequence[str]) -> list[str]:
    """The requested columns plus the keys needed to filter and order (each once)."""
    return list(dict.fromkeys([*columns, *keys]))


def _glob_root(pattern: str) -> Path:
    """The longest leading directory of `pattern` with no wildcard in it."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    else:
        fixed = fixed[:-1]  # no wildcard: the pattern names a file; its directory must exist
    return Path(*fixed) if fixed else Path(".")


def _by_format(files: list[Path], configured: str | None) -> dict[str, list[Path]]:
    groups: dict[str, list[Path]] = {}
    for path in files:
        fmt = configured or _format_of(path)
        groups.setdefault(fmt, []).append(path)
    return groups


def _format_of(path: Path) -> str:
    name = path.name.lower()
    for suffix, fmt in sorted(_SUFFIXES.items(), key=lambda item: -len(item[0])):
        if name.endswith(suffix):
            return fmt
    raise SourceError(
        f"cannot tell the format of {path} from its extension; name files *.parquet, *.csv or "
        "*.jsonl, set source.format, or narrow source.path so it matches only log files",
        kind="schema",
    )


def _utc_timestamps(column: pa.ChunkedArray, name: str, path: Path) -> pa.ChunkedArray:
    kind = column.type
    if pa.types.is_timestamp(kind):
        # Casting a zone-less timestamp to tz=UTC keeps its wall-clock values: naive means UTC.
        return column.cast(pa.timestamp("ns", tz=kind.tz)).cast(_UTC_NS)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind):
        values = column.to_pandas()
        try:
            parsed = pd.to_datetime(values, utc=True, format="ISO8601")
        except (ValueError, TypeError):
            bad = _first_unparsable(values)
            raise SourceError(
                f"timestamp column {name!r} in {path} holds {bad!r}, which is not an ISO-8601 time "
                "(write e.g. 2024-05-01T12:00:00Z)",
                kind="schema",
            ) from None
        return pa.chunked_array([pa.array(parsed.astype("datetime64[ns, UTC]"), type=_UTC_NS)])
    raise SourceError(
        f"timestamp column {name!r} in {path} has type {kind}; store times as timestamps or ISO-8601 text",
        kind="schema",
    )


def _first_unparsable(values: pd.Series) -> object:
    for value in values.dropna():
        try:
            pd.to_datetime(value, utc=True, format="ISO8601")
        except (ValueError, TypeError):
            return value
    return None


def _as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_floating(column.type):
        # A code column with gaps is float in Parquet (7.0); its text must still be "7".
        whole = pc.all(pc.equal(column, pc.floor(column))).as_py() is not False
        if whole:
            return column.cast(pa.int64()).cast(pa.string())
    return column.cast(pa.string())


def _is_text(kind: pa.DataType) -> bool:
    """Arrow text: strings, or strings dictionary-encoded (as a Parquet text column is streamed)."""
    return pa.types.is_string(kind) or (pa.types.is_dictionary(kind) and pa.types.is_string(kind.value_type))


def _plain_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` with dictionary-encoded text as plain strings (what read() finds)."""
    return pa.schema([pa.field(f.name, f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in schema])


def _plain_text(table: pa.Table) -> pa.Table:
    """`table` with dictionary-encoded text decoded to plain strings."""
    for index, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            table = table.set_column(index, field.name, table[field.name].cast(field.type.value_type))
    return table


def _empty_table(columns: Sequence[str], ts_name: str) -> pa.Table:
    return pa.table({c: pa.array([], type=_UTC_NS if c == ts_name else pa.null()) for c in columns})


def _empty(columns: Sequence[str], ts_name: str) -> pd.DataFrame:
    return _to_frame(_empty_table(columns, ts_name), columns)


def _to_frame(table: pa.Table, columns: Sequence[str], *, text: Sequence[str] = ()) -> pd.DataFrame:
    """The columns as pandas; those in `text` as Arrow-backed strings (a million rows of Python
    str objects cost seconds further on, Arrow strings nothing)."""
    arrow_text = [c for c in text if pa.types.is_string(table.schema.field(c).type)]
    frame = table.select([c for c in columns if c not in arrow_text]).to_pandas()
    for name in arrow_text:
        frame[name] = table[name].to_pandas(types_mapper=_ARROW_TEXT.get)
    frame = frame[list(columns)] if arrow_text else frame
    for name in frame.columns:
        if frame[name].dtype.kind == "M":
            frame[name] = frame[name].astype("datetime64[ns, UTC]")
    return frame.reset_index(drop=True)


_ARROW_TEXT = {pa.string(): pd.StringDtype("pyarrow")}
