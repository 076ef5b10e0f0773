"""What /readyz reports: the state store and MLflow reachable. Leadership plays no part: a standby
replica is ready (it serves /metrics and must be able to take over)."""

from __future__ import annotations

import os
import time

from monitor.core.config import Config
from monitor.state.store import StateStore


def problems(config: Config, store: StateStore) -> list[str]:
    """Why the daemon is not ready; empty when it is."""
    found = []
    if not store.ping():
        found.append("state store unreachable")
    if not _mlflow_reachable(config):
        found.append("MLflow tracking server unreachable")
    return found


_mlflow_probe: dict[str, tuple[float, bool]] = {}


def _mlflow_reachable(config: Config) -> bool:
    """Cached for a few seconds: /readyz is polled often and MLflow calls are not free."""
    uri = config.mlflow.tracking_uri
    checked_at, ok = _mlflow_probe.get(uri, (0.0, False))
    if time.monotonic() - checked_at < 10:
        return ok
    if uri.startswith("sqlite:"):
        # The embedded store is a local file MLflow creates on first use: its folder must exist.
        ok = os.path.isdir(os.path.dirname(uri.removeprefix("sqlite:///")) or ".")
    else:
        import httpx

        try:
            ok = httpx.get(uri.rstrip("/") + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            ok = False
    _mlflow_probe[uri] = (time.monotonic(), ok)
    return ok
