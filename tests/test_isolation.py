"""Each retrain runs in its own process: whatever it does there, the daemon records why it failed
and takes the next job.

The retrain functions are real code named by module path (tests.support.retrain_targets) and
resolved in the child, where `retrain.pipeline:run_retrain` runs in production. Timeouts are
real process time: short here, and nothing asserts how fast anything went.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from monitor.core.clock import SimulatedClock
from monitor.core.config import Config, RetrainOptions, load_config
from monitor.core.results import CheckStatus
from monitor.observe.metrics import Metrics
from monitor.service.handoff import RetrainHandoff
from monitor.state.store import StateStore
from retrain.pipeline import Trigger
from tests.support.models import model_config

NOW = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
SECRET = "hunter2-not-for-logs"
TARGETS = "tests.support.retrain_targets"


class _Daemon:
    """The daemon's retrain side: a real store, real metrics and the real hand-off."""

    def __init__(self, tmp_path: Path, target: str = f"{TARGETS}:acts_out", **retrain: object) -> None:
        self.model = model_config("loans", tmp_path / "logs" / "*.parquet", retrain=RetrainOptions(**retrain))
        # A state URL with a password: it reaches the child (in the config) and must not come back out.
        self.config = Config(state_url=f"postgresql://driftd:{SECRET}@127.0.0.1:1/state", models=[self.model])
        self.store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
        self.store.migrate()
        self.metrics = Metrics(process_metrics=False)
        self.handoff = RetrainHandoff(self.config, self.store, self.metrics, clock=SimulatedClock(NOW), target=target)

    def retrain(self, behaviour: str):
        """Submits one job whose retrain does `behaviour` (tests.support.retrain_targets); returns it as stored once finished."""
        job = self.store.create_retrain_job("loans", "check-1", behaviour)
        assert job is not None
        self.handoff.submit(job, self.model, Trigger("check-1", None, NOW, 0.5, behaviour)).result()
        assert self.handoff.idle()
        return next(j for j in self.store.retrain_jobs("loans") if j.job_id == job.job_id)

    def retrains(self, outcome: str) -> float:
        return self.metrics.registry.get_sample_value("driftd_retrains_total", {"model": "loans", "outcome": outcome}) or 0.0

    def close(self) -> None:
        self.handoff.shutdown(wait=True)


@pytest.fixture
def daemon(request, tmp_path):
    made: list[_Daemon] = []

    def make(target: str = f"{TARGETS}:acts_out", **retrain: object) -> _Daemon:
        made.append(_Daemon(tmp_path, target, **retrain))
        return made[-1]

    yield make
    for d in made:
        d.close()


def test_a_finished_retrain_is_recorded_with_the_childs_logs_and_no_secret_left_the_config(daemon, caplog):
    d = daemon()
    with caplog.at_level(logging.INFO, logger="driftd"):
        job = d.retrain("rejects")

    assert job.status == "succeeded" and job.outcome == "rejected"
    # The child got the password through the pickled config, not through its command line or environment.
    assert job.reason == "not better enough; config carried a password: True; password on its command line or in its environment: False"
    # Its log lines and progress came home through the daemon's loggers, the simulated clock's "now" with them.
    messages = [r.getMessage() for r in caplog.records]
    assert f"child log line for loans at {NOW.isoformat()}" in messages
    assert "retrain: training on 0 rows" in messages
    assert d.retrains("rejected") == 1


def test_a_retrain_that_raises_fails_with_its_masked_message_and_the_next_job_runs(daemon):
    d = daemon()
    job = d.retrain("raises")

    assert job.status == "failed" and job.outcome == "failed"
    assert "RuntimeError: estimator exploded while reading" in job.reason
    assert SECRET not in job.reason and "***" in job.reason
    assert d.retrains("failed") == 1

    assert d.retrain("rejects").status == "succeeded"


def test_a_retrain_that_hangs_is_killed_at_the_timeout_and_the_next_job_runs(daemon):
    d = daemon(timeout="3s")
    job = d.retrain("hangs")

    assert job.status == "failed" and job.outcome == "failed"
    assert job.reason.startswith("retrain exceeded retrain.timeout (3 s); the process was killed")
    assert d.retrains("failed") == 1

    assert d.retrain("rejects").status == "succeeded"
    assert d.retrains("rejected") == 1


