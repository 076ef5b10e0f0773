"""Drift of one window against the champion's reference: calibrated per-feature tests in one family.

Every feature (and the model's output) keeps the score Evidently's `ValueDrift(column, method)`
reports for the same rows — monitor/check/stats.py computes Evidently's normed Wasserstein and
Jensen-Shannon without pandas (tests/test_drift.py and tests/test_stats.py compare them with
Evidently). The verdict is not a fixed threshold on that score: it is the score's p-value under
no drift at the window's size (monitor/check/calibrate.py: bootstrap windows of the reference, a
fitted tail), and two count tests per feature — missing values (null/NaN/inf) against the
reference's share, values the reference never held against its resolution (a constant
reference column gets this novelty test instead of a distance). All tests of the model's
features form one Benjamini-Hochberg family at `drift.false_alarm_rate`; `drift.min_effect`
(and a calibrated method's `threshold`) ignore significant but tiny changes. Dataset drift:
any feature drifted (`drift.dataset_rule: any`) or `dataset_share` of them (`share`).
Methods other than wasserstein/jensenshannon keep Evidently's fixed threshold (its own stattest).

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
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from monitor.check import stats
from monitor.check.calibrate import NullCache, p_value
from monitor.core.config import CALIBRATED_METHODS, DRIFT_METHODS, Method, ModelConfig
from monitor.core.results import FeatureDrift

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


class _Planned(NamedTuple):
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

    def __init__(self, tests: Mapping[str, ColumnReference], plan: list[_Planned]) -> None:
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

                definition = _definition(self._plan)
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


@dataclass(frozen=True)
class DriftOutcome:
    features: tuple[FeatureDrift, ...]
    drifted_share: float
    dataset_drifted: bool
    prediction_drift: FeatureDrift | None
    snapshot: Any  # DeferredSnapshot: Evidently's Snapshot of this check, run on first use
    extra_drifted: tuple[str, ...] = ()  # extra hypotheses (e.g. multivariate) rejected in the family

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]


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
    plan = _plan(model, prediction_column)
    started = time.perf_counter()
    typed = _typed(frame, plan, where)
    tests = {p.column: _column_reference(p, typed[p.column]) for p in plan}
    log.debug("%s prepared in %.2fs (%d rows)", where, time.perf_counter() - started, len(frame))
    nulls = NullCache(version, nulls_dir, {c: t.fingerprint() for c, t in tests.items()})
    return PreparedReference(version, EvidentlyReference(tests, plan), len(frame), prediction_column, tests, nulls, reload)


def _column_reference(p: _Planned, typed: pd.Series) -> ColumnReference:
    finite = _finite(typed)
    missing = len(typed) - len(finite)
    # A method driftd does not calibrate is Evidently's own stattest: it gets the values as they were.
    values = finite if CALIBRATED_METHODS[p.kind] != p.method.method else None
    if p.kind == NUMERICAL:
        return ColumnReference(len(typed), missing, numerical=stats.prepare_numerical(finite.to_numpy()), values=values)
    return ColumnReference(len(typed), missing, categorical=stats.prepare_categorical(finite), values=values)


def check_drift(reference: PreparedReference, window: pd.DataFrame, model: ModelConfig,
                extra: Mapping[str, float] | None = None) -> DriftOutcome:
    """Compare the window with the reference, column by column.

    Each feature's tests (distribution, missing, unseen/novelty) join one family with `extra`
    (more hypotheses' p-values by name, e.g. a multivariate test), corrected with
    Benjamini-Hochberg at drift.false_alarm_rate; dataset drift follows drift.dataset_rule.
    Pass a window already capped with monitor.check.sample.sample_rows: cost grows with every row.
    Raises DriftError naming the column when a statistic cannot be computed.
    """
    extra = dict(extra or {})
    plan = _plan(model, reference.prediction_column)
    missing = [p.column for p in plan if p.column not in window.columns]
    if missing:
        raise DriftError(f"the window of model {model.name!r} lacks columns {missing}; the source must return every feature and the prediction")
    if window.empty:
        raise DriftError(f"the window of model {model.name!r} has no rows; nothing to compare")

    started = time.perf_counter()
    current = _typed(window, plan, "window")
    columns = [_column_tests(p, reference, current[p.column], model) for p in plan]
    reference.nulls.flush()  # the null samples this check drew, persisted in one write
    log.debug("drift of %s: %.2fs (%d rows)", model.name, time.perf_counter() - started, len(window))

    count = len(model.columns.features)
    drift = model.drift
    hypotheses = [(i, name, pv) for i, c in enumerate(columns[:count]) for name, pv in c.p_values.items()]
    hypotheses += [(-1, name, pv) for name, pv in extra.items()]
    rejected = benjamini_hochberg(np.array([pv for _, _, pv in hypotheses]), drift.false_alarm_rate)
    by_column: dict[int, set[str]] = {}
    for (i, name, _), hit in zip(hypotheses, rejected):
        if hit:
            by_column.setdefault(i, set()).add(name)
    floors = {"missing": drift.min_effect.missing, "unseen": drift.min_effect.unseen, "novelty": drift.min_effect.unseen}
    features = tuple(c.result(by_column.get(i, set()), floors) for i, c in enumerate(columns[:count]))
    prediction = None
    if reference.prediction_column:
        # The model's output is reported beside the features, tested alone at the budget.
        output = columns[count]
        prediction = output.result({n for n, pv in output.p_values.items() if pv <= drift.false_alarm_rate}, floors)
    share = sum(f.drifted for f in features) / len(features)
    extra_drifted = tuple(sorted(by_column.get(-1, set())))
    # An extra hypothesis (the multivariate test) is a whole-window signal: it counts under both rules.
    dataset = bool(extra_drifted) or (share >= drift.dataset_share if drift.dataset_rule == "share" else share > 0)
    snapshot = DeferredSnapshot(current, reference, plan)
    return DriftOutcome(features, share, dataset, prediction, snapshot, extra_drifted)


def benjamini_hochberg(p_values: np.ndarray, rate: float) -> np.ndarray:
    """Which hypotheses Benjamini-Hochberg rejects at `rate`. With no drift at all (every null
    true) it rejects any with probability at most `rate`: the model's false-alarm budget."""
    m = len(p_values)
    if m == 0:
        return np.zeros(0, dtype=bool)
    order = np.argsort(p_values, kind="stable")
    passed = p_values[order] <= rate * np.arange(1, m + 1) / m
    keep = np.zeros(m, dtype=bool)
    if passed.any():
        keep[order[: int(np.flatnonzero(passed).max()) + 1]] = True
    return keep


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
        definition, reference = self._reference.evidently.get()
        current = Dataset.from_pandas(self._current, data_definition=definition)
        try:
            return Report(metrics, include_tests=True).run(current, reference)
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


@dataclass
class _Tests:
    """One column's score and raw test results in one window, before the family's correction."""

    planned: _Planned
    score: float
    threshold: float | None
    floor: float  # effect floor of the distribution test (0: none)
    p_values: dict[str, float]
    effects: dict[str, float]
    missing_share: float
    unseen_share: float | None = None
    fixed_drifted: bool = False  # a non-calibrated method's own verdict

    def result(self, rejected: set[str], floors: Mapping[str, float]) -> FeatureDrift:
        def counts(name: str) -> bool:
            floor = self.floor if name == "distribution" else floors.get(name, 0.0)
            return floor <= 0 or self.effects.get(name, 0.0) >= floor

        drifted_by = tuple(name for name in sorted(rejected) if counts(name))
        if self.fixed_drifted:
            drifted_by += ("threshold",)
        p = self.planned
        return FeatureDrift(
            feature=p.column, kind=p.kind, method=p.method.method, score=self.score, threshold=self.threshold,
            drifted=bool(drifted_by),
            p_value=self.p_values.get("distribution", self.p_values.get("novelty")),
            missing_share=self.missing_share, missing_p_value=self.p_values.get("missing"),
            unseen_share=self.unseen_share, unseen_p_value=self.p_values.get("unseen", self.p_values.get("novelty")),
            drifted_by=drifted_by,
        )  # fmt: skip


def _column_tests(p: _Planned, reference: PreparedReference, series: pd.Series, model: ModelConfig) -> _Tests:
    ref = reference.tests[p.column]
    finite = _finite(series)
    rows, present = len(series), len(finite)
    missing = rows - present
    p_values = {"missing": stats.missing_p_value(missing, rows, ref.missing, ref.rows)}
    effects = {"missing": missing / rows - ref.missing / ref.rows}
    share = missing / rows
    if CALIBRATED_METHODS[p.kind] != p.method.method:
        assert ref.values is not None  # kept for exactly these columns
        score, drifted, threshold = _evidently_score(p, ref.values, finite)
        return _Tests(p, score, threshold, 0.0, p_values, effects, share, fixed_drifted=drifted)
    floor = p.method.threshold or getattr(model.drift.min_effect, p.kind)
    try:
        if p.kind == NUMERICAL:
            return _numerical(p, reference, ref, finite, floor, p_values, effects, share)
        return _categorical(p, reference, ref, finite, floor, p_values, effects, share)
    except (ValueError, FloatingPointError) as exc:
        raise DriftError(f"drift of column {p.column!r} with method {p.method.method!r} failed: {exc}") from None


def _numerical(p: _Planned, reference: PreparedReference, ref: ColumnReference, finite: pd.Series, floor: float,
               p_values: dict[str, float], effects: dict[str, float], share: float) -> _Tests:
    nref = ref.numerical
    assert nref is not None
    values = finite.to_numpy()
    score = stats.normed_wasserstein(nref, values)
    if nref.constant:
        # No spread to compare with: the test is whether values other than the constant appear.
        novel = int(np.count_nonzero(values != nref.sorted[0]))
        p_values["novelty"] = stats.novelty_p_value(novel, len(values), stats.novelty_rate(nref.rows))
        effects["novelty"] = novel / len(values)
        return _Tests(p, score, p.method.threshold, floor, p_values, effects, share, unseen_share=novel / len(values))
    null = reference.nulls.null(p.column, len(values), nref.rows, lambda n, b, rng: stats.bootstrap_wasserstein(nref, n, b, rng))
    # A two-valued column's distance is |share - p| x gap: its square is a scaled chi-square(1),
    # so the gamma tail is exact there (the log-normal one cost power: 10% -> 20% at n = 1,000).
    p_values["distribution"] = p_value(score, null, "gamma2" if nref.two_valued else "lognormal")
    effects["distribution"] = score
    return _Tests(p, score, p.method.threshold, floor, p_values, effects, share)


def _categorical(p: _Planned, reference: PreparedReference, ref: ColumnReference, finite: pd.Series, floor: float,
                 p_values: dict[str, float], effects: dict[str, float], share: float) -> _Tests:
    cref = ref.categorical
    assert cref is not None
    window, unseen_counts = stats.window_categories(cref, finite)
    score = stats.jensenshannon(cref, window, unseen_counts)
    unseen = window.unseen / window.rows
    p_values["unseen"] = stats.novelty_p_value(window.unseen, window.rows, stats.novelty_rate(cref.rows, cref.singletons))
    effects["unseen"] = unseen
    if len(cref.categories) >= 2:  # one level has no distribution to compare: the unseen test covers it
        null = reference.nulls.null(p.column, window.rows, cref.rows, lambda n, b, rng: stats.bootstrap_jensenshannon(cref, n, b, rng))
        p_values["distribution"] = p_value(score, null, "gamma2")
        effects["distribution"] = score
    return _Tests(p, score, p.method.threshold, floor, p_values, effects, share, unseen_share=unseen)


def _evidently_score(p: _Planned, reference: pd.Series, current: pd.Series) -> tuple[float, bool, float]:
    """The score and verdict ValueDrift(p.column, method, threshold) reports, for a method driftd
    does not calibrate: Evidently's own stattest with its fixed threshold."""
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.legacy.core import ColumnType

    column_type = ColumnType.Numerical if p.kind == NUMERICAL else ColumnType.Categorical
    try:
        stattest = get_stattest(reference, current, column_type, p.method.method)
        threshold = p.method.threshold if p.method.threshold is not None else float(stattest.default_threshold)
        result = stattest(reference, current, column_type, threshold)
    except (ValueError, TypeError, ZeroDivisionError) as exc:
        raise DriftError(
            f"drift of column {p.column!r} with method {p.method.method!r} failed: {exc}; "
            f"choose another method for it under drift.columns.{p.column}"
        ) from None
    return float(result.drift_score), bool(result.drifted), threshold
