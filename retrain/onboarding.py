"""Bringing an existing scikit-learn model under driftd's care: load it, read what it takes as
input, say in words where that disagrees with the monitored columns, and import it into MLflow.

`driftd init --model-file/--model-uri` imports a model as an `import` run in the model's
experiment (tag `driftd.import_uri`); `driftd adopt` without --run/--model-uri adopts the latest
import. A pickle or joblib file runs code when loaded: load only files you trust.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from monitor.core.config import Config, ModelConfig
from retrain.tracking import describe, mask

IMPORT_KIND = "import"
IMPORT_URI_TAG = "driftd.import_uri"
_ENCODERS = ("OneHotEncoder", "OrdinalEncoder", "TargetEncoder")


class ModelInputError(Exception):
    """A model cannot be loaded, or does not take the monitored columns; the message says how to fix it."""


@dataclass(frozen=True)
class ModelInputs:
    """What a fitted estimator reads at predict time."""

    names: tuple[str, ...] | None  # the columns it was fitted on (feature_names_in_); None: fitted on an array
    count: int | None  # n_features_in_
    required: tuple[str, ...] | None  # the columns predict reads (a ColumnTransformer ignores dropped ones)
    selects_columns: bool  # a ColumnTransformer picks its columns by name: extra columns are harmless
    categorical: tuple[str, ...]  # columns the pipeline encodes as categories
    task: str | None  # binary_classification | multiclass_classification | regression


def load_estimator(*, path: Path | None = None, uri: str | None = None) -> Any:
    """A scikit-learn estimator from a pickle/joblib file or an MLflow model URI."""
    if (path is None) == (uri is None):
        raise ValueError("give exactly one of path or uri")
    if path is not None:
        import joblib

        try:
            estimator = joblib.load(path)  # reads plain pickles too
        except FileNotFoundError:
            raise ModelInputError(f"model file {path} does not exist") from None
        except Exception as exc:  # unpickling raises anything: a missing module, a truncated file
            raise ModelInputError(
                f"cannot load {path} as a pickled scikit-learn model: {type(exc).__name__}: {exc} "
                "(load it in the same Python environment with the same libraries it was saved with)"
            ) from None
        where = str(path)
    else:
        assert uri is not None  # exactly one of path and uri, checked above
        import mlflow

        try:
            estimator = mlflow.sklearn.load_model(uri)
        except Exception as exc:
            raise ModelInputError(f"cannot load a scikit-learn model from {mask(uri)}: {describe(exc)}") from None
        where = mask(uri)
    if not hasattr(estimator, "predict") or not hasattr(estimator, "fit"):
        raise ModelInputError(f"{where} holds a {type(estimator).__name__}, not a scikit-learn estimator; "
                              "driftd retrains by refitting a scikit-learn estimator or pipeline")
    return estimator


def model_inputs(estimator: Any) -> ModelInputs:
    from sklearn.base import is_classifier, is_regressor
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    names = getattr(estimator, "feature_names_in_", None)
    names = tuple(str(n) for n in names) if names is not None else None
    first = estimator.steps[0][1] if isinstance(estimator, Pipeline) else estimator
    selects = isinstance(first, ColumnTransformer)
    required = names
    categorical: tuple[str, ...] = ()
    if selects and hasattr(first, "transformers_") and names is not None:
        used: list[str] = []
        encoded: list[str] = []
        for _, transformer, columns in first.transformers_:
            if isinstance(transformer, str) and transformer == "drop":
                continue
            picked = _column_names(columns, names)
            used += picked
            if _encodes(transformer):
                encoded += picked
        required, categorical = tuple(dict.fromkeys(used)), tuple(dict.fromkeys(encoded))
    task = None
    if is_classifier(estimator):
        classes = getattr(estimator, "classes_", None)
        task = "binary_classification" if classes is not None and len(classes) == 2 else "multiclass_classification"
    elif is_regressor(estimator):
        task = "regression"
    return ModelInputs(names, getattr(estimator, "n_features_in_", None), required, selects, categorical, task)


def _column_names(columns: Any, names: tuple[str, ...]) -> list[str]:
    """A fitted ColumnTransformer's column spec (names, positions, a mask or a slice) as names."""
    import numpy as np

    if isinstance(columns, str):
        return [columns]
    if isinstance(columns, slice):
        return list(names[columns])
    values = list(columns)
    if values and all(isinstance(v, (bool, np.bool_)) for v in values):
        return [n for n, keep in zip(names, values) if keep]
    return [names[int(v)] if isinstance(v, (int, np.integer)) else str(v) for v in values]


def _encodes(transformer: Any) -> bool:
    if isinstance(transformer, str):  # "passthrough"
        return False
    steps = getattr(transformer, "steps", None)
    parts = [s for _, s in steps] if steps else [transformer]
    return any(type(p).__name__ in _ENCODERS for p in parts)


