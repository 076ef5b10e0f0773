"""Metric names, labels and lifecycle as dashboards and alert rules rely on them."""

from __future__ import annotations

import shutil
import subprocess
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.core.results import CheckResult, CheckStatus, FeatureDrift, Quality
from monitor.observe.metrics import Metrics

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)

# DESIGN.md's contract: metric family -> label names.
CONTRACT = {
    "driftd_checks": ("model", "status"),
    "driftd_check_duration_seconds": ("model",),
    "driftd_last_check_timestamp_seconds": ("model",),
    "driftd_window_rows": ("model",),
    "driftd_feature_drift_score": ("model", "feature", "method"),
    "driftd_feature_drifted": ("model", "feature"),
    "driftd_drifted_features_ratio": ("model",),
    "driftd_dataset_drifted": ("model",),
    "driftd_prediction_drift_score": ("model", "method"),
    "driftd_model_quality": ("model", "metric"),
    "driftd_labelled_rows_ratio": ("model",),
    "driftd_retrains": ("model", "outcome"),
    "driftd_retrain_duration_seconds": ("model",),
    "driftd_champion_info": ("model", "version"),
    "driftd_model_size_bytes": ("model", "variant"),
    "driftd_source_errors": ("model", "kind"),
    "driftd_alerts": ("model", "channel", "outcome"),
    "driftd_build_info": ("version",),
    "driftd_check_interval_seconds": ("model",),
    "driftd_quality_drop": ("model", "metric"),
    "driftd_quality_drop_threshold": ("model",),
    "driftd_late_rows": ("model",),
    "driftd_null_timestamp_rows": ("model",),
    "driftd_feature_p_value": ("model", "feature"),
    "driftd_feature_missing_share": ("model", "feature"),
    "driftd_feature_unseen_share": ("model", "feature"),
    "driftd_alert_firing": ("model", "alert"),
    "driftd_leader": ("instance",),
}


def feature(name: str, score: float, drifted: bool, method: str = "wasserstein") -> FeatureDrift:
    return FeatureDrift(name, "numerical", method, score, None, drifted, p_value=1e-7 if drifted else 0.4,
                        missing_share=0.02, missing_p_value=0.6)


def check(
    status: CheckStatus = CheckStatus.OK,
    *,
    model: str = "churn",
    at: datetime = T0,
    features: tuple[FeatureDrift, ...] = (feature("age", 0.02, False), feature("income", 0.3, True)),
    quality: Quality | None = Quality(400, 0.4, {"accuracy": 0.91, "f1": 0.88}),
    prediction: FeatureDrift | None = FeatureDrift("prediction", "categorical", "jensenshannon", 0.04, 0.1, False),
    reference_version: str = "3",
    rows: int = 1000,
) -> CheckResult:
    drifted = sum(f.drifted for f in features) / max(len(features), 1)
    return CheckResult(
        check_id=f"chk-{at:%H%M%S}",
        model=model,
        status=status,
        started_at=at,
        window_start=at - timedelta(minutes=15),
        window_end=at,
        rows=rows if status in (CheckStatus.OK, CheckStatus.DRIFT) else 12,
        features=features if status in (CheckStatus.OK, CheckStatus.DRIFT) else (),
        drifted_share=drifted,
        dataset_drifted=drifted >= 0.3,
        prediction_drift=prediction,
        quality=quality,
        reference_version=reference_version,
        duration_seconds=1.5,
        message="source unreachable" if status is CheckStatus.ERROR else None,
    )


def samples(metrics: Metrics) -> dict[tuple[str, frozenset], float]:
    text = metrics.render().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def series(metrics: Metrics, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (n, labels) in samples(metrics) if n == name]


@pytest.fixture
def metrics() -> Metrics:
    m = Metrics(process_metrics=False)
    m.register_model("churn", 900, channels=["slack"])
    return m


