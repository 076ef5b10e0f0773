"""Score calibrators: map a model's score to the probability that the event happens, fitted on
labelled reference rows, applied to every window, stored as plain numbers.

  auto      isotonic or sigmoid, whichever has the lower 5-fold cross-validated Brier score on
            the reference (the default; see below).
  isotonic  monotone step-wise-linear map (scikit-learn's IsotonicRegression): no shape
            assumption, but noisy on small references.
  sigmoid   Platt scaling on the score's logit: two parameters, smooth, cannot fix a
            non-sigmoid distortion.
  none      the score as given, clipped to [0, 1]: for models already calibrated.

Why auto (bench/estimation.py, CBPE section: 6 models x 5 seeds x 9 windows of 2,000 rows, the
estimation error of accuracy, f1 and roc_auc averaged over models and metrics):

  reference rows   none     isotonic   sigmoid   auto
  2,000            0.0300   0.0114     0.0098    0.0095
  10,000           0.0300   0.0090     0.0091    0.0091

Calibration matters (uncalibrated, the worst model was off by 0.074). Isotonic is noisy on small
references; sigmoid cannot follow a distortion that is not sigmoid-shaped (tests/
test_estimation.py has one, where auto picks isotonic). On the bench's models auto mostly picked
sigmoid, isotonic for some seeds; for a squared-probability score with 10,000 rows it kept
sigmoid although isotonic was better there (0.0081 vs 0.0099 for accuracy): the Brier score
separates the two clearly only when the shape is clearly wrong.

A fitted calibrator is its thresholds or coefficients only, so it serialises to JSON and is
applied with numpy alone (no scikit-learn object crosses a process or version boundary).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

CalibratorKind = Literal["auto", "isotonic", "sigmoid", "none"]
CALIBRATORS: tuple[CalibratorKind, ...] = ("auto", "isotonic", "sigmoid", "none")
_EPS = 1e-6


@dataclass(frozen=True)
class Calibrator:
    kind: CalibratorKind
    x: tuple[float, ...] = ()  # isotonic: score thresholds (increasing)
    y: tuple[float, ...] = ()  # isotonic: probability at each threshold
    slope: float = 1.0  # sigmoid: p = 1 / (1 + exp(-(slope * logit(score) + intercept)))
    intercept: float = 0.0

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for `scores` (finite, in [0, 1])."""
        scores = np.asarray(scores, dtype=np.float64)
        if self.kind == "isotonic":
            # exactly IsotonicRegression.predict with out_of_bounds="clip"
            return np.interp(scores, self.x, self.y)
        if self.kind == "sigmoid":
            return _expit(self.slope * _logit(scores) + self.intercept)
        return np.clip(scores, 0.0, 1.0)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "x": list(self.x), "y": list(self.y), "slope": self.slope, "intercept": self.intercept}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibrator:
        return cls(data["kind"], tuple(data["x"]), tuple(data["y"]), float(data["slope"]), float(data["intercept"]))


def fit_calibrator(scores: np.ndarray, outcomes: np.ndarray, kind: CalibratorKind = "auto") -> Calibrator:
    """Fit P(outcome = 1 | score) on reference rows (`outcomes` 0/1)."""
    scores = np.asarray(scores, dtype=np.float64)
    outcomes = np.asarray(outcomes, dtype=np.float64)
    if kind not in CALIBRATORS:
        raise ValueError(f"unknown calibrator {kind!r}; use one of {list(CALIBRATORS)}")
    if kind == "auto":
        kind = choose_calibrator(scores, outcomes)
    if kind == "none":
        return Calibrator("none")
    if kind == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, outcomes)
        return Calibrator("isotonic", tuple(map(float, fitted.X_thresholds_)), tuple(map(float, fitted.y_thresholds_)))
    slope, intercept = _platt(_logit(scores), outcomes)
    return Calibrator("sigmoid", slope=slope, intercept=intercept)


def _platt(t: np.ndarray, y: np.ndarray, iterations: int = 50) -> tuple[float, float]:
    """Maximum-likelihood logistic regression of y on t (two parameters, Newton's method; a tiny
    ridge keeps it finite when the classes separate). scikit-learn's LogisticRegression gives
    the same answer ~20x slower, which matters for the bootstrap refits."""
    design = np.column_stack([t, np.ones_like(t)])
    beta = np.zeros(2)
    ridge = 1e-6 * len(t) * np.eye(2)
    for _ in range(iterations):
        p = _expit(design @ beta)
        gradient = design.T @ (y - p) - ridge @ beta
        hessian = (design * (p * (1 - p))[:, None]).T @ design + ridge
        step = np.linalg.solve(hessian, gradient)
        beta += step
        if np.abs(step).max() < 1e-10:
            break
    return float(beta[0]), float(beta[1])


def choose_calibrator(scores: np.ndarray, outcomes: np.ndarray, folds: int = 5, seed: int = 0) -> CalibratorKind:
    """isotonic or sigmoid, whichever has the lower cross-validated Brier score on these rows."""
    n = len(scores)
    if n < 2 * folds:
        return "sigmoid"
    fold = np.random.default_rng(seed).permutation(n) % folds
    loss = {}
    for kind in ("isotonic", "sigmoid"):
        squared = 0.0
        for f in range(folds):
            held = fold == f
            fitted = fit_calibrator(scores[~held], outcomes[~held], kind)
            squared += float(np.sum((fitted.apply(scores[held]) - outcomes[held]) ** 2))
        loss[kind] = squared / n
    return "isotonic" if loss["isotonic"] < loss["sigmoid"] else "sigmoid"


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def _expit(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))
