"""The recompression stage: every family gets a smaller ONNX variant that passes its holdout
gate, ONNX agrees with sklearn, unconvertible or unquantizable models are reported instead of
crashing, and the chosen model round-trips through MLflow's pyfunc on a DataFrame."""

from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier, RandomForestClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

import retrain.compress.measure as measure
from retrain.compress import check_convertible, compress, log_onnx_model, onnx_predict, selection_split
from retrain.onnx_model import to_onnx_model

NUMERICAL = [f"x{i}" for i in range(10)]
CATEGORICAL = ["c0", "c1"]
COLUMNS = NUMERICAL + CATEGORICAL
FAST = dict(latency_calls=30, batch_rows=1000, seed=0)


@pytest.fixture(autouse=True)
def one_thread():
    """OpenMP estimators (HistGradientBoosting) crawl when other suites load the two cores."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def make_frame(classes: int = 2, regression: bool = False, seed: int = 0, n: int = 3000) -> pd.DataFrame:
    X, y = make_classification(n_samples=n, n_features=10, n_informative=5, n_redundant=2,
                               n_classes=classes, flip_y=0.02, random_state=seed)
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(X, columns=NUMERICAL)
    frame["c0"] = np.array(list("abcd"))[np.digitize(X[:, 0] + rng.normal(0, 0.5, n), [-1, 0, 1])]
    frame["c1"] = rng.choice(["p", "q", "r"], n)  # noise
    frame["y"] = X[:, :5] @ rng.normal(size=5) * 10 + rng.normal(size=n) if regression else y
    return frame


def split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    n = len(frame)
    return frame[: int(n * 0.6)], frame[int(n * 0.6): int(n * 0.8)], frame[int(n * 0.8):]


def pipeline(model, numeric_step=None) -> Pipeline:
    columns = ColumnTransformer([("num", numeric_step or StandardScaler(), NUMERICAL),
                                 ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL)])
    return Pipeline([("columns", columns), ("model", model)])


def fitted(model, frame: pd.DataFrame, numeric_step=None) -> Pipeline:
    train, _, _ = split(frame)
    return pipeline(model, numeric_step).fit(train[COLUMNS], train["y"])


def run(estimator, frame, task="binary_classification", strategies=("onnx", "prune", "quantize"), loss=0.02):
    _, validation, _ = split(frame)
    return compress(estimator, validation, target="y", numerical=NUMERICAL, categorical=CATEGORICAL,
                    task=task, strategies=list(strategies), max_quality_loss=loss, **FAST)


def select_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The validation rows every variant is measured on (the other half builds pruned variants)."""
    return selection_split(split(frame)[1], seed=FAST["seed"])[1]


def onnx_quality(result, holdout: pd.DataFrame, task: str) -> float:
    pred, _ = onnx_predict(result.onnx_model, holdout, NUMERICAL, CATEGORICAL)
    if task == "regression":
        return -float(np.sqrt(np.mean((pred - holdout["y"].to_numpy()) ** 2)))
    return float(np.mean(pred == holdout["y"].to_numpy()))


