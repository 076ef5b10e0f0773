"""Prediction logs in a SQL database: a table, or the user's own query used as a subquery.

Any SQLAlchemy URL works; PostgreSQL and SQLite are tested. The window is one statement,
`SELECT cols FROM <table | (query) AS src> WHERE (ts, id) > (:ts, :id) AND ts <= :until
ORDER BY ts, id LIMIT n`, built with SQLAlchemy Core: identifiers are quoted by the dialect and
every value is a bound parameter. An index on (ts, id) makes it cheap.

Timestamp storage:
- PostgreSQL: `timestamptz` or `timestamp` (zone-less values are taken as UTC; the session
  time zone is set to UTC so comparisons agree).
- SQLite has no time type: store ISO-8601 text in UTC, every row in the same fixed-width
  format — as SQLAlchemy's DateTime writes it (`2024-05-01 12:00:00.000000`) or e.g.
  `2024-05-01T12:00:00.000Z`. driftd reads the format from one row and compares text with
  text in that same format.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from monitor.core.clock import utc_timestamp
from monitor.core.config import Columns, SqlSource
from monitor.core.redact import mask, url_secrets
from monitor.sources import engines
from monitor.sources.base import Source, SourceError, WindowQuery

IDS_PER_QUERY = 10_000
BATCH_ROWS = 65_536  # rows fetched per round trip when a window is streamed
CONNECT_TIMEOUT_SECONDS = 5
_ISO_TEXT = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?P<sep>[T ])\d{2}:\d{2}:\d{2}(?P<frac>\.\d+)?(?P<zone>Z|[+-]\d{2}:?\d{2})?$"
)


class SqlLogSource(Source):
    """Reads windows of prediction logs from one table or query over the database's shared pooled Engine."""

    config_model = SqlSource
    scan_ordered = True  # scan() yields the rows in the database's (timestamp, id) order

    def __init__(self, cfg: SqlSource, columns: Columns) -> None:
        try:
            text = cfg.resolved_url()
        except ValueError as exc:  # an unreadable url_file: the message names the file, not a secret
            raise SourceError(f"source.url_file: {exc}", kind="unreachable") from None
        try:
            url = make_url(text)
        except (ArgumentError, ValueError):
            # The parse error would echo the URL, password included.
            raise SourceError(
                "source.url is not a valid SQLAlchemy URL (expected e.g. postgresql+psycopg://user@host:5432/db)",
                kind="unreachable",
            ) from None
        self._secrets = url_secrets(text)
        self._shown = mask(url.render_as_string(hide_password=False), self._secrets)
        self._ts = columns.timestamp
        self._id = columns.id
        self._table = cfg.table
        self._schema = cfg.db_schema
        self._query = cfg.query.strip().rstrip(";") if cfg.query else None
        self._engine: Engine | None = self._create_engine(url)
        self._sqlite_text: Callable[[pd.Timestamp], str] | None = None

    @property
    def where(self) -> str:
        """The source for messages: the masked URL and the table (never the password)."""
        target = f"table {self._qualified}" if self._table else "the configured query"
        return f"{target} at {self._shown}"

    def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engines.release(engine)

    def read(self, query: WindowQuery) -> pd.DataFrame:
        names = list(dict.fromkeys([*query.columns, self._ts, self._id]))
        with self._connect() as conn:
            stmt = self._window_statement(conn, query)
            return self._frame(self._execute(conn, stmt, {}, names), query.columns)

    def scan(self, query: WindowQuery) -> Iterator[pd.DataFrame]:
        """The window's rows as frames of at most BATCH_ROWS rows, in (timestamp, id) order,
        fetched through a server-side cursor (`stream_results`): the client never holds the
        whole window."""
        names = list(dict.fromkeys([*query.columns, self._ts, self._id]))
        with self._connect() as conn:
            stmt = self._window_statement(conn, query)
            streaming = conn.execution_options(stream_results=True, max_row_buffer=BATCH_ROWS)
            try:
                result = streaming.execute(stmt)
                while rows := result.fetchmany(BATCH_ROWS):
                    yield self._frame(rows, query.columns)
            except DBAPIError as exc:
                conn.rollback()
                raise self._diagnose(conn, names, exc) from None

    def _window_statement(self, conn: Connection, query: WindowQuery) -> sa.Select[Any]:
        names = list(dict.fromkeys([*query.columns, self._ts, self._id]))
        src = self._selectable(names)
        ts, key = src.c[self._ts], src.c[self._id]
        where = [ts <= self._bind_time(conn, query.until, "until")]
        if query.after is not None:
            after = self._bind_time(conn, query.after.timestamp, "after_ts")
            where.append(sa.tuple_(ts, key) > sa.tuple_(after, sa.bindparam("after_id", _plain(query.after.id))))
        elif query.since is not None:
            where.append(ts > self._bind_time(conn, query.since, "since"))
        if query.through is not None:
            through = self._bind_time(conn, query.through.timestamp, "through_ts")
            where.append(sa.tuple_(ts, key) <= sa.tuple_(through, sa.bindparam("through_id", _plain(query.through.id))))
        stmt = sa.select(*[src.c[n] for n in query.columns]).where(*where).order_by(ts, key)
        if query.limit is not None:
            stmt = stmt.limit(query.limit)
        return stmt

    def read_ids(self, columns: tuple[str, ...], ids: Sequence[str | int]) -> pd.DataFrame:
        names = list(dict.fromkeys([*columns, self._id]))
        values = [_plain(i) for i in ids]
        src = self._selectable(names)
        stmt = sa.select(*[src.c[n] for n in columns]).where(src.c[self._id].in_(sa.bindparam("ids", expanding=True)))
        rows: list[Sequence[Any]] = []
        with self._connect() as conn:
            for start in range(0, len(values), IDS_PER_QUERY):
                rows.extend(self._execute(conn, stmt, {"ids": values[start : start + IDS_PER_QUERY]}, names))
        frame = self._frame(rows, columns)
        keys = [c for c in (self._ts, self._id) if c in frame.columns]
        return frame.sort_values(keys, kind="stable").reset_index(drop=True)

    def null_timestamps(self) -> int:
        src = self._selectable([self._ts])
        stmt = sa.select(sa.func.count()).select_from(src).where(src.c[self._ts].is_(None))
        with self._connect() as conn:
            return int(self._execute(conn, stmt, {}, [self._ts])[0][0])

    # --- plumbing ------------------------------------------------------------------------

    @property
    def _qualified(self) -> str:
        return f"{self._schema}.{self._table}" if self._schema else str(self._table)

    def _create_engine(self, url: sa.URL) -> Engine:
        backend = url.get_backend_name()
        database = url.database or ""
        local = backend == "sqlite" and database not in ("", ":memory:") and not database.startswith("file:")
        if local and not Path(database).is_file():
            # Connecting would silently create an empty database file.
            raise SourceError(f"SQLite database file {database} does not exist (check source.url)", kind="unreachable")
        connect_args: dict[str, Any] = {}
        if backend == "postgresql" and url.get_driver_name() in ("psycopg", "psycopg2"):
            connect_args = {"connect_timeout": CONNECT_TIMEOUT_SECONDS, "options": "-c timezone=UTC"}
        elif backend in ("mysql", "mariadb"):
            connect_args = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
        try:
            return engines.acquire(
                url.render_as_string(hide_password=False),
                connect_args,
                lambda: sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args),
            )
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise SourceError(
                f"cannot use database URL {self._shown}: {self._scrub(exc)} (install the driver or fix source.url)",
                kind="unreachable",
            ) from None

    def _connect(self) -> Connection:
        if self._engine is None:
            raise SourceError(f"the source {self._shown} is closed (open it again)", kind="unreachable")
        try:
            return self._engine.connect()
        except (DBAPIError, SQLAlchemyError) as exc:
            raise SourceError(
                f"cannot connect to the prediction-log database at {self._shown}: {self._scrub(exc)}; "
                "check that it is running and reachable and that the credentials are right",
                kind="unreachable",
            ) from None

    def _selectable(self, names: Sequence[str]) -> sa.FromClause:
        cols: list[sa.ColumnClause[Any]] = [sa.column(n) for n in names]
        if self._table is not None:
            return sa.table(self._table, *cols, schema=self._schema)
        assert self._query is not None
        return sa.text(self._query).columns(*cols).subquery("src")

    def _execute(self, conn: Connection, stmt: sa.Executable, params: dict[str, Any], names: Sequence[str]) -> list[Any]:
        try:
            return list(conn.execute(stmt, params).all())
        except DBAPIError as exc:
            conn.rollback()
            raise self._diagnose(conn, names, exc) from None

    def _diagnose(self, conn: Connection, names: Sequence[str], exc: DBAPIError) -> SourceError:
        """Turn a failed read into the user's problem: a missing table or column, or the DB's words."""
        if exc.connection_invalidated:
            return SourceError(f"lost the connection to {self._shown}: {self._scrub(exc)}", kind="unreachable")
        probe: sa.Select[Any] = sa.select(sa.literal_column("*")).select_from(self._selectable([])).limit(0)
        try:
            present = list(conn.execute(probe).keys())
        except DBAPIError as probe_exc:
            conn.rollback()
            return SourceError(
                f"cannot read {self.where}: {self._scrub(probe_exc)} "
                "(check source.table / source.schema / source.query)",
                kind="schema",
            )
        missing = [n for n in names if n not in present]
        if missing:
            return SourceError(
                f"column {', '.join(repr(m) for m in missing)} missing from {self.where} "
                f"(it has: {', '.join(present)}); fix `columns` in the configuration or the source",
                kind="schema",
                missing=tuple(missing),
            )
        return SourceError(f"reading {self.where} failed: {self._scrub(exc)}", kind="read")

    def _bind_time(self, conn: Connection, value: datetime, name: str) -> sa.BindParameter[Any]:
        stamp = utc_timestamp(value).floor("us")  # no database here stores finer than microseconds
        if conn.dialect.name == "sqlite":
            return sa.bindparam(name, self._sqlite_formatter(conn)(stamp))
        return sa.bindparam(name, stamp.to_pydatetime())

    def _sqlite_formatter(self, conn: Connection) -> Callable[[pd.Timestamp], str]:
        if self._sqlite_text is not None:
            return self._sqlite_text
        src = self._selectable([self._ts])
        col = src.c[self._ts]
        sample = self._execute(conn, sa.select(col).where(col.is_not(None)).limit(1), {}, [self._ts])
        if not sample:
            return _text_format(" ", 6, "")  # SQLAlchemy DateTime's format; re-detected once rows exist
        self._sqlite_text = _sqlite_format_of(sample[0][0], self._ts, self.where)
        return self._sqlite_text

    def _frame(self, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> pd.DataFrame:
        frame = pd.DataFrame.from_records([tuple(r) for r in rows], columns=list(columns))
        if self._ts in frame.columns:
            try:
                frame[self._ts] = pd.to_datetime(frame[self._ts], utc=True, format="ISO8601").astype("datetime64[ns, UTC]")
            except (ValueError, TypeError):
                raise SourceError(
                    f"timestamp column {self._ts!r} in {self.where} holds values that are not times "
                    "(store timestamps, or ISO-8601 text in SQLite)",
                    kind="schema",
                ) from None
        return frame

    def _scrub(self, exc: BaseException) -> str:
        original = getattr(exc, "orig", None) or exc
        return mask(" ".join(str(original).split()) or type(original).__name__, self._secrets)


def _plain(value: Any) -> Any:
    """numpy scalars to Python ones: DB drivers adapt int, not numpy.int64."""
    return value.item() if hasattr(value, "item") else value


def _sqlite_format_of(sample: Any, column: str, where: str) -> Callable[[pd.Timestamp], str]:
    match = _ISO_TEXT.match(sample) if isinstance(sample, str) else None
    if match is None or match["zone"] not in (None, "Z", "+00:00", "+0000"):
        raise SourceError(
            f"timestamp column {column!r} in {where} holds {sample!r}; SQLite timestamps must be ISO-8601 "
            "text in UTC in one fixed format, e.g. '2024-05-01 12:00:00.000000' (SQLAlchemy DateTime)",
            kind="schema",
        )
    digits = len(match["frac"]) - 1 if match["frac"] else 0
    return _text_format(match["sep"], digits, match["zone"] or "")


def _text_format(sep: str, digits: int, zone: str) -> Callable[[pd.Timestamp], str]:
    def render(stamp: pd.Timestamp) -> str:
        text = stamp.strftime(f"%Y-%m-%d{sep}%H:%M:%S")
        if digits:
            # Truncation keeps `ts <= until` exact: stored values have exactly `digits` digits.
            text += "." + f"{stamp.microsecond:06d}{stamp.nanosecond:03d}"[:digits].ljust(digits, "0")
        return text + zone

    return render
