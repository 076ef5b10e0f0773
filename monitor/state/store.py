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
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from monitor.core.clock import Clock, SystemClock
from monitor.core.records import NO_AUDIT, Audit, CheckRecord, RetrainJob, Seen, decode
from monitor.core.redact import mask, url_secrets
from monitor.core.results import CheckResult, CheckStatus, Estimate, EstimatedQuality, Quality, VersionQuality, Watermark
from monitor.core.statuses import JobStatus, RetrainOutcome, values
from monitor.state.engine import StateError as StateError  # raised by every store method; importers take it from here
from monitor.state.engine import create_engine, explain
from monitor.state.schema import MIGRATIONS, SCHEMA_VERSION, alerts, checks, decisions, retrain_jobs, seen_keys, versions, watermarks

JOB_STATUSES = values(JobStatus)
ACTIVE_JOB_STATUSES = tuple(s.value for s in JobStatus if s.active)
JOB_OUTCOMES = values(RetrainOutcome)

_MIGRATE_LOCK_KEY = 0x647269667464  # "driftd"


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
        self._engine = create_engine(url, self._url_masked)
        self._is_sqlite = self._engine.dialect.name == "sqlite"
        self._in_memory = self._is_sqlite and self._engine.url.database in (None, "", ":memory:")
        # SQLite has one writer at a time anyway; serialising in-process turns lock waits
        # into plain queueing and makes the single shared connection of :memory: safe.
        self._lock: AbstractContextManager[Any] = threading.RLock() if self._is_sqlite else nullcontext()
        # Reads need no lock on a file (WAL readers never block), only on :memory:'s one connection.
        self._read_lock: AbstractContextManager[Any] = self._lock if self._in_memory else nullcontext()
        # Set by a leader (monitor.state.lease): every write transaction starts with it, and it raises
        # when another replica has taken the lease since.
        self.fence: Callable[[Connection], int] | None = None
        try:
            with self._engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except SQLAlchemyError as exc:
            self._engine.dispose()
            raise StateError(explain(exc, "cannot connect to", self._url_masked, self._secrets)) from None

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def url(self) -> str:
        """The URL with its password masked, safe to log."""
        return self._url_masked

    @property
    def shared(self) -> bool:
        """Several daemons may share it (PostgreSQL); SQLite state is single-instance."""
        return not self._is_sqlite

    @property
    def sqlite_file(self) -> str | None:
        """The SQLite database file, None for PostgreSQL or :memory:."""
        return None if not self._is_sqlite or self._in_memory else self._engine.url.database

    # --- lifecycle ---

    def migrate(self) -> None:
        """Create the schema on first start, or upgrade it; a no-op when up to date."""
        with self._tx(fenced=False) as conn:
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
                MIGRATIONS[version](conn)
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
        with self._tx(fenced=False) as conn:
            token = self.fence(conn) if self.fence is not None else None
            # RETURNING, not rowcount: psycopg reports rowcount -1 for INSERT ... ON CONFLICT DO NOTHING.
            stmt = self._insert(checks).values({**self._check_row(result), "token": token}).on_conflict_do_nothing(index_elements=["check_id"])
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
    def _tx(self, write: bool = True, fenced: bool = True) -> Iterator[Connection]:
        """One transaction; database failures become StateError naming the (masked) database.
        A leader's write transaction starts with its fence (`fenced=False`: the caller calls it).

        On SQLite only a write transaction takes the write lock up front (BEGIN IMMEDIATE);
        a read is a deferred transaction, which in WAL mode neither waits for nor blocks writers."""
        with self._lock if write else self._read_lock:
            try:
                with self._engine.connect() as conn:
                    conn = conn.execution_options(driftd_write=write)
                    with conn.begin():
                        if write and fenced and self.fence is not None:
                            self.fence(conn)
                        yield conn
            except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.ProgrammingError) as exc:
                raise StateError(explain(exc, "query failed on", self._url_masked, self._secrets)) from None

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
