"""Recompression stage of the retrain pipeline.

``compress`` turns a fitted scikit-learn model into measured ONNX variants and CHOOSES the
one to serve using VALIDATION rows only. It never sees the gate's holdout: the choice is
tested afterwards, once, on rows it was not made on (``retrain.evaluate.gate_compression``).
A variant chosen on the holdout and gated on the same holdout could not fail its gate.

The validation rows are split in two seeded halves (``selection_split``):
- BUILD: what pruning decisions are fitted on (greedy tree order, stage and column curves);
- SELECT: every variant is measured there (quality on the model's primary metric, agreement
  with the sklearn model, latency); the chosen variant is the smallest whose upper confidence
  bound of loss against the uncompressed model (paired bootstrap, ``retrain.bounds``) stays
  within ``max_quality_loss``. Greedy selection overfits the rows it ran on (FACTS: validation
  -0.04 pt, test -1.8 pt), so the rows that judge a ladder are not the rows that built it.

Candidates are scored NATIVELY: every candidate that is a scikit-learn model (the plain model,
every pruned one) is measured on the SELECT rows with sklearn's own predictions, which is what
its ONNX graph must reproduce anyway. Only then are the passing candidates converted, smallest
first (by pickled size, the native measure of a model's size), and the first whose graph agrees
with its sklearn source (``FIDELITY``) and keeps the loss bound on its own ONNX predictions is
chosen; its size and latency are measured on the graph. Converting every candidate cost ~30 s
of a RandomForest(100)'s retrain (skl2onnx builds tree nodes in Python). The plain conversion,
the gate's lossless fallback, is built only when it is needed: when it is chosen, when int8
quantization needs it, or lazily through ``CompressionResult.with_lossless``.

Strategies, by model family (every served variant is an ONNX graph):
- ``onnx``: skl2onnx conversion of the whole pipeline, checked against sklearn. When it
  agrees with the sklearn model it is *lossless*: it may serve whatever the holdout size.
- ``prune``: forests -> greedy forward selection of trees, optionally after cost-complexity
  pruning of every tree; boosting -> fewer stages; linear models -> drop the input columns
  whose coefficients are smallest (zeroed coefficients alone would not shrink a dense ONNX
  tensor). Each family offers a ladder of candidates: the smallest model within 0, 1/4 and
  1/2 of the loss budget on the BUILD rows, and for trees and stages also 1/2 and 1/4 of
  them (rungs that do not lean on a curve the greedy order overfits).
- ``quantize``: onnxruntime int8 dynamic quantization where the graph has MatMul/Gemm
  (MLPs); tree and linear ONNX-ML graphs are skipped with the reason.
"""

from __future__ import annotations

import copy
import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, cast

import numpy as np
import onnx
import pandas as pd
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, MaxAbsScaler, MinMaxScaler, OneHotEncoder, RobustScaler, StandardScaler

from monitor.core.config import PluginConfig, Task
from monitor.core.plugins import COMPRESSORS
from retrain import bounds
from retrain.onnx_model import (
    ML_OPSET,
    TARGET_OPSET,
    NotQuantizable,
    check_convertible,
    column_pipeline,
    feeds,
    log_onnx_model,
    onnx_predict,
    quantize_int8,
    run,
    session,
    to_onnx_model,
)

__all__ = ["Variant", "Skipped", "CompressionResult", "CompressionStrategy", "BuildRows", "compress", "selection_split",
           "check_convertible", "onnx_predict", "log_onnx_model", "TASKS", "STRATEGIES"]

TASKS = ("binary_classification", "multiclass_classification", "regression")
STRATEGIES = ("onnx", "prune", "quantize")  # the built-in ones; plug-ins add theirs (monitor.core.plugins.COMPRESSORS)
# Share of rows on which an ONNX graph must agree with its sklearn source. Not 100%:
# ONNX compares float32 inputs with float32 split thresholds, so a row whose feature sits on a
# threshold may take the other branch; a broken conversion disagrees on far more than 1%.
FIDELITY = 0.99
BOUNDARY = 0.02  # probability gap under which a row sits on the decision boundary
CCP_FACTORS = (2e-4, 6e-4)  # ccp_alpha as a fraction of the mean root impurity of the trees
MAX_GREEDY = 128  # trees a greedy selection may pick
SHARES = (0.5, 0.25)  # shares of the (greedily ordered) trees or stages offered as rungs
MAX_PRUNE_ROWS = 20_000  # build rows used to choose what to prune
BUILD_SHARE = 0.5  # of the validation rows, the rest select
LATENCY_BUDGET, MIN_CALLS = 1.0, 20  # seconds and calls of a single-row latency measurement
FORESTS = (RandomForestClassifier, RandomForestRegressor, ExtraTreesClassifier, ExtraTreesRegressor)
BOOSTERS = (GradientBoostingClassifier, GradientBoostingRegressor,
            HistGradientBoostingClassifier, HistGradientBoostingRegressor)
_ELEMENTWISE = (StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler, SimpleImputer)


