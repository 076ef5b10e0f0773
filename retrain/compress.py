"""Recompression stage of the retrain pipeline.

``compress`` turns a fitted scikit-learn model into measured ONNX variants and picks the
smallest one whose primary metric on the HOLDOUT stays within ``max_quality_loss`` of the
uncompressed model (accuracy for classification, -RMSE for regression: higher is better).

Strategies, by model family (every variant is an ONNX graph; the plain conversion is
always built, it is the fallback and the base of int8):
- ``onnx``: skl2onnx conversion of the whole pipeline, checked against sklearn.
- ``prune``: forests -> greedy forward selection of trees on VALIDATION, optionally after
  cost-complexity pruning of every tree; boosting -> fewer stages; linear models ->
  drop the input columns whose coefficients are smallest (zeroed coefficients alone
  would not shrink a dense ONNX tensor). Each family offers a ladder of candidates: the
  smallest model within 0, 1/4 and 1/2 of the loss budget on VALIDATION (selection
  overfits validation, so it gets only half the budget); the gate uses the HOLDOUT.
- ``quantize``: onnxruntime int8 dynamic quantization where the graph has MatMul/Gemm
  (MLPs); tree and linear ONNX-ML graphs are skipped with the reason.
"""

from __future__ import annotations

import copy
import pickle
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import pandas as pd
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (ExtraTreesClassifier, ExtraTreesRegressor, GradientBoostingClassifier,
                              GradientBoostingRegressor, HistGradientBoostingClassifier,
                              HistGradientBoostingRegressor, RandomForestClassifier,
                              RandomForestRegressor)
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (FunctionTransformer, MaxAbsScaler, MinMaxScaler, OneHotEncoder,
                                   RobustScaler, StandardScaler)

from retrain.onnx_model import (ML_OPSET, TARGET_OPSET, NotQuantizable, check_convertible,
                                column_pipeline, feeds, log_onnx_model, onnx_predict,
                                quantize_int8, run, session, to_onnx_model)

__all__ = ["Variant", "Skipped", "CompressionResult", "compress", "check_convertible",
           "onnx_predict", "log_onnx_model", "TASKS", "STRATEGIES"]

TASKS = ("binary_classification", "multiclass_classification", "regression")
STRATEGIES = ("onnx", "prune", "quantize")
# Share of holdout rows on which an ONNX graph must agree with its sklearn source. Not 100%:
# ONNX compares float32 inputs with float32 split thresholds, so a row whose feature sits on a
# threshold may take the other branch; a broken conversion disagrees on far more than 1%.
FIDELITY = 0.99
BOUNDARY = 0.02  # probability gap under which a row sits on the decision boundary
CCP_FACTORS = (2e-4, 6e-4)  # ccp_alpha as a fraction of the mean root impurity of the trees
MAX_GREEDY = 128  # trees a greedy selection may pick
MAX_PRUNE_ROWS = 20_000  # validation rows used to choose what to prune
FORESTS = (RandomForestClassifier, RandomForestRegressor, ExtraTreesClassifier, ExtraTreesRegressor)
BOOSTERS = (GradientBoostingClassifier, GradientBoostingRegressor,
            HistGradientBoostingClassifier, HistGradientBoostingRegressor)
_ELEMENTWISE = (StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler, SimpleImputer)


@dataclass(frozen=True)
class Variant:
    """One measured model. ``quality`` is higher-is-better (accuracy, or -RMSE);
    ``metric_value`` is what a person reads (RMSE positive)."""

    name: str
    size_bytes: int
    p50_ms: float
    p99_ms: float
    batch10k_ms: float
    quality: float
    agreement: float  # vs the uncompressed model: label agreement, or share within 1e-3 std
    passed: bool
    note: str = ""
    max_abs_diff: float = 0.0  # vs the uncompressed model: probabilities, or values
    metric: str = "accuracy"

    @property
    def metric_value(self) -> float:
        return -self.quality if self.metric == "rmse" else self.quality


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


