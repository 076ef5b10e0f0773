"""What follows a countable window: the policy's decision, recorded with its reasons, and the
alert state it moves.

`judge` is shared by the daemon and `driftd backfill`; what they do with the verdict differs:
the daemon sends the alert and starts the retrain, a backfill sends alerts only when asked and
never retrains (its windows are history).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from monitor.check.policy import Decision, decide
from monitor.core.config import ModelConfig
from monitor.core.results import CheckResult
from monitor.core.statuses import AlertState
from monitor.state.store import StateStore

if TYPE_CHECKING:
    from monitor.observe.alerts import AlertEvent
    from retrain.registry import Champion

DRIFT_ALERT = "DriftdDatasetDrift"
NOT_CONFIGURED = (
    "retraining is not configured: there is no champion in the MLflow registry to retrain from "
    "(monitoring only; `driftd adopt` puts a model under driftd's care)"
)


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    alert: AlertEvent | None  # the notification due now (re-sent every window while firing), None when quiet


def retrain_status(model: ModelConfig, champion: Champion | None) -> str:
    """How retraining stands for `model`, for the log and `driftd status`."""
    if not model.retrain.enabled:
        return "disabled (retrain.enabled: false)"
    if champion is None:
        return "not configured (no champion: monitoring only)"
    return "enabled"


def judge(store: StateStore, model: ModelConfig, result: CheckResult, champion: Champion | None, *, now: datetime,
          labelled_rows: Callable[[], int | None], alert_valid_for: timedelta, not_started: str | None = None) -> Verdict:
    """Decide after the countable window `result` (already recorded), record the decision and move
    the drift alert's state. `not_started`: why a due retrain will not be started, recorded with it."""
    alert = store.alert_state(model.name, DRIFT_ALERT)
    firing = bool(alert and alert.firing)
    history = store.recent_checks(model.name, _history_depth(model))
    jobs = store.retrain_jobs(model.name, since=now - max(model.policy.cooldown, timedelta(days=1)))
    # With retraining disabled the policy says so itself; without a champion it cannot start.
    unavailable = NOT_CONFIGURED if champion is None and model.retrain.enabled else None

    def decision_with(rows: int | None) -> Decision:
        return decide(
            model.policy, model.retrain, history, alert_firing=firing, jobs=jobs,
            champion_score=champion.validation_score if champion else None,
            primary_metric=champion.primary_metric if champion else None,
            champion_version=champion.version if champion else None,
            now=now, labelled_rows=rows, retrain_unavailable=unavailable,
        )  # fmt: skip

    decision = decision_with(None)
    if decision.retrain:  # rare: only then is counting the training window's labels worth a read
        decision = decision_with(labelled_rows())
    reasons = "; ".join(decision.reasons) + (f"; {not_started}" if decision.retrain and not_started else "")
    store.record_decision(model.name, result.check_id, action(decision), reasons)
    return Verdict(decision, _alert(store, model, result, decision, firing, now, alert_valid_for))


def action(decision: Decision) -> str:
    parts = [f"alert:{decision.alert}"] if decision.alert else []
    if decision.retrain:
        parts.append("retrain")
    return ",".join(parts) or "none"


def _alert(store: StateStore, model: ModelConfig, result: CheckResult, decision: Decision, firing: bool,
           now: datetime, valid_for: timedelta) -> AlertEvent | None:
    from monitor.observe.alerts import AlertEvent

    if decision.alert == "fire":
        firing = True
        store.set_alert_state(model.name, DRIFT_ALERT, True, now)
    elif decision.alert == "resolve":
        firing = False
        store.set_alert_state(model.name, DRIFT_ALERT, False, now)
    elif not firing:
        return None
    status = AlertState.FIRING if firing else AlertState.RESOLVED
    summary = f"{model.name}: {drift_summary(result)}" if firing else f"{model.name}: drift resolved"
    joint = result.multivariate
    if firing and joint is not None and joint.drifted:  # what the per-feature list cannot show
        strongest = f", strongest: {', '.join(joint.strongest)}" if joint.strongest else ""
        summary += f"; joint distribution moved (multivariate AUROC {joint.auroc:.2f}, p {joint.p_value:.1g}{strongest})"
    # Re-sent while firing: Alertmanager needs it, the webhook and Slack channels dedupe it.
    return AlertEvent(model=model.name, alert=DRIFT_ALERT, status=status, summary=summary,
                      description="; ".join(decision.reasons), check_id=result.check_id, severity="warning", at=now,
                      runbook=f"driftd check -c <config> --model {model.name}; see the Model detail dashboard",
                      valid_for=valid_for)


def drift_summary(result: CheckResult) -> str:
    """The drifted features by name, each with the test that found it, for the alert text."""
    drifted = [f for f in result.features if f.drifted]
    if not drifted:
        return "drift alert firing (the latest window shows no drifted feature)"
    return f"drift in {len(drifted)} of {len(result.features)} features: " + ", ".join(_why(f) for f in drifted)


def _why(feature) -> str:
    parts = []
    for test in feature.drifted_by:
        if test == "distribution":
            parts.append(f"distribution score {feature.score:.3g}, p={feature.p_value:.1e}" if feature.p_value is not None
                         else f"distribution score {feature.score:.3g}")
        elif test == "missing":
            parts.append(f"{feature.missing_share:.1%} missing")
        elif test in ("unseen", "novelty"):
            parts.append(f"{(feature.unseen_share or 0):.1%} values unseen in the reference")
        elif test == "threshold":
            parts.append(f"{feature.method} score {feature.score:.3g}, threshold {feature.threshold:.3g}")
    return f"{feature.feature} ({'; '.join(parts)})" if parts else feature.feature


def _history_depth(model: ModelConfig) -> int:
    policy = model.policy
    # Insufficient-data and error windows are skipped by the policy, so look further back.
    return 4 * max(policy.alert_after.m, policy.retrain_after.m, policy.resolve_after) + 10