@dataclass(frozen=True)
class Variant:
    """One measured model, on the SELECT rows. ``quality`` is higher-is-better (the primary
    metric, errors negated); ``metric_value`` is what a person reads (RMSE positive)."""

    name: str
    size_bytes: int
    p50_ms: float
    p99_ms: float
    batch10k_ms: float
    quality: float
    agreement: float  # vs the uncompressed model: label agreement, or share within 1e-3 std
    passed: bool  # selectable: agrees with its source, loss bound within budget on SELECT rows
    note: str = ""
    max_abs_diff: float = 0.0  # vs the uncompressed model: probabilities, or values
    metric: str = "accuracy"
    loss_bound: float = 0.0  # upper confidence bound of the loss vs the uncompressed model
    lossless: bool = False  # the plain conversion, agreeing with the sklearn model
    converted: bool = True  # False: scored natively, never converted (size_bytes is then its pickle size)
    native_bytes: int = 0  # pickled size of its sklearn model (int8: scaled by its graph's shrink), ranks candidates

    @property
    def metric_value(self) -> float:
        from monitor.check.quality import higher_is_better

        return self.quality if higher_is_better(self.metric) else -self.quality


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str


@dataclass(frozen=True)
class CompressionResult:
    original: Variant
    variants: tuple[Variant, ...]
    chosen: Variant | None
    onnx_model: onnx.ModelProto | None  # the chosen variant's graph
    target_opset: int
    reason: str
    skipped: tuple[Skipped, ...] = ()
    classes: tuple | None = None  # class order of the probabilities output
    ml_opset: int = ML_OPSET
    lossless_model: onnx.ModelProto | None = None  # the plain conversion, when it agrees with sklearn
    build_rows: int = 0
    select_rows: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # where compress spent its time, by stage
    _plain: Callable[[], tuple[Variant, onnx.ModelProto | None]] | None = field(default=None, repr=False, compare=False)

    @property
    def lossless(self) -> Variant | None:
        return next((v for v in self.variants if v.lossless), None) if self.lossless_model is not None else None

    def with_lossless(self) -> CompressionResult:
        """This result with the plain conversion built and measured, when it was not already
        (the gate's fallback after the chosen lossy variant is refused). ``lossless`` stays
        None when the graph does not agree with the sklearn model."""
        if self.lossless_model is not None or self._plain is None:
            return self
        started = time.perf_counter()
        variant, graph = self._plain()
        variants = tuple(variant if v.name == variant.name else v for v in self.variants)
        seconds = {**self.seconds, "lossless fallback": time.perf_counter() - started}
        return replace(self, variants=variants, lossless_model=graph if variant.lossless else None, seconds=seconds,
                       _plain=None)

    def serving(self, variant: Variant | None) -> CompressionResult:
        """This result with `variant` (the chosen or the lossless one; None: sklearn) serving."""
        if variant is None:
            return replace(self, chosen=None, onnx_model=None)
        if self.chosen is not None and variant.name == self.chosen.name:
            return self
        if self.lossless is not None and variant.name == self.lossless.name:
            return replace(self, chosen=variant, onnx_model=self.lossless_model)
        raise ValueError(f"{variant.name} is neither the chosen nor the lossless variant")


@dataclass(frozen=True)
class _Candidate:
    name: str
    onnx_model: onnx.ModelProto
    source: BaseEstimator | None  # sklearn model the graph was converted from, if any
    note: str = ""
    native: _Native | None = None  # its source's native scores, when measured


@dataclass(frozen=True)
class _Native:  # a scikit-learn candidate and its predictions on the SELECT rows
    name: str
    model: BaseEstimator
    note: str
    pred: np.ndarray
    proba: np.ndarray | None
    size: int  # pickled bytes


@dataclass(frozen=True)
class _Rows:  # the SELECT rows every variant is measured on
    X: pd.DataFrame
    y: np.ndarray
    batch: pd.DataFrame
    single: np.ndarray  # row positions for single-row latency
    task: str
    metric: str
    max_loss: float
    confidence: float


@dataclass(frozen=True)
class _Reference:  # the uncompressed model on the SELECT rows
    variant: Variant
    pred: np.ndarray
    proba: np.ndarray | None
    tol: float  # regression agreement tolerance


@dataclass(frozen=True)
class BuildRows:
    """What a strategy builds its candidates on: the BUILD half of the validation rows."""

    model: Pipeline  # the fitted model as one pipeline over the monitored columns (last step: the estimator)
    frame: pd.DataFrame  # the build rows' feature columns
    X: object  # the build rows after every step but the last
    y: np.ndarray
    task: str
    metric: str  # the task's primary metric, higher-is-better via retrain.bounds.score
    tolerances: tuple[float, ...]  # losses a candidate may have on these rows: 0, 1/4 and 1/2 of the budget


_Validation = BuildRows  # the name the pruning code below was written with


class CompressionStrategy:
    """A way to make smaller scikit-learn models from the fitted one (`retrain.compression`).

    `candidates` returns (name, fitted sklearn model, note) triples built on the BUILD rows, or
    Skipped with the reason. Every candidate then goes the built-in ones' way: scored natively
    on the SELECT rows, converted to ONNX (and checked against its sklearn source) only when
    it is the smallest within the loss budget, and gated on the holdout like any variant. A
    package adds a strategy through the `driftd.compressors` entry-point group (monitor.core.plugins);
    exceptions it raises are reported as a Skipped, never as a failed retrain."""

    config_model: ClassVar[type[PluginConfig]] = PluginConfig  # strategies take no settings yet

    def candidates(self, build: BuildRows) -> Sequence[tuple[str, BaseEstimator, str] | Skipped]:
        raise NotImplementedError(f"{type(self).__name__} must implement candidates()")


class PlainConversion(CompressionStrategy):
    """`onnx`: the whole model converted as it is; always a candidate, so nothing to add here."""

    def candidates(self, build: BuildRows) -> Sequence[tuple[str, BaseEstimator, str] | Skipped]:
        return []