def realistic(metrics: Metrics) -> Metrics:
    metrics.publish_check(check(CheckStatus.OK, at=T0))
    metrics.publish_check(check(CheckStatus.DRIFT, at=T0 + timedelta(minutes=15)))
    metrics.publish_check(check(CheckStatus.ERROR, at=T0 + timedelta(minutes=30)))
    metrics.publish_check(check(CheckStatus.INSUFFICIENT_DATA, at=T0 + timedelta(minutes=45)))
    metrics.source_error("churn", "unreachable")
    metrics.retrain_finished("churn", "promoted", 312.0)
    metrics.champion("churn", "4")
    metrics.model_size("churn", "original", 42_000_000)
    metrics.model_size("churn", "compressed", 2_600_000)
    metrics.quality_drop("churn", "accuracy", 0.07, 0.05)
    metrics.alert("churn", "slack", "sent")
    metrics.late_rows("churn", 12)
    metrics.null_timestamp_rows("churn", 3)
    metrics.publish_check(check(CheckStatus.OK, at=T0 + timedelta(hours=1), features=(
        feature("age", 0.02, False), feature("income", 0.3, True),
        FeatureDrift("country", "categorical", "jensenshannon", 0.2, None, True, p_value=0.3, missing_share=0.0,
                     missing_p_value=1.0, unseen_share=0.05, unseen_p_value=1e-9, drifted_by=("unseen",)))))
    metrics.alert_firing("churn", "DriftdDatasetDrift", True)
    metrics.leader("driftd-7c9f-a", True)
    return metrics


def test_promtool_accepts_the_exposition(metrics: Metrics) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: run make system-deps")
    text = realistic(Metrics()).render()  # with process metrics, as served
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_every_contract_metric_has_help_and_exact_labels(metrics: Metrics) -> None:
    text = realistic(metrics).render().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert set(CONTRACT) <= set(families), f"missing: {set(CONTRACT) - set(families)}"
    for name, labels in CONTRACT.items():
        family = families[name]
        assert family.documentation, f"{name} has no HELP text"
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == set(labels), f"{sample.name} labels {sample.labels}"


def test_counters_start_at_zero_for_every_bounded_label(metrics: Metrics) -> None:
    for status in ("ok", "drift", "insufficient_data", "error"):
        assert value(metrics, "driftd_checks_total", model="churn", status=status) == 0
    for outcome in ("promoted", "rejected", "failed"):
        assert value(metrics, "driftd_retrains_total", model="churn", outcome=outcome) == 0
    for outcome in ("sent", "failed", "dropped"):
        assert value(metrics, "driftd_alerts_total", model="churn", channel="slack", outcome=outcome) == 0
    assert value(metrics, "driftd_late_rows_total", model="churn") == 0
    assert value(metrics, "driftd_source_errors_total", model="churn", kind="unreachable") == 0
    assert value(metrics, "driftd_check_interval_seconds", model="churn") == 900


def test_drift_window_sets_gauges(metrics: Metrics) -> None:
    metrics.publish_check(check(CheckStatus.DRIFT))
    assert value(metrics, "driftd_checks_total", model="churn", status="drift") == 1
    assert value(metrics, "driftd_feature_drift_score", model="churn", feature="income", method="wasserstein") == 0.3
    assert value(metrics, "driftd_feature_drifted", model="churn", feature="income") == 1
    assert value(metrics, "driftd_feature_drifted", model="churn", feature="age") == 0
    assert value(metrics, "driftd_drifted_features_ratio", model="churn") == 0.5
    assert value(metrics, "driftd_dataset_drifted", model="churn") == 1
    assert value(metrics, "driftd_window_rows", model="churn") == 1000
    assert value(metrics, "driftd_prediction_drift_score", model="churn", method="jensenshannon") == 0.04
    assert value(metrics, "driftd_model_quality", model="churn", metric="f1") == 0.88
    assert value(metrics, "driftd_labelled_rows_ratio", model="churn") == 0.4
    assert value(metrics, "driftd_last_check_timestamp_seconds", model="churn") == T0.timestamp() + 1.5
    assert value(metrics, "driftd_check_duration_seconds_count", model="churn") == 1


def test_calibrated_tests_and_the_policy_alert_state_are_exported(metrics: Metrics) -> None:
    realistic(metrics)
    assert value(metrics, "driftd_feature_p_value", model="churn", feature="income") == 1e-7
    assert value(metrics, "driftd_feature_p_value", model="churn", feature="country") == 1e-9  # the smallest test
    assert value(metrics, "driftd_feature_missing_share", model="churn", feature="age") == 0.02
    assert value(metrics, "driftd_feature_unseen_share", model="churn", feature="country") == 0.05
    assert {"model": "churn", "feature": "age"} not in series(metrics, "driftd_feature_unseen_share")  # numerical
    assert value(metrics, "driftd_alert_firing", model="churn", alert="DriftdDatasetDrift") == 1
    metrics.alert_firing("churn", "DriftdDatasetDrift", False)
    assert value(metrics, "driftd_alert_firing", model="churn", alert="DriftdDatasetDrift") == 0
    # a feature leaving the model takes its series along
    metrics.publish_check(check(CheckStatus.OK, features=(feature("age", 0.02, False),)))
    assert series(metrics, "driftd_feature_unseen_share") == []
    assert series(metrics, "driftd_feature_p_value") == [{"model": "churn", "feature": "age"}]


