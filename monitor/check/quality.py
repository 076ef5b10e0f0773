"""Model quality on the window's labelled rows (labels arrive late, so often only some rows).

Classification: accuracy, f1 (binary: the larger label is the positive class; multiclass: macro
average) and roc_auc when a probability column exists and both classes occur. Regression: rmse
and mae. Metrics come from sklearn.metrics, imported on use (it takes most of a second).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from monitor.core.config import ModelConfig, Task
from monitor.core.results import Quality

PRIMARY_METRIC: dict[Task, str] = {
    "binary_classification": "accuracy",
    "multiclass_classification": "accuracy",
    "regression": "rmse",
}

_HIGHER_IS_BETTER = {"accuracy": True, "f1": True, "roc_auc": True, "rmse": False, "mae": False}


class QualityError(ValueError):
    """Quality cannot be computed from these labels and predictions; the message says why."""


def higher_is_better(metric: str) -> bool:
    try:
        return _HIGHER_IS_BETTER[metric]
    except KeyError:
        raise ValueError(f"unknown quality metric {metric!r}; known: {sorted(_HIGHER_IS_BETTER)}") from None


def quality_drop(champion_score: float, current_score: float, metric: str) -> float:
    """How much worse `current_score` is than `champion_score`, in the metric's own units
    (positive = worse, negative = better)."""
    if higher_is_better(metric):
        return champion_score - current_score
    return current_score - champion_score


def compute_quality(frame: pd.DataFrame, model: ModelConfig) -> Quality | None:
    """Quality on the rows whose target is known; None when the model has no target column or
    no row of the window is labelled yet."""
    target = model.columns.target
    if target is None or target not in frame.columns or frame.empty:
        return None
    labelled = frame[frame[target].notna()]
    if labelled.empty:
        return None
    prediction = model.columns.prediction
    if prediction not in frame.columns:
        raise QualityError(f"the labelled rows lack the prediction column {prediction!r}; read it with the labels")
    scored = labelled[labelled[prediction].notna()]
    if scored.empty:
        raise QualityError(f"every labelled row has an empty prediction column {prediction!r}; check the prediction logs")
    if model.task == "regression":
        values = _regression(scored[target], scored[prediction], target, prediction)
    else:
        values = _classification(scored, model)
    return Quality(labelled_rows=len(labelled), labelled_ratio=len(labelled) / len(frame), metrics=values)


def _regression(y_true: pd.Series, y_pred: pd.Series, target: str, prediction: str) -> dict[str, float]:
    from sklearn import metrics as skm

    try:
        truth, predicted = y_true.astype("float64"), y_pred.astype("float64")
    except (TypeError, ValueError):
        raise QualityError(f"regression needs numbers in {target!r} and {prediction!r}") from None
    return {
        "rmse": float(skm.root_mean_squared_error(truth, predicted)),
        "mae": float(skm.mean_absolute_error(truth, predicted)),
    }


def _classification(scored: pd.DataFrame, model: ModelConfig) -> dict[str, float]:
    from sklearn import metrics as skm

    columns = model.columns
    target = columns.target or "target"  # quality is only measured when a target column is configured
    y_true, y_pred = comparable_labels(scored[target], scored[columns.prediction], target, columns.prediction)
    labels = np.union1d(y_true.unique(), y_pred.unique())
    binary = model.task == "binary_classification"
    if binary and len(labels) > 2:
        raise QualityError(
            f"task is binary_classification but {columns.target!r}/{columns.prediction!r} hold "
            f"{len(labels)} labels {list(labels[:10])}; set task: multiclass_classification"
        )
    values = {"accuracy": float(skm.accuracy_score(y_true, y_pred))}
    if binary:
        positive = labels[-1]
        values["f1"] = float(skm.f1_score(y_true, y_pred, pos_label=positive, average="binary", zero_division=0))
        auc = _roc_auc(scored, y_true, positive, columns.probability)
        if auc is not None:
            values["roc_auc"] = auc
    else:
        values["f1"] = float(skm.f1_score(y_true, y_pred, average="macro", zero_division=0))
    return values


def _roc_auc(scored: pd.DataFrame, y_true: pd.Series, positive: object, probability: str | None) -> float | None:
    # The probability column holds P(positive class); rows without one are left out.
    from sklearn import metrics as skm

    if probability is None or probability not in scored.columns:
        return None
    score = pd.to_numeric(scored[probability], errors="coerce")
    known = score.notna()
    is_positive = (y_true[known] == positive).to_numpy()
    if is_positive.all() or not is_positive.any():
        return None  # undefined with one class present
    return float(skm.roc_auc_score(is_positive, score[known].to_numpy()))


def comparable_labels(y_true: pd.Series, y_pred: pd.Series, target: str, prediction: str) -> tuple[pd.Series, pd.Series]:
    """Labels compared as numbers when both columns are numeric (1 == 1.0), else as strings."""
    numeric = pd.api.types.is_numeric_dtype
    if numeric(y_true) and numeric(y_pred):
        return y_true.astype("float64"), y_pred.astype("float64")
    if numeric(y_true) != numeric(y_pred):
        # e.g. target 1.0 (float because of missing labels) against prediction "1"
        as_true = pd.to_numeric(y_true, errors="coerce")
        as_pred = pd.to_numeric(y_pred, errors="coerce")
        if as_true.notna().all() and as_pred.notna().all():
            return as_true.astype("float64"), as_pred.astype("float64")
        raise QualityError(
            f"labels in {target!r} ({y_true.dtype}) and predictions in {prediction!r} ({y_pred.dtype}) "
            "are of different kinds; store both as the same type"
        )
    return y_true.astype(str), y_pred.astype(str)
