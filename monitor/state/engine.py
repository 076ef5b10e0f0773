"""Connecting to driftd's state database: the engine for SQLite or PostgreSQL, chosen by URL only,
and what a failure means for the user (the password masked, a hint what to do)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from monitor.core.redact import mask

# SQLite waits this long for another writer (e.g. `driftd check` beside the daemon).
_SQLITE_BUSY_TIMEOUT_S = 30
_PG_CONNECT_TIMEOUT_S = 10


class StateError(Exception):
    """The state database cannot be used; the message says which one (password masked) and what to do."""


def create_engine(url: str, url_masked: str) -> Engine:
    """An engine for SQLite or PostgreSQL (psycopg 3), or StateError saying what URL to write."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StateError(
            f"state_url {url_masked} is not a database URL: write sqlite:///path/to/state.db "
            "or postgresql+psycopg://user@host:5432/dbname"
        ) from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StateError(f"state_url {url_masked}: driftd keeps its state in SQLite or PostgreSQL only")
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3 is the driver driftd ships
    try:
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(parsed)
        return sa.create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": _PG_CONNECT_TIMEOUT_S})
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise StateError(f"state_url {url_masked}: {exc} (for PostgreSQL use postgresql+psycopg://)") from None

def _sqlite_engine(url: sa.URL) -> Engine:
    in_memory = url.database in (None, "", ":memory:")
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": _SQLITE_BUSY_TIMEOUT_S},
        poolclass=StaticPool if in_memory else None,
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, emit BEGIN (see _on_begin).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A write takes the lock up front (IMMEDIATE): a deferred transaction that reads and
        # then writes fails with "database is locked" instead of waiting when another
        # process (`driftd check` beside the daemon) wrote in between. Reads stay deferred.
        write = conn.get_execution_options().get("driftd_write", True)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine

def explain(exc: SQLAlchemyError, what: str, url_masked: str, secrets: Sequence[str]) -> str:
    """`what` failed on the database, with the driver's first line (secrets masked) and a hint."""
    detail = mask(str(getattr(exc, "orig", None) or exc).strip().splitlines()[0], secrets)
    if "no such table" in detail or ("relation" in detail and "does not exist" in detail):
        hint = "the schema is missing: start the daemon once (it runs StateStore.migrate()) before other commands"
    elif url_masked.startswith("sqlite") and ("locked" in detail or "busy" in detail):
        hint = (f"another process held the SQLite write lock for more than {_SQLITE_BUSY_TIMEOUT_S} s — a long "
                "`driftd` command beside the daemon, or a stuck process; retry, and use PostgreSQL for "
                "state shared by several processes")
    elif url_masked.startswith("sqlite"):
        hint = "check that the directory exists and is writable"
    else:
        hint = "check that PostgreSQL is running, the host/port/database are right and the user may connect"
    return f"{what} state database {url_masked}: {detail} ({hint})"
