"""`driftd run` against real servers: PostgreSQL, Prometheus, Alertmanager, webhook receivers."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml

from monitor.demo.synthetic import PredictionTable
from monitor.state.store import StateStore
from tests.support.daemon import PG_URL, daemon_config, metric_value, running
from tests.support.promstack import free_port, query, start_alertmanager, start_prometheus, wait_for
from tests.support.receiver import Receiver
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.integration

PG_PASSWORD = "pg-pass-7f3e9a"  # trust auth ignores it; it is here to prove it never leaks


@pytest.fixture
def table():
    t = PredictionTable(PG_URL)
    yield t
    t.drop()


def _checks(directory: Path):
    store = StateStore(f"sqlite:///{directory / 'state.db'}")
    try:
        return list(reversed(store.recent_checks("churn", 1000)))
    finally:
        store.close()


def _feed(table: PredictionTable, directory: Path, rows: int, shift: float) -> None:
    """Append one batch and wait until the daemon has checked it as its own window."""
    done = len([c for c in _checks(directory) if c.status in ("ok", "drift")])
    table.append(rows, shift=shift)
    wait_for(lambda: len([c for c in _checks(directory) if c.status in ("ok", "drift")]) > done, timeout=30)


def test_drift_reaches_prometheus_webhook_and_alertmanager_then_resolves(tmp_path, table):
    with Receiver() as hook, Receiver() as am_hook:
        am_config = tmp_path / "am.yml"
        am_config.write_text(yaml.safe_dump({
            "route": {"receiver": "hook", "group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h"},
            "receivers": [{"name": "hook", "webhook_configs": [{"url": am_hook.url + "/am", "send_resolved": True}]}],
        }))
        with start_alertmanager(am_config, tmp_path) as am_url:
            port = free_port()
            channels = [{"name": "hook", "type": "webhook", "url": hook.url + "/driftd"},
                        {"name": "oncall", "type": "alertmanager", "url": am_url}]
            config = daemon_config(tmp_path, source_url=PG_URL, table=table.name, port=port, channels=channels)
            with running(config, port) as driftd, start_prometheus([f"127.0.0.1:{port}"], [], None, tmp_path) as prom:
                _feed(table, tmp_path, 600, shift=0.0)
                wait_for(lambda: query(prom, 'driftd_window_rows{model="churn"}'), timeout=30)
                assert float(query(prom, 'driftd_dataset_drifted{model="churn"}')[0]["value"][1]) == 0

                for _ in range(3):
                    _feed(table, tmp_path, 600, shift=2.0)
                wait_for(lambda: float(query(prom, 'driftd_dataset_drifted{model="churn"}')[0]["value"][1]) == 1, timeout=30)
                scores = query(prom, 'driftd_feature_drift_score{model="churn",feature="age"}')
                assert float(scores[0]["value"][1]) > 0.1

                firing = hook.wait_for(1, timeout=30)[0].json
                assert firing["status"] == "firing" and firing["model"] == "churn"
                alerts = wait_for(lambda: [a for a in httpx.get(f"{am_url}/api/v2/alerts").json()
                                           if a["labels"].get("model") == "churn"], timeout=30)
                assert alerts[0]["labels"]["alertname"] == "DriftdDatasetDrift"
                am_hook.wait_for(1, timeout=30)
                # the policy's alert state, which Prometheus' DriftdDatasetDrift follows
                firing_state = 'driftd_alert_firing{model="churn",alert="DriftdDatasetDrift"}'
                wait_for(lambda: [r for r in query(prom, firing_state) if r["value"][1] == "1"], timeout=30)

                for _ in range(3):
                    _feed(table, tmp_path, 600, shift=0.0)
                resolved = wait_for(lambda: [r.json for r in hook.requests if r.json.get("status") == "resolved"], timeout=30)
                assert resolved[0]["model"] == "churn"
                wait_for(lambda: [r for r in query(prom, firing_state) if r["value"][1] == "0"], timeout=30)
                wait_for(lambda: not [a for a in httpx.get(f"{am_url}/api/v2/alerts", params={"active": "true"}).json()
                                      if a["labels"].get("model") == "churn" and a["status"]["state"] == "active"], timeout=30)
                assert driftd.stop() == 0


def test_source_outage_counts_errors_stays_healthy_and_loses_no_row(tmp_path, table):
    port = free_port()
    with TcpProxy("127.0.0.1", 5432) as proxy:
        url = f"postgresql+psycopg://postgres:${{PGPASS}}@127.0.0.1:{proxy.port}/test"
        config = daemon_config(tmp_path, source_url=url, table=table.name, port=port, channels=[])
        with running(config, port, env={"PGPASS": PG_PASSWORD}) as driftd:
            _feed(table, tmp_path, 300, shift=0.0)
            proxy.cut()
            table.append(400)
            errors = wait_for(lambda: (metric_value(driftd.metrics(), "driftd_source_errors_total", model="churn", kind="unreachable") or 0) >= 2, timeout=60)
            assert errors and driftd.healthy()
            table.append(500)
            proxy.open()
            table.append(150)  # flushes a tail a window may have left below min_rows (see the kill test)
            wait_for(lambda: sum(c.rows for c in _checks(tmp_path) if c.status in ("ok", "drift")) >= table.appended, timeout=60)
            counted = sum(c.rows for c in _checks(tmp_path) if c.status in ("ok", "drift"))
            assert counted == table.appended == 1350
            error_messages = [c.message for c in _checks(tmp_path) if c.status == "error"]
            assert error_messages and all(PG_PASSWORD not in m for m in error_messages)
            assert "unreachable" in error_messages[0] or "connect" in error_messages[0].lower()
            assert PG_PASSWORD not in driftd.output() and PG_PASSWORD not in driftd.metrics()
            assert driftd.stop() == 0


def test_kill_minus_nine_mid_check_never_loses_or_double_counts_a_window(tmp_path, table):
    port = free_port()
    config = daemon_config(tmp_path, source_url=PG_URL, table=table.name, port=port, channels=[], every="0.5s")
    for round_ in range(3):
        with running(config, port) as driftd:
            table.append(250 + round_)
            # Kill the moment a check has read its window and before it can commit.
            wait_for(lambda: any("window read" in line and ": 0 rows" not in line for line in driftd.lines), timeout=30)
            driftd.kill()
    with running(config, port) as driftd:
        # A window may end inside an append (its `until` fell between two rows' timestamps); the
        # rest waits as insufficient_data for min_rows more. A last batch flushes any such tail.
        table.append(150)
        try:
            wait_for(lambda: sum(c.rows for c in _checks(tmp_path) if c.status in ("ok", "drift")) >= table.appended, timeout=120)
        except TimeoutError:
            history = [(c.status.value, c.rows, c.message) for c in _checks(tmp_path)]
            raise AssertionError(f"appended {table.appended}; checks {history}; log tail:\n" + "\n".join(driftd.lines[-30:])) from None
        counted = sum(c.rows for c in _checks(tmp_path) if c.status in ("ok", "drift"))
        assert counted == table.appended
        driftd.stop()


def test_dead_alert_channel_never_delays_checks_and_secrets_stay_hidden(tmp_path, table):
    port, dead = free_port(), free_port()
    token_file = tmp_path / "hook-url"
    token_file.write_text(f"http://127.0.0.1:{dead}/services/T0/B0/tok-SECRET-4d1f\n")
    metrics_password = "metrics-pass-91c2"
    config = daemon_config(
        tmp_path, source_url=PG_URL, table=table.name, port=port, every="0.5s",
        channels=[{"name": "chat", "type": "slack", "url_file": str(token_file)}],
        policy={"alert_after": "1 of 1"},
        extra={"server": {"host": "127.0.0.1", "port": port, "basic_auth": {"username": "prom", "password": "${METRICS_PASSWORD}"}}},
    )
    with running(config, port, env={"METRICS_PASSWORD": metrics_password}, auth=("prom", metrics_password)) as driftd:
        for _ in range(4):
            _feed(table, tmp_path, 300, shift=2.0)
        auth = ("prom", metrics_password)
        assert httpx.get(f"{driftd.url}/metrics", timeout=5).status_code == 401
        text = httpx.get(f"{driftd.url}/metrics", auth=auth, timeout=5).text
        wait_for(lambda: (metric_value(httpx.get(f"{driftd.url}/metrics", auth=auth).text, "driftd_alerts_total",
                                        model="churn", channel="chat", outcome="failed") or 0) >= 1, timeout=60)
        checks = _checks(tmp_path)
        gaps = [(b.started_at - a.started_at).total_seconds() for a, b in zip(checks, checks[1:])]
        assert max(gaps) < 5, f"checks stalled behind the dead channel: gaps {gaps}"
        text = httpx.get(f"{driftd.url}/metrics", auth=auth, timeout=5).text
        for secret in ("tok-SECRET-4d1f", metrics_password):
            assert secret not in driftd.output()
            assert secret not in text
            assert all(secret not in json.dumps(c.message or "") for c in checks)
        assert driftd.stop() == 0
