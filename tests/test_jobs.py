"""The one retrain-job lifecycle both `driftd retrain` and the daemon's hand-off run."""

from __future__ import annotations

import pytest

from monitor.service.jobs import run_job
from monitor.state.store import StateStore
from retrain import RetrainOutcome


@pytest.fixture
def store(tmp_path) -> StateStore:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    return store


def _outcome(outcome: str) -> RetrainOutcome:
    return RetrainOutcome(model="churn", outcome=outcome, reason="gates passed", version="7", run_id="r1", metric="roc_auc",
                          champion_score=0.8, challenger_score=0.85, original_size=None, compressed_size=None, original_p50_ms=None,
                          compressed_p50_ms=None, variant=None, duration_seconds=1.0)


def test_job_runs_from_queued_to_its_outcome(store: StateStore) -> None:
    job = store.create_retrain_job("churn", None, "manual")
    assert job is not None and job.status == "queued"
    seen = []

    def retrain() -> RetrainOutcome:
        seen.append(store.active_retrain_job("churn"))
        return _outcome("promoted")

    run_job(store, job, retrain, lambda exc: "unused")
    assert seen[0] is not None and seen[0].status == "running"
    [done] = store.retrain_jobs("churn")
    assert (done.status, done.outcome, done.run_id, done.version) == ("succeeded", "promoted", "r1", "7")


def test_a_raising_retrain_is_recorded_failed_and_raised_again(store: StateStore) -> None:
    job = store.create_retrain_job("churn", None, "manual")
    assert job is not None

    def retrain() -> RetrainOutcome:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(store, job, retrain, lambda exc: f"interrupted: {type(exc).__name__}")
    [done] = store.retrain_jobs("churn")
    assert (done.status, done.outcome, done.reason) == ("failed", "failed", "interrupted: KeyboardInterrupt")
    assert store.create_retrain_job("churn", None, "again") is not None  # the failed job blocks no later retrain
