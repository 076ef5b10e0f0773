"""What compression produces and what a strategy implements: measured variants, the result,
the BUILD rows a strategy works on, and the `CompressionStrategy` plug-in interface."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np
import onnx
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler

from monitor.core.config import PluginConfig
from retrain.onnx_model import ML_OPSET

TASKS = ("binary_classification", "multiclass_classification", "regression")
STRATEGIES = ("onnx", "prune", "quantize")  # the built-in ones; plug-ins add theirs (monitor.core.plugins.COMPRESSORS)
# Share of rows on which an ONNX graph must agree with its sklearn source. Not 100%:
# ONNX compares float32 inputs with float32 split thresholds, so a row whose feature sits on a
# threshold may take the other branch; a broken conversion disagrees on far more than 1%.
FIDELITY = 0.99
BOUNDARY = 0.02  # probability gap under which a row sits on the decision boundary
CCP_FACTORS = (2e-4, 6e-4)  # ccp_alpha as a fraction of the mean root impurity of the trees
MAX_GREEDY = 128  # trees a greedy selection may pick
SHARES = (0.5, 0.25)  # shares of the (greedily ordered) trees or stages offered as rungs
MAX_PRUNE_ROWS = 20_000  # build rows used to choose what to prune
BUILD_SHARE = 0.5  # of the validation rows, the rest select
LATENCY_BUDGET, MIN_CALLS = 1.0, 20  # seconds and calls of a single-row latency measurement
FORESTS = (RandomForestClassifier, RandomForestRegressor, ExtraTreesClassifier, ExtraTreesRegressor)
BOOSTERS = (GradientBoostingClassifier, GradientBoostingRegressor,
            HistGradientBoostingClassifier, HistGradientBoostingRegressor)
_ELEMENTWISE = (StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler, SimpleImputer)


@dataclass(frozen=True)
class Variant:
    """One measured model, on the SELECT rows. ``quality`` is higher-is-better (the primary
    metric, errors negated); ``metric_value`` is what a person reads (RMSE positive)."""

    name: str
    size_bytes: int
    p50_ms: float
    p99_ms: float
    batch10k_ms: float
    quality: float
    agreement: float  # vs the uncompressed model: label agreement, or share within 1e-3 std
    passed: bool  # selectable: agrees with its source, loss bound within budget on SELECT rows
    note: str = ""
    max_abs_diff: float = 0.0  # vs the uncompressed model: probabilities, or values
    metric: str = "accuracy"
    loss_bound: float = 0.0  # upper confidence bound of the loss vs the uncompressed model
    lossless: bool = False  # the plain conversion, agreeing with the sklearn model
    converted: bool = True  # False: scored natively, never converted (size_bytes is then its pickle size)
    native_bytes: int = 0  # pickled size of its sklearn model (int8: scaled by its graph's shrink), ranks candidates

    @property
    def metric_value(self) -> float:
        from monitor.check.quality import higher_is_better

        return self.quality if higher_is_better(self.metric) else -self.quality


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
    lossless_model: onnx.ModelProto | None = None  # the plain conversion, when it agrees with sklearn
    build_rows: int = 0
    select_rows: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # where compress spent its time, by stage
    _plain: Callable[[], tuple[Variant, onnx.ModelProto | None]] | None = field(default=None, repr=False, compare=False)

    @property
    def lossless(self) -> Variant | None:
        return next((v for v in self.variants if v.lossless), None) if self.lossless_model is not None else None

    def with_lossless(self) -> CompressionResult:
        """This result with the plain conversion built and measured, when it was not already
        (the gate's fallback after the chosen lossy variant is refused). ``lossless`` stays
        None when the graph does not agree with the sklearn model."""
        if self.lossless_model is not None or self._plain is None:
            return self
        started = time.perf_counter()
        variant, graph = self._plain()
        variants = tuple(variant if v.name == variant.name else v for v in self.variants)
        seconds = {**self.seconds, "lossless fallback": time.perf_counter() - started}
        return replace(self, variants=variants, lossless_model=graph if variant.lossless else None, seconds=seconds,
                       _plain=None)

    def serving(self, variant: Variant | None) -> CompressionResult:
        """This result with `variant` (the chosen or the lossless one; None: sklearn) serving."""
        if variant is None:
            return replace(self, chosen=None, onnx_model=None)
        if self.chosen is not None and variant.name == self.chosen.name:
            return self
        if self.lossless is not None and variant.name == self.lossless.name:
            return replace(self, chosen=variant, onnx_model=self.lossless_model)
        raise ValueError(f"{variant.name} is neither the chosen nor the lossless variant")


@dataclass(frozen=True)
class BuildRows:
    """What a strategy builds its candidates on: the BUILD half of the validation rows."""

    model: Pipeline  # the fitted model as one pipeline over the monitored columns (last step: the estimator)
    frame: pd.DataFrame  # the build rows' feature columns
    X: object  # the build rows after every step but the last
    y: np.ndarray
    task: str
    metric: str  # the task's primary metric, higher-is-better via retrain.bounds.score
    tolerances: tuple[float, ...]  # losses a candidate may have on these rows: 0, 1/4 and 1/2 of the budget


_Validation = BuildRows  # the name the pruning code below was written with


class CompressionStrategy:
    """A way to make smaller scikit-learn models from the fitted one (`retrain.compression`).

    `candidates` returns (name, fitted sklearn model, note) triples built on the BUILD rows, or
    Skipped with the reason. Every candidate then goes the built-in ones' way: scored natively
    on the SELECT rows, converted to ONNX (and checked against its sklearn source) only when
    it is the smallest within the loss budget, and gated on the holdout like any variant. A
    package adds a strategy through the `driftd.compressors` entry-point group (monitor.core.plugins);
    exceptions it raises are reported as a Skipped, never as a failed retrain."""

    config_model: ClassVar[type[PluginConfig]] = PluginConfig  # strategies take no settings yet

    def candidates(self, build: BuildRows) -> Sequence[tuple[str, BaseEstimator, str] | Skipped]:
        raise NotImplementedError(f"{type(self).__name__} must implement candidates()")
