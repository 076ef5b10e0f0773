"""Multivariate drift: can a classifier tell the window's rows from the reference's?

Per-column tests see each marginal alone; a change in how features move together (a
correlation that flips, a segment whose mix changes while every total stays put) passes them
all. A domain classifier is trained to separate a reference sample from the window; if it ranks
held-out window rows above held-out reference rows better than chance, the joint distribution
moved. The effect size is its held-out AUROC (0.5: indistinguishable).

The p-value: the classifier is trained on part of the rows (a stratified random half by
default) and scores the other part, which it never saw. With no drift the held-out rows are
exchangeable between reference and window, so their AUROC is exactly the Mann-Whitney U
statistic under its null (mean 1/2, variance from the class sizes with the tie correction);
one-sided, as only AUROC > 1/2 is drift. The p-value is uniform under no drift
(bench/estimation.py measures the false-alarm rate at n = 500, 2,000, 10,000), so it joins the
per-feature p-values in the model's multiple-testing family (drift.false_alarm_rate) as one
more hypothesis.

Why one split and not k-fold cross-validation: the k held-out AUROCs are not independent under
the null — each fold's model learnt from the other folds' rows, so the chance differences they
share enter several folds (measured correlation 0.19–0.25, about 1/(k-1) for a linear learner).
Summing their z as if independent gave 10–15% false alarms at a nominal 5%; with the variance
corrected for that correlation, 5-fold had the same power as one 50/50 split (28% vs 29% for a
0.5 -> 0.35 correlation change at n = 2,000) at five times the cost. One split is exact and cheap.

Contributions: only when the test rejects (p below `explain_below`), each feature's importance is
the drop in held-out AUROC when that feature is shuffled among the held-out rows.

Learners (a registry; bench/estimation.py compares them on cost and power):
  hgb       HistGradientBoostingClassifier, 30 shallow trees, on the features and the numerical
            features' whitened principal components: any shape of change, categoricals and
            missing values natively; cost linear in the feature count (the default)
  hgb_axis  the same trees on the raw features only
  logistic  logistic regression on standardized numerical features, their squares and
            pairwise products, and one-hot categoricals: the sufficient statistics of
            means and covariances, strongest for correlation changes; cost quadratic in the
            numerical feature count
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from monitor.check.learners import LEARNERS, DomainLearner
from monitor.core.threads import one_thread

MAX_LEVELS = 250  # categorical levels kept per column (HistGradientBoosting takes at most 255)
MIN_ROWS = 50


class MultivariateError(ValueError):
    """The domain-classifier test cannot run on these inputs; the message says what to do."""


@dataclass(frozen=True)
class FeatureContribution:
    feature: str
    auroc_drop: float  # held-out AUROC lost when this feature is shuffled


@dataclass(frozen=True)
class MultivariateDrift:
    auroc: float  # held-out AUROC (the effect size)
    z: float
    p_value: float
    reference_rows: int
    window_rows: int
    learner: str
    contributions: tuple[FeatureContribution, ...]  # strongest first; empty unless the test rejected
    seconds: float

    def drifted(self, alpha: float, min_auroc: float = 0.5) -> bool:
        """Rejected at `alpha` alone (inside a multiple-testing family, pass the corrected alpha)
        and, optionally, separable enough to matter (AUROC ≥ `min_auroc`)."""
        return self.p_value < alpha and self.auroc >= min_auroc


_MISSING_LEVEL = 255  # a categorical value outside the kept levels, or missing (MAX_LEVELS < 255)


@dataclass(frozen=True)
class DomainReference:
    """The reference encoded once per champion version, compactly: a daemon holds one per model.

    A numerical value is held as its position in a table of the column's values in ascending
    order (uint16, or uint32 past 65,534 values), decoded back exactly: the table is the drift
    tests' own sorted column when the caller passes it (monitor.reference), so no value is held
    twice. A categorical value is the code of one of its column's most frequent levels (uint8).
    Missing values (and inf) take the largest code. Rows become floats only when a test draws
    them: 20,000 rows x 20 features hold 0.7 MB instead of 3.2 MB as a float64 matrix."""

    numerical: tuple[str, ...]
    categorical: tuple[str, ...]
    levels: tuple[tuple[str, ...], ...]
    tables: tuple[np.ndarray, ...]  # per numerical column: values, ascending (float64)
    positions: np.ndarray  # (rows, numerical): index into the column's table; dtype max = missing
    codes: np.ndarray  # (rows, categorical) uint8: level code; _MISSING_LEVEL = other or missing

    @property
    def features(self) -> tuple[str, ...]:
        return self.numerical + self.categorical

    @property
    def rows(self) -> int:
        return len(self.positions)

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        return _encode(frame, self.numerical, self.categorical, self.levels)

    def decode(self, rows: np.ndarray | slice) -> np.ndarray:
        """The reference rows as `encode` gives a frame's: numerical values, level codes, NaN for missing."""
        positions, codes = self.positions[rows], self.codes[rows]
        out = np.empty((len(positions), len(self.numerical) + len(self.categorical)))
        absent = np.iinfo(self.positions.dtype).max
        for j, table in enumerate(self.tables):
            at = positions[:, j]
            out[:, j] = np.where(at == absent, np.nan, table[np.minimum(at, len(table) - 1)] if len(table) else np.nan)
        for j in range(len(self.categorical)):
            at = codes[:, j]
            out[:, len(self.numerical) + j] = np.where(at == _MISSING_LEVEL, np.nan, at)
        return out

    def subset(self, rows: np.ndarray) -> DomainReference:
        return DomainReference(self.numerical, self.categorical, self.levels, self.tables, self.positions[rows], self.codes[rows])


