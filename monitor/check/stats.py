"""Vectorised drift statistics on a reference prepared once, and the per-feature tests.

The two statistics driftd calibrates are Evidently's defaults, computed here without pandas so
a null distribution of a few hundred windows costs milliseconds:

- normed Wasserstein (numerical): scipy's `wasserstein_distance(reference, window)` divided by
  `max(np.std(reference), 0.001)`, as `evidently...wasserstein_distance_norm` computes it;
- Jensen-Shannon distance (categorical): scipy's `jensenshannon` of the two category shares
  over the categories seen in either sample, natural log (maximum sqrt(ln 2)), as
  `evidently...jensenshannon` computes it for a categorical column.

tests/test_stats.py checks both equal to Evidently's stattest (rtol 1e-9) on the same rows.

Wasserstein-1 is the area between the two quantile functions. The reference's quantile function
is a step function whose integral is a prefix sum, so the distance of a sorted window of n
values costs O(n) after one O(log N) lookup per value (no merge with the N reference values):
for the window's i-th order statistic x_i on u in [(i-1)/n, i/n], |x_i - Q(u)| integrates to
prefix-sum differences split where Q crosses x_i. A bootstrap window drawn from the reference
needs no lookup at all: it is a sorted vector of reference indices.

Besides the distribution test each feature gets two count tests that the distance cannot see
(monitor.check.drift drops missing values before the distance, as Evidently does):
- missing: the share of null/NaN/inf values in the window against the reference's, one-sided
  (more missing than the reference is drift): Fisher's exact test (hypergeometric tail);
- unseen (categorical) / novelty (a constant numerical reference): the share of window values
  the reference never holds, against the reference's own resolution: Good-Turing's estimate of
  the unseen mass (the reference's singletons / its rows), at least the rule-of-three bound 3/N.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as _stats

# Evidently's floor on the reference's std (wasserstein_distance_norm.py).
NORM_FLOOR = 0.001


# --- numerical ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NumericalReference:
    """A numerical reference column's finite values, sorted: all a check keeps of it.

    The prefix sums and bootstrap counts the distances use are derived from `sorted` when a
    distance is computed (a cumulative sum of N values costs microseconds), not held: a daemon
    keeps one of these per column of every model (1,000 models x 13 columns x 20,000 rows)."""

    sorted: np.ndarray  # finite values, ascending (float64: the scores must equal Evidently's)
    center: float  # the median: centring keeps the prefix sums' rounding far below the distances
    norm: float  # Evidently's max(np.std(reference), 0.001), on the values in their original order
    two_valued: bool = False  # exactly two distinct values (a 0/1 flag): the distance is |share - p| x gap

    @property
    def rows(self) -> int:
        return len(self.sorted)

    @property
    def constant(self) -> bool:
        return self.rows == 0 or self.sorted[0] == self.sorted[-1]

    def prefix(self) -> np.ndarray:
        """Prefix sums of (sorted - center), length N + 1."""
        out = np.empty(self.rows + 1)
        out[0] = 0.0
        np.cumsum(self.sorted - self.center, out=out[1:])
        return out

    def last_le(self) -> np.ndarray:
        """last_le[j] = #{reference <= sorted[j]}: a bootstrap draw's count, no search."""
        return np.searchsorted(self.sorted, self.sorted, side="right")


