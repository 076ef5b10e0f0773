"""The champion's reference prepared once per version for the drift tests: its checked columns
typed, each held as compact arrays (sorted values, category counts), the null samples' cache, and
Evidently's Dataset rebuilt from them only when an HTML report needs it."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from monitor.check import stats
from monitor.check.calibrate import NullCache
from monitor.core.config import CALIBRATED_METHODS, DRIFT_METHODS, Method, ModelConfig

if TYPE_CHECKING:
    from evidently import DataDefinition, Dataset

log = logging.getLogger(__name__)


NUMERICAL = "numerical"


CATEGORICAL = "categorical"


# A reference needs this many times the smallest window's rows: its own noise then adds at most
# 20% to the variance of the comparison (1/n + 1/N), and its resolution for values it never
# saw (the rule-of-three 3/N) stays far below one row in the smallest window.
REFERENCE_FACTOR = 5


class DriftError(Exception):
    """Drift statistics cannot be computed; the message names the column and what to do."""


class Planned(NamedTuple):
    column: str
    kind: str  # numerical | categorical
    method: Method


@dataclass(frozen=True)
class ColumnReference:
    """What one reference column's tests need, computed once per reference version: compact
    arrays (sorted values, category counts), no frame."""

    rows: int  # all reference rows, missing included
    missing: int  # null/NaN/inf values
    numerical: stats.NumericalReference | None = None
    categorical: stats.CategoricalReference | None = None
    values: pd.Series | None = None  # the finite values in their order, kept only for a method driftd does not calibrate

    def fingerprint(self) -> str:
        """Identifies the values a null sample was drawn from (a persisted one is reused only for the same)."""
        if self.numerical is not None:
            return f"n{self.numerical.rows}:{zlib.crc32(self.numerical.sorted.tobytes()):08x}"
        if self.categorical is not None:
            labels = "\x1f".join(map(str, self.categorical.categories))
            return f"c{self.categorical.rows}:{zlib.crc32(labels.encode() + self.categorical.counts.tobytes()):08x}"
        return "none"

    def column(self) -> pd.Series:
        """The column as Evidently's reference Dataset holds it, rebuilt from the compact arrays:
        the same values (missing ones as NaN), in sorted order. ValueDrift scores each column on
        its own, from its distribution, so the order and the rows' pairing across columns do not
        change its result."""
        pad = self.rows - (self.numerical.rows if self.numerical is not None else self.categorical.rows if self.categorical is not None else 0)
        if self.numerical is not None:
            return pd.Series(np.concatenate([self.numerical.sorted, np.full(pad, np.nan)]))
        assert self.categorical is not None
        cref = self.categorical
        codes = np.concatenate([np.repeat(np.arange(len(cref.categories)), cref.counts), np.full(pad, -1)])
        return pd.Series(pd.Categorical.from_codes(codes, categories=cref.categories))


class EvidentlyReference:
    """The reference as an Evidently Dataset, built on first use from the compact column
    references: only an HTML report needs it, and `import evidently` alone costs seconds and
    ~280 MB (the scores come from monitor.check.stats). Nothing holds the reference frame itself."""

    def __init__(self, tests: Mapping[str, ColumnReference], plan: list[Planned]) -> None:
        self._tests = tests
        self._plan = plan
        self._built: tuple[DataDefinition, Dataset] | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # Pickled to an executor's workers (monitor.executors.ray) with its reference; a lock does
        # not pickle, and the Dataset is rebuilt there on first use, if ever.
        return {"_tests": self._tests, "_plan": self._plan}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["_tests"], state["_plan"])  # type: ignore[misc]

    def get(self) -> tuple[DataDefinition, Dataset]:
        with self._lock:
            if self._built is None:
                from evidently import Dataset

                definition = definition_of(self._plan)
                typed = pd.DataFrame({p.column: self._tests[p.column].column() for p in self._plan})
                self._built = definition, Dataset.from_pandas(typed, data_definition=definition)
            return self._built


@dataclass(frozen=True)
class PreparedReference:
    """A champion version's reference prepared once, reused by every check: per checked column
    its sorted values or category counts (monitor.stats), and the null samples calibrated from
    them. The rows themselves are not kept (a daemon holds one of these per model): an HTML
    report rebuilds Evidently's Dataset from the columns, a top-up re-reads them (`reload`)."""

    version: str
    evidently: EvidentlyReference  # the Evidently Dataset, built only for an HTML report
    rows: int
    prediction_column: str | None = None  # None: the reference holds no model output to compare
    tests: Mapping[str, ColumnReference] = dataclasses.field(default_factory=dict)
    nulls: NullCache = dataclasses.field(default_factory=lambda: NullCache(""))
    reload: Callable[[], pd.DataFrame] | None = None  # the validated rows again, when they are needed

    def __getstate__(self) -> dict[str, Any]:
        # Pickled to an executor's workers: `reload` reads through the daemon's registry view (locks
        # and all); a worker never tops up a reference, so it goes without.
        return {**self.__dict__, "reload": None}


