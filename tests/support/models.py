"""The demo's loan-default world (monitor.demo.world) plus test-only helpers: column roles,
a ModelConfig for it, and prediction logs written as Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from monitor.core.config import Columns, FilesSource, ModelConfig, RetrainOptions
from monitor.demo.world import (  # noqa: F401  (re-exported for the tests)
    CATEGORICAL,
    FEATURES,
    ID,
    NUMERICAL,
    PREDICTION,
    PROBABILITY,
    START,
    TARGET,
    TIMESTAMP,
    baseline_pipeline,
    make_loans,
    train_baseline,
    with_predictions,
)


def columns(*, target: bool = True, probability: bool = True) -> Columns:
    return Columns(
        timestamp=TIMESTAMP,
        id=ID,
        prediction=PREDICTION,
        probability=PROBABILITY if probability else None,
        target=TARGET if target else None,
        numerical=list(NUMERICAL),
        categorical=list(CATEGORICAL),
    )


def model_config(
    name: str,
    log_glob: str | Path,
    *,
    reference: Path | None = None,
    retrain: RetrainOptions | dict[str, Any] | None = None,
    **overrides: Any,
) -> ModelConfig:
    """A ModelConfig for the loan model reading prediction logs (with labels) from `log_glob`."""
    if isinstance(retrain, dict):
        retrain = RetrainOptions(**retrain)
    return ModelConfig(
        name=name,
        source=FilesSource(type="files", path=str(log_glob)),
        columns=columns(),
        task="binary_classification",
        reference=reference,
        retrain=retrain or RetrainOptions(),
        **overrides,
    )


def write_log(directory: Path, estimator: Any, frame: pd.DataFrame, *, name: str = "part-0.parquet", labelled: float = 1.0, seed: int = 0) -> Path:
    """Write `frame` as a Parquet prediction log with `estimator`'s predictions.

    Only a `labelled` share of rows (seeded choice) keeps its target; the rest have NaN, as
    when labels have not arrived yet."""
    logged = with_predictions(estimator, frame)
    if labelled < 1.0:
        rng = np.random.default_rng(seed)
        logged[TARGET] = logged[TARGET].astype("float64").where(rng.random(len(logged)) < labelled)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    logged.to_parquet(path, index=False)
    return path
