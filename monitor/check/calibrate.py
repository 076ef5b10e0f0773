"""From a drift score to a p-value: the score's null distribution at the window's size.

With no drift the window is one more sample of the reference's population. The null sample of
the statistic is `DRAWS` windows of n' rows drawn with replacement from the reference (the
bootstrap), each scored against the reference with the same vectorised statistic
(monitor.check.stats). Two corrections make that the null of the real comparison:

- Size: the window size n is bucketed to a geometric grid n' (factor sqrt 2, from 16 up to
  `MAX_DRAW_ROWS`), so a reference version needs a handful of null samples, cached per column
  and bucket.
- The reference's own noise: a real window and the reference are two independent samples
  (variance of the empirical CDFs' difference ~ 1/n + 1/N), a bootstrap window is compared
  with the very sample it was drawn from (~ 1/n'). Both statistics scale with the square
  root of that variance, so the null sample is multiplied by sqrt((1/n + 1/N) * n').

B = 400 draws cannot reach the p-values a family-wise budget of 0.5% across 20-60 tests
needs (about 1e-4), so far in the tail a smooth family fitted to the null sample gives the
p-value (its survival function), in the bulk the empirical exceedance share does:
- normed Wasserstein: log-normal on the positive scores (times their share), matched at their
  median and 95th percentile. Measured against true null windows (2,100 a cell; normal,
  lognormal, Poisson, zero-inflated, binary; n = 100, 1,000, 10,000): 0.2-1.7% below a nominal
  1%, 0-0.24% below 0.1%; fitted by moments it was 1.2-2.3% / up to 0.33%, and rejected
  nothing for a binary column; gamma on the distance or its square 0.8-2.1% / up to 0.48%;
- Jensen-Shannon: gamma on the squared distance, which is asymptotically a scaled chi-square
  with (categories - 1) degrees of freedom.
bench/false_alarms.py measures what this gives: false alerts per 30 days with the default
policy at n = 100 ... 10,000, and tests/test_stats.py the false-positive rate per test.

Why the grid stops at 2,048 rows: past it the statistics are in their square-root regime, so the
rescaling carries the null to any larger n, and the draws cost 5x less than at 10,000 (a 20-feature
check paid ~2.6 s of calibration per process at 10,000). bench/false_alarms.py at n = 10,000 with
the cap at 2,048: 0 of 600 null windows drifted; per-test shares below 1% / 0.1% of 0.3-1.9% / 0-0.11%
(at 10,000: 0.4-1.5% / 0-0.11%); power unchanged (100% in every row).
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable
from typing import Literal

import numpy as np
from scipy import stats as _stats

DRAWS = 400
MIN_DRAW_ROWS = 16
MAX_DRAW_ROWS = 2_048
# Below this many null scores at or above the observed one the empirical share is too coarse.
_EMPIRICAL_FROM = 20
_Z95 = float(_stats.norm.ppf(0.95))

Tail = Literal["lognormal", "gamma2"]


def bucket(n: int) -> int:
    """The grid size a window of n rows is calibrated at: the largest 16 * sqrt(2)^k <= n."""
    if n <= MIN_DRAW_ROWS:
        return max(n, 1)
    k = int(np.floor(2 * np.log2(n / MIN_DRAW_ROWS) + 1e-9))
    return min(int(round(MIN_DRAW_ROWS * 2 ** (k / 2))), MAX_DRAW_ROWS)


def scale(n: int, drawn: int, reference_rows: int) -> float:
    """Factor from a bootstrap window of `drawn` rows to a fresh window of n rows."""
    return float(np.sqrt((1.0 / n + 1.0 / reference_rows) * drawn))


def p_value(observed: float, null: np.ndarray, tail: Tail) -> float:
    """P(statistic >= observed) with no drift, from the scaled null sample."""
    if not np.isfinite(observed):
        return 0.0
    exceed = int(np.sum(null >= observed * (1 - 1e-12)))
    if exceed >= _EMPIRICAL_FROM or observed <= 0:
        return (1 + exceed) / (len(null) + 1) if observed > 0 else 1.0
    if tail == "lognormal":
        # Matched at the median and the 95th percentile of the positive scores, not by moments:
        # a discrete column's many near-zero scores (a binary feature's |share - p|) drag the
        # moments' log-spread up and the tail with it (measured: no rejection of a binary 10% -> 20%).
        positive = null[null > 0]
        if len(positive) < 20:
            return (1 + exceed) / (len(null) + 1)
        q50, q95 = np.quantile(positive, [0.5, 0.95])
        if not q95 > q50 > 0:
            return (1 + exceed) / (len(null) + 1)
        spread = (np.log(q95) - np.log(q50)) / _Z95
        share = len(positive) / len(null)
        return float(share * _stats.norm.sf((np.log(observed) - np.log(q50)) / spread))
    squared = null**2
    mean, var = float(squared.mean()), float(squared.var(ddof=1))
    if mean <= 0 or var <= 0:
        return (1 + exceed) / (len(null) + 1)
    return float(_stats.gamma.sf(observed**2, mean**2 / var, scale=var / mean))


class NullCache:
    """Bootstrap null samples of one reference version, per (column, bucket); thread-safe.

    Seeded from (version, column, bucket): re-checking a window gives the same p-value."""

    def __init__(self, version: str) -> None:
        self._version = version
        self._samples: dict[tuple[str, int], np.ndarray] = {}
        self._lock = threading.Lock()

    def null(self, column: str, n: int, reference_rows: int, draw: Callable[[int, int, np.random.Generator], np.ndarray]) -> np.ndarray:
        """The null sample for a window of n rows: `draw(rows, draws, rng)` scores bootstrap windows."""
        drawn = bucket(n)
        key = (column, drawn)
        with self._lock:
            sample = self._samples.get(key)
        if sample is None:
            rng = np.random.default_rng(zlib.crc32(f"{self._version}|{column}|{drawn}".encode()))
            sample = draw(drawn, DRAWS, rng)
            with self._lock:
                sample = self._samples.setdefault(key, sample)
        return sample * scale(n, drawn, reference_rows)
