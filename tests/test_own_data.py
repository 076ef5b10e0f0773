"""The README's "Use it on your own data" commands, run as they are written, on a fresh folder.

The data is a user's own: Parquet logs whose feature names have spaces, a dot, unicode and a
leading digit, a pickled scikit-learn pipeline, labels in an `(id, label)` file without a
timestamp. The story the commands must tell: init -> validate -> backfill (history with drift)
-> adopt -> run, whose first tick retrains with the default compression and promotes — a
promotion that is deserved: after the concept shift the champion is clearly worse, and there
are enough labelled post-shift rows that a 95% lower bound of the improvement is above zero.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import joblib
import mlflow
import numpy as np
import pytest

from tests.support.daemon import metric_value
from tests.support.mlflow_server import free_port
from tests.support.owndata import FEATURES, TARGET, make_rows, write_own_data
from tests.support.promstack import wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]


def readme_block(marker: str) -> list[str]:
    """The lines of the first ```sh block after `marker` in README.md (continuations joined)."""
    text = (REPO / "README.md").read_text()
    start = text.index(marker)
    block = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    assert block, f"no ```sh block after {marker!r} in README.md"
    return [line for line in block.group(1).replace("\\\n", " ").splitlines() if line.strip()]


def test_the_readme_own_data_commands_run_from_logs_to_a_promoted_champion(tmp_path):
    commands = readme_block("<!-- own-data:")
    assert [c.split()[:2] for c in commands[:5]] == [["driftd", "init"], ["driftd", "validate"], ["driftd", "backfill"],
                                                    ["driftd", "adopt"], ["driftd", "run"]]
    data = write_own_data(tmp_path, now=datetime.now(timezone.utc))
    port = free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DRIFTD_PORT": str(port), "MLFLOW_DISABLE_TELEMETRY": "true"}
    assert shutil.which("driftd", path=env["PATH"]), "driftd must be installed in the test's environment (make install)"
    expected = {"init": 0, "validate": 0, "backfill": 1, "adopt": 0}  # backfill: exit 1, the history drifted
    daemon = None
    try:
        for line in commands:
            if line.rstrip().endswith("&"):
                daemon = subprocess.Popen(["bash", "-c", "exec " + line.rstrip().rstrip("&")], cwd=tmp_path, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
                _wait_for_promotion(daemon, port)
                continue
            done = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
            verb = line.split()[1] if line.startswith("driftd ") else "curl"
            assert done.returncode == expected.get(verb, 0), f"{line}\n{done.stdout}\n{done.stderr}"
            _check_output(verb, done.stdout, done.stderr)
        assert daemon is not None
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0
    finally:
        if daemon is not None and daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=10)

    _the_promotion_was_deserved_and_serves_odd_names(tmp_path, data)


def _check_output(verb: str, out: str, err: str) -> None:
    if verb == "init":
        for column in ("mean radius", "worst.area", "größe", "1st score"):
            assert re.search(rf"numerical\s+{re.escape(column)}\s", out), out
        assert re.search(r"target\s+label\s+the labels source", out), out
    elif verb == "backfill":
        assert "DRIFT" in out and "alert fire" in out, out
        assert "recorded in the state store" in out
    elif verb == "adopt":
        assert "churn version 1 is now @champion" in out, out + err
    elif verb == "curl":
        assert 'driftd_retrains_total{model="churn",outcome="promoted"} 1.0' in out, out
        assert 'driftd_retrains_total{model="churn",outcome="failed"} 0.0' in out, out
        assert 'driftd_champion_info{model="churn",version="2"} 1.0' in out, out
        assert 'driftd_checks_total{model="churn",status="drift"}' in out, out


def _wait_for_promotion(daemon: subprocess.Popen, port: int) -> None:
    def promoted() -> bool:
        if daemon.poll() is not None:
            raise AssertionError(f"driftd run exited with {daemon.returncode}:\n{daemon.stdout.read()}")
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return False
        if (metric_value(text, "driftd_retrains_total", model="churn", outcome="rejected") or 0) + \
                (metric_value(text, "driftd_retrains_total", model="churn", outcome="failed") or 0):
            raise AssertionError(f"the retrain did not promote:\n{text}")
        return (metric_value(text, "driftd_retrains_total", model="churn", outcome="promoted") or 0) >= 1

    try:
        wait_for(promoted, timeout=420)
    except TimeoutError:
        os.killpg(daemon.pid, signal.SIGKILL)
        raise AssertionError("no promotion within the time limit:\n" + daemon.stdout.read()) from None
    promtool = shutil.which("promtool")
    if promtool is not None:  # feature labels with spaces, dots and unicode are valid exposition
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'feature="größe"' in scraped and 'feature="mean radius"' in scraped
        linted = subprocess.run([promtool, "check", "metrics"], input=scraped, capture_output=True, text=True)
        assert linted.stdout + linted.stderr == "", linted.stdout + linted.stderr


def _the_promotion_was_deserved_and_serves_odd_names(root: Path, data) -> None:
    store = f"sqlite:///{root / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=store, registry_uri=store)
    version = client.get_model_version_by_alias("churn", "champion")
    assert str(version.version) == "2"
    assert version.tags["driftd.compression"] != "none", "the challenger serves from ONNX"
    # The two gates passed (a lossy variant refused on the way, with its own tag, is fine: ONNX serves).
    assert all(version.tags[f"driftd.gate.{gate}"].startswith("passed") for gate in ("compression", "improvement"))

    # On fresh post-shift rows the new champion (ONNX, through pyfunc, odd names and all) beats
    # the old one, and the paired bootstrap's 95% lower bound of the improvement is above zero.
    fresh = make_rows(2000, seed=77, shifted=1.0, start=datetime.now(timezone.utc), every=timedelta(seconds=1))
    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)  # other tests in this process may have pointed it elsewhere
    served = mlflow.pyfunc.load_model("models:/churn@champion").predict(fresh[FEATURES])["prediction"].to_numpy()
    old = joblib.load(data.model).predict(fresh[FEATURES])
    truth = fresh[TARGET].to_numpy()
    gain = (served == truth).astype(float) - (old == truth).astype(float)
    rng = np.random.default_rng(0)
    boot = np.array([gain[rng.integers(0, len(gain), len(gain))].mean() for _ in range(2000)])
    assert np.quantile(boot, 0.05) > 0.1, f"improvement {gain.mean():+.3f}, 5% quantile {np.quantile(boot, 0.05):+.3f}"


def test_the_readme_prometheus_config_for_own_data_is_valid(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (scripts/install-system-deps.sh installs it)")
    lines = readme_block("<!-- own-data-prometheus:")
    heredoc = "\n".join(lines[: lines.index("EOF") + 1])
    subprocess.run(["bash", "-c", heredoc], cwd=tmp_path, env={**os.environ, "DRIFTD_REPO": str(REPO)}, check=True)
    checked = subprocess.run([promtool, "check", "config", "prometheus.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
