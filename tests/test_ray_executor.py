"""`executor: ray` on a real Ray cluster on loopback: the checks and a retrain run on Ray workers,
the checks give the local executor's results on the same windows, no secret reaches Ray's files,
and a cluster that is not there is a failed check, not a crash.

One cluster for the module (`ray start --head` on free ports, a private temp dir, 2 CPUs), ended
by its processes' ids. The daemons run in-process on a simulated clock, so both executors check
exactly the same windows.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from monitor.core.clock import SimulatedClock
from monitor.core.config import load_config
from monitor.core.results import CheckResult, CheckStatus
from monitor.demo.ray_cluster import RayCluster, ray_cluster
from monitor.service.daemon import Daemon
from monitor.state.store import StateStore
from retrain.pipeline import Trigger
from tests.support.data import START, columns, predictions
from tests.support.promstack import free_port

pytestmark = pytest.mark.integration

PG = "127.0.0.1:5432/test"
SECRET = "ray-must-not-see-this-pw"  # PostgreSQL trusts loopback: any password connects, so a real one can travel
NOW = START + timedelta(hours=2, minutes=1)


@pytest.fixture(scope="module")
def cluster():
    with ray_cluster(num_cpus=2) as running:
        yield running


@pytest.fixture
def world(tmp_path, monkeypatch):
    """Three models' logs: two Parquet folders (one drifted) and a PostgreSQL table read with a password."""
    predictions(3000, seed=12345).to_parquet(tmp_path / "reference.parquet", index=False)
    for name, shift, seed in (("steady", 0.0, 1), ("drifted", 1.0, 2)):
        (tmp_path / name).mkdir()
        predictions(7200, seed=seed, shift=shift).to_parquet(tmp_path / name / "part-0.parquet", index=False)
    table = f"ray_preds_{os.getpid()}"
    monkeypatch.setenv("DRIFTD_TEST_PG_URL", f"postgresql+psycopg://postgres:{SECRET}@{PG}")  # secrets come from the environment
    engine = sa.create_engine(f"postgresql+psycopg://postgres@{PG}")
    predictions(7200, seed=3).to_sql(table, engine, index=False)
    yield tmp_path, table
    with engine.begin() as conn:
        conn.execute(sa.text(f"drop table if exists {table}"))
    engine.dispose()


