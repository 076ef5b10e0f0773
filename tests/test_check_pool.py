"""`executor: {type: local, processes: N}`: checks computed in worker processes give the thread
path's results on the same windows; a worker killed mid-check is a failed check and the next tick
succeeds; the daemon's stop leaves no worker behind.

The daemons run in-process on a simulated clock, so both paths check exactly the same windows.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from monitor.core.clock import SimulatedClock
from monitor.core.config import ConfigError, load_config, parse_config
from monitor.core.results import CheckResult, CheckStatus
from monitor.service.daemon import Daemon
from tests.support.checks import comparable
from tests.support.data import START, columns, predictions

NOW = START + timedelta(hours=2, minutes=1)
WAIT = 120.0  # seconds for a poll to see what it waits for (a loaded machine starts a worker slowly)


@pytest.fixture
def world(tmp_path: Path) -> Path:
    """A steady and a drifted model on Parquet folders, and one on a SQLite table."""
    predictions(3000, seed=12345).to_parquet(tmp_path / "reference.parquet", index=False)
    for name, shift, seed in (("steady", 0.0, 1), ("drifted", 1.0, 2)):
        (tmp_path / name).mkdir()
        predictions(7200, seed=seed, shift=shift).to_parquet(tmp_path / name / "part-0.parquet", index=False)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'logs.db'}")
    predictions(7200, seed=3).to_sql("preds", engine, index=False)
    engine.dispose()
    return tmp_path


def config_file(directory: Path, processes: int, name: str) -> Path:
    model = {"columns": columns().model_dump(exclude_none=True), "task": "binary_classification",
             "reference": str(directory / "reference.parquet"), "retrain": {"enabled": False}}
    config = {
        "state_url": f"sqlite:///{directory / f'{name}-state.db'}",
        "mlflow": {"tracking_uri": f"sqlite:///{directory / 'mlflow.db'}"},
        "server": {"host": "127.0.0.1", "port": 0},
        "executor": {"type": "local", "processes": processes},
        "defaults": {"schedule": {"every": "10m"}, "window": {"size": "1h", "min_rows": 100, "lateness": "0s"}},
        "models": [
            {**model, "name": "steady", "source": {"type": "files", "path": str(directory / "steady" / "*.parquet")}},
            {**model, "name": "drifted", "source": {"type": "files", "path": str(directory / "drifted" / "*.parquet")}},
            # timeout: a reader waits (up to 10 min) for the test's lock instead of failing at sqlite3's 5 s
            {**model, "name": "in_sql", "source": {"type": "sql", "table": "preds",
                                                   "url": f"sqlite:///{directory / 'logs.db'}?timeout=600"}},
        ],
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"  # exited, not yet reaped


def poll(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"waited {WAIT:g} s for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize(("processes", "error"), [("auto", None), (3, None), (0, None), (-1, "greater than or equal to 0"),
                                                   ("many", "auto")])
def test_the_pool_size_is_auto_a_count_or_zero(processes, error):
    section = {"executor": {"type": "local", "processes": processes}}
    if error is None:
        assert parse_config(section, base_dir=Path(".")).executor.processes == processes  # type: ignore[attr-defined]
    else:
        with pytest.raises(ConfigError, match=error):
            parse_config(section, base_dir=Path("."))
    assert parse_config({}, base_dir=Path(".")).executor.processes == 0  # type: ignore[attr-defined]  # threads unless asked


@pytest.mark.integration
def test_checks_run_in_worker_processes_with_the_thread_paths_results(world: Path):
    on_threads = Daemon(load_config(config_file(world, 0, "threads")), clock=SimulatedClock(NOW))
    try:
        expected = {m.name: on_threads.tick(m) for m in on_threads.config.models}
    finally:
        on_threads.stop()
    daemon = Daemon(load_config(config_file(world, 2, "pool")), clock=SimulatedClock(NOW))
    try:
        found = {m.name: daemon.tick(m) for m in daemon.config.models}
        again = daemon.tick(daemon.config.model("drifted"))  # the next window: nothing new yet, recorded as such
        stored = {m.name: daemon.store.recent_checks(m.name, 5) for m in daemon.config.models}
        pids = daemon.executor.pool.pids()
    finally:
        daemon.stop()

    assert expected["drifted"].status is CheckStatus.DRIFT and expected["steady"].status is CheckStatus.OK
    for name, result in found.items():
        assert comparable(result) == comparable(expected[name]), name
        where = result.details["executor"]
        assert where == {"type": "local", "pid": where["pid"]} and where["pid"] != os.getpid() and where["pid"] in pids
        assert "executor" not in expected[name].details
    assert len(stored["steady"]) == 1 and len(stored["drifted"]) == 2 and again.details["executor"]["pid"] in pids
    # The bootstrap nulls a worker drew for the reference came back to the daemon's cache: the next
    # check of this version (on any worker) is not calibrated again.
    assert daemon.references.get(daemon.config.model("drifted")).prepared.nulls.drawn()
    assert pids and all(gone(pid) for pid in pids)  # stop ended the workers


@pytest.mark.integration
def test_a_worker_killed_mid_check_is_a_failed_check_and_the_next_tick_succeeds(world: Path):
    daemon = Daemon(load_config(config_file(world, 1, "killed")), clock=SimulatedClock(NOW))
    model = daemon.config.model("in_sql")
    lock = sqlite3.connect(world / "logs.db", isolation_level=None)
    try:
        lock.execute("begin exclusive")  # the worker's read of the window waits on it
        outcome: list[CheckResult] = []
        ticking = threading.Thread(target=lambda: outcome.append(daemon.tick(model)))
        ticking.start()
        pool = daemon.executor.pool
        poll(lambda: pool.pids(), "a worker process")
        worker = pool.pids()[0]

        def reading() -> bool:
            try:
                return any(os.readlink(f).endswith("logs.db") for f in Path(f"/proc/{worker}/fd").iterdir())
            except OSError:  # an fd closed while listed
                return False

        poll(reading, "the worker to open the window's database")
        os.kill(worker, signal.SIGKILL)
        ticking.join(WAIT)
        lock.execute("rollback")
        assert outcome, "the tick did not return"
        failed = outcome[0]
        assert failed.status is CheckStatus.ERROR and failed.details == {"executor_error": "local"}
        assert "worker process died" in failed.message and "next tick" in failed.message

        succeeded = daemon.tick(model)  # a new pool; the same window, checked whole
        assert succeeded.status in (CheckStatus.OK, CheckStatus.DRIFT) and succeeded.rows > 0
        assert succeeded.details["executor"]["pid"] not in (worker, os.getpid())
        assert sorted(c.status.value for c in daemon.store.recent_checks(model.name, 5)) == sorted(["error", succeeded.status.value])
        pids = pool.pids()
    finally:
        lock.close()
        daemon.stop()
    assert pids and all(gone(pid) for pid in pids)
