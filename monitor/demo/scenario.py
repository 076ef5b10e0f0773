"""The demo's scenario: its timeline and the driftd configuration it runs with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from monitor.demo.world import CATEGORICAL, NUMERICAL

MODEL = "loans"


@dataclass(frozen=True)
class Timeline:
    """Seconds of the demo's simulated clock. `--speed` only sets how fast that clock may run
    against the wall clock (the demo waits when it is ahead, never hurries when behind), so the
    same rows, windows and retrain happen at any speed and on any machine."""

    window: float = 4.0
    rows_per_second: float = 250.0
    label_delay: float = 3.0
    baseline_windows: int = 5
    max_windows: int = 40


def write_config(directory: Path, timeline: Timeline, sink_url: str) -> Path:
    window = f"{timeline.window:.3f}s"
    config = {
        "state_url": "sqlite:///state.db",
        "mlflow": {"tracking_uri": "sqlite:///mlflow.db", "artifact_root": "mlartifacts"},
        "server": {"host": "127.0.0.1", "port": 0},
        "logging": {"level": "WARNING", "format": "text"},
        "alerts": {"channels": [{"name": "demo-sink", "type": "webhook", "url": sink_url}]},
        "defaults": {
            "schedule": {"every": window},
            # lateness 0s: production commits every row before the demo lets the daemon check.
            "window": {"size": window, "min_rows": 200, "max_rows": 200_000, "quality_span": f"{6 * timeline.window:.3f}s",
                       "lateness": "0s"},
            "policy": {"alert_after": "2 of 3", "resolve_after": 3, "retrain_after": "3 of 3", "quality_drop": 0.1,
                       "cooldown": f"{20 * timeline.window:.3f}s", "max_retrains_per_day": 2},
            "retrain": {"training_window": f"{2 * timeline.window:.3f}s", "min_labelled_rows": 800,
                        # ONNX conversion only: the demo's 250-row holdout is below retrain.min_holdout_rows
                        # (500), too few to bound a pruned forest's loss; the gate would refuse one and
                        # serve this lossless conversion anyway (README: Promotion gates).
                        "compression": ["onnx"], "max_quality_loss": 0.015, "min_improvement": 0.0},
        },
        "models": [{
            "name": MODEL,
            "registered_model": MODEL,
            "source": {"type": "sql", "url": "sqlite:///predictions.db", "table": "predictions"},
            "labels": {"type": "sql", "url": "sqlite:///predictions.db", "table": "outcomes"},
            # model_version: the serving layer logs which version answered, so after the promotion the
            # new champion is judged on its own rows only (monitor.check.attribution).
            "columns": {"timestamp": "ts", "id": "id", "prediction": "prediction", "probability": "probability",
                        "target": "defaulted", "model_version": "model_version",
                        "numerical": NUMERICAL, "categorical": CATEGORICAL},
            "task": "binary_classification",
            "alerts": ["demo-sink"],
        }],
    }
    path = directory / "driftd.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
