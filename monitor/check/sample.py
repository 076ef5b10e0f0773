"""Cap a window at `max_rows` with a seeded uniform sample, before any drift statistics run.

The drift statistics converge long before a million rows, while their cost grows with every
row: sampling is the biggest lever on check time (see bench/drift_check.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa

# A part of the sample: a pandas frame, or an Arrow table the reservoir's `to_frame` converts.
Part: TypeAlias = pd.DataFrame | pa.Table


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



@dataclass(frozen=True)
class Offer:
    """The rows of a batch that enter a reservoir: their positions in the batch (None: all of
    them), and their keys and positions in the stream."""

    rows: np.ndarray | None
    keys: np.ndarray
    positions: np.ndarray


class Reservoir:
    """A seeded uniform sample of at most `size` rows from a stream of frames, in bounded memory.

    Row i of the stream gets the i-th draw of one seeded generator as its key (how the stream
    is cut into batches does not matter: the generator yields the same numbers for one draw of
    n as for several that add up to n); the sample is the `size` rows with the smallest keys,
    a uniform sample without replacement. Once the reservoir is full a batch adds only its rows
    under the current cut-off, so the work per row shrinks as the stream grows.

    Parts may be Arrow tables (monitor.check.stream keeps Parquet rows so): they are cut and joined in
    Arrow and converted once, by `to_frame`, when the sample is taken or a pandas part joins them.
    """

    def __init__(self, size: int | None, seed: int, to_frame: Callable[[pa.Table], pd.DataFrame] | None = None) -> None:
        if size is not None and size < 1:
            raise ValueError(f"max_rows must be at least 1 (got {size}); use None for no cap")
        self._size = size
        self._rng = np.random.default_rng(seed)
        self._to_frame = to_frame
        self._parts: list[Part] = []
        self._keys: list[np.ndarray] = []
        self._positions: list[np.ndarray] = []
        self._held = 0
        self._seen = 0
        self._cut = np.inf

    @property
    def seen(self) -> int:
        return self._seen

    def add(self, frame: Part) -> None:
        offer = self.offer(len(frame))
        if offer is not None:
            self.keep(offer, frame if offer.rows is None else frame.take(offer.rows))

    def offer(self, n: int) -> Offer | None:
        """Draw the keys of the stream's next `n` rows: which of them enter the sample (None when
        none do). The caller then passes exactly those rows to `keep`, so a batch can be cut
        down before it is converted or copied (monitor.check.stream does so with Arrow batches)."""
        if n == 0:
            return None
        positions = np.arange(self._seen, self._seen + n)
        self._seen += n
        if self._size is None:
            return Offer(None, np.zeros(n), positions)
        keys = self._rng.random(n)
        under = keys < self._cut
        if not under.any():
            return None
        if under.all():
            return Offer(None, keys, positions)
        rows = np.flatnonzero(under)
        return Offer(rows, keys[rows], positions[rows])

    def keep(self, offer: Offer, frame: Part) -> None:
        """Hold `frame`: the rows `offer` admitted, in its order."""
        self._keep(frame if isinstance(frame, pa.Table) else frame.reset_index(drop=True), offer.keys, offer.positions)
        if self._size is not None and self._held > self._size + self._size // 4:
            self._compact()

    def result(self) -> tuple[pd.DataFrame, bool]:
        """The sample in stream order (index 0..n-1), and whether any row was left out."""
        self._compact()
        if not self._parts:
            return pd.DataFrame(), False
        part, positions = self._parts[0], self._positions[0]
        order = np.argsort(positions, kind="stable")
        sampled = self._size is not None and self._seen > self._size
        if isinstance(part, pa.Table):
            return self._frame(part.take(order)), sampled
        return part.take(order).reset_index(drop=True), sampled

    def _frame(self, table: pa.Table) -> pd.DataFrame:
        if self._to_frame is None:
            raise TypeError("a Reservoir given Arrow tables needs to_frame")
        return self._to_frame(table)

    def _keep(self, frame: Part, keys: np.ndarray, positions: np.ndarray) -> None:
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
            parts = [part.filter(chosen[lo:hi]) if isinstance(part, pa.Table) else part[chosen[lo:hi]]
                     for part, lo, hi in zip(self._parts, bounds[:-1], bounds[1:])]
            keys, positions = keys[chosen], positions[chosen]
            self._cut = float(keys.max())
        else:
            parts = self._parts
        self._parts = []
        kept = [p for p in parts if len(p)] or parts[:1]
        if all(isinstance(p, pa.Table) for p in kept):
            joined: Part = pa.concat_tables(kept) if len(kept) > 1 else kept[0]
        else:
            joined = _concat([self._frame(p) if isinstance(p, pa.Table) else p for p in kept])
        self._parts, self._keys, self._positions, self._held = [joined], [keys], [positions], len(joined)


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate, keeping category columns categorical: of two parts' categories one is a
    prefix of the other (monitor.check.stream only ever appends levels), so every part takes the longest."""
    if len(parts) == 1:
        return parts[0].reset_index(drop=True)
    for name in parts[-1].columns:
        dtypes = [p[name].dtype for p in parts]
        if isinstance(dtypes[-1], pd.CategoricalDtype):
            widest = max(dtypes, key=lambda d: len(d.categories))
            for part in parts:
                if part[name].dtype != widest:
                    part[name] = part[name].cat.set_categories(widest.categories)
    return pd.concat(parts, ignore_index=True)
