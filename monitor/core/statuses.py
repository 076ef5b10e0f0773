"""The bounded words driftd stores, exports and compares: check statuses, job states, outcomes.

Each is a `StrEnum`, so a member IS its string: stored columns, metric labels, MLflow tags
and JSON keep exactly the values they had, and `JobStatus.FAILED == "failed"` holds for rows
read back from the database.
"""

from __future__ import annotations

from enum import StrEnum


class CheckStatus(StrEnum):
    """How one drift check ended (`checks.status`, `driftd_checks_total{status}`)."""

    OK = "ok"
    DRIFT = "drift"
    INSUFFICIENT_DATA = "insufficient_data"
    ERROR = "error"


class JobStatus(StrEnum):
    """Where a retrain job is (`retrain_jobs.status`)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # the pipeline ran to a decision: promoted or rejected
    FAILED = "failed"

    @property
    def active(self) -> bool:
        return self in (JobStatus.QUEUED, JobStatus.RUNNING)


class RetrainOutcome(StrEnum):
    """What a finished retrain decided (`retrain_jobs.outcome`, `driftd_retrains_total{outcome}`,
    the `driftd.outcome` tag on the run and the model version)."""

    PROMOTED = "promoted"
    REJECTED = "rejected"
    FAILED = "failed"

    @property
    def job_status(self) -> JobStatus:
        """The job status a retrain that ended this way finishes with."""
        return JobStatus.FAILED if self is RetrainOutcome.FAILED else JobStatus.SUCCEEDED


class AlertState(StrEnum):
    """An alert's state as channels receive it."""

    FIRING = "firing"
    RESOLVED = "resolved"


class AlertOutcome(StrEnum):
    """What became of one notification on one channel (`driftd_alerts_total{outcome}`)."""

    SENT = "sent"
    FAILED = "failed"  # one delivery round failed; it is tried again
    DROPPED = "dropped"  # given up, superseded, or not delivered before driftd stopped


def values(kind: type[StrEnum]) -> tuple[str, ...]:
    """The plain strings of an enum, in declaration order (SQL CHECK lists, metric label sets)."""
    return tuple(member.value for member in kind)
