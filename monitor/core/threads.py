"""scikit-learn's native thread pools, pinned to one thread for the code that fits and predicts
inside a check, and BLAS pinned to one thread for the whole daemon."""

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


_pinned: list[Any] = []  # keeps the daemon's BLAS limit alive


def pin_blas() -> None:
    """One BLAS thread for the rest of the process (the daemon's).

    OpenBLAS threads spin while they wait: a 5k-row check cost 0.38-0.41 CPU-s with the default
    threads against 0.16-0.18 with one, and the daemon already runs checks side by side on its
    workers. OpenMP is left alone (a retrain trains on every core; `check` code pins it with
    `one_thread`). The deploy files also set OPENBLAS_NUM_THREADS/OMP_NUM_THREADS=1, which covers
    libraries loaded after this call.
    """
    import numpy  # noqa: F401  (loads BLAS)
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_limits

    if not _pinned:
        _pinned.append(threadpool_limits(limits=1, user_api="blas"))
