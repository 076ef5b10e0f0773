"""Measuring a candidate on the SELECT rows: natively (its scikit-learn predictions) or as an
ONNX graph (quality, agreement with its source, loss bound, size and latency)."""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.pipeline import Pipeline

from retrain import bounds
from retrain.compress.variants import BOUNDARY, FIDELITY, LATENCY_BUDGET, MIN_CALLS, Skipped, Variant
from retrain.onnx_model import NotQuantizable, feeds, quantize_int8, run, session, to_onnx_model


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


def _rows(frame, target, columns, task, metric, max_loss, confidence, seed, calls, batch_rows) -> _Rows:
    rng = np.random.default_rng(seed)
    X = frame[columns]
    single = np.resize(rng.permutation(len(X)), calls)
    batch = X.iloc[np.resize(rng.permutation(len(X)), batch_rows)].reset_index(drop=True)
    return _Rows(X, frame[target].to_numpy(), batch, single, task, metric, max_loss, confidence)


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