# family -> (estimator, classes, task, loss budget, expected variant, rows). The variant is chosen
# on half the validation rows with a 95% bound of its loss, so a lossy variant needs enough
# rows to be vouched for: 2,000 validation rows where 600 cannot tell a forest's loss from noise.
FAMILIES = {
    "random_forest": (lambda: RandomForestClassifier(50, random_state=0), 2, "binary_classification", 0.02, "prune_trees", 10_000),
    "hist_gradient_boosting": (lambda: HistGradientBoostingClassifier(max_iter=60, random_state=0), 3,
                               "multiclass_classification", 0.02, "prune_stages", 10_000),
    "gradient_boosting": (lambda: GradientBoostingClassifier(random_state=0), 2, "binary_classification", 0.02, "prune_stages", 3000),
    "logistic_regression": (lambda: LogisticRegression(max_iter=1000), 2, "binary_classification", 0.02, "prune_features", 10_000),
    "mlp": (lambda: MLPClassifier((64,), max_iter=400, random_state=0), 2, "binary_classification", 0.02, "onnx_int8", 3000),
    "random_forest_regressor": (lambda: RandomForestRegressor(40, random_state=0), 0, "regression", 0.5, "prune_trees", 3000),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_gets_a_smaller_faster_variant_within_its_gate(family):
    make, classes, task, loss, expected, rows = FAMILIES[family]
    frame = make_frame(classes or 2, regression=task == "regression", n=rows)
    result = run(fitted(make(), frame), frame, task=task, loss=loss)

    chosen, original = result.chosen, result.original
    assert chosen is not None, result.reason
    assert chosen.name.startswith(expected), [(v.name, v.size_bytes, v.passed, v.note) for v in result.variants]
    assert chosen.passed and chosen.quality >= original.quality - loss and chosen.loss_bound <= loss
    assert chosen.size_bytes < original.size_bytes
    # the smallest passing candidate by its native (pickled) size, the measure every candidate has
    assert chosen.native_bytes == min(v.native_bytes for v in result.variants if v.passed)
    assert chosen.p50_ms < original.p50_ms
    assert result.onnx_model is not None and result.target_opset == 17
    # the returned graph is the one that was measured
    assert onnx_quality(result, select_rows(frame), task) == pytest.approx(chosen.quality, abs=1e-6)


def test_only_the_chosen_variant_is_converted_and_the_lossless_fallback_is_built_on_demand():
    frame = make_frame(n=10_000)
    estimator = fitted(RandomForestClassifier(50, random_state=0), frame)
    result = run(estimator, frame, strategies=["onnx", "prune", "quantize"])

    assert result.chosen.name.startswith("prune_trees") and result.chosen.converted
    assert [v.name for v in result.variants if v.converted] == [result.chosen.name]
    assert all(np.isnan(v.p50_ms) and "scored natively" in v.note for v in result.variants if not v.converted)
    assert "RandomForestClassifier converts to ONNX-ML tree operators" in {s.name: s.reason for s in result.skipped}["onnx_int8"]
    assert result.lossless is None and result.lossless_model is None  # not converted unless the gate needs it
    assert result.seconds["convert to ONNX"] > 0 and result.seconds["score candidates natively"] > 0

    fuller = result.with_lossless()
    assert fuller.chosen == result.chosen and fuller.onnx_model is result.onnx_model
    assert fuller.lossless.name == "onnx" and fuller.lossless.converted and fuller.lossless_model is not None
    assert "lossless fallback" in fuller.seconds and fuller.with_lossless() is fuller
    native = next(v for v in result.variants if v.name == "onnx")  # the plain model, as scored natively
    assert native.quality == pytest.approx(fuller.lossless.quality, abs=2 / len(select_rows(frame)))
    assert fuller.lossless.passed and fuller.lossless.agreement >= 0.98  # off only on float32 threshold ties


@pytest.mark.parametrize("task", ["multiclass_classification", "regression"])
def test_onnx_conversion_agrees_with_sklearn(task):
    frame = make_frame(3, regression=task == "regression")
    model = RandomForestRegressor(30, random_state=0) if task == "regression" else HistGradientBoostingClassifier(max_iter=60, random_state=0)
    estimator = fitted(model, frame)
    holdout = split(frame)[2]
    result = run(estimator, frame, task=task, strategies=["onnx"], loss=0.0)

    assert result.chosen.name == "onnx" and result.chosen.passed
    pred, proba = onnx_predict(result.onnx_model, holdout, NUMERICAL, CATEGORICAL)
    if task == "regression":
        assert proba is None
        np.testing.assert_allclose(pred, estimator.predict(holdout[COLUMNS]), rtol=1e-4, atol=1e-4)
    else:
        assert np.mean(pred == estimator.predict(holdout[COLUMNS])) >= 0.999
        np.testing.assert_allclose(proba, estimator.predict_proba(holdout[COLUMNS]), atol=1e-4)
        assert result.classes == (0, 1, 2)


def test_a_graph_that_disagrees_with_its_sklearn_model_is_refused(monkeypatch):
    frame = make_frame()
    estimator = fitted(LogisticRegression(max_iter=1000), frame)
    flipped = frame.assign(y=1 - frame["y"])
    impostor = fitted(LogisticRegression(max_iter=1000), flipped)
    monkeypatch.setattr(measure, "to_onnx_model", lambda *args: to_onnx_model(impostor, NUMERICAL, CATEGORICAL))

    result = run(estimator, frame, strategies=["onnx"], loss=1.0)  # a loss budget that would admit anything

    (variant,) = result.variants
    assert not variant.passed and "refused" in variant.note
    assert result.chosen is None and result.onnx_model is None


def test_unconvertible_step_is_reported_before_and_after_training():
    log_step = FunctionTransformer(np.log1p)
    unfitted = pipeline(RandomForestClassifier(10, random_state=0), log_step)
    assert "FunctionTransformer" in check_convertible(unfitted, NUMERICAL, CATEGORICAL)

    frame = make_frame()
    frame[NUMERICAL] = frame[NUMERICAL].abs()
    result = run(fitted(RandomForestClassifier(10, random_state=0), frame, log_step), frame)

    assert result.chosen is None and result.onnx_model is None and result.variants == ()
    assert "FunctionTransformer" in result.reason and "keep the sklearn model" in result.reason
    assert result.original.size_bytes > 0 and result.original.quality > 0.6  # measured all the same


def test_check_convertible_is_structural_and_cheap():
    assert check_convertible(pipeline(HistGradientBoostingClassifier()), NUMERICAL, CATEGORICAL) is None
    string_imputer = Pipeline([("columns", ColumnTransformer([
        ("num", StandardScaler(), NUMERICAL),
        ("cat", Pipeline([("impute", SimpleImputer(strategy="most_frequent")), ("onehot", OneHotEncoder())]), CATEGORICAL),
    ])), ("model", LogisticRegression())])
    assert "SimpleImputer" in check_convertible(string_imputer, NUMERICAL, CATEGORICAL)


def test_quantization_of_a_linear_model_is_skipped_with_a_reason():
    frame = make_frame()
    result = run(fitted(LogisticRegression(max_iter=1000), frame), frame, strategies=["onnx", "quantize"])

    skipped = {s.name: s.reason for s in result.skipped}
    assert "nothing to quantize" in skipped["onnx_int8"]
    assert [v.name for v in result.variants] == ["onnx"]
    assert result.chosen.name == "onnx"


def test_zero_quality_loss_rejects_a_lossy_prune_and_keeps_a_lossless_variant():
    frame = make_frame(seed=3)
    result = run(fitted(RandomForestClassifier(60, random_state=0), frame), frame, strategies=["onnx", "prune"], loss=0.0)

    lossy = [v for v in result.variants if v.name.startswith("prune") and v.quality < result.original.quality]
    assert lossy, "this seeded case must offer a prune that loses accuracy on the holdout"
    assert not any(v.passed for v in lossy)
    assert result.chosen is not None and result.chosen.quality >= result.original.quality
    assert all(v.quality >= result.original.quality for v in result.variants if v.passed)


def test_linear_pruning_drops_whole_input_columns():
    frame = make_frame(n=20_000)
    for i in range(4):  # pure-noise columns the model should lose first
        frame[f"x{i + 6}"] = np.random.default_rng(i).normal(size=len(frame))
    result = run(fitted(LogisticRegression(max_iter=1000), frame), frame, strategies=["onnx", "prune"])

    assert result.chosen.name.startswith("prune_features")
    plain = next(v for v in result.variants if v.name == "onnx")
    assert result.chosen.size_bytes < plain.size_bytes
    inputs = {i.name for i in result.onnx_model.graph.input}
    assert inputs < set(COLUMNS) and "dropped" in result.chosen.note
    pred, _ = onnx_predict(result.onnx_model, split(frame)[2], NUMERICAL, CATEGORICAL)  # all columns still accepted
    assert len(pred) == len(split(frame)[2])


def test_bare_estimator_on_numerical_columns_is_wrapped():
    frame = make_frame()
    train, validation, _ = split(frame)
    estimator = RandomForestClassifier(30, random_state=0).fit(train[NUMERICAL], train["y"])
    result = compress(estimator, validation, target="y", numerical=NUMERICAL, categorical=[],
                      task="binary_classification", strategies=["onnx", "prune"], max_quality_loss=0.02, **FAST)
    assert result.chosen is not None and result.chosen.size_bytes < result.original.size_bytes


def test_bad_arguments_fail_loudly():
    frame = make_frame(n=600)
    estimator = fitted(LogisticRegression(), frame)
    with pytest.raises(ValueError, match="unknown compression strategies"):
        run(estimator, frame, strategies=["onnx", "distill"])
    with pytest.raises(ValueError, match="does not match"):
        run(estimator, frame, task="regression")


@pytest.mark.parametrize("task", ["multiclass_classification", "regression"])
def test_chosen_model_round_trips_through_mlflow_pyfunc_on_a_dataframe(tmp_path, task):
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    regression = task == "regression"
    frame = make_frame(3, regression=regression)
    model = Ridge() if regression else HistGradientBoostingClassifier(max_iter=30, random_state=0)
    result = run(fitted(model, frame), frame, task=task, strategies=["onnx", "prune"])
    _, validation, holdout = split(frame)

    previous = tracking_utils._tracking_uri
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        experiment = mlflow.create_experiment("driftd/test", artifact_location=str(tmp_path / "artifacts"))
        with mlflow.start_run(experiment_id=experiment):
            info = log_onnx_model(result, "model", NUMERICAL, CATEGORICAL, input_example=validation)
        loaded = mlflow.pyfunc.load_model(info.model_uri)
        served = loaded.predict(holdout)  # raw columns, pandas dtypes, plus the target column
    finally:
        mlflow.set_tracking_uri(previous)

    pred, proba = onnx_predict(result.onnx_model, holdout, NUMERICAL, CATEGORICAL)
    assert len(served) == len(holdout)
    # served with default threads: float32 sums may differ in the last bits
    np.testing.assert_allclose(served["prediction"].to_numpy(), pred, rtol=1e-5, atol=1e-6)
    if regression:
        assert list(served.columns) == ["prediction"]
    else:
        np.testing.assert_allclose(served[["proba_0", "proba_1", "proba_2"]].to_numpy(), proba, atol=1e-6)
    assert list((tmp_path / "artifacts").rglob("model.onnx"))
