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

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from monitor.check import stats
from monitor.check.calibrate import p_value
from monitor.check.prepared import (
    NUMERICAL,
    ColumnReference,
    DriftError,
    Planned,
    PreparedReference,
    finite_values,
    min_reference_rows,
    plan_columns,
    prediction_drift_column,
    prepare_reference,
    typed_columns,
)
from monitor.core.config import CALIBRATED_METHODS, ModelConfig
from monitor.core.results import FeatureDrift

# The reference's types and preparation live in monitor.check.prepared; their importers may keep importing them from here.
__all__ = ["ColumnReference", "DeferredSnapshot", "DriftError", "DriftOutcome", "PreparedReference", "benjamini_hochberg",
           "check_drift", "min_reference_rows", "prediction_drift_column", "prepare_reference", "save_report_html"]

log = logging.getLogger(__name__)


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
    plan = plan_columns(model, reference.prediction_column)
    missing = [p.column for p in plan if p.column not in window.columns]
    if missing:
        raise DriftError(f"the window of model {model.name!r} lacks columns {missing}; the source must return every feature and the prediction")
    if window.empty:
        raise DriftError(f"the window of model {model.name!r} has no rows; nothing to compare")

    started = time.perf_counter()
    current = typed_columns(window, plan, "window")
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

    def __init__(self, current: pd.DataFrame, reference: PreparedReference, plan: list[Planned]) -> None:
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


@dataclass
class _Tests:
    """One column's score and raw test results in one window, before the family's correction."""

    planned: Planned
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


def _column_tests(p: Planned, reference: PreparedReference, series: pd.Series, model: ModelConfig) -> _Tests:
    ref = reference.tests[p.column]
    finite = finite_values(series)
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


def _numerical(p: Planned, reference: PreparedReference, ref: ColumnReference, finite: pd.Series, floor: float,
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


def _categorical(p: Planned, reference: PreparedReference, ref: ColumnReference, finite: pd.Series, floor: float,
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


def _evidently_score(p: Planned, reference: pd.Series, current: pd.Series) -> tuple[float, bool, float]:
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