class Pruning(CompressionStrategy):
    """`prune`: fewer trees, stages or input columns, by model family (see the module docstring)."""

    def candidates(self, build: BuildRows) -> Sequence[tuple[str, BaseEstimator, str] | Skipped]:
        return _prune(build)


class Int8Quantization(CompressionStrategy):
    """`quantize`: int8 weights of the converted graph; it works on the ONNX graph, so compress()
    applies it after conversion rather than through candidates()."""

    def candidates(self, build: BuildRows) -> Sequence[tuple[str, BaseEstimator, str] | Skipped]:
        return []


def selection_split(validation: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(BUILD, SELECT): a seeded random partition of the validation rows, BUILD_SHARE in BUILD.
    Random rather than by time, so both halves are alike and a ladder judged on SELECT is
    judged on rows like the ones that built it."""
    order = np.random.default_rng(seed).permutation(len(validation))
    cut = int(len(validation) * BUILD_SHARE)
    return validation.iloc[np.sort(order[:cut])], validation.iloc[np.sort(order[cut:])]


def compress(estimator: BaseEstimator, validation: pd.DataFrame, *, target: str, numerical: list[str],
             categorical: list[str], task: str, strategies: Sequence[str], max_quality_loss: float,
             metric: str | None = None, confidence: float = 0.95, seed: int = 0, latency_calls: int = 200,
             batch_rows: int = 10_000) -> CompressionResult:
    """Measure the sklearn model and its ONNX variants on validation rows only; choose the
    smallest variant whose loss on ``metric`` (default: the task's primary metric) is within
    ``max_quality_loss`` at ``confidence`` (see the module docstring). Never raises for a model
    that cannot be converted or compressed: ``chosen`` is None and ``reason`` says why."""
    from monitor.check.quality import PRIMARY_METRIC

    metric = metric or PRIMARY_METRIC[cast(Task, task)]  # an unknown task: _check_arguments says so
    columns = [*numerical, *categorical]
    _check_arguments(estimator, validation, target, columns, task, strategies, max_quality_loss, metric)
    clock = _Stopwatch()
    build, select = selection_split(validation, seed)
    rows = _rows(select, target, columns, task, metric, max_quality_loss, confidence, seed, latency_calls, batch_rows)
    with clock("measure sklearn"):
        ref = _measure_sklearn(estimator, rows)
    classes = tuple(_classes(estimator)) if task != "regression" else None
    empty: dict[str, Any] = dict(original=ref.variant, variants=(), chosen=None, onnx_model=None, target_opset=TARGET_OPSET,
                 classes=classes, build_rows=len(build), select_rows=len(select), seconds=clock.seconds)
    if not strategies:
        return CompressionResult(**empty, reason="no compression strategy enabled")
    unconvertible = check_convertible(estimator, numerical, categorical)
    if unconvertible:
        return CompressionResult(**empty, reason=f"not convertible to ONNX, keep the sklearn model: {unconvertible}")
    model = column_pipeline(estimator, numerical, categorical, validation)
    convert = lambda name, est, note: _convert(name, est, note, numerical, categorical)  # noqa: E731
    natives = [_Native("onnx", model, f"skl2onnx, target_opset={TARGET_OPSET}", ref.pred, ref.proba, ref.variant.size_bytes)]
    skipped: list[Skipped] = []
    builders = [s for s in dict.fromkeys(strategies) if s not in ("onnx", "quantize")]  # prune and plug-ins
    if builders and len(build) == 0:
        skipped += [Skipped(s, f"{len(validation)} validation row(s): too few to build {s} variants on") for s in builders]
    elif builders:
        val = _validation(model, build, target, columns, task, metric, max_quality_loss, seed)
        for strategy in builders:
            with clock("build pruned candidates" if strategy == "prune" else f"build {strategy} candidates"):
                built = _candidates_of(strategy, val, taken={n.name for n in natives})
            skipped += [c for c in built if isinstance(c, Skipped)]
            with clock("score candidates natively"):
                natives += [_native(*c, rows) for c in built if not isinstance(c, Skipped)]
    scored = {n.name: _score_native(n, rows, ref) for n in natives}
    graphs: dict[str, onnx.ModelProto] = {}
    if "quantize" in strategies:  # int8 needs the plain graph: convert it now (MLPs and linear models are small)
        reason = _not_quantizable(model)
        if reason:
            skipped.append(Skipped("onnx_int8", reason))
        else:
            with clock("convert to ONNX"):
                base = convert(natives[0].name, model, natives[0].note)
            if isinstance(base, Skipped):
                return CompressionResult(**empty, reason=f"not convertible to ONNX, keep the sklearn model: {base.reason}",
                                         skipped=(base,))
            with clock("measure ONNX"):
                scored["onnx"] = _measure_onnx(replace(base, native=natives[0]), rows, ref)
            graphs["onnx"] = base.onnx_model
            quantized = _quantized(base)
            if isinstance(quantized, Skipped):
                skipped.append(quantized)
            else:
                with clock("measure ONNX"):
                    int8 = _measure_onnx(quantized, rows, ref)
                shrink = int8.size_bytes / max(scored["onnx"].size_bytes, 1)
                scored[int8.name] = replace(int8, native_bytes=max(1, round(natives[0].size * shrink)))
                graphs[int8.name] = quantized.onnx_model
    chosen = None
    for name in [v.name for v in sorted(scored.values(), key=_rank) if v.passed]:
        if name not in graphs:  # scored natively: convert it now and check the graph
            native = next(n for n in natives if n.name == name)
            with clock("convert to ONNX"):
                cand = convert(native.name, native.model, native.note)
            if isinstance(cand, Skipped):
                scored[name] = replace(scored[name], passed=False, note=f"{scored[name].note}; {cand.reason}")
                continue
            with clock("measure ONNX"):
                scored[name] = _measure_onnx(replace(cand, native=native), rows, ref)
            graphs[name] = cand.onnx_model
        if scored[name].passed:
            chosen = scored[name]
            break
    variants = tuple(scored.values())
    lossless = next((v for v in variants if v.lossless), None)
    plain = None if "onnx" in graphs else lambda: _plain_conversion(natives[0], rows, ref, numerical, categorical)
    return CompressionResult(
        ref.variant, variants, chosen, graphs[chosen.name] if chosen else None, TARGET_OPSET,
        _reason(ref.variant, variants, chosen, rows), tuple(skipped), classes,
        lossless_model=graphs[lossless.name] if lossless else None, build_rows=len(build), select_rows=len(select),
        seconds=clock.seconds, _plain=plain,
    )  # fmt: skip


class _Stopwatch:
    """Seconds spent per named stage (a stage entered twice adds up)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started


def _rank(variant: Variant) -> tuple:
    """Smallest first: by native size (the graphs of one model's candidates grow with it),
    then the better quality."""
    return (variant.native_bytes, -variant.quality, variant.name)


def _plain_conversion(native: _Native, rows: _Rows, ref: _Reference, numerical, categorical) -> tuple[Variant, onnx.ModelProto | None]:
    cand = _convert(native.name, native.model, native.note, numerical, categorical)
    if isinstance(cand, Skipped):
        return replace(_score_native(native, rows, ref), passed=False, note=cand.reason), None
    return _measure_onnx(replace(cand, native=native), rows, ref), cand.onnx_model


def _not_quantizable(model: Pipeline) -> str | None:
    """Why int8 cannot apply, when the model's family says so without converting it
    (converting a big forest only to find no MatMul in it took seconds)."""
    final = model.steps[-1][1]
    if isinstance(final, (*FORESTS, *BOOSTERS)):
        return (f"{type(final).__name__} converts to ONNX-ML tree operators: nothing to quantize "
                "(no MatMul/Gemm/Conv; prune trees instead)")
    return None


# --------------------------------------------------------------------------- arguments


def _check_arguments(estimator, validation, target, columns, task, strategies, max_loss, metric) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    unknown = sorted(set(strategies) - set(COMPRESSORS.names()))
    if unknown:
        raise ValueError(f"unknown compression strategies {unknown}; known: {COMPRESSORS.names()}")
    if max_loss < 0:
        raise ValueError(f"max_quality_loss must be >= 0, got {max_loss}")
    if not bounds.supported(metric):
        raise ValueError(f"cannot compress on metric {metric!r}: choose accuracy, rmse or mae")
    missing = [c for c in [*columns, target] if c not in validation.columns]
    if missing:
        raise ValueError(f"validation frame lacks columns {missing}")
    if len(validation) < 2:
        raise ValueError(f"validation frame has {len(validation)} row(s); compression needs at least 2")
    if (task == "regression") == is_classifier(estimator):
        raise ValueError(f"task {task!r} does not match estimator {type(estimator).__name__}")


def _classes(estimator: BaseEstimator) -> np.ndarray:
    final = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    return np.asarray(final.classes_)


def _rows(frame, target, columns, task, metric, max_loss, confidence, seed, calls, batch_rows) -> _Rows:
    rng = np.random.default_rng(seed)
    X = frame[columns]
    single = np.resize(rng.permutation(len(X)), calls)
    batch = X.iloc[np.resize(rng.permutation(len(X)), batch_rows)].reset_index(drop=True)
    return _Rows(X, frame[target].to_numpy(), batch, single, task, metric, max_loss, confidence)


# --------------------------------------------------------------------------- measuring


def _agreement(task: str, ref: np.ndarray, pred: np.ndarray, tol: float) -> float:
    if task == "regression":
        return float(np.mean(np.abs(np.asarray(pred, dtype=float) - ref) <= tol))
    return float(np.mean(np.asarray(pred) == ref))


def _single_row_ms(call: Callable[[int], object], n: int, budget: float = LATENCY_BUDGET) -> tuple[float, float]:
    """p50 and p99 of `n` single-row calls, or of as many (at least MIN_CALLS) as fit in
    `budget` seconds: sklearn's 10 ms per row would otherwise cost seconds per retrain."""
    for k in range(min(10, n)):
        call(k)
    times, started = [], time.perf_counter()
    for k in range(n):
        start = time.perf_counter()
        call(k)
        times.append(time.perf_counter() - start)
        if k + 1 >= MIN_CALLS and start - started > budget:
            break
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def _batch_ms(call: Callable[[], object], repeats: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def _measure_sklearn(estimator: BaseEstimator, rows: _Rows) -> _Reference:
    pred, proba = _predict(estimator, rows)
    singles = [rows.X.iloc[[i]] for i in rows.single]
    p50, p99 = _single_row_ms(lambda k: estimator.predict(singles[k]), len(singles))
    batch = _batch_ms(lambda: estimator.predict(rows.batch))
    size = len(pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL))
    quality = float(bounds.score(rows.metric, rows.y, pred))
    variant = Variant("sklearn", size, p50, p99, batch, quality, 1.0, True, "uncompressed (pickle size)", 0.0, rows.metric,
                      native_bytes=size)
    tol = 1e-3 * max(float(np.std(pred)), 1e-9) if rows.task == "regression" else 0.0
    return _Reference(variant, np.asarray(pred), proba, tol)


def _native(name: str, model: BaseEstimator, note: str, rows: _Rows) -> _Native:
    pred, proba = _predict(model, rows)
    return _Native(name, model, note, pred, proba, len(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)))


def _predict(model: BaseEstimator, rows: _Rows) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels (or values) and class probabilities on the SELECT rows. A forest classifier's
    labels are taken from its probabilities exactly as its own `predict` does, which saves
    a second pass over every tree."""
    proba = model.predict_proba(rows.X) if rows.task != "regression" and hasattr(model, "predict_proba") else None
    final = model.steps[-1][1] if isinstance(model, Pipeline) else model
    if proba is not None and proba.ndim == 2 and isinstance(final, (RandomForestClassifier, ExtraTreesClassifier)):
        return final.classes_.take(np.argmax(proba, axis=1), axis=0), proba
    return np.asarray(model.predict(rows.X)), proba


def _score_native(native: _Native, rows: _Rows, ref: _Reference) -> Variant:
    """A candidate measured by its sklearn predictions: what its graph must reproduce.
    Latency is left unmeasured (NaN) until it is converted."""
    quality = float(bounds.score(rows.metric, rows.y, native.pred))
    loss = -bounds.paired_gain(rows.metric, rows.y, native.pred, ref.pred, confidence=rows.confidence).lower
    passed, note = _within_budget(native.note, rows, ref, loss)
    nan = float("nan")
    return Variant(native.name, native.size, nan, nan, nan, quality, _agreement(rows.task, ref.pred, native.pred, ref.tol),
                   passed, note + ("; " if note else "") + "scored natively, not converted", _max_abs_diff(ref, native.pred, native.proba),
                   rows.metric, loss, converted=False, native_bytes=native.size)  # fmt: skip


def _measure_onnx(cand: _Candidate, rows: _Rows, ref: _Reference) -> Variant:
    sess = session(cand.onnx_model)
    feed = feeds(sess, rows.X)
    pred, proba = run(sess, feed)
    singles = [{name: value[i:i + 1] for name, value in feed.items()} for i in rows.single]
    p50, p99 = _single_row_ms(lambda k: sess.run(None, singles[k]), len(singles))
    batch_feed = feeds(sess, rows.batch)
    batch = _batch_ms(lambda: sess.run(None, batch_feed))
    quality = float(bounds.score(rows.metric, rows.y, pred))
    loss = -bounds.paired_gain(rows.metric, rows.y, pred, ref.pred, confidence=rows.confidence).lower
    passed, note, faithful = _check(cand, rows, ref, pred, loss)
    return Variant(cand.name, len(cand.onnx_model.SerializeToString()), p50, p99, batch, quality,
                   _agreement(rows.task, ref.pred, pred, ref.tol), passed, note, _max_abs_diff(ref, pred, proba),
                   rows.metric, loss, lossless=faithful and cand.name == "onnx",
                   native_bytes=cand.native.size if cand.native else 0)  # fmt: skip


def _max_abs_diff(ref: _Reference, pred: np.ndarray, proba: np.ndarray | None) -> float:
    if ref.proba is not None and proba is not None and proba.shape == ref.proba.shape:
        return float(np.max(np.abs(proba - ref.proba)))
    if ref.variant.metric != "accuracy":
        return float(np.max(np.abs(np.asarray(pred, dtype=float) - ref.pred)))
    return float("nan")


def _check(cand: _Candidate, rows: _Rows, ref: _Reference, pred: np.ndarray, loss: float) -> tuple[bool, str, bool]:
    """(selectable, note, agrees with its sklearn source)."""
    notes = [cand.note] if cand.note else []
    if cand.source is not None:
        fidelity = _fidelity(cand, rows, ref, pred)
        if fidelity < FIDELITY:
            return False, "; ".join(notes + [f"refused: ONNX agrees with its sklearn model on {fidelity:.2%} of rows"]), False
    passed, note = _within_budget("; ".join(notes), rows, ref, loss)
    return passed, note, cand.source is not None


def _within_budget(note: str, rows: _Rows, ref: _Reference, loss: float) -> tuple[bool, str]:
    if loss > rows.max_loss + 1e-6 * abs(ref.variant.quality) + 1e-12:  # float32 rounding is no loss
        bound = f"{rows.confidence:.0%} upper bound of loss {loss:.4f} > {rows.max_loss} on {len(rows.y)} selection rows"
        return False, "; ".join([n for n in (note, bound) if n])
    return True, note


def _fidelity(cand: _Candidate, rows: _Rows, ref: _Reference, pred: np.ndarray) -> float:
    """Share of rows where the graph agrees with the sklearn model it came from.
    A classifier row on the decision boundary (its two top sklearn probabilities within
    BOUNDARY) counts as agreeing: float32 preprocessing and sums may tip it either way, and
    a tree ensemble moves in steps of about 1/n_trees there."""
    native = cand.native
    if native is not None:
        source = native.pred
    elif cand.source is not None:
        source = cand.source.predict(rows.X)
    else:
        raise ValueError(f"candidate {cand.name} has neither native scores nor its sklearn source")
    if rows.task == "regression":
        return _agreement(rows.task, source, pred, ref.tol)
    agree = np.asarray(pred) == np.asarray(source)
    proba = native.proba if native else getattr(cand.source, "predict_proba", lambda X: None)(rows.X)
    if proba is not None and proba.shape[1] > 1:
        top2 = np.sort(proba, axis=1)[:, -2:]
        agree |= (top2[:, 1] - top2[:, 0]) <= BOUNDARY
    return float(np.mean(agree))


def _reason(original: Variant, variants: tuple[Variant, ...], chosen: Variant | None, rows: _Rows) -> str:
    where = f"{len(rows.y)} selection rows of the validation split"
    if chosen is None:
        failures = "; ".join(f"{v.name}: {v.note}" for v in variants)
        return f"no ONNX variant within max_quality_loss={rows.max_loss} on {where}, keep the sklearn model ({failures})"
    return (f"{chosen.name}: {original.size_bytes / chosen.size_bytes:.1f}x smaller "
            f"({original.size_bytes} -> {chosen.size_bytes} bytes), single-row p50 "
            f"{original.p50_ms:.3f} -> {chosen.p50_ms:.3f} ms, {chosen.metric} "
            f"{original.metric_value:.4f} -> {chosen.metric_value:.4f} on {where} "
            f"({rows.confidence:.0%} upper bound of loss {chosen.loss_bound:.4f}, max {rows.max_loss})")


# --------------------------------------------------------------------------- candidates


def _convert(name: str, model: BaseEstimator, note: str, numerical, categorical) -> _Candidate | Skipped:
    try:
        return _Candidate(name, to_onnx_model(model, numerical, categorical), model, note)
    except Exception as exc:  # skl2onnx raises many types for unsupported models
        return Skipped(name, f"skl2onnx failed: {type(exc).__name__}: {exc}")


def _quantized(base: _Candidate) -> _Candidate | Skipped:
    try:
        return _Candidate("onnx_int8", quantize_int8(base.onnx_model), None, "int8 dynamic quantization")
    except NotQuantizable as exc:
        return Skipped("onnx_int8", str(exc))


def _validation(model, frame, target, columns, task, metric, max_loss, seed) -> _Validation:
    if len(frame) > MAX_PRUNE_ROWS:
        frame = frame.sample(MAX_PRUNE_ROWS, random_state=seed)
    X = model[:-1].transform(frame[columns])
    tolerances = tuple(sorted({0.0, max_loss / 4, max_loss / 2}))
    return _Validation(model, frame[columns], X, frame[target].to_numpy(), task, metric, tolerances)


def _candidates_of(strategy: str, build: BuildRows, taken: set[str]) -> list[tuple[str, BaseEstimator, str] | Skipped]:
    """A strategy's candidates, each name once; a strategy that fails is a Skipped with the reason."""
    try:
        made = list(COMPRESSORS.get(strategy)().candidates(build))
    except Exception as exc:  # a plug-in's (or a moved sklearn attribute's) error must not fail the retrain
        return [Skipped(strategy, f"{strategy} failed: {type(exc).__name__}: {exc}")]
    found: list[tuple[str, BaseEstimator, str] | Skipped] = []
    for candidate in made:
        if not isinstance(candidate, Skipped) and candidate[0] in taken:
            found.append(Skipped(candidate[0], f"{strategy}: another candidate is already named {candidate[0]!r}"))
            continue
        if not isinstance(candidate, Skipped):
            taken.add(candidate[0])
        found.append(candidate)
    return found


def _prune(val: _Validation) -> list[tuple[str, BaseEstimator, str] | Skipped]:
    final = val.model.steps[-1][1]
    family = (_prune_forest if isinstance(final, FORESTS) else _prune_boosting if isinstance(final, BOOSTERS)
              else _prune_linear if hasattr(final, "coef_") else None)
    if family is None:
        return [Skipped("prune", f"no pruning strategy for {type(final).__name__}")]
    try:
        found: list[tuple[str, BaseEstimator, str] | Skipped] = list(family(val))
    except Exception as exc:  # private sklearn attributes move between versions: never crash
        return [Skipped("prune", f"{family.__name__} failed: {type(exc).__name__}: {exc}")]
    return found or [Skipped("prune", "no pruned candidate stays within half the loss budget on the build rows")]


def _smallest(curve: np.ndarray, floor: float) -> int | None:
    """Smallest size k (1-based) whose quality on the build rows reaches ``floor``."""
    hits = np.flatnonzero(curve >= floor - 1e-12)
    return int(hits[0]) + 1 if hits.size else None


def _with_final(model: Pipeline, final: BaseEstimator) -> Pipeline:
    return Pipeline([*model.steps[:-1], (model.steps[-1][0], final)])


# ------------------------------------------------------------------ forests


def _prune_forest(val: _Validation) -> list[tuple[str, BaseEstimator, str]]:
    forest = val.model.steps[-1][1]
    full = float(bounds.score(val.metric, val.y, forest.predict(val.X)))
    impurity = float(np.mean([t.tree_.impurity[0] for t in forest.estimators_]))
    found = {}
    for alpha in (0.0, *(f * impurity for f in CCP_FACTORS)):
        trees = _ccp(forest.estimators_, alpha) if alpha else list(forest.estimators_)
        if alpha and _nodes(trees) == _nodes(forest.estimators_):
            continue  # this alpha prunes nothing here
        outputs = _member_outputs(forest, trees, val.X)
        order = _greedy_order(outputs, _targets(forest, val.y))
        curve = _prefix_quality(forest, outputs, order, val)
        # Rungs where the build curve reaches the full forest (within each tolerance), which the
        # greedy order reaches early by overfitting the build rows; and fixed shares of the
        # trees, which do not lean on the curve at all. The SELECT rows judge them all.
        rungs = {_smallest(curve, full - tol) for tol in val.tolerances}
        rungs |= {max(1, round(len(order) * share)) for share in SHARES}
        for k in sorted(r for r in rungs if r is not None):
            if k == len(trees) and not alpha:
                continue
            name = f"prune_trees(k={k})" + (f"+ccp(alpha={alpha:.1e})" if alpha else "")
            subset = copy.copy(forest)
            subset.estimators_, subset.n_estimators = [trees[i] for i in order[:k]], k
            note = f"{k}/{len(trees)} trees, {_nodes(subset.estimators_)} nodes, build rows {abs(curve[k - 1]):.4f} vs {abs(full):.4f}"
            found[name] = (name, _with_final(val.model, subset), note)
    return list(found.values())


def _nodes(trees: list) -> int:
    return sum(t.tree_.node_count for t in trees)


def _ccp(trees: list, alpha: float) -> list:
    """Minimal cost-complexity pruning of already fitted trees (uses the impurities stored
    at fit time; sklearn's private DecisionTree._prune_tree), one tree per core at a time."""

    def prune(tree):
        tree = copy.deepcopy(tree)
        tree.ccp_alpha = alpha
        tree._prune_tree()
        return tree

    return _per_tree(prune, trees)


def _member_outputs(forest, trees: list, X) -> np.ndarray:
    """(trees, rows, outputs): class probabilities, or values as a single output."""
    X = X.to_numpy() if isinstance(X, pd.DataFrame) else X  # trees are fitted without names
    if is_classifier(forest):
        return np.stack(_per_tree(lambda t: t.predict_proba(X), trees)).astype(np.float32)
    return np.stack(_per_tree(lambda t: t.predict(X), trees)).astype(np.float32)[:, :, None]


def _per_tree(function: Callable, trees: list) -> list:
    """`function` over `trees` in order, on as many threads as there are cores (sklearn's tree
    code releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    from retrain.train import available_cores

    cores = available_cores()
    if cores == 1 or len(trees) < 2:
        return [function(t) for t in trees]
    with ThreadPoolExecutor(cores) as pool:
        return list(pool.map(function, trees))


def _targets(forest, y: np.ndarray) -> np.ndarray:
    if is_classifier(forest):
        return (y[:, None] == forest.classes_[None, :]).astype(np.float32)
    return y.astype(np.float32)[:, None]


def _greedy_order(outputs: np.ndarray, targets: np.ndarray) -> list[int]:
    """Forward selection minimising the Brier score (MSE for regression) of the average:
    smoother than accuracy, so it overfits validation less."""
    order, total, remaining = [], np.zeros_like(outputs[0]), list(range(len(outputs)))
    for k in range(1, min(len(outputs), MAX_GREEDY) + 1):
        mean = (total[None] + outputs[remaining]) / k
        loss = ((mean - targets[None]) ** 2).reshape(len(remaining), -1).mean(axis=1)
        best = remaining.pop(int(np.argmin(loss)))
        order.append(best)
        total += outputs[best]
    return order


def _prefix_quality(forest, outputs: np.ndarray, order: list[int], val: _Validation) -> np.ndarray:
    means = np.cumsum(outputs[order], axis=0) / np.arange(1, len(order) + 1)[:, None, None]
    pred = forest.classes_[means.argmax(axis=2)] if is_classifier(forest) else means[:, :, 0]
    return np.asarray(bounds.score(val.metric, val.y, pred))


# ------------------------------------------------------------------ boosting


def _prune_boosting(val: _Validation) -> list[tuple[str, BaseEstimator, str]]:
    booster = val.model.steps[-1][1]
    curve = np.array([bounds.score(val.metric, val.y, p) for p in booster.staged_predict(val.X)])
    found = {}
    rungs = {_smallest(curve, curve[-1] - tol) for tol in val.tolerances}
    rungs |= {max(1, round(len(curve) * share)) for share in SHARES}  # as for forests
    for k in sorted(r for r in rungs if r is not None and r < len(curve)):
        note = f"{k}/{len(curve)} stages, build rows {abs(curve[k - 1]):.4f} vs {abs(curve[-1]):.4f}"
        found[k] = (f"prune_stages(k={k})", _with_final(val.model, _first_stages(booster, k)), note)
    return list(found.values())


def _first_stages(booster, k: int):
    booster = copy.copy(booster)
    if hasattr(booster, "_predictors"):  # HistGradientBoosting*: n_iter_ is len(_predictors)
        booster._predictors = booster._predictors[:k]
    else:  # GradientBoosting*
        booster.estimators_, booster.n_estimators = booster.estimators_[:k], k
        booster.n_estimators_ = k
        booster.train_score_ = booster.train_score_[:k]
    return booster


# ------------------------------------------------------------------ linear models


def _prune_linear(val: _Validation) -> list[tuple[str, BaseEstimator, str] | Skipped]:
    """Magnitude pruning by input column: zero the coefficients of the columns with the
    smallest coefficient norm, then drop those columns from the pipeline, so the ONNX graph
    loses the inputs (zeroed coefficients alone would not shrink a dense tensor)."""
    if len(val.model.steps) != 2 or not isinstance(val.model.steps[0][1], ColumnTransformer):
        return [Skipped("prune_features", "needs Pipeline([ColumnTransformer, linear model])")]
    columns, linear = val.model.steps[0][1], val.model.steps[-1][1]
    slices = _input_slices(columns)
    if isinstance(slices, str):
        return [Skipped("prune_features", slices)]
    coef = np.asarray(linear.coef_)
    weakest = sorted(slices, key=lambda c: float(np.linalg.norm(coef[..., slices[c]])))
    curve = np.array([bounds.score(val.metric, val.y, _zeroed(linear, [slices[c] for c in weakest[:m]]).predict(val.X))
                      for m in range(len(weakest))])  # curve[m]: m weakest columns dropped
    found = {}
    for tol in val.tolerances:
        m = int(np.flatnonzero(curve >= curve[0] - tol - 1e-12)[-1])
        if m > 0:
            found[m] = _drop_columns(val, weakest[:m], slices)
    return list(found.values())


def _zeroed(linear, indices: list[np.ndarray]):
    linear = copy.copy(linear)
    linear.coef_ = np.array(linear.coef_, copy=True)
    for idx in indices:
        linear.coef_[..., idx] = 0.0
    return linear


def _widths(trans, columns: list) -> list[int] | None:
    """Output columns produced per input column, or None when not one-to-a-block."""
    if isinstance(trans, str):
        return [1 if trans == "passthrough" else 0] * len(columns)
    if isinstance(trans, OneHotEncoder):
        plain = trans.drop_idx_ is None and not trans._infrequent_enabled
        return [len(c) for c in trans.categories_] if plain else None
    if isinstance(trans, FunctionTransformer) and trans.func is None:
        return [1] * len(columns)
    if isinstance(trans, _ELEMENTWISE) and not getattr(trans, "add_indicator", False):
        return [1] * len(columns)
    if isinstance(trans, Pipeline):
        widths = [_widths(step, columns) for _, step in trans.steps]
        return widths[-1] if all(w == [1] * len(columns) for w in widths[:-1]) else None
    return None


def _input_slices(columns: ColumnTransformer) -> dict[str, np.ndarray] | str:
    """Input column -> positions of its outputs in the transformed matrix."""
    slices: dict[str, list[int]] = {}
    for name, trans, cols in columns.transformers_:
        if isinstance(trans, str) and trans == "drop":
            continue
        widths = _widths(trans, list(cols))
        if widths is None or not all(isinstance(c, str) for c in cols):
            return f"cannot map {name} ({type(trans).__name__}) outputs back to input columns"
        start = columns.output_indices_[name].start
        for col, width in zip(cols, widths):
            slices.setdefault(col, []).extend(range(start, start + width))
            start += width
        if start != columns.output_indices_[name].stop:
            return f"unexpected output width from {name}"
    return {c: np.array(idx, dtype=int) for c, idx in slices.items()}


def _subset(trans, keep: list[int]):
    """A fitted column-wise transformer restricted to the input columns ``keep``."""
    if isinstance(trans, str):
        return trans
    if isinstance(trans, Pipeline):
        return Pipeline([(name, _subset(step, keep)) for name, step in trans.steps])
    n_in, trans = trans.n_features_in_, copy.deepcopy(trans)
    if isinstance(trans, OneHotEncoder):
        trans.categories_ = [trans.categories_[i] for i in keep]
        trans._n_features_outs = [trans._n_features_outs[i] for i in keep]
    for attr, value in list(vars(trans).items()):
        if attr.endswith("_") and isinstance(value, np.ndarray) and value.ndim and value.shape[0] == n_in:
            setattr(trans, attr, value[keep])
    trans.n_features_in_ = len(keep)
    return trans


def _drop_columns(val: _Validation, drop: list[str], slices: dict[str, np.ndarray]):
    (ct_name, columns), (name, linear) = val.model.steps[0], val.model.steps[-1]
    specs, fitted, kept = [], {}, []
    for tname, trans, cols in columns.transformers_:
        keep = [i for i, c in enumerate(cols) if c not in drop]
        if tname == "remainder" or (isinstance(trans, str) and trans == "drop") or not keep:
            continue
        specs.append((tname, trans if isinstance(trans, str) else clone(trans), [cols[i] for i in keep]))
        fitted[tname] = _subset(trans, keep)
        kept += [slices[cols[i]] for i in keep]
    reduced_ct = ColumnTransformer(specs, remainder="drop", sparse_threshold=columns.sparse_threshold).fit(val.frame)
    reduced_ct.transformers_ = [(t, fitted.get(t, trans), cols) for t, trans, cols in reduced_ct.transformers_]
    reduced_ct.output_indices_, start = {}, 0
    for tname, trans, cols in reduced_ct.transformers_:
        width = sum(_widths(trans, list(cols)) or [0])
        reduced_ct.output_indices_[tname], start = slice(start, start + width), start + width
    reduced_lin = _zeroed(linear, [])
    reduced_lin.coef_ = np.asarray(linear.coef_)[..., np.concatenate(kept)]
    reduced_lin.n_features_in_ = reduced_lin.coef_.shape[-1]
    vars(reduced_lin).pop("feature_names_in_", None)  # the reduced columns feed it an array
    reduced = Pipeline([(ct_name, reduced_ct), (name, reduced_lin)])
    zeroed = _zeroed(linear, [slices[c] for c in drop]).predict(val.X)
    if _agreement(val.task, zeroed, reduced.predict(val.frame), 1e-6 * max(float(np.std(zeroed)), 1.0)) < 1.0:
        return Skipped("prune_features", "dropping columns changed predictions (unsupported transformer state)")
    note = f"dropped {len(drop)}/{len(slices)} input columns: {', '.join(drop)}"
    return f"prune_features(drop={len(drop)})", reduced, note
