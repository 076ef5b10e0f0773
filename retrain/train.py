"""Refit the champion's scikit-learn estimator on new data.

The challenger is `sklearn.base.clone` of the champion — the whole pipeline, preprocessing
included — so a retrain changes the data, not the modelling choices (tuning, when enabled,
searches around them). Every `random_state` is pinned to the retrain's seed so the same
data gives the same model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

PARAM_VALUE_LIMIT = 500  # MLflow rejects long param values; a repr this long says nothing anyway


@dataclass(frozen=True)
class Trained:
    estimator: Any
    seconds: float
    params: dict[str, str]  # flattened estimator params, ready for mlflow.log_params


def refit(template: Any, train: pd.DataFrame, *, features: list[str], target: str, seed: int = 0, params: dict[str, Any] | None = None) -> Trained:
    """A fresh clone of `template` (with `params` applied) fitted on `train`."""
    from sklearn.base import clone

    estimator = clone(template)
    if params:
        estimator.set_params(**params)
    seed_estimator(estimator, seed)
    started = time.perf_counter()
    estimator.fit(train[features], train[target])
    return Trained(estimator, time.perf_counter() - started, estimator_params(estimator))


def seed_estimator(estimator: Any, seed: int) -> None:
    """Pin every `random_state` in the (possibly nested) estimator to `seed`."""
    seeds = {name: seed for name in estimator.get_params(deep=True) if name == "random_state" or name.endswith("__random_state")}
    if seeds:
        estimator.set_params(**seeds)


def estimator_params(estimator: Any) -> dict[str, str]:
    """Scalar hyper-parameters of `estimator` (nested steps included), as strings.

    Sub-estimators themselves are skipped: their own parameters are listed individually."""
    params: dict[str, str] = {"estimator": type(estimator).__name__}
    final = final_estimator(estimator)
    if final is not estimator:
        params["estimator.final"] = type(final).__name__
    for name, value in sorted(estimator.get_params(deep=True).items()):
        if _is_structure(value):
            continue
        text = repr(value) if not isinstance(value, str) else value
        params[name] = text if len(text) <= PARAM_VALUE_LIMIT else text[: PARAM_VALUE_LIMIT - 1] + "…"
    return params


def _is_structure(value: Any) -> bool:
    """Sub-estimators and lists of (name, step) tuples: structure, not hyper-parameters."""
    if hasattr(value, "get_params"):
        return True
    return isinstance(value, (list, tuple)) and any(isinstance(v, tuple) or hasattr(v, "get_params") for v in value)


def final_estimator(estimator: Any) -> Any:
    """The last step of a Pipeline (recursively), or the estimator itself."""
    steps = getattr(estimator, "steps", None)
    return final_estimator(steps[-1][1]) if steps else estimator


def final_step_prefix(estimator: Any) -> str:
    """The `get_params` prefix of the final estimator, e.g. `classifier__` in a Pipeline."""
    steps = getattr(estimator, "steps", None)
    if not steps:
        return ""
    name, step = steps[-1]
    return f"{name}__{final_step_prefix(step)}"
