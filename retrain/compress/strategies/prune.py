"""`prune`: smaller scikit-learn models by family. Forests: greedy forward selection of trees,
optionally after cost-complexity pruning of every tree; boosting: fewer stages (linear models:
strategies/prune_linear.py). Each offers a ladder of rungs built on the BUILD rows."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, is_classifier
from sklearn.pipeline import Pipeline

from retrain import bounds
from retrain.compress.strategies.prune_linear import _prune_linear
from retrain.compress.variants import BOOSTERS, CCP_FACTORS, FORESTS, MAX_GREEDY, SHARES, Skipped, _Validation


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
