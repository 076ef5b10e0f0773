"""`driftd backfill`: past windows checked back to back as the daemon would, and monitoring-only models."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
import yaml

from monitor.core.config import load_config
from monitor.core.results import CheckResult, CheckStatus, Watermark
from monitor.service.backfill import BackfillError, Progress, backfill
from monitor.state.store import StateStore
from tests.support.daemon import metric_value
from tests.support.data import CATEGORICAL, NUMERICAL, predictions
from tests.support.receiver import Receiver

NOW = datetime.now(timezone.utc).replace(microsecond=0)
HOURS = 6
START = NOW - timedelta(hours=HOURS, minutes=5)


def _setup(tmp_path: Path, *, channels: list[dict] | None = None, retrain: dict | None = None) -> Path:
    """Six hours of logs, 300 rows an hour; the last three hours drifted. One-hour windows."""
    predictions(3000, seed=1).to_parquet(tmp_path / "reference.parquet", index=False)
    logs = tmp_path / "logs"
    logs.mkdir()
    every = timedelta(hours=1) / 300
    calm = predictions(900, seed=2, start=START, every=every)
    shifted = predictions(900, seed=3, start=START + timedelta(hours=3), every=every, first_id=900, shift=1.5)
    pd.concat([calm, shifted]).to_parquet(logs / "part-0.parquet", index=False)
    model = {
        "name": "churn", "reference": "reference.parquet",
        "source": {"type": "files", "path": "logs/*.parquet"},
        "columns": {"timestamp": "ts", "id": "id", "prediction": "prediction", "probability": "probability",
                    "target": "target", "numerical": NUMERICAL, "categorical": CATEGORICAL},
        "task": "binary_classification",
        "window": {"size": "1h", "min_rows": 100},
        "alerts": [c["name"] for c in channels or []],
        **({"retrain": retrain} if retrain else {}),
    }
    path = tmp_path / "driftd.yaml"
    path.write_text(yaml.safe_dump({
        "state_url": "sqlite:///state.db", "mlflow": {"tracking_uri": "sqlite:///mlflow.db"},
        "alerts": {"channels": channels or []}, "models": [model],
    }))
    return path


def _driftd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monitor.cli", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})


def _windows(results) -> list[tuple]:
    return [(r.window_start, r.window_end, r.rows, r.status) for r in results]


def test_backfill_cuts_the_same_windows_as_the_daemon_catching_up(tmp_path):
    from monitor.service.daemon import Daemon

    config = load_config(_setup(tmp_path))
    model = config.model("churn")
    since = START - timedelta(minutes=1)

    summary = backfill(config, model, since=since, until=NOW)
    backfilled = [w.turn.result for w in summary.windows]

    # The daemon, given the same starting point on a fresh state store, catches up in one tick
    # and checks the (empty) tail at the next, as the backfill's last window does.
    fresh = config.model_copy(update={"state_url": f"sqlite:///{tmp_path / 'daemon-state.db'}"})
    daemon = Daemon(fresh)
    daemon.store.record_check(CheckResult(check_id="start", model="churn", status=CheckStatus.OK, started_at=since,
                                          window_start=None, window_end=since, watermark=Watermark(since, -1)))
    daemon.tick(model)
    daemon.tick(model)
    ticked = [c for c in reversed(daemon.store.recent_checks("churn", 100)) if c.check_id != "start"]
    daemon.store.close()

    assert sum(r.rows for r in backfilled) == 1800 and len(backfilled) >= 6
    # Identical windows, statuses and verdicts; only the very last one ends at each run's own "now".
    assert _windows(backfilled)[:-1] == _windows(ticked)[:-1]
    assert [(r.window_start, r.rows, r.status) for r in backfilled[-1:]] == [(c.window_start, c.rows, c.status) for c in ticked[-1:]]
    assert [r.drifted_share for r in backfilled] == [c.drifted_share for c in ticked]
    assert [w.turn.result.status for w in summary.windows[:3]] == [CheckStatus.OK] * 3
    assert summary.drifted >= 3

    # Same policy, recorded: the alert fired on the second drifted window, no retrain was queued.
    store = StateStore(config.state_url)
    assert store.alert_state("churn", "DriftdDatasetDrift").firing
    assert store.retrain_jobs("churn") == []
    assert len(store.decisions("churn")) == sum(w.decision is not None for w in summary.windows)
    # The tail, fewer than min_rows, waits for the next window as it would in the daemon.
    assert backfilled[-1].status is CheckStatus.INSUFFICIENT_DATA
    assert store.watermark("churn").id == 1799 - backfilled[-1].rows
    store.close()


def test_json_lines_dry_run_and_the_watermark_shared_with_the_daemon(tmp_path):
    config_path = _setup(tmp_path)
    since = (START - timedelta(minutes=1)).isoformat()

    dry = _driftd("backfill", "-c", str(config_path), "--model", "churn", "--since", since, "--json", "--dry-run")
    assert dry.returncode == 1, dry.stderr  # windows drifted
    lines = [json.loads(line) for line in dry.stdout.splitlines()]
    check_fields = set(json.loads(_driftd("check", "-c", str(config_path), "--model", "churn", "--json").stdout))
    assert all(check_fields <= set(line) for line in lines)
    assert sum(line["rows"] for line in lines) == 1800
    assert all(line["dry_run"] is True for line in lines)
    countable = [line for line in lines if line["status"] in ("ok", "drift")]
    assert all(line["decision"]["reasons"] for line in countable)
    assert any(line["decision"]["alert"] == "fire" for line in countable)
    assert not (tmp_path / "state.db").exists(), "--dry-run must write nothing"
    assert "nothing recorded (--dry-run)" in dry.stderr

    # Recorded up to two hours ago; a second run continues after the watermark, never re-checks.
    until = (NOW - timedelta(hours=2)).isoformat()
    first = _driftd("backfill", "-c", str(config_path), "--model", "churn", "--since", since, "--until", until)
    assert first.returncode == 1, first.stderr
    store = StateStore(load_config(config_path).state_url)
    mark = store.watermark("churn")
    assert NOW - timedelta(hours=3) < mark.timestamp <= NOW - timedelta(hours=2)
    again = _driftd("backfill", "-c", str(config_path), "--model", "churn", "--since", since, "--until", until, "--json")
    assert again.returncode == 0 and "continuing after its watermark" in again.stderr, again.stderr
    # Only the tail still waiting for rows is looked at again, as the daemon's next tick would.
    assert [json.loads(line)["status"] for line in again.stdout.splitlines()] == ["insufficient_data"]
    done = _driftd("backfill", "-c", str(config_path), "--model", "churn", "--since", since, "--until", mark.timestamp.isoformat())
    assert done.returncode == 0 and "nothing to do" in done.stdout, done.stdout + done.stderr

    later = _driftd("backfill", "-c", str(config_path), "--model", "churn", "--since", (NOW - timedelta(minutes=30)).isoformat())
    assert later.returncode == 3 and "watermark" in later.stderr and "--dry-run" in later.stderr

    # The daemon carries on from the backfill's watermark: every row is checked exactly once.
    from monitor.service.daemon import Daemon

    daemon = Daemon(load_config(config_path))
    daemon.tick(daemon.config.model("churn"))
    checks = daemon.store.recent_checks("churn", 100)
    last = daemon.store.watermark("churn")
    daemon.store.close()
    # Ids are 0..1799 in time order: the rows checked are exactly those up to the watermark,
    # each once; the few after it (fewer than min_rows) wait for the next window.
    assert sum(c.rows for c in checks if c.status.value in ("ok", "drift")) == last.id + 1 > 1700
    store.close()


def test_alerts_are_sent_only_when_asked(tmp_path):
    with Receiver() as hook:
        config_path = _setup(tmp_path, channels=[{"name": "hook", "type": "webhook", "url": hook.url + "/hook"}])
        config = load_config(config_path)
        since = START - timedelta(minutes=1)

        backfill(config, config.model("churn"), since=since, until=NOW, dry_run=True)
        assert hook.attempts == 0

        backfill(config, config.model("churn"), since=since, until=NOW, dry_run=True, alerts=True)
        sent = hook.wait_for(1)
        assert sent[0].json["alert"] == "DriftdDatasetDrift" and sent[0].json["status"] == "firing"


def test_a_backfill_refuses_to_leave_a_gap_before_its_start(tmp_path):
    config = load_config(_setup(tmp_path))
    store = StateStore(config.state_url)
    store.migrate()
    mark = START + timedelta(hours=1)
    store.record_check(CheckResult(check_id="old", model="churn", status=CheckStatus.OK, started_at=mark,
                                   window_start=None, window_end=mark, watermark=Watermark(mark, 299)))
    store.close()

    with pytest.raises(BackfillError, match="rows in between unchecked"):
        backfill(config, config.model("churn"), since=mark + timedelta(hours=1), until=NOW)


def test_the_progress_bar_is_drawn_only_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    piped, terminal = io.StringIO(), Terminal()
    for stream in (piped, terminal):
        bar = Progress(NOW, stream)
        bar.update(START, START + (NOW - START) / 4, 1)
        bar.update(START + (NOW - START) / 4, START + (NOW - START) / 2, 3)
        bar.clear()
    assert piped.getvalue() == ""
    assert "50%" in terminal.getvalue() and "3 windows" in terminal.getvalue()


def test_a_model_without_champion_is_monitored_only_and_never_fails_a_retrain(tmp_path, caplog):
    from prometheus_client import generate_latest

    from monitor.service.daemon import Daemon

    # retrain.enabled is true (the default) and every window drifts: the policy would retrain.
    config = load_config(_setup(tmp_path, retrain={"min_labelled_rows": 10}))
    model = config.model("churn")
    daemon = Daemon(config)
    since = START + timedelta(hours=3)
    daemon.store.record_check(CheckResult(check_id="start", model="churn", status=CheckStatus.OK, started_at=since,
                                          window_start=None, window_end=since, watermark=Watermark(since, 899)))
    with caplog.at_level(logging.INFO, logger="driftd.daemon"):
        daemon.tick(model)
        daemon.tick(model)

    drifted = [c for c in daemon.store.recent_checks("churn", 100) if c.status is CheckStatus.DRIFT]
    assert len(drifted) >= 3
    assert daemon.store.retrain_jobs("churn") == []
    decisions = daemon.store.decisions("churn")
    assert any("retrain due" in d.reason and "not configured" in d.reason for d in decisions)
    assert all("retrain" not in d.action for d in decisions)
    metrics = generate_latest(daemon.metrics.registry).decode()
    assert metric_value(metrics, "driftd_retrains_total", model="churn", outcome="failed") in (None, 0.0)
    said = [r.getMessage() for r in caplog.records if "retraining of churn" in r.getMessage()]
    assert said == ["retraining of churn: not configured (no champion: monitoring only)"]
    daemon.store.close()

    status = _driftd("status", "-c", str(tmp_path / "driftd.yaml"))
    assert status.returncode == 0, status.stderr
    assert "not configured (no champion: monitoring only)" in status.stdout
    # Asked for by hand, a retrain is refused up front: nothing is recorded as a failed retrain.
    retrain = _driftd("retrain", "-c", str(tmp_path / "driftd.yaml"), "--model", "churn")
    assert retrain.returncode == 3 and "not configured" in retrain.stderr, retrain.stderr
    store = StateStore(config.state_url)
    assert store.retrain_jobs("churn") == []
    store.close()
