"""`executor: ray` on a real Ray cluster on loopback: the checks and the real retrain pipeline run on
Ray workers and give the local executor's results (the same windows; identical fresh registries), no
secret reaches Ray's files, every socket the cluster listens on is on 127.0.0.1, and a cluster that
is not there is a failed check, not a crash.

One cluster for the module (`ray start --head` on free ports, a private temp dir, 2 CPUs), ended
by its processes' ids. The daemons run in-process on a simulated clock, so both executors check
exactly the same windows.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from monitor.core.clock import SimulatedClock
from monitor.core.config import load_config
from monitor.core.records import RetrainJob
from monitor.core.results import CheckResult, CheckStatus
from monitor.demo.ray_cluster import RayCluster, descendants, ray_cluster
from monitor.service.daemon import Daemon
from monitor.state.store import StateStore
from retrain.pipeline import Trigger
from tests.support.checks import comparable
from tests.support.data import START, columns, predictions
from tests.support.promstack import free_port
from tests.test_retrain import NOW as RETRAIN_NOW
from tests.test_retrain import TRIGGER as RETRAIN_TRIGGER
from tests.test_retrain import World, aliases, make_world

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


def check_all(path: Path, meanwhile: Callable[[], None] = lambda: None) -> dict[str, CheckResult]:
    """Each model's check on the simulated clock; `meanwhile` runs after them, while the executor is still connected."""
    daemon = Daemon(load_config(path), clock=SimulatedClock(NOW))
    try:
        results = {m.name: daemon.tick(m) for m in daemon.config.models}
        stored = {m.name: daemon.store.recent_checks(m.name, 5) for m in daemon.config.models}
        meanwhile()
    finally:
        daemon.stop()
    assert all(len(records) == 1 for records in stored.values()), stored  # each window recorded once, by this daemon
    return results  # type: ignore[return-value]


def listeners(pids: set[int]) -> dict[str, int]:
    """Every listening TCP socket of `pids` ("address:port" -> pid), from /proc: the sockets' inodes in each
    process's fds, their addresses in /proc/net/tcp{,6} (hex, each 32-bit word in host order)."""
    owner: dict[str, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if (link := os.readlink(fd)).startswith("socket:["):
                        owner[link[8:-1]] = pid
    found: dict[str, int] = {}
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for row in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] != "0A" or fields[9] not in owner:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            raw = b"".join(struct.pack("=I", int(address[i:i + 8], 16)) for i in range(0, len(address), 8))
            found[f"{socket.inet_ntop(family, raw)}:{int(port, 16)}"] = owner[fields[9]]
    return found