def min_reference_rows(model: ModelConfig) -> int:
    """The smallest reference driftd checks a model against: REFERENCE_FACTOR x window.min_rows."""
    return REFERENCE_FACTOR * model.window.min_rows


def prediction_drift_column(model: ModelConfig) -> tuple[str, str]:
    """The model-output column whose drift is watched, and its kind: the probability column when
    configured, else the prediction (categorical for classification, numerical for regression)."""
    columns = model.columns
    if columns.probability:
        return columns.probability, NUMERICAL
    if model.task == "regression":
        return columns.prediction, NUMERICAL
    return columns.prediction, CATEGORICAL


def prepare_reference(frame: pd.DataFrame, model: ModelConfig, version: str, *, nulls_dir: Path | None = None,
                      reload: Callable[[], pd.DataFrame] | None = None) -> PreparedReference:
    """Type the reference's checked columns and prepare its tests, once per version.

    `nulls_dir`: where the version's null samples are persisted (monitor.calibrate.NullCache),
    so a restart or a one-off `driftd check` does not draw them again; None keeps them in memory.
    `reload`: how to read the rows again (the prepared reference does not keep them)."""
    where = f"reference of model {model.name!r} version {version}"
    missing = [c for c in model.columns.features if c not in frame.columns]
    if missing:
        raise DriftError(
            f"the {where} lacks feature columns {missing}; register a reference "
            "(driftd/reference.parquet) that holds every configured feature"
        )
    if frame.empty:
        raise DriftError(f"the {where} has no rows; register a reference with the data the model was trained on")
    needed = min_reference_rows(model)
    if len(frame) < needed:
        raise DriftError(
            f"the {where} has {len(frame)} rows; drift tests need at least {needed} "
            f"({REFERENCE_FACTOR} x window.min_rows {model.window.min_rows}) so that the reference's own noise and "
            "resolution do not decide the verdict. Register a larger reference, or lower window.min_rows "
            f"to at most {len(frame) // REFERENCE_FACTOR}"
        )
    output, _ = prediction_drift_column(model)
    prediction_column = output if output in frame.columns else None
    if prediction_column is None:
        log.warning("%s has no column %r: prediction drift is not computed for it", where, output)
    plan = plan_columns(model, prediction_column)
    started = time.perf_counter()
    typed = typed_columns(frame, plan, where)
    tests = {p.column: _column_reference(p, typed[p.column]) for p in plan}
    log.debug("%s prepared in %.2fs (%d rows)", where, time.perf_counter() - started, len(frame))
    nulls = NullCache(version, nulls_dir, {c: t.fingerprint() for c, t in tests.items()})
    return PreparedReference(version, EvidentlyReference(tests, plan), len(frame), prediction_column, tests, nulls, reload)


def _column_reference(p: Planned, typed: pd.Series) -> ColumnReference:
    finite = finite_values(typed)
    missing = len(typed) - len(finite)
    # A method driftd does not calibrate is Evidently's own stattest: it gets the values as they were.
    values = finite if CALIBRATED_METHODS[p.kind] != p.method.method else None
    if p.kind == NUMERICAL:
        return ColumnReference(len(typed), missing, numerical=stats.prepare_numerical(finite.to_numpy()), values=values)
    return ColumnReference(len(typed), missing, categorical=stats.prepare_categorical(finite), values=values)


def _method(model: ModelConfig, column: str, kind: str) -> Method:
    # model.method_for() would treat a classifier's prediction column as numerical
    if column in model.drift.columns:
        return model.drift.columns[column]
    return model.drift.categorical if kind == CATEGORICAL else model.drift.numerical


def plan_columns(model: ModelConfig, prediction_column: str | None) -> list[Planned]:
    """The checked columns in order: features (numerical, then categorical), then the output."""
    planned = [Planned(c, NUMERICAL, _method(model, c, NUMERICAL)) for c in model.columns.numerical]
    planned += [Planned(c, CATEGORICAL, _method(model, c, CATEGORICAL)) for c in model.columns.categorical]
    if prediction_column is not None:
        _, kind = prediction_drift_column(model)
        planned.append(Planned(prediction_column, kind, _method(model, prediction_column, kind)))
    for p in planned:
        if p.method.method not in DRIFT_METHODS[p.kind]:
            raise DriftError(
                f"model {model.name!r}: drift method {p.method.method!r} does not apply to the {p.kind} "
                f"column {p.column!r}; set drift.columns.{p.column}.method to one of {sorted(DRIFT_METHODS[p.kind])}"
            )
    return planned


def definition_of(plan: list[Planned]) -> DataDefinition:
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


def typed_columns(frame: pd.DataFrame, plan: list[Planned], where: str) -> pd.DataFrame:
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


def finite_values(series: pd.Series) -> pd.Series:
    # exactly ValueDrift's cleaning before its stattest
    return series.replace([-np.inf, np.inf], np.nan).dropna()
