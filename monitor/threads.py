"""scikit-learn's native thread pools, pinned to one thread for the code that fits and predicts
inside a check."""

from __future__ import annotations

from typing import Any


def one_thread() -> Any:
    """Run scikit-learn's OpenMP/BLAS code on one thread.

    A check already runs beside others on a shared machine; HistGradientBoosting's default
    OpenMP threads spin against that load: one 2,000-row fit took 3.5 s on 2 loaded cores
    against 0.04 s on one thread (bench/estimation.py). threadpoolctl limits only libraries
    already loaded, hence the imports first.
    """
    import sklearn.ensemble  # noqa: F401  (loads OpenMP)
    import sklearn.linear_model  # noqa: F401  (loads BLAS)
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)
