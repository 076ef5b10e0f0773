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