@dataclass(frozen=True)
class _Candidate:
    name: str
    onnx_model: onnx.ModelProto
    source: BaseEstimator | None  # sklearn model the graph was converted from, if any
    note: str = ""


@dataclass(frozen=True)
class _Holdout:
    X: pd.DataFrame
    y: np.ndarray
    batch: pd.DataFrame
    single: np.ndarray  # row positions for single-row latency
    task: str
    max_loss: float


@dataclass(frozen=True)
class _Reference:  # the uncompressed model on the holdout
    variant: Variant
    pred: np.ndarray
    proba: np.ndarray | None
    tol: float  # regression agreement tolerance


@dataclass(frozen=True)
class _Validation:  # what pruning decisions are made on
    model: Pipeline
    frame: pd.DataFrame
    X: object  # validation after every step but the last
    y: np.ndarray
    task: str
    tolerances: tuple[float, ...]


def compress(estimator: BaseEstimator, validation: pd.DataFrame, holdout: pd.DataFrame, *,
             target: str, numerical: list[str], categorical: list[str], task: str,
             strategies: Sequence[str], max_quality_loss: float, seed: int = 0,
             latency_calls: int = 200, batch_rows: int = 10_000) -> CompressionResult:
    """Measure the sklearn model and its ONNX variants on ``holdout``; choose the smallest
    variant within ``max_quality_loss`` (absolute, on the primary metric). Never raises for
    a model that cannot be converted or compressed: ``chosen`` is None and ``reason`` says why."""
    columns = [*numerical, *categorical]
    _check_arguments(estimator, validation, holdout, target, columns, task, strategies, max_quality_loss)
    hold = _holdout(holdout, target, columns, task, max_quality_loss, seed, latency_calls, batch_rows)
    ref = _measure_sklearn(estimator, hold)
    classes = tuple(_classes(estimator)) if task != "regression" else None
    empty = dict(original=ref.variant, variants=(), chosen=None, onnx_model=None,
                 target_opset=TARGET_OPSET, classes=classes)
    if not strategies:
        return CompressionResult(**empty, reason="no compression strategy enabled")
    unconvertible = check_convertible(estimator, numerical, categorical)
    if unconvertible:
        return CompressionResult(**empty, reason=f"not convertible to ONNX, keep the sklearn model: {unconvertible}")
    model = column_pipeline(estimator, numerical, categorical, validation)
    base = _convert("onnx", model, f"skl2onnx, target_opset={TARGET_OPSET}", numerical, categorical)
    if isinstance(base, Skipped):
        return CompressionResult(**empty, reason=f"not convertible to ONNX, keep the sklearn model: {base.reason}",
                                 skipped=(base,))
    found: list[_Candidate | Skipped] = [base]
    if "prune" in strategies:
        val = _validation(model, validation, target, columns, task, max_quality_loss, seed)
        found += [c if isinstance(c, Skipped) else _convert(*c, numerical, categorical) for c in _prune(val)]
    if "quantize" in strategies:
        found.append(_quantized(base))
    variants = tuple(_measure_onnx(c, hold, ref) for c in found if isinstance(c, _Candidate))
    skipped = tuple(s for s in found if isinstance(s, Skipped))
    chosen = _choose(variants)
    graph = next((c.onnx_model for c in found if isinstance(c, _Candidate) and chosen and c.name == chosen.name), None)
    return CompressionResult(ref.variant, variants, chosen, graph, TARGET_OPSET,
                             _reason(ref.variant, variants, chosen, max_quality_loss), skipped, classes)


# --------------------------------------------------------------------------- arguments


def _check_arguments(estimator, validation, holdout, target, columns, task, strategies, max_loss) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown:
        raise ValueError(f"unknown compression strategies {unknown}; known: {list(STRATEGIES)}")
    if max_loss < 0:
        raise ValueError(f"max_quality_loss must be >= 0, got {max_loss}")
    for label, frame in (("validation", validation), ("holdout", holdout)):
        missing = [c for c in [*columns, target] if c not in frame.columns]
        if missing:
            raise ValueError(f"{label} frame lacks columns {missing}")
        if frame.empty:
            raise ValueError(f"{label} frame is empty")
    if (task == "regression") == is_classifier(estimator):
        raise ValueError(f"task {task!r} does not match estimator {type(estimator).__name__}")


