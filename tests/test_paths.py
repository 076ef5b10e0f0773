"""driftd's own files live beside its state, private to its user — not in a shared temp folder."""

from __future__ import annotations

import stat
import tempfile
from datetime import timedelta

from monitor.core.config import parse_config
from monitor.core.paths import reports_dir, state_dir
from tests.support.data import predictions
from tests.test_late_rows import make_config, now_ms


def test_reports_go_under_the_sqlite_state_directory_readable_by_driftd_only(tmp_path):
    config = parse_config({"state_url": "sqlite:///state/driftd.db"}, base_dir=tmp_path)
    folder = reports_dir(config, "churn")
    assert folder == tmp_path / "state" / "reports" / "churn"
    for path in (folder, folder.parent):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert not str(folder).startswith(tempfile.gettempdir() + "/driftd")


def test_with_postgres_state_reports_follow_systemds_state_directory(tmp_path, monkeypatch):
    config = parse_config({"state_url": "postgresql+psycopg://driftd@db/driftd"}, base_dir=tmp_path)
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "var-lib-driftd"))
    assert state_dir(config) == tmp_path / "var-lib-driftd"
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.chdir(tmp_path)
    assert state_dir(config) == tmp_path


def test_the_daemon_writes_the_drift_report_of_a_retrain_under_the_state_directory(tmp_path):
    from monitor.service.daemon import Daemon

    logs = tmp_path / "logs"
    logs.mkdir()
    predictions(400, seed=3, start=now_ms() - timedelta(minutes=30), every=timedelta(seconds=2), shift=2.0).to_parquet(
        logs / "p.parquet", index=False)
    daemon = Daemon(make_config(tmp_path, {"type": "files", "path": str(logs / "*.parquet")}))
    try:
        model = daemon.config.model("churn")
        from monitor.check.run import WindowSpec, run_check

        loaded = daemon.references.get(model)
        checked = run_check(daemon._inputs_for(model), loaded.prepared, WindowSpec(until=now_ms()))
        report = daemon._save_report(model, checked.result, checked.snapshot)
        assert report == tmp_path / "reports" / "churn" / f"{checked.result.check_id}.html"
        assert report.read_text().lstrip().lower().startswith("<")
        assert stat.S_IMODE(report.parent.stat().st_mode) == 0o700
    finally:
        daemon.stop()
