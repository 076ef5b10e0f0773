"""driftd's own state: watermarks, check history, decisions, alert states and retrain jobs.

SQLAlchemy Core over SQLite (the embedded default) or PostgreSQL, chosen by URL only.
A window's check row, its new watermark and the keys it checked inside the look-back (see
monitor.check.late) commit in one transaction, so a crash between them can neither skip a window
nor a late row, nor count either twice.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from monitor.core.clock import Clock, SystemClock
from monitor.core.config import MODEL_NAME_MAX_LENGTH
from monitor.core.records import NO_AUDIT, Audit, CheckRecord, RetrainJob, Seen, decode
from monitor.core.redact import mask, url_secrets
from monitor.core.results import CheckResult, CheckStatus, Estimate, EstimatedQuality, Quality, VersionQuality, Watermark
from monitor.core.statuses import JobStatus, RetrainOutcome, values

SCHEMA_VERSION = 3
_NAME = MODEL_NAME_MAX_LENGTH  # every `model` column holds a configured model name

JOB_STATUSES = values(JobStatus)
ACTIVE_JOB_STATUSES = tuple(s.value for s in JobStatus if s.active)
JOB_OUTCOMES = values(RetrainOutcome)

# SQLite waits this long for another writer (e.g. `driftd check` beside the daemon).
_SQLITE_BUSY_TIMEOUT_S = 30
_PG_CONNECT_TIMEOUT_S = 10
_MIGRATE_LOCK_KEY = 0x647269667464  # "driftd"


class StateError(Exception):
    """The state database cannot be used; the message says which one (password masked) and what to do."""


# --- rows crossing the boundary ----------------------------------------------------------


@dataclass(frozen=True)
class DecisionRecord:
    id: int
    model: str
    check_id: str | None
    at: datetime
    action: str
    reason: str


@dataclass(frozen=True)
class AlertRecord:
    model: str
    alert: str
    state: str  # firing | resolved
    since: datetime
    last_sent_at: datetime | None

    @property
    def firing(self) -> bool:
        return self.state == "firing"


# --- schema ------------------------------------------------------------------------------


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


# Version N's step upgrades a database at version N-1. Append, never edit a released step.
_MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _migrate_to_1, 2: _migrate_to_2, 3: _migrate_to_3}


# --- helpers -----------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """numpy scalars (from a DataFrame) as plain Python, so an int id stays an int in JSON."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} {value!r} as JSON")


def _quality_json(quality: Quality | None) -> str | None:
    if quality is None:
        return None
    data = dataclasses.asdict(quality)
    return json.dumps(data, default=_plain)


def _quality_from_json(text: str | None) -> Quality | None:
    if text is None:
        return None
    data = json.loads(text)
    others = tuple(
        VersionQuality(str(o["version"]), int(o["labelled_rows"]), {k: float(v) for k, v in o["metrics"].items()}, o.get("validation_score"))
        for o in data.get("others") or ()
    )  # fmt: skip
    return Quality(int(data["labelled_rows"]), float(data["labelled_ratio"]), {k: float(v) for k, v in data["metrics"].items()},
                   data.get("version"), others)


def _estimated_json(estimated: EstimatedQuality | None) -> str | None:
    return None if estimated is None else json.dumps(dataclasses.asdict(estimated), default=_plain)


def _estimated_from_json(text: str | None) -> EstimatedQuality | None:
    if text is None:
        return None
    data = json.loads(text)
    estimates = tuple(Estimate(**e) for e in data["estimates"])  # NaN round-trips as JSON's NaN
    return EstimatedQuality(data["method"], estimates, int(data["rows"]), int(data["skipped_rows"]))


def _check_record(row: sa.Row[Any]) -> CheckRecord:
    result = json.loads(row.result)
    drifted = tuple(f["feature"] for f in result.get("features") or [] if f.get("drifted"))
    return CheckRecord(
        check_id=row.check_id,
        model=row.model,
        status=CheckStatus(row.status),
        started_at=row.started_at,
        window_start=row.window_start,
        window_end=row.window_end,
        rows=row.rows,
        rows_used=row.rows_used,
        drifted_share=row.drifted_share,
        dataset_drifted=bool(row.dataset_drifted),
        quality=_quality_from_json(row.quality),
        message=row.message,
        drifted_features=drifted,
        late_rows=int(result.get("late_rows") or 0),
        estimated=_estimated_from_json(row.estimated),
        reference_version=result.get("reference_version"),
        multivariate_drifted=bool((result.get("multivariate") or {}).get("drifted")),
    )