def _classes(estimator: BaseEstimator) -> np.ndarray:
    final = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    return np.asarray(final.classes_)


def _holdout(frame, target, columns, task, max_loss, seed, calls, batch_rows) -> _Holdout:
    rng = np.random.default_rng(seed)
    X = frame[columns]
    single = np.resize(rng.permutation(len(X)), calls)
    batch = X.iloc[np.resize(rng.permutation(len(X)), batch_rows)].reset_index(drop=True)
    return _Holdout(X, frame[target].to_numpy(), batch, single, task, max_loss)


# --------------------------------------------------------------------------- measuring


def _quality(task: str, y: np.ndarray, pred: np.ndarray) -> float:
    if task == "regression":
        return -float(np.sqrt(np.mean((np.asarray(pred, dtype=float) - y) ** 2)))
    return float(np.mean(np.asarray(pred) == y))


def _agreement(task: str, ref: np.ndarray, pred: np.ndarray, tol: float) -> float:
    if task == "regression":
        return float(np.mean(np.abs(np.asarray(pred, dtype=float) - ref) <= tol))
    return float(np.mean(np.asarray(pred) == ref))


def _single_row_ms(call: Callable[[int], object], n: int) -> tuple[float, float]:
    for k in range(min(10, n)):
        call(k)
    times = np.empty(n)
    for k in range(n):
        start = time.perf_counter()
        call(k)
        times[k] = time.perf_counter() - start
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def _batch_ms(call: Callable[[], object], repeats: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def _measure_sklearn(estimator: BaseEstimator, hold: _Holdout) -> _Reference:
    pred = estimator.predict(hold.X)
    proba = estimator.predict_proba(hold.X) if hold.task != "regression" and hasattr(estimator, "predict_proba") else None
    rows = [hold.X.iloc[[i]] for i in hold.single]
    p50, p99 = _single_row_ms(lambda k: estimator.predict(rows[k]), len(rows))
    batch = _batch_ms(lambda: estimator.predict(hold.batch))
    size = len(pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL))
    metric = "rmse" if hold.task == "regression" else "accuracy"
    variant = Variant("sklearn", size, p50, p99, batch, _quality(hold.task, hold.y, pred), 1.0, True,
                      "uncompressed (pickle size)", 0.0, metric)
    tol = 1e-3 * max(float(np.std(pred)), 1e-9) if hold.task == "regression" else 0.0
    return _Reference(variant, np.asarray(pred), proba, tol)


def _measure_onnx(cand: _Candidate, hold: _Holdout, ref: _Reference) -> Variant:
    sess = session(cand.onnx_model)
    feed = feeds(sess, hold.X)
    pred, proba = run(sess, feed)
    singles = [{name: value[i:i + 1] for name, value in feed.items()} for i in hold.single]
    p50, p99 = _single_row_ms(lambda k: sess.run(None, singles[k]), len(singles))
    batch_feed = feeds(sess, hold.batch)
    batch = _batch_ms(lambda: sess.run(None, batch_feed))
    quality = _quality(hold.task, hold.y, pred)
    passed, note = _gate(cand, hold, ref, pred, quality)
    diff = _max_abs_diff(ref, pred, proba)
    return Variant(cand.name, len(cand.onnx_model.SerializeToString()), p50, p99, batch, quality,
                   _agreement(hold.task, ref.pred, pred, ref.tol), passed, note, diff, ref.variant.metric)


def _max_abs_diff(ref: _Reference, pred: np.ndarray, proba: np.ndarray | None) -> float:
    if ref.proba is not None and proba is not None and proba.shape == ref.proba.shape:
        return float(np.max(np.abs(proba - ref.proba)))
    if ref.variant.metric == "rmse":
        return float(np.max(np.abs(np.asarray(pred, dtype=float) - ref.pred)))
    return float("nan")


