"""Connecting to MLflow the way driftd needs it: the configured URIs, bounded retries, one
experiment per model with an explicit artifact location, and credential-free messages.

MLflow is imported inside functions: `driftd --help` and the daemon's start-up must not pay
for it.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from monitor.core.config import Config, ModelConfig
from monitor.core.redact import mask  # noqa: F401 - the one masker, re-exported for retrain's modules

if TYPE_CHECKING:
    from mlflow import MlflowClient

# A dead tracking server must fail a retrain in seconds, not after MLflow's default
# 7 retries with exponential back-off (minutes). Users can still override these.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # a daemon's log is no terminal
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # nor is its stdout
}


class TrackingError(Exception):
    """MLflow could not be used; the message names the (masked) URI and what to check."""


def tracking_uri(config: Config) -> str:
    return config.mlflow.tracking_uri


def registry_uri(config: Config) -> str:
    return config.mlflow.registry_uri or config.mlflow.tracking_uri


def connect(config: Config) -> MlflowClient:
    """Point MLflow (client and fluent API) at the configured stores and return a client.

    The fluent API (`mlflow.start_run`, `log_model`) reads the process-wide URIs, so they are
    set here too; one daemon serves one configuration, so that global is ours to set."""
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(config))
    mlflow.set_registry_uri(registry_uri(config))
    return mlflow.MlflowClient(tracking_uri=tracking_uri(config), registry_uri=registry_uri(config))


def experiment_name(model: ModelConfig) -> str:
    return f"driftd/{model.name}"


def artifact_location(config: Config, model: ModelConfig) -> str | None:
    """None lets a tracking server use its own artifact store (`--artifacts-destination`)."""
    root = config.mlflow.artifact_root
    return f"{root.rstrip('/')}/{model.name}" if root else None


def ensure_experiment(client: MlflowClient, config: Config, model: ModelConfig) -> str:
    """The id of the model's experiment, created (or restored from the trash) when needed."""
    from mlflow.exceptions import MlflowException

    name = experiment_name(model)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location(config, model))
        except MlflowException as exc:  # another process created it between our two calls
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise TrackingError(f"cannot create MLflow experiment {name!r}: {describe(exc)}") from None
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def describe(exc: BaseException) -> str:
    """One masked line about an MLflow/HTTP failure, for reasons and logs."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    problem = connection_problem(text)
    if problem:
        return f"cannot connect ({problem})"
    if len(text) > 300:
        text = text[:300] + "…"
    return mask(text)


_CONNECTION_PROBLEMS = (
    ("Connection refused", "connection refused"),
    ("timed out", "timed out"),
    ("Name or service not known", "host name not resolved"),
    ("nodename nor servname", "host name not resolved"),
    ("Temporary failure in name resolution", "host name not resolved"),
    ("Max retries exceeded", "no answer after retries"),
)


def connection_problem(text: str) -> str | None:
    """A short name for an HTTP connection failure buried in an MLflow message (or already
    named by `describe`), else None."""
    described = re.search(r"cannot connect \(([^)]+)\)", text)
    if described:
        return described.group(1)
    for marker, problem in _CONNECTION_PROBLEMS:
        if marker in text:
            return problem
    return None


def close_interrupted_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark FAILED the retrain runs (and their stage runs) a crash or an outage left RUNNING.

    Safe because a model has one retrain at a time: the daemon's hand-off and `driftd
    retrain` both check the state store before starting one."""
    stale = client.search_runs([experiment_id], filter_string="tags.`driftd.kind` = 'retrain' and attributes.status = 'RUNNING'")
    for run in stale:
        client.set_tag(run.info.run_id, "driftd.outcome", "failed")
        client.set_tag(run.info.run_id, "driftd.reason", "interrupted: found still running when the next retrain started")
        _fail_tree(client, experiment_id, run.info.run_id)
    return [run.info.run_id for run in stale]


def _fail_tree(client: MlflowClient, experiment_id: str, run_id: str) -> None:
    children = client.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}' and attributes.status = 'RUNNING'")
    for child in children:
        _fail_tree(client, experiment_id, child.info.run_id)
    client.set_terminated(run_id, "FAILED")


def is_missing(exc: BaseException) -> bool:
    """True when MLflow says the thing asked for does not exist (as opposed to being unreachable)."""
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, MlflowException):
        return False
    if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
        return True
    # A missing alias is reported as an invalid parameter ("Registered model alias X not found.").
    return exc.error_code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc).lower()
