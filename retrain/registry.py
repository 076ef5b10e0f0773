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

MLflow's `search_model_versions` returns empty aliases (MLflow bug): aliases are read with
`get_model_version_by_alias` only.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from monitor.core.config import Config, ModelConfig
from monitor.core.tables import ReferenceError
from monitor.core.tables import read_table as read_reference
from retrain.evaluate import Gate
from retrain.tracking import TrackingError, connect, describe, ensure_experiment, is_missing, mask

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
        _call(client.set_registered_model_alias, name, PREVIOUS, str(current.version))
    _call(client.set_model_version_tag, name, version, "driftd.promoted_at", _now())
    _call(client.set_registered_model_alias, name, CHAMPION, version)  # last: the switch itself
    try:  # tidying after the switch: a failure here must not report the promotion as failed
        client.set_model_version_tag(name, version, OUTCOME_TAG, "promoted")
        challenger = _by_alias(client, name, CHALLENGER)
        if challenger is not None and str(challenger.version) == version:
            client.delete_registered_model_alias(name, CHALLENGER)
    except Exception as exc:
        log.warning("version %s of %s is champion, but its old challenger alias stays: %s", version, name, describe(exc))


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


def log_candidate(client: MlflowClient, model: ModelConfig, candidate: Candidate, run_id: str) -> Logged:
    """Log models and reference into the active run `run_id` and register a version.

    Aliases are not touched: the caller decides between promotion and rejection."""
    import mlflow

    features = list(model.columns.features)
    with _quiet("mlflow.sklearn"):  # its pickle warning: the registry is the trust boundary
        sklearn_info = mlflow.sklearn.log_model(
            candidate.estimator,
            name=SKLEARN_MODEL,
            serialization_format="cloudpickle",
            pip_requirements=sklearn_requirements(),
            signature=_signature(candidate.estimator, candidate.fit_rows[features]),
        )
    if candidate.variant != "none":
        from retrain.compress import log_onnx_model

        serving = log_onnx_model(candidate.compression, SERVING_MODEL, model.columns.numerical, model.columns.categorical, candidate.fit_rows)
    else:
        serving = _log_sklearn_serving(sklearn_info.model_uri, candidate.fit_rows[features])
    reference = reference_frame(model, candidate)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "driftd")
        folder.mkdir()
        reference.to_parquet(folder / "reference.parquet", index=False)
        (folder / "schema.json").write_text(json.dumps(schema(model, reference), indent=2))
        if candidate.drift_report is not None and candidate.drift_report.is_file():
            shutil.copyfile(candidate.drift_report, folder / "drift_report.html")
        _save_estimator(model, candidate, folder / "estimator")
        client.log_artifacts(run_id, str(folder), "driftd")
    tags = version_tags(candidate, sklearn_info.model_uri)
    _ensure_registered_model(client, model)
    version = client.create_model_version(
        model.mlflow_name, source=serving.model_uri, run_id=run_id, tags=tags, model_id=serving.model_id, await_creation_for=60
    )
    return Logged(str(version.version), serving.model_uri, sklearn_info.model_uri, candidate.variant, len(reference))


# The sklearn model served through the same output contract as the ONNX variants (columns
# `prediction` and `proba_<class>`), so consumers of models:/NAME@champion need not care
# which variant serves. Models-from-code: loading it needs mlflow and sklearn, not driftd.
_SKLEARN_PYFUNC = '''"""driftd: serve a scikit-learn model from a DataFrame of raw columns."""
import mlflow
import pandas as pd


class SklearnFrameModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.model = mlflow.sklearn.load_model(context.artifacts["sklearn_model"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        frame = pd.DataFrame(model_input)
        # scikit-learn wants exactly its training columns, in their order, when it was fitted on them.
        names = getattr(self.model, "feature_names_in_", None)
        inputs = frame[list(names)] if names is not None and all(n in frame.columns for n in names) else frame
        result = pd.DataFrame({"prediction": self.model.predict(inputs)}, index=frame.index)
        if hasattr(self.model, "predict_proba") and hasattr(self.model, "classes_"):
            proba = self.model.predict_proba(inputs)
            for k, label in enumerate(self.model.classes_):
                result[f"proba_{label}"] = proba[:, k]
        return result


mlflow.models.set_model(SklearnFrameModel())
'''


def _log_sklearn_serving(sklearn_model_uri: str, example: pd.DataFrame) -> Any:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        code = Path(tmp, "driftd_sklearn_pyfunc.py")
        code.write_text(_SKLEARN_PYFUNC)
        return mlflow.pyfunc.log_model(
            name=SERVING_MODEL,
            python_model=str(code),
            artifacts={"sklearn_model": sklearn_model_uri},
            input_example=example.head(5),
            pip_requirements=sklearn_requirements() + [f"mlflow=={mlflow.__version__}"],
        )