def prepare_domain_reference(
    reference: pd.DataFrame,
    numerical: Sequence[str],
    categorical: Sequence[str] = (),
    *,
    max_rows: int = 50_000,
    seed: int = 0,
    tables: Mapping[str, np.ndarray] | None = None,
) -> DomainReference:
    """Encode (a seeded sample of at most `max_rows` rows of) the reference for every later test.

    `tables`: per numerical column, the sorted finite values of the whole reference (the drift
    tests' own, shared rather than copied); a column without one gets its own."""
    missing = [c for c in [*numerical, *categorical] if c not in reference.columns]
    if missing:
        raise MultivariateError(f"the reference lacks feature columns {missing}; register a reference holding every configured feature")
    if not numerical and not categorical:
        raise MultivariateError("the multivariate test needs at least one feature")
    if len(reference) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(len(reference), max_rows, replace=False))
        reference = reference.iloc[rows]
    if len(reference) < MIN_ROWS:
        raise MultivariateError(f"the reference has {len(reference)} rows; the multivariate test needs at least {MIN_ROWS}")
    levels = tuple(_levels(reference[c]) for c in categorical)
    matrix = _encode(reference, tuple(numerical), tuple(categorical), levels)
    given = dict(tables or {})
    columns = [_table(matrix[:, j], given.get(c)) for j, c in enumerate(numerical)]
    dtype = np.uint16 if max((len(t) for t, _ in columns), default=0) < np.iinfo(np.uint16).max else np.uint32
    positions = np.empty((len(matrix), len(numerical)), dtype=dtype)
    for j, (_, at) in enumerate(columns):
        positions[:, j] = np.where(at < 0, np.iinfo(dtype).max, at)
    cat = matrix[:, len(numerical) :]
    codes = np.where(np.isnan(cat), _MISSING_LEVEL, np.nan_to_num(cat)).astype(np.uint8)
    return DomainReference(tuple(numerical), tuple(categorical), levels, tuple(t for t, _ in columns), positions, codes)


