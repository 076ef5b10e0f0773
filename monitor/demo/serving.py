"""The demo's model server: predicts with whatever `models:/NAME@champion` is right now."""

from __future__ import annotations

import numpy as np
import pandas as pd

from monitor.core.config import Config, ModelConfig


class Serving:
    """Serves the champion; `refresh()` reloads it when its alias has moved, the way a serving
    layer following aliases would. The demo refreshes at points of its own story (at the start
    and after each retrain), never on a wall-clock timer, so every run serves the same versions."""

    def __init__(self, config: Config, model: ModelConfig) -> None:
        self._config, self._model = config, model
        self._version: str | None = None
        self._pyfunc = None

    def current(self):
        pyfunc, version = self._pyfunc, self._version
        return version, lambda frame: _predict(pyfunc, frame)

    def refresh(self) -> str | None:
        import mlflow

        from retrain.registry import champion
        from retrain.tracking import connect

        current = champion(self._config, self._model)
        if current is not None and current.version != self._version:
            connect(self._config)  # the model URI resolves against the process-wide registry URI
            self._pyfunc = mlflow.pyfunc.load_model(f"models:/{self._model.mlflow_name}@champion")
            self._version = current.version
        return self._version


def _predict(pyfunc, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    out = pyfunc.predict(frame)
    positive = [c for c in out.columns if str(c).startswith("proba_")][-1]  # classes come sorted
    return np.asarray(out["prediction"]), np.asarray(out[positive], dtype=float)
