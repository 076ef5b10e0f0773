"""The state database's tables and the migrations that build and upgrade them (monitor.state.store
runs them; `schema_version` records how far a database has come).

Version N's step upgrades a database at version N-1: append steps, never edit a released one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.core.config import MODEL_NAME_MAX_LENGTH

SCHEMA_VERSION = 4
_NAME = MODEL_NAME_MAX_LENGTH  # every `model` column holds a configured model name


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Stores tz-aware datetimes as UTC and returns them tz-aware.

    SQLite has no time zones and would hand back naive values; a naive input is refused
    because guessing its zone would silently shift a watermark.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"refusing to store naive datetime {value.isoformat()}: pass a timezone-aware UTC time")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


metadata = sa.MetaData()

versions = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", UTCDateTime, nullable=False),
)

watermarks = sa.Table(
    "watermarks",
    metadata,
    sa.Column("model", sa.String(_NAME), primary_key=True),
    sa.Column("ts", UTCDateTime, nullable=False),  # for people; microseconds
    # Nanoseconds since the epoch: Parquet timestamps carry them, and a watermark cut to
    # microseconds would hand the window's last rows to the next window again.
    sa.Column("ts_ns", sa.BigInteger, nullable=False),
    sa.Column("id", sa.Text, nullable=False),  # JSON, so an int id comes back as int
    sa.Column("check_id", sa.String(200), nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # Rows at or before this (ns) are no longer audited for late arrival (monitor.check.late).
    sa.Column("audit_from_ns", sa.BigInteger),
)

# The keys (64-bit hashes of (timestamp, id)) each window checked inside the look-back.
seen_keys = sa.Table(
    "seen_keys",
    metadata,
    sa.Column("check_id", sa.String(200), primary_key=True),
    sa.Column("model", sa.String(_NAME), nullable=False),
    sa.Column("min_ts_ns", sa.BigInteger, nullable=False),
    sa.Column("max_ts_ns", sa.BigInteger, nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("hashes", sa.LargeBinary, nullable=False),
    sa.Index("ix_seen_keys_model_max", "model", "max_ts_ns"),
)

checks = sa.Table(
    "checks",
    metadata,
    sa.Column("check_id", sa.String(200), primary_key=True),
    sa.Column("model", sa.String(_NAME), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("window_start", UTCDateTime),
    sa.Column("window_end", UTCDateTime, nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("rows_used", sa.Integer, nullable=False),
    sa.Column("drifted_share", sa.Float, nullable=False),
    sa.Column("dataset_drifted", sa.Boolean, nullable=False),
    sa.Column("quality", sa.Text),
    sa.Column("result", sa.Text, nullable=False),
    sa.Column("message", sa.Text),
    sa.Column("estimated", sa.Text),  # JSON of the label-free estimate (schema 3)
    sa.Column("token", sa.BigInteger),  # the leader's fencing token it was committed under (schema 4; monitor.state.lease)
    sa.Index("ix_checks_model_started", "model", "started_at"),
)

decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(_NAME), nullable=False),
    sa.Column("check_id", sa.String(200)),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("action", sa.String(200), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Index("ix_decisions_model_at", "model", "at"),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("model", sa.String(_NAME), primary_key=True),
    sa.Column("alert", sa.String(200), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("since", UTCDateTime, nullable=False),
    sa.Column("last_sent_at", UTCDateTime),
    sa.CheckConstraint("state IN ('firing', 'resolved')", name="ck_alerts_state"),
)

# Which replica leads, until when, under which fencing token (monitor.state.lease; schema 4).
leader_lease = sa.Table(
    "leader_lease",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(253), nullable=False),
    sa.Column("token", sa.BigInteger, nullable=False),
    sa.Column("acquired_at", UTCDateTime, nullable=False),
    sa.Column("renewed_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)

_ACTIVE_SQL = "status IN ('queued', 'running')"
retrain_jobs = sa.Table(
    "retrain_jobs",
    metadata,
    sa.Column("job_id", sa.String(200), primary_key=True),
    sa.Column("model", sa.String(_NAME), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("outcome", sa.String(16)),
    sa.Column("reason", sa.Text),
    sa.Column("trigger_check_id", sa.String(200)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("started_at", UTCDateTime),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("run_id", sa.String(200)),
    sa.Column("version", sa.String(200)),
    sa.CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed')", name="ck_retrain_jobs_status"),
    sa.Index("ix_retrain_jobs_model_created", "model", "created_at"),
    # The database, not a read-then-insert, enforces one active job per model: two threads
    # or two processes racing to start a retrain cannot both win.
    sa.Index(
        "ux_retrain_jobs_one_active",
        "model",
        unique=True,
        sqlite_where=sa.text(_ACTIVE_SQL),
        postgresql_where=sa.text(_ACTIVE_SQL),
    ),
)


def _migrate_to_1(conn: Connection) -> None:
    metadata.create_all(conn, tables=[watermarks, checks, decisions, alerts, retrain_jobs])


def _migrate_to_2(conn: Connection) -> None:
    # Late-row bookkeeping. Windows recorded before it kept no keys: auditing starts at the
    # current watermark, so no row already checked is taken for a late one.
    if "audit_from_ns" not in {c["name"] for c in sa.inspect(conn).get_columns("watermarks")}:
        conn.execute(sa.text("ALTER TABLE watermarks ADD COLUMN audit_from_ns BIGINT"))
    conn.execute(sa.update(watermarks).where(watermarks.c.audit_from_ns.is_(None)).values(audit_from_ns=watermarks.c.ts_ns))
    seen_keys.create(conn, checkfirst=True)


def _migrate_to_3(conn: Connection) -> None:
    # Label-free quality estimates, queried by the policy beside realized quality. Older checks
    # have none (NULL), which the policy reads as "not estimated".
    if "estimated" not in {c["name"] for c in sa.inspect(conn).get_columns("checks")}:
        conn.execute(sa.text("ALTER TABLE checks ADD COLUMN estimated TEXT"))


def _migrate_to_4(conn: Connection) -> None:
    # Leadership among replicas: the lease row, and each check's fencing token (NULL before,
    # and on SQLite, which has one writer).
    if "token" not in {c["name"] for c in sa.inspect(conn).get_columns("checks")}:
        conn.execute(sa.text("ALTER TABLE checks ADD COLUMN token BIGINT"))
    leader_lease.create(conn, checkfirst=True)


# Version N's step upgrades a database at version N-1. Append, never edit a released step.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _migrate_to_1, 2: _migrate_to_2, 3: _migrate_to_3, 4: _migrate_to_4}
