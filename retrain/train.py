"""Refit the champion's scikit-learn estimator on new data.

The challenger is `sklearn.base.clone` of the champion — the whole pipeline, preprocessing
included — so a retrain changes the data, not the modelling choices (tuning, when enabled,
searches around them). Every `random_state` is pinned to the retrain's seed so the same
data gives the same model.

Training uses the cores it is given (`retrain.n_jobs`, else every core this process may run
on): every `n_jobs` parameter is raised to that for the fit — a forest's trees do not depend
on how many threads grew them — and OpenMP estimators (HistGradientBoosting) get as many
threads even where the daemon pins them to one. The fitted model keeps the champion's
`n_jobs`, so serving and the logged parameters are unchanged.
"""

from __future__ import annotations

import math
import os
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


def refit(template: Any, train: pd.DataFrame, *, features: list[str], target: str, seed: int = 0,
          params: dict[str, Any] | None = None, cores: int | None = None) -> Trained:
    """A fresh clone of `template` (with `params` applied) fitted on `train` with `cores`
    threads (default: `available_cores()`)."""
    from sklearn.base import clone
    from threadpoolctl import threadpool_limits

    estimator = clone(template)
    if params:
        estimator.set_params(**params)
    seed_estimator(estimator, seed)
    cores = cores or available_cores()
    kept = {name: value for name, value in estimator.get_params(deep=True).items() if name == "n_jobs" or name.endswith("__n_jobs")}
    started = time.perf_counter()
    with threadpool_limits(limits=cores, user_api="openmp"):
        estimator.set_params(**{name: cores for name in kept})
        try:
            estimator.fit(train[features], train[target])
        finally:
            estimator.set_params(**kept)
    return Trained(estimator, time.perf_counter() - started, estimator_params(estimator))


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity (taskset, cpusets), narrowed by a
    cgroup v2 CPU quota (a Kubernetes `limits.cpu`), which affinity does not show."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


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