def on_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.rsplit(":", 1)[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def test_checks_run_on_ray_workers_with_the_local_executors_results(cluster: RayCluster, world):
    directory, table = world
    local = check_all(config_file(directory, table, {"type": "local"}, "local"))
    sockets: dict[str, int] = {}

    def cluster_listeners() -> None:  # the cluster's processes, its workers and the daemon's driver process
        roots = {p.pid for p in cluster.processes}
        sockets.update(listeners(roots | descendants(roots | {os.getpid()})))

    on_ray = check_all(config_file(directory, table, {"type": "ray", "address": cluster.address, "check_timeout": "5m",
                                                        "models": {"drifted": {"check": {"num_cpus": 2}}}}, "ray"),
                       meanwhile=cluster_listeners)

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

    # Loopback only: the GCS, raylet, object manager, agents, workers and the driver listen on 127.0.0.1.
    assert len(sockets) >= 5 and [a for a in sockets if not on_loopback(a)] == [], sockets

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


def retrain_through_the_handoff(world: World, tmp_path: Path, executor) -> RetrainJob:
    """The daemon's real retrain target (retrain.pipeline:run_retrain) through its hand-off on `executor`;
    returns the job as stored."""
    from monitor.observe.metrics import Metrics
    from monitor.service.handoff import RetrainHandoff

    store = StateStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    store.migrate()
    handoff = RetrainHandoff(world.config, store, Metrics(process_metrics=False), clock=SimulatedClock(RETRAIN_NOW),
                             executor=executor)
    try:
        job = store.create_retrain_job(world.model.name, "check-42", "drift")
        assert job is not None
        handoff.submit(job, world.model, RETRAIN_TRIGGER).result()
    finally:
        handoff.shutdown(wait=True)
        executor.close()
    return next(j for j in store.retrain_jobs(world.model.name) if j.job_id == job.job_id)


def evaluated(world: World, run_id: str) -> tuple[dict[str, float], dict[str, str]]:
    """The retrain's evaluation: the scores and gates its `evaluate` run logged, and the gates tagged on the version."""
    client = mlflow.MlflowClient(world.config.mlflow.tracking_uri)
    parent = client.get_run(run_id)
    (evaluate,) = client.search_runs([parent.info.experiment_id],
                                     filter_string=f"tags.mlflow.parentRunId = '{run_id}' and tags.mlflow.runName = 'evaluate'")
    version = client.get_model_version(world.model.name, "2")
    return evaluate.data.metrics, {k: v for k, v in version.tags.items() if k.startswith("driftd.gate")}


def test_the_real_retrain_on_a_ray_worker_gives_the_local_executors_outcome(cluster: RayCluster, tmp_path, caplog):
    from monitor.core.config import LocalExecutorConfig, RayExecutorConfig
    from monitor.service.executors import open_executor

    # Two identical fresh registries (a champion trained before the drift, drifted labelled logs): a small
    # logistic model, ONNX conversion only; MLflow on SQLite files both the worker and the daemon reach.
    worlds = {where: make_world(tmp_path / where, rows=2500) for where in ("ray", "local")}
    on_ray = worlds["ray"].config.model_copy(update={"executor": RayExecutorConfig(type="ray", address=cluster.address)})
    local = worlds["local"].config.model_copy(update={"executor": LocalExecutorConfig(type="local")})
    with caplog.at_level(logging.INFO, logger="driftd"):
        ray_job = retrain_through_the_handoff(replace(worlds["ray"], config=on_ray), tmp_path / "ray", open_executor(on_ray))
        ray_lines = [r.getMessage() for r in caplog.records]
        caplog.clear()
        local_job = retrain_through_the_handoff(replace(worlds["local"], config=local), tmp_path / "local", open_executor(local))
        local_lines = [r.getMessage() for r in caplog.records]

    assert local_job.status == "succeeded" and local_job.outcome == "promoted", local_job.reason
    assert (ray_job.status, ray_job.outcome, ray_job.version, ray_job.reason) == \
        (local_job.status, local_job.outcome, local_job.version, local_job.reason)
    assert all(aliases(w.config, w.model.name) == {"champion": "2", "previous": "1"} for w in worlds.values())
    ray_metrics, ray_gates = evaluated(worlds["ray"], ray_job.run_id)
    local_metrics, local_gates = evaluated(worlds["local"], local_job.run_id)
    assert ray_gates == local_gates and ray_gates  # the same gate decisions, bounds and all
    assert {"challenger_score", "champion_score", "gate.improvement.lower_bound"} <= set(local_metrics)
    # Every fit, split and resample is seeded, so the numbers match; only BLAS's summation order may
    # differ (Ray runs a task with OMP_NUM_THREADS = its num_cpus), hence 1e-9 rather than equality.
    assert ray_metrics == pytest.approx(local_metrics, abs=1e-9)

    ran = [line for line in ray_lines if "ran on Ray node" in line]
    assert len(ran) == 1 and cluster.head_node_id() in ran[0], ray_lines
    pid = int(ran[0].split("(pid ", 1)[1].split()[0])
    assert pid != os.getpid() and not any("ran on Ray node" in line for line in local_lines)


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
