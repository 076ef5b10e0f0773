"""`driftd check` end to end on files: what a user sees, and the exit code a CI job gates on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

from monitor.check.run import Inputs, WindowSpec, run_check
from monitor.core.config import load_config
from monitor.core.results import CheckResult, CheckStatus, Watermark
from monitor.service.reference import References
from monitor.sources import open_source
from tests.support.data import CATEGORICAL, NUMERICAL, predictions

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _setup(tmp_path: Path, *, shift: float = 0.0, rows: int = 20_000, extra: dict | None = None) -> Path:
    predictions(5000, seed=1).to_parquet(tmp_path / "reference.parquet", index=False)
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    start = NOW - timedelta(minutes=50)
    predictions(rows, seed=2, start=start, every=timedelta(minutes=45) / rows, shift=shift).to_parquet(logs / "part-0.parquet", index=False)
    model = {
        "name": "churn", "reference": "reference.parquet",
        "source": {"type": "files", "path": "logs/*.parquet"},
        "columns": {"timestamp": "ts", "id": "id", "prediction": "prediction", "probability": "probability",
                    "target": "target", "numerical": NUMERICAL, "categorical": CATEGORICAL},
        "task": "binary_classification", **(extra or {}),
    }
    path = tmp_path / "driftd.yaml"
    path.write_text(yaml.safe_dump({"mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}, "models": [model]}))
    return path


def _driftd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monitor.cli", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})


def test_clean_window_prints_table_and_exits_0(tmp_path):
    run = _driftd("check", "-c", str(_setup(tmp_path)), "--model", "churn")
    assert run.returncode == 0, run.stderr
    assert "feature" in run.stdout and "wasserstein" in run.stdout and "jensenshannon" in run.stdout
    assert run.stdout.strip().splitlines()[-1].startswith("OK:")
    assert not (tmp_path / "mlflow.db").exists(), "a check must not create an MLflow store as a side effect"


def test_shifted_window_exits_1_and_json_names_the_drifted_features(tmp_path):
    run = _driftd("check", "-c", str(_setup(tmp_path, shift=1.5)), "--model", "churn", "--json")
    assert run.returncode == 1, run.stderr
    result = json.loads(run.stdout)
    assert result["status"] == "drift" and result["dataset_drifted"] is True
    drifted = {f["feature"] for f in result["features"] if f["drifted"]}
    assert {"age", "income", "score"} <= drifted
    assert result["rows"] == 20_000 and result["quality"]["labelled_rows"] > 0


def test_missing_column_is_a_runtime_failure_naming_it(tmp_path):
    config = _setup(tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["models"][0]["columns"]["numerical"].append("tenure")
    config.write_text(yaml.safe_dump(raw))
    run = _driftd("check", "-c", str(config), "--model", "churn")
    assert run.returncode == 3
    assert "tenure" in run.stdout + run.stderr and "Traceback" not in run.stderr


def test_corrupt_file_names_the_file(tmp_path):
    config = _setup(tmp_path)
    (tmp_path / "logs" / "part-1.parquet").write_bytes(b"PAR1 this is not parquet")
    run = _driftd("check", "-c", str(config), "--model", "churn")
    assert run.returncode == 3
    assert "part-1.parquet" in run.stdout + run.stderr and "Traceback" not in run.stderr


def test_unknown_model_and_bad_time_are_usage_errors(tmp_path):
    config = _setup(tmp_path)
    assert _driftd("check", "-c", str(config), "--model", "nope").returncode == 2
    assert _driftd("check", "-c", str(config), "--model", "churn", "--since", "yesterday").returncode == 2


def test_insufficient_rows_keep_the_watermark_and_join_the_next_window(tmp_path):
    config = load_config(_setup(tmp_path, rows=300, extra={"window": {"size": "1h", "min_rows": 500}}))
    model = config.model("churn")
    inputs = Inputs(model, open_source(model.source, model.columns), None)
    reference = References(config).get(model).prepared
    first = run_check(inputs, reference, WindowSpec(after=Watermark(NOW - timedelta(hours=2), -1)), now=NOW).result
    assert first.status is CheckStatus.INSUFFICIENT_DATA and first.watermark is None
    assert "kept for the next window" in first.message
    predictions(400, seed=3, start=NOW - timedelta(minutes=4), every=timedelta(milliseconds=100), first_id=10_000).to_parquet(
        tmp_path / "logs" / "part-1.parquet", index=False)
    # From a watermark in the last hour the window reaches now: the 300 kept rows plus 400 new.
    second = run_check(inputs, reference, WindowSpec(after=Watermark(NOW - timedelta(minutes=55), -1)), now=NOW).result
    assert second.status in (CheckStatus.OK, CheckStatus.DRIFT) and second.rows == 700


def test_catching_up_after_an_outage_checks_one_window_size_at_a_time(tmp_path):
    config = load_config(_setup(tmp_path, rows=6000, extra={"window": {"size": "10m", "min_rows": 100}}))
    model = config.model("churn")
    inputs = Inputs(model, open_source(model.source, model.columns), None)
    reference = References(config).get(model).prepared
    # The rows start 50 minutes ago: the first window is stretched to min_rows, the rest are 10 minutes.
    watermark, seen = Watermark(NOW - timedelta(hours=1), -1), 0
    for n in range(10):
        result = run_check(inputs, reference, WindowSpec(after=watermark), now=NOW).result
        if result.watermark is None:
            break
        assert n == 0 or result.window_end - result.window_start <= timedelta(minutes=10)
        seen += result.rows
        watermark = result.watermark
    assert seen == 6000


def test_a_window_that_cannot_be_checked_holds_until_skipped_on_the_record(tmp_path):
    from monitor.state.store import StateStore

    config_path = _setup(tmp_path, rows=400, extra={"window": {"size": "1h", "min_rows": 100}})
    bad = predictions(400, seed=2, start=NOW - timedelta(minutes=50), every=timedelta(seconds=5))
    bad["age"] = float("nan")
    bad.to_parquet(tmp_path / "logs" / "part-0.parquet", index=False)
    raw = yaml.safe_load(config_path.read_text())
    raw["state_url"] = f"sqlite:///{tmp_path / 'state.db'}"
    config_path.write_text(yaml.safe_dump(raw))
    config = load_config(config_path)
    model = config.model("churn")
    store = StateStore(config.state_url)
    store.migrate()
    inputs = Inputs(model, open_source(model.source, model.columns), None)
    reference = References(config).get(model).prepared

    for _ in range(2):  # the same window fails the same way: it is held, not skipped
        result = run_check(inputs, reference, WindowSpec(after=store.watermark("churn")), now=NOW).result
        store.record_check(result)
        assert result.status is CheckStatus.ERROR and "age" in result.message
        assert store.watermark("churn") is None

    run = _driftd("skip-window", "-c", str(config_path), "--model", "churn")
    assert run.returncode == 0, run.stderr
    assert "400 rows not checked" in run.stdout
    assert store.watermark("churn").id == 399
    skipped = store.recent_checks("churn", 1)[0]
    assert skipped.status is CheckStatus.ERROR and "skip-window" in skipped.message

    predictions(200, seed=3, start=NOW - timedelta(minutes=3), every=timedelta(milliseconds=500), first_id=400).to_parquet(
        tmp_path / "logs" / "part-1.parquet", index=False)
    after = run_check(inputs, reference, WindowSpec(after=store.watermark("churn")), now=NOW).result
    assert after.status in (CheckStatus.OK, CheckStatus.DRIFT) and after.rows == 200
    store.close()


def test_the_daemon_catches_up_a_backlog_in_one_tick_window_by_window(tmp_path):
    from monitor.service.daemon import Daemon

    config_path = _setup(tmp_path, rows=6000, extra={"window": {"size": "10m", "min_rows": 100}})
    raw = yaml.safe_load(config_path.read_text())
    raw["state_url"] = f"sqlite:///{tmp_path / 'state.db'}"
    config_path.write_text(yaml.safe_dump(raw))
    config = load_config(config_path)
    daemon = Daemon(config)
    model = config.model("churn")
    # The first window starts `size` before now; give the model a watermark 50 minutes back,
    # as after an outage, so ~45 minutes of rows wait.
    start = NOW - timedelta(minutes=51)
    daemon.store.record_check(CheckResult(check_id="before-the-outage", model="churn", status=CheckStatus.OK,
                                          started_at=start, window_start=None, window_end=start, watermark=Watermark(start, -1)))
    daemon.tick(model)
    checks = [c for c in daemon.store.recent_checks("churn", 100) if c.rows > 0]
    assert len(checks) >= 4, "one tick should check the backlog window by window"
    assert sum(c.rows for c in checks) == 6000 and all(c.status.value in ("ok", "drift") for c in checks)
    assert all(c.window_end - c.window_start <= timedelta(minutes=10) for c in checks)
    daemon.store.close()


def test_a_reader_that_stops_early_ends_the_output_quietly(tmp_path):
    # `driftd check --json | head`: the reader is gone before driftd prints.
    proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", "check", "-c", str(_setup(tmp_path)), "--model", "churn", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err  # the check's own exit code: a clean window
    assert "Traceback" not in err and "BrokenPipe" not in err, err
