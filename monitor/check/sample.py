"""Cap a window at `max_rows` with a seeded uniform sample, before any drift statistics run.

The drift statistics converge long before a million rows, while their cost grows with every
row: sampling is the biggest lever on check time (see bench/drift_check.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def sample_rows(frame: pd.DataFrame, max_rows: int | None, seed: int) -> tuple[pd.DataFrame, bool]:
    """At most `max_rows` rows of `frame`, chosen uniformly without replacement, in their
    original order (index labels kept); and whether any row was left out.

    The same frame length, `max_rows` and `seed` always pick the same positions, so a check
    can be re-run and give the same answer. `max_rows=None` means no cap.
    """
    if max_rows is not None and max_rows < 1:
        raise ValueError(f"max_rows must be at least 1 (got {max_rows}); use None for no cap")
    if max_rows is None or len(frame) <= max_rows:
        return frame, False
    positions = np.random.default_rng(seed).choice(len(frame), size=max_rows, replace=False)
    positions.sort()  # keep the time order the source delivered
    return frame.take(positions), True



class Reservoir:
    """A seeded uniform sample of at most `size` rows from a stream of frames, in bounded memory.

    Row i of the stream gets the i-th draw of one seeded generator as its key (how the stream
    is cut into batches does not matter: the generator yields the same numbers for one draw of
    n as for several that add up to n); the sample is the `size` rows with the smallest keys,
    a uniform sample without replacement. Once the reservoir is full a batch adds only its rows
    under the current cut-off, so the work per row shrinks as the stream grows.
    """

    def __init__(self, size: int | None, seed: int) -> None:
        if size is not None and size < 1:
            raise ValueError(f"max_rows must be at least 1 (got {size}); use None for no cap")
        self._size = size
        self._rng = np.random.default_rng(seed)
        self._parts: list[pd.DataFrame] = []
        self._keys: list[np.ndarray] = []
        self._positions: list[np.ndarray] = []
        self._held = 0
        self._seen = 0
        self._cut = np.inf

    @property
    def seen(self) -> int:
        return self._seen

    def add(self, frame: pd.DataFrame) -> None:
        n = len(frame)
        if n == 0:
            return
        positions = np.arange(self._seen, self._seen + n)
        self._seen += n
        if self._size is None:
            self._keep(frame.reset_index(drop=True), np.zeros(n), positions)
            return
        keys = self._rng.random(n)
        under = keys < self._cut
        if not under.any():
            return
        if not under.all():
            frame, keys, positions = frame[under], keys[under], positions[under]
        self._keep(frame.reset_index(drop=True), keys, positions)
        if self._held > self._size + self._size // 4:
            self._compact()

    def result(self) -> tuple[pd.DataFrame, bool]:
        """The sample in stream order (index 0..n-1), and whether any row was left out."""
        self._compact()
        if not self._parts:
            return pd.DataFrame(), False
        frame, positions = self._parts[0], self._positions[0]
        order = np.argsort(positions, kind="stable")
        return frame.take(order).reset_index(drop=True), self._size is not None and self._seen > self._size

    def _keep(self, frame: pd.DataFrame, keys: np.ndarray, positions: np.ndarray) -> None:
        self._parts.append(frame)
        self._keys.append(keys)
        self._positions.append(positions)
        self._held += len(frame)

    def _compact(self) -> None:
        if len(self._parts) <= 1 and (self._size is None or self._held <= self._size):
            return
        keys, positions = np.concatenate(self._keys), np.concatenate(self._positions)
        if self._size is not None and len(keys) > self._size:
            chosen = np.zeros(len(keys), dtype=bool)
            chosen[np.argpartition(keys, self._size - 1)[: self._size]] = True
            # Take each part's chosen rows before concatenating: one copy of `size` rows, not two.
            bounds = np.cumsum([0, *(len(p) for p in self._parts)])
            parts = [part[chosen[lo:hi]] for part, lo, hi in zip(self._parts, bounds[:-1], bounds[1:])]
            keys, positions = keys[chosen], positions[chosen]
            self._cut = float(keys.max())
        else:
            parts = self._parts
        self._parts = []
        frame = _concat([p for p in parts if len(p)] or parts[:1])
        self._parts, self._keys, self._positions, self._held = [frame], [keys], [positions], len(frame)


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate, keeping category columns categorical: a part's categories are a prefix of a
    later part's (monitor.check.stream only ever appends levels), so every part takes the latest."""
    if len(parts) == 1:
        return parts[0].reset_index(drop=True)
    last = parts[-1]
    for name in last.columns:
        dtype = last[name].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            for part in parts[:-1]:
                if part[name].dtype != dtype:
                    part[name] = part[name].cat.set_categories(dtype.categories)
    return pd.concat(parts, ignore_index=True)
