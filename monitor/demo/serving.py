"""The demo's model server: predicts with whatever `models:/NAME@champion` is right now."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd

from monitor.config import Config, ModelConfig


class Serving:
    """Reloads the champion when its alias moves, the way a serving layer following aliases would."""

    def __init__(self, config: Config, model: ModelConfig, poll_seconds: float = 1.0) -> None:
        self._config, self._model, self._poll = config, model, poll_seconds
        self._lock = threading.Lock()
        self._version: str | None = None
        self._pyfunc = None
        self._checked = 0.0

    def current(self):
        with self._lock:
            if time.monotonic() - self._checked >= self._poll:
                self._checked = time.monotonic()
                self._refresh()
            pyfunc, version = self._pyfunc, self._version
        return version, lambda frame: _predict(pyfunc, frame)

    def _refresh(self) -> None:
        import mlflow

        from retrain.registry import champion
        from retrain.tracking import connect

        current = champion(self._config, self._model)
        if current is None or current.version == self._version:
            return
        connect(self._config)  # the model URI resolves against the process-wide registry URI
        self._pyfunc = mlflow.pyfunc.load_model(f"models:/{self._model.mlflow_name}@champion")
        self._version = current.version


def _predict(pyfunc, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    out = pyfunc.predict(frame)
    positive = [c for c in out.columns if str(c).startswith("proba_")][-1]  # classes come sorted
    return np.asarray(out["prediction"]), np.asarray(out[positive], dtype=float)
