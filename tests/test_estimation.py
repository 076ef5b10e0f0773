"""Label-free quality estimates: calibration, CBPE, DLE, persistence, estimated − realized."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from monitor.check.calibration import Calibrator, choose_calibrator, fit_calibrator
from monitor.check.cbpe import CBPE, fit_cbpe
from monitor.check.dle import DLE, fit_dle
from monitor.check.estimation import EstimatorError, estimation_errors, estimation_errors_from, load_estimator, save_estimator

# odd names on purpose: the estimators must not care what users call their columns
PRED, PROBA, TARGET = "pred ïction", "p.robability", "1target"


def binary_rows(n: int, rng: np.random.Generator, *, a: float = 2.0, b: float = 2.0, concept: float = 0.0) -> pd.DataFrame:
    """Rows whose true P(y = 1) is known (Beta(a, b)); the logged score is p² — monotone but
    miscalibrated. `concept` pulls P(y | score) itself towards 1/2 (what no estimator can see)."""
    p = rng.beta(a, b, n)
    score = p**2
    truth = (1 - concept) * p + concept * (1 - p)
    return pd.DataFrame({PRED: (score >= 0.25).astype("int64"), PROBA: score, TARGET: (rng.random(n) < truth).astype("int64"), "p": p})


@pytest.fixture(scope="module")
def cbpe() -> CBPE:
    return fit_cbpe(binary_rows(10_000, np.random.default_rng(0)), prediction=PRED, probability=PROBA, target=TARGET)


# --- calibration --------------------------------------------------------------------------


def test_calibrators_recover_the_known_probability_and_survive_json():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.02, 0.98, 20_000)
    outcomes = rng.random(p.size) < p
    grid = np.linspace(0.05, 0.95, 50)
    isotonic = fit_calibrator(p**3, outcomes, "isotonic")  # any monotone distortion
    assert np.abs(isotonic.apply(grid**3) - grid).mean() < 0.03
    logit = np.log(p / (1 - p))
    distorted = 1 / (1 + np.exp(-(2.0 * logit - 0.5)))  # a sigmoid-shaped distortion
    sigmoid = fit_calibrator(distorted, outcomes, "sigmoid")
    assert sigmoid.slope == pytest.approx(0.5, abs=0.05)
    assert np.abs(sigmoid.apply(1 / (1 + np.exp(-(2.0 * np.log(grid / (1 - grid)) - 0.5)))) - grid).max() < 0.03
    for fitted in (isotonic, sigmoid, fit_calibrator(p, outcomes, "none")):
        again = Calibrator.from_json(json.loads(json.dumps(fitted.to_json())))
        assert np.array_equal(again.apply(grid), fitted.apply(grid))


def test_auto_takes_isotonic_for_a_distortion_a_sigmoid_cannot_fix():
    rng = np.random.default_rng(2)
    p = rng.uniform(0, 1, 20_000)
    outcomes = rng.random(p.size) < p
    stepped = np.where(p < 0.5, p / 10, 0.9 + p / 10)  # a jump no sigmoid of the logit follows
    assert choose_calibrator(stepped, outcomes) == "isotonic"
    assert fit_calibrator(stepped, outcomes).kind == "isotonic"


# --- CBPE ---------------------------------------------------------------------------------


def test_estimate_equals_the_truth_within_the_band_most_of_the_time(cbpe):
    """Windows under covariate shift (the Beta of p moves): the realized accuracy, f1 and roc_auc
    fall inside the 95% band in most windows, and the estimate is close on average."""
    rng = np.random.default_rng(3)
    errors: dict[str, list[float]] = {"accuracy": [], "f1": [], "roc_auc": []}
    inside: dict[str, list[bool]] = {m: [] for m in errors}
    for w in range(24):
        window = binary_rows(1_500, rng, a=1.5 + w % 4, b=2 + (w // 4) % 3)
        estimated = cbpe.estimate(window.drop(columns=TARGET), seed=w)
        realized = cbpe.realized(window)
        for e in estimated.estimates:
            errors[e.metric].append(abs(e.value - realized[e.metric]))
            inside[e.metric].append(e.lower <= realized[e.metric] <= e.upper)
    for metric in errors:
        assert np.mean(errors[metric]) < 0.02, metric
        assert np.mean(inside[metric]) >= 0.8, metric


def test_realized_metrics_are_sklearns(cbpe):
    window = binary_rows(3_000, np.random.default_rng(4))
    realized = cbpe.realized(window)
    assert realized["accuracy"] == pytest.approx(skm.accuracy_score(window[TARGET], window[PRED]))
    assert realized["f1"] == pytest.approx(skm.f1_score(window[TARGET], window[PRED]))
    assert realized["roc_auc"] == pytest.approx(skm.roc_auc_score(window[TARGET], window[PROBA]))


def test_known_labels_count_as_they_are_and_narrow_the_band(cbpe):
    window = binary_rows(2_000, np.random.default_rng(5))
    unlabelled = cbpe.estimate(window.assign(**{TARGET: np.nan}))
    half = window.astype({TARGET: "float64"})
    half.loc[half.index[1_000:], TARGET] = np.nan
    partly = cbpe.estimate(half)
    labelled = cbpe.estimate(window)
    realized = cbpe.realized(window)
    for metric in cbpe.metrics:
        assert labelled.get(metric).value == pytest.approx(realized[metric])
        assert labelled.get(metric).width == pytest.approx(0, abs=1e-9)
        assert 0 < partly.get(metric).width < unlabelled.get(metric).width
    assert partly.get("accuracy").labelled_rows == 1_000
    assert unlabelled.get("accuracy").labelled_rows == 0


def test_concept_shift_shows_as_estimation_error_once_labels_arrive(cbpe):
    rng = np.random.default_rng(6)
    steady = estimation_errors(cbpe, binary_rows(2_000, rng))
    shifted = estimation_errors(cbpe, binary_rows(2_000, rng, concept=0.25))
    assert {g.metric for g in steady} == {"accuracy", "f1", "roc_auc"}
    assert all(g.within_band for g in steady)
    accuracy = next(g for g in shifted if g.metric == "accuracy")
    assert not accuracy.within_band
    assert accuracy.error > 0.05  # the estimate is too optimistic: the model got worse unseen
    stored = cbpe.estimate(binary_rows(500, rng).drop(columns=TARGET))
    later = estimation_errors_from(stored, {"accuracy": 0.5})
    assert [g.metric for g in later] == ["accuracy"] and later[0].error == pytest.approx(stored.get("accuracy").value - 0.5)


def test_multiclass_with_a_column_per_class():
    rng = np.random.default_rng(7)

    def rows(n: int, tilt: float) -> pd.DataFrame:
        logits = rng.normal(size=(n, 3)) * 1.5 + np.array([tilt, 0, -tilt])
        p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        y = (rng.random((n, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
        score = p**1.5 / (p**1.5).sum(axis=1, keepdims=True)  # overconfident
        labels = np.array(["cat", "dog", "émeu"], dtype=object)
        frame = pd.DataFrame({f"P {c}": score[:, i] for i, c in enumerate(labels)})
        return frame.assign(**{PRED: labels[score.argmax(axis=1)], TARGET: labels[y]})

    columns = {"cat": "P cat", "dog": "P dog", "émeu": "P émeu"}
    estimator = fit_cbpe(rows(10_000, 0.0), prediction=PRED, probability=columns, target=TARGET)
    assert estimator.mode == "multiclass" and estimator.classes == ("cat", "dog", "émeu")
    window = rows(3_000, 0.7)
    estimated = estimator.estimate(window.drop(columns=TARGET))
    realized = estimator.realized(window)
    assert realized["f1"] == pytest.approx(skm.f1_score(window[TARGET], window[PRED], average="macro"))
    assert realized["roc_auc"] == pytest.approx(skm.roc_auc_score(window[TARGET], window[list(columns.values())], multi_class="ovr"))
    for e in estimated.estimates:
        assert abs(e.value - realized[e.metric]) < 0.02, e.metric
    round_tripped = CBPE.from_bytes(estimator.to_bytes())
    assert round_tripped.estimate(window).values() == estimator.estimate(window).values()

    confidence = window.assign(conf=window[list(columns.values())].max(axis=1))
    reference = rows(10_000, 0.0)
    reference["conf"] = reference[list(columns.values())].max(axis=1)
    accuracy_only = fit_cbpe(reference, prediction=PRED, probability="conf", target=TARGET)
    assert accuracy_only.mode == "confidence" and accuracy_only.metrics == ("accuracy",)
    assert abs(accuracy_only.estimate(confidence.drop(columns=TARGET)).get("accuracy").value - realized["accuracy"]) < 0.02


def test_cbpe_persists_as_json_and_estimates_the_same(tmp_path: Path, cbpe):
    path = save_estimator(cbpe, tmp_path / "driftd" / "estimator")
    assert path.name == "cbpe.json"
    json.loads(path.read_text())  # plain JSON: safe to load, readable in the MLflow UI
    loaded = load_estimator(path)
    assert loaded == cbpe
    window = binary_rows(1_000, np.random.default_rng(8)).drop(columns=TARGET)
    assert loaded.estimate(window, seed=3) == cbpe.estimate(window, seed=3)


def test_cbpe_refuses_inputs_it_cannot_use(cbpe):
    rng = np.random.default_rng(9)
    window = binary_rows(500, rng)
    with pytest.raises(EstimatorError, match="lacks columns"):
        cbpe.estimate(window.drop(columns=PROBA))
    with pytest.raises(EstimatorError, match=r"outside \[0, 1\]"):
        cbpe.estimate(window.assign(**{PROBA: window[PROBA] * 3}))
    with pytest.raises(EstimatorError, match="not among the reference's classes"):
        cbpe.estimate(window.assign(**{PRED: 7}))
    confidence = window.assign(**{PROBA: np.maximum(window["p"], 1 - window["p"])})
    with pytest.raises(EstimatorError, match="confidence"):
        fit_cbpe(pd.concat([confidence] * 2), prediction=PRED, probability=PROBA, target=TARGET)
    with pytest.raises(EstimatorError, match="one class"):
        fit_cbpe(window.assign(**{TARGET: 1, PRED: 1}), prediction=PRED, probability=PROBA, target=TARGET)
    # rows without a probability are left out and counted, not guessed
    holes = window.astype({PROBA: "float64"})
    holes.loc[holes.index[:50], PROBA] = np.nan
    assert cbpe.estimate(holes).skipped_rows == 50


# --- DLE ----------------------------------------------------------------------------------


def regression_rows(n: int, rng: np.random.Generator, shift: float = 0.0) -> pd.DataFrame:
    x = rng.normal(shift, 1, n)
    z = rng.uniform(-2, 2, n)
    kind = rng.choice(np.array(["a", "b"], dtype=object), n, p=[0.7, 0.3] if shift == 0 else [0.4, 0.6])
    noise = (0.3 + 0.7 * np.abs(x)) * np.where(kind == "b", 2.0, 1.0)
    y = 2 * x + z**2 + noise * rng.normal(size=n)
    prediction = 2 * x + z**2 + 0.1 * z  # a good model; its error is mostly the noise
    return pd.DataFrame({"x value": x, "z.1": z, "kind": kind, PRED: prediction, TARGET: y})


@pytest.fixture(scope="module")
def dle() -> DLE:
    reference = regression_rows(6_000, np.random.default_rng(10))
    return fit_dle(reference, numerical=["x value", "z.1"], categorical=["kind"], prediction=PRED, target=TARGET)


def test_dle_estimates_mae_and_rmse_under_covariate_shift(dle):
    rng = np.random.default_rng(11)
    for shift in (0.0, 0.5):
        window = regression_rows(4_000, rng, shift)
        estimated = dle.estimate(window.drop(columns=TARGET))
        realized = dle.realized(window)
        for e in estimated.estimates:
            assert abs(e.value - realized[e.metric]) / realized[e.metric] < 0.05, (shift, e.metric)
            assert e.lower < e.value < e.upper
    shifted = dle.estimate(regression_rows(4_000, rng, 0.5)).get("mae").value
    assert shifted > dle.reference_quality["mae"] * 1.2  # the shift moved rows into noisier regions and the estimate saw it


def test_dle_known_targets_count_and_unseen_levels_are_tolerated(dle):
    window = regression_rows(1_000, np.random.default_rng(12))
    assert dle.estimate(window).get("mae").value == pytest.approx(dle.realized(window)["mae"])
    odd = window.assign(kind="never seen").drop(columns=TARGET)
    assert np.isfinite(dle.estimate(odd).get("mae").value)


def test_dle_round_trip_and_version_guard(tmp_path: Path, dle):
    path = save_estimator(dle, tmp_path)
    assert path.name == "dle.joblib"
    window = regression_rows(1_000, np.random.default_rng(13)).drop(columns=TARGET)
    assert load_estimator(path).estimate(window) == dle.estimate(window)
    import dataclasses

    old = dataclasses.replace(dle, sklearn_version="0.0.1")
    with pytest.raises(EstimatorError, match="scikit-learn 0.0.1"):
        DLE.from_bytes(old.to_bytes())
    path.write_bytes(b"not a pickle")
    with pytest.raises(EstimatorError, match="refit"):
        load_estimator(path)
    with pytest.raises(EstimatorError, match="not an estimator file"):
        load_estimator(tmp_path / "model.pkl")


def test_dle_refuses_what_it_cannot_use(dle):
    window = regression_rows(300, np.random.default_rng(14))
    with pytest.raises(EstimatorError, match="lacks columns"):
        dle.estimate(window.drop(columns="z.1"))
    with pytest.raises(EstimatorError, match="must hold numbers"):
        dle.estimate(window.assign(**{"x value": "seven"}))
    with pytest.raises(EstimatorError, match="at least 200"):
        fit_dle(window.iloc[:100], numerical=["x value"], categorical=[], prediction=PRED, target=TARGET)


def test_fit_estimator_picks_the_method_for_the_task():
    from monitor.check.estimation import fit_estimator

    rng = np.random.default_rng(15)
    classifier = fit_estimator("binary_classification", binary_rows(2_000, rng), prediction=PRED, probability=PROBA, target=TARGET)
    assert isinstance(classifier, CBPE)
    regressor = fit_estimator("regression", regression_rows(1_000, rng), prediction=PRED, target=TARGET, numerical=["x value"], categorical=["kind"])
    assert isinstance(regressor, DLE) and regressor.metrics == ("mae", "rmse")
    with pytest.raises(EstimatorError, match="columns.probability"):
        fit_estimator("multiclass_classification", binary_rows(500, rng), prediction=PRED, target=TARGET)
