"""Label-free estimates and the multivariate test wired into the check, the policy, the metrics,
the registry and the dashboards (the estimators themselves: test_estimation.py, test_multivariate.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from monitor.check.estimates import REFERENCE, fit_for, prepare_signals
from monitor.check.policy import decide
from monitor.check.run import WindowSpec, run_check
from monitor.core.config import Config, MLflowConfig, ModelConfig, NOfM, Policy, RetrainOptions
from monitor.core.records import CheckRecord
from monitor.core.results import CheckResult, CheckStatus, Estimate, EstimatedQuality, EstimationGap
from monitor.observe.metrics import Metrics
from monitor.service.cycle import open_inputs
from monitor.service.reference import References
from retrain.baseline import register_baseline
from retrain.registry import ESTIMATOR_ARTIFACTS, champion
from tests.support.models import FEATURES, PROBABILITY, START, TARGET, make_loans, model_config, train_baseline, with_predictions, write_log

NOW = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)


# --- the policy acts on an estimate ------------------------------------------------------------


def _record(i: int, *, value: float | None, lower: float = 0.0, upper: float = 0.0, labelled: int = 0,
            version: str | None = "1", drifted: bool = False) -> CheckRecord:
    estimated = None
    if value is not None:
        estimated = EstimatedQuality("cbpe", (Estimate("accuracy", value, lower, upper, 0.95, 2000, labelled),), 2000, 0)
    return CheckRecord(
        check_id=f"c{i}", model="loans", status=CheckStatus.DRIFT if drifted else CheckStatus.OK,
        started_at=NOW - timedelta(minutes=15 * i), window_start=None, window_end=NOW - timedelta(minutes=15 * i),
        rows=2000, rows_used=2000, drifted_share=0.0, dataset_drifted=drifted, quality=None, message=None,
        estimated=estimated, reference_version=version,
    )  # fmt: skip


def _decide(history, *, policy: Policy | None = None, firing: bool = False):
    return decide(
        policy or Policy(alert_after=NOfM(2, 3), retrain_after=NOfM(3, 4), quality_drop=0.05), RetrainOptions(), history,
        alert_firing=firing, jobs=[], champion_score=0.85, primary_metric="accuracy", now=NOW, labelled_rows=None,
        champion_version="1",
    )  # fmt: skip


def test_an_estimated_drop_alerts_and_retrains_while_labels_are_missing():
    # No window drifted and no label arrived: only the estimate says the model got worse.
    decision = _decide([_record(0, value=0.74, lower=0.72, upper=0.76), _record(1, value=0.84, lower=0.82, upper=0.86)])
    assert decision.alert == "fire" and decision.retrain
    reasons = "; ".join(decision.reasons)
    assert "estimated quality dropped: accuracy 0.74 (upper bound 0.76, 0 of 2000 rows labelled)" in reasons
    assert "drop 0.09 > allowed 0.05" in reasons


def test_the_estimate_is_judged_on_the_band_side_nearest_the_champion():
    # The estimate alone is 0.06 below the champion, but the band reaches within the allowed drop.
    decision = _decide([_record(0, value=0.79, lower=0.75, upper=0.83)])
    assert decision.alert is None and not decision.retrain
    assert any("estimated quality ok: accuracy 0.79 (upper bound 0.83" in r for r in decision.reasons)


def test_estimated_drop_is_its_own_threshold():
    policy = Policy(alert_after=NOfM(2, 3), quality_drop=0.05, estimated_drop=0.12)
    decision = _decide([_record(0, value=0.74, lower=0.72, upper=0.76)], policy=policy)
    assert decision.alert is None and any("allowed 0.12" in r for r in decision.reasons)


def test_an_estimate_of_another_version_or_an_older_window_does_not_count():
    old_champion = _decide([_record(0, value=0.60, lower=0.58, upper=0.62, version="0")])
    assert old_champion.alert is None and not old_champion.retrain
    newest_not_estimated = _decide([_record(0, value=None), _record(1, value=0.60, lower=0.58, upper=0.62)])
    assert newest_not_estimated.alert is None


def test_a_firing_alert_stays_while_the_estimate_is_below_the_champion():
    history = [_record(i, value=0.70, lower=0.68, upper=0.72) for i in range(4)]
    decision = _decide(history, firing=True)
    assert decision.alert is None and "alert stays firing: quality is still below the champion" in decision.reasons


# --- a check estimates, and measures the estimate against labels as they arrive ---------------


@pytest.fixture
def logged(tmp_path: Path):
    """A logistic loan model, its reference (validation rows it was not trained on) and a
    prediction log of 1,500 later rows of which half have their label."""
    frame = make_loans(6000, seed=3)
    estimator = train_baseline(frame.iloc[:3000], "logistic")
    reference = tmp_path / "reference.parquet"
    with_predictions(estimator, frame.iloc[3000:4500]).to_parquet(reference, index=False)
    window = frame.iloc[4500:]
    write_log(tmp_path / "logs", estimator, window, labelled=0.5, seed=4)
    model = model_config("loans", tmp_path / "logs" / "*.parquet", reference=reference, window={"size": "3d", "min_rows": 300})
    return Config(models=[model]), model, estimator, window


def _check(config: Config, model: ModelConfig, window: pd.DataFrame) -> CheckResult:
    references = References(config)
    loaded = references.get(model)
    inputs = open_inputs(model)
    try:
        spec = WindowSpec(since=window["ts"].min() - timedelta(seconds=1), until=window["ts"].max() + timedelta(seconds=1))
        return run_check(inputs, loaded.prepared, spec, now=NOW, signals=loaded.signals).result
    finally:
        inputs.close()


def test_a_check_estimates_quality_and_its_error_on_the_labelled_rows(logged):
    config, model, estimator, window = logged
    signals = References(config).get(model).signals
    assert signals.estimator is not None and signals.estimator_from == REFERENCE  # no registry: fitted on the file
    result = _check(config, model, window)
    assert result.status is CheckStatus.OK and result.rows == 1500
    truth = window[TARGET].to_numpy()
    realized = float(np.mean(estimator.predict(window[FEATURES]) == truth))
    accuracy = result.estimated.get("accuracy")
    assert 700 <= accuracy.labelled_rows <= 800  # the arrived labels count as they are
    assert abs(accuracy.value - realized) < 0.02 and accuracy.lower <= realized <= accuracy.upper
    gaps = {g.metric: g for g in result.estimation_errors}
    assert set(gaps) == {"accuracy", "f1", "roc_auc"}
    assert gaps["accuracy"].rows == accuracy.labelled_rows and abs(gaps["accuracy"].error) < 0.03
    assert result.multivariate is not None and not result.multivariate.drifted  # same world, no joint change
    # stored with the check and read back for the policy
    from monitor.state.store import StateStore

    store = StateStore("sqlite:///:memory:")
    store.migrate()
    store.record_check(result)
    (record,) = store.recent_checks("loans", 1)
    assert record.estimated == result.estimated and record.reference_version == result.reference_version


def test_the_estimation_error_is_exported_and_promtool_accepts_it(logged):
    config, model, _, window = logged
    result = _check(config, model, window)
    metrics = Metrics(process_metrics=False)
    metrics.publish_check(result)
    text = metrics.render().decode()
    gap = next(g for g in result.estimation_errors if g.metric == "accuracy")
    estimate = result.estimated.get("accuracy")
    assert _value(text, "driftd_estimation_error", model="loans", metric="accuracy") == pytest.approx(gap.error)
    assert _value(text, "driftd_estimated_quality", model="loans", metric="accuracy") == pytest.approx(estimate.value)
    assert _value(text, "driftd_estimated_quality_lower", model="loans", metric="accuracy") == pytest.approx(estimate.lower)
    assert _value(text, "driftd_estimated_quality_upper", model="loans", metric="roc_auc") == pytest.approx(result.estimated.get("roc_auc").upper)
    assert _value(text, "driftd_multivariate_drift_p_value", model="loans") == pytest.approx(result.multivariate.p_value)
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: run make system-deps")
    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout + lint.stderr
    # a window without labels keeps the last measured error; a new champion drops it
    metrics.publish_check(_replace(result, estimation_errors=()))
    assert _value(metrics.render().decode(), "driftd_estimation_error", model="loans", metric="accuracy") == pytest.approx(gap.error)
    metrics.publish_check(_replace(result, estimation_errors=(), reference_version="other"))
    assert _value(metrics.render().decode(), "driftd_estimation_error", model="loans", metric="accuracy") is None


def _replace(result: CheckResult, **changes) -> CheckResult:
    from dataclasses import replace

    return replace(result, **changes)


def _value(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_correlation_flip_is_a_drifted_window_that_no_feature_test_sees(tmp_path: Path):
    rng = np.random.default_rng(5)

    def rows(n: int, rho: float, start: datetime, first: int) -> pd.DataFrame:
        x1 = rng.standard_normal(n)
        x2 = rho * x1 + np.sqrt(1 - rho**2) * rng.standard_normal(n)
        return pd.DataFrame({"ts": [start + timedelta(seconds=i) for i in range(n)], "id": np.arange(first, first + n),
                             "x1": x1, "x2": x2, "x3": rng.standard_normal(n), "prediction": (x1 > 0).astype(int)})

    reference = tmp_path / "reference.parquet"
    rows(20_000, 0.8, START, 0).to_parquet(reference, index=False)
    window = rows(2000, -0.8, START + timedelta(days=1), 20_000)
    (tmp_path / "logs").mkdir()
    window.to_parquet(tmp_path / "logs" / "part-0.parquet", index=False)
    model = ModelConfig.model_validate({
        "name": "flip", "source": {"type": "files", "path": str(tmp_path / "logs" / "*.parquet")}, "reference": str(reference),
        "columns": {"timestamp": "ts", "id": "id", "prediction": "prediction", "numerical": ["x1", "x2", "x3"]},
        "task": "binary_classification", "window": {"size": "1d"},
    })  # fmt: skip
    result = _check(Config(models=[model]), model, window)
    assert not result.drifted_features  # every marginal is unchanged
    assert result.status is CheckStatus.DRIFT and result.dataset_drifted
    found = result.multivariate
    assert found.drifted and found.auroc > 0.6 and found.p_value < found.alpha
    assert sorted(found.strongest) == ["x1", "x2"]  # the features whose relation changed, not the bystander
    assert result.estimated is None and "no columns.target" in result.details["estimation_error"]


# --- the estimator travels with the model version ------------------------------------------------


def _baseline(config: Config, model: ModelConfig, seed: int) -> tuple[str, pd.DataFrame]:
    frame = make_loans(3000, seed=seed)
    train, holdout = frame.iloc[:2400], frame.iloc[2400:]
    estimator = train_baseline(train, "logistic", C=0.01 if seed == 2 else 1.0)
    version = register_baseline(config, model, estimator, with_predictions(estimator, train), with_predictions(estimator, holdout))
    return version, holdout


def test_the_calibrator_is_logged_with_each_version_and_follows_a_promotion(tmp_path: Path):
    model = model_config("loans", tmp_path / "logs" / "*.parquet", retrain={"compression": ["onnx"]}, window={"min_rows": 300})
    config = Config(mlflow=MLflowConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "artifacts")),
                    models=[model])
    first, holdout = _baseline(config, model, seed=1)
    client = mlflow.MlflowClient(config.mlflow.tracking_uri)
    run = client.get_model_version("loans", first).run_id
    assert [f.path for f in client.list_artifacts(run, ESTIMATOR_ARTIFACTS)] == [f"{ESTIMATOR_ARTIFACTS}/cbpe.json"]
    references = References(config)
    loaded = references.get(model)
    assert loaded.champion.version == first
    signals = loaded.signals
    assert signals.estimator_from == "artifact" and signals.estimator_note is None
    assert signals.estimator.reference_rows == len(holdout)  # calibrated on the holdout, not the training rows
    before = signals.estimator.to_bytes()

    second, _ = _baseline(config, model, seed=2)  # promoted: the champion alias moves to it
    assert champion(config, model).version == second != first
    after = references.get(model)
    assert after.champion.version == second and after.signals.estimator_from == "artifact"
    assert after.signals.estimator.to_bytes() != before  # the new version's own calibration


def test_a_retrain_carries_a_calibrator_so_the_new_champion_is_estimated_from_its_first_window(tmp_path: Path):
    from retrain import run_retrain
    from tests.test_retrain import NOW as RETRAIN_NOW
    from tests.test_retrain import TRIGGER, make_world

    world = make_world(tmp_path)
    references = References(world.config)
    assert references.get(world.model).signals.estimator_from == "artifact"
    outcome = run_retrain(world.config, world.model, TRIGGER, now=RETRAIN_NOW)
    assert outcome.outcome == "promoted", outcome.reason
    loaded = references.get(world.model)
    assert loaded.champion.version == outcome.version == "2"
    signals = loaded.signals
    assert signals.estimator_from == "artifact" and signals.estimator.kind == "cbpe"
    # calibrated on the retrain's validation + holdout rows (40 % of the 4,000 labelled rows), not its training rows
    assert signals.estimator.reference_rows == 1600
    assert signals.estimator.reference_quality["accuracy"] == pytest.approx(loaded.champion.validation_score, abs=0.05)


def test_a_stored_estimator_for_other_columns_is_refitted_from_the_reference(tmp_path: Path):
    frame = with_predictions(train_baseline(make_loans(2000, seed=1), "logistic"), make_loans(2000, seed=2))
    model = model_config("loans", tmp_path / "*.parquet")
    other = frame.rename(columns={PROBABILITY: "score"})
    stored = fit_for(model.model_copy(update={"columns": model.columns.model_copy(update={"probability": "score"})}), other)
    signals = prepare_signals(model, frame, lambda: stored)
    assert signals.estimator_from == REFERENCE and signals.estimator.probability == PROBABILITY
    assert "does not fit the configuration (it reads other probability columns" in signals.estimator_note


# --- the dashboards' new panels on a real Prometheus -----------------------------------------


@pytest.mark.integration
def test_the_estimate_panels_evaluate_on_a_real_prometheus(tmp_path: Path):
    from monitor.observe.server import MetricsServer
    from tests.support.promstack import panel_queries, query, start_prometheus, wait_for

    metrics = Metrics(process_metrics=False)
    estimated = EstimatedQuality("cbpe", (Estimate("accuracy", 0.81, 0.79, 0.83, 0.95, 2000, 400),), 2000, 0)
    from monitor.core.results import Contribution, MultivariateSignal, Quality

    result = CheckResult(
        check_id="c1", model="loans", status=CheckStatus.DRIFT, started_at=NOW, window_start=None, window_end=NOW, rows=2000,
        quality=Quality(400, 0.2, {"accuracy": 0.8}), estimated=estimated,
        estimation_errors=(EstimationGap("accuracy", 0.815, 0.8, 0.79, 0.84, 400),),
        multivariate=MultivariateSignal(0.71, 1e-9, 0.005, True, 2000, 2000, "hgb", (Contribution("income", 0.1),)),
    )  # fmt: skip
    metrics.publish_check(result)
    server = MetricsServer(metrics, port=0).start()
    board = json.loads((Path(__file__).resolve().parents[1] / "dashboards" / "driftd-model.json").read_text())
    wanted = {"Estimated vs realized quality", "Estimation error (estimated - realized)", "Multivariate drift (domain classifier)"}
    try:
        with start_prometheus([f"127.0.0.1:{server.port}"], [], None, tmp_path) as prom:
            wait_for(lambda: query(prom, "driftd_multivariate_drift_auroc"), timeout=60)
            found = {}
            for title, expr in panel_queries(board, {"model": "loans"}):
                if title in wanted:
                    found.setdefault(title, []).append({r["metric"].get("metric", "-"): float(r["value"][1]) for r in query(prom, expr)})
    finally:
        server.stop()
    assert set(found) == wanted
    assert found["Estimated vs realized quality"] == [{"accuracy": 0.81}, {"accuracy": 0.79}, {"accuracy": 0.83}, {"accuracy": 0.8}]
    assert found["Estimation error (estimated - realized)"] == [{"accuracy": pytest.approx(0.015)}]
    assert found["Multivariate drift (domain classifier)"] == [{"-": 0.71}, {"-": 1e-9}]


def test_a_multiclass_model_is_estimated_one_vs_rest_from_its_per_class_columns():
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(4000, 3)) * 1.5
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    truth = np.array([rng.choice(3, p=p) for p in proba])  # calibrated by construction
    frame = pd.DataFrame({"ts": pd.Timestamp("2026-01-01", tz="UTC"), "id": np.arange(4000), "x": rng.normal(size=4000),
                          "prediction": proba.argmax(axis=1), "label": truth, "p0": proba[:, 0], "p1": proba[:, 1], "p2": proba[:, 2]})
    model = ModelConfig.model_validate({
        "name": "mc", "source": {"type": "files", "path": "/nonexistent/*.parquet"}, "task": "multiclass_classification",
        "columns": {"timestamp": "ts", "id": "id", "prediction": "prediction", "target": "label", "numerical": ["x"]},
        "estimation": {"probabilities": {"0": "p0", "1": "p1", "2": "p2"}},
    })  # fmt: skip
    estimator = fit_for(model, frame.iloc[:2000])
    assert estimator.mode == "multiclass" and estimator.classes == (0, 1, 2)
    window = frame.iloc[2000:]
    estimated = estimator.estimate(window.drop(columns="label"))
    realized = estimator.realized(window)
    assert {e.metric for e in estimated.estimates} == {"accuracy", "f1", "roc_auc"}
    for metric in ("accuracy", "f1", "roc_auc"):
        assert abs(estimated.get(metric).value - realized[metric]) < 0.03, metric
