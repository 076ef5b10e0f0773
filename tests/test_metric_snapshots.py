"""The "last value" gauges come from per-model snapshots read at scrape time: what a new
snapshot no longer holds stops being exported, with no removal code for that case."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from monitor.core.results import CheckResult, CheckStatus, Estimate, EstimatedQuality, EstimationGap, FeatureDrift, MultivariateSignal, Quality
from monitor.observe.gauges import ModelSnapshot
from monitor.observe.metrics import Metrics
from tests.test_metrics import T0, check, feature, series, value

COUNTRY = FeatureDrift("country", "categorical", "jensenshannon", 0.2, None, True, p_value=0.3, missing_share=0.0,
                       missing_p_value=1.0, unseen_share=0.05, unseen_p_value=1e-9, drifted_by=("unseen",))
LABELLED = Quality(400, 0.4, {"accuracy": 0.88})
FEATURE_FAMILIES = ("driftd_feature_drift_score", "driftd_feature_drifted", "driftd_feature_p_value",
                    "driftd_feature_missing_share", "driftd_feature_unseen_share")


@pytest.fixture
def metrics() -> Metrics:
    m = Metrics(process_metrics=False)
    m.register_model("churn", 900, channels=["slack"])
    return m


def estimated(reference_version: str, *estimates: Estimate, gaps: tuple[EstimationGap, ...] = (),
              quality: Quality | None = LABELLED) -> CheckResult:
    return dataclasses.replace(
        check(CheckStatus.OK, at=T0 + timedelta(minutes=15), reference_version=reference_version, quality=quality),
        estimated=EstimatedQuality("cbpe", estimates, rows=1000, skipped_rows=0),
        estimation_errors=gaps,
        multivariate=MultivariateSignal(0.71, 0.002, 0.01, True, 1000, 5000, "hist_gbm"),
    )


def feature_names(metrics: Metrics) -> set[str]:
    return {labels["feature"] for name in FEATURE_FAMILIES for labels in series(metrics, name)}


def test_a_feature_dropped_from_the_config_disappears_without_removal(metrics: Metrics) -> None:
    metrics.publish_check(check(CheckStatus.DRIFT, features=(feature("age", 0.02, False), feature("income", 0.3, True), COUNTRY)))
    assert feature_names(metrics) == {"age", "income", "country"}
    before = metrics.snapshots()["churn"]
    # the config now monitors only `age`: the next window's result is all the metrics learn of it
    metrics.publish_check(check(CheckStatus.OK, at=T0 + timedelta(minutes=15), features=(feature("age", 0.04, False),)))
    assert feature_names(metrics) == {"age"}
    assert value(metrics, "driftd_feature_drift_score", model="churn", feature="age", method="wasserstein") == 0.04
    # the old snapshot was replaced, not edited: a scrape in flight still sees one consistent window
    assert {f.feature for f in before.features} == {"age", "income", "country"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.features = ()  # type: ignore[misc]


def test_a_champion_change_replaces_the_estimate_series(metrics: Metrics) -> None:
    metrics.champion("churn", "3")
    metrics.publish_check(estimated("3", Estimate("accuracy", 0.9, 0.86, 0.93, 0.9, 1000, 0),
                                    gaps=(EstimationGap("accuracy", 0.9, 0.88, 0.86, 0.93, 400),)))
    metrics.quality_drop("churn", "accuracy", 0.02, 0.05)
    assert value(metrics, "driftd_estimated_quality", model="churn", metric="accuracy") == 0.9
    assert value(metrics, "driftd_estimation_error", model="churn", metric="accuracy") == pytest.approx(0.02)
    assert value(metrics, "driftd_multivariate_drift_auroc", model="churn") == 0.71

    metrics.champion("churn", "4")
    assert series(metrics, "driftd_champion_info") == [{"model": "churn", "version": "4"}]
    assert series(metrics, "driftd_quality_drop") == []  # measured against champion 3
    # the new champion's first window: its estimator estimates another metric, labels are not in yet
    metrics.publish_check(estimated("4", Estimate("roc_auc", 0.8, 0.75, 0.84, 0.9, 1000, 0), quality=None))
    for name in ("driftd_estimated_quality", "driftd_estimated_quality_lower", "driftd_estimated_quality_upper"):
        assert series(metrics, name) == [{"model": "churn", "metric": "roc_auc"}], name
    assert value(metrics, "driftd_estimated_quality_upper", model="churn", metric="roc_auc") == 0.84
    assert series(metrics, "driftd_estimation_error") == []  # the old champion's estimator's error
    assert series(metrics, "driftd_model_quality") == []  # the old champion's quality


def test_a_forgotten_model_leaves_no_snapshot_and_others_keep_theirs(metrics: Metrics) -> None:
    metrics.register_model("fraud", None)
    metrics.publish_check(check(CheckStatus.OK, model="fraud"))
    metrics.forget_model("churn")
    assert set(metrics.snapshots()) == {"fraud"}
    assert metrics.snapshots()["fraud"].interval_s is None  # cron schedule: no interval series
    assert series(metrics, "driftd_check_interval_seconds") == []
    assert series(metrics, "driftd_window_rows") == [{"model": "fraud"}]


def test_every_gauge_family_is_described_before_any_model_exists() -> None:
    metrics = Metrics(process_metrics=False)
    text = metrics.render().decode()
    for name in ("driftd_feature_drift_score", "driftd_estimation_error", "driftd_champion_info"):
        assert f"# TYPE {name} gauge" in text
    assert metrics.snapshots() == {}
    assert ModelSnapshot().after_check(check()).window_rows == 1000
