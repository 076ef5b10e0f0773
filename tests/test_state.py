"""The state store on SQLite and on the real PostgreSQL (a fresh database per test)."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from monitor.core.results import CheckResult, CheckStatus, FeatureDrift, Quality, Watermark
from monitor.state.schema import SCHEMA_VERSION
from monitor.state.store import StateError, StateStore

PG_ADMIN_URL = os.environ.get("DRIFTD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def state_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    yield from _fresh_postgres_database()


def _fresh_postgres_database() -> Iterator[str]:
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"driftd_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL tests need a server at {PG_ADMIN_URL} (set DRIFTD_TEST_POSTGRES_URL, or run -m 'not integration'): {exc.orig}")
    try:
        yield sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


@pytest.fixture
def store(state_url: str) -> Iterator[StateStore]:
    store = StateStore(state_url)
    store.migrate()
    yield store
    store.close()


def check(
    check_id: str,
    model: str = "churn",
    *,
    minute: int = 0,
    mark: Watermark | None = None,
    status: CheckStatus = CheckStatus.OK,
    quality: Quality | None = None,
) -> CheckResult:
    started = T0 + timedelta(minutes=minute)
    drifted = status is CheckStatus.DRIFT
    return CheckResult(
        check_id=check_id,
        model=model,
        status=status,
        started_at=started,
        window_start=started - timedelta(hours=1),
        window_end=started,
        rows=1000,
        rows_used=800,
        features=(FeatureDrift("age", "numerical", "wasserstein", 0.3 if drifted else 0.01, 0.1, drifted),),
        drifted_share=1.0 if drifted else 0.0,
        dataset_drifted=drifted,
        quality=quality,
        watermark=mark,
    )


# --- schema ------------------------------------------------------------------------------


def test_migrate_creates_the_schema_once_and_keeps_data(state_url: str) -> None:
    store = StateStore(state_url)
    assert store.schema_version() == 0
    store.migrate()
    store.record_check(check("c1", mark=Watermark(T0, 1)))
    store.migrate()
    store.close()

    reopened = StateStore(state_url)
    reopened.migrate()
    assert reopened.schema_version() == SCHEMA_VERSION
    assert [c.check_id for c in reopened.recent_checks("churn", 10)] == ["c1"]
    assert set(sa.inspect(reopened.engine).get_table_names()) >= {
        "schema_version", "watermarks", "checks", "decisions", "alerts", "retrain_jobs",
    }  # fmt: skip
    reopened.close()


def test_a_database_from_a_newer_driftd_is_refused(store: StateStore) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO schema_version (version, applied_at) VALUES (:v, :t)"), {"v": SCHEMA_VERSION + 1, "t": T0})
    newer, ours = SCHEMA_VERSION + 1, SCHEMA_VERSION
    with pytest.raises(StateError, match=rf"schema version {newer}, newer than this driftd understands \({ours}\): upgrade driftd"):
        store.migrate()


def test_using_the_store_before_migrate_says_what_to_do(state_url: str) -> None:
    store = StateStore(state_url)
    with pytest.raises(StateError, match="schema is missing"):
        store.watermark("churn")
    store.close()


# --- connection errors never show the password -------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_postgres_is_a_clear_error_without_the_password() -> None:
    url = f"postgresql+psycopg://driftd:hunter2secret@127.0.0.1:{_closed_port()}/state"
    with pytest.raises(StateError) as err:
        StateStore(url)
    message = str(err.value)
    assert "hunter2secret" not in message
    assert "driftd:***@127.0.0.1" in message
    assert "check that PostgreSQL is running" in message


def test_sqlite_in_a_missing_directory_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(StateError, match="directory exists"):
        StateStore(f"sqlite:///{tmp_path / 'nope' / 'state.db'}")


def test_an_unsupported_database_is_refused_by_name() -> None:
    with pytest.raises(StateError, match="SQLite or PostgreSQL only") as err:
        StateStore("mysql://root:topsecret@db/driftd")
    assert "topsecret" not in str(err.value)


def test_ping(store: StateStore) -> None:
    assert store.ping() is True


# --- watermarks and checks ---------------------------------------------------------------


def test_watermark_keeps_the_id_type_and_utc(store: StateStore) -> None:
    berlin = timezone(timedelta(hours=1))
    store.record_check(check("c1", "by-int", mark=Watermark(T0, 42)))
    store.record_check(check("c2", "by-str", mark=Watermark(datetime(2026, 3, 1, 13, 0, 0, 123456, tzinfo=berlin), "0042")))

    by_int, by_str = store.watermark("by-int"), store.watermark("by-str")
    assert by_int == Watermark(T0, 42) and isinstance(by_int.id, int)
    assert by_str == Watermark(datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc), "0042")
    assert by_str.timestamp.tzinfo == timezone.utc
    assert store.watermark("never-checked") is None


def test_numpy_values_from_a_dataframe_are_stored_as_plain_numbers(store: StateStore) -> None:
    import numpy as np

    quality = Quality(labelled_rows=10, labelled_ratio=0.5, metrics={"f1": np.float32(0.5)})
    store.record_check(check("c1", mark=Watermark(T0, np.int64(12345678901)), quality=quality))  # type: ignore[arg-type]
    mark = store.watermark("churn")
    assert mark == Watermark(T0, 12345678901) and type(mark.id) is int
    assert store.recent_checks("churn", 1)[0].quality == Quality(10, 0.5, {"f1": 0.5})


def test_record_check_moves_the_watermark_forward(store: StateStore) -> None:
    store.record_check(check("c1", mark=Watermark(T0, 1)))
    store.record_check(check("c2", minute=15, mark=Watermark(T0 + timedelta(minutes=15), 9)))
    store.record_check(check("c3", minute=30, status=CheckStatus.ERROR))  # no rows read: watermark stays
    assert store.watermark("churn") == Watermark(T0 + timedelta(minutes=15), 9)


def test_a_failed_watermark_write_leaves_neither_check_nor_watermark(store: StateStore) -> None:
    store.record_check(check("c1", mark=Watermark(T0, 1)))

    def crash_on_watermark(conn, cursor, statement, parameters, context, executemany) -> None:
        if "watermarks" in statement and statement.lstrip().upper().startswith("INSERT"):
            raise RuntimeError("simulated crash between the check and its watermark")

    sa.event.listen(store.engine, "before_cursor_execute", crash_on_watermark)
    with pytest.raises(RuntimeError, match="simulated crash"):
        store.record_check(check("c2", minute=15, mark=Watermark(T0 + timedelta(minutes=15), 2)))
    sa.event.remove(store.engine, "before_cursor_execute", crash_on_watermark)

    assert [c.check_id for c in store.recent_checks("churn", 10)] == ["c1"]
    assert store.watermark("churn") == Watermark(T0, 1)
    # The retried tick then records the window exactly once.
    store.record_check(check("c2", minute=15, mark=Watermark(T0 + timedelta(minutes=15), 2)))
    assert [c.check_id for c in store.recent_checks("churn", 10)] == ["c2", "c1"]
    assert store.watermark("churn") == Watermark(T0 + timedelta(minutes=15), 2)


def test_a_naive_watermark_is_refused_and_nothing_is_written(store: StateStore) -> None:
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        store.record_check(check("c1", mark=Watermark(datetime(2026, 3, 1, 12, 0), 1)))
    assert store.recent_checks("churn", 10) == []
    assert store.watermark("churn") is None


def test_record_check_is_idempotent_on_check_id(store: StateStore) -> None:
    first = check("c1", mark=Watermark(T0, 1))
    store.record_check(first)
    # A replay of the same check must not count the window twice or move the watermark.
    store.record_check(check("c1", mark=Watermark(T0 + timedelta(hours=1), 99)))
    assert len(store.recent_checks("churn", 10)) == 1
    assert store.watermark("churn") == Watermark(T0, 1)


def test_recent_checks_are_newest_first_per_model_with_quality(store: StateStore) -> None:
    quality = Quality(labelled_rows=300, labelled_ratio=0.375, metrics={"f1": 0.8125, "accuracy": 0.9})
    store.record_check(check("old", minute=0))
    store.record_check(check("mid", minute=15, status=CheckStatus.DRIFT))
    store.record_check(check("new", minute=30, status=CheckStatus.INSUFFICIENT_DATA, quality=quality))
    store.record_check(check("other", "fraud", minute=45))

    records = store.recent_checks("churn", 2)
    assert [r.check_id for r in records] == ["new", "mid"]
    newest, drifted = records
    assert newest.status is CheckStatus.INSUFFICIENT_DATA and newest.quality == quality
    assert drifted.dataset_drifted and drifted.drifted_features == ("age",) and drifted.quality is None
    assert drifted.started_at == T0 + timedelta(minutes=15) and drifted.started_at.tzinfo == timezone.utc
    assert (drifted.rows, drifted.rows_used, drifted.drifted_share) == (1000, 800, 1.0)


def test_the_full_result_is_stored_as_json(store: StateStore) -> None:
    store.record_check(check("c1", status=CheckStatus.DRIFT, mark=Watermark(T0, "a")))
    with store.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT result FROM checks WHERE check_id = 'c1'")).scalar_one()
    assert '"method": "wasserstein"' in stored and '"watermark": {"timestamp": "2026-03-01T12:00:00+00:00", "id": "a"}' in stored


# --- decisions and alerts ----------------------------------------------------------------


def test_decisions_are_kept_newest_first(store: StateStore) -> None:
    store.record_decision("churn", "c1", "alert_fire", "2 of the last 3 windows drifted")
    store.record_decision("churn", None, "none", "no action because nothing drifted")
    store.record_decision("fraud", "f1", "retrain", "3 of 4")
    decisions = store.decisions("churn")
    assert [(d.check_id, d.action) for d in decisions] == [(None, "none"), ("c1", "alert_fire")]
    assert decisions[0].at.tzinfo == timezone.utc
    assert len(store.decisions("churn", limit=1)) == 1


def test_alert_state_keeps_since_until_the_state_changes(store: StateStore) -> None:
    assert store.alert_state("churn", "drift") is None
    store.set_alert_state("churn", "drift", True, T0)
    store.set_alert_state("churn", "drift", True, T0 + timedelta(hours=1))
    firing = store.alert_state("churn", "drift")
    assert firing is not None and firing.firing and firing.since == T0

    store.mark_alert_sent("churn", "drift", T0 + timedelta(minutes=5))
    store.set_alert_state("churn", "drift", False, T0 + timedelta(hours=2))
    resolved = store.alert_state("churn", "drift")
    assert resolved is not None and resolved.state == "resolved"
    assert resolved.since == T0 + timedelta(hours=2) and resolved.last_sent_at == T0 + timedelta(minutes=5)
    assert store.alert_state("churn", "quality") is None


# --- retrain jobs ------------------------------------------------------------------------


def test_one_active_retrain_job_per_model(store: StateStore) -> None:
    job = store.create_retrain_job("churn", "c1", "3 of 4 windows drifted")
    assert job is not None and job.status == "queued" and job.trigger_check_id == "c1"
    assert store.create_retrain_job("churn", "c2", "again") is None
    assert store.create_retrain_job("fraud", None, "manual") is not None

    store.update_retrain_job(job.job_id, status="running", run_id="run-1")
    assert store.create_retrain_job("churn", "c3", "again") is None
    store.update_retrain_job(job.job_id, status="succeeded", outcome="promoted", version="7")
    (done,) = store.retrain_jobs("churn")
    assert (done.status, done.outcome, done.run_id, done.version, done.reason) == ("succeeded", "promoted", "run-1", "7", "3 of 4 windows drifted")
    assert done.created_at <= done.started_at <= done.finished_at  # type: ignore[operator]
    assert store.create_retrain_job("churn", "c4", "next drift") is not None


def test_update_retrain_job_rejects_unknown_ids_and_statuses(store: StateStore) -> None:
    job = store.create_retrain_job("churn", None, "manual")
    assert job is not None
    with pytest.raises(ValueError, match="'done' is not one of"):
        store.update_retrain_job(job.job_id, status="done")
    with pytest.raises(StateError, match="no retrain job with id 'missing'"):
        store.update_retrain_job("missing", status="running")


def test_retrain_jobs_since_filters_by_creation(store: StateStore) -> None:
    first = store.create_retrain_job("churn", None, "first")
    assert first is not None
    store.update_retrain_job(first.job_id, status="failed", outcome="failed", reason="training crashed")
    second = store.create_retrain_job("churn", None, "second")
    assert second is not None
    assert [j.job_id for j in store.retrain_jobs("churn")] == [second.job_id, first.job_id]
    assert [j.job_id for j in store.retrain_jobs("churn", since=second.created_at)] == [second.job_id]
    assert store.retrain_jobs("churn", since=datetime.now(timezone.utc) + timedelta(minutes=1)) == []
    assert store.active_retrain_job("churn") == second


def test_restart_marks_interrupted_jobs_failed(state_url: str) -> None:
    before = StateStore(state_url)
    before.migrate()
    running = before.create_retrain_job("churn", "c1", "drift")
    queued = before.create_retrain_job("fraud", "f1", "drift")
    finished = before.create_retrain_job("credit", None, "manual")
    assert running and queued and finished
    before.update_retrain_job(running.job_id, status="running")
    before.update_retrain_job(finished.job_id, status="succeeded", outcome="rejected")
    before.close()  # the "crash"

    after = StateStore(state_url)
    after.migrate()
    recovered = {j.job_id: j for j in after.recover_interrupted_jobs()}
    assert set(recovered) == {running.job_id, queued.job_id}
    assert recovered[running.job_id].reason == "interrupted: driftd stopped while the job was running"
    assert recovered[queued.job_id].reason == "interrupted: driftd stopped while the job was queued"
    assert all(j.status == "failed" and j.outcome == "failed" and j.finished_at for j in recovered.values())
    assert after.retrain_jobs("credit")[0].outcome == "rejected"
    assert after.recover_interrupted_jobs() == []
    assert after.create_retrain_job("churn", "c2", "drift again") is not None
    after.close()


# --- concurrency -------------------------------------------------------------------------


def _run_threads(count: int, target) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def run(i: int) -> None:
        try:
            barrier.wait()
            target(i)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_concurrent_checks_from_threads_all_land(store: StateStore) -> None:
    per_thread = 20

    def write(i: int) -> None:
        for n in range(per_thread):
            minute = i * per_thread + n
            store.record_check(check(f"t{i}-{n}", f"model-{i % 3}", minute=minute, mark=Watermark(T0 + timedelta(minutes=minute), minute)))
            store.record_decision(f"model-{i % 3}", f"t{i}-{n}", "none", "no action because nothing drifted")

    assert _run_threads(6, write) == []
    assert sum(len(store.recent_checks(f"model-{m}", 1000)) for m in range(3)) == 6 * per_thread
    assert sum(len(store.decisions(f"model-{m}", 1000)) for m in range(3)) == 6 * per_thread
    # Each model's watermark is one its threads wrote, consistent with a recorded check.
    for m in range(3):
        mark = store.watermark(f"model-{m}")
        assert mark is not None and any(c.window_end == mark.timestamp for c in store.recent_checks(f"model-{m}", 1000))


def test_racing_threads_create_exactly_one_job(store: StateStore) -> None:
    created: list[str] = []
    errors = _run_threads(8, lambda i: (job := store.create_retrain_job("churn", f"c{i}", "race")) and created.append(job.job_id))
    assert errors == []
    assert len(created) == 1 and [j.job_id for j in store.retrain_jobs("churn")] == created


def test_two_stores_on_one_sqlite_file_do_not_lock_each_other_out(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    daemon, cli = StateStore(url), StateStore(url)
    daemon.migrate()

    def write(i: int) -> None:
        store = daemon if i % 2 else cli
        for n in range(15):
            store.record_check(check(f"s{i}-{n}", minute=i * 15 + n, mark=Watermark(T0 + timedelta(minutes=i * 15 + n), n)))
            store.set_alert_state("churn", "drift", n % 2 == 0, T0)

    assert _run_threads(4, write) == []
    assert len(cli.recent_checks("churn", 1000)) == 60
    daemon.close()
    cli.close()


def test_watermark_keeps_nanoseconds(tmp_path):
    # Parquet timestamps carry nanoseconds; a watermark cut to microseconds would re-read rows.
    import pandas as pd

    from monitor.core.results import CheckResult, CheckStatus, Watermark

    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    stamp = pd.Timestamp("2026-01-02T03:04:05.123456789Z")
    result = CheckResult(check_id="c1", model="m", status=CheckStatus.OK, started_at=stamp.to_pydatetime(warn=False),
                         window_start=None, window_end=stamp.to_pydatetime(warn=False), watermark=Watermark(stamp, 7))
    store.record_check(result)
    mark = store.watermark("m")
    assert pd.Timestamp(mark.timestamp).value == stamp.value and mark.id == 7
    store.close()


def test_reads_do_not_take_the_sqlite_write_lock(tmp_path) -> None:
    import sqlite3

    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = StateStore(url)
    store.migrate()
    store.record_check(check("c1", mark=Watermark(T0, 1)))
    holder = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process (e.g. `driftd check`) is writing
    try:
        # Each read would wait out the 30 s busy timeout and fail if it took the write lock.
        assert store.watermark("churn") == Watermark(T0, 1)
        assert [c.check_id for c in store.recent_checks("churn", 5)] == ["c1"]
        assert store.alert_state("churn", "drift") is None and store.retrain_jobs("churn") == []
        assert store.audit("churn").audit_from is not None
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        store.close()


def test_a_held_sqlite_lock_names_the_lock_not_the_directory(tmp_path, monkeypatch) -> None:
    import sqlite3

    import monitor.state.engine

    monkeypatch.setattr(monitor.state.engine, "_SQLITE_BUSY_TIMEOUT_S", 1)
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    holder = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StateError) as err:
            store.record_check(check("c1", mark=Watermark(T0, 1)))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        store.close()
    message = str(err.value)
    assert "database is locked" in message and "held the SQLite write lock" in message
    assert "directory exists" not in message


def test_a_version_1_database_is_upgraded_without_taking_checked_rows_for_late_ones(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = StateStore(url)
    store.migrate()
    store.record_check(check("c1", mark=Watermark(T0, 1)))
    with store.engine.begin() as conn:  # back to what driftd 1 left behind
        conn.exec_driver_sql("ALTER TABLE watermarks DROP COLUMN audit_from_ns")
        conn.exec_driver_sql("DROP TABLE seen_keys")
        conn.exec_driver_sql("ALTER TABLE checks DROP COLUMN estimated")
        conn.exec_driver_sql("DELETE FROM schema_version WHERE version >= 2")
    store.close()
    upgraded = StateStore(url)
    upgraded.migrate()
    assert upgraded.schema_version() == SCHEMA_VERSION
    audit = upgraded.audit("churn")
    assert audit.audit_from == T0 and len(audit.hashes) == 0  # auditing starts at the watermark
    upgraded.close()


def test_a_version_2_database_gains_the_estimates_column_and_keeps_its_checks(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = StateStore(url)
    store.migrate()
    store.record_check(check("c1", mark=Watermark(T0, 1)))
    with store.engine.begin() as conn:  # back to what driftd left behind before estimates (and leases)
        conn.exec_driver_sql("ALTER TABLE checks DROP COLUMN estimated")
        conn.exec_driver_sql("ALTER TABLE checks DROP COLUMN token")
        conn.exec_driver_sql("DROP TABLE leader_lease")
        conn.exec_driver_sql("DELETE FROM schema_version WHERE version >= 3")
    store.close()
    upgraded = StateStore(url)
    upgraded.migrate()
    assert upgraded.schema_version() == SCHEMA_VERSION == 4
    (old,) = upgraded.recent_checks("churn", 5)
    assert old.check_id == "c1" and old.estimated is None  # an old check was simply not estimated
    with upgraded.engine.connect() as conn:  # nor committed under a leader's fencing token
        assert conn.exec_driver_sql("SELECT token FROM checks").scalar() is None
        assert conn.exec_driver_sql("SELECT count(*) FROM leader_lease").scalar() == 0
    upgraded.close()


def test_a_model_name_as_long_as_the_config_allows_is_stored(store: StateStore) -> None:
    from monitor.core.config import MODEL_NAME_MAX_LENGTH

    name = "m" * MODEL_NAME_MAX_LENGTH
    store.record_check(check("long-1", model=name, mark=Watermark(T0, 1)))
    store.record_decision(name, "long-1", "none", "ok")
    store.set_alert_state(name, "DriftdDatasetDrift", True, T0)
    assert store.create_retrain_job(name, "long-1", "test") is not None
    assert store.watermark(name) == Watermark(T0, 1) and store.recent_checks(name, 1)[0].model == name
