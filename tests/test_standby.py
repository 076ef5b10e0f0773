"""Standby replicas: several `driftd run` on one PostgreSQL state store, one leading under a lease
whose fencing token every commit checks; SQLite state is single-instance.

The lease tests drive time with a SimulatedClock and call the lease rounds themselves. The process
test runs two real daemons, pauses the leader in the middle of a check (it is blocked on a table
lock the test holds, then SIGSTOPped), lets the standby take over, resumes the ex-leader to see its
commit refused, and then kills the new leader with SIGKILL while rows keep arriving.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from monitor.core.clock import SimulatedClock
from monitor.core.config import Config, ConfigError, parse_config
from monitor.core.results import CheckResult, CheckStatus, Watermark
from monitor.demo.synthetic import PredictionTable
from monitor.service.daemon import Daemon
from monitor.state.lease import Fenced, Leadership, LeaseTiming, lease_timing
from monitor.state.store import StateError, StateStore
from tests.support.daemon import PG_URL, DriftdProcess, metric_value, reference_file
from tests.support.data import CATEGORICAL, NUMERICAL
from tests.support.promstack import free_port, wait_for

T0 = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
TIMING = LeaseTiming(ttl=timedelta(seconds=10), renew_every=timedelta(seconds=2))


@pytest.fixture
def pg_state() -> Iterator[str]:
    """A state URL whose tables live in a schema of their own, dropped afterwards."""
    schema = f"standby_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql("SET LOCAL lock_timeout = '20s'")
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def _window(check_id: str, minute: int) -> CheckResult:
    end = T0 + timedelta(minutes=minute)
    return CheckResult(check_id=check_id, model="churn", status=CheckStatus.OK, started_at=end, window_start=end - timedelta(minutes=1),
                       window_end=end, rows=10, rows_used=10, watermark=Watermark(end, minute))


class _Replica:
    def __init__(self, url: str, name: str, clock: SimulatedClock) -> None:
        self.store = StateStore(url, clock=clock)
        self.store.migrate()
        self.events: list[tuple[str, object]] = []
        self.lease = Leadership(self.store.engine, name, TIMING, clock, lambda token: self.events.append(("elected", token)),
                                lambda reason: self.events.append(("deposed", reason)))
        self.store.fence = self.lease.fence


@pytest.mark.integration
def test_one_replica_leads_and_a_resumed_ex_leaders_commit_is_refused_by_its_token(pg_state, caplog):
    clock = SimulatedClock(T0)
    a, b = _Replica(pg_state, "a", clock), _Replica(pg_state, "b", clock)
    try:
        a.lease.step()
        b.lease.step()
        assert (a.lease.token, b.lease.token) == (1, None) and a.events == [("elected", 1)] and b.events == []
        with pytest.raises(Fenced):  # a standby writes nothing
            b.store.record_check(_window("b-0", 0))
        a.store.record_check(_window("a-1", 1))

        clock.advance(timedelta(seconds=8))
        a.lease.step()  # renewed: until T0 + 18 s
        clock.advance(timedelta(seconds=8))
        b.lease.step()
        assert b.lease.token is None, "the lease was renewed: no takeover"

        # `a` is paused past its lease (no renewals); `b` takes over with the next token.
        clock.advance(timedelta(seconds=3))
        b.lease.step()
        assert b.lease.token == 2 and b.events == [("elected", 2)]

        # `a` resumes and commits the window it read before the pause: refused, nothing written.
        with pytest.raises(Fenced, match=r"commit refused by the fencing token: a wrote with token 1, but the lease is now held by b with token 2"):
            a.store.record_check(_window("a-2", 2))
        b.store.record_check(_window("b-2", 2))
        with a.store.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT check_id, token FROM checks ORDER BY check_id")).all()
        assert [tuple(r) for r in rows] == [("a-1", 1), ("b-2", 2)]
        assert a.store.watermark("churn").id == 2

        with caplog.at_level(logging.ERROR, logger="driftd.lease"):
            a.lease.step()  # its renewal finds the lease taken: it steps down
        assert a.lease.token is None and a.events[-1] == ("deposed", "the lease was taken over by b (token 2)")
        assert "a steps down (token 1): the lease was taken over by b (token 2)" in caplog.messages

        # `b` dies; once its lease runs out `a` leads again, with a token `b` can never match.
        clock.advance(timedelta(seconds=10))
        a.lease.step()
        assert a.lease.token == 3
        with pytest.raises(Fenced):
            b.store.record_check(_window("b-3", 3))

        b.lease.step()  # back from the dead, its first round finds the lease gone
        assert b.lease.token is None and b.events[-1] == ("deposed", "the lease was taken over by a (token 3)")
        a.lease.stop()  # a clean stop releases the lease: the next replica need not wait for the ttl
        b.lease.step()
        assert b.lease.token == 4
    finally:
        for replica in (a, b):
            replica.lease.stop()
            replica.store.close()


def test_lease_timing_defaults_follow_the_shortest_interval_and_are_bounded():
    assert lease_timing(None, None, 60) == LeaseTiming(timedelta(seconds=30), timedelta(seconds=7.5))
    assert lease_timing(None, None, 1) == LeaseTiming(timedelta(seconds=2), timedelta(seconds=0.5))
    assert lease_timing(None, None, 3600).ttl == timedelta(seconds=60)
    assert lease_timing(timedelta(seconds=9), None, 60).renew_every == timedelta(seconds=2.25)
    with pytest.raises(ValueError, match="renew_every .* must be shorter than state.lease.ttl"):
        lease_timing(timedelta(seconds=5), timedelta(seconds=5), 60)


def test_sqlite_state_is_single_instance_and_says_so(tmp_path, caplog):
    with pytest.raises(ConfigError, match="state.lease needs a PostgreSQL state_url: SQLite state is single-instance"):
        parse_config({"state_url": "sqlite:///state.db", "state": {"lease": {"ttl": "10s"}}, "models": []}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="renew_every .* must be shorter than ttl"):
        parse_config({"state_url": "postgresql://x@h/db", "state": {"lease": {"ttl": "5s", "renew_every": "6s"}}}, base_dir=tmp_path)

    config = Config(state_url=f"sqlite:///{tmp_path / 'state.db'}", server={"port": 0}, models=[])
    first = Daemon(config)
    with caplog.at_level(logging.INFO, logger="driftd.daemon"):
        first.start()
    try:
        assert any("state in SQLite: single instance" in m for m in caplog.messages)
        second = Daemon(config)
        with pytest.raises(StateError, match=r"is in use by another `driftd run` \(pid \d+, lock .*state.db.lock\): "
                                             r"SQLite state is single-instance"):
            second.start()
        second._server.stop()
    finally:
        first.stop()
    third = Daemon(config)  # the lock went with the first daemon
    third.start()
    third.stop()


# --- two real daemons ------------------------------------------------------------------------

EVERY = 4.0  # seconds between checks; the takeover must come within two of them


def _config(directory: Path, state_url: str, table: str, instance: str, port: int) -> Path:
    directory.mkdir()
    config = {
        "state_url": state_url,
        "state": {"instance": instance, "lease": {"ttl": "2s", "renew_every": "0.5s"}},
        "mlflow": {"tracking_uri": f"sqlite:///{directory / 'mlflow.db'}", "artifact_root": str(directory / "artifacts")},
        "server": {"host": "127.0.0.1", "port": port},
        "logging": {"level": "INFO", "format": "text"},
        "daemon": {"workers": 1, "jitter": 0},
        "defaults": {"schedule": {"every": f"{EVERY:g}s"}, "window": {"size": "1h", "min_rows": 50, "lateness": "0s"},
                     "retrain": {"enabled": False}},
        "models": [{
            "name": "churn",
            "source": {"type": "sql", "url": PG_URL, "table": table},
            "reference": str(reference_file(directory)),
            "columns": {"timestamp": "ts", "id": "id", "prediction": "prediction", "probability": "probability",
                        "target": "target", "numerical": NUMERICAL, "categorical": CATEGORICAL},
            "task": "binary_classification",
        }],
    }
    path = directory / "driftd.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class _Feed:
    """Appends rows to the predictions table on a thread until stopped; counts what it committed."""

    def __init__(self, table: PredictionTable) -> None:
        self.table, self._stop = table, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.25):  # pacing only: no outcome waits on it
            self.table.append(30)

    def start(self) -> _Feed:
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stop, with a last batch of at least min_rows so the final window is checked too."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(timeout=30)
            self.table.append(60)
        return self.table.appended


@pytest.mark.integration
def test_a_standby_takes_over_from_a_killed_leader_and_a_paused_one_cannot_commit(pg_state, tmp_path):
    table = PredictionTable(PG_URL)
    state = sa.create_engine(pg_state)
    table.append(200)
    feed = _Feed(table).start()
    names = ("replica-a", "replica-b")
    daemons = {n: DriftdProcess(_config(tmp_path / n, pg_state, table.name, n, port), port)
               for n, port in ((n, free_port()) for n in names)}

    def lease() -> tuple[str, int, datetime]:
        with state.connect() as conn:
            row = conn.execute(sa.text("SELECT holder, token, acquired_at FROM leader_lease")).one()
        return row.holder, row.token, row.acquired_at

    def checks(token: int | None = None) -> list[sa.Row]:
        query = "SELECT status, rows, token, started_at FROM checks WHERE status IN ('ok', 'drift')"
        with state.connect() as conn:
            return list(conn.execute(sa.text(query + ("" if token is None else f" AND token = {token}") + " ORDER BY started_at")))

    def scalar(sql: str) -> int:
        with state.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar_one())

    def leader_gauge(name: str) -> float | None:
        return metric_value(daemons[name].metrics(), "driftd_leader", instance=name)

    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(DriftdProcess.start, daemons.values()))
        first = wait_for(lambda: lease()[0], timeout=30)
        second = next(n for n in names if n != first)
        assert wait_for(lambda: leader_gauge(first) == 1 and leader_gauge(second) == 0, timeout=30)
        wait_for(lambda: len(checks(1)) >= 2, timeout=60)

        # Pause the leader in the middle of a check: its read of the window waits on our lock...
        with table.engine.connect() as blocker:
            blocker.exec_driver_sql(f"LOCK TABLE {table.name} IN ACCESS EXCLUSIVE MODE")
            waiting = f"SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%FROM {table.name}%' AND query NOT LIKE 'INSERT%'"
            wait_for(lambda: scalar(waiting) >= 1, timeout=3 * EVERY)
            os.kill(daemons[first].proc.pid, signal.SIGSTOP)
            blocker.commit()  # ...and gets its rows only after the process is frozen
        paused_commits = len(checks(1))
        assert wait_for(lambda: lease()[:2] == (second, 2), timeout=30)
        wait_for(lambda: checks(2), timeout=60)
        os.kill(daemons[first].proc.pid, signal.SIGCONT)

        refusal = f"commit refused by the fencing token: {first} wrote with token 1, but the lease is now held by {second} with token 2"
        wait_for(lambda: refusal in daemons[first].output(), timeout=30)
        assert f"{first} steps down (token 1)" in daemons[first].output()
        assert len(checks(1)) == paused_commits, "the resumed ex-leader committed after the takeover"
        assert wait_for(lambda: leader_gauge(first) == 0 and leader_gauge(second) == 1, timeout=30)

        # Kill the new leader outright while rows keep coming: the ex-leader, now standing by, takes over.
        daemons[second].kill()
        killed_at = datetime.now(timezone.utc)
        holder, token, acquired_at = wait_for(lambda: lease() if lease()[1] == 3 else None, timeout=30)
        assert holder == first
        first_check = wait_for(lambda: checks(3), timeout=60)[0]
        assert (acquired_at - killed_at).total_seconds() < 2 * EVERY
        assert (first_check.started_at - killed_at).total_seconds() < 2 * EVERY

        inserted = feed.stop()
        # Every row checked exactly once across three leaderships (the windows commit with the watermark).
        wait_for(lambda: sum(c.rows for c in checks()) >= inserted, timeout=60)
        assert sum(c.rows for c in checks()) == inserted
        assert {c.token for c in checks()} == {1, 2, 3}
        assert daemons[first].stop() == 0
        released = "SELECT count(*) FROM leader_lease WHERE expires_at <= now() AND token = 3"
        assert scalar(released) == 1, "a clean stop releases the lease for the next replica"
    finally:
        feed.stop()
        for name, daemon in daemons.items():  # shown when the test fails
            print(f"--- {name} ---\n" + "\n".join(daemon.lines[-60:]))
            if daemon.proc is not None and daemon.proc.poll() is None:
                os.kill(daemon.proc.pid, signal.SIGCONT)
                daemon.kill()
        state.dispose()
        table.drop()
