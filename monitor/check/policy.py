"""The trigger policy: from a model's recent checks to "fire/resolve the alert?" and "retrain?".

A pure function of its inputs, so every rule is testable without a database or a clock.
Only *countable* windows (status ok or drift) vote: an insufficient_data or error window
says nothing about drift, so it is skipped — never counted as clean, never as drifted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from monitor.check.quality import higher_is_better, quality_drop
from monitor.core.config import NOfM, Policy, RetrainOptions
from monitor.core.records import CheckRecord, RetrainJob
from monitor.core.results import CheckStatus

# Metrics where a smaller value is better; every other metric (accuracy, f1, roc_auc, r2, …)
# is taken as higher-is-better.

_COUNTABLE = (CheckStatus.OK, CheckStatus.DRIFT)
_BUDGET_PERIOD = timedelta(hours=24)


@dataclass(frozen=True)
class Decision:
    alert: Literal["fire", "resolve"] | None
    retrain: bool
    reasons: tuple[str, ...]  # why each thing happened or did not, for logs and the decisions table


@dataclass(frozen=True)
class _Quality:
    dropped: bool
    reason: str


def decide(
    policy: Policy,
    retrain: RetrainOptions,
    history: Sequence[CheckRecord],
    *,
    alert_firing: bool,
    jobs: Sequence[RetrainJob],
    champion_score: float | None,
    primary_metric: str | None,
    now: datetime,
    labelled_rows: int | None,
    champion_version: str | None = None,
    retrain_unavailable: str | None = None,
) -> Decision:
    """Decide for one model after a check.

    `history`: the model's recent checks (e.g. `StateStore.recent_checks(model, 50)`); pass
    enough that skipped windows still leave the longest look-back. `jobs`: the model's retrain
    jobs covering at least max(cooldown, 24 h) plus any still queued/running.
    `labelled_rows`: labelled rows available for training, or None when unknown (not gated).
    `champion_version`: only quality attributed to it (or not attributed at all) is compared
    with `champion_score`; rows another version served never count against the champion.
    `retrain_unavailable`: why this model cannot be retrained at all (e.g. no champion: it is
    monitored only); a due retrain is then reported as not started, never as a failure.
    """
    if now.tzinfo is None:
        raise ValueError("decide() needs a timezone-aware `now` (UTC)")
    countable = [c for c in sorted(history, key=lambda c: c.started_at, reverse=True) if c.status in _COUNTABLE]
    quality = _either(_quality(policy, countable, champion_score, primary_metric, champion_version),
                      _estimated(policy, countable, champion_score, primary_metric, champion_version))
    alert, alert_reasons = _alert(policy, countable, alert_firing, quality)
    start, retrain_reasons = _retrain(policy, retrain, countable, quality, jobs, now, labelled_rows, retrain_unavailable)
    reasons = [*alert_reasons, *retrain_reasons, quality.reason]
    skipped = len(history) - len(countable)
    if skipped:
        reasons.append(f"{skipped} recent window(s) skipped (insufficient_data or error): they count as neither clean nor drifted")
    return Decision(alert=alert, retrain=start, reasons=tuple(reasons))


# --- drift tallies -------------------------------------------------------------------------


def _drifted(countable: Sequence[CheckRecord], rule: NOfM) -> tuple[bool, str]:
    last = countable[: rule.m]
    hits = sum(c.dataset_drifted for c in last)
    return hits >= rule.n, f"{hits} of the last {len(last)} windows drifted (needs {rule})"


def _clean_streak(countable: Sequence[CheckRecord]) -> int:
    streak = 0
    for check in countable:
        if check.dataset_drifted:
            break
        streak += 1
    return streak


# --- quality -------------------------------------------------------------------------------


def _quality(policy: Policy, countable: Sequence[CheckRecord], champion: float | None, metric: str | None,
             version: str | None) -> _Quality:
    if metric is None:
        return _Quality(False, "quality not compared: no primary metric for this model")
    # Labels arrive late: the newest labelled window stands until a newer one replaces it,
    # as long as the champion served its rows (monitor.check.attribution).
    own = [c.quality for c in countable if c.quality and c.quality.version in (None, version)]
    current = next((q.metrics[metric] for q in own if metric in q.metrics), None)
    if current is None or math.isnan(current):
        served = f" served by champion version {version}" if version else ""
        return _Quality(False, f"quality not compared: no recent window has labelled rows{served} for {metric}{_others(countable, metric)}")
    if champion is None:
        return _Quality(False, f"quality not compared: the champion has no recorded validation {metric}")
    try:
        drop = quality_drop(champion, current, metric)
    except ValueError as exc:  # a primary metric driftd does not compute
        return _Quality(False, f"quality not compared: {exc}")
    dropped = drop > policy.quality_drop
    verdict = "quality dropped" if dropped else "quality ok"
    sign = ">" if dropped else "<="
    return _Quality(
        dropped,
        f"{verdict}: {metric} {current:.4g} vs champion {champion:.4g} (drop {drop:.4g} {sign} allowed {policy.quality_drop:.4g})"
        + _others(countable, metric),
    )


def _estimated(policy: Policy, countable: Sequence[CheckRecord], champion: float | None, metric: str | None,
               version: str | None) -> _Quality | None:
    """The same rule on the newest window's label-free estimate, whose labelled rows already count
    as realized: it acts while labels are missing. Judged on the band's side nearest the champion
    (the best the realized value could plausibly be), so label noise alone does not fire it.
    None when no recent window of this champion was estimated."""
    if metric is None or champion is None:
        return None
    newest = next((c for c in countable if c.estimated is not None and c.reference_version in (None, version)), None)
    if newest is None or newest is not countable[0]:
        return None  # only the newest window speaks: an old estimate is no news about now
    estimate = next((e for e in newest.estimated.estimates if e.metric == metric), None) if newest.estimated else None
    if estimate is None or math.isnan(estimate.value):
        return _Quality(False, f"estimated quality not compared: the estimate has no {metric}")
    bound = estimate.upper if higher_is_better(metric) else estimate.lower
    bound = estimate.value if math.isnan(bound) else bound
    try:
        drop = quality_drop(champion, bound, metric)
    except ValueError as exc:
        return _Quality(False, f"estimated quality not compared: {exc}")
    allowed = policy.estimated_drop if policy.estimated_drop is not None else policy.quality_drop
    dropped = drop > allowed
    side = "upper" if higher_is_better(metric) else "lower"
    return _Quality(
        dropped,
        f"estimated quality {'dropped' if dropped else 'ok'}: {metric} {estimate.value:.4g} ({side} bound {bound:.4g}, "
        f"{estimate.labelled_rows} of {estimate.rows} rows labelled) vs champion {champion:.4g} "
        f"(drop {drop:.4g} {'>' if dropped else '<='} allowed {allowed:.4g})",
    )


def _either(realized: _Quality, estimated: _Quality | None) -> _Quality:
    """Quality dropped by the labels or, while they are missing, by the estimate."""
    if estimated is None:
        return realized
    return _Quality(realized.dropped or estimated.dropped, f"{realized.reason}; {estimated.reason}")


def _others(countable: Sequence[CheckRecord], metric: str) -> str:
    """Rows of other versions in the newest window: reported beside their own score, never counted."""
    newest = next((c.quality for c in countable if c.quality), None)
    parts = []
    for other in newest.others if newest else ():
        if metric in other.metrics:
            own = f" vs its own {other.validation_score:.4g}" if other.validation_score is not None else ""
            parts.append(f"version {other.version} {metric} {other.metrics[metric]:.4g}{own} on {other.labelled_rows} rows")
    return f"; not counted against the champion: {', '.join(parts)}" if parts else ""


# --- alert ---------------------------------------------------------------------------------


def _alert(
    policy: Policy, countable: Sequence[CheckRecord], firing: bool, quality: _Quality
) -> tuple[Literal["fire", "resolve"] | None, list[str]]:
    streak = _clean_streak(countable)
    calm = streak >= policy.resolve_after
    if firing:
        if calm and not quality.dropped:
            return "resolve", [f"resolve alert: {streak} consecutive clean windows (needs {policy.resolve_after})"]
        reasons = []
        if not calm:
            reasons.append(f"alert stays firing: {streak} consecutive clean window(s) (needs {policy.resolve_after} to resolve)")
        if quality.dropped:
            reasons.append("alert stays firing: quality is still below the champion")
        return None, reasons
    if not countable:
        return None, ["no alert: no countable windows yet"]
    # A drift run that has already calmed down (resolve_after clean windows) must not fire,
    # or a long alert_after look-back would fire and resolve on alternate ticks.
    due, tally = _drifted(countable, policy.alert_after)
    reasons = []
    if due and not calm:
        reasons.append(f"fire alert: {tally}")
    if quality.dropped:
        reasons.append("fire alert: quality dropped below the champion")
    if reasons:
        return "fire", reasons
    note = f" but the last {streak} windows were clean" if due else ""
    return None, [f"no alert: {tally}{note}"]


# --- retrain -------------------------------------------------------------------------------


def _retrain(
    policy: Policy,
    options: RetrainOptions,
    countable: Sequence[CheckRecord],
    quality: _Quality,
    jobs: Sequence[RetrainJob],
    now: datetime,
    labelled_rows: int | None,
    unavailable: str | None,
) -> tuple[bool, list[str]]:
    drift_due, tally = _drifted(countable, policy.retrain_after)
    triggers = ([tally] if drift_due else []) + (["quality dropped below the champion"] if quality.dropped else [])
    if not triggers:
        return False, [f"no retrain: {tally}"]
    due = f"retrain due ({'; '.join(triggers)})"
    if unavailable:
        return False, [f"{due} but {unavailable}"]
    refusals = [f"{due} but {why}" for why in _refusals(policy, options, jobs, now, labelled_rows)]
    if refusals:
        return False, refusals
    reasons = [f"{due}: starting a retrain"]
    if labelled_rows is None:
        reasons.append("labelled rows for training unknown: data-sufficiency gate not applied")
    return True, reasons


def _refusals(
    policy: Policy, options: RetrainOptions, jobs: Sequence[RetrainJob], now: datetime, labelled_rows: int | None
) -> list[str]:
    refusals = []
    if not options.enabled:
        refusals.append("retraining is disabled for this model (retrain.enabled: false)")
    active = [j for j in jobs if j.active]
    if active:
        refusals.append(f"job {active[0].job_id} is already {active[0].status}")
    if jobs and policy.cooldown > timedelta(0):
        last_start = max(j.started_at or j.created_at for j in jobs)
        until = last_start + policy.cooldown
        if now < until:
            refusals.append(f"in cooldown until {until.isoformat()} (policy.cooldown {policy.cooldown})")
    recent = sorted(j.created_at for j in jobs if now - j.created_at < _BUDGET_PERIOD)
    budget = policy.max_retrains_per_day
    if budget == 0:
        refusals.append("the daily retrain budget is 0 (policy.max_retrains_per_day)")
    elif len(recent) >= budget:
        next_slot = recent[-budget] + _BUDGET_PERIOD
        refusals.append(
            f"the daily budget is used up ({len(recent)} of {budget} retrains in the last 24 h; next slot at {next_slot.isoformat()})"
        )
    if labelled_rows is not None and labelled_rows < options.min_labelled_rows:
        refusals.append(f"only {labelled_rows} labelled rows are available (retrain.min_labelled_rows: {options.min_labelled_rows})")
    return refusals