def test_a_retrain_that_aborts_is_recorded_with_the_signal_and_the_next_job_runs(daemon):
    d = daemon()
    job = d.retrain("aborts")

    assert job.status == "failed" and job.outcome == "failed"
    assert job.reason.startswith("retrain process died with signal SIGABRT")
    assert d.retrains("failed") == 1

    assert d.retrain("rejects").status == "succeeded"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="retrain.memory_limit is enforced on Linux only")
def test_a_retrain_past_its_memory_limit_fails_with_the_limit_named(daemon):
    d = daemon(memory_limit="2GiB")
    job = d.retrain("hoards_memory")

    assert job.status == "failed"
    assert "ran out of memory under retrain.memory_limit (2147483648 bytes)" in job.reason


def test_an_unknown_target_fails_the_job_with_the_import_error(daemon):
    d = daemon(f"{TARGETS}:no_such_function")
    job = d.retrain("rejects")

    assert job.status == "failed"
    assert "AttributeError" in job.reason and "no_such_function" in job.reason


def test_timeout_and_memory_limit_are_read_from_the_config(tmp_path):
    path = tmp_path / "driftd.yaml"
    path.write_text(
        "defaults:\n  retrain:\n    timeout: 90m\n    memory_limit: 4GiB\n"
        "models:\n  - name: loans\n    source: {type: files, path: 'logs/*.parquet'}\n"
        "    columns: {timestamp: ts, id: rid, prediction: pred, numerical: [x]}\n    task: regression\n"
        "    retrain: {memory_limit: 500MB}\n"
    )
    model = load_config(path).models[0]
    assert model.retrain.timeout.total_seconds() == 90 * 60
    assert model.retrain.memory_limit == 500 * 10**6
    assert RetrainOptions().timeout.total_seconds() == 2 * 3600 and RetrainOptions().memory_limit is None


# --- the real pipeline, a real registry: a crash never half-promotes --------------------------


class _Aborts:
    """Unpickling this calls os.abort(): what a hostile or corrupt champion pickle does to whoever loads it."""

    def __reduce__(self):
        import os

        return (os.abort, ())


def _registered(world) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """The registered model's aliases, and each version's tags."""
    import mlflow

    client = mlflow.MlflowClient(world.config.mlflow.tracking_uri)
    name = world.model.mlflow_name
    aliases = {alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()}
    return aliases, {str(v.version): dict(v.tags) for v in client.search_model_versions(f"name='{name}'")}


def _handoff(world, tmp_path: Path, target: str | None = None):
    from monitor.service.isolation import DEFAULT_TARGET

    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    metrics = Metrics(process_metrics=False)
    return store, metrics, RetrainHandoff(world.config, store, metrics, clock=SimulatedClock(NOW_WORLD), target=target or DEFAULT_TARGET)


NOW_WORLD = datetime(2024, 3, 1, tzinfo=timezone.utc)  # tests.test_retrain's world


def test_a_champion_that_aborts_on_load_fails_the_retrain_and_leaves_the_registry_as_it_was(tmp_path):
    import pickle

    from tests.test_retrain import TRIGGER, make_world

    world = make_world(tmp_path)
    pickles = list((tmp_path / "artifacts").rglob("model.pkl"))
    assert pickles, "the champion's scikit-learn model is a cloudpickle file"
    for path in pickles:
        path.write_bytes(pickle.dumps(_Aborts()))
    before = _registered(world)
    store, metrics, handoff = _handoff(world, tmp_path)
    try:
        job = store.create_retrain_job(world.model.name, TRIGGER.check_id, TRIGGER.reason)
        handoff.submit(job, world.model, TRIGGER).result()
    finally:
        handoff.shutdown(wait=True)
    (stored,) = store.retrain_jobs(world.model.name)
    assert stored.status == "failed" and stored.reason.startswith("retrain process died with signal SIGABRT")
    assert metrics.registry.get_sample_value("driftd_retrains_total", {"model": world.model.name, "outcome": "failed"}) == 1
    assert _registered(world) == before  # nothing registered, no alias moved


