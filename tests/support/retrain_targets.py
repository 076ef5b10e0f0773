"""The retrain function the isolation tests name as `RetrainHandoff(target="tests.support.retrain_targets:acts_out")`.

It runs in the retrain's child process exactly where `retrain.pipeline:run_retrain` would, with its
signature, and does what the job's trigger reason says: finish, or misbehave the ways a real
retrain can (raise, hang, abort, exhaust memory). One daemon can so be handed a bad job, then a good one.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from monitor.core.config import Config, ModelConfig
from retrain.pipeline import RetrainOutcome, Trigger

log = logging.getLogger("driftd.retrain.target")


def _outcome(model: ModelConfig, outcome: str, reason: str) -> RetrainOutcome:
    return RetrainOutcome(model=model.name, outcome=outcome, reason=reason, version=None, run_id=None, metric=None,
                          champion_score=None, challenger_score=None, original_size=None, compressed_size=None,
                          original_p50_ms=None, compressed_p50_ms=None, variant=None, duration_seconds=0.5)


def rejects(config: Config, model: ModelConfig, trigger: Trigger, *, now: datetime, progress: Callable[[str], None]) -> RetrainOutcome:
    """Finishes normally, reporting whether the state password reached it and whether its command line or environment shows it."""
    progress("training on 0 rows")
    log.warning("child log line for %s at %s", model.name, now.isoformat())
    password = urlsplit(config.state_url).password or ""
    exposed = Path(f"/proc/{os.getpid()}/cmdline").read_bytes() + Path(f"/proc/{os.getpid()}/environ").read_bytes()
    reason = (f"not better enough; config carried a password: {bool(password)}; "
              f"password on its command line or in its environment: {bool(password) and password.encode() in exposed}")
    return _outcome(model, "rejected", reason)


def raises(config: Config, model: ModelConfig, trigger: Trigger, *, now: datetime, progress: Callable[[str], None]) -> Any:
    raise RuntimeError(f"estimator exploded while reading {config.state_url}")


def hangs(config: Config, model: ModelConfig, trigger: Trigger, *, now: datetime, progress: Callable[[str], None]) -> Any:
    progress("about to hang")
    while True:
        time.sleep(3600)


def aborts(config: Config, model: ModelConfig, trigger: Trigger, *, now: datetime, progress: Callable[[str], None]) -> Any:
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file left in the test's directory
    os.abort()  # what a crashing native extension (or a hostile pickle) does to its process


def hoards_memory(config: Config, model: ModelConfig, trigger: Trigger, *, now: datetime, progress: Callable[[str], None]) -> Any:
    held = bytearray(8 * 2**30)  # past any retrain.memory_limit the test sets
    return _outcome(model, "rejected", f"allocated {len(held)} bytes")


def killed_at_the_switch(config: Config, model: ModelConfig, trigger: Trigger, *, now: datetime, progress: Callable[[str], None]) -> Any:
    """The real pipeline, its process killed (SIGKILL, as the OOM killer or a node loss would) at the
    worst moment: the challenger registered and passing, the `champion` alias about to move."""
    import signal

    from mlflow import MlflowClient

    from retrain.pipeline import run_retrain
    from retrain.registry import CHAMPION

    real = MlflowClient.set_registered_model_alias

    def set_alias(self: MlflowClient, name: str, alias: str, version: str) -> None:
        if alias == CHAMPION:
            os.kill(os.getpid(), signal.SIGKILL)
        real(self, name, alias, version)

    MlflowClient.set_registered_model_alias = set_alias  # type: ignore[method-assign]
    return run_retrain(config, model, trigger, now=now, progress=progress)


BEHAVIOURS: dict[str, Callable[..., Any]] = {"rejects": rejects, "raises": raises, "hangs": hangs, "aborts": aborts, "hoards_memory": hoards_memory,
                                             "killed_at_the_switch": killed_at_the_switch}


def acts_out(config: Config, model: ModelConfig, trigger: Trigger, *, now: datetime, progress: Callable[[str], None]) -> Any:
    return BEHAVIOURS[trigger.reason](config, model, trigger, now=now, progress=progress)
