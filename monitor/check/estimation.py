"""Label-free quality estimates: their result types, the estimator plug point, persistence, and
the comparison with realized quality once labels arrive.

Two estimators plug in (NannyML's methods, reimplemented on numpy/scikit-learn):
  cbpe  classifiers: accuracy, f1, roc_auc from calibrated scores      (monitor/check/cbpe.py)
  dle   regressors:  mae, rmse from a model of the champion's loss     (monitor/check/dle.py)

Both are fitted once on the champion's labelled reference and then applied to every window;
metric names are those of monitor/check/quality.py, so an estimate pairs with the realized value of
the same name. Both assume what they cannot see: no concept shift (P(y|x) as in the reference)
and, for cbpe, scores whose calibration on the reference still holds in the window. When labels
arrive, `estimation_errors` says how far off the estimate was on those rows and whether the
realized value fell inside the estimate's band — the signal that tells a user whether the
estimates can be trusted for this model.

Persistence: `save_estimator` writes one file per model version, meant to be logged as the run
artifact `driftd/estimator/<file>` next to `driftd/reference.parquet`:
  cbpe.json    plain JSON (calibrator thresholds or coefficients): safe to load, readable
  dle.joblib   joblib pickle of the estimator (two scikit-learn HistGradientBoostingRegressors):
               load only from a registry you control (the same trust boundary as the model);
               it records the scikit-learn version and refuses another one — refit from the
               reference (always stored with the version) instead.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

# The result types live in the core (the state store and the policy read them); re-exported here
# for the estimators and their callers.
from monitor.core.results import Estimate as Estimate
from monitor.core.results import EstimatedQuality as EstimatedQuality
from monitor.core.results import EstimationGap as EstimationGap


class EstimatorError(Exception):
    """An estimator cannot be fitted, applied or loaded; the message says what to do."""


class QualityEstimator(ABC):
    """Fitted on the labelled reference; estimates a window's quality from logged columns only."""

    kind: ClassVar[str]
    filename: ClassVar[str]
    target: str | None

    @property
    @abstractmethod
    def metrics(self) -> tuple[str, ...]: ...

    @abstractmethod
    def estimate(self, window: pd.DataFrame, *, use_labels: bool = True, confidence: float = 0.95, seed: int = 0) -> EstimatedQuality:
        """Estimate on every usable row; with `use_labels`, rows whose target is known count as
        they are (realized), the others by expectation."""

    @abstractmethod
    def realized(self, labelled: pd.DataFrame) -> dict[str, float]:
        """The same metrics computed from the labels, by the same definitions."""

    @abstractmethod
    def to_bytes(self) -> bytes: ...

    @classmethod
    @abstractmethod
    def from_bytes(cls, data: bytes) -> QualityEstimator: ...


def estimation_errors(estimator: QualityEstimator, window: pd.DataFrame, *, confidence: float = 0.95, seed: int = 0) -> tuple[EstimationGap, ...]:
    """How wrong the label-free estimate was on the window's labelled rows.

    The estimate is recomputed on exactly the labelled rows with their labels hidden, so a
    large gap (or a realized value outside the band) means the estimator's assumptions broke
    for this model (concept shift, calibration lost), not that other rows differ.
    """
    target = estimator.target
    if target is None or target not in window.columns:
        raise EstimatorError(f"the window has no target column {target!r}; join the labels before comparing")
    labelled = window[window[target].notna()]
    if labelled.empty:
        return ()
    estimated = estimator.estimate(labelled, use_labels=False, confidence=confidence, seed=seed)
    realized = estimator.realized(labelled)
    gaps = []
    for e in estimated.estimates:
        value = realized.get(e.metric)
        if value is None or math.isnan(value) or math.isnan(e.value):
            continue  # e.g. roc_auc with one class among the labelled rows
        gaps.append(EstimationGap(e.metric, e.value, value, e.lower, e.upper, e.rows))
    return tuple(gaps)


def estimation_errors_from(estimated: EstimatedQuality, realized: Mapping[str, float]) -> tuple[EstimationGap, ...]:
    """Pair an estimate stored earlier with realized values computed on the same rows later."""
    return tuple(
        EstimationGap(e.metric, e.value, realized[e.metric], e.lower, e.upper, e.rows)
        for e in estimated.estimates
        if e.metric in realized and not math.isnan(realized[e.metric])
    )


def fit_estimator(
    task: str,
    reference: pd.DataFrame,
    *,
    prediction: str,
    target: str,
    probability: str | Mapping[Any, str] | None = None,
    numerical: Sequence[str] = (),
    categorical: Sequence[str] = (),
    seed: int = 0,
) -> QualityEstimator:
    """The estimator for a model's task (monitor.core.config.Task), fitted on its labelled reference:
    CBPE for classifiers (from `probability`), DLE for regressors (from the features)."""
    if task == "regression":
        from monitor.check.dle import fit_dle

        return fit_dle(reference, numerical=list(numerical), categorical=list(categorical), prediction=prediction, target=target, seed=seed)
    if probability is None:
        raise EstimatorError("estimating a classifier's quality needs its logged probabilities; configure columns.probability")
    from monitor.check.cbpe import fit_cbpe

    return fit_cbpe(reference, prediction=prediction, probability=probability, target=target, seed=seed)


# --- persistence ------------------------------------------------------------------------


def _registry() -> dict[str, type[QualityEstimator]]:
    from monitor.check.cbpe import CBPE
    from monitor.check.dle import DLE

    return {cls.filename: cls for cls in (CBPE, DLE)}


def save_estimator(estimator: QualityEstimator, directory: Path) -> Path:
    """Write the estimator as `<directory>/<cbpe.json|dle.joblib>` (atomically) and return the path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / estimator.filename
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(estimator.to_bytes())
    partial.replace(path)
    return path


def load_estimator(path: Path) -> QualityEstimator:
    """Read a file written by `save_estimator`; the file name says which estimator it holds."""
    path = Path(path)
    cls = _registry().get(path.name)
    if cls is None:
        raise EstimatorError(f"{path} is not an estimator file; expected one of {sorted(_registry())}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EstimatorError(f"cannot read the estimator {path}: {exc}") from None
    return cls.from_bytes(data)