def test_a_retrain_killed_at_the_switch_leaves_the_old_champion_serving_and_no_new_version_marked_champion(tmp_path):
    import mlflow

    from retrain.registry import settle_orphans
    from tests.test_retrain import TRIGGER, make_world

    world = make_world(tmp_path)
    (old_aliases, _) = _registered(world)
    store, _, handoff = _handoff(world, tmp_path, f"{TARGETS}:acts_out")
    try:
        job = store.create_retrain_job(world.model.name, TRIGGER.check_id, "killed_at_the_switch")
        handoff.submit(job, world.model, replace(TRIGGER, reason="killed_at_the_switch")).result()
    finally:
        handoff.shutdown(wait=True)
    (stored,) = store.retrain_jobs(world.model.name)
    assert stored.status == "failed" and stored.reason.startswith("retrain process died with signal SIGKILL")

    aliases, versions = _registered(world)
    assert aliases["champion"] == old_aliases["champion"] == "1"
    assert set(versions) == {"1", "2"}, "the challenger was registered before the kill"
    assert aliases == old_aliases == {"champion": "1"}, "no alias moved (not even `previous`) before the switch"
    assert versions["2"]["driftd.outcome"] == "pending"
    # The next retrain settles the orphan: it is marked failed, never champion.
    client = mlflow.MlflowClient(world.config.mlflow.tracking_uri)
    assert settle_orphans(client, world.model.mlflow_name) == ["2"]
    assert _registered(world)[1]["2"]["driftd.outcome"] == "failed" and _registered(world)[0]["champion"] == "1"


def test_checks_stay_on_schedule_while_a_retrain_hangs_and_a_stop_ends_its_process(tmp_path):
    """The daemon's scheduler, on a simulated clock, keeps checking a model every interval while a
    retrain of it hangs in its child process; stopping the daemon kills that child and records why."""
    from monitor.service.daemon import Daemon
    from tests.support.models import make_loans, train_baseline, with_predictions, write_log
    from tests.support.promstack import wait_for

    frame = make_loans(3000, seed=1, start=NOW - timedelta(days=3), every=timedelta(minutes=1))
    estimator = train_baseline(frame.iloc[:1000], "logistic")
    reference = tmp_path / "reference.parquet"
    with_predictions(estimator, frame.iloc[:1000]).to_parquet(reference, index=False)
    write_log(tmp_path / "logs", estimator, frame.iloc[1000:])
    model = model_config("loans", tmp_path / "logs" / "*.parquet", reference=reference, retrain=RetrainOptions(timeout="1h"),
                         window={"size": "15m", "min_rows": 50})
    config = Config(state_url=f"sqlite:///{tmp_path / 'state.db'}", server={"port": 0}, models=[model],
                    mlflow={"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    clock = SimulatedClock(NOW)
    daemon = Daemon(config, clock=clock)
    daemon.handoff.shutdown(wait=True)
    daemon.handoff = RetrainHandoff(config, daemon.store, daemon.metrics, clock=clock, target=f"{TARGETS}:acts_out")
    daemon.start()  # (its start-up marks jobs a crash left running as failed: submit after it)
    try:
        job = daemon.store.create_retrain_job("loans", "check-0", "hangs")
        daemon.handoff.submit(job, model, Trigger("check-0", None, NOW, 0.5, "hangs"))
        wait_for(lambda: daemon.store.active_retrain_job("loans").status == "running", timeout=30)
        before = len(wait_for(lambda: daemon.store.recent_checks("loans", 10), timeout=60))  # the first check, at start
        for due in range(1, 4):  # one more per interval of the daemon's clock
            clock.advance(model.schedule.every * 1.1)  # past the seeded jitter (at most 5% of the interval)
            wait_for(lambda n=before + due: len(daemon.store.recent_checks("loans", 10)) >= n, timeout=60)
        checks = daemon.store.recent_checks("loans", 10)
        assert {c.status for c in checks} <= {CheckStatus.OK, CheckStatus.DRIFT, CheckStatus.INSUFFICIENT_DATA}
        assert daemon.store.active_retrain_job("loans").status == "running" and not daemon.handoff.idle()
    finally:
        daemon.stop()
    stored = wait_for(lambda: next(j for j in daemon.store.retrain_jobs("loans") if j.status == "failed"), timeout=30)
    assert stored.reason == "retrain process was stopped: the daemon is shutting down"
