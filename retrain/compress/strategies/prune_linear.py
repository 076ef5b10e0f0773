"""`prune` for linear models: drop the input columns whose coefficients are smallest, from the
pipeline itself, so the ONNX graph loses those inputs (zeroed coefficients alone would not
shrink a dense tensor)."""

from __future__ import annotations

import copy

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

from retrain import bounds
from retrain.compress.measure import _agreement
from retrain.compress.variants import _ELEMENTWISE, Skipped, _Validation


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
