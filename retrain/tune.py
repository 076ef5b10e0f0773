"""A small, time-bounded hyper-parameter search around the champion's settings (`tune: true`).

Trial 0 is the champion's own parameters, so tuning can only pick something that beat them
on the validation split. Further trials are drawn (seeded) from a short list of values per
estimator family. The search stops after `max_trials` or when the next trial would overrun
`budget_seconds` — a retrain must finish, not explore.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from retrain.train import final_estimator, final_step_prefix, refit

MAX_TRIALS = 8
BUDGET_SECONDS = 300.0

# Values worth trying per estimator family; keys are the final estimator's class name.
_FOREST = {"n_estimators": [50, 100, 200], "max_depth": [None, 8, 12, 16], "min_samples_leaf": [1, 2, 5, 10], "max_features": ["sqrt", 0.5]}
SPACES: dict[str, dict[str, list[Any]]] = {
    "RandomForestClassifier": _FOREST,
    "RandomForestRegressor": _FOREST,
    "ExtraTreesClassifier": _FOREST,
    "ExtraTreesRegressor": _FOREST,
    "HistGradientBoostingClassifier": {"learning_rate": [0.03, 0.1, 0.2], "max_leaf_nodes": [15, 31, 63], "min_samples_leaf": [10, 20, 50], "l2_regularization": [0.0, 0.1, 1.0]},
    "HistGradientBoostingRegressor": {"learning_rate": [0.03, 0.1, 0.2], "max_leaf_nodes": [15, 31, 63], "min_samples_leaf": [10, 20, 50], "l2_regularization": [0.0, 0.1, 1.0]},
    "GradientBoostingClassifier": {"n_estimators": [50, 100, 200], "learning_rate": [0.05, 0.1, 0.2], "max_depth": [2, 3, 5]},
    "GradientBoostingRegressor": {"n_estimators": [50, 100, 200], "learning_rate": [0.05, 0.1, 0.2], "max_depth": [2, 3, 5]},
    "LogisticRegression": {"C": [0.01, 0.1, 1.0, 10.0]},
    "Ridge": {"alpha": [0.1, 1.0, 10.0, 100.0]},
    "Lasso": {"alpha": [0.001, 0.01, 0.1, 1.0]},
    "ElasticNet": {"alpha": [0.001, 0.01, 0.1, 1.0], "l1_ratio": [0.2, 0.5, 0.8]},
    "MLPClassifier": {"hidden_layer_sizes": [(32,), (64,), (64, 32)], "alpha": [1e-4, 1e-3, 1e-2]},
    "MLPRegressor": {"hidden_layer_sizes": [(32,), (64,), (64, 32)], "alpha": [1e-4, 1e-3, 1e-2]},
}

Scorer = Callable[[Any, pd.DataFrame], float]


@dataclass(frozen=True)
class Trial:
    number: int
    params: dict[str, Any]  # the changes from the champion's parameters ({} for trial 0)
    score: float  # on the validation split
    seconds: float


@dataclass(frozen=True)
class TuneResult:
    estimator: Any  # the best trial's fitted estimator
    params: dict[str, Any]
    score: float
    trials: tuple[Trial, ...]
    note: str  # why the search ended, for the run and the progress line


def search_space(estimator: Any) -> dict[str, list[Any]]:
    """The parameter grid for `estimator`'s final step, with its Pipeline prefix; {} if unknown."""
    space = SPACES.get(type(final_estimator(estimator)).__name__, {})
    prefix = final_step_prefix(estimator)
    return {f"{prefix}{name}": values for name, values in space.items()}


def tune(
    template: Any,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    *,
    features: list[str],
    target: str,
    score: Scorer,
    higher_is_better: bool,
    seed: int = 0,
    max_trials: int = MAX_TRIALS,
    budget_seconds: float = BUDGET_SECONDS,
    on_trial: Callable[[Trial], None] | None = None,
    cores: int | None = None,
) -> TuneResult:
    """Fit and score candidates on (train, validation); return the best one."""
    from sklearn.model_selection import ParameterSampler

    space = search_space(template)
    candidates: list[dict[str, Any]] = [{}]
    if space:
        candidates += list(ParameterSampler(space, n_iter=max_trials - 1, random_state=seed))
    started = time.perf_counter()
    trials: list[Trial] = []
    best: tuple[float, Any, dict[str, Any]] | None = None
    note = f"{len(candidates)} trials" if space else f"no search space for {type(final_estimator(template)).__name__}; kept its parameters"
    for number, params in enumerate(candidates):
        slowest = max((t.seconds for t in trials), default=0.0)
        if trials and time.perf_counter() - started + slowest > budget_seconds:
            note = f"stopped after {len(trials)} trials: the {budget_seconds:.0f} s tuning budget was reached"
            break
        trial_started = time.perf_counter()
        fitted = refit(template, train, features=features, target=target, seed=seed, params=params, cores=cores).estimator
        value = score(fitted, validation)
        trial = Trial(number, params, value, time.perf_counter() - trial_started)
        trials.append(trial)
        if on_trial is not None:
            on_trial(trial)
        if best is None or (value > best[0] if higher_is_better else value < best[0]):
            best = (value, fitted, params)
    assert best is not None  # trial 0 always runs
    return TuneResult(best[1], best[2], best[0], tuple(trials), note)