@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    target = logging.getLogger(logger)
    level = target.level
    target.setLevel(logging.ERROR)
    try:
        yield
    finally:
        target.setLevel(level)


def version_tags(candidate: Candidate, sklearn_model_uri: str) -> dict[str, str]:
    tags = {
        "driftd.trigger": candidate.trigger[:5000],
        "driftd.compression": candidate.variant,
        "driftd.primary_metric": candidate.primary_metric,
        "driftd.validation_score": "" if candidate.validation_score is None else repr(float(candidate.validation_score)),
        "driftd.sklearn_model_uri": sklearn_model_uri,
        OUTCOME_TAG: "pending",  # until promoted, rejected or failed
    }
    if candidate.variant != "none" and candidate.compression is not None:
        tags["driftd.onnx_opset"] = str(candidate.compression.target_opset)
    tags.update({f"driftd.gate.{g.name}": g.tag for g in candidate.gates})
    tags.update(candidate.tags)
    return tags


def sklearn_requirements() -> list[str]:
    import cloudpickle
    import sklearn

    return [f"scikit-learn=={sklearn.__version__}", f"cloudpickle=={cloudpickle.__version__}", f"pandas=={pd.__version__}", f"numpy=={np.__version__}"]


def _signature(estimator: Any, features: pd.DataFrame) -> Any:
    from mlflow.models import infer_signature

    from retrain.onboarding import input_frame

    sample = features.head(50)
    return infer_signature(sample, estimator.predict(input_frame(estimator, sample, list(sample.columns))))