def explain(inputs: ModelInputs, numerical: Sequence[str], categorical: Sequence[str], *, what: str = "the model") -> tuple[list[str], list[str]]:
    """(problems, notes) about feeding `what` the monitored features: problems stop adoption."""
    features = [*numerical, *categorical]
    problems: list[str] = []
    notes: list[str] = []
    if inputs.names is None:
        if inputs.count is not None and inputs.count != len(features):
            problems.append(
                f"{what} was fitted on an array of {inputs.count} columns without names, but {len(features)} features are "
                f"monitored ({', '.join(features)}): list exactly its {inputs.count} input columns, in training order, "
                "under columns.numerical and columns.categorical"
            )
        elif inputs.count is not None:
            notes.append(
                f"{what} was fitted without column names: driftd feeds it the monitored features in configuration order "
                f"({', '.join(features)}); make sure that is the order it was trained on"
            )
        return problems, notes
    needed = inputs.required if inputs.required is not None else inputs.names
    missing = [c for c in needed if c not in features]
    if missing:
        problems.append(
            f"{what} reads the column(s) {_list(missing)}, which are not monitored features: add them under "
            "columns.numerical or columns.categorical (and log them with every prediction)"
        )
    extra = [c for c in features if c not in inputs.names]
    if extra and not inputs.selects_columns:
        problems.append(
            f"the monitored feature(s) {_list(extra)} are not inputs of {what} (it was fitted on {_list(inputs.names)}): "
            "a retrain would refit it on different columns. Remove them from columns.numerical/categorical"
        )
    elif extra:
        notes.append(f"the monitored feature(s) {_list(extra)} are not read by {what}: their drift is watched, the model ignores them")
    wrong = [c for c in inputs.categorical if c in numerical]
    if wrong:
        notes.append(f"{what} encodes {_list(wrong)} as categories, but the configuration lists them as numerical")
    if not missing and not extra and list(inputs.names) != features and not inputs.selects_columns:
        notes.append(f"{what} takes its columns in the order {_list(inputs.names)}; driftd feeds them in that order")
    return problems, notes


def check_inputs(estimator: Any, model: ModelConfig, *, what: str = "the model") -> list[str]:
    """Raise ModelInputError (in words) when `estimator` cannot be fed `model`'s features; return notes."""
    problems, notes = explain(model_inputs(estimator), model.columns.numerical, model.columns.categorical, what=what)
    if problems:
        raise ModelInputError(f"{what} does not match the monitored columns of {model.name!r}:\n" + "\n".join(f"  - {p}" for p in problems))
    return notes


def input_frame(estimator: Any, frame: pd.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    """The columns to hand `estimator.predict`: its own training columns in its own order when
    the frame has them all (scikit-learn refuses any other order), else the monitored features."""
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None and all(n in frame.columns for n in names):
        return frame[list(names)]
    return frame[list(features)]


def _list(columns: Sequence[str]) -> str:
    return ", ".join(repr(c) for c in columns)


# --- MLflow: importing, and finding the import again ---------------------------------------------


def import_model(config: Config, model: ModelConfig, *, path: Path | None = None, uri: str | None = None) -> str:
    """Record an existing model in the model's MLflow experiment (an `import` run), so `driftd
    adopt` without --run/--model-uri finds it. A file is logged as the run's `sklearn_model`; a
    URI is only recorded. Returns the URI adopt will load."""
    from retrain.packaging import _quiet

    # The store's creation chatter and the pickle warning say nothing a user acts on here.
    with _quiet("mlflow.store.db.utils"), _quiet("alembic"), _quiet("mlflow.sklearn"):
        return _import(config, model, path, uri)


def _import(config: Config, model: ModelConfig, path: Path | None, uri: str | None) -> str:
    import mlflow

    from retrain.packaging import end_run, sklearn_requirements
    from retrain.registry import SKLEARN_MODEL
    from retrain.tracking import connect, ensure_experiment

    estimator = load_estimator(path=path, uri=uri)
    client = connect(config)
    experiment = ensure_experiment(client, config, model)
    source = str(path) if path is not None else mask(uri or "")
    mlflow.start_run(experiment_id=experiment, run_name=IMPORT_KIND,
                           tags={"driftd.kind": IMPORT_KIND, "driftd.model": model.name, "driftd.imported_from": source})
    status = "FAILED"
    try:
        if path is not None:
            info = mlflow.sklearn.log_model(estimator, name=SKLEARN_MODEL, serialization_format="cloudpickle",
                                            pip_requirements=sklearn_requirements())
            uri = info.model_uri
        mlflow.set_tag(IMPORT_URI_TAG, uri)
        status = "FINISHED"
        return str(uri)
    finally:
        end_run(status)


def latest_import(config: Config, model: ModelConfig) -> str | None:
    """The model URI of the latest `import` run of `model`, or None."""
    from retrain.tracking import connect, experiment_name

    client = connect(config)
    experiment = client.get_experiment_by_name(experiment_name(model))
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`driftd.kind` = '{IMPORT_KIND}' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].data.tags.get(IMPORT_URI_TAG) if runs else None
