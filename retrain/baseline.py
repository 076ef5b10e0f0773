"""A champion without a retrain: a freshly trained baseline (compressed as a retrain would be)
or an existing scikit-learn model adopted with its reference rows."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from monitor.core.config import Config, ModelConfig
from retrain.tracking import connect, describe, ensure_experiment, mask

if TYPE_CHECKING:
    pass
from retrain.packaging import end_run, log_candidate, predictions
from retrain.registry import SERVING_MODEL, SKLEARN_MODEL, Candidate, RegistryError, move_champion, read_table

log = logging.getLogger("driftd.registry")


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
