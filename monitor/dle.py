"""Direct loss estimation (DLE): a regressor's MAE and RMSE on a window whose targets have not
arrived, from a small model of the champion's error fitted on the labelled reference.

Two gradient-boosted models learn, from the features and the champion's prediction, the
expected absolute error E[|y - ŷ| | x] and squared error E[(y - ŷ)² | x] (Poisson loss: a
mean of non-negative values, positive by construction). A window's estimated MAE is the mean
of the first over its rows; RMSE is the root of the mean of the second. Rows whose target has
arrived count with their realized error.

The band: each row's error varies around its expectation; on the reference (out of fold) the
variance of |e| and e² is about kappa times the squared expectation, so the window mean varies
by sqrt(kappa · Σ expectation²) / n. It covers the window's own noise, not a broken assumption.

Assumptions, and what breaks them (bench/estimation.py measures both):
- No concept shift: the error given x is as in the reference. If y's relation to x changes,
  the loss model cannot know; `estimation_errors` shows the gap once targets arrive.
- Windows stay where the reference has rows: far outside it, the trees extrapolate flat.
- The reference rows are not the champion's training rows (their errors are too small).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from monitor.estimation import Estimate, EstimatedQuality, EstimatorError, QualityEstimator
from monitor.threads import one_thread

MAX_LEVELS = 250  # HistGradientBoosting takes at most 255 categories; the rarest share "missing"
_FORMAT = 1


@dataclass(frozen=True, eq=False)
class DLE(QualityEstimator):
    kind: ClassVar[str] = "dle"
    filename: ClassVar[str] = "dle.joblib"

    numerical: tuple[str, ...]
    categorical: tuple[str, ...]
    prediction: str
    target: str | None
    levels: tuple[tuple[str, ...], ...]  # per categorical column, the reference's levels kept
    absolute: Any  # HistGradientBoostingRegressor: E[|e| | x, ŷ]
    squared: Any  # HistGradientBoostingRegressor: E[e² | x, ŷ]
    kappa_absolute: float  # Var(|e| | x) ≈ kappa · E[|e| | x]², measured out of fold on the reference
    kappa_squared: float
    reference_rows: int
    reference_quality: dict[str, float]
    sklearn_version: str

    @property
    def metrics(self) -> tuple[str, ...]:
        return ("mae", "rmse")

    def estimate(self, window: pd.DataFrame, *, use_labels: bool = True, confidence: float = 0.95, seed: int = 0) -> EstimatedQuality:
        features, predicted, truth, skipped = self._rows(window, labels=use_labels)
        n = len(predicted)
        if n == 0:
            raise EstimatorError(f"no row of the window has a usable {self.prediction!r}; nothing to estimate")
        with one_thread():
            absolute = np.clip(self.absolute.predict(features), 0, None)
            squared = np.clip(self.squared.predict(features), 0, None)
        known = np.isfinite(truth)
        error = truth - predicted
        absolute[known], squared[known] = np.abs(error[known]), error[known] ** 2
        z = _z(confidence)
        # known rows add no variance: their error is no longer uncertain
        sd_abs = math.sqrt(self.kappa_absolute * float(np.sum(absolute[~known] ** 2))) / n
        sd_sq = math.sqrt(self.kappa_squared * float(np.sum(squared[~known] ** 2))) / n
        mae, mse = float(absolute.mean()), float(squared.mean())
        labelled = int(known.sum())
        estimates = (
            Estimate("mae", mae, max(mae - z * sd_abs, 0.0), mae + z * sd_abs, confidence, n, labelled),
            Estimate("rmse", math.sqrt(mse), math.sqrt(max(mse - z * sd_sq, 0.0)), math.sqrt(mse + z * sd_sq), confidence, n, labelled),
        )
        return EstimatedQuality("dle", estimates, n, skipped)

    def realized(self, labelled: pd.DataFrame) -> dict[str, float]:
        _, predicted, truth, _ = self._rows(labelled, labels=True)
        error = (truth - predicted)[np.isfinite(truth)]
        if error.size == 0:
            return {}
        return {"mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error**2)))}

    def to_bytes(self) -> bytes:
        import joblib

        buffer = io.BytesIO()
        joblib.dump({"format": _FORMAT, "kind": self.kind, "estimator": self}, buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "DLE":
        import joblib
        import sklearn

        try:
            raw = joblib.load(io.BytesIO(data))
            estimator = raw["estimator"]
            if raw.get("kind") != cls.kind or raw.get("format") != _FORMAT or not isinstance(estimator, cls):
                raise ValueError(f"kind {raw.get('kind')!r} format {raw.get('format')!r}")
        except Exception as exc:  # unpickling raises anything a corrupt or foreign file provokes
            raise EstimatorError(f"not a DLE estimator file written by this driftd ({type(exc).__name__}: {exc}); refit it from the version's reference") from None
        if estimator.sklearn_version != sklearn.__version__:
            raise EstimatorError(
                f"the DLE estimator was saved with scikit-learn {estimator.sklearn_version}, this is {sklearn.__version__}; "
                "refit it from the version's reference (fit_dle)"
            )
        return estimator

    def _rows(self, frame: pd.DataFrame, *, labels: bool) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, int]:
        """The loss model's inputs, the prediction and the target (NaN where unknown), usable rows only."""
        needed = [*self.numerical, *self.categorical, self.prediction]
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise EstimatorError(f"the window lacks columns {missing}, which the DLE loss model reads; log every feature and the prediction")
        predicted = _numbers(frame[self.prediction], self.prediction)
        usable = np.isfinite(predicted)
        if labels and self.target is not None and self.target in frame.columns:
            truth = _numbers(frame[self.target], self.target)
        else:
            truth = np.full(len(frame), np.nan)
        features = _inputs(frame[usable], self.numerical, self.categorical, self.levels, self.prediction)
        return features, predicted[usable], truth[usable], int((~usable).sum())