def _gate(cand: _Candidate, hold: _Holdout, ref: _Reference, pred: np.ndarray, quality: float) -> tuple[bool, str]:
    notes = [cand.note] if cand.note else []
    if cand.source is not None:
        fidelity = _fidelity(cand, hold, ref, pred)
        if fidelity < FIDELITY:
            return False, "; ".join(notes + [f"refused: ONNX agrees with its sklearn model on {fidelity:.2%} of holdout rows"])
    loss = ref.variant.quality - quality
    if loss > hold.max_loss + 1e-6 * abs(ref.variant.quality) + 1e-12:  # float32 rounding is no loss
        return False, "; ".join(notes + [f"holdout loss {loss:.4f} > {hold.max_loss}"])
    return True, "; ".join(notes)


def _fidelity(cand: _Candidate, hold: _Holdout, ref: _Reference, pred: np.ndarray) -> float:
    """Share of holdout rows where the graph agrees with the sklearn model it came from.
    A classifier row on the decision boundary (its two top sklearn probabilities within
    BOUNDARY) counts as agreeing: float32 preprocessing and sums may tip it either way, and
    a tree ensemble moves in steps of about 1/n_trees there."""
    plain = cand.name == "onnx"
    source = ref.pred if plain else cand.source.predict(hold.X)
    if hold.task == "regression":
        return _agreement(hold.task, source, pred, ref.tol)
    agree = np.asarray(pred) == np.asarray(source)
    proba = ref.proba if plain else getattr(cand.source, "predict_proba", lambda X: None)(hold.X)
    if proba is not None and proba.shape[1] > 1:
        top2 = np.sort(proba, axis=1)[:, -2:]
        agree |= (top2[:, 1] - top2[:, 0]) <= BOUNDARY
    return float(np.mean(agree))


def _choose(variants: tuple[Variant, ...]) -> Variant | None:
    passed = [v for v in variants if v.passed]
    return min(passed, key=lambda v: (v.size_bytes, -v.quality, v.p50_ms)) if passed else None


def _reason(original: Variant, variants: tuple[Variant, ...], chosen: Variant | None, max_loss: float) -> str:
    if chosen is None:
        failures = "; ".join(f"{v.name}: {v.note}" for v in variants)
        return f"no ONNX variant within max_quality_loss={max_loss} on the holdout, keep the sklearn model ({failures})"
    return (f"{chosen.name}: {original.size_bytes / chosen.size_bytes:.1f}x smaller "
            f"({original.size_bytes} -> {chosen.size_bytes} bytes), single-row p50 "
            f"{original.p50_ms:.3f} -> {chosen.p50_ms:.3f} ms, holdout {chosen.metric} "
            f"{original.metric_value:.4f} -> {chosen.metric_value:.4f} (max loss {max_loss})")


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


def _validation(model, frame, target, columns, task, max_loss, seed) -> _Validation:
    if len(frame) > MAX_PRUNE_ROWS:
        frame = frame.sample(MAX_PRUNE_ROWS, random_state=seed)
    X = model[:-1].transform(frame[columns])
    tolerances = tuple(sorted({0.0, max_loss / 4, max_loss / 2}))
    return _Validation(model, frame[columns], X, frame[target].to_numpy(), task, tolerances)


def _prune(val: _Validation) -> list[tuple[str, BaseEstimator, str] | Skipped]:
    final = val.model.steps[-1][1]
    family = (_prune_forest if isinstance(final, FORESTS) else _prune_boosting if isinstance(final, BOOSTERS)
              else _prune_linear if hasattr(final, "coef_") else None)
    if family is None:
        return [Skipped("prune", f"no pruning strategy for {type(final).__name__}")]
    try:
        found = family(val)
    except Exception as exc:  # private sklearn attributes move between versions: never crash
        return [Skipped("prune", f"{family.__name__} failed: {type(exc).__name__}: {exc}")]
    return found or [Skipped("prune", "no pruned candidate stays within half the loss budget on validation")]


