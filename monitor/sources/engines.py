"""One pooled SQLAlchemy Engine per database, shared by every source that reads it.

A daemon with a thousand models on one database would otherwise hold a thousand pools, each
with its own connections (and, for SQLite, its own page cache: ~1.8 MiB a model, measured in
bench/capacity.py). Sources acquire an engine by URL and connection arguments and release it on
close; the last release disposes it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine

_lock = threading.Lock()
_shared: dict[tuple[str, str], tuple[Engine, int]] = {}


def acquire(key: str, options: dict[str, Any], create: Callable[[], Engine]) -> Engine:
    """The engine for `key` (the full URL, password included: never logged), created on first use."""
    slot = (key, repr(sorted(options.items())))
    with _lock:
        engine, users = _shared.get(slot, (None, 0))
        if engine is None:
            engine = create()
        _shared[slot] = (engine, users + 1)
        return engine


def release(engine: Engine) -> None:
    """One user fewer; the last one disposes the engine's pool."""
    with _lock:
        for slot, (held, users) in list(_shared.items()):
            if held is engine:
                if users > 1:
                    _shared[slot] = (held, users - 1)
                    return
                del _shared[slot]
                break
    engine.dispose()
