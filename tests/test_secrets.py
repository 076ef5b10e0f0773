"""Secrets from the environment never reach a message: check output, `checks.message`, logs.

The URL shapes that slipped through before: a password in the query string
(`…/db?password=…`) and a password containing `/`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from monitor.core.config import load_config
from monitor.core.redact import mask, url_secrets
from monitor.core.results import CheckStatus
from monitor.service.daemon import Daemon
from tests.support.data import CATEGORICAL, NUMERICAL, predictions

SECRET = "qs-SECRET/9f2"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


URLS = {
    "query": "postgresql+psycopg://postgres@127.0.0.1:{port}/test?connect_timeout=3&password=${{PGPASS}}",
    "slash": "postgresql+psycopg://postgres:${{PGPASS}}@127.0.0.1:{port}/test",
}


def _config(tmp_path: Path, shape: str) -> Path:
    predictions(2500, seed=1).to_parquet(tmp_path / "reference.parquet", index=False)  # 5 x the default min_rows
    config = {
        "state_url": f"sqlite:///{tmp_path / 'state.db'}",
        "mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
        "logging": {"level": "DEBUG", "format": "text"},
        "models": [{
            "name": "churn", "reference": "reference.parquet", "task": "binary_classification",
            "source": {"type": "sql", "url": URLS[shape].format(port=_closed_port()), "table": "predictions"},
            "columns": {"timestamp": "ts", "id": "id", "prediction": "prediction", "probability": "probability",
                        "numerical": NUMERICAL, "categorical": CATEGORICAL},
        }],
    }
    path = tmp_path / "driftd.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("shape", sorted(URLS))
def test_check_output_and_logs_never_show_the_password(tmp_path, shape):
    run = subprocess.run([sys.executable, "-m", "monitor.cli", "check", "-c", str(_config(tmp_path, shape)), "--model", "churn"],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "PGPASS": SECRET})
    assert run.returncode == 3, run.stdout + run.stderr
    output = run.stdout + run.stderr
    assert "cannot connect to the prediction-log database" in output
    assert SECRET not in output and "qs-SECRET" not in output
    assert ("password=***" if shape == "query" else "postgres:***@127.0.0.1") in output


@pytest.mark.parametrize("shape", sorted(URLS))
def test_the_checks_table_never_holds_the_password(tmp_path, shape, monkeypatch):
    monkeypatch.setenv("PGPASS", SECRET)
    daemon = Daemon(load_config(_config(tmp_path, shape)))
    try:
        result = daemon.tick(daemon.config.model("churn"))
        assert result.status is CheckStatus.ERROR and SECRET not in result.message
        [stored] = daemon.store.recent_checks("churn", 5)
        assert "cannot connect" in stored.message and SECRET not in stored.message
        with daemon.store.engine.connect() as conn:
            raw = conn.exec_driver_sql("SELECT message || result FROM checks").scalar()
        assert SECRET not in raw and "qs-SECRET" not in raw
        assert SECRET not in daemon.metrics.render().decode()
    finally:
        daemon.stop()


def test_one_masker_for_every_url_shape():
    cases = {
        "postgresql://u:pa/ss@db:5432/x": "postgresql://u:***@db:5432/x",
        "postgresql://u@db/x?sslmode=require&password=p%2Fw": "postgresql://u@db/x?sslmode=require&password=***",
        "https://hooks.example/services/T0/B0/x?token=abc&x=1": "https://hooks.example/services/T0/B0/x?token=***&x=1",
        "https://TOKEN123@api.example/v1": "https://***@api.example/v1",
        "postgresql://postgres@127.0.0.1/test": "postgresql://postgres@127.0.0.1/test",  # a user name is no secret
    }
    for url, masked in cases.items():
        assert mask(f"failed at {url} - refused") == f"failed at {masked} - refused"
    # A driver quoting the bare (decoded) value is cleaned when the caller passes the URL's secrets.
    url = "postgresql://u@db/x?password=p%2Fw0rd"
    assert mask("auth failed for password p/w0rd", url_secrets(url)) == "auth failed for password ***"


def test_log_lines_are_masked_whatever_logs_them(capsys):
    import logging

    from monitor.core.logs import setup_logging

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        for fmt in ("text", "json"):
            setup_logging("INFO", fmt)
            logging.getLogger("some.library").warning("retrying postgresql://u:%s@db/x?token=%s", SECRET, "tok-1234")
            err = capsys.readouterr().err
            assert "retrying" in err and SECRET not in err and "tok-1234" not in err
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def test_secret_urls_are_shown_by_their_host_only() -> None:
    from monitor.core.redact import host, origin, url_parts

    slack = "https://hooks.slack.com/services/T0/B0/xoxb-secret"
    assert host(slack) == "hooks.slack.com" and host("http://u:pw@127.0.0.1:9093/x") == "127.0.0.1:9093"
    assert origin(slack) == "https://hooks.slack.com/***" and host("not a url") == "unknown"
    body = "invalid_token for /services/T0/B0/xoxb-secret (user u:pw)"
    assert mask(body, url_parts(slack)) == "invalid_token for *** (user u:pw)"
    assert "pw" not in mask("auth u:pw failed", url_parts("https://u:pw@h/x"))
