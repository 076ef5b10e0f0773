"""Reading the registry: the champion, its reference rows, its validation score and its
quality estimator."""

from __future__ import annotations

import logging
import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from monitor.core.config import Config, ModelConfig
from monitor.core.tables import ReferenceError
from monitor.core.tables import read_table as read_reference
from retrain.registry.records import CHAMPION, ESTIMATOR_ARTIFACTS, REFERENCE_ARTIFACT, Champion, RegistryError, _where
from retrain.tracking import connect, describe, is_missing

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger("driftd.registry")


def champion(config: Config, model: ModelConfig) -> Champion | None:
    """The version serving `model` (alias `champion`), or None if there is none yet.

    Raises RegistryError when the registry cannot be reached."""
    client = connect(config)
    version = _by_alias(client, model.mlflow_name, CHAMPION)
    return None if version is None else _as_champion(model.mlflow_name, version)


def load_reference(config: Config, model: ModelConfig, version: str | None = None) -> tuple[pd.DataFrame, str]:
    """The reference rows of `version` (the champion's when None) and that version.

    With no champion registered, falls back to `model.reference` (returned as version
    `file:<name>`)."""
    client = connect(config)
    name = model.mlflow_name
    if version is None:
        current = _by_alias(client, name, CHAMPION)
        if current is None:
            return _reference_file(model)
        version = str(current.version)
    try:
        mv = client.get_model_version(name, version)
    except Exception as exc:
        if is_missing(exc):
            raise RegistryError(f"registered model {name!r} has no version {version}") from None
        raise RegistryError(f"cannot read {name!r} version {version} from the registry: {describe(exc)}") from None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(mv.run_id or "", REFERENCE_ARTIFACT, tmp)  # no run: fails like a missing artifact
        except Exception as exc:
            if model.reference is not None:
                log.warning("%s version %s has no %s (%s); using %s", name, version, REFERENCE_ARTIFACT, describe(exc), model.reference)
                return _reference_file(model)
            raise RegistryError(
                f"{name!r} version {version} (run {mv.run_id}) has no {REFERENCE_ARTIFACT}: {describe(exc)}; "
                "it was not registered by driftd — adopt it with `driftd adopt --reference FILE`"
            ) from None
        return pd.read_parquet(path), version


def _reference_file(model: ModelConfig) -> tuple[pd.DataFrame, str]:
    if model.reference is None:
        raise RegistryError(
            f"model {model.name!r} has no champion in the registry ({model.mlflow_name!r}@champion) and no "
            "reference file: register one with `driftd adopt`, or set `reference:` in its configuration"
        )
    return read_table(model.reference), f"file:{model.reference.name}"


def read_table(path: Path) -> pd.DataFrame:
    """A reference file (Parquet, CSV, JSON lines) as a frame, or a RegistryError naming the file."""
    try:
        return read_reference(path)
    except ReferenceError as exc:
        raise RegistryError(str(exc)) from None


def _by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except Exception as exc:
        if is_missing(exc):
            return None
        raise RegistryError(f"cannot read {name!r}@{alias} from the MLflow registry at {_where()}: {describe(exc)}") from None


def _as_champion(name: str, version: ModelVersion) -> Champion:
    tags = version.tags or {}
    score = tags.get("driftd.validation_score")
    return Champion(
        name=name,
        version=str(version.version),
        run_id=version.run_id or "",  # a registered version always has one; "" fails its download clearly
        model_uri=f"models:/{name}/{version.version}",
        sklearn_model_uri=tags.get("driftd.sklearn_model_uri"),
        primary_metric=tags.get("driftd.primary_metric"),
        validation_score=float(score) if score not in (None, "", "None") else None,
        promoted_at=_timestamp(tags.get("driftd.promoted_at")),
        promoted_over=tags.get("driftd.promoted_over") or None,
    )


def validation_score(config: Config, model: ModelConfig, version: str) -> float | None:
    """The `driftd.validation_score` of one version; None when it has none (or no such version).
    Raises RegistryError when the registry cannot be reached."""
    client = connect(config)
    try:
        tags = client.get_model_version(model.mlflow_name, version).tags or {}
    except Exception as exc:
        if is_missing(exc) or "INVALID_PARAMETER_VALUE" in str(exc):  # e.g. a version that is not a number
            return None
        raise RegistryError(f"cannot read {model.mlflow_name!r} version {version}: {describe(exc)}") from None
    score = tags.get("driftd.validation_score")
    return float(score) if score not in (None, "", "None") else None


def _timestamp(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def load_estimator(config: Config, model: ModelConfig, version: str) -> Any | None:
    """The quality estimator logged with `version` (None when it has none). Raises the
    estimator's own EstimatorError for a file of another format or scikit-learn version."""
    from monitor.check.estimation import load_estimator as read

    client = connect(config)
    mv = client.get_model_version(model.mlflow_name, version)
    try:
        found = [f for f in client.list_artifacts(mv.run_id or "", ESTIMATOR_ARTIFACTS) if not f.is_dir]
    except Exception as exc:
        if is_missing(exc):
            return None
        raise
    if not found:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(mv.run_id or "", found[0].path, tmp)
        return read(Path(path))
