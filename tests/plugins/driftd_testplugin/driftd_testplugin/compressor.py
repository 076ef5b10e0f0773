"""`testplugin-compressor`: a forest keeping every other tree — a crude strategy, but a real one.

Its candidate goes driftd's own way: scored on the SELECT rows, converted to ONNX and checked
only when chosen, gated on the holdout."""

from __future__ import annotations

import copy
from collections.abc import Sequence

from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline

from retrain.compress import BuildRows, CompressionStrategy, Skipped

NAME = "testplugin-every-other-tree"


class EveryOtherTree(CompressionStrategy):
    def candidates(self, build: BuildRows) -> Sequence[tuple[str, BaseEstimator, str] | Skipped]:
        final = build.model.steps[-1][1]
        trees = getattr(final, "estimators_", None)
        if not isinstance(trees, list) or len(trees) < 2:
            return [Skipped("testplugin-compressor", f"{type(final).__name__} is not a forest of at least 2 trees")]
        half = copy.copy(final)
        half.estimators_ = trees[::2]
        half.n_estimators = len(half.estimators_)
        model = Pipeline([*build.model.steps[:-1], (build.model.steps[-1][0], half)])
        return [(NAME, model, f"every other tree: {half.n_estimators} of {len(trees)}")]
