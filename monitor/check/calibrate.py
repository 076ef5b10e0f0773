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

Why the grid stops at 512 rows: past it the statistics are in their square-root regime, so the
rescaling carries the null to any larger n. A daemon calibrates every column of every model once
per champion version (1,000 models x 13 numerical columns in the capacity bench), and 400 draws
cost ~12 ms a column at 512 rows against ~48 ms at 2,048 (loaded 2-core box). Measured on one
fixed 20,000-row reference per type, 3,000 true null windows a cell (normal, lognormal, Poisson,
zero-inflated, binary; n = 1,000 and 5,000), the share of p-values below 1% / 0.1% with the cap
at 512 / 1,024 / 2,048: within each other's sampling noise in every cell (e.g. normal n = 5,000:
2.5/0.17%, 0.97/0.03%, 2.2/0.13%; lognormal n = 5,000: 4.6/0.43%, 3.5/0.20%, 3.9/0.37%: one fixed
reference's own quirks dominate), power on tiny shifts somewhat lower for a binary column (0.05 sd:
34% vs 63% at p < 1e-4, n = 5,000). bench/false_alarms.py measures the whole family (README).
Samples persist per version in the state directory (`NullCache(directory=...)`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy import stats as _stats

log = logging.getLogger(__name__)

DRAWS = 400
MIN_DRAW_ROWS = 16
MAX_DRAW_ROWS = 512
_FORMAT = 1  # of a persisted null sample: bump when the way samples are drawn changes
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

    Seeded from (version, column, bucket): re-checking a window gives the same p-value. With a
    `directory` the samples are persisted there (one file per version), so a restarted daemon
    or a one-off `driftd check` reuses them; a stored sample is used only when it was drawn from
    the same values (`fingerprints`: per column, from monitor.drift.ColumnReference), with the
    same number of draws and grid."""

    def __init__(self, version: str, directory: Path | None = None, fingerprints: Mapping[str, str] | None = None) -> None:
        self._version = version
        self._samples: dict[tuple[str, int], np.ndarray] = {}
        self._lock = threading.Lock()
        self._fingerprints = dict(fingerprints or {})
        self._path = directory / f"{hashlib.sha256(version.encode()).hexdigest()[:24]}.npz" if directory is not None else None
        self._loaded = self._path is None
        self._dirty = False

    def __getstate__(self) -> dict[str, Any]:
        # Pickled to an executor's workers with its reference: the samples drawn so far go along, the lock does not.
        # The file goes along too: a worker on this machine persists what it draws; one elsewhere fails to and
        # keeps them in memory (_save only warns).
        with self._lock:
            return {"_version": self._version, "_samples": dict(self._samples), "_fingerprints": self._fingerprints,
                    "_path": self._path, "_loaded": self._loaded}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._version, self._samples, self._lock = state["_version"], state["_samples"], threading.Lock()
        self._fingerprints, self._path, self._loaded = state["_fingerprints"], state["_path"], state["_loaded"]
        self._dirty = False

    def drawn(self) -> dict[tuple[str, int], np.ndarray]:
        """The samples drawn so far (a pool worker returns its new ones to the daemon's cache)."""
        with self._lock:
            return dict(self._samples)

    def merge(self, samples: dict[tuple[str, int], np.ndarray]) -> None:
        """Keep samples drawn elsewhere (the same seeds give the same samples; the first one kept wins)."""
        with self._lock:
            for key, sample in samples.items():
                self._samples.setdefault(key, sample)

    def null(self, column: str, n: int, reference_rows: int, draw: Callable[[int, int, np.random.Generator], np.ndarray]) -> np.ndarray:
        """The null sample for a window of n rows: `draw(rows, draws, rng)` scores bootstrap windows."""
        drawn = bucket(n)
        key = (column, drawn)
        with self._lock:
            if not self._loaded:
                self._load()
            sample = self._samples.get(key)
        if sample is None:
            rng = np.random.default_rng(zlib.crc32(f"{self._version}|{column}|{drawn}".encode()))
            sample = draw(drawn, DRAWS, rng)
            with self._lock:
                if key not in self._samples:
                    self._samples[key] = sample
                    self._dirty = True
                sample = self._samples[key]
        return sample * scale(n, drawn, reference_rows)

    def flush(self) -> None:
        """Persist samples drawn since the last flush (a check calls it once, after all its columns)."""
        with self._lock:
            if self._dirty:
                self._save()
                self._dirty = False

    def _stored_key(self, column: str, drawn: int) -> str:
        return json.dumps([column, drawn, self._fingerprints.get(column, ""), DRAWS, MAX_DRAW_ROWS, _FORMAT])

    def _load(self) -> None:
        self._loaded = True
        assert self._path is not None
        try:
            with np.load(self._path, allow_pickle=False) as stored:
                keys = json.loads(str(stored["arr_0"]))
                for i, stored_key in enumerate(keys):
                    column, drawn = json.loads(stored_key)[:2]
                    if stored_key == self._stored_key(column, drawn):  # else drawn from other values or another grid
                        self._samples[(column, drawn)] = stored[f"arr_{i + 1}"]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError) as exc:  # a damaged file costs a recomputation, nothing else
            log.warning("null samples in %s are unreadable (%s); drawing them again", self._path, exc)

    def _save(self) -> None:
        """Write every sample (called under the lock); the file is replaced whole, never half-written."""
        if self._path is None:
            return
        items = sorted(self._samples.items())
        keys = json.dumps([self._stored_key(column, drawn) for (column, drawn), _ in items])
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            partial = self._path.with_name(f".{self._path.name}.{threading.get_ident()}.partial")
            with open(partial, "wb") as out:
                np.savez(out, np.array(keys), *(sample for _, sample in items))  # arr_0: the keys, arr_i: sample i - 1
            os.replace(partial, self._path)
        except OSError as exc:  # persisting is an optimisation: the samples stay in memory
            log.warning("cannot persist null samples to %s: %s", self._path, exc)