def _table(values: np.ndarray, table: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """A column's value table and each value's position in it (-1: missing). The given table is
    used when it holds every value (then it is shared, not copied), else the column's own."""
    finite = np.flatnonzero(~np.isnan(values))
    order = finite[np.argsort(values[finite], kind="stable")]
    present = values[order]  # ascending: numpy's binary search then starts each key where the last ended
    at = np.searchsorted(table, present) if table is not None and len(table) else None
    if table is None or at is None or (len(present) and not np.array_equal(table[np.minimum(at, len(table) - 1)], present)):
        table = np.unique(present)
        at = np.searchsorted(table, present)
    positions = np.full(len(values), -1, dtype=np.int64)
    positions[order] = at
    return table, positions


def domain_classifier_test(
    reference: DomainReference,
    window: pd.DataFrame,
    *,
    max_rows: int | None = 5_000,
    reference_share: float = 0.1,
    learner: str = "hgb",
    test_share: float = 0.5,
    explain_below: float = 0.01,
    seed: int = 0,
) -> MultivariateDrift:
    """Test whether the window's joint distribution differs from the reference's.

    Both sides are capped at `max_rows` rows and at `reference_share` of the prepared reference
    (seeded samples; the reference side matches the window's size so the classes are balanced).
    The second cap keeps the p-value honest for a fixed reference: every check draws its
    reference rows from the same finite sample, whose chance quirks the window does not share,
    and that matters more as the window's share of the reference grows. Measured
    (bench/estimation.py --sections pool, 900 tests per learner and side of the cap): at a
    nominal 1%, 1.8% (hgb) and 1.5% (logistic) with windows of 20–50% of the reference, 0.9% and
    0.8% at 10% or less. The classifier learns on 1 - `test_share` of
    them and is judged on the rest. `seed` should vary per check (e.g. derived from the
    window's end) so that consecutive windows see different reference samples.
    """
    started = time.perf_counter()
    if learner not in LEARNERS:
        raise MultivariateError(f"unknown learner {learner!r}; use one of {sorted(LEARNERS)}")
    if not 0 < test_share < 1:
        raise MultivariateError(f"test_share must be between 0 and 1 (got {test_share})")
    missing = [c for c in reference.features if c not in window.columns]
    if missing:
        raise MultivariateError(f"the window lacks feature columns {missing}; the source must return every feature")
    rng = np.random.default_rng(seed)
    cap = int(reference.rows * reference_share)
    current = reference.encode(_cap(window, cap if max_rows is None else min(max_rows, cap), rng))
    n = len(current)
    if n < MIN_ROWS:
        if cap < MIN_ROWS:
            raise MultivariateError(f"the reference has {reference.rows} rows; "
                                    f"the multivariate test needs at least {math.ceil(MIN_ROWS / reference_share)} "
                                    f"(at most {reference_share:.0%} of it is tested)")
        raise MultivariateError(f"the window has {n} rows; the multivariate test needs at least {MIN_ROWS}")
    m = min(reference.rows, n)
    baseline = reference.decode(rng.choice(reference.rows, m, replace=False))
    x = np.vstack([baseline, current])
    y = np.r_[np.zeros(m), np.ones(n)]
    train, test = _split(y, test_share, rng)
    contributions: tuple[FeatureContribution, ...] = ()
    with one_thread():
        fitted = LEARNERS[learner](reference.numerical, reference.categorical, seed).fit(x[train], y[train])
        auroc, z = _mann_whitney(y[test], fitted.score(x[test]))
        p_value = _normal_sf(z)
        if p_value < explain_below:
            contributions = _contributions(reference.features, x[test], y[test], fitted, auroc, rng)
    return MultivariateDrift(auroc, z, p_value, m, n, learner, contributions, time.perf_counter() - started)


# --- statistics -------------------------------------------------------------------------------


def _mann_whitney(y: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """AUROC of the scores for y == 1 against y == 0 and its z under the exchangeable null
    (tie-corrected Mann-Whitney variance)."""
    from scipy.stats import rankdata

    n1 = float(y.sum())
    n0 = float(len(y) - n1)
    ranks = rankdata(scores)
    u = float(ranks[y == 1].sum() - n1 * (n1 + 1) / 2)
    total = n1 + n0
    _, ties = np.unique(scores, return_counts=True)
    variance = n1 * n0 / 12 * ((total + 1) - float(np.sum(ties**3 - ties)) / (total * (total - 1)))
    auroc = u / (n1 * n0)
    z = (u - n1 * n0 / 2) / np.sqrt(variance) if variance > 0 else 0.0
    return auroc, float(z)


def _normal_sf(z: float) -> float:
    from scipy.stats import norm

    return float(norm.sf(z))


def _split(y: np.ndarray, test_share: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stratified: the held-out part holds `test_share` of the reference rows and of the window rows."""
    held = np.zeros(len(y), dtype=bool)
    for label in (0, 1):
        idx = np.flatnonzero(y == label)
        held[rng.choice(idx, int(round(test_share * len(idx))), replace=False)] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


def _contributions(features: tuple[str, ...], x: np.ndarray, y: np.ndarray, fitted: DomainLearner, auroc: float,
                   rng: np.random.Generator) -> tuple[FeatureContribution, ...]:
    """Held-out AUROC lost when each feature is shuffled among the held-out rows, strongest first."""
    drops = np.zeros(len(features))
    for f in range(len(features)):
        shuffled = x.copy()
        shuffled[:, f] = shuffled[rng.permutation(len(x)), f]
        drops[f] = auroc - _mann_whitney(y, fitted.score(shuffled))[0]
    order = np.argsort(-drops, kind="stable")
    return tuple(FeatureContribution(features[i], float(drops[i])) for i in order)


# --- encoding ---------------------------------------------------------------------------------


def _cap(frame: pd.DataFrame, max_rows: int | None, rng: np.random.Generator) -> pd.DataFrame:
    if max_rows is None or len(frame) <= max_rows:
        return frame
    return frame.iloc[np.sort(rng.choice(len(frame), max_rows, replace=False))]


def _levels(series: pd.Series) -> tuple[str, ...]:
    codes, uniques = _factorized(series)
    counts = pd.Series(np.bincount(codes[codes >= 0], minlength=len(uniques)), index=uniques).groupby(level=0, sort=False).sum()
    counts = counts.sort_values(ascending=False, kind="stable")
    return tuple(counts.index[:MAX_LEVELS].tolist())  # most frequent first: code 0 is the commonest


def _factorized(series: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Each value's code among the column's distinct values, and those values as text (as
    `astype("string")` gives them; missing: -1), converting each distinct value once, not each row."""
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    text = pd.Index(uniques).astype("string")
    missing = np.flatnonzero(text.isna())
    if len(missing):  # a value whose text is missing counts as missing
        codes = np.where(np.isin(codes, missing), -1, codes)
    return np.asarray(codes), text


def _encode(frame: pd.DataFrame, numerical: tuple[str, ...], categorical: tuple[str, ...], levels: tuple[tuple[str, ...], ...]) -> np.ndarray:
    columns: list[np.ndarray] = []
    for c in numerical:
        try:
            values = pd.to_numeric(frame[c], errors="raise").to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
        except (TypeError, ValueError):
            raise MultivariateError(f"numerical column {c!r} holds non-numeric values; fix the data or list it under columns.categorical") from None
        values[~np.isfinite(values)] = np.nan  # inf is missing, as the per-column checks treat it
        columns.append(values)
    for c, kept in zip(categorical, levels):
        values, text = _factorized(frame[c])
        level = pd.Index(list(kept), dtype="string").get_indexer(text).astype(np.float64)  # per distinct value
        level[level < 0] = np.nan  # unseen or rare levels
        columns.append(np.where(values >= 0, level[np.maximum(values, 0)] if len(level) else np.nan, np.nan))
    return np.column_stack(columns) if columns else np.empty((len(frame), 0))


def reference_vs_reference(reference: DomainReference, rows: int, seed: int, **options: Any) -> MultivariateDrift:
    """The test with both sides drawn from the reference (disjoint rows): a null replay, for
    checking the false-alarm rate on a model's own data."""
    rng = np.random.default_rng(seed)
    if 2 * rows > reference.rows:
        raise MultivariateError(f"a reference of {reference.rows} rows cannot give two disjoint samples of {rows}")
    order = rng.permutation(reference.rows)
    half = reference.subset(order[rows:])
    window = _decode(reference, reference.decode(order[:rows]))
    return domain_classifier_test(half, window, seed=seed, **options)


def _decode(reference: DomainReference, matrix: np.ndarray) -> pd.DataFrame:
    data: dict[str, Any] = {}
    for i, c in enumerate(reference.numerical):
        data[c] = matrix[:, i]
    for j, (c, kept) in enumerate(zip(reference.categorical, reference.levels)):
        codes = matrix[:, len(reference.numerical) + j]
        names = np.array(list(kept) + [None], dtype=object)
        data[c] = names[np.where(np.isnan(codes), len(kept), codes).astype(int)]
    return pd.DataFrame(data)