def test_error_and_insufficient_windows_are_counted_but_keep_the_last_verdict(metrics: Metrics) -> None:
    metrics.publish_check(check(CheckStatus.DRIFT))
    later = T0 + timedelta(hours=1)
    metrics.publish_check(check(CheckStatus.ERROR, at=later))
    metrics.publish_check(check(CheckStatus.INSUFFICIENT_DATA, at=later, features=()))
    assert value(metrics, "driftd_checks_total", model="churn", status="error") == 1
    assert value(metrics, "driftd_checks_total", model="churn", status="insufficient_data") == 1
    assert value(metrics, "driftd_check_duration_seconds_count", model="churn") == 3
    # The stale-check alert must see that no verdict was reached since T0.
    assert value(metrics, "driftd_last_check_timestamp_seconds", model="churn") == T0.timestamp() + 1.5
    assert value(metrics, "driftd_window_rows", model="churn") == 1000
    assert value(metrics, "driftd_feature_drifted", model="churn", feature="income") == 1


def test_vanished_feature_and_changed_method_series_are_removed(metrics: Metrics) -> None:
    metrics.publish_check(check(CheckStatus.DRIFT))
    metrics.publish_check(check(CheckStatus.OK, features=(feature("age", 0.05, False, method="psi"),), prediction=None))
    assert series(metrics, "driftd_feature_drift_score") == [{"model": "churn", "feature": "age", "method": "psi"}]
    assert series(metrics, "driftd_feature_drifted") == [{"model": "churn", "feature": "age"}]
    assert series(metrics, "driftd_prediction_drift_score") == []


def test_quality_survives_windows_without_labels_until_the_champion_changes(metrics: Metrics) -> None:
    metrics.publish_check(check(CheckStatus.OK))
    metrics.publish_check(check(CheckStatus.OK, quality=None))
    assert value(metrics, "driftd_model_quality", model="churn", metric="accuracy") == 0.91
    assert value(metrics, "driftd_labelled_rows_ratio", model="churn") == 0
    metrics.publish_check(check(CheckStatus.OK, quality=None, reference_version="4"))
    assert series(metrics, "driftd_model_quality") == []


def test_one_champion_series_per_model_and_stale_quality_drop_removed(metrics: Metrics) -> None:
    metrics.champion("churn", "3")
    metrics.quality_drop("churn", "accuracy", 0.08, 0.05)
    metrics.champion("churn", "4")
    metrics.champion("fraud", "1")
    assert sorted(series(metrics, "driftd_champion_info"), key=lambda s: s["model"]) == [
        {"model": "churn", "version": "4"},
        {"model": "fraud", "version": "1"},
    ]
    assert series(metrics, "driftd_quality_drop") == []  # measured against champion 3
    assert value(metrics, "driftd_quality_drop_threshold", model="churn") == 0.05


def test_forget_model_removes_all_its_series(metrics: Metrics) -> None:
    realistic(metrics)
    metrics.register_model("fraud", 60)
    metrics.forget_model("churn")
    text = metrics.render().decode()
    assert 'model="churn"' not in text
    assert value(metrics, "driftd_checks_total", model="fraud", status="ok") == 0


def test_unbounded_label_values_are_refused(metrics: Metrics) -> None:
    with pytest.raises(ValueError, match="outcome must be one of"):
        metrics.retrain_finished("churn", "run-8f3a2c", 1.0)
    metrics.source_error("churn", "weird")  # an error path must not raise: counted as "other"
    assert value(metrics, "driftd_source_errors_total", model="churn", kind="other") == 1


def test_each_instance_has_its_own_registry() -> None:
    a, b = Metrics(process_metrics=False), Metrics(process_metrics=False)
    a.publish_check(check(CheckStatus.OK))
    assert value(a, "driftd_checks_total", model="churn", status="ok") == 1
    assert series(b, "driftd_checks_total") == []
    assert value(b, "driftd_build_info", version=__import__("monitor").__version__) == 1