def _retrain_job(row: sa.Row[Any]) -> RetrainJob:
    return RetrainJob(**{c.name: getattr(row, c.name) for c in retrain_jobs.columns})


# --- the store ---------------------------------------------------------------------------


class StateStore:
    """Thread-safe access to driftd's state database. Call `migrate()` once at start-up."""

    def __init__(self, url: str, clock: Clock | None = None) -> None:
        self._secrets = url_secrets(url)
        self._url_masked = mask(url, self._secrets)
        self._clock = clock or SystemClock()
        self._engine = self._create_engine(url)
        self._is_sqlite = self._engine.dialect.name == "sqlite"
        self._in_memory = self._is_sqlite and self._engine.url.database in (None, "", ":memory:")
        # SQLite has one writer at a time anyway; serialising in-process turns lock waits
        # into plain queueing and makes the single shared connection of :memory: safe.
        self._lock: AbstractContextManager[Any] = threading.RLock() if self._is_sqlite else nullcontext()
        # Reads need no lock on a file (WAL readers never block), only on :memory:'s one connection.
        self._read_lock: AbstractContextManager[Any] = self._lock if self._in_memory else nullcontext()
        try:
            with self._engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except SQLAlchemyError as exc:
            self._engine.dispose()
            raise StateError(self._explain(exc, "cannot connect to")) from None

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def url(self) -> str:
        """The URL with its password masked, safe to log."""
        return self._url_masked

    # --- lifecycle ---

    def migrate(self) -> None:
        """Create the schema on first start, or upgrade it; a no-op when up to date."""
        with self._tx() as conn:
            if not self._is_sqlite:
                # Two daemons starting together must not both create the tables.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATE_LOCK_KEY})
            versions.create(conn, checkfirst=True)
            current = conn.execute(sa.select(sa.func.max(versions.c.version))).scalar() or 0
            if current > SCHEMA_VERSION:
                raise StateError(
                    f"state database {self._url_masked} has schema version {current}, newer than this "
                    f"driftd understands ({SCHEMA_VERSION}): upgrade driftd, or point state_url at another database"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                _MIGRATIONS[version](conn)
                conn.execute(sa.insert(versions).values(version=version, applied_at=self._now()))

    def schema_version(self) -> int:
        """The schema version recorded in the database (0 before the first `migrate()`)."""
        with self._tx(write=False) as conn:
            if not sa.inspect(conn).has_table("schema_version"):
                return 0
            return conn.execute(sa.select(sa.func.max(versions.c.version))).scalar() or 0

    def ping(self) -> bool:
        try:
            with self._engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except SQLAlchemyError:
            return False

    def close(self) -> None:
        self._engine.dispose()

    # --- watermarks and checks ---

    def watermark(self, model: str) -> Watermark | None:
        with self._tx(write=False) as conn:
            row = conn.execute(sa.select(watermarks.c.ts_ns, watermarks.c.id).where(watermarks.c.model == model)).first()
        return None if row is None else Watermark(pd.Timestamp(row.ts_ns, unit="ns", tz="UTC"), json.loads(row.id))

    def audit(self, model: str) -> Audit:
        """Where late-row auditing starts for `model` and the keys checked since (monitor.check.late)."""
        with self._tx(write=False) as conn:
            start = conn.execute(sa.select(watermarks.c.audit_from_ns).where(watermarks.c.model == model)).scalar()
            if start is None:
                return NO_AUDIT
            query = sa.select(seen_keys.c.hashes).where(seen_keys.c.model == model, seen_keys.c.max_ts_ns > start)
            blobs = [decode(row.hashes) for row in conn.execute(query)]
        hashes = np.sort(np.concatenate(blobs)) if blobs else np.empty(0, dtype=np.uint64)
        return Audit(pd.Timestamp(start, unit="ns", tz="UTC"), hashes)

    def seen_rows(self, model: str) -> int:
        """Keys the late-row bookkeeping holds for `model` (bounded by the look-back)."""
        with self._tx(write=False) as conn:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(seen_keys.c.rows), 0)).where(seen_keys.c.model == model)).scalar_one())

    def record_check(self, result: CheckResult, seen: Seen | None = None) -> None:
        """Store the check and, if it carries one, its new watermark and the keys it checked
        inside the look-back — all or nothing.

        Recording the same check_id again changes nothing, so a retried tick is harmless.
        """
        with self._tx() as conn:
            # RETURNING, not rowcount: psycopg reports rowcount -1 for INSERT ... ON CONFLICT DO NOTHING.
            stmt = self._insert(checks).values(self._check_row(result)).on_conflict_do_nothing(index_elements=["check_id"])
            inserted = conn.execute(stmt.returning(checks.c.check_id)).first() is not None
            if inserted and result.watermark is not None:
                audit_from = seen.audit_from_ns if seen is not None else pd.Timestamp(result.watermark.timestamp).value
                self._upsert_watermark(conn, result.model, result.watermark, result.check_id, audit_from)
                if seen is not None and len(seen.hashes):
                    conn.execute(sa.insert(seen_keys).values(
                        check_id=result.check_id, model=result.model, min_ts_ns=seen.min_ts_ns, max_ts_ns=seen.max_ts_ns,
                        rows=len(seen.hashes), hashes=seen.encoded()))
                conn.execute(sa.delete(seen_keys).where(seen_keys.c.model == result.model, seen_keys.c.max_ts_ns <= audit_from))

    def recent_checks(self, model: str, limit: int) -> list[CheckRecord]:
        """The model's last `limit` checks, newest first."""
        query = (
            sa.select(checks)
            .where(checks.c.model == model)
            .order_by(checks.c.started_at.desc(), checks.c.window_end.desc(), checks.c.check_id.desc())
            .limit(limit)
        )
        with self._tx(write=False) as conn:
            return [_check_record(row) for row in conn.execute(query)]

    # --- decisions ---

    def record_decision(self, model: str, check_id: str | None, action: str, reason: str) -> None:
        row = {"model": model, "check_id": check_id, "at": self._now(), "action": action, "reason": reason}
        with self._tx() as conn:
            conn.execute(sa.insert(decisions).values(row))

    def decisions(self, model: str, limit: int = 50) -> list[DecisionRecord]:
        """The model's last `limit` decisions, newest first."""
        query = sa.select(decisions).where(decisions.c.model == model).order_by(decisions.c.id.desc()).limit(limit)
        with self._tx(write=False) as conn:
            return [DecisionRecord(r.id, r.model, r.check_id, r.at, r.action, r.reason) for r in conn.execute(query)]

    # --- alerts ---

    def alert_state(self, model: str, alert: str) -> AlertRecord | None:
        query = sa.select(alerts).where(alerts.c.model == model, alerts.c.alert == alert)
        with self._tx(write=False) as conn:
            row = conn.execute(query).first()
        return None if row is None else AlertRecord(row.model, row.alert, row.state, row.since, row.last_sent_at)

    def set_alert_state(self, model: str, alert: str, firing: bool, at: datetime) -> None:
        """Record the alert's state; `since` moves only when the state actually changes."""
        state = "firing" if firing else "resolved"
        stmt = self._insert(alerts).values(model=model, alert=alert, state=state, since=at)
        stmt = stmt.on_conflict_do_update(
            index_elements=["model", "alert"],
            set_={"state": state, "since": sa.case((alerts.c.state == state, alerts.c.since), else_=stmt.excluded.since)},
        )
        with self._tx() as conn:
            conn.execute(stmt)

    def mark_alert_sent(self, model: str, alert: str, at: datetime) -> None:
        """Remember when a notification last went out, so repeats can be rate-limited."""
        stmt = sa.update(alerts).where(alerts.c.model == model, alerts.c.alert == alert).values(last_sent_at=at)
        with self._tx() as conn:
            if conn.execute(stmt).rowcount == 0:
                raise StateError(f"no alert {alert!r} recorded for model {model!r}: call set_alert_state first")

    # --- retrain jobs ---

    def create_retrain_job(self, model: str, trigger_check_id: str | None, reason: str) -> RetrainJob | None:
        """Queue a retrain; None when the model already has a queued or running job."""
        job = RetrainJob(
            job_id=uuid.uuid4().hex, model=model, status="queued", outcome=None, reason=reason,
            trigger_check_id=trigger_check_id, created_at=self._now(), started_at=None, finished_at=None,
            run_id=None, version=None,
        )  # fmt: skip
        try:
            with self._tx() as conn:
                conn.execute(sa.insert(retrain_jobs).values(dataclasses.asdict(job)))
        except IntegrityError:
            return None  # ux_retrain_jobs_one_active: another job is queued or running
        return job

    def update_retrain_job(
        self,
        job_id: str,
        *,
        status: str,
        outcome: str | None = None,
        reason: str | None = None,
        run_id: str | None = None,
        version: str | None = None,
    ) -> None:
        """Move a job on. `started_at`/`finished_at` are stamped on entering running/finished states;
        fields left as None keep their stored value."""
        if status not in JOB_STATUSES:
            raise ValueError(f"retrain job status {status!r} is not one of {list(JOB_STATUSES)}")
        if outcome is not None and outcome not in JOB_OUTCOMES:
            raise ValueError(f"retrain job outcome {outcome!r} is not one of {list(JOB_OUTCOMES)}")
        values: dict[str, Any] = {"status": status}
        given = {"outcome": outcome, "reason": reason, "run_id": run_id, "version": version}
        values.update({k: v for k, v in given.items() if v is not None})
        if status == "running":
            values["started_at"] = self._now()
        elif status in ("succeeded", "failed"):
            values["finished_at"] = self._now()
        with self._tx() as conn:
            if conn.execute(sa.update(retrain_jobs).where(retrain_jobs.c.job_id == job_id).values(values)).rowcount == 0:
                raise StateError(f"no retrain job with id {job_id!r} in {self._url_masked}")

    def retrain_jobs(self, model: str, since: datetime | None = None) -> list[RetrainJob]:
        """The model's jobs created at or after `since` (all when None), newest first."""
        query = sa.select(retrain_jobs).where(retrain_jobs.c.model == model)
        if since is not None:
            query = query.where(retrain_jobs.c.created_at >= since)
        query = query.order_by(retrain_jobs.c.created_at.desc(), retrain_jobs.c.job_id)
        with self._tx(write=False) as conn:
            return [_retrain_job(row) for row in conn.execute(query)]

    def active_retrain_job(self, model: str) -> RetrainJob | None:
        """The model's queued or running job, however old."""
        query = sa.select(retrain_jobs).where(retrain_jobs.c.model == model, retrain_jobs.c.status.in_(ACTIVE_JOB_STATUSES))
        with self._tx(write=False) as conn:
            row = conn.execute(query).first()
        return None if row is None else _retrain_job(row)

    def recover_interrupted_jobs(self) -> list[RetrainJob]:
        """Mark jobs a crash left queued/running as failed, and return them as now stored.

        Call once at start-up, before the scheduler runs: with several daemons sharing one
        database it would also fail the other daemons' live jobs.
        """
        active = retrain_jobs.c.status.in_(ACTIVE_JOB_STATUSES)
        with self._tx() as conn:
            stale = [_retrain_job(row) for row in conn.execute(sa.select(retrain_jobs).where(active))]
            finished = self._now()
            for job in stale:
                conn.execute(
                    sa.update(retrain_jobs)
                    .where(retrain_jobs.c.job_id == job.job_id, active)
                    .values(
                        status="failed",
                        outcome="failed",
                        reason=f"interrupted: driftd stopped while the job was {job.status}",
                        finished_at=finished,
                    )
                )
            ids = [job.job_id for job in stale]
            rows = conn.execute(sa.select(retrain_jobs).where(retrain_jobs.c.job_id.in_(ids)).order_by(retrain_jobs.c.created_at))
            return [_retrain_job(row) for row in rows]

    # --- internals ---

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[Connection]:
        """One transaction; database failures become StateError naming the (masked) database.

        On SQLite only a write transaction takes the write lock up front (BEGIN IMMEDIATE);
        a read is a deferred transaction, which in WAL mode neither waits for nor blocks writers."""
        with self._lock if write else self._read_lock:
            try:
                with self._engine.connect() as conn:
                    conn = conn.execution_options(driftd_write=write)
                    with conn.begin():
                        yield conn
            except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.ProgrammingError) as exc:
                raise StateError(self._explain(exc, "query failed on")) from None

    def _now(self) -> datetime:
        return self._clock.now()

    def _insert(self, table: sa.Table) -> Any:
        dialect = sqlite if self._is_sqlite else postgresql
        return dialect.insert(table)

    def _upsert_watermark(self, conn: Connection, model: str, mark: Watermark, check_id: str, audit_from_ns: int) -> None:
        stamp = pd.Timestamp(mark.timestamp)
        values = {"model": model, "ts": stamp.to_pydatetime(warn=False), "ts_ns": stamp.value,
                  "id": json.dumps(mark.id, default=_plain), "check_id": check_id, "updated_at": self._now(),
                  "audit_from_ns": audit_from_ns}
        stmt = self._insert(watermarks).values(values)
        conn.execute(stmt.on_conflict_do_update(index_elements=["model"], set_={k: stmt.excluded[k] for k in values if k != "model"}))

    @staticmethod
    def _check_row(result: CheckResult) -> dict[str, Any]:  # masked again: the table outlives any log
        return {
            "check_id": result.check_id,
            "model": result.model,
            "status": result.status.value,
            "started_at": result.started_at,
            "window_start": result.window_start,
            "window_end": result.window_end,
            "rows": result.rows,
            "rows_used": result.rows_used,
            "drifted_share": result.drifted_share,
            "dataset_drifted": result.dataset_drifted,
            "quality": _quality_json(result.quality),
            "result": mask(json.dumps(result.to_dict(), default=str)),
            "message": mask(result.message) if result.message else None,
            "estimated": _estimated_json(result.estimated),
        }

    def _create_engine(self, url: str) -> Engine:
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise StateError(
                f"state_url {self._url_masked} is not a database URL: write sqlite:///path/to/state.db "
                "or postgresql+psycopg://user@host:5432/dbname"
            ) from None
        if parsed.get_backend_name() not in ("sqlite", "postgresql"):
            raise StateError(f"state_url {self._url_masked}: driftd keeps its state in SQLite or PostgreSQL only")
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3 is the driver driftd ships
        try:
            if parsed.get_backend_name() == "sqlite":
                return self._sqlite_engine(parsed)
            return sa.create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": _PG_CONNECT_TIMEOUT_S})
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise StateError(f"state_url {self._url_masked}: {exc} (for PostgreSQL use postgresql+psycopg://)") from None

    @staticmethod
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

    def _explain(self, exc: SQLAlchemyError, what: str) -> str:
        detail = mask(str(getattr(exc, "orig", None) or exc).strip().splitlines()[0], self._secrets)
        if "no such table" in detail or ("relation" in detail and "does not exist" in detail):
            hint = "the schema is missing: start the daemon once (it runs StateStore.migrate()) before other commands"
        elif self._url_masked.startswith("sqlite") and ("locked" in detail or "busy" in detail):
            hint = (f"another process held the SQLite write lock for more than {_SQLITE_BUSY_TIMEOUT_S} s — a long "
                    "`driftd` command beside the daemon, or a stuck process; retry, and use PostgreSQL for "
                    "state shared by several processes")
        elif self._url_masked.startswith("sqlite"):
            hint = "check that the directory exists and is writable"
        else:
            hint = "check that PostgreSQL is running, the host/port/database are right and the user may connect"
        return f"{what} state database {self._url_masked}: {detail} ({hint})"
