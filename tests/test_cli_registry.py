"""`driftd adopt / promote / rollback / status` through the command line, on an embedded MLflow store."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone

import yaml

from monitor.core.config import load_config
from monitor.demo.world import CATEGORICAL, FEATURES, NUMERICAL, TARGET, make_loans, train_baseline, with_predictions
from monitor.service.reference import References
from retrain.baseline import register_baseline
from retrain.registry import champion


def _driftd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monitor.cli", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})


def test_adopt_promote_rollback_and_status(tmp_path):
    config_path = tmp_path / "driftd.yaml"
    config_path.write_text(yaml.safe_dump({
        "state_url": "sqlite:///state.db",
        "mlflow": {"tracking_uri": "sqlite:///mlflow.db"},
        "models": [{
            "name": "loans", "source": {"type": "files", "path": "logs/*.parquet"},
            "columns": {"timestamp": "ts", "id": "id", "prediction": "prediction", "probability": "probability",
                        "target": TARGET, "numerical": NUMERICAL, "categorical": CATEGORICAL},
            "task": "binary_classification",
            "window": {"min_rows": 300},  # a 1,500-row reference: drift tests need 5 x min_rows
        }],
    }))
    config = load_config(config_path)
    model = config.model("loans")
    frame = make_loans(1500, seed=5)
    estimator = train_baseline(frame, "logistic")

    import mlflow

    mlflow.set_tracking_uri(config.mlflow.tracking_uri)
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(estimator, name="model", serialization_format="cloudpickle", pip_requirements=["scikit-learn"])
    reference = tmp_path / "reference.parquet"
    with_predictions(estimator, frame).to_parquet(reference, index=False)

    adopted = _driftd("adopt", "-c", str(config_path), "--model", "loans", "--run", run.info.run_id, "--reference", str(reference))
    assert adopted.returncode == 0, adopted.stderr
    assert champion(config, model).version == "1"

    second = train_baseline(make_loans(1500, seed=6), "logistic")
    register_baseline(config, model, second, with_predictions(second, frame), with_predictions(second, frame))
    assert champion(config, model).version == "2"
    champion_score_of_2 = champion(config, model).validation_score

    before_rollback = datetime.now(timezone.utc).replace(microsecond=0)
    rolled = _driftd("rollback", "-c", str(config_path), "--model", "loans")
    assert rolled.returncode == 0 and "version 1" in rolled.stdout, rolled.stderr
    restored = champion(config, model)
    assert restored.version == "1" and restored.promoted_at >= before_rollback
    # Quality rows logged before the rollback belong to version 2, not to the restored champion.
    references = References(config)
    attribution = references.attribution(model, references.get(model))
    assert (attribution.champion, attribution.since) == ("1", restored.promoted_at)
    assert attribution.score_of("2") == champion_score_of_2 and attribution.score_of("unknown") is None
    promoted = _driftd("promote", "-c", str(config_path), "--model", "loans", "--version", "2")
    assert promoted.returncode == 0, promoted.stderr
    assert champion(config, model).version == "2"
    served = mlflow.pyfunc.load_model("models:/loans@champion").predict(frame[FEATURES])
    # The served variant may be compressed (e.g. pruned inputs), but it is the second model, not the first.
    labels = served["prediction"].to_numpy()
    assert (labels == second.predict(frame[FEATURES])).mean() > (labels == estimator.predict(frame[FEATURES])).mean()

    status = _driftd("status", "-c", str(config_path))
    assert status.returncode == 0, status.stderr
    row = next(line for line in status.stdout.splitlines() if line.startswith("loans"))
    assert row.split()[1] == "2"

    missing = _driftd("promote", "-c", str(config_path), "--model", "loans", "--version", "99")
    assert missing.returncode == 3 and "Traceback" not in missing.stderr
