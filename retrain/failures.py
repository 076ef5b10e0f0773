"""How a failed retrain is worded: failures whose message already says what to do, MLflow
being unreachable (the champion unchanged), and anything else with its type."""

from __future__ import annotations

from monitor.check.validate import InputError
from monitor.core.config import Config
from monitor.sources.base import SourceError
from retrain.data import DataError
from retrain.registry import RegistryError
from retrain.tracking import TrackingError, connection_problem, describe, mask, tracking_uri


class StageFailed(Exception):
    """A stage failed in a way already explained by its message."""


# Failures whose message already tells the user what happened and what to do.
EXPLAINED = (StageFailed, DataError, SourceError, InputError, RegistryError)


def failure_reason(exc: Exception, stage: str, config: Config) -> str:
    if isinstance(exc, EXPLAINED):
        return mask(str(exc))
    if is_mlflow_error(exc):
        where = f"MLflow at {mask(tracking_uri(config))}"
        problem = connection_problem(str(exc))
        unchanged = "" if stage == "promoting" else "; the champion is unchanged"
        if problem:
            return f"{where} is unreachable ({problem}) while {stage}{unchanged} — check the tracking server, then retrain again"
        return f"{where} failed while {stage}{unchanged}: {describe(exc)}"
    return f"{type(exc).__name__} while {stage}: {describe(exc)}"


def is_mlflow_error(exc: BaseException) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        from requests.exceptions import RequestException
    except ImportError:  # pragma: no cover - requests comes with mlflow
        RequestException = ()  # type: ignore[assignment,misc]
    return isinstance(exc, (TrackingError, MlflowException, RequestException, ConnectionError, TimeoutError))