def _smallest(curve: np.ndarray, floor: float) -> int | None:
    """Smallest size k (1-based) whose validation quality reaches ``floor``."""
    hits = np.flatnonzero(curve >= floor - 1e-12)
    return int(hits[0]) + 1 if hits.size else None


def _with_final(model: Pipeline, final: BaseEstimator) -> Pipeline:
    return Pipeline([*model.steps[:-1], (model.steps[-1][0], final)])


# ------------------------------------------------------------------ forests


def _prune_forest(val: _Validation) -> list[tuple[str, BaseEstimator, str]]:
    forest = val.model.steps[-1][1]
    full = _quality(val.task, val.y, forest.predict(val.X))
    impurity = float(np.mean([t.tree_.impurity[0] for t in forest.estimators_]))
    found = {}
    for alpha in (0.0, *(f * impurity for f in CCP_FACTORS)):
        trees = _ccp(forest.estimators_, alpha) if alpha else list(forest.estimators_)
        if alpha and _nodes(trees) == _nodes(forest.estimators_):
            continue  # this alpha prunes nothing here
        outputs = _member_outputs(forest, trees, val.X)
        order = _greedy_order(outputs, _targets(forest, val.y))
        curve = _prefix_quality(forest, outputs, order, val)
        for tol in val.tolerances:
            k = _smallest(curve, full - tol)
            if k is None or (k == len(trees) and not alpha):
                continue
            name = f"prune_trees(k={k})" + (f"+ccp(alpha={alpha:.1e})" if alpha else "")
            subset = copy.copy(forest)
            subset.estimators_, subset.n_estimators = [trees[i] for i in order[:k]], k
            note = f"{k}/{len(trees)} trees, {_nodes(subset.estimators_)} nodes, validation {abs(curve[k - 1]):.4f} vs {abs(full):.4f}"
            found[name] = (name, _with_final(val.model, subset), note)
    return list(found.values())


def _nodes(trees: list) -> int:
    return sum(t.tree_.node_count for t in trees)


def _ccp(trees: list, alpha: float) -> list:
    """Minimal cost-complexity pruning of already fitted trees (uses the impurities stored
    at fit time; sklearn's private DecisionTree._prune_tree)."""
    pruned = []
    for tree in trees:
        tree = copy.deepcopy(tree)
        tree.ccp_alpha = alpha
        tree._prune_tree()
        pruned.append(tree)
    return pruned


def _member_outputs(forest, trees: list, X) -> np.ndarray:
    """(trees, rows, outputs): class probabilities, or values as a single output."""
    X = X.to_numpy() if isinstance(X, pd.DataFrame) else X  # trees are fitted without names
    if is_classifier(forest):
        return np.stack([t.predict_proba(X) for t in trees]).astype(np.float32)
    return np.stack([t.predict(X) for t in trees]).astype(np.float32)[:, :, None]


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
    if is_classifier(forest):
        return np.mean(forest.classes_[means.argmax(axis=2)] == val.y[None, :], axis=1)
    return -np.sqrt(np.mean((means[:, :, 0] - val.y[None, :]) ** 2, axis=1))


# ------------------------------------------------------------------ boosting


def _prune_boosting(val: _Validation) -> list[tuple[str, BaseEstimator, str]]:
    booster = val.model.steps[-1][1]
    curve = np.array([_quality(val.task, val.y, p) for p in booster.staged_predict(val.X)])
    found = {}
    for tol in val.tolerances:
        k = _smallest(curve, curve[-1] - tol)
        if k is not None and k < len(curve):
            note = f"{k}/{len(curve)} stages, validation {abs(curve[k - 1]):.4f} vs {abs(curve[-1]):.4f}"
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
    curve = np.array([_quality(val.task, val.y, _zeroed(linear, [slices[c] for c in weakest[:m]]).predict(val.X))
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
