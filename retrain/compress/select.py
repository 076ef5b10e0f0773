"""The selection core: split the validation rows, gather every strategy's candidates, score them
natively, convert the smallest passing ones, and choose (see retrain.compress)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, cast

import numpy as np
import onnx
import pandas as pd
from sklearn.base import BaseEstimator, is_classifier
from sklearn.pipeline import Pipeline

from monitor.core.config import Task
from monitor.core.plugins import COMPRESSORS
from retrain import bounds
from retrain.compress.measure import _convert, _measure_onnx, _measure_sklearn, _Native, _native, _quantized, _Reference, _Rows, _rows, _score_native
from retrain.compress.variants import BOOSTERS, BUILD_SHARE, FORESTS, MAX_PRUNE_ROWS, TASKS, BuildRows, CompressionResult, Skipped, Variant, _Validation
from retrain.onnx_model import TARGET_OPSET, check_convertible, column_pipeline


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
