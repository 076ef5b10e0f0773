"""Drift statistics of one window against the champion's reference, per Evidently's ValueDrift.

Every feature (and the model's output) is compared with the method and threshold the
configuration pins, so a threshold means the same at every window size. A column's score and
verdict are what Evidently's `ValueDrift(column, method, threshold)` reports for the same rows:
they come from the very stattest function ValueDrift calls (evidently's stattest registry), on
the same cleaned columns, so they are identical (tests/test_drift.py and bench/drift_check.py
compare them with ValueDrift's own test status).

Why not run `Report([ValueDrift, ...])` on every check: about 60% of ValueDrift's time goes
into the HTML report (Doane histograms, time-index aggregation, plotly figures) that a check
without drift never shows. The Report with one ValueDrift per column is still what the
outcome's `snapshot` holds; it runs on first use (save_report_html), on the same rows.
bench/drift_check.py measures both paths.

Evidently is imported inside the functions: `import evidently` takes seconds, and the CLI's
fast paths (`--help`, `validate`, the HTTP endpoints) must not pay for it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple

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
    columns: Mapping[str, pd.Series] = dataclasses.field(default_factory=dict)  # typed, inf/NaN dropped


@dataclass(frozen=True)
class DriftOutcome:
    features: tuple[FeatureDrift, ...]
    drifted_share: float
    dataset_drifted: bool
    prediction_drift: FeatureDrift | None
    snapshot: Any  # DeferredSnapshot: Evidently's Snapshot of this check, run on first use

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
    typed = _typed(frame, plan, where)
    dataset = Dataset.from_pandas(typed, data_definition=definition)
    columns = {p.column: _finite(typed[p.column]) for p in plan}
    log.debug("%s prepared in %.2fs (%d rows)", where, time.perf_counter() - started, len(frame))
    return PreparedReference(version, frame, dataset, definition, len(frame), prediction_column, columns)


def check_drift(reference: PreparedReference, window: pd.DataFrame, model: ModelConfig) -> DriftOutcome:
    """Compare the window with the reference, column by column.

    Pass a window already capped with monitor.sample.sample_rows: cost grows with every row.
    Raises DriftError naming the column when a statistic cannot be computed.
    """
    plan = _plan(model, reference.prediction_column)
    missing = [p.column for p in plan if p.column not in window.columns]
    if missing:
        raise DriftError(f"the window of model {model.name!r} lacks columns {missing}; the source must return every feature and the prediction")
    if window.empty:
        raise DriftError(f"the window of model {model.name!r} has no rows; nothing to compare")

    started = time.perf_counter()
    current = _typed(window, plan, "window")
    results = [_column_drift(p, reference.columns[p.column], current[p.column]) for p in plan]
    log.debug("drift of %s: %.2fs (%d rows)", model.name, time.perf_counter() - started, len(window))

    features = tuple(results[: len(model.columns.features)])
    prediction = results[len(features)] if reference.prediction_column else None
    share = sum(f.drifted for f in features) / len(features)
    snapshot = DeferredSnapshot(current, reference, plan)
    return DriftOutcome(features, share, share >= model.drift.dataset_share, prediction, snapshot)


def save_report_html(outcome: DriftOutcome | DeferredSnapshot, path: Path) -> Path:
    """Write the check's Evidently HTML report (given the outcome or its snapshot); a reader
    never sees a half-written file."""
    snapshot = outcome.snapshot if isinstance(outcome, DriftOutcome) else outcome
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    # A str, not a Path: Evidently's save_html silently writes nothing when given a Path.
    snapshot.save_html(str(partial))
    os.replace(partial, path)
    return path


class DeferredSnapshot:
    """Evidently's `Report([ValueDrift(column, method, threshold), ...], include_tests=True)` run
    on the checked rows, built on first use and kept.

    Behaves as the Snapshot (`save_html`, `dict`, `json`, `metric_results`, ...); `get()` returns it.
    """

    def __init__(self, current: pd.DataFrame, reference: PreparedReference, plan: list[_Planned]) -> None:
        self._current = current
        self._reference = reference
        self._plan = plan
        self._snapshot: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if self._snapshot is None:
                self._snapshot = self._run()
            return self._snapshot

    def save_html(self, filename: str) -> None:
        self.get().save_html(filename)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not during __init__, copy or pickle
            raise AttributeError(name)
        return getattr(self.get(), name)

    def _run(self) -> Any:
        from evidently import Dataset, Report
        from evidently.core.report import ReferenceMetricNotFound
        from evidently.metrics import ValueDrift

        metrics = [ValueDrift(column=p.column, method=p.method.method, threshold=p.method.threshold) for p in self._plan]
        current = Dataset.from_pandas(self._current, data_definition=self._reference.definition)
        try:
            return Report(metrics, include_tests=True).run(current, self._reference.dataset)
        except ReferenceMetricNotFound as exc:  # a BaseException: `except Exception` misses it
            raise DriftError(f"Evidently found no reference result ({exc}); the reference Dataset is unusable, re-prepare it") from None
        except (ValueError, TypeError, ZeroDivisionError) as exc:
            raise DriftError(f"Evidently could not build the drift report: {exc}") from None


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

    Category gives the same counts, hence the same scores, as strings, and is the fastest input
    for Evidently's categorical stattests and Dataset statistics (200k rows, one column:
    convert 3.6 ms + Jensen-Shannon 2.8 ms; str 9.3 ms; object 49 ms).
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


def _finite(series: pd.Series) -> pd.Series:
    # exactly ValueDrift's cleaning before its stattest
    return series.replace([-np.inf, np.inf], np.nan).dropna()


def _column_drift(p: _Planned, reference: pd.Series, current: pd.Series) -> FeatureDrift:
    """The score and verdict ValueDrift(p.column, method, threshold) reports for these columns."""
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.legacy.core import ColumnType

    column_type = ColumnType.Numerical if p.kind == NUMERICAL else ColumnType.Categorical
    current = _finite(current)
    if p.method.method == "wasserstein":
        # scipy's wasserstein_distance argsorts each sample and merge-sorts their concatenation;
        # a pre-sorted window cuts that work by more than a third. The distance depends only on
        # the sorted values, so it is the same to the last bit (the reference keeps its order:
        # the norm is its std, whose rounding depends on order).
        current = pd.Series(np.sort(current.to_numpy()), name=current.name)
    try:
        stattest = get_stattest(reference, current, column_type, p.method.method)
        result = stattest(reference, current, column_type, p.method.threshold)
    except (ValueError, TypeError, ZeroDivisionError) as exc:
        raise DriftError(
            f"drift of column {p.column!r} with method {p.method.method!r} failed: {exc}; "
            f"choose another method for it under drift.columns.{p.column}"
        ) from None
    return FeatureDrift(
        feature=p.column,
        kind=p.kind,
        method=p.method.method,
        score=float(result.drift_score),
        threshold=p.method.threshold,
        drifted=bool(result.drifted),
    )
