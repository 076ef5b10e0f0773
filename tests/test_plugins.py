"""Plug-ins: a package registers a source, an alert channel and a compression strategy through
entry points (tests/plugins/driftd_testplugin, installed by `make install`) and driftd uses
each without any edit of its own files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.core.config import ConfigError, parse_config
from monitor.core.plugins import CHANNELS, SOURCES, PluginError, Registry
from tests.support.receiver import Receiver

START = datetime(2024, 5, 1, tzinfo=timezone.utc)
COLUMNS = {"timestamp": "ts", "id": "id", "prediction": "prediction", "probability": "probability",
           "numerical": ["x1", "x2"], "categorical": ["c1"]}
PLUGIN_MISSING = "driftd_testplugin is not installed: run `make install` (it installs tests/plugins/driftd_testplugin)"


@pytest.fixture(scope="module", autouse=True)
def _installed() -> None:
    names = {point.name for point in entry_points(group="driftd.sources")}
    if "testplugin-source" not in names:
        pytest.fail(PLUGIN_MISSING)


def synthetic(**extra: Any) -> dict[str, Any]:
    return {"type": "testplugin-source", "start": START.isoformat(), "rows": 3600, "spacing": "6s", **extra}


def model(source: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "churn", "task": "binary_classification", "source": source, "columns": COLUMNS, **extra}


def test_registries_list_builtins_and_plugins() -> None:
    assert {"files", "sql", "testplugin-source"} <= set(SOURCES.names())
    assert {"webhook", "slack", "alertmanager", "testplugin-channel"} <= set(CHANNELS.names())


def test_plugin_sections_validate_with_the_plugins_own_model(tmp_path: Path) -> None:
    config = parse_config({
        "alerts": {"channels": [{"name": "chat", "type": "testplugin-channel", "url": "http://127.0.0.1:1", "room": "ops"}]},
        "models": [model(synthetic(seed=3), alerts=["chat"])],
    }, base_dir=tmp_path)
    source, channel = config.models[0].source, config.alerts.channels[0]
    assert type(source).__name__ == "SyntheticConfig" and source.rows == 3600 and source.spacing == timedelta(seconds=6)
    assert type(channel).__name__ == "ChatConfig" and channel.room == "ops"
    # The plug-in's own fields are part of the configuration's fingerprint (SerializeAsAny).
    other = parse_config({"alerts": {"channels": [{"name": "chat", "type": "testplugin-channel", "url": "http://127.0.0.1:1", "room": "dev"}]},
                          "models": [model(synthetic(seed=3), alerts=["chat"])]}, base_dir=tmp_path)
    assert other.fingerprint() != config.fingerprint()

    with pytest.raises(ConfigError) as caught:
        parse_config({"alerts": {"channels": [{"name": "chat", "type": "testplugin-channel", "url": "http://x"}]},
                      "models": [model(synthetic(rows=-1, colour="red"))]}, base_dir=tmp_path)
    message = str(caught.value)
    assert "models.0.source.rows: Input should be greater than 0" in message
    assert "models.0.source.colour: unknown key" in message
    assert "alerts.channels.0.room: Field required" in message


def test_unknown_types_list_the_available_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"alerts": {"channels": [{"name": "x", "type": "pager", "url": "http://x"}]},
                      "models": [model({"type": "kafka", "topic": "t"})]}, base_dir=tmp_path)
    message = str(caught.value)
    assert "models.0.source: unknown source type 'kafka'; available: files, sql, testplugin-source" in message
    assert "alerts.channels.0: unknown alert channel type 'pager'; available: alertmanager, slack, testplugin-channel, webhook" in message
    assert "'driftd.sources' entry-point group" in message


def test_a_broken_plugin_is_named_not_crashed_on() -> None:
    registry: Registry[Any] = Registry("source", "driftd.sources", {})
    with pytest.raises(PluginError, match="not a class"):
        registry.register("half", "driftd_testplugin.source:SyntheticSource")  # type: ignore[arg-type]
    with pytest.raises(PluginError, match="config_model must be a pydantic model"):
        registry.register("bare", type("Bare", (), {}))
    with pytest.raises(PluginError, match="built into driftd"):
        Registry("source", "driftd.sources", {"files": "monitor.sources.files:FileLogSource"}).register("files", type("X", (), {}))


def test_backfill_reads_a_plugin_source_and_alerts_through_a_plugin_channel(tmp_path: Path) -> None:
    """`driftd backfill` (the installed command, the daemon's own cycle and policy) over six hours
    of the plug-in's log, drifting from hour three: the drift alert reaches the plug-in channel."""
    from driftd_testplugin.source import SyntheticConfig, generate
    from monitor.core.config import Columns

    reference = generate(SyntheticConfig.model_validate(synthetic(rows=4000, seed=99)), Columns.model_validate(COLUMNS))
    reference.to_parquet(tmp_path / "reference.parquet")
    with Receiver() as rx:
        config = {
            "state_url": "sqlite:///state.db",
            "alerts": {"channels": [{"name": "chat", "type": "testplugin-channel", "url": rx.url, "room": "ml-ops",
                                     "mention": "@oncall"}]},
            "models": [model(synthetic(seed=1, shift=1.5, shift_from=(START + timedelta(hours=3)).isoformat()),
                             reference="reference.parquet", alerts=["chat"],
                             window={"size": "1h", "min_rows": 500, "lateness": "0s", "lookback": "0s"},
                             schedule={"every": "1h"})],
        }
        path = tmp_path / "driftd.yaml"
        path.write_text(yaml.safe_dump(config))
        driftd = Path(sys.executable).with_name("driftd")
        done = subprocess.run(
            [str(driftd), "backfill", "-c", str(path), "--model", "churn", "--json", "--dry-run", "--alerts",
             "--since", START.isoformat(), "--until", (START + timedelta(hours=6)).isoformat()],
            capture_output=True, text=True, timeout=300, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        )
        assert done.returncode in (0, 1), done.stderr
        windows = [json.loads(line) for line in done.stdout.splitlines()]
        assert [w["status"] for w in windows] == ["ok", "ok", "ok", "drift", "drift", "drift"], done.stderr
        assert [w["rows"] for w in windows] == [600] * 5 + [599]  # the log ends 6 s before --until
        [request] = rx.wait_for(1, timeout=30)
    assert request.path == "/rooms/ml-ops/messages"
    body = request.json
    assert body["room"] == "ml-ops"
    assert body["message"].startswith("@oncall DriftdDatasetDrift is firing for churn: ") and "x1" in body["message"]



def test_retrain_config_names_a_plugin_compressor(tmp_path: Path) -> None:
    config = parse_config({"models": [model(synthetic(), retrain={"compression": ["onnx", "testplugin-compressor"]})]},
                          base_dir=tmp_path)
    assert config.models[0].retrain.compression == ["onnx", "testplugin-compressor"]
    with pytest.raises(ConfigError) as caught:
        parse_config({"models": [model(synthetic(), retrain={"compression": ["distill"]})]}, base_dir=tmp_path)
    assert ("models.0.retrain.compression.0: unknown compression strategy 'distill'; "
            "available: onnx, prune, quantize, testplugin-compressor") in str(caught.value)


def test_compress_builds_scores_and_chooses_a_plugin_candidate() -> None:
    """The plug-in's forest of every other tree goes driftd's way: scored on the SELECT rows,
    converted to ONNX and checked against its sklearn source when chosen."""
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from driftd_testplugin.compressor import NAME
    from retrain.compress import compress

    features = [f"x{i}" for i in range(6)]
    X, y = make_classification(n_samples=2400, n_features=6, n_informative=4, random_state=0)
    frame = pd.DataFrame(X, columns=features).assign(y=y)
    columns = ColumnTransformer([("num", StandardScaler(), features)])
    forest = Pipeline([("columns", columns), ("model", RandomForestClassifier(n_estimators=40, random_state=0))])
    forest.fit(frame[features][:1200], frame["y"][:1200])
    result = compress(forest, frame[1200:], target="y", numerical=features, categorical=[], task="binary_classification",
                      strategies=["onnx", "testplugin-compressor"], max_quality_loss=0.5, latency_calls=20, batch_rows=500)
    variant = {v.name: v for v in result.variants}[NAME]
    assert variant.note.startswith("every other tree: 20 of 40")
    assert result.chosen is not None and result.chosen.name == NAME, result.reason  # the smallest within the budget
    assert result.chosen.converted and result.onnx_model is not None
    assert any("TreeEnsemble" in node.op_type for node in result.onnx_model.graph.node)  # the converted forest
    assert np.isfinite(variant.quality)


def test_a_failing_compressor_is_skipped_not_fatal() -> None:
    from retrain.compress.select import _candidates_of

    registry_name = "testplugin-compressor"
    skipped = _candidates_of(registry_name, build=None, taken=set())  # type: ignore[arg-type]  # build.model is read
    assert len(skipped) == 1 and skipped[0].name == registry_name and "AttributeError" in skipped[0].reason
