"""decide(): table-driven cases for each rule of the trigger policy.

Histories are written oldest -> newest, one letter per window:
d = dataset drifted, c = clean, i = insufficient_data, e = error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest

from monitor.check.policy import Decision, decide
from monitor.core.config import NOfM, Policy, RetrainOptions
from monitor.core.records import CheckRecord, RetrainJob
from monitor.core.results import CheckStatus, Quality

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
STATUS = {"d": CheckStatus.DRIFT, "c": CheckStatus.OK, "i": CheckStatus.INSUFFICIENT_DATA, "e": CheckStatus.ERROR}
POLICY = Policy(alert_after=NOfM(2, 3), resolve_after=3, retrain_after=NOfM(3, 4), quality_drop=0.05, cooldown=timedelta(hours=6), max_retrains_per_day=2)
RETRAIN = RetrainOptions(min_labelled_rows=2000)


def history(letters: str, quality: dict[int, dict[str, float]] | None = None) -> list[CheckRecord]:
    """Newest first, as StateStore.recent_checks returns them; `quality` maps a letter index to metrics."""
    records = []
    for n, letter in enumerate(letters):
        started = NOW - timedelta(minutes=15 * (len(letters) - n))
        metrics = (quality or {}).get(n)
        records.append(
            CheckRecord(
                check_id=f"c{n}", model="churn", status=STATUS[letter], started_at=started,
                window_start=started - timedelta(minutes=15), window_end=started, rows=1000, rows_used=1000,
                drifted_share=0.5 if letter == "d" else 0.0, dataset_drifted=letter == "d",
                quality=Quality(400, 0.4, metrics) if metrics else None, message=None,
            )  # fmt: skip
        )
    return records[::-1]


def job(hours_ago: float, status: str = "succeeded", *, started: bool = True) -> RetrainJob:
    at = NOW - timedelta(hours=hours_ago)
    finished = status in ("succeeded", "failed")
    return RetrainJob(
        job_id=f"job-{hours_ago}", model="churn", status=status, outcome="promoted" if finished else None, reason="drift",
        trigger_check_id=None, created_at=at, started_at=at if started else None,
        finished_at=at + timedelta(minutes=5) if finished else None, run_id=None, version=None,
    )  # fmt: skip


@dataclass
class Case:
    letters: str
    firing: bool = False
    jobs: list[RetrainJob] = field(default_factory=list)
    quality: dict[int, dict[str, float]] | None = None
    champion: float | None = None
    metric: str | None = None
    labelled: int | None = 5000
    policy: Policy = POLICY
    retrain: RetrainOptions = RETRAIN

    def decide(self) -> Decision:
        return decide(
            self.policy, self.retrain, history(self.letters, self.quality), alert_firing=self.firing, jobs=self.jobs,
            champion_score=self.champion, primary_metric=self.metric, now=NOW, labelled_rows=self.labelled,
        )  # fmt: skip


def joined(decision: Decision) -> str:
    return "\n".join(decision.reasons)


# --- alert: N of the last M countable windows, hysteresis --------------------------------

ALERT_CASES = {
    "all clean": (Case("ccc"), None, "no alert: 0 of the last 3 windows drifted (needs 2 of 3)"),
    "one drifted": (Case("ccd"), None, "no alert: 1 of the last 3 windows drifted"),
    "2 of 3 drifted": (Case("cdd"), "fire", "fire alert: 2 of the last 3 windows drifted (needs 2 of 3)"),
    "2 of 3, not adjacent": (Case("dcd"), "fire", "fire alert: 2 of the last 3"),
    "older drift outside M": (Case("ddccd"), None, "1 of the last 3 windows drifted"),
    "insufficient windows are not clean": (Case("dciid"), "fire", "2 of the last 3 windows drifted"),
    "error windows are not clean": (Case("deeeed"), "fire", "2 of the last 2 windows drifted"),
    "insufficient windows are not drifted": (Case("ciii"), None, "0 of the last 1 windows drifted"),
    "nothing countable yet": (Case("iie"), None, "no alert: no countable windows yet"),
    "no history at all": (Case(""), None, "no alert: no countable windows yet"),
    "already firing is not re-fired": (Case("ddd", firing=True), None, "alert stays firing: 0 consecutive clean window(s)"),
    "firing, 2 clean of 3 needed": (Case("ddcc", firing=True), None, "alert stays firing: 2 consecutive clean window(s) (needs 3 to resolve)"),
    "firing, 3 clean resolves": (Case("ddccc", firing=True), "resolve", "resolve alert: 3 consecutive clean windows (needs 3)"),
    "firing, skipped windows do not break or extend the streak": (Case("dcicec", firing=True), "resolve", "3 consecutive clean"),
    "firing, skipped windows are not clean": (Case("dcciie", firing=True), None, "2 consecutive clean"),
    "firing, a drift resets the streak": (Case("dcccdc", firing=True), None, "1 consecutive clean"),
}


@pytest.mark.parametrize("case, alert, reason", ALERT_CASES.values(), ids=ALERT_CASES.keys())
def test_alert_rule(case: Case, alert: str | None, reason: str) -> None:
    decision = case.decide()
    assert decision.alert == alert
    assert reason in joined(decision)


def test_a_calmed_down_run_does_not_fire_under_a_long_look_back() -> None:
    # 2 of the last 5 drifted, but the last 3 were clean: firing now would resolve next tick.
    case = Case("ddccc", policy=POLICY.model_copy(update={"alert_after": NOfM(2, 5)}))
    decision = case.decide()
    assert decision.alert is None
    assert "but the last 3 windows were clean" in joined(decision)


def test_skipped_windows_are_reported() -> None:
    assert "2 recent window(s) skipped (insufficient_data or error)" in joined(Case("ccie").decide())
    assert "skipped" not in joined(Case("ccc").decide())


def test_order_of_history_does_not_matter() -> None:
    newest_first = history("ccdd")
    args = dict(alert_firing=False, jobs=[], champion_score=None, primary_metric=None, now=NOW, labelled_rows=None)
    assert decide(POLICY, RETRAIN, newest_first, **args) == decide(POLICY, RETRAIN, newest_first[::-1], **args)


# --- quality drop vs the champion ---------------------------------------------------------

QUALITY_CASES = {
    "f1 dropped beyond the limit": (Case("cc", quality={1: {"f1": 0.80}}, champion=0.90, metric="f1"), True, "quality dropped: f1 0.8 vs champion 0.9 (drop 0.1 > allowed 0.05)"),
    "f1 dropped within the limit": (Case("cc", quality={1: {"f1": 0.87}}, champion=0.90, metric="f1"), False, "quality ok: f1 0.87 vs champion 0.9"),
    "f1 improved": (Case("cc", quality={1: {"f1": 0.99}}, champion=0.90, metric="f1"), False, "quality ok"),
    "drop exactly at the limit is ok": (Case("cc", quality={1: {"accuracy": 0.5}}, champion=0.75, metric="accuracy", policy=POLICY.model_copy(update={"quality_drop": 0.25})), False, "drop 0.25 <= allowed 0.25"),
    "rmse rose beyond the limit": (Case("cc", quality={1: {"rmse": 10.6}}, champion=10.0, metric="rmse", policy=POLICY.model_copy(update={"quality_drop": 0.5})), True, "quality dropped: rmse 10.6 vs champion 10"),
    "rmse fell (better)": (Case("cc", quality={1: {"rmse": 9.0}}, champion=10.0, metric="rmse", policy=POLICY.model_copy(update={"quality_drop": 0.5})), False, "quality ok: rmse 9 vs champion 10 (drop -1"),
    "newest labelled window stands when labels are late": (Case("cc", quality={0: {"f1": 0.70}}, champion=0.90, metric="f1"), True, "f1 0.7"),
    "newest labelled window wins over older": (Case("cc", quality={0: {"f1": 0.70}, 1: {"f1": 0.89}}, champion=0.90, metric="f1"), False, "f1 0.89"),
    "quality of a skipped window is ignored": (Case("ci", quality={1: {"f1": 0.10}}, champion=0.90, metric="f1"), False, "no recent window has labelled rows for f1"),
    "NaN metric is not compared": (Case("cc", quality={1: {"f1": float("nan")}}, champion=0.90, metric="f1"), False, "quality not compared"),
    "no champion score": (Case("cc", quality={1: {"f1": 0.1}}, metric="f1"), False, "the champion has no recorded validation f1"),
    "no primary metric": (Case("cc", quality={1: {"f1": 0.1}}, champion=0.9), False, "no primary metric"),
}


@pytest.mark.parametrize("case, dropped, reason", QUALITY_CASES.values(), ids=QUALITY_CASES.keys())
def test_quality_rule(case: Case, dropped: bool, reason: str) -> None:
    decision = case.decide()
    assert reason in joined(decision)
    # A quality drop on clean windows fires the alert and is a retrain reason on its own.
    assert (decision.alert == "fire") is dropped
    assert decision.retrain is dropped


def test_firing_alert_stays_while_quality_is_down_even_if_drift_calmed() -> None:
    decision = Case("dccc", firing=True, quality={3: {"f1": 0.7}}, champion=0.9, metric="f1").decide()
    assert decision.alert is None
    assert "alert stays firing: quality is still below the champion" in joined(decision)


# --- retrain: N of M, then the gates ------------------------------------------------------

RETRAIN_CASES = {
    "3 of 4 drifted": (Case("cddd"), True, "retrain due (3 of the last 4 windows drifted (needs 3 of 4)): starting a retrain"),
    "2 of 4 drifted": (Case("ccdd"), False, "no retrain: 2 of the last 4 windows drifted (needs 3 of 4)"),
    "skipped windows do not dilute": (Case("dideid"), True, "3 of the last 3 windows drifted"),
    "disabled": (Case("dddd", retrain=RETRAIN.model_copy(update={"enabled": False})), False, "but retraining is disabled for this model"),
    "job already running": (Case("dddd", jobs=[job(30, "running")]), False, "but job job-30 is already running"),
    "job still queued": (Case("dddd", jobs=[job(30, "queued", started=False)]), False, "is already queued"),
    "in cooldown": (Case("dddd", jobs=[job(2)]), False, "but in cooldown until 2026-03-10T16:00:00+00:00 (policy.cooldown 6:00:00)"),
    "cooldown over": (Case("dddd", jobs=[job(7)]), True, "starting a retrain"),
    "cooldown counts from the start, not the finish": (Case("dddd", jobs=[job(6.05)]), True, "starting a retrain"),
    "daily budget used up": (Case("dddd", jobs=[job(10), job(8)]), False, "but the daily budget is used up (2 of 2 retrains in the last 24 h; next slot at 2026-03-11T02:00:00+00:00)"),
    "budget frees after 24 h": (Case("dddd", jobs=[job(25), job(8)]), True, "starting a retrain"),
    "budget of zero": (Case("dddd", policy=POLICY.model_copy(update={"max_retrains_per_day": 0})), False, "the daily retrain budget is 0"),
    "too few labelled rows": (Case("dddd", labelled=1999), False, "but only 1999 labelled rows are available (retrain.min_labelled_rows: 2000)"),
    "just enough labelled rows": (Case("dddd", labelled=2000), True, "starting a retrain"),
    "labelled rows unknown": (Case("dddd", labelled=None), True, "data-sufficiency gate not applied"),
    "quality drop alone": (Case("cccc", quality={3: {"f1": 0.5}}, champion=0.9, metric="f1"), True, "retrain due (quality dropped below the champion)"),
}


@pytest.mark.parametrize("case, start, reason", RETRAIN_CASES.values(), ids=RETRAIN_CASES.keys())
def test_retrain_rule(case: Case, start: bool, reason: str) -> None:
    decision = case.decide()
    assert decision.retrain is start
    assert reason in joined(decision)


def test_every_refusal_is_listed() -> None:
    case = Case("dddd", jobs=[job(1, "running"), job(3)], labelled=10, retrain=RETRAIN.model_copy(update={"enabled": False}))
    reasons = [r for r in case.decide().reasons if r.startswith("retrain due")]
    assert len(reasons) == 5
    for needle in ("disabled", "already running", "cooldown", "budget", "labelled rows"):
        assert any(needle in r for r in reasons), needle


def test_every_decision_has_reasons_and_no_action_says_why() -> None:
    decision = Case("c").decide()
    assert decision == Decision(alert=None, retrain=False, reasons=decision.reasons)
    assert decision.reasons[0].startswith("no alert:") and decision.reasons[1].startswith("no retrain:")


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(POLICY, RETRAIN, [], alert_firing=False, jobs=[], champion_score=None, primary_metric=None, now=NOW.replace(tzinfo=None), labelled_rows=None)
