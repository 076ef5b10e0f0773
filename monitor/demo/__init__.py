"""`driftd demo`: the whole loop on one machine, through the real daemon, in a few minutes.

A baseline model is trained and registered as @champion, simulated production logs its
predictions to SQLite with labels arriving late, a covariate shift and concept change are
injected part-way, and the real daemon detects it, alerts, retrains, recompresses and promotes.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def run_demo(directory: Path, *, speed: float = 1.0) -> int:
    from monitor.demo.run import DemoRun
    from monitor.demo.scenario import Timeline

    directory = directory.resolve()
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    return DemoRun(directory, Timeline(), speed=max(speed, 0.1)).run()
