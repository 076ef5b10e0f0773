"""Drift statistics of one window against the champion's reference, with Evidently's ValueDrift.

One ValueDrift per feature (plus one for the model's output) with the method and threshold the
configuration pins, so a threshold means the same at every window size. A column's verdict is
Evidently's own test status (FAIL = drifted); the score is the metric value.

Evidently is imported inside the functions: `import evidently` takes seconds, and the CLI's
fast paths (`--help`, `validate`, the HTTP endpoints) must not pay for it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from monitor.config import DRIFT_METHODS, Method, ModelConfig
from monitor.results import FeatureDrift

if TYPE_CHECKING:
    from evidently import DataDefinition, Dataset

log = logging.getLogger(__name__)

NUMERICAL = "numerical"
CATEGORICAL = "categorical"


class DriftError(Exception):
    """Drift statistics cannot be computed; the message names the column and what to do."""


class _Planned(NamedTuple):
    column: str
    kind: str  # numerical | categorical
    method: Method


@dataclass(frozen=True)
class PreparedReference:
    """A champion version's reference, typed and wrapped for Evidently once, reused by every check."""

    version: str
    frame: pd.DataFrame  # the reference rows as given
    dataset: Dataset  # only the checked columns, typed as the checks type the window
    definition: DataDefinition
    rows: int
    prediction_column: str | None = None  # None: the reference holds no model output to compare


@dataclass(frozen=True)
class DriftOutcome:
    features: tuple[FeatureDrift, ...]
    drifted_share: float
    dataset_drifted: bool
    prediction_drift: FeatureDrift | None
    snapshot: Any  # evidently Snapshot, for save_report_html

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]


def prediction_drift_column(model: ModelConfig) -> tuple[str, str]:
    """The model-output column whose drift is watched, and its kind: the probability column when
    configured, else the prediction (categorical for classification, numerical for regression)."""
    columns = model.columns
    if columns.probability:
        return columns.probability, NUMERICAL
    if model.task == "regression":
        return columns.prediction, NUMERICAL
    return columns.prediction, CATEGORICAL


def prepare_reference(frame: pd.DataFrame, model: ModelConfig, version: str) -> PreparedReference:
    """Type the reference's checked columns and build its Evidently Dataset, once per version."""
    from evidently import Dataset

    where = f"reference of model {model.name!r} version {version}"
    missing = [c for c in model.columns.features if c not in frame.columns]
    if missing:
        raise DriftError(
            f"the {where} lacks feature columns {missing}; register a reference "
            "(driftd/reference.parquet) that holds every configured feature"
        )
    if frame.empty:
        raise DriftError(f"the {where} has no rows; register a reference with the data the model was trained on")
    output, _ = prediction_drift_column(model)
    prediction_column = output if output in frame.columns else None
    if prediction_column is None:
        log.warning("%s has no column %r: prediction drift is not computed for it", where, output)
    plan = _plan(model, prediction_column)
    definition = _definition(plan)
    started = time.perf_counter()
    dataset = Dataset.from_pandas(_typed(frame, plan, where), data_definition=definition)
    log.debug("%s prepared in %.2fs (%d rows)", where, time.perf_counter() - started, len(frame))
    return PreparedReference(version, frame, dataset, definition, len(frame), prediction_column)


def check_drift(reference: PreparedReference, window: pd.DataFrame, model: ModelConfig) -> DriftOutcome:
    """Compare the window with the reference, column by column.

    Pass a window already capped with monitor.sample.sample_rows: cost grows with every row.
    Raises DriftError naming the column when a statistic cannot be computed.
    """
    from evidently import Dataset, Report
    from evidently.metrics import ValueDrift

    plan = _plan(model, reference.prediction_column)
    missing = [p.column for p in plan if p.column not in window.columns]
    if missing:
        raise DriftError(f"the window of model {model.name!r} lacks columns {missing}; the source must return every feature and the prediction")
    if window.empty:
        raise DriftError(f"the window of model {model.name!r} has no rows; nothing to compare")

    started = time.perf_counter()
    current = Dataset.from_pandas(_typed(window, plan, "window"), data_definition=reference.definition)
    built = time.perf_counter()
    metrics = [ValueDrift(column=p.column, method=p.method.method, threshold=p.method.threshold) for p in plan]
    snapshot = _run(Report(metrics, include_tests=True), current, reference.dataset, metrics, plan)
    log.debug("drift of %s: dataset %.2fs, report %.2fs (%d rows)", model.name, built - started, time.perf_counter() - built, len(window))

    results = [_verdict(snapshot, metric, planned) for metric, planned in zip(metrics, plan)]
    features = tuple(results[: len(model.columns.features)])
    prediction = results[len(features)] if reference.prediction_column else None
    share = sum(f.drifted for f in features) / len(features)
    return DriftOutcome(features, share, share >= model.drift.dataset_share, prediction, snapshot)