def config_file(directory: Path, table: str, executor: dict, name: str) -> Path:
    cols = columns().model_dump(exclude_none=True)
    model = {"columns": cols, "task": "binary_classification", "reference": str(directory / "reference.parquet"),
             "retrain": {"enabled": False}}
    config = {
        "state_url": f"sqlite:///{directory / f'{name}-state.db'}",
        "mlflow": {"tracking_uri": f"sqlite:///{directory / 'mlflow.db'}"},
        "server": {"host": "127.0.0.1", "port": 0},
        "executor": executor,
        "defaults": {"schedule": {"every": "10m"}, "window": {"size": "1h", "min_rows": 100, "lateness": "0s"}},
        "models": [
            {**model, "name": "steady", "source": {"type": "files", "path": str(directory / "steady" / "*.parquet")}},
            {**model, "name": "drifted", "source": {"type": "files", "path": str(directory / "drifted" / "*.parquet")}},
            {**model, "name": "in_pg", "source": {"type": "sql", "table": table,
                                                  "url": "${DRIFTD_TEST_PG_URL}"}},
        ],
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def check_all(path: Path) -> dict[str, CheckResult]:
    daemon = Daemon(load_config(path), clock=SimulatedClock(NOW))
    try:
        results = {m.name: daemon.tick(m) for m in daemon.config.models}
        stored = {m.name: daemon.store.recent_checks(m.name, 5) for m in daemon.config.models}
    finally:
        daemon.stop()
    assert all(len(records) == 1 for records in stored.values()), stored  # each window recorded once, by this daemon
    return results  # type: ignore[return-value]


def comparable(result: CheckResult) -> dict:
    """What a check found, without what differs by run (its id, timing, where it ran)."""
    found = result.to_dict()
    for key in ("check_id", "duration_seconds"):
        found.pop(key, None)
    found["details"] = {k: v for k, v in found.get("details", {}).items() if k != "executor"}
    if found.get("multivariate"):
        found["multivariate"] = {k: v for k, v in found["multivariate"].items() if k != "seconds"}
    return found


def test_checks_run_on_ray_workers_with_the_local_executors_results(cluster: RayCluster, world):
    directory, table = world
    local = check_all(config_file(directory, table, {"type": "local"}, "local"))
    on_ray = check_all(config_file(directory, table, {"type": "ray", "address": cluster.address, "check_timeout": "5m",
                                                        "models": {"drifted": {"check": {"num_cpus": 2}}}}, "ray"))

    assert {r.status for r in local.values()} == {CheckStatus.OK, CheckStatus.DRIFT}  # a drifted model and steady ones
    assert local["drifted"].status is CheckStatus.DRIFT
    for name, result in on_ray.items():
        assert comparable(result) == comparable(local[name]), name
        assert result.quality is not None and result.quality.metrics  # labels joined, quality measured on the worker
        where = result.details["executor"]
        assert where["type"] == "ray" and where["pid"] != os.getpid()
        assert len(where["node_id"]) == 56  # a Ray node id (hex)
        assert "executor" not in local[name].details
    # Ray ran them in its worker processes, not in the daemon nor its driver process.
    assert {r.details["executor"]["node_id"] for r in on_ray.values()} == {cluster.head_node_id()}

    # The PostgreSQL password went to the workers inside the pickled settings and nowhere else: not in
    # any of Ray's logs or session files (task names, arguments' reprs, runtime_env).
    leaked = [p for p in cluster.temp_dir.rglob("*") if p.is_file() and not p.is_socket() and SECRET.encode() in p.read_bytes()]
    assert leaked == []


def test_a_retrain_runs_on_a_ray_worker_without_the_state_stores_url(cluster: RayCluster, world, tmp_path, caplog):
    from monitor.core.config import Config, RayExecutorConfig
    from monitor.observe.metrics import Metrics
    from monitor.service.executors import open_executor
    from monitor.service.handoff import RetrainHandoff

    directory, table = world
    base = load_config(config_file(directory, table, {"type": "ray", "address": cluster.address}, "retrain"))
    model = base.model("steady")
    # The daemon's state URL carries a password: the retrain on Ray must get neither it nor the URL.
    config = Config(state_url=f"postgresql://driftd:{SECRET}@127.0.0.1:1/state", models=[model],
                    executor=RayExecutorConfig(type="ray", address=cluster.address))
    store = StateStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    store.migrate()
    executor = open_executor(config)
    handoff = RetrainHandoff(config, store, Metrics(process_metrics=False), clock=SimulatedClock(NOW),
                             target="tests.support.retrain_targets:rejects", executor=executor)
    try:
        job = store.create_retrain_job("steady", "check-1", "rejects")
        assert job is not None
        with caplog.at_level(logging.INFO, logger="driftd"):
            handoff.submit(job, model, Trigger("check-1", None, NOW, 0.5, "rejects")).result()
    finally:
        handoff.shutdown(wait=True)
        executor.close()
    done = next(j for j in store.retrain_jobs("steady") if j.job_id == job.job_id)
    assert done.status == "succeeded" and done.outcome == "rejected"
    assert done.reason.startswith("not better enough; config carried a password: False")
    ran = [r.getMessage() for r in caplog.records if "ran on Ray node" in r.getMessage()]
    assert len(ran) == 1 and cluster.head_node_id() in ran[0]


def test_no_cluster_is_a_recorded_failed_check_and_the_daemon_carries_on(tmp_path, world):
    directory, table = world
    nowhere = f"127.0.0.1:{free_port()}"
    path = config_file(directory, table, {"type": "ray", "address": nowhere, "connect_timeout": "5s"}, "nowhere")
    daemon = Daemon(load_config(path), clock=SimulatedClock(NOW))
    try:
        model = daemon.config.model("steady")
        first = daemon.tick(model)
        again = daemon.tick(model)  # fails fast while the failure is fresh; a later tick connects again
        records = daemon.store.recent_checks("steady", 5)
        watermark = daemon.store.watermark("steady")
    finally:
        daemon.stop()
    assert first is not None and first.status is CheckStatus.ERROR
    assert first.message is not None and first.message.startswith(f"Ray executor ({nowhere}) cannot connect")
    assert "checked again on the next tick" in first.message
    assert again is not None and again.status is CheckStatus.ERROR
    assert [r.status for r in records] == [CheckStatus.ERROR, CheckStatus.ERROR]  # recorded as failed checks
    assert watermark is None  # no window was skipped



def test_a_cluster_lost_mid_run_is_a_failed_check_and_the_window_is_checked_once_it_is_back(cluster: RayCluster, world):
    """Last in the module: it stops the module's cluster and starts its head again where it was."""
    directory, table = world
    path = config_file(directory, table, {"type": "ray", "address": cluster.address}, "lost")
    clock = SimulatedClock(START + timedelta(hours=1))
    daemon = Daemon(load_config(path), clock=clock)
    try:
        model = daemon.config.model("steady")
        first = daemon.tick(model)
        assert first is not None and first.status is CheckStatus.OK
        port = int(cluster.address.rsplit(":", 1)[1])
        cluster.stop()  # the GCS, the raylet and the workers are gone; the daemon's driver process still thinks it is connected
        clock.advance(timedelta(hours=1))
        lost = daemon.tick(model)
        assert lost is not None and lost.status is CheckStatus.ERROR and lost.details == {"executor_error": "ray"}
        assert lost.message is not None and lost.message.startswith(f"Ray executor ({cluster.address}) lost the check")
        assert daemon.store.watermark("steady").timestamp == first.watermark.timestamp  # nothing skipped

        cluster.start_node(num_cpus=2, head=True, port=port)
        back = daemon.tick(model)
        records = daemon.store.recent_checks("steady", 5)
    finally:
        daemon.stop()
    assert back is not None and back.status is CheckStatus.OK
    logged = pd.read_parquet(directory / "steady" / "part-0.parquet")["ts"]
    left = ((logged > pd.Timestamp(first.watermark.timestamp)) & (logged <= pd.Timestamp(START + timedelta(hours=2)))).sum()
    assert back.window_start == first.watermark.timestamp and back.rows == left > 3000  # the window the lost check left, whole
    assert back.details["executor"]["node_id"] == cluster.head_node_id()  # the new head's node
    # The failed check is recorded too (the lost and the retried check share the simulated clock's time: their order is not asserted).
    assert sorted(r.status.value for r in records) == ["error", "ok", "ok"]