def prepare_numerical(values: np.ndarray) -> NumericalReference:
    """`values`: the reference column's finite values in their original order."""
    values = np.asarray(values, dtype=np.float64)
    ordered = np.sort(values)
    center = float(ordered[len(ordered) // 2]) if len(ordered) else 0.0
    norm = max(float(np.std(values)), NORM_FLOOR) if len(values) else NORM_FLOOR
    distinct = int(np.count_nonzero(np.diff(ordered))) + 1 if len(ordered) else 0
    return NumericalReference(ordered, center, norm, distinct == 2)


def _prefix_at(ref: NumericalReference, prefix: np.ndarray, k: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """N * H(u) for u = (k + frac) / N, H the integral of the centred quantile function."""
    n_ref = ref.rows
    nxt = np.where(k < n_ref, ref.sorted[np.minimum(k, n_ref - 1)] - ref.center, 0.0)
    return np.asarray(prefix[k] + frac * nxt)


def _w1_sorted(ref: NumericalReference, x: np.ndarray, below: np.ndarray, prefix: np.ndarray | None = None) -> np.ndarray:
    """Wasserstein-1 between the reference and windows `x` (..., n), each row ascending;
    `below` (same shape) = #{reference <= x}; `prefix`: ref.prefix(), when the caller has it."""
    prefix = ref.prefix() if prefix is None else prefix
    n = x.shape[-1]
    big_n = ref.rows
    i = np.arange(n, dtype=np.int64)
    # u = a = i/n and b = (i+1)/n as integer position k and fraction in reference steps
    ka, fa = np.divmod(i * big_n, n)
    kb, fb = np.divmod((i + 1) * big_n, n)
    ha = _prefix_at(ref, prefix, ka, fa / n)
    hb = _prefix_at(ref, prefix, kb, fb / n)
    # c = clip(below / N, a, b): where Q(u) passes x
    lo = below * n < i * big_n
    hi = below * n > (i + 1) * big_n
    hc = np.where(lo, ha, np.where(hi, hb, prefix[np.clip(below, 0, big_n)]))
    c_n = np.where(lo, i * big_n / n, np.where(hi, (i + 1) * big_n / n, below.astype(np.float64)))  # N * c
    xc = x - ref.center
    # N * integral over [a, b] of |x - Q(u)| du, with Q <= x up to c and > x after
    total = xc * (c_n - i * big_n / n) - (hc - ha) + (hb - hc) - xc * ((i + 1) * big_n / n - c_n)
    return np.asarray(total.sum(axis=-1) / big_n)


def wasserstein(ref: NumericalReference, window: np.ndarray) -> float:
    """scipy's wasserstein_distance(reference, window) for a window of finite values."""
    x = np.sort(np.asarray(window, dtype=np.float64))
    if len(x) == 0 or ref.rows == 0:
        raise ValueError("the Wasserstein distance needs values on both sides")
    below = np.searchsorted(ref.sorted, x, side="right")
    return float(_w1_sorted(ref, x, below))


def normed_wasserstein(ref: NumericalReference, window: np.ndarray) -> float:
    """Evidently's normed Wasserstein score of the window."""
    return wasserstein(ref, window) / ref.norm


# Values per vectorised step of the bootstrap: its dozen temporaries stay in the CPU's cache
# (2M at a time made 400 draws of 2,048 rows take 73 ms, 100k at a time 28 ms).
_CHUNK = 100_000


def bootstrap_wasserstein(ref: NumericalReference, n: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Normed Wasserstein of `draws` windows of n rows drawn with replacement from the reference."""
    out = np.empty(draws)
    prefix, last_le = ref.prefix(), ref.last_le()
    chunk = max(1, _CHUNK // max(n, 1))
    for start in range(0, draws, chunk):
        b = min(chunk, draws - start)
        idx = rng.integers(0, ref.rows, size=(b, n))
        idx.sort(axis=1)
        out[start : start + b] = _w1_sorted(ref, ref.sorted[idx], last_le[idx], prefix)
    return out / ref.norm


# --- categorical ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CategoricalReference:
    categories: pd.Index  # the reference's categories (present values only)
    counts: np.ndarray  # rows per category
    singletons: int  # categories seen once: Good-Turing's unseen mass is singletons / rows

    @property
    def rows(self) -> int:
        return int(self.counts.sum())

    @property
    def shares(self) -> np.ndarray:
        return self.counts / self.rows


def value_counts(series: pd.Series) -> pd.Series:
    """Counts of the present values (NaN dropped), zero-count categories dropped."""
    counts = series.value_counts(dropna=True, sort=False)
    return counts[counts > 0]


def prepare_categorical(series: pd.Series) -> CategoricalReference:
    counts = value_counts(series)
    values = counts.to_numpy(dtype=np.int64)
    return CategoricalReference(pd.Index(counts.index), values, int((values == 1).sum()))


def _js(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """scipy.spatial.distance.jensenshannon along the last axis (natural log)."""
    p = p / p.sum(axis=-1, keepdims=True)
    q = q / q.sum(axis=-1, keepdims=True)
    m = (p + q) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(p > 0, p * np.log(p / m), 0.0)
        right = np.where(q > 0, q * np.log(q / m), 0.0)
    return np.asarray(np.sqrt(np.maximum(left.sum(axis=-1) + right.sum(axis=-1), 0.0) / 2.0))


@dataclass(frozen=True)
class WindowCategories:
    """A window's categorical counts aligned to the reference, and what the reference never saw."""

    counts: np.ndarray  # per reference category
    unseen: int  # present values whose category the reference does not hold

    @property
    def rows(self) -> int:
        return int(self.counts.sum()) + self.unseen


def window_categories(ref: CategoricalReference, series: pd.Series) -> tuple[WindowCategories, np.ndarray]:
    """The aligned counts, and the counts of each unseen category (for the distance)."""
    counts = value_counts(series)
    position = ref.categories.get_indexer(counts.index)
    aligned = np.zeros(len(ref.categories), dtype=np.int64)
    known = position >= 0
    aligned[position[known]] = counts.to_numpy()[known]
    extra = counts.to_numpy()[~known].astype(np.int64)
    return WindowCategories(aligned, int(extra.sum())), extra


def jensenshannon(ref: CategoricalReference, window: WindowCategories, unseen_counts: np.ndarray) -> float:
    """Evidently's Jensen-Shannon distance for a categorical column."""
    if window.rows == 0 or ref.rows == 0:
        raise ValueError("the Jensen-Shannon distance needs values on both sides")
    p = np.concatenate([ref.counts / ref.rows, np.zeros(len(unseen_counts))])
    q = np.concatenate([window.counts, unseen_counts]) / window.rows
    return float(_js(p, q))


def bootstrap_jensenshannon(ref: CategoricalReference, n: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    counts = rng.multinomial(n, ref.shares, size=draws)
    return _js(np.broadcast_to(ref.shares, counts.shape), counts / n)


# --- count tests ----------------------------------------------------------------------------


def missing_p_value(window_missing: int, window_rows: int, reference_missing: int, reference_rows: int) -> float:
    """One-sided Fisher exact test: is the window's missing share above the reference's?"""
    if window_missing == 0:
        return 1.0
    total_missing = reference_missing + window_missing
    return float(min(1.0, _stats.hypergeom.sf(window_missing - 1, reference_rows + window_rows, total_missing, window_rows)))


def novelty_rate(reference_rows: int, singletons: int = 0) -> float:
    """The share of values a window may hold that the reference never saw, with no drift: the
    Good-Turing unseen mass, at least the rule-of-three 95% bound when the reference saw none."""
    return min(1.0, max(singletons, 3) / max(reference_rows, 1))


def novelty_p_value(novel: int, window_rows: int, rate: float) -> float:
    """P(at least `novel` new values in `window_rows`) at the reference's novelty rate."""
    if novel == 0:
        return 1.0
    return float(_stats.binom.sf(novel - 1, window_rows, rate))
