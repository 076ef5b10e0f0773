"""Direct loss estimation (DLE): a regressor's MAE and RMSE on a window whose targets have not
arrived, from a small model of the champion's error fitted on the labelled reference.

Two gradient-boosted models learn, from the features and the champion's prediction, the
expected absolute error E[|y - ŷ| | x] and squared error E[(y - ŷ)² | x] (Poisson loss: a
mean of non-negative values, positive by construction). A window's estimated MAE is the mean
of the first over its rows; RMSE is the root of the mean of the second. Rows whose target has
arrived count with their realized error.

The band has two parts. The window's own noise: each row's error varies around its expectation;
on the reference (out of fold) the variance of |e| and e² is about kappa times the squared
expectation, so the window mean varies by sqrt(kappa · Σ expectation²) / n. The loss model's own
error (it learnt from a finite reference, and the window may sit where the reference is thin):
the k fold models, each fitted without one fold of the reference, disagree on the window's mean
loss; that spread, scaled to a model fitted on the whole reference ((k-1)/sqrt(k), exact for a
model that predicts the mean), is the loss model's relative error on this window. Neither covers
a broken assumption. (A band without the second part covered the realized MAE in 80% of the
bench's windows at 95% nominal: the loss model's error under covariate shift dominated.)

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

from monitor.check.estimation import EstimatorError, QualityEstimator
from monitor.core.results import Estimate, EstimatedQuality
from monitor.core.threads import one_thread

SPREAD_ROWS = 2_000
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
    folds_absolute: tuple[Any, ...]  # the same loss models fitted without one fold each
    folds_squared: tuple[Any, ...]
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
        sd_abs = math.hypot(
            math.sqrt(self.kappa_absolute * float(np.sum(absolute[~known] ** 2))) / n,
            self._model_error(self.folds_absolute, features, ~known, seed) * float(absolute[~known].sum()) / n,
        )
        sd_sq = math.hypot(
            math.sqrt(self.kappa_squared * float(np.sum(squared[~known] ** 2))) / n,
            self._model_error(self.folds_squared, features, ~known, seed) * float(squared[~known].sum()) / n,
        )
        mae, mse = float(absolute.mean()), float(squared.mean())
        labelled = int(known.sum())
        estimates = (
            Estimate("mae", mae, max(mae - z * sd_abs, 0.0), mae + z * sd_abs, confidence, n, labelled),
            Estimate("rmse", math.sqrt(mse), math.sqrt(max(mse - z * sd_sq, 0.0)), math.sqrt(mse + z * sd_sq), confidence, n, labelled),
        )
        return EstimatedQuality("dle", estimates, n, skipped)

    def _model_error(self, folds: tuple[Any, ...], features: pd.DataFrame, unknown: np.ndarray, seed: int) -> float:
        """The loss model's relative error on these rows: the fold models' spread (on at most
        SPREAD_ROWS of them: a relative spread needs no more)."""
        rows = np.flatnonzero(unknown)
        if rows.size == 0 or len(folds) < 2:
            return 0.0
        if rows.size > SPREAD_ROWS:
            rows = np.sort(np.random.default_rng(seed).choice(rows, SPREAD_ROWS, replace=False))
        part = features.iloc[rows]
        with one_thread():
            means = [float(np.clip(model.predict(part), 0, None).mean()) for model in folds]
        centre = float(np.mean(means))
        return float(np.std(means, ddof=1)) / centre * (len(folds) - 1) / math.sqrt(len(folds)) if centre > 0 else 0.0

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
    def from_bytes(cls, data: bytes) -> DLE:
        import joblib
        import sklearn

        try:
            raw = joblib.load(io.BytesIO(data))
            estimator = raw["estimator"]
            if raw.get("kind") != cls.kind or raw.get("format") != _FORMAT or not isinstance(estimator, cls):
                raise ValueError(f"kind {raw.get('kind')!r} format {raw.get('format')!r}")
        except Exception as exc:  # unpickling raises anything a corrupt or foreign file provokes
            raise EstimatorError(f"not a DLE estimator file written by this driftd ({type(exc).__name__}: {exc}); "
                                 "refit it from the version's reference") from None
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
        (kappa_abs, folds_abs), (kappa_sq, folds_sq) = (_fold_models(features, loss, len(numerical), folds, seed) for loss in (absolute, squared))
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
        folds_absolute=folds_abs,
        folds_squared=folds_sq,
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


def _fold_models(features: pd.DataFrame, loss: np.ndarray, numerical: int, folds: int, seed: int) -> tuple[float, tuple[Any, ...]]:
    """kappa (the loss's variance around its expectation relative to the expectation squared,
    pooled out of fold) and the fold models (for the loss model's own error on a window)."""
    from sklearn.model_selection import KFold

    out_of_fold = np.empty_like(loss)
    models = []
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(features):
        model = _loss_model(numerical, seed).fit(features.iloc[train], loss[train])
        out_of_fold[test] = model.predict(features.iloc[test])
        models.append(model)
    return _kappa(loss, out_of_fold), tuple(models)


def _kappa(observed: np.ndarray, expected: np.ndarray) -> float:
    expected = np.clip(expected, 1e-12, None)
    return float(np.sum((observed - expected) ** 2) / np.sum(expected**2))


def _inputs(frame: pd.DataFrame, numerical: tuple[str, ...], categorical: tuple[str, ...], levels: tuple[tuple[str, ...], ...],
            prediction: str) -> pd.DataFrame:
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