def fit_dle(
    reference: pd.DataFrame,
    *,
    numerical: list[str],
    categorical: list[str],
    prediction: str,
    target: str,
    folds: int = 3,
    seed: int = 0,
) -> DLE:
    """Fit the loss models on the labelled reference (validation rows, not training rows)."""
    import sklearn

    needed = [*numerical, *categorical, prediction, target]
    missing = [c for c in needed if c not in reference.columns]
    if missing:
        raise EstimatorError(f"the reference lacks columns {missing}; DLE needs the features, prediction and target of every reference row")
    predicted = _numbers(reference[prediction], prediction)
    truth = _numbers(reference[target], target)
    keep = np.isfinite(predicted) & np.isfinite(truth)
    if keep.sum() < 200:
        raise EstimatorError(f"only {int(keep.sum())} reference rows have a prediction and a target; DLE needs at least 200 (thousands to be accurate)")
    rows = reference[keep]
    levels = tuple(_levels(rows[c]) for c in categorical)
    features = _inputs(rows, tuple(numerical), tuple(categorical), levels, prediction)
    error = truth[keep] - predicted[keep]
    absolute, squared = np.abs(error), error**2
    with one_thread():
        kappa_abs, kappa_sq = _kappas(features, absolute, squared, len(numerical), folds, seed)
        absolute_model = _loss_model(len(numerical), seed).fit(features, absolute)
        squared_model = _loss_model(len(numerical), seed).fit(features, squared)
    return DLE(
        numerical=tuple(numerical),
        categorical=tuple(categorical),
        prediction=prediction,
        target=target,
        levels=levels,
        absolute=absolute_model,
        squared=squared_model,
        kappa_absolute=kappa_abs,
        kappa_squared=kappa_sq,
        reference_rows=int(keep.sum()),
        reference_quality={"mae": float(absolute.mean()), "rmse": float(np.sqrt(squared.mean()))},
        sklearn_version=sklearn.__version__,
    )


def _loss_model(numerical: int, seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(
        loss="poisson",  # a conditional mean of non-negative values, positive by construction
        learning_rate=0.05,
        max_iter=300,
        max_leaf_nodes=15,
        min_samples_leaf=40,
        early_stopping=True,
        validation_fraction=0.15,
        n_iter_no_change=20,
        categorical_features="from_dtype",
        random_state=seed,
    )


def _kappas(features: pd.DataFrame, absolute: np.ndarray, squared: np.ndarray, numerical: int, folds: int, seed: int) -> tuple[float, float]:
    """Var(loss | x) / E[loss | x]², each pooled over the reference's out-of-fold predictions."""
    from sklearn.model_selection import KFold

    predicted_abs = np.empty_like(absolute)
    predicted_sq = np.empty_like(squared)
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(features):
        part = features.iloc[train]
        predicted_abs[test] = _loss_model(numerical, seed).fit(part, absolute[train]).predict(features.iloc[test])
        predicted_sq[test] = _loss_model(numerical, seed).fit(part, squared[train]).predict(features.iloc[test])
    return _kappa(absolute, predicted_abs), _kappa(squared, predicted_sq)


def _kappa(observed: np.ndarray, expected: np.ndarray) -> float:
    expected = np.clip(expected, 1e-12, None)
    return float(np.sum((observed - expected) ** 2) / np.sum(expected**2))


def _inputs(frame: pd.DataFrame, numerical: tuple[str, ...], categorical: tuple[str, ...], levels: tuple[tuple[str, ...], ...], prediction: str) -> pd.DataFrame:
    # positional names: user column names may be anything (spaces, dots, unicode, duplicates of "prediction")
    columns: dict[str, Any] = {}
    for i, c in enumerate(numerical):
        columns[f"n{i}"] = _numbers(frame[c], c)
    for i, (c, kept) in enumerate(zip(categorical, levels)):
        # levels outside the reference's kept set become missing, which the trees route as they learned
        text = frame[c].astype("string")
        columns[f"c{i}"] = pd.Categorical(text.where(text.isin(kept)), categories=list(kept))
    columns["prediction"] = _numbers(frame[prediction], prediction)
    return pd.DataFrame(columns, index=frame.index)


def _levels(series: pd.Series) -> tuple[str, ...]:
    counts = series.astype("string").value_counts(dropna=True)
    return tuple(sorted(counts.index[:MAX_LEVELS].tolist()))


def _numbers(series: pd.Series, column: str) -> np.ndarray:
    try:
        values = pd.to_numeric(series, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    except (TypeError, ValueError):
        raise EstimatorError(f"column {column!r} must hold numbers for DLE") from None
    values[~np.isfinite(values)] = np.nan
    return values


def _z(confidence: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2))
