"""Each retrain runs in its own process: whatever it does there, the daemon records why it failed
and takes the next job.

The retrain functions are real code named by module path (tests.support.retrain_targets) and
resolved in the child, where `retrain.pipeline:run_retrain` runs in production. Timeouts are
real process time: short here, and nothing asserts how fast anything went.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from monitor.core.clock import SimulatedClock
from monitor.core.config import Config, RetrainOptions, load_config
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
