"""No silent losses: rows committed after the watermark passed them are found and checked once.

The daemon's real tick runs against real sources while writers hold transactions open
(PostgreSQL), write rows they stamped earlier (SQLite), or drop a file of old rows into the
folder (Parquet). Every row id must end up checked exactly once — asserted on the keys the state
store recorded, not only on counts — and the late ones must be counted as late.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from monitor.check.late import key_hashes
from monitor.core.config import Config, parse_config
from monitor.core.records import decode
from monitor.core.results import CheckStatus
from monitor.demo.synthetic import PredictionTable
from monitor.service.daemon import Daemon
from monitor.state.schema import seen_keys
from monitor.state.store import StateStore
from tests.support.daemon import PG_URL, metric_value
from tests.support.data import CATEGORICAL, NUMERICAL, columns, predictions

MODEL = "churn"


def make_config(tmp_path: Path, source: dict, **window: object) -> Config:
    reference = tmp_path / "reference.parquet"
    predictions(3000, seed=12345).to_parquet(reference, index=False)
    raw = {
        "state_url": f"sqlite:///{tmp_path / 'state.db'}",
        "mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
        "server": {"port": 0},
        "models": [{
            "name": MODEL, "source": source, "reference": str(reference), "task": "binary_classification",
            "columns": {"timestamp": "ts", "id": "id", "prediction": "prediction", "probability": "probability",
                        "target": "target", "numerical": NUMERICAL, "categorical": CATEGORICAL},
            "window": {"size": "1h", "min_rows": 50, "lateness": "0s", **window},
            "retrain": {"enabled": False},
        }],
    }
    return parse_config(raw, base_dir=tmp_path)


def now_ms() -> datetime:
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def checked(store: StateStore) -> tuple[list, int]:
    """(every key hash the store recorded as checked, rows counted by windows with a verdict)."""
    with store.engine.connect() as conn:
        blobs = [decode(row.hashes) for row in conn.execute(sa.select(seen_keys.c.hashes).where(seen_keys.c.model == MODEL))]
    hashes = list(np.concatenate(blobs)) if blobs else []
    rows = sum(c.rows for c in store.recent_checks(MODEL, 100_000) if c.status in (CheckStatus.OK, CheckStatus.DRIFT))
    return hashes, rows


def assert_each_row_checked_once(daemon: Daemon, written: list[pd.DataFrame]) -> None:
    frame = pd.concat(written, ignore_index=True)
    expected = Counter(key_hashes(frame, columns()).tolist())
    assert len(expected) == len(frame), "test rows must have distinct (ts, id) keys"
    hashes, rows = checked(daemon.store)
    recorded = Counter(int(h) for h in hashes)
    missing = [h for h in expected if h not in recorded]
    twice = [h for h, n in recorded.items() if n > 1]
    assert not missing, f"{len(missing)} of {len(frame)} rows never checked"
    assert not twice, f"{len(twice)} rows checked more than once"
    assert set(recorded) == set(expected)
    assert rows == len(frame)


def late_rows(daemon: Daemon) -> int:
    checks = daemon.store.recent_checks(MODEL, 100_000)
    counted = sum(c.late_rows for c in checks if c.status in (CheckStatus.OK, CheckStatus.DRIFT))
    assert metric_value(daemon.metrics.render().decode(), "driftd_late_rows_total", model=MODEL) == counted
    return counted


def tick_until(daemon: Daemon, condition, ticks: int = 400) -> None:
    model = daemon.config.model(MODEL)
    for _ in range(ticks):
        if condition():
            return
        daemon.tick(model)
    assert condition(), f"not reached in {ticks} checks: {[(c.status.value, c.rows, c.message) for c in daemon.store.recent_checks(MODEL, 10)]}"


class Writers:
    """Writer threads appending batches of rows stamped when the batch is made; each commits
    its batch 0-3 s later (a transaction held open, or a blocked writer), in its own seeded rhythm."""

    def __init__(self, engine: sa.Engine, table: sa.Table, *, writers: int = 3, batches: int = 10, rows: int = 20) -> None:
        self.engine, self.table = engine, table
        self.ids = itertools.count(1_000_000)
        self.lock = threading.Lock()
        self.written: list[pd.DataFrame] = []
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._run, args=(seed, batches, rows), daemon=True) for seed in range(writers)]

    def batch(self, rows: int, seed: int) -> pd.DataFrame:
        with self.lock:
            first = next(self.ids)
            for _ in range(rows - 1):
                next(self.ids)
        # Stamped just before now (never in the future): a window ending now holds the whole batch.
        return predictions(rows, seed=seed, start=now_ms() - timedelta(milliseconds=rows), every=timedelta(milliseconds=1),
                           first_id=first)

    def _run(self, seed: int, batches: int, rows: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for n in range(batches):
                frame = self.batch(rows, seed * 1000 + n)
                with self.engine.begin() as conn:
                    conn.execute(self.table.insert(), frame.to_dict("records"))
                    threading.Event().wait(float(rng.uniform(0, 3)))  # the transaction stays open
                with self.lock:
                    self.written.append(frame)
        except BaseException as exc:  # surfaced by the test
            self.errors.append(exc)

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def alive(self) -> bool:
        return any(t.is_alive() for t in self.threads)


def run_concurrent_writers(daemon: Daemon, writers: Writers, hold_late) -> None:
    """Writers append while the daemon checks; `hold_late` commits one batch only after the
    watermark has passed its rows (guaranteed late rows); a final batch flushes a tail below min_rows."""
    model = daemon.config.model(MODEL)
    writers.start()
    late_batch, commit_late = hold_late(writers.batch(30, seed=999))
    passed = False
    while writers.alive() or not passed:
        daemon.tick(model)
        mark = daemon.store.watermark(MODEL)
        passed = passed or (mark is not None and mark.timestamp > late_batch["ts"].max())
        assert passed or writers.alive() or len(daemon.store.recent_checks(MODEL, 100_000)) < 10_000
    commit_late()
    assert not writers.errors, writers.errors
    flush = writers.batch(60, seed=998)
    with writers.engine.begin() as conn:
        conn.execute(writers.table.insert(), flush.to_dict("records"))
    written = [*writers.written, late_batch, flush]
    total = sum(len(f) for f in written)
    tick_until(daemon, lambda: checked(daemon.store)[1] >= total)
    assert_each_row_checked_once(daemon, written)
    assert late_rows(daemon) >= len(late_batch)


@pytest.mark.integration
def test_concurrent_postgres_writers_holding_transactions_open_lose_no_row(tmp_path):
    table = PredictionTable(PG_URL)
    daemon = Daemon(make_config(tmp_path, {"type": "sql", "url": PG_URL, "table": table.name}))
    try:
        writers = Writers(table.engine, table.table)

        def hold_open(batch: pd.DataFrame):
            # A transaction holding the batch, stamped now, uncommitted until the watermark passes it.
            conn = table.engine.connect()
            tx = conn.begin()
            conn.execute(table.table.insert(), batch.to_dict("records"))

            def commit() -> None:
                tx.commit()
                conn.close()

            return batch, commit

        run_concurrent_writers(daemon, writers, hold_open)
    finally:
        daemon.stop()
        table.drop()


@pytest.mark.integration
def test_sqlite_writers_that_commit_late_lose_no_row(tmp_path):
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    engine = sa.create_engine(url, connect_args={"timeout": 60})
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    meta = sa.MetaData()
    table = sa.Table(
        "predictions", meta,
        sa.Column("ts", sa.DateTime, nullable=False), sa.Column("id", sa.BigInteger, primary_key=True),
        *[sa.Column(c, sa.Float) for c in NUMERICAL], *[sa.Column(c, sa.String) for c in CATEGORICAL],
        sa.Column("prediction", sa.Integer), sa.Column("probability", sa.Float), sa.Column("target", sa.Integer),
    )
    meta.create_all(engine)
    daemon = Daemon(make_config(tmp_path, {"type": "sql", "url": url, "table": "predictions"}))
    try:
        # SQLite has one writer at a time: the others wait for the lock with their rows already stamped.
        writers = Writers(engine, table, batches=6)

        def stamped_now_written_later(batch: pd.DataFrame):
            def commit() -> None:
                with engine.begin() as conn:
                    conn.execute(table.insert(), batch.to_dict("records"))

            return batch, commit

        run_concurrent_writers(daemon, writers, stamped_now_written_later)
    finally:
        daemon.stop()
        engine.dispose()


def test_a_parquet_file_of_old_rows_dropped_into_the_folder_is_checked(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    now = now_ms()
    first = predictions(300, seed=1, start=now - timedelta(minutes=9), every=timedelta(seconds=1), first_id=0)
    first.to_parquet(logs / "part-1.parquet", index=False)
    daemon = Daemon(make_config(tmp_path, {"type": "files", "path": str(logs / "*.parquet")}))
    model = daemon.config.model(MODEL)
    try:
        assert daemon.tick(model).rows == 300

        late = predictions(200, seed=2, start=now - timedelta(minutes=20), every=timedelta(seconds=3), first_id=10_000)
        assert late["ts"].min() >= now - timedelta(minutes=20) and late["ts"].max() <= now - timedelta(minutes=10)
        late.to_parquet(logs / "backfill-late.parquet", index=False)
        fresh = predictions(100, seed=3, start=now_ms() - timedelta(seconds=1), every=timedelta(milliseconds=5), first_id=20_000)
        fresh.to_parquet(logs / "part-2.parquet", index=False)

        result = daemon.tick(model)
        assert result.status in (CheckStatus.OK, CheckStatus.DRIFT)
        assert (result.rows, result.late_rows) == (300, 200)
        assert result.watermark is not None and result.watermark.id == 20_099  # the late rows never move it back
        assert daemon.tick(model).status is CheckStatus.INSUFFICIENT_DATA  # nothing is found twice
        assert_each_row_checked_once(daemon, [first, late, fresh])
        assert late_rows(daemon) == 200
    finally:
        daemon.stop()


def test_rows_beyond_the_lookback_are_not_rechecked_and_the_bookkeeping_stays_bounded(tmp_path):
    from monitor.core.clock import SimulatedClock

    logs = tmp_path / "logs"
    logs.mkdir()
    start = now_ms() - timedelta(hours=2)
    for part in range(6):  # six 10-minute slices of 120 rows
        rows = predictions(120, seed=part, start=start + timedelta(minutes=10 * part), every=timedelta(seconds=5), first_id=1000 * part)
        rows.to_parquet(logs / f"p{part}.parquet", index=False)
    clock = SimulatedClock(start + timedelta(minutes=10, milliseconds=-1))  # the first window covers the first slice
    daemon = Daemon(make_config(tmp_path, {"type": "files", "path": str(logs / "*.parquet")}, size="10m", lookback="15m"), clock=clock)
    model = daemon.config.model(MODEL)
    try:
        for _ in range(6):
            daemon.tick(model)
            clock.advance(timedelta(minutes=10))
        hashes, rows = checked(daemon.store)
        assert rows == 720
        # Only keys within 15 minutes of the watermark are kept (plus the window that reached past
        # them): the bookkeeping is bounded by the look-back, not by the history.
        assert 0 < daemon.store.seen_rows(MODEL) == len(hashes) <= 15 * 12 + 120
        beyond = predictions(10, seed=9, start=start + timedelta(minutes=5), first_id=90_000)  # 55 minutes behind
        beyond.to_parquet(logs / "too-late.parquet", index=False)
        within = predictions(10, seed=10, start=start + timedelta(minutes=52), first_id=91_000)  # 8 minutes behind
        within.to_parquet(logs / "late.parquet", index=False)
        daemon.tick(model)  # no new rows: 10 late ones are below min_rows and wait
        more = predictions(60, seed=11, start=start + timedelta(minutes=61), every=timedelta(seconds=1), first_id=92_000)
        more.to_parquet(logs / "p6.parquet", index=False)
        clock.advance(timedelta(minutes=3))
        result = daemon.tick(model)
        assert (result.rows, result.late_rows) == (70, 10)
        assert checked(daemon.store)[1] == 790 and late_rows(daemon) == 10  # the 55-minute-late rows are beyond the bound
    finally:
        daemon.stop()


def test_null_timestamps_are_counted_and_reported_not_dropped_silently(tmp_path):
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    frame = predictions(600, seed=4, start=now_ms() - timedelta(minutes=20), every=timedelta(seconds=1))
    frame["ts"] = frame["ts"].dt.tz_localize(None).astype(object)
    frame.loc[frame.index[::50], "ts"] = None  # 12 rows logged without a timestamp
    engine = sa.create_engine(url)
    frame.to_sql("predictions", engine, index=False)
    engine.dispose()
    daemon = Daemon(make_config(tmp_path, {"type": "sql", "url": url, "table": "predictions"}))
    try:
        result = daemon.tick(daemon.config.model(MODEL))
        assert result.status in (CheckStatus.OK, CheckStatus.DRIFT)
        assert (result.rows, result.null_timestamps) == (588, 12)
        assert "12 rows of model 'churn' have no timestamp" in result.message
        assert "12 rows of model 'churn' have no timestamp" in daemon.store.recent_checks(MODEL, 1)[0].message
        assert metric_value(daemon.metrics.render().decode(), "driftd_null_timestamp_rows", model=MODEL) == 12
    finally:
        daemon.stop()


def test_files_count_null_timestamps_from_parquet_statistics_and_text(tmp_path):
    from monitor.core.config import FilesSource
    from monitor.sources import open_source

    frame = predictions(100, seed=5)
    frame.loc[frame.index[:7], "ts"] = pd.NaT
    frame.to_parquet(tmp_path / "a.parquet", index=False)
    text = predictions(50, seed=6, first_id=500)
    text["ts"] = text["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    text.loc[text.index[:3], "ts"] = ""
    text.to_csv(tmp_path / "b.csv", index=False)
    source = open_source(FilesSource(type="files", path=str(tmp_path / "*")), columns())
    assert source.null_timestamps() == 10


def test_the_bookkeeping_commits_with_the_watermark_or_not_at_all(tmp_path):
    from monitor.core.records import Seen

    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    from monitor.core.results import CheckResult, Watermark

    at = datetime(2024, 5, 1, tzinfo=timezone.utc)
    seen = Seen(audit_from_ns=0, min_ts_ns=1, max_ts_ns=2, hashes=np.array([1, 2], dtype=np.uint64))
    first = CheckResult(check_id=uuid.uuid4().hex, model=MODEL, status=CheckStatus.OK, started_at=at, window_start=at,
                        window_end=at, rows=2, watermark=Watermark(at, 2))
    store.record_check(first, seen)
    assert store.seen_rows(MODEL) == 2 and store.audit(MODEL).hashes.tolist() == [1, 2]
    # A failing write (a naive watermark is refused) leaves neither check, watermark nor keys.
    bad = CheckResult(check_id=uuid.uuid4().hex, model=MODEL, status=CheckStatus.OK, started_at=at, window_start=at,
                      window_end=at, rows=2, watermark=Watermark(at.replace(tzinfo=None) + timedelta(hours=1), 3))
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        store.record_check(bad, Seen(0, 3, 4, np.array([3, 4], dtype=np.uint64)))
    assert store.seen_rows(MODEL) == 2 and store.watermark(MODEL).id == 2 and len(store.recent_checks(MODEL, 10)) == 1
    store.record_check(first, seen)  # a retried tick records nothing twice
    assert store.seen_rows(MODEL) == 2
    store.close()
