"""Confidence bounds on how much better one model is than another on the same rows.

A promotion gate compares two models' primary metric on one holdout. The difference is
noisy (on 300 rows the standard error of an accuracy difference can exceed a 1-point
budget), so gates decide on a one-sided confidence bound, not on the point estimate.

The bound comes from a paired, studentized bootstrap (bootstrap-t): the holdout rows are
resampled with replacement and both models are scored on the same resample, so the
correlation between their errors (most rows are right or wrong for both) narrows the
interval as it should; each resample's difference is divided by its own standard error
(from the per-row influence values), so a resample that happens to hold few disagreeing
rows does not pass for a precise one. The plain percentile bootstrap passed a variant at
exactly the loss budget in 8-11 % of 500-1,000-row holdouts where the two models disagree
on 2 % of rows; bootstrap-t keeps that near the nominal 5 % (bench/gates.py, part 2).
`DRAWS` resamples, seeded, so the same holdout always gives the same decision.

Metrics are aggregates of per-row terms (accuracy: mean of right/wrong; RMSE: root of the
mean squared error; MAE: mean absolute error), so a resample is a reweighting of rows and
all it needs are the resampled means of five moments of the two models' terms. When the
rows take few distinct (term of a, term of b) pairs — always for accuracy — the resample is
drawn as multinomial counts of those pairs, which is exact and costs nothing per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

DRAWS = 4000
_FEW_PAIRS = 64  # distinct (a, b) row terms up to which counts are drawn instead of rows
_CHUNK_CELLS = 4_000_000  # resampled rows held in memory at once on the general path
_NORMAL_ROWS = 50_000  # above this many rows (of many distinct values) the bound is normal
_METRICS = ("accuracy", "rmse", "mae")


@dataclass(frozen=True)
class Gain:
    """How much better `a` is than `b` in the metric's higher-is-better sense (an RMSE that
    went down by 0.3 is a gain of +0.3), with one-sided bounds at `confidence`."""

    metric: str
    estimate: float
    lower: float  # P(true gain >= lower) = confidence
    upper: float  # P(true gain <= upper) = confidence
    confidence: float
    rows: int


def supported(metric: str) -> bool:
    return metric in _METRICS


def row_terms(metric: str, y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-row terms whose aggregate is the metric; `pred` may be (k, n) for k models."""
    if metric == "accuracy":
        return (np.asarray(pred) == np.asarray(y)).astype(np.float64)
    diff = np.asarray(pred, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    if metric == "rmse":
        return diff**2
    if metric == "mae":
        return np.abs(diff)
    raise ValueError(f"no confidence bound for metric {metric!r}; driftd bounds {list(_METRICS)}")


def aggregate(metric: str, mean_terms: np.ndarray | float) -> np.ndarray | float:
    """The metric from the mean of its row terms, higher-is-better (errors negated)."""
    if metric == "accuracy":
        return mean_terms
    if metric == "rmse":
        return -np.sqrt(mean_terms)
    return -mean_terms


def score(metric: str, y: np.ndarray, pred: np.ndarray) -> float | np.ndarray:
    """The metric, higher-is-better, along the last axis of `pred`."""
    return aggregate(metric, row_terms(metric, y, pred).mean(axis=-1))


def paired_gain(metric: str, y: np.ndarray, a: np.ndarray, b: np.ndarray, *, confidence: float,
                draws: int = DRAWS, seed: int = 0) -> Gain:
    """Gain of predictions `a` over predictions `b` on the same labelled rows `y`."""
    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence}")
    ta, tb = row_terms(metric, y, a), row_terms(metric, y, b)
    n = len(ta)
    if n == 0:
        raise ValueError("no labelled rows to compare the two models on")
    moments = np.stack([ta, tb, ta * ta, tb * tb, ta * tb], axis=1)  # (n, 5)
    estimates, ses = _gain_and_se(metric, moments.mean(axis=0, keepdims=True), n)
    estimate, se = float(estimates[0]), float(ses[0])
    if se == 0:  # the two models agree on every row's term: nothing to resample
        return Gain(metric, estimate, estimate, estimate, confidence, n)
    rows, counts = np.unique(moments, axis=0, return_counts=True)
    if len(rows) > _FEW_PAIRS and n > _NORMAL_ROWS:
        # Resampling every row would cost draws x n; at this size the studentized
        # difference is normal to well within the bootstrap's own noise.
        z = float(NormalDist().inv_cdf(confidence))
        return Gain(metric, estimate, estimate - z * se, estimate + z * se, confidence, n)
    gains, ses = _gain_and_se(metric, _resampled_means(moments, rows, counts, draws, np.random.default_rng(seed)), n)
    # A resample may hold none of the few rows where the models differ (spread 0): its standard
    # error is then taken as one such row's worth, the resolution of the estimate.
    t = (gains - estimate) / np.maximum(ses, _resolution(metric, ta, tb) / n)
    high = float(np.quantile(t, confidence, method="higher"))
    low = float(np.quantile(t, 1 - confidence, method="lower"))
    return Gain(metric, estimate, estimate - high * se, estimate - low * se, confidence, n)


def _resolution(metric: str, ta: np.ndarray, tb: np.ndarray) -> float:
    """The smallest non-zero change one row makes to the gain's influence values."""
    if metric == "rmse":
        ra, rb = np.sqrt(ta.mean()), np.sqrt(tb.mean())
        influence = tb / (2 * rb) - ta / (2 * ra) if ra > 0 and rb > 0 else tb - ta
    else:
        influence = ta - tb
    step = np.abs(influence - np.median(influence))
    return float(step[step > 0].min()) if np.any(step > 0) else 1.0


def _gain_and_se(metric: str, m: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gain of a over b and its standard error (delta method) from the means of the five
    moments (ta, tb, ta², tb², ta·tb), one row of means per resample."""
    ma, mb, maa, mbb, mab = m.T
    if metric == "rmse":  # gain = sqrt(mb) - sqrt(ma); influence tb/(2 rb) - ta/(2 ra)
        ra, rb = np.sqrt(ma), np.sqrt(mb)
        with np.errstate(divide="ignore", invalid="ignore"):
            second = np.nan_to_num(mbb / (4 * mb)) + np.nan_to_num(maa / (4 * ma)) - np.nan_to_num(mab / (2 * ra * rb))
        gain, spread = rb - ra, second - ((rb - ra) / 2) ** 2
    else:  # accuracy: a - b; mae: b - a (errors); the spread is the same
        gain = ma - mb if metric == "accuracy" else mb - ma
        spread = maa + mbb - 2 * mab - gain**2
    return gain, np.sqrt(np.maximum(spread, 0.0) / n)


def _resampled_means(moments: np.ndarray, rows: np.ndarray, counts: np.ndarray, draws: int,
                     rng: np.random.Generator) -> np.ndarray:
    n = len(moments)
    if len(rows) <= _FEW_PAIRS:
        drawn = rng.multinomial(n, counts / n, size=draws)  # (draws, distinct rows)
        return drawn @ rows / n
    chunk = max(1, _CHUNK_CELLS // n)
    out = np.empty((draws, moments.shape[1]))
    for start in range(0, draws, chunk):
        picked = rng.integers(0, n, size=(min(chunk, draws - start), n))
        out[start:start + len(picked)] = moments[picked].mean(axis=1)
    return out
