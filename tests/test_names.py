"""Names and shapes real data has: features called `mean radius`, `worst.area`, `größe` and
`1st score`, and labels in an `(id, label)` table without a timestamp — through the check, a
retrain with every compression strategy, ONNX and pyfunc serving."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from monitor.check.run import Inputs, WindowSpec, run_check
from monitor.core.config import Config, MLflowConfig, ModelConfig
from monitor.core.results import CheckStatus
from monitor.service.reference import References
from monitor.sources import open_source
from retrain import Trigger, run_retrain
from retrain.baseline import register_baseline
from retrain.compress import compress
from retrain.onnx_model import onnx_predict, session
from retrain.registry import champion
from tests.support.owndata import (
    CATEGORICAL,
    FEATURES,
    ID,
    NUMERICAL,
    PREDICTION,
    PROBABILITY,
    TARGET,
    TIMESTAMP,
    champion_pipeline,
    logged,
    make_rows,
)  # fmt: skip

NOW = datetime(2024, 6, 1, tzinfo=timezone.utc)


def _model(root: Path, **retrain) -> ModelConfig:
    return ModelConfig.model_validate({
        "name": "cancer",
        "source": {"type": "files", "path": str(root / "logs" / "*.parquet")},
        "labels": {"type": "files", "path": str(root / "labels.parquet")},
        "reference": str(root / "reference.parquet"),
        "columns": {"timestamp": TIMESTAMP, "id": ID, "prediction": PREDICTION, "probability": PROBABILITY, "target": TARGET,
                    "numerical": NUMERICAL, "categorical": CATEGORICAL},
        "task": "binary_classification",
        "window": {"size": "1d", "min_rows": 100},
        "retrain": {"min_labelled_rows": 1000, "training_window": "7d", **retrain},
    })


def _write(root: Path, estimator, *, rows: int = 3000, shifted: float = 1.0) -> pd.DataFrame:
    frame = make_rows(rows, seed=5, shifted=shifted, start=NOW - timedelta(days=3), every=timedelta(days=3) / rows)
    (root / "logs").mkdir(parents=True, exist_ok=True)
    logged(estimator, frame).to_parquet(root / "logs" / "part-0.parquet", index=False)
    frame[[ID, TARGET]].to_parquet(root / "labels.parquet", index=False)  # no timestamp: (id, label) only
    return frame


def test_a_check_names_every_odd_feature_and_finds_the_drift(tmp_path):
    train = make_rows(2000, seed=1, shifted=0.0, start=NOW - timedelta(days=30), every=timedelta(minutes=5))
    estimator = champion_pipeline().fit(train[FEATURES], train[TARGET])
    train.to_parquet(tmp_path / "reference.parquet", index=False)
    _write(tmp_path, estimator)
    model = _model(tmp_path)
    config = Config(mlflow=MLflowConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"), models=[model])
    inputs = Inputs(model, open_source(model.source, model.columns), open_source(model.labels, model.columns))

    result = run_check(inputs, References(config).get(model).prepared, WindowSpec(since=NOW - timedelta(days=4), until=NOW)).result

    assert result.status is CheckStatus.DRIFT, result.message
    assert [f.feature for f in result.features] == FEATURES
    assert {"mean radius", "worst.area", "région"} <= set(result.drifted_features)
    # Quality from the (id, label) table, joined although it has no timestamp.
    assert result.quality is not None and result.quality.labelled_rows == 3000
    inputs.close()


def test_a_retrain_with_every_compression_serves_odd_names_through_onnx_and_pyfunc(tmp_path):
    model = _model(tmp_path, compression=["onnx", "prune", "quantize"], max_quality_loss=0.02)
    config = Config(mlflow=MLflowConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "artifacts")),
                    models=[model])
    before = make_rows(2000, seed=1, shifted=0.0, start=NOW - timedelta(days=30), every=timedelta(minutes=5))
    estimator = champion_pipeline().fit(before[FEATURES].iloc[:1600], before[TARGET].iloc[:1600])
    register_baseline(config, model, estimator, before.iloc[:1600], before.iloc[1600:])
    _write(tmp_path, estimator)

    outcome = run_retrain(config, model, Trigger(None, None, None, None, "test"), now=NOW)

    assert outcome.outcome == "promoted", outcome.reason
    assert outcome.variant not in (None, "none"), "the challenger must serve from ONNX"
    fresh = make_rows(500, seed=9, shifted=1.0, start=NOW, every=timedelta(seconds=1))
    served = mlflow.pyfunc.load_model(f"models:/{model.mlflow_name}@champion").predict(fresh[FEATURES])
    uncompressed = mlflow.sklearn.load_model(champion(config, model).sklearn_model_uri)
    agree = (served["prediction"].to_numpy() == uncompressed.predict(fresh[FEATURES])).mean()
    assert agree > 0.9 and {"proba_0", "proba_1"} <= set(served.columns)


def test_onnx_inputs_map_back_to_odd_column_names_even_when_quantized():
    frame = make_rows(1200, seed=3, shifted=0.0, start=NOW, every=timedelta(seconds=1))
    columns = ColumnTransformer([("num", StandardScaler(), NUMERICAL), ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL)])
    mlp = Pipeline([("columns", columns), ("mlp", MLPClassifier((32,), max_iter=300, random_state=0))])
    mlp.fit(frame[FEATURES].iloc[:800], frame[TARGET].iloc[:800])

    result = compress(mlp, frame.iloc[800:1000], target=TARGET, numerical=NUMERICAL, categorical=CATEGORICAL,
                      task="binary_classification", strategies=["onnx", "quantize"], max_quality_loss=0.05)

    names = {v.name for v in result.variants}
    assert {"onnx", "onnx_int8"} <= names, result.skipped
    # skl2onnx renamed the inputs; the graph still says which column feeds which input.
    graph_inputs = [i.name for i in session(result.onnx_model).get_inputs()]
    assert "mean_radius" in graph_inputs or "mean radius" not in graph_inputs
    labels, _ = onnx_predict(result.onnx_model, frame.iloc[1000:], NUMERICAL, CATEGORICAL)
    assert (labels == mlp.predict(frame[FEATURES].iloc[1000:])).mean() > 0.95
    shuffled = frame.iloc[1000:][list(reversed(frame.columns))]  # column order in the frame does not matter
    assert (onnx_predict(result.onnx_model, shuffled, NUMERICAL, CATEGORICAL)[0] == labels).all()
    assert np.isfinite(result.chosen.quality)
