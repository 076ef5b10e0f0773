"""Where driftd keeps files of its own: beside its state, never in a shared temp folder."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import make_url

from monitor.core.config import Config


def state_dir(config: Config) -> Path:
    """The SQLite state database's folder; for PostgreSQL state, systemd's $STATE_DIRECTORY
    or else the working directory (the container images run in /var/lib/driftd)."""
    url = make_url(config.state_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(url.database).resolve().parent
    systemd = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(systemd or os.getcwd()).resolve()


def reports_dir(config: Config, model: str) -> Path:
    """`<state dir>/reports/<model>`, private to driftd's user (drift reports show data)."""
    path = state_dir(config) / "reports" / model
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    for folder in (path.parent, path):
        folder.chmod(0o700)
    return path
