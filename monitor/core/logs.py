"""One log line per event, text or JSON, carrying the model and check id of the work in hand."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone

from monitor.core.redact import mask

_model: contextvars.ContextVar[str] = contextvars.ContextVar("driftd_model", default="-")
_check: contextvars.ContextVar[str] = contextvars.ContextVar("driftd_check", default="-")


@contextlib.contextmanager
def log_context(*, model: str, check_id: str = "-") -> Iterator[None]:
    """Tag every log line emitted inside the block (in this thread) with model and check id."""
    tokens = (_model.set(model), _check.set(check_id))
    try:
        yield
    finally:
        _check.reset(tokens[1])
        _model.reset(tokens[0])


def set_check_id(check_id: str) -> None:
    _check.set(check_id)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.model = getattr(record, "model", None) or _model.get()
        record.check_id = getattr(record, "check_id", None) or _check.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "model": getattr(record, "model", "-"),  # set by _ContextFilter
            "check_id": getattr(record, "check_id", "-"),
            "msg": mask(record.getMessage()),
        }
        if record.exc_info:
            entry["exc"] = mask(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """The text format, every line (tracebacks included) through the one masker: a URL with
    credentials in any library's message never reaches the log."""

    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record))


TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s model=%(model)s check=%(check_id)s %(message)s"


def setup_logging(level: str = "INFO", fmt: str = "text", stream=None) -> None:
    # MLflow installs its own handler at import time; this is the switch it reads then.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    # MLflow's schema hints ("integer columns cannot represent missing values") are advice for
    # notebook users; driftd logs its models with explicit dtypes.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\.")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Third-party chatter (MLflow, alembic, urllib3) would drown the one-line-per-event log.
    for noisy in ("alembic", "urllib3", "mlflow", "apscheduler", "httpx", "evidently", "numexpr"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # "skipped: maximum number of running instances reached" is APScheduler doing what driftd
    # asks (no overlapping checks of one model); at WARNING it would fill the log of a busy model.
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
