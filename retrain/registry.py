"""The MLflow registry as driftd uses it: what is logged for a model version, and which
version serves.

Conventions (the MLflow UI, the daemon and the CLI all rely on them):

- Stores: every call goes to `mlflow.tracking_uri` / `mlflow.registry_uri` of the config
  (`sqlite:////abs/path.db` or `http(s)://host:port`). HTTP retries are bounded
  (`retrain.tracking.HTTP_DEFAULTS`) so a dead server fails a call within ~30 s.
- Experiment: one per model, `driftd/<model.name>`, created with the artifact location
  `<mlflow.artifact_root>/<model.name>` (never relative to the process's cwd). Use a
  `mlflow-artifacts:/…` or object-store root when the tracking server is remote.
- Runs: a retrain is one parent run (tags `driftd.kind=retrain`, `driftd.trigger`,
  `driftd.check_id`, `driftd.window_start`, `driftd.window_end`, `driftd.drift_share`,
  `driftd.config_hash`, `driftd.data_hash`, `driftd.outcome`) with child runs `train`,
  `tune` (its trials nested below it), `compress` and `evaluate`. `register_baseline` and
  `adopt` log a single run of kind `baseline` / `adopt` through the same code.
- Run artifacts: `driftd/reference.parquet` — the rows the version was trained and validated
  on: features, the target, and the prediction (and probability) of the version itself, so
  prediction drift has a reference; `driftd/schema.json` — columns, roles and dtypes;
  `driftd/drift_report.html` when the trigger supplied one; `driftd/estimator/cbpe.json` (or
  `dle.joblib`): the label-free quality estimator (monitor.check.estimates) fitted on labelled rows
  the version was not trained on (a retrain's validation + holdout rows, a baseline's holdout),
  so the daemon estimates a new champion's quality from its first window.
- Logged models: `sklearn_model` (the uncompressed estimator, cloudpickle — the registry
  is the trust boundary) and `model`, the serving variant: the compressed ONNX graph in a
  pyfunc that predicts from a DataFrame of raw columns (mlflow.onnx's own pyfunc cannot feed
  the per-column (N, 1) inputs), or — when nothing compressed within
  `retrain.max_quality_loss`, or for an adopted model — the sklearn model in a pyfunc with
  the same output. The registered version points at `model`, so
  `mlflow.pyfunc.load_model("models:/<name>@champion").predict(frame)` returns a DataFrame
  with `prediction` and, for classifiers, `proba_<class>` columns, whichever variant serves.
- Registered model: `model.registered_model` or `model.name`. Version tags:
  `driftd.trigger`, `driftd.compression` (the serving variant, or `none`),
  `driftd.gate.<name>` (`passed|failed <value> (threshold <t>; 95% lower bound <b> on <n>
  rows)`), `driftd.gate.confidence`, `driftd.gate.holdout_rows`, `driftd.gate.compression.refused`
  (compressed variants refused before the one that serves, with the reason), `driftd.primary_metric`,
  `driftd.validation_score` (the version's score on its holdout; the daemon compares live
  quality with it), `driftd.sklearn_model_uri`, `driftd.onnx_opset`, and on rejection
  `driftd.rejected_reason`; on promotion `driftd.promoted_over` (the version it replaced) and
  `driftd.promoted_at` (also on rollback: when it last became champion, which splits quality
  rows between versions when the logs carry no version column).
  `driftd.outcome` is `pending` from registration until the version is promoted or
  rejected; a retrain that fails in between (MLflow went away after registering) marks it
  `failed` with `driftd.failed_reason`, or — when MLflow is still unreachable — the next
  retrain does (`settle_orphans`), so no version is left without a reason.
- Aliases: `champion` serves; `previous` is the champion it replaced (for rollback);
  `challenger` marks the latest rejected version. Promotion moves `champion` LAST, so a
  failure anywhere before leaves the old champion serving.

How a version is logged: retrain.packaging; a champion without a retrain (baseline, adopt):
retrain.baseline.

MLflow's `search_model_versions` returns empty aliases (MLflow bug): aliases are read with
`get_model_version_by_alias` only.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from monitor.core.config import Config, ModelConfig
from monitor.core.tables import ReferenceError
from monitor.core.tables import read_table as read_reference
from retrain.evaluate import Gate
from retrain.tracking import TrackingError, connect, describe, is_missing, mask

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger("driftd.registry")

CHAMPION, PREVIOUS, CHALLENGER = "champion", "previous", "challenger"
OUTCOME_TAG, FAILED_REASON_TAG = "driftd.outcome", "driftd.failed_reason"
REFERENCE_ARTIFACT = "driftd/reference.parquet"
SCHEMA_ARTIFACT = "driftd/schema.json"
REPORT_ARTIFACT = "driftd/drift_report.html"
ESTIMATOR_ARTIFACTS = "driftd/estimator"
SKLEARN_MODEL = "sklearn_model"
SERVING_MODEL = "model"


class RegistryError(TrackingError):
    """The registry cannot do what was asked; the message says what to do instead."""


@dataclass(frozen=True)
class Champion:
    name: str
    version: str
    run_id: str
    model_uri: str
    sklearn_model_uri: str | None
    primary_metric: str | None
    validation_score: float | None
    promoted_at: datetime | None = None  # when it last became champion (`driftd.promoted_at`)
    promoted_over: str | None = None  # the version it replaced


@dataclass(frozen=True)
class Candidate:
    """Everything logged and registered for one new version."""

    estimator: Any  # the fitted, uncompressed scikit-learn estimator
    compression: Any | None  # retrain.compress.CompressionResult, None when not compressed
    fit_rows: pd.DataFrame  # the rows it was trained + validated on (features, target)
    trigger: str
    primary_metric: str
    validation_score: float | None
    gates: tuple[Gate, ...] = ()
    drift_report: Path | None = None
    tags: dict[str, str] = field(default_factory=dict)
    # Labelled rows the estimator was not trained on: the quality estimator is fitted on them
    calibration_rows: pd.DataFrame | None = None

    @property
    def variant(self) -> str:
        compression = self.compression
        if compression is None or compression.chosen is None or compression.onnx_model is None:
            return "none"
        return str(compression.chosen.name)


@dataclass(frozen=True)
class Logged:
    version: str
    model_uri: str  # the serving model
    sklearn_model_uri: str
    variant: str
    reference_rows: int


# --- reading ------------------------------------------------------------------------------


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


# --- moving aliases -----------------------------------------------------------------------


def promote(config: Config, model: ModelConfig, version: str) -> None:
    """Make `version` the champion; the champion it replaces becomes `previous`."""
    client = connect(config)
    try:
        client.get_model_version(model.mlflow_name, str(version))
    except Exception as exc:
        if is_missing(exc):
            raise RegistryError(f"registered model {model.mlflow_name!r} has no version {version}") from None
        raise RegistryError(f"cannot read {model.mlflow_name!r} version {version}: {describe(exc)}") from None
    move_champion(client, model.mlflow_name, str(version))


def rollback(config: Config, model: ModelConfig) -> str:
    """Serve the `previous` version again; returns the version now serving."""
    client = connect(config)
    name = model.mlflow_name
    previous = _by_alias(client, name, PREVIOUS)
    if previous is None:
        raise RegistryError(f"{name!r} has no `previous` version to roll back to; promote one explicitly with `driftd promote --version N`")
    current = _by_alias(client, name, CHAMPION)
    restored = str(previous.version)
    older = (previous.tags or {}).get("driftd.promoted_over")
    # Rows logged from now on are the restored version's (monitor.check.attribution reads this).
    _call(client.set_model_version_tag, name, restored, "driftd.promoted_at", _now())
    _call(client.set_registered_model_alias, name, CHAMPION, restored)
    if current is not None:
        _call(client.set_model_version_tag, name, str(current.version), "driftd.rolled_back_at", _now())
    # The restored version's own predecessor becomes `previous`, so rollbacks chain backwards.
    if older and older != restored:
        _call(client.set_registered_model_alias, name, PREVIOUS, older)
    else:
        _call(client.delete_registered_model_alias, name, PREVIOUS)
    return restored


def move_champion(client: MlflowClient, name: str, version: str) -> None:
    current = _by_alias(client, name, CHAMPION)
    if current is not None and str(current.version) == version:
        return
    if current is not None:
        _call(client.set_model_version_tag, name, version, "driftd.promoted_over", str(current.version))
    _call(client.set_model_version_tag, name, version, "driftd.promoted_at", _now())
    # The switch itself, before any other alias moves: a process killed before it leaves every alias
    # as it was. `previous` follows; a kill in between leaves the version `pending` with its
    # `driftd.promoted_over` tag, from which settle_orphans completes the move.
    _call(client.set_registered_model_alias, name, CHAMPION, version)
    try:  # tidying after the switch: a failure here must not report the promotion as failed
        if current is not None:
            client.set_registered_model_alias(name, PREVIOUS, str(current.version))
        client.set_model_version_tag(name, version, OUTCOME_TAG, "promoted")
        challenger = _by_alias(client, name, CHALLENGER)
        if challenger is not None and str(challenger.version) == version:
            client.delete_registered_model_alias(name, CHALLENGER)
    except Exception as exc:
        log.warning("version %s of %s is champion, but tidying after the switch failed (the next retrain completes it): %s",
                    version, name, describe(exc))


def mark_rejected(client: MlflowClient, name: str, version: str) -> None:
    _call(client.set_model_version_tag, name, version, OUTCOME_TAG, "rejected")
    _call(client.set_registered_model_alias, name, CHALLENGER, version)


def mark_failed(client: MlflowClient, name: str, version: str, reason: str, stage: str) -> None:
    """Record why a registered version was neither promoted nor rejected (best effort: raises)."""
    _call(client.set_model_version_tag, name, version, FAILED_REASON_TAG, f"failed while {stage}: {reason}"[:5000])
    _call(client.set_model_version_tag, name, version, OUTCOME_TAG, "failed")


def settle_orphans(client: MlflowClient, name: str) -> list[str]:
    """Versions still `pending` from a retrain that could not finish (MLflow was unreachable
    even to record the failure): the champion among them was promoted, the others failed."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException as exc:
        if is_missing(exc):
            return []
        raise
    pending = [v for v in versions if (v.tags or {}).get(OUTCOME_TAG) == "pending"]
    if not pending:
        return []
    current = _by_alias(client, name, CHAMPION)
    settled = []
    for version in pending:
        number = str(version.version)
        if current is not None and str(current.version) == number:
            over = (version.tags or {}).get("driftd.promoted_over")
            if over:  # its process ended between the switch and moving `previous` (move_champion)
                _call(client.set_registered_model_alias, name, PREVIOUS, over)
            _call(client.set_model_version_tag, name, number, OUTCOME_TAG, "promoted")
            continue
        reason = (f"orphaned: registered by run {version.run_id}, which failed before promoting or rejecting it "
                  "(MLflow was unreachable); found by a later retrain")
        _call(client.set_model_version_tag, name, number, FAILED_REASON_TAG, reason)
        _call(client.set_model_version_tag, name, number, OUTCOME_TAG, "failed")
        settled.append(number)
    return settled


def _call(method: Any, *args: Any) -> Any:
    try:
        return method(*args)
    except Exception as exc:
        raise RegistryError(f"MLflow registry at {_where()}: {method.__name__} failed: {describe(exc)}") from None


def _where() -> str:
    import mlflow

    return mask(mlflow.get_registry_uri())  # set by connect() before any registry call


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- logging a version --------------------------------------------------------------------


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


# --- serving predictions of an existing version ---------------------------------------------


# --- adopting and bootstrapping -------------------------------------------------------------


