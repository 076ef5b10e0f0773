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

The package: records.py (names and records), read.py (champion, reference, estimator),
aliases.py (promote, rollback, outcome tags), packaging.py (how a version is logged),
pyfunc.py (the sklearn serving template), champions.py (baseline and adopt). What the daemon,
the CLI and the pipeline call is re-exported here: that is the registry's interface.
"""

from __future__ import annotations

from retrain.registry.aliases import mark_failed, mark_rejected, move_champion, promote, rollback, settle_orphans
from retrain.registry.champions import adopt, register_baseline
from retrain.registry.packaging import end_run, log_candidate, serving_predictions, sklearn_requirements
from retrain.registry.read import champion, load_estimator, load_reference, read_table, validation_score
from retrain.registry.records import (
    CHALLENGER,
    CHAMPION,
    ESTIMATOR_ARTIFACTS,
    OUTCOME_TAG,
    PREVIOUS,
    REFERENCE_ARTIFACT,
    SERVING_MODEL,
    SKLEARN_MODEL,
    Candidate,
    Champion,
    Logged,
    RegistryError,
)

__all__ = ["CHALLENGER", "CHAMPION", "Candidate", "Champion", "ESTIMATOR_ARTIFACTS", "Logged", "OUTCOME_TAG",
           "PREVIOUS", "REFERENCE_ARTIFACT", "RegistryError", "SERVING_MODEL", "SKLEARN_MODEL", "adopt", "champion",
           "end_run", "load_estimator", "load_reference", "log_candidate", "mark_failed", "mark_rejected",
           "move_champion", "promote", "read_table", "register_baseline", "rollback", "serving_predictions",
           "settle_orphans", "sklearn_requirements", "validation_score"]
