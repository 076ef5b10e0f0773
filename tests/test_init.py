"""`driftd init`: column roles inferred from a sample with their reasons, a config that validates,
and a model whose inputs disagree with the logs explained in words."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from sklearn.linear_model import LogisticRegression

from monitor.core.config import Defaults, load_config
from monitor.service.roles import Evidence, RolesError, infer_roles
from tests.support.daemon import PG_URL
from tests.support.owndata import FEATURES, ID, NUMERICAL, TARGET, TIMESTAMP, write_own_data

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _logs(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    """A log whose roles are each a little ambiguous."""
    rng = np.random.default_rng(seed)
    proba = rng.random(n)
    return pd.DataFrame({
        "served_at": pd.date_range(NOW - timedelta(days=2), periods=n, freq="1min", tz="UTC"),
        "row": np.arange(10_000, 10_000 + n),  # unique, increasing, no id-like name
        "age": rng.integers(18, 90, n),  # integers, but a feature
        "children": rng.integers(0, 4, n),  # a small count: read as a code
        "debt ratio": rng.random(n),  # in [0, 1], but not the probability
        "1st score": rng.normal(size=n),
        "größe.cm": rng.normal(170, 10, n),
        "plan": rng.choice(["basic", "pro"], n),
        "comment": [f"free text {i}" for i in range(n)],
        "channel": "web",  # constant
        "y_pred": (proba >= 0.5).astype(int),
        "p(churn)": proba,
        "label": np.where(rng.random(n) < 0.3, np.nan, (proba >= 0.5).astype(float)),
    })


def test_roles_come_with_their_reasons_and_survive_odd_names():
    roles = infer_roles(_logs())

    assert (roles.timestamp, roles.id, roles.prediction, roles.probability, roles.target) == ("served_at", "row", "y_pred", "p(churn)", "label")
    assert roles.numerical == ["age", "debt ratio", "1st score", "größe.cm"]
    assert roles.categorical == ["children", "plan"]
    assert roles.task == "binary_classification"
    reasons = {c.column: (c.role, c.reason) for c in roles.choices}
    assert "increasing with time" in reasons["row"][1] and "unique in all 2000" in reasons["row"][1]
    assert "a code" in reasons["children"][1] and "numerical if it is a count" in reasons["children"][1]
    assert "prediction is (value >= 0.5) on 100%" in reasons["p(churn)"][1]
    assert "no label yet" in reasons["label"][1]
    assert reasons["comment"][0] == "ignored" and "free text" in reasons["comment"][1]
    assert reasons["channel"][0] == "ignored" and "constant" in reasons["channel"][1]


def test_a_model_decides_the_features_and_overrides_settle_the_rest():
    logs = _logs()
    evidence = Evidence(model_columns=["age", "children", "plan"], model_categorical=["plan"], model_task="binary_classification",
                        overrides={"id": "row", "probability": "p(churn)"})
    roles = infer_roles(logs, evidence)
    assert roles.numerical == ["age", "children"] and roles.categorical == ["plan"]
    assert roles.reason("debt ratio") == "" or dict((c.column, c.role) for c in roles.choices)["debt ratio"] == "ignored"
    assert roles.reason("row") == "given with --id"

    with pytest.raises(RolesError, match="the model reads 'tenure'.*log every model input"):
        infer_roles(logs, Evidence(model_columns=["age", "tenure"]))
    with pytest.raises(RolesError, match="--timestamp COLUMN"):
        infer_roles(logs.drop(columns=["served_at"]))
    with pytest.raises(RolesError, match="--prediction COLUMN"):
        infer_roles(logs.rename(columns={"y_pred": "decision"}))


def test_a_regression_log_and_a_separate_label_table():
    logs = _logs().drop(columns=["label", "p(churn)"])
    logs["y_pred"] = np.random.default_rng(1).normal(100, 20, len(logs))
    labels = pd.DataFrame({"row": logs["row"], "revenue": logs["y_pred"] + 1})
    roles = infer_roles(logs, Evidence(labels=labels))
    assert roles.task == "regression" and roles.probability is None
    assert roles.target == "revenue" and "labels source" in roles.reason("revenue")


def _driftd(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monitor.cli", *args], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", **(env or {})})


def test_init_writes_a_commented_config_that_validates_and_refuses_to_overwrite(tmp_path):
    write_own_data(tmp_path, now=NOW, days=2)
    run = _driftd("init", "--logs", "logs/*.parquet", "--labels", "labels.parquet", "--reference", "reference.parquet",
                  "--output", "conf/driftd.yaml", "--name", "cancer", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "timestamp    logged at" in run.stdout and "the labels source's only column" in run.stdout
    assert "driftd backfill -c conf/driftd.yaml --model cancer --since" in run.stdout

    text = (tmp_path / "conf" / "driftd.yaml").read_text()
    assert "# a datetime column" in text and "training_window: 14d" in text
    written = yaml.safe_load(text)["defaults"]
    for section in Defaults.model_fields:  # every key of the reference, at its default
        value = getattr(Defaults(), section)
        assert section in written and (set(written[section]) == set(type(value).model_fields) or section == "schedule")
    config = load_config(tmp_path / "conf" / "driftd.yaml")
    model = config.model("cancer")
    assert model.columns.numerical == NUMERICAL and model.columns.features == FEATURES
    assert (model.columns.timestamp, model.columns.id, model.columns.target) == (TIMESTAMP, ID, TARGET)
    assert model.source.path == str(tmp_path / "conf" / ".." / "logs" / "*.parquet")
    assert model.reference.resolve() == (tmp_path / "reference.parquet").resolve()

    again = _driftd("init", "--logs", "logs/*.parquet", "--output", "conf/driftd.yaml", cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr

    check = _driftd("check", "-c", "conf/driftd.yaml", "--model", "cancer", "--since", "3d", cwd=tmp_path)
    assert check.returncode in (0, 1) and "mean radius" in check.stdout, check.stderr


def test_a_model_that_does_not_fit_the_logs_is_explained_in_words(tmp_path):
    data = write_own_data(tmp_path, now=NOW, days=2)
    logs = pd.read_parquet(data.logs)
    # A bare estimator fitted on two of the columns, under other names than the logs use.
    bare = LogisticRegression().fit(logs[["mean radius", "1st score"]].rename(columns={"1st score": "score"}), logs["predicted class"])
    joblib.dump(bare, tmp_path / "bare.pkl")

    run = _driftd("init", "--logs", "logs/*.parquet", "--model-file", "bare.pkl", "--name", "bare", cwd=tmp_path)
    assert run.returncode == 2
    assert "the model reads 'score', which the logs do not have" in run.stderr and "Traceback" not in run.stderr

    # Monitored columns the model was not fitted on: adopt says so instead of scikit-learn's error.
    ok = _driftd("init", "--logs", "logs/*.parquet", "--labels", "labels.parquet", "--reference", "reference.parquet",
                 "--model-file", "model.pkl", "--name", "cancer", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    fitted = LogisticRegression().fit(logs[["mean radius", "1st score"]], logs["predicted class"])
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.create_experiment("elsewhere", artifact_location=str(tmp_path / "elsewhere"))
    with mlflow.start_run(experiment_id=experiment) as run_info:
        mlflow.sklearn.log_model(fitted, name="model", serialization_format="cloudpickle", pip_requirements=["scikit-learn"])
    adopt = _driftd("adopt", "-c", "driftd.yaml", "--model", "cancer", "--run", run_info.info.run_id, "--reference", "reference.parquet",
                    cwd=tmp_path)
    assert adopt.returncode == 3
    assert "'worst.area', 'größe'" in adopt.stderr and "not inputs of the model" in adopt.stderr
    assert "feature names should match" not in adopt.stderr and "Traceback" not in adopt.stderr

    # Without --run/--model-uri, adopt takes the model init imported.
    adopted = _driftd("adopt", "-c", "driftd.yaml", "--model", "cancer", "--reference", "reference.parquet", cwd=tmp_path)
    assert adopted.returncode == 0, adopted.stderr
    assert "cancer version 1 is now @champion" in adopted.stdout


@pytest.mark.integration
def test_init_from_postgresql_keeps_the_password_out_of_the_file(tmp_path):
    table = f"odd_logs_{uuid.uuid4().hex[:8]}"
    data = write_own_data(tmp_path, now=NOW, days=2)
    logs = pd.read_parquet(data.logs).merge(pd.read_parquet(data.labels), on=ID)
    engine = sa.create_engine(PG_URL)
    logs.to_sql(table, engine, index=False)
    url = PG_URL.replace("postgres@", "postgres:s3cr%2Ft@")  # trust auth ignores it; driftd must still hide it
    try:
        run = _driftd("init", "--sql-url", url, "--table", table, "--reference", "reference.parquet", "--name", "pg", cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        text = (tmp_path / "driftd.yaml").read_text()
        assert "s3cr" not in text + run.stdout + run.stderr
        model = yaml.safe_load(text)["models"][0]
        assert model["source"]["url"] == "${DRIFTD_SOURCE_URL}" and "export DRIFTD_SOURCE_URL" in run.stdout
        assert model["columns"]["target"] == TARGET and model["columns"]["numerical"] == NUMERICAL
        check = _driftd("check", "-c", "driftd.yaml", "--model", "pg", "--since", "3d", "--json", cwd=tmp_path,
                        env={"DRIFTD_SOURCE_URL": url})
        assert check.returncode in (0, 1), check.stderr
        assert "mean radius" in check.stdout and "s3cr" not in check.stdout + check.stderr
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{table}"'))
        engine.dispose()
