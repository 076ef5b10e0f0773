"""The label-free signals as a check uses them: the quality estimator (CBPE/DLE, monitor.check.estimation)
and the multivariate domain-classifier test (monitor.check.multivariate), prepared once per champion
version and applied to every window.

Where the estimator comes from, in order:
1. the champion version's run artifact `driftd/estimator/<cbpe.json|dle.joblib>`, fitted by the
   retrain (or baseline registration) on labelled rows the version was not trained on
   (validation + holdout), so a new champion is estimated from its first window;
2. else a refit on the version's reference rows (an adopted model, a reference file, an artifact
   written for other columns or another scikit-learn). Those rows are usually the training
   rows, on which a model looks more certain than it is: the estimate may then be optimistic,
   and the log says so.

Nothing here raises into a check: a signal that cannot be prepared or computed is left out,
with the reason in the check's details.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from monitor.check.estimation import EstimatedQuality, EstimationGap, EstimatorError, QualityEstimator, estimation_errors, fit_estimator
from monitor.core.config import ModelConfig
from monitor.core.results import Contribution, MultivariateSignal

log = logging.getLogger("driftd.estimates")

ARTIFACT = "artifact"
REFERENCE = "reference"


@dataclass(frozen=True)
class Signals:
    """What one champion version's checks estimate and test with; None parts are off or failed
    (the note says which and why)."""

    estimator: QualityEstimator | None = None
    estimator_from: str | None = None  # artifact | reference
    estimator_note: str | None = None
    domain: Any = None  # monitor.check.multivariate.DomainReference
    domain_note: str | None = None

    @property
    def needs_features(self) -> bool:
        """The estimator reads the features (DLE), not only the prediction and probability."""
        return self.estimator is not None and self.estimator.kind == "dle"


NO_SIGNALS = Signals()


# --- preparing, once per champion version ----------------------------------------------------


def probability_spec(model: ModelConfig) -> str | dict[str, str] | None:
    """The logged probability columns the classifier's estimator reads."""
    return dict(model.estimation.probabilities) if model.estimation.probabilities else model.columns.probability


def estimator_columns(model: ModelConfig) -> tuple[str, ...]:
    """Columns a window must carry for the estimate beyond the usual ones (per-class probabilities)."""
    return tuple(model.estimation.probabilities.values()) if model.estimation.enabled else ()


def fit_for(model: ModelConfig, frame: pd.DataFrame, seed: int = 0) -> QualityEstimator:
    """The estimator for `model`'s task, fitted on labelled rows holding its prediction (and probabilities)."""
    cols = model.columns
    if cols.target is None:
        raise EstimatorError(f"model {model.name!r} has no columns.target: nothing to learn the estimate from")
    if cols.target not in frame.columns:
        raise EstimatorError(f"the rows to fit the estimator of {model.name!r} lack the target column {cols.target!r}")
    probability: Any = probability_spec(model)
    if isinstance(probability, dict):
        probability = {_as_label(k, frame[cols.target]): v for k, v in probability.items()}
    return fit_estimator(
        model.task, frame, prediction=cols.prediction, target=cols.target, probability=probability,
        numerical=cols.numerical, categorical=cols.categorical, seed=seed,
    )  # fmt: skip


def incompatible(estimator: QualityEstimator, model: ModelConfig) -> str | None:
    """Why a stored estimator cannot serve `model` as configured now (None: it can)."""
    cols = model.columns
    expected = "dle" if model.task == "regression" else "cbpe"
    if estimator.kind != expected:
        return f"it is a {estimator.kind} estimator, the {model.task} model needs {expected}"
    if getattr(estimator, "prediction", None) != cols.prediction or estimator.target != cols.target:
        return "it reads other prediction/target columns than the configuration"
    if expected == "dle" and (tuple(cols.numerical), tuple(cols.categorical)) != (estimator.numerical, estimator.categorical):  # type: ignore[attr-defined]
        return "it was fitted on other feature columns than the configuration lists"
    if expected == "cbpe":
        spec = probability_spec(model)
        stored = estimator.probability  # type: ignore[attr-defined]
        columns = {stored} if isinstance(stored, str) else {c for _, c in stored}
        if (isinstance(spec, str) and columns != {spec}) or (isinstance(spec, dict) and not columns <= set(spec.values())):
            return "it reads other probability columns than the configuration"
    return None


def prepare_signals(model: ModelConfig, frame: pd.DataFrame, stored: Callable[[], QualityEstimator | None] | None = None,
                    tables: Mapping[str, np.ndarray] | None = None) -> Signals:
    """The estimator (the stored one when usable, else fitted on `frame`, the reference) and the
    multivariate test's encoded reference, for `model`'s current champion. `tables`: the drift
    tests' sorted numerical columns, which the multivariate reference shares instead of copying."""
    estimator, origin, note = None, None, None
    if model.estimation.enabled and model.columns.target:
        estimator, origin, note = _estimator(model, frame, stored)
    elif model.estimation.enabled:
        note = "no columns.target: quality cannot be estimated"
    domain, domain_note = None, None
    options = model.drift.multivariate
    if options.enabled:
        from monitor.check.learners import preload_learner
        from monitor.check.multivariate import MultivariateError, prepare_domain_reference

        try:
            domain = prepare_domain_reference(frame, model.columns.numerical, model.columns.categorical, tables=tables)
            preload_learner(options.learner)
        except MultivariateError as exc:
            domain_note = f"multivariate test off for this reference: {exc}"
            log.warning("%s: %s", model.name, domain_note)
    return Signals(estimator, origin, note, domain, domain_note)


