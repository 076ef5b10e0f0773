"""The registry's names (aliases, tags, artifact paths) and the records read from it or logged
into it: a champion, a candidate version, what was logged."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from retrain.evaluate import Gate
from retrain.tracking import TrackingError, describe, mask

CHAMPION, PREVIOUS, CHALLENGER = "champion", "previous", "challenger"
OUTCOME_TAG, FAILED_REASON_TAG = "driftd.outcome", "driftd.failed_reason"
REFERENCE_ARTIFACT = "driftd/reference.parquet"
SCHEMA_ARTIFACT = "driftd/schema.json"
REPORT_ARTIFACT = "driftd/drift_report.html"
ESTIMATOR_ARTIFACTS = "driftd/estimator"
SKLEARN_MODEL = "sklearn_model"
SERVING_MODEL = "model"


class RegistryError(TrackingError):
    """The registry cannot do what was asked; the message says what to do instead."""


@dataclass(frozen=True)
class Champion:
    name: str
    version: str
    run_id: str
    model_uri: str
    sklearn_model_uri: str | None
    primary_metric: str | None
    validation_score: float | None
    promoted_at: datetime | None = None  # when it last became champion (`driftd.promoted_at`)
    promoted_over: str | None = None  # the version it replaced


@dataclass(frozen=True)
class Candidate:
    """Everything logged and registered for one new version."""

    estimator: Any  # the fitted, uncompressed scikit-learn estimator
    compression: Any | None  # retrain.compress.CompressionResult, None when not compressed
    fit_rows: pd.DataFrame  # the rows it was trained + validated on (features, target)
    trigger: str
    primary_metric: str
    validation_score: float | None
    gates: tuple[Gate, ...] = ()
    drift_report: Path | None = None
    tags: dict[str, str] = field(default_factory=dict)
    # Labelled rows the estimator was not trained on: the quality estimator is fitted on them
    calibration_rows: pd.DataFrame | None = None

    @property
    def variant(self) -> str:
        compression = self.compression
        if compression is None or compression.chosen is None or compression.onnx_model is None:
            return "none"
        return str(compression.chosen.name)


@dataclass(frozen=True)
class Logged:
    version: str
    model_uri: str  # the serving model
    sklearn_model_uri: str
    variant: str
    reference_rows: int


def _call(method: Any, *args: Any) -> Any:
    try:
        return method(*args)
    except Exception as exc:
        raise RegistryError(f"MLflow registry at {_where()}: {method.__name__} failed: {describe(exc)}") from None


def _where() -> str:
    import mlflow

    return mask(mlflow.get_registry_uri())  # set by connect() before any registry call


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
