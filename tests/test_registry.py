"""The MLflow registry as driftd uses it: champion lookup, references, promote/rollback, adopt.

These run against MLflow's embedded SQLite store (a real store, the one driftd uses with no
servers); the HTTP server path is covered by the integration tests in test_retrain.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

from monitor.core.config import Config, MLflowConfig, ModelConfig
from retrain.baseline import adopt, register_baseline
from retrain.registry import RegistryError, champion, load_reference, promote, rollback, settle_orphans
from retrain.tracking import mask
from tests.support.mlflow_server import free_port
from tests.support.models import FEATURES, PREDICTION, PROBABILITY, TARGET, make_loans, model_config, train_baseline, with_predictions


def sqlite_config(tmp_path: Path, model: ModelConfig) -> Config:
    return Config(
        mlflow=MLflowConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "artifacts")),
        models=[model],
    )


@pytest.fixture
def loans(tmp_path: Path) -> tuple[Config, ModelConfig]:
    # A logistic baseline keeps compression quick; forests are exercised in test_retrain.
    model = model_config("loans", tmp_path / "logs" / "*.parquet", retrain={"compression": ["onnx"]})
    return sqlite_config(tmp_path, model), model


def baseline(config: Config, model: ModelConfig, seed: int = 1) -> tuple[str, object, pd.DataFrame]:
    frame = make_loans(3000, seed=seed)
    train, holdout = frame.iloc[:2400], frame.iloc[2400:]
    estimator = train_baseline(train, "logistic")
    version = register_baseline(config, model, estimator, with_predictions(estimator, train), with_predictions(estimator, holdout))
    return version, estimator, holdout


def aliases(config: Config, name: str) -> dict[str, str]:
    found = mlflow.MlflowClient(config.mlflow.tracking_uri).get_registered_model(name).aliases
    return {alias: str(version) for alias, version in found.items()}


def test_no_champion_on_an_empty_registry(loans):
    config, model = loans
    assert champion(config, model) is None


def test_baseline_becomes_champion_with_its_reference_and_tags(loans):
    config, model = loans
    version, estimator, holdout = baseline(config, model)

    current = champion(config, model)
    assert current is not None and current.version == version == "1"
    assert current.model_uri == "models:/loans/1"
    assert current.primary_metric == "accuracy"
    expected = accuracy_score(holdout[TARGET], estimator.predict(holdout[FEATURES]))
    assert current.validation_score == pytest.approx(expected, abs=0.005)  # ONNX float32 may flip a tie

    reference, ref_version = load_reference(config, model)
    assert ref_version == "1" and len(reference) == 2400
    assert {*FEATURES, TARGET, PREDICTION, PROBABILITY} <= set(reference.columns)
    agreement = np.mean(reference[PREDICTION].to_numpy() == estimator.predict(reference[FEATURES]))
    assert agreement > 0.99

    served = mlflow.pyfunc.load_model("models:/loans@champion").predict(holdout[FEATURES])
    assert np.mean(served["prediction"].to_numpy() == estimator.predict(holdout[FEATURES])) > 0.99
    sklearn_model = mlflow.sklearn.load_model(current.sklearn_model_uri)
    assert (sklearn_model.predict(holdout[FEATURES]) == estimator.predict(holdout[FEATURES])).all()

    tags = mlflow.MlflowClient(config.mlflow.tracking_uri).get_model_version("loans", "1").tags
    assert tags["driftd.trigger"] == "baseline"
    assert tags["driftd.compression"] == "onnx"
    assert tags["driftd.onnx_opset"].isdigit()
    artifacts = Path(config.mlflow.artifact_root, "loans")
    assert artifacts.is_dir(), "artifacts must land under mlflow.artifact_root/<model>, not the cwd"


def test_promote_and_rollback_move_champion_and_previous(loans):
    config, model = loans
    baseline(config, model, seed=1)
    baseline(config, model, seed=2)
    assert aliases(config, "loans") == {"champion": "2", "previous": "1"}

    assert rollback(config, model) == "1"
    assert aliases(config, "loans") == {"champion": "1"}
    assert champion(config, model).version == "1"
    with pytest.raises(RegistryError, match="no `previous` version"):
        rollback(config, model)

    promote(config, model, "2")
    assert aliases(config, "loans") == {"champion": "2", "previous": "1"}
    with pytest.raises(RegistryError, match="no version 9"):
        promote(config, model, "9")
    assert aliases(config, "loans") == {"champion": "2", "previous": "1"}


def test_a_promotion_cut_off_between_the_switch_and_previous_is_completed_by_the_next_retrain(loans):
    config, model = loans
    baseline(config, model, seed=1)
    baseline(config, model, seed=2)
    client = mlflow.MlflowClient(config.mlflow.tracking_uri)
    # What a retrain process killed right after moving `champion` (move_champion) leaves behind:
    client.delete_registered_model_alias("loans", "previous")
    client.set_model_version_tag("loans", "2", "driftd.outcome", "pending")
    assert aliases(config, "loans") == {"champion": "2"}

    assert settle_orphans(client, "loans") == []  # promoted, not failed
    assert aliases(config, "loans") == {"champion": "2", "previous": "1"}
    assert client.get_model_version("loans", "2").tags["driftd.outcome"] == "promoted"


def test_rollback_chains_back_through_promotions(loans):
    config, model = loans
    for seed in (1, 2, 3):
        baseline(config, model, seed=seed)
    assert aliases(config, "loans") == {"champion": "3", "previous": "2"}
    assert rollback(config, model) == "2"
    assert aliases(config, "loans") == {"champion": "2", "previous": "1"}


def test_adopt_an_existing_sklearn_model_by_run_or_uri(loans, tmp_path):
    config, model = loans
    frame = make_loans(2000, seed=4)
    estimator = train_baseline(frame, "logistic")
    mlflow.set_tracking_uri(config.mlflow.tracking_uri)
    experiment = mlflow.MlflowClient().create_experiment("team/loans", artifact_location=str(tmp_path / "team"))
    with mlflow.start_run(experiment_id=experiment) as run:
        info = mlflow.sklearn.log_model(estimator, name="model", serialization_format="cloudpickle", pip_requirements=["scikit-learn"])
    reference = tmp_path / "reference.parquet"
    frame.to_parquet(reference, index=False)

    version = adopt(config, model, run_id=run.info.run_id, reference=reference)
    current = champion(config, model)
    assert current.version == version == "1"
    assert current.validation_score == pytest.approx(accuracy_score(frame[TARGET], estimator.predict(frame[FEATURES])))
    tags = mlflow.MlflowClient(config.mlflow.tracking_uri).get_model_version("loans", version).tags
    assert tags["driftd.trigger"] == "adopt" and tags["driftd.compression"] == "none"
    stored, _ = load_reference(config, model)
    assert len(stored) == len(frame) and PREDICTION in stored.columns
    served = mlflow.pyfunc.load_model("models:/loans@champion").predict(frame[FEATURES].head(50))
    assert list(served.columns) == ["prediction", "proba_0", "proba_1"]  # the ONNX variants' contract
    assert (served["prediction"].to_numpy() == estimator.predict(frame[FEATURES].head(50))).all()

    unlabelled = tmp_path / "unlabelled.csv"
    frame.drop(columns=[TARGET]).to_csv(unlabelled, index=False)
    second = adopt(config, model, model_uri=info.model_uri, reference=unlabelled)
    assert champion(config, model).version == second == "2"
    assert champion(config, model).validation_score is None  # no target, no score
    assert aliases(config, "loans") == {"champion": "2", "previous": "1"}


def test_adopt_names_the_missing_columns(loans, tmp_path):
    config, model = loans
    frame = make_loans(500, seed=4)
    estimator = train_baseline(frame, "logistic")
    mlflow.set_tracking_uri(config.mlflow.tracking_uri)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(estimator, name="model", serialization_format="cloudpickle", pip_requirements=["scikit-learn"])
    reference = tmp_path / "reference.parquet"
    frame.drop(columns=["region", "age"]).to_parquet(reference, index=False)
    with pytest.raises(RegistryError, match=r"lacks the feature columns \['age', 'region'\]"):
        adopt(config, model, model_uri=info.model_uri, reference=reference)
    assert champion(config, model) is None


def test_reference_falls_back_to_the_configured_file(tmp_path):
    path = tmp_path / "reference.csv"
    make_loans(300, seed=9).to_csv(path, index=False)
    model = model_config("loans", tmp_path / "logs" / "*.parquet", reference=path)
    frame, version = load_reference(sqlite_config(tmp_path, model), model)
    assert version == "file:reference.csv" and len(frame) == 300

    bare = model_config("loans", tmp_path / "logs" / "*.parquet")
    with pytest.raises(RegistryError, match="driftd adopt"):
        load_reference(sqlite_config(tmp_path, bare), bare)


def test_unreachable_server_fails_fast_without_leaking_credentials(tmp_path):
    model = model_config("loans", tmp_path / "logs" / "*.parquet")
    url = f"http://driftd:s3cret-pw@127.0.0.1:{free_port()}"
    config = Config(mlflow=MLflowConfig(tracking_uri=url, artifact_root=str(tmp_path)), models=[model])
    started = time.monotonic()
    with pytest.raises(RegistryError) as error:
        champion(config, model)
    assert time.monotonic() - started < 30
    assert "s3cret-pw" not in str(error.value)
    assert "127.0.0.1" in str(error.value)


def test_mask_hides_credentials_in_urls():
    assert mask("postgresql://user:pw@db:5432/x") == "postgresql://user:***@db:5432/x"
    assert mask("see https://host/api?token=abc&x=1") == "see https://host/api?token=***&x=1"
    assert mask("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
