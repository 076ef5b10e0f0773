"""`driftd demo` at high speed: the facts it claims, read from the state store and MLflow.

The demo runs on its own simulated clock, so nothing here depends on how fast the machine is:
the same rows, windows and retrain happen on a loaded laptop as on an idle server."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from monitor.demo.world import FEATURES, TARGET, make_loans
from monitor.state.store import StateStore

pytestmark = pytest.mark.integration


def test_demo_detects_the_shift_retrains_and_promotes_a_better_compressed_champion(tmp_path):
    directory = tmp_path / "demo"
    run = subprocess.run([sys.executable, "-m", "monitor.cli", "demo", "--dir", str(directory), "--speed", "100"],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]

    # The simulation's ground truth, logged with every prediction row (not a feature).
    logs = sa.create_engine(f"sqlite:///{directory / 'predictions.db'}")
    with logs.connect() as conn:
        first_shifted = conn.execute(sa.text("select min(ts) from predictions where phase = 'shifted'")).scalar_one()
    shift_at = pd.Timestamp(first_shifted, tz="UTC").to_pydatetime()

    store = StateStore(f"sqlite:///{directory / 'state.db'}")
    checks = [c for c in reversed(store.recent_checks("loans", 1000)) if c.status.value in ("ok", "drift")]
    before = [c for c in checks if c.window_end < shift_at]
    after = [c for c in checks if c.window_start is not None and c.window_start >= shift_at]
    assert len(before) == 5 and not any(c.dataset_drifted for c in before)
    assert after[0].dataset_drifted, "the first window made only of shifted rows must show drift"
    # The simulation logs on the demo's clock: every window holds exactly its 4 s x 250 rows/s.
    assert [c.rows for c in checks] == [1000] * len(checks)
    job = store.retrain_jobs("loans")[0]
    assert (job.status, job.outcome) == ("succeeded", "promoted") and job.run_id
    # After the promotion the alert resolves: the new champion is judged on the rows it served
    # (the demo logs model_version), not on the old champion's post-shift rows.
    alert = store.alert_state("loans", "DriftdDatasetDrift")
    after_promotion = [d for d in store.decisions("loans", 200) if d.at > job.finished_at]
    assert not alert.firing and alert.since > job.finished_at, "\n".join(d.reason for d in after_promotion)
    assert not any("quality dropped" in d.reason for d in after_promotion)
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["alert_resolved_at"] is not None and "alert resolved" in run.stdout
    store.close()

    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{directory / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    champion = client.get_model_version_by_alias("loans", "champion")
    assert str(champion.version) == job.version != "1"
    assert str(client.get_model_version_by_alias("loans", "previous").version) == "1"
    stages = "\n".join(line for line in run.stdout.splitlines() if "compress" in line)
    assert champion.tags["driftd.compression"] not in ("", "none"), stages
    retrain = client.get_run(job.run_id).data
    metrics = retrain.metrics
    assert retrain.params["rows.labelled"] == "1250"  # 5 of the 8 s training window have their labels, on any machine
    assert metrics["size_bytes.compressed"] < metrics["size_bytes.original"]
    assert metrics["challenger_score"] > metrics["champion_score"]

    # Independently of the pipeline's own holdout: fresh post-shift data, both served models.
    # Both URIs: an earlier test in this process may have pointed MLflow's registry elsewhere.
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    fresh = make_loans(4000, seed=2024, drift=1.0)
    old = mlflow.pyfunc.load_model("models:/loans/1").predict(fresh[FEATURES])["prediction"]
    new = mlflow.pyfunc.load_model("models:/loans@champion").predict(fresh[FEATURES])["prediction"]
    old_acc, new_acc = np.mean(old == fresh[TARGET]), np.mean(new == fresh[TARGET])
    assert new_acc > old_acc + 0.05, (old_acc, new_acc)