def _ensure_registered_model(client: MlflowClient, model: ModelConfig) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(model.mlflow_name)
        return
    except MlflowException as exc:
        if not is_missing(exc):
            raise
    try:
        client.create_registered_model(
            model.mlflow_name,
            tags={"driftd.model": model.name, "driftd.task": model.task},
            description=f"Managed by driftd: model {model.name!r}; the `champion` alias serves.",
        )
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def predictions(model: ModelConfig, candidate: Candidate, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """What the serving variant of `candidate` predicts for `frame`: labels/values and probabilities."""
    cols = model.columns
    if candidate.variant != "none" and candidate.compression is not None:
        from retrain.compress import onnx_predict

        return onnx_predict(candidate.compression.onnx_model, frame, cols.numerical, cols.categorical)
    from retrain.onboarding import input_frame

    estimator = candidate.estimator
    inputs = input_frame(estimator, frame, cols.features)
    proba = estimator.predict_proba(inputs) if hasattr(estimator, "predict_proba") and model.task != "regression" else None
    return np.asarray(estimator.predict(inputs)), proba


def reference_frame(model: ModelConfig, candidate: Candidate) -> pd.DataFrame:
    """The new reference: fit rows' features (+ target) and the version's own predictions."""
    cols = model.columns
    keep = [c for c in [*cols.features, cols.target] if c and c in candidate.fit_rows.columns]
    reference = candidate.fit_rows[keep].reset_index(drop=True)
    labels, proba = predictions(model, candidate, reference)
    reference[cols.prediction] = labels
    if cols.probability and proba is not None and model.task == "binary_classification":
        reference[cols.probability] = np.asarray(proba)[:, -1]
    return reference


def _save_estimator(model: ModelConfig, candidate: Candidate, folder: Path) -> None:
    """Fit the version's quality estimator on its calibration rows, scored by its serving variant.
    Without one the daemon refits on the reference: worth a warning, never a failed retrain."""
    from monitor.check.estimates import fit_for
    from monitor.check.estimation import EstimatorError, save_estimator

    rows = candidate.calibration_rows
    if not model.estimation.enabled or rows is None or model.columns.target is None:
        return
    try:
        frame = estimation_frame(model, candidate, rows)
        save_estimator(fit_for(model, frame), folder)
    except (EstimatorError, ValueError) as exc:
        log.warning("no estimator artifact for %s (%d calibration rows): %s; the daemon will refit on the reference",
                    model.name, len(rows), exc)


def estimation_frame(model: ModelConfig, candidate: Candidate, rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` (features + target) with the serving variant's prediction and probability columns,
    as the prediction logs will carry them."""
    cols = model.columns
    keep = [c for c in [*cols.features, cols.target] if c and c in rows.columns]
    frame = rows[keep].reset_index(drop=True)
    labels, proba = predictions(model, candidate, frame)
    frame[cols.prediction] = labels
    if proba is not None and model.task != "regression":
        proba = np.asarray(proba)
        if cols.probability and model.task == "binary_classification":
            frame[cols.probability] = proba[:, -1]
        classes = list(getattr(candidate.estimator, "classes_", []))
        for label, column in model.estimation.probabilities.items():
            index = next((i for i, c in enumerate(classes) if str(c) == str(label)), None)
            if index is None:
                raise ValueError(f"estimation.probabilities names class {label!r}, which the model does not predict ({classes})")
            frame[column] = proba[:, index]
        if cols.probability and model.task != "binary_classification" and cols.probability not in frame.columns:
            frame[cols.probability] = proba.max(axis=1)  # the predicted class's confidence
    return frame


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


def schema(model: ModelConfig, reference: pd.DataFrame) -> dict[str, Any]:
    cols = model.columns
    roles = {**{c: "numerical" for c in cols.numerical}, **{c: "categorical" for c in cols.categorical}}
    roles.update({c: role for c, role in ((cols.prediction, "prediction"), (cols.probability, "probability"), (cols.target, "target")) if c})
    return {
        "model": model.name,
        "task": model.task,
        "rows": len(reference),
        "columns": [{"name": c, "role": roles.get(c, "other"), "dtype": str(reference[c].dtype)} for c in reference.columns],
    }


# --- serving predictions of an existing version ---------------------------------------------


def serving_predictions(model_uri: str, frame: pd.DataFrame, model: ModelConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels/values (and positive-class probability for binary models, when the serving
    model exposes it) predicted by the pyfunc at `model_uri`."""
    import mlflow

    output = mlflow.pyfunc.load_model(model_uri).predict(frame[list(model.columns.features)])
    if isinstance(output, pd.DataFrame):
        labels = output["prediction"] if "prediction" in output.columns else output.iloc[:, 0]
        proba_columns = [c for c in output.columns if str(c).startswith("proba_")]
        proba = output[proba_columns].to_numpy() if proba_columns else None
        return labels.to_numpy(), proba
    return np.asarray(output).reshape(-1), None


# --- adopting and bootstrapping -------------------------------------------------------------


def register_baseline(config: Config, model: ModelConfig, estimator: Any, reference: pd.DataFrame, holdout: pd.DataFrame) -> str:
    """Log a freshly trained `estimator` (compressed as a retrain would) with its reference
    rows and register it as champion; returns the version. `holdout` (with the target) gives
    the version's `driftd.validation_score`."""
    from retrain.evaluate import primary_metric

    compression = _compress_baseline(model, estimator, reference, holdout)
    candidate = Candidate(estimator, compression, reference, "baseline", primary_metric(model), None, calibration_rows=holdout)
    return _register_as_champion(config, model, _scored(model, candidate, holdout), kind="baseline")


def _scored(model: ModelConfig, candidate: Candidate, frame: pd.DataFrame) -> Candidate:
    """`candidate` with its serving variant's score on the labelled rows of `frame`, if any."""
    from retrain.evaluate import positive_probability, score

    target = model.columns.target
    if not target or target not in frame.columns or frame[target].isna().all():
        return candidate
    labelled = frame[frame[target].notna()]
    labels, proba = predictions(model, candidate, labelled)
    return replace(candidate, validation_score=score(model, labelled, labels, positive_probability(model, proba)))


def _compress_baseline(model: ModelConfig, estimator: Any, reference: pd.DataFrame, holdout: pd.DataFrame) -> Any | None:
    """Compress as a retrain would: choose on the older half of the labelled holdout, gate
    the choice on the newer half (the reference rows trained the model: useless for either)."""
    from retrain.compress import compress, onnx_predict
    from retrain.evaluate import Served, gate_compression

    cols = model.columns
    options = model.retrain
    if not options.compression or cols.target is None:
        return None
    labelled = holdout[holdout[cols.target].notna()]
    if len(labelled) < 4:
        return None
    choose_on, gate_on = labelled.iloc[: len(labelled) // 2], labelled.iloc[len(labelled) // 2 :]
    result = compress(
        estimator, choose_on, target=cols.target, numerical=cols.numerical, categorical=cols.categorical,
        task=model.task, strategies=list(options.compression), max_quality_loss=options.max_quality_loss,
        confidence=options.confidence, seed=0,
    )  # fmt: skip
    uncompressed = Served("none", np.asarray(estimator.predict(gate_on[cols.features])), lossless=True)

    def gate(result: Any) -> Served:
        graphs = {v.name: (v, g) for v, g in ((result.lossless, result.lossless_model), (result.chosen, result.onnx_model)) if v and g}
        candidates = [Served(name, onnx_predict(g, gate_on, cols.numerical, cols.categorical)[0], lossless=v.lossless)
                      for name, (v, g) in reversed(graphs.items())]
        return gate_compression(model, gate_on, uncompressed.labels, [*candidates, uncompressed], options)[0]

    served = gate(result)
    fuller = result.with_lossless() if served is uncompressed else result
    if fuller is not result:  # the chosen lossy variant was refused: the lossless conversion, built only now
        result, served = fuller, gate(fuller)
    variant = next((v for v in (result.chosen, result.lossless) if v is not None and v.name == served.name), None)
    return result.serving(variant) if variant is not None else None


def adopt(config: Config, model: ModelConfig, *, run_id: str | None = None, model_uri: str | None = None, reference: Path) -> str:
    """Take an existing scikit-learn model (by `run_id` or `model_uri`; neither: the latest one
    `driftd init` imported) under driftd's care: re-log it with `reference` (a .parquet/.csv of
    its training data) and make it champion. A model that cannot take the monitored columns is
    refused with the reason in words.

    When the reference carries the target, the model's score on it becomes the version's
    `driftd.validation_score`."""
    import mlflow

    from retrain.evaluate import primary_metric
    from retrain.onboarding import ModelInputError, check_inputs, latest_import

    if run_id is not None and model_uri is not None:
        raise RegistryError("give at most one of run_id or model_uri for the model to adopt")
    connect(config)
    uri = model_uri or (_model_uri_of_run(config, run_id) if run_id else latest_import(config, model))
    if uri is None:
        raise RegistryError(
            f"nothing to adopt for {model.name!r}: give --run ID or --model-uri URI, or import a pickled model first with "
            "`driftd init ... --model-file FILE` (or --model-uri)"
        )
    try:
        estimator = mlflow.sklearn.load_model(uri)
    except Exception as exc:
        raise RegistryError(f"cannot load a scikit-learn model from {mask(uri)}: {describe(exc)}; "
                            "driftd retrains by refitting a scikit-learn estimator") from None
    try:
        for note in check_inputs(estimator, model, what=f"the model at {mask(uri)}"):
            log.warning("%s", note)
    except ModelInputError as exc:
        raise RegistryError(str(exc)) from None
    frame = read_table(reference)
    missing = [c for c in model.columns.features if c not in frame.columns]
    if missing:
        raise RegistryError(f"reference file {reference} lacks the feature columns {missing} of model {model.name!r}")
    candidate = Candidate(estimator, None, frame, "adopt", primary_metric(model), None, tags={"driftd.adopted_from": mask(uri)})
    try:
        candidate = _scored(model, candidate, frame)
    except ValueError as exc:  # scikit-learn's own words about the input, e.g. a category it never saw as a number
        raise RegistryError(f"the model at {mask(uri)} cannot predict the rows of {reference}: {exc}") from None
    return _register_as_champion(config, model, candidate, kind="adopt")


def _model_uri_of_run(config: Config, run_id: str) -> str:
    """The scikit-learn model logged by run `run_id` (MLflow 3 logged model, or runs:/…/model)."""
    client = connect(config)
    try:
        run = client.get_run(run_id)
        found = client.search_logged_models(experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'")
    except Exception as exc:
        raise RegistryError(f"cannot read run {run_id}: {describe(exc)}") from None
    if not found:
        return f"runs:/{run_id}/model"
    preferred = [m for m in found if m.name in (SKLEARN_MODEL, SERVING_MODEL)] or list(found)
    return f"models:/{preferred[0].model_id}"


def _register_as_champion(config: Config, model: ModelConfig, candidate: Candidate, *, kind: str) -> str:
    import mlflow

    client = connect(config)
    experiment = ensure_experiment(client, config, model)
    tags = {"driftd.kind": kind, "driftd.trigger": kind, "driftd.model": model.name, "driftd.config_hash": config.fingerprint()}
    run = mlflow.start_run(experiment_id=experiment, run_name=kind, tags=tags)
    status = "FAILED"
    try:
        if candidate.validation_score is not None:
            mlflow.log_metric("validation_score", candidate.validation_score)
        mlflow.log_param("rows.reference", len(candidate.fit_rows))
        logged = log_candidate(client, model, candidate, run.info.run_id)
        move_champion(client, model.mlflow_name, logged.version)
        status = "FINISHED"
        return logged.version
    finally:
        end_run(status)


def end_run(status: str) -> None:
    """End the active run; a dead server must not mask the error that got us here."""
    import mlflow

    try:
        mlflow.end_run(status)
    except Exception as exc:  # mlflow pops the run off its stack before the call that failed
        log.warning("could not mark the MLflow run %s: %s", status, describe(exc))


