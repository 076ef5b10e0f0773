"""How a version is logged into MLflow: its sklearn model, its serving variant (the ONNX graph,
or the sklearn model in a pyfunc with the same output), its reference rows, schema and quality
estimator, and its version tags (conventions in retrain.registry)."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from monitor.core.config import ModelConfig
from retrain.tracking import describe, is_missing

if TYPE_CHECKING:
    from mlflow import MlflowClient
from retrain.registry import OUTCOME_TAG, SERVING_MODEL, SKLEARN_MODEL, Candidate, Logged

log = logging.getLogger("driftd.registry")


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


def end_run(status: str) -> None:
    """End the active run; a dead server must not mask the error that got us here."""
    import mlflow

    try:
        mlflow.end_run(status)
    except Exception as exc:  # mlflow pops the run off its stack before the call that failed
        log.warning("could not mark the MLflow run %s: %s", status, describe(exc))