def save_report_html(outcome: DriftOutcome, path: Path) -> Path:
    """Write the check's Evidently HTML report; a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    # A str, not a Path: Evidently's save_html silently writes nothing when given a Path.
    outcome.snapshot.save_html(str(partial))
    os.replace(partial, path)
    return path


# --- helpers -----------------------------------------------------------------------------


def _method(model: ModelConfig, column: str, kind: str) -> Method:
    # model.method_for() would treat a classifier's prediction column as numerical
    if column in model.drift.columns:
        return model.drift.columns[column]
    return model.drift.categorical if kind == CATEGORICAL else model.drift.numerical


def _plan(model: ModelConfig, prediction_column: str | None) -> list[_Planned]:
    """The checked columns in order: features (numerical, then categorical), then the output."""
    planned = [_Planned(c, NUMERICAL, _method(model, c, NUMERICAL)) for c in model.columns.numerical]
    planned += [_Planned(c, CATEGORICAL, _method(model, c, CATEGORICAL)) for c in model.columns.categorical]
    if prediction_column is not None:
        _, kind = prediction_drift_column(model)
        planned.append(_Planned(prediction_column, kind, _method(model, prediction_column, kind)))
    for p in planned:
        if p.method.method not in DRIFT_METHODS[p.kind]:
            raise DriftError(
                f"model {model.name!r}: drift method {p.method.method!r} does not apply to the {p.kind} "
                f"column {p.column!r}; set drift.columns.{p.column}.method to one of {sorted(DRIFT_METHODS[p.kind])}"
            )
    return planned


def _definition(plan: list[_Planned]) -> DataDefinition:
    from evidently import DataDefinition

    # Every list given, even empty ones: a None list makes Evidently infer types for the rest.
    return DataDefinition(
        numerical_columns=[p.column for p in plan if p.kind == NUMERICAL],
        categorical_columns=[p.column for p in plan if p.kind == CATEGORICAL],
        text_columns=[],
        datetime_columns=[],
        unknown_columns=[],
        list_columns=[],
    )


def _typed(frame: pd.DataFrame, plan: list[_Planned], where: str) -> pd.DataFrame:
    """Only the checked columns: numerical as float64, categorical as pandas category.

    Category gives the same counts, hence the same scores, as object strings, while Evidently's
    value_counts and Dataset statistics run several times faster on it (bench/drift_check.py).
    """
    columns: dict[str, pd.Series] = {}
    for p in plan:
        series = frame[p.column]
        if p.kind == NUMERICAL:
            series = _as_float(series, p.column, where)
            usable = bool(np.isfinite(series.to_numpy()).any())
        else:
            try:
                series = series.astype("category")
            except TypeError as exc:
                raise DriftError(f"{where}: categorical column {p.column!r} holds values that cannot be compared ({exc}); store them as strings") from None
            usable = bool(series.notna().any())
        if not usable:
            # Evidently would fail the whole report with a bare ValueError
            raise DriftError(
                f"{where}: column {p.column!r} has no usable values (all missing or infinite); "
                "fix the producer of this column, or remove it from the model's columns"
            )
        columns[p.column] = series
    return pd.DataFrame(columns, index=frame.index)


def _as_float(series: pd.Series, column: str, where: str) -> pd.Series:
    if series.dtype == np.float64:
        return series
    try:
        # nullable Int64/Float64 misbehave inside Evidently; float64 with NaN does not
        return series.astype("float64")
    except (TypeError, ValueError):
        raise DriftError(
            f"{where}: numerical column {column!r} holds non-numeric {series.dtype} values; "
            "fix the data, or list the column under columns.categorical"
        ) from None


def _run(report: Any, current: Any, reference: Any, metrics: list[Any], plan: list[_Planned]) -> Any:
    from evidently.core.report import ReferenceMetricNotFound

    try:
        return report.run(current, reference)
    except ReferenceMetricNotFound as exc:  # a BaseException: `except Exception` misses it
        raise DriftError(f"Evidently found no reference result ({exc}); the reference Dataset is unusable, re-prepare it") from None
    except (ValueError, TypeError, ZeroDivisionError) as exc:
        raise _blame(exc, current, reference, metrics, plan) from None


def _blame(exc: Exception, current: Any, reference: Any, metrics: list[Any], plan: list[_Planned]) -> DriftError:
    """Find which column made the report fail, so the message can say what to change."""
    from evidently import Report

    for metric, p in zip(metrics, plan):
        try:
            Report([metric], include_tests=True).run(current, reference)
        except (ValueError, TypeError, ZeroDivisionError) as single:
            return DriftError(
                f"drift of column {p.column!r} with method {p.method.method!r} failed: {single}; "
                f"choose another method for it under drift.columns.{p.column}"
            )
    return DriftError(f"Evidently failed on this window: {exc}")


def _verdict(snapshot: Any, metric: Any, p: _Planned) -> FeatureDrift:
    result = snapshot.metric_results[metric.metric_id]
    statuses = [t.status.value for t in result.tests]
    if not statuses:
        raise DriftError(f"Evidently returned no drift verdict for column {p.column!r}")
    return FeatureDrift(
        feature=p.column,
        kind=p.kind,
        method=p.method.method,
        score=float(result.value),
        threshold=p.method.threshold,
        drifted="FAIL" in statuses,
    )
