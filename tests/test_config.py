"""Configuration: what a user sees when the YAML is right, and when it is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from monitor.core.config import ConfigError, NOfM, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parents[1] / "driftd.example.yaml"

MINIMAL = {
    "models": [{
        "name": "m",
        "source": {"type": "files", "path": "logs/*.parquet"},
        "columns": {"timestamp": "ts", "id": "id", "prediction": "y_pred", "numerical": ["a"], "categorical": ["b"]},
        "task": "binary_classification",
    }]
}


def _parse(raw: dict, env: dict | None = None, base: Path = Path("/cfg")):
    return parse_config(raw, base_dir=base, env=env or {})


def _errors(raw: dict, env: dict | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        _parse(raw, env)
    return str(info.value)


def test_example_config_in_the_repo_validates():
    config = load_config(EXAMPLE, env={"PREDICTIONS_DB_URL": "postgresql+psycopg://driftd@db/predictions"})
    assert [m.name for m in config.models] == ["credit-default", "churn"]
    churn = config.model("churn")
    assert churn.schedule.cron == "0 * * * *" and churn.schedule.every is None
    assert churn.window.min_rows == 500  # inherited from defaults


def test_defaults_are_merged_into_each_model_and_models_override():
    raw = {**MINIMAL, "defaults": {"window": {"size": "30m", "min_rows": 300}, "policy": {"alert_after": "1 of 2"}}}
    raw["models"] = [{**MINIMAL["models"][0], "window": {"min_rows": 60}}]
    model = _parse(raw).models[0]
    assert model.window.size == timedelta(minutes=30)
    assert model.window.min_rows == 60
    assert model.policy.alert_after == NOfM(1, 2)
    assert model.policy.retrain_after == NOfM(3, 4)


def test_unknown_key_is_an_error_naming_its_path():
    raw = {**MINIMAL, "models": [{**MINIMAL["models"][0], "window": {"sise": "1h"}}]}
    assert "models.0.window.sise: unknown key" in _errors(raw)


def test_wrong_type_names_the_path():
    raw = {**MINIMAL, "defaults": {"window": {"min_rows": "lots"}}}
    assert "defaults.window.min_rows" in _errors(raw)


def test_bad_duration_and_n_of_m_say_how_to_write_them():
    raw = {**MINIMAL, "defaults": {"window": {"size": "an hour"}, "policy": {"alert_after": "two of three"}}}
    text = _errors(raw)
    assert "write e.g. 30s, 15m, 1h, 14d" in text
    assert "'N of M'" in text


def test_env_expansion_with_default_and_missing_variable():
    raw = {"state_url": "${STATE_URL:-sqlite:////tmp/s.db}", "mlflow": {"tracking_uri": "${MLFLOW_URI}"}, **MINIMAL}
    assert _parse(raw, env={"MLFLOW_URI": "http://127.0.0.1:5000"}).mlflow.tracking_uri == "http://127.0.0.1:5000"
    assert _parse(raw, env={"MLFLOW_URI": "x"}).state_url == "sqlite:////tmp/s.db"
    assert "mlflow.tracking_uri: environment variable MLFLOW_URI is not set" in _errors(raw)


def test_password_written_into_yaml_is_refused_but_from_env_is_fine():
    raw = {**MINIMAL, "state_url": "postgresql+psycopg://driftd:hunter2@db/driftd"}
    text = _errors(raw)
    assert "state_url: a password is written into the YAML" in text
    assert "hunter2" not in text
    ok = {**MINIMAL, "state_url": "postgresql+psycopg://driftd:${DB_PASSWORD}@db/driftd"}
    config = _parse(ok, env={"DB_PASSWORD": "s3cret"})
    assert config.state_url.endswith(":s3cret@db/driftd")


def test_secret_from_file_is_read_and_never_shown(tmp_path):
    secret = tmp_path / "hook"
    secret.write_text("https://hooks.example.invalid/T000/B000/XXXXSECRET\n")
    raw = {**MINIMAL, "alerts": {"channels": [{"name": "chat", "type": "slack", "url_file": str(secret)}]}}
    channel = _parse(raw).alerts.channels[0]
    assert channel.resolved_url() == "https://hooks.example.invalid/T000/B000/XXXXSECRET"
    assert "XXXXSECRET" not in repr(channel)
    inline = {**MINIMAL, "alerts": {"channels": [{"name": "chat", "type": "slack", "url": "${HOOK}"}]}}
    assert "XXXXSECRET" not in repr(_parse(inline, env={"HOOK": "https://h/XXXXSECRET"}))


def test_model_alert_routes_must_name_defined_channels():
    raw = {**MINIMAL, "models": [{**MINIMAL["models"][0], "alerts": ["pager"]}]}
    assert "undefined channels ['pager']" in _errors(raw)


def test_cron_is_checked_and_schedule_override_replaces_the_default():
    raw = {**MINIMAL, "models": [{**MINIMAL["models"][0], "schedule": {"cron": "61 * * * *"}}]}
    assert "invalid cron expression" in _errors(raw)


def test_column_roles_are_checked():
    columns = {"timestamp": "ts", "id": "id", "prediction": "y", "numerical": ["a", "a"]}
    raw = {"models": [{**MINIMAL["models"][0], "columns": columns}]}
    assert "listed twice" in _errors(raw)


def test_drift_override_must_name_a_feature_and_method_must_exist():
    raw = {**MINIMAL, "models": [{**MINIMAL["models"][0], "drift": {"columns": {"zzz": {"method": "psi", "threshold": 0.2}}}}]}
    assert "not features of this model" in _errors(raw)
    raw = {**MINIMAL, "defaults": {"drift": {"numerical": {"method": "magic", "threshold": 0.1}}}}
    assert "numerical.method 'magic'" in _errors(raw)


def test_relative_paths_resolve_against_the_config_file(tmp_path):
    path = tmp_path / "driftd.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "state_url": "sqlite:///state.db"}))
    config = load_config(path)
    assert config.state_url == f"sqlite:///{tmp_path}/state.db"
    assert config.models[0].source.path == f"{tmp_path}/logs/*.parquet"
    assert config.mlflow.artifact_root == str(tmp_path / "mlartifacts")


def test_method_for_uses_overrides_then_column_type_defaults():
    raw = {**MINIMAL, "models": [{**MINIMAL["models"][0], "drift": {"columns": {"a": {"method": "psi", "threshold": 0.2}}}}]}
    model = _parse(raw).models[0]
    assert model.method_for("a").method == "psi"
    assert model.method_for("b").method == "jensenshannon"


def _driftd(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monitor.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


def test_validate_command_exit_codes(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(MINIMAL))
    run = _driftd("validate", "-c", str(good))
    assert run.returncode == 0 and run.stdout.startswith("OK")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**MINIMAL, "sever": {}}))
    run = _driftd("validate", "-c", str(bad))
    assert run.returncode == 2
    assert "sever: unknown key" in run.stderr and "Traceback" not in run.stderr
    run = _driftd("validate", "-c", str(tmp_path / "missing.yaml"))
    assert run.returncode == 2 and "cannot read configuration file" in run.stderr


def test_a_password_with_a_slash_or_in_the_query_string_is_refused():
    for url in ("postgresql+psycopg://driftd:pa/ss@db/driftd",
                "postgresql+psycopg://driftd@db/driftd?password=hunter2",
                "postgresql+psycopg://driftd@db/driftd?sslmode=require&password=hunter2"):
        text = _errors({**MINIMAL, "state_url": url})
        assert "state_url: a " in text and "is written into the YAML" in text and "hunter2" not in text and "pa/ss" not in text
    ok = {**MINIMAL, "state_url": "postgresql+psycopg://driftd@db/driftd?password=${DB_PASSWORD}&sslmode=require"}
    assert _parse(ok, env={"DB_PASSWORD": "s3/cret"}).state_url.endswith("?password=s3/cret&sslmode=require")


def test_limits_are_validated_with_clear_messages():
    def model_with(**section) -> dict:
        return {**MINIMAL, "models": [{**MINIMAL["models"][0], **section}]}

    assert "models.0.window.size: must be longer than 0s" in _errors(model_with(window={"size": "0s"}))
    assert "models.0.schedule.every: must be longer than 0s" in _errors(model_with(schedule={"every": "0s"}))
    floor = _errors(model_with(window={"min_rows": 1}))
    assert "models.0.window.min_rows: 1 is below the floor of 50" in floor and "standard deviations" in floor
    assert _parse(model_with(window={"min_rows": 50})).models[0].window.min_rows == 50
    assert "models.0.window.lookback: must not be negative" in _errors(model_with(window={"lookback": -5}))
    assert "models.0.name: String should have at most 200 characters" in _errors(model_with(name="m" * 201))
    assert _parse(model_with(name="m" * 200)).models[0].name == "m" * 200
    assert "defaults.schedule.every: must be longer than 0s" in _errors({**MINIMAL, "defaults": {"schedule": {"every": 0}}})


def test_late_row_defaults():
    window = _parse(MINIMAL).models[0].window
    assert window.lateness == timedelta(minutes=1) and window.lookback == timedelta(hours=1)