def _estimator(model: ModelConfig, frame: pd.DataFrame,
               stored: Callable[[], QualityEstimator | None] | None) -> tuple[QualityEstimator | None, str | None, str | None]:
    why = "the champion has no estimator artifact"
    if stored is not None:
        try:
            found = stored()
        except EstimatorError as exc:  # another format or scikit-learn version: refit
            found, why = None, f"its estimator artifact is unusable ({exc})"
        if found is not None:
            reason = incompatible(found, model)
            if reason is None:
                return found, ARTIFACT, None
            why = f"its estimator artifact does not fit the configuration ({reason})"
    try:
        fitted = fit_for(model, frame)
    except EstimatorError as exc:
        note = f"quality not estimated: {exc}"
        log.warning("%s: %s", model.name, note)
        return None, None, note
    note = f"{why}: estimator refitted on the reference rows (if they are the training rows, estimates may be optimistic)"
    log.info("%s: %s", model.name, note)
    return fitted, REFERENCE, note


# --- applying, every window ---------------------------------------------------------------------


def estimate(signals: Signals, model: ModelConfig, window: pd.DataFrame, labelled: pd.DataFrame | None,
             seed: int) -> tuple[EstimatedQuality | None, str | None]:
    """The window's estimated quality; the rows whose label is known (logged with the prediction,
    or joined from `labelled`, the quality span's labelled rows) count as realized."""
    if signals.estimator is None:
        return None, None
    cols = model.columns
    frame = window
    if cols.target and cols.target not in frame.columns and labelled is not None and not labelled.empty:
        known = labelled.drop_duplicates(cols.id, keep="last").set_index(cols.id)[cols.target]
        frame = window.assign(**{cols.target: window[cols.id].map(known)})
    try:
        return signals.estimator.estimate(frame, confidence=model.estimation.confidence, seed=seed), None
    except (EstimatorError, ValueError) as exc:
        return None, f"quality not estimated: {exc}"


def errors(signals: Signals, model: ModelConfig, labelled: pd.DataFrame | None, seed: int) -> tuple[tuple[EstimationGap, ...], str | None]:
    """Estimated (labels hidden) minus realized on the champion's labelled rows."""
    if signals.estimator is None or labelled is None or labelled.empty:
        return (), None
    try:
        return estimation_errors(signals.estimator, labelled, confidence=model.estimation.confidence, seed=seed), None
    except (EstimatorError, ValueError) as exc:
        return (), f"estimation error not measured: {exc}"


def multivariate(signals: Signals, model: ModelConfig, window: pd.DataFrame, seed: int) -> tuple[MultivariateSignal | None, str | None]:
    if signals.domain is None:
        return None, None
    from monitor.check.multivariate import MultivariateError, domain_classifier_test

    options = model.drift.multivariate
    # Its p-value joins the model's Benjamini-Hochberg family (monitor.check.run): a rejected test
    # has p <= drift.false_alarm_rate, so that is where contributions are worth computing;
    # `drifted` here is provisional until the family decides.
    alpha = model.drift.false_alarm_rate
    try:
        found = domain_classifier_test(signals.domain, window, max_rows=options.max_rows, learner=options.learner,
                                       explain_below=alpha, seed=seed)
    except MultivariateError as exc:
        return None, f"multivariate test not run: {exc}"
    drifted = found.drifted(alpha, options.min_auroc)
    # The features that carry the change: shuffling the others costs the classifier only noise
    # (a correlation flip: 0.20-0.24 AUROC for the two features, under 0.015 for the rest).
    floor = 0.1 * max((c.auroc_drop for c in found.contributions), default=0.0)
    top = tuple(Contribution(c.feature, c.auroc_drop) for c in found.contributions if c.auroc_drop > 0 and c.auroc_drop >= floor) if drifted else ()
    return MultivariateSignal(found.auroc, found.p_value, alpha, drifted, found.window_rows, found.reference_rows,
                              found.learner, top, found.seconds), None


def conservative(estimate_: Any, higher_is_better: bool) -> float:
    """The side of the band nearest the champion: the best the realized value could plausibly be."""
    value = estimate_.upper if higher_is_better else estimate_.lower
    return estimate_.value if value is None or math.isnan(value) else value


def _as_label(key: str, target: pd.Series) -> Any:
    """A YAML key (always text) as the target column's labels are: 1 for "1" in a numeric column."""
    if pd.api.types.is_numeric_dtype(target.dtype):
        try:
            number = float(key)
        except ValueError:
            return key
        return int(number) if number.is_integer() else number
    return key
