"""One retrain job's life in the state store: queued -> running -> its outcome, or failed.

`driftd retrain` (monitor.service.commands) and the daemon's hand-off (monitor.service.handoff)
both run a queued job through `run_job`, so whoever started it, a job never stays `running`
after its retrain returned or raised, and its row carries the MLflow run and version the
retrain reported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from monitor.core.records import RetrainJob
from monitor.core.statuses import JobStatus, RetrainOutcome
from monitor.state.store import StateStore

if TYPE_CHECKING:
    from retrain import RetrainOutcome as Outcome

log = logging.getLogger("driftd.retrain")


def run_job(store: StateStore, job: RetrainJob, retrain: Callable[[], Outcome], failure: Callable[[BaseException], str]) -> Outcome:
    """Mark `job` running, run `retrain`, record its outcome. Whatever `retrain` (or the store)
    raises is recorded as a failure worded by `failure(exc)` and raised again."""
    try:
        store.update_retrain_job(job.job_id, status=JobStatus.RUNNING)
        outcome = retrain()
        store.update_retrain_job(job.job_id, status=RetrainOutcome(outcome.outcome).job_status, outcome=outcome.outcome,
                                 reason=outcome.reason, run_id=outcome.run_id, version=outcome.version)
    except BaseException as exc:  # Ctrl-C, a crashed child or a bug: never leave the job blocking later retrains
        mark_failed(store, job, failure(exc))
        raise
    return outcome


def mark_failed(store: StateStore, job: RetrainJob, reason: str) -> None:
    try:
        store.update_retrain_job(job.job_id, status=JobStatus.FAILED, outcome=RetrainOutcome.FAILED, reason=reason)
    except Exception:  # the store itself is down: a restart's recovery marks the job
        log.exception("could not record the failure of retrain %s", job.job_id)
