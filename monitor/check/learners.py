"""The multivariate test's learners: each tells window rows from reference rows (higher score:
more window-like). `LEARNERS` maps `drift.multivariate.learner` to its class."""

from __future__ import annotations

import importlib
import warnings
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np


class DomainLearner(ABC):
    """Scores rows by how much they look like the window (higher: more window-like)."""

    name: ClassVar[str]
    library: ClassVar[str]  # the module `fit` imports lazily

    def __init__(self, numerical: tuple[str, ...], categorical: tuple[str, ...], seed: int) -> None:
        self.n_numerical = len(numerical)
        self.n_categorical = len(categorical)
        self.seed = seed

    @abstractmethod
    def fit(self, x: np.ndarray, y: np.ndarray) -> DomainLearner: ...

    @abstractmethod
    def score(self, x: np.ndarray) -> np.ndarray: ...


class GradientBoostingLearner(DomainLearner):
    """Shallow boosted trees on the features plus the numerical features' whitened principal
    components (of the training part's reference rows). Trees split one column at a time, so a
    correlation change is hard for them to see in the raw axes; along the principal components it
    becomes a change of variance, which they see (0.5 -> 0.3 correlation at n = 2,000: detected
    in 15% of windows without the components, 40% with them)."""

    name = "hgb"
    library = "sklearn.ensemble"
    rotate = True
    # 20 trees at rate 0.3 cost 40 ms a test against 53 ms for 30 at 0.2 (2,000-row windows, 11
    # features, one thread) with the same power within noise (bench/estimation.py power section,
    # 40 windows a change: flip 100/100%, corr 0.5 -> 0.3 40/42%, segment-conditional 95/98%,
    # sign of f3 follows f4 100/100%; null < 1%: 1/0% of 100); fewer lost power (10 at 0.5: 85%).
    iterations = 20
    learning_rate = 0.3

    def fit(self, x: np.ndarray, y: np.ndarray) -> GradientBoostingLearner:
        from sklearn.ensemble import HistGradientBoostingClassifier

        if self.rotate and self.n_numerical > 1:
            self._fit_rotation(x[y == 0, : self.n_numerical])
        design = self._design(x)
        mask = np.zeros(design.shape[1], bool)
        mask[self.n_numerical : self.n_numerical + self.n_categorical] = True
        self.model = HistGradientBoostingClassifier(
            max_iter=self.iterations,
            max_leaf_nodes=8,
            learning_rate=self.learning_rate,
            min_samples_leaf=40,
            early_stopping=False,  # a fixed small model: cheap, and no inner split of the data
            categorical_features=mask if self.n_categorical else None,
            random_state=self.seed,
        ).fit(design, y)
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        return self.model.decision_function(self._design(x))

    def _fit_rotation(self, numbers: np.ndarray) -> None:
        with warnings.catch_warnings():  # an all-missing column: centre 0, spread 1
            warnings.simplefilter("ignore", RuntimeWarning)
            self.centre = np.nan_to_num(np.nanmean(numbers, axis=0))
            spread = np.nan_to_num(np.nanstd(numbers, axis=0))
        self.spread = np.where(spread > 0, spread, 1.0)
        standard = self._standard(numbers)
        values, vectors = np.linalg.eigh(np.cov(standard, rowvar=False))
        keep = values > 1e-9 * max(values.max(), 1e-300)  # constant columns add no direction
        self.rotation = vectors[:, keep] / np.sqrt(values[keep])

    def _standard(self, numbers: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(numbers), 0.0, (numbers - self.centre) / self.spread)

    def _design(self, x: np.ndarray) -> np.ndarray:
        if not hasattr(self, "rotation"):
            return x
        return np.hstack([x, self._standard(x[:, : self.n_numerical]) @ self.rotation])


class AxisGradientBoostingLearner(GradientBoostingLearner):
    """The same trees on the raw features only (for comparison: cheaper, blind-er to correlations)."""

    name = "hgb_axis"
    rotate = False


class LogisticLearner(DomainLearner):
    name = "logistic"
    library = "sklearn.linear_model"
    MAX_ONE_HOT = 20

    def fit(self, x: np.ndarray, y: np.ndarray) -> LogisticLearner:
        from sklearn.linear_model import LogisticRegression

        numbers = x[:, : self.n_numerical]
        with warnings.catch_warnings():  # an all-missing column: centre 0, scale 1
            warnings.simplefilter("ignore", RuntimeWarning)
            self.means = np.nan_to_num(np.nanmean(numbers, axis=0)) if numbers.size else np.zeros(0)
            scale = np.nanstd(numbers, axis=0) if numbers.size else np.zeros(0)
        self.scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        design = self._expand(x)
        self.centre = design.mean(axis=0)
        spread = design.std(axis=0)
        self.spread = np.where(spread > 0, spread, 1.0)
        self.model = LogisticRegression(C=1.0, max_iter=300).fit((design - self.centre) / self.spread, y)
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        return self.model.decision_function((self._expand(x) - self.centre) / self.spread)

    def _expand(self, x: np.ndarray) -> np.ndarray:
        numbers = x[:, : self.n_numerical]
        absent = np.isnan(numbers)
        standard = np.where(absent, 0.0, (numbers - self.means) / self.scale)
        i, j = np.triu_indices(self.n_numerical)
        parts = [standard, standard[:, i] * standard[:, j], absent.astype(np.float64)]
        for c in range(self.n_categorical):
            codes = x[:, self.n_numerical + c]
            codes = np.where(np.isnan(codes) | (codes >= self.MAX_ONE_HOT), self.MAX_ONE_HOT, codes).astype(int)
            parts.append(np.eye(self.MAX_ONE_HOT + 1)[codes])
        return np.hstack(parts)


LEARNERS: dict[str, type[DomainLearner]] = {cls.name: cls for cls in (GradientBoostingLearner, AxisGradientBoostingLearner, LogisticLearner)}


def preload_learner(learner: str) -> None:
    """Import the learner's library while the reference is prepared: importing scikit-learn's
    ensemble costs 0.2-0.5 s once per process, which the first check would otherwise pay."""
    importlib.import_module(LEARNERS[learner].library)
