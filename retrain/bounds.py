"""Confidence bounds on how much better one model is than another on the same rows.

A promotion gate compares two models' primary metric on one holdout. The difference is
noisy (on 300 rows the standard error of an accuracy difference can exceed a 1-point
budget), so gates decide on a one-sided confidence bound, not on the point estimate.

The bound comes from a paired bootstrap: the holdout rows are resampled with replacement
and both models are scored on the same resample, so the correlation between their errors
(most rows are right or wrong for both) narrows the interval as it should. Percentile
bounds; `DRAWS` resamples, seeded, so the same holdout always gives the same decision.

Metrics are aggregates of per-row terms (accuracy: mean of right/wrong; RMSE: root of the
mean squared error; MAE: mean absolute error), so a resample is a reweighting of rows. When
the rows take few distinct (term of a, term of b) pairs — always for accuracy — the resample
is drawn as multinomial counts of those pairs, which is exact and costs nothing per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DRAWS = 4000
_FEW_PAIRS = 64  # distinct (a, b) row terms up to which counts are drawn instead of rows
_CHUNK_CELLS = 4_000_000  # resampled rows held in memory at once on the general path
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
    terms = np.stack([row_terms(metric, y, a), row_terms(metric, y, b)], axis=1)  # (n, 2)
    n = len(terms)
    if n == 0:
        raise ValueError("no labelled rows to compare the two models on")
    estimate = float(aggregate(metric, terms[:, 0].mean()) - aggregate(metric, terms[:, 1].mean()))
    means = _resampled_means(terms, draws, np.random.default_rng(seed))  # (draws, 2)
    gains = aggregate(metric, means[:, 0]) - aggregate(metric, means[:, 1])
    lower, upper = np.quantile(gains, [1 - confidence, confidence])
    return Gain(metric, estimate, float(lower), float(upper), confidence, n)


def _resampled_means(terms: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    n = len(terms)
    pairs, counts = np.unique(terms, axis=0, return_counts=True)
    if len(pairs) <= _FEW_PAIRS:
        drawn = rng.multinomial(n, counts / n, size=draws)  # (draws, pairs)
        return drawn @ pairs / n
    chunk = max(1, _CHUNK_CELLS // n)
    out = np.empty((draws, 2))
    for start in range(0, draws, chunk):
        rows = rng.integers(0, n, size=(min(chunk, draws - start), n))
        out[start:start + len(rows)] = terms[rows].mean(axis=1)
    return out
