"""The retrain-and-recompress pipeline: the one entry point the daemon and the CLI call.

    champion -> training data -> train (+ tune) -> compress -> evaluate -> register -> alias

Everything is tracked in one MLflow parent run with child runs per stage (conventions in
`retrain.registry`). `run_retrain` never raises for data, training or MLflow failures: it
returns `outcome="failed"` with a reason a person can act on (credentials masked), and the
parent run, when it exists, ends FAILED. The `champion` alias is the last thing written, so
a failure at any point leaves the old champion serving.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from monitor.core.config import Config, ModelConfig
from retrain import registry
from retrain.data import TrainingData, load_training_data
from retrain.evaluate import SKLEARN, Evaluation, Served, evaluate, higher_is_better, positive_probability, primary_metric, score
from retrain.failures import EXPLAINED, StageFailed, failure_reason, is_mlflow_error
from retrain.outcome import RetrainOutcome, Trigger
from retrain.packaging import end_run, log_candidate, serving_predictions
from retrain.registry import Candidate, Champion
from retrain.runlog import child_run, evaluation_metrics, evaluation_tags, summary_metrics, variant_metrics
from retrain.tracking import close_interrupted_runs, connect, connection_problem, describe, ensure_experiment, mask
from retrain.train import estimator_params, refit

log = logging.getLogger("driftd.retrain")

SEED = 0


def run_retrain(
    config: Config,
    model: ModelConfig,
    trigger: Trigger,
    *,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> RetrainOutcome:
    """Retrain `model` on its recent labelled rows, recompress, gate against the champion,
    register the result and promote it when every gate passes."""
    job = _Retrain(config, model, trigger, now or datetime.now(timezone.utc), progress)
    return job.run()


class _Retrain:
    """One retrain's state, so a failure at any stage can still report what was known."""

    def __init__(self, config: Config, model: ModelConfig, trigger: Trigger, now: datetime, progress: Callable[[str], None] | None) -> None:
        self.config, self.model, self.trigger, self.now = config, model, trigger, now
        self._progress = progress
        self.started = time.perf_counter()
        self.stage = "starting"
        self.stage_seconds: dict[str, float] = {}
        self._stage_started = self.started
        self.run_id: str | None = None
        self.metric: str | None = None
        self.evaluation: Evaluation | None = None
        self.compression: Any | None = None
        self.variant: str | None = None
        self.version: str | None = None  # once registered, even if a later step fails
        self.unreachable = False  # MLflow stopped answering: make no more calls than needed

    # --- the stages, in order ------------------------------------------------------------

    def run(self) -> RetrainOutcome:
        import mlflow

        try:
            self.metric = primary_metric(self.model)
            client, champ, template = self._champion()
            data = self._data(champ)
            self._at("starting the MLflow run")
            experiment = ensure_experiment(client, self.config, self.model)
            for stale in close_interrupted_runs(client, experiment):
                log.warning("retrain run %s of %s was left running by an earlier failure; marked FAILED", stale, self.model.name)
            run = mlflow.start_run(experiment_id=experiment, run_name=f"retrain {self.now:%Y-%m-%d %H:%M}", tags=self._run_tags(data))
            self.run_id = run.info.run_id
        except Exception as exc:
            return self._failed(exc)
        try:
            outcome = self._in_run(client, champ, template, data)
        except Exception as exc:
            outcome = self._failed(exc)
        self._finish_run(outcome)
        return outcome

    def _in_run(self, client: Any, champ: Champion, template: Any, data: TrainingData) -> RetrainOutcome:
        import mlflow

        mlflow.log_params(self._run_params(data))
        estimator = self._train(template, data)
        if self.model.retrain.tune:
            estimator = self._tune(estimator, data)
        mlflow.log_params(estimator_params(estimator))  # the final model's, after tuning
        self.compression = self._compress(estimator, data)
        self.evaluation = self._evaluate(champ, estimator, data)
        self._at("registering")
        candidate = Candidate(
            estimator, self.compression, data.fit_rows, self.trigger.reason, self.evaluation.metric,
            self.evaluation.challenger_score, self.evaluation.gates, self.trigger.drift_report,
            tags=evaluation_tags(self.evaluation),
            # rows the new version was not trained on: its quality estimator is calibrated on them
            calibration_rows=pd.concat([data.validation, data.holdout], ignore_index=True),
        )  # fmt: skip
        logged = log_candidate(client, self.model, candidate, self.run_id)  # type: ignore[arg-type]
        self.variant, self.version = logged.variant, logged.version
        self.say(f"registered {self.model.mlflow_name} version {logged.version} ({logged.variant} variant, reference of {logged.reference_rows} rows)")
        if self.evaluation.passed:
            self._at("promoting")
            registry.move_champion(client, self.model.mlflow_name, logged.version)
            self.say(f"promoted version {logged.version} to champion (version {champ.version} is now previous)")
            return self._outcome("promoted", self.evaluation.reason, logged.version)
        registry.mark_rejected(client, self.model.mlflow_name, logged.version)
        self.say(f"rejected version {logged.version} (alias challenger): {self.evaluation.reason}")
        return self._outcome("rejected", self.evaluation.reason, logged.version)

    def _champion(self) -> tuple[Any, Champion, Any]:
        import mlflow

        self._at("reading the champion")
        client = connect(self.config)
        try:
            for orphan in registry.settle_orphans(client, self.model.mlflow_name):
                log.warning("version %s of %s was left without promotion or rejection by a failed retrain; marked failed",
                            orphan, self.model.mlflow_name)
        except Exception as exc:  # bookkeeping of an earlier retrain must not stop this one
            log.warning("could not settle versions left pending by an earlier retrain of %s: %s", self.model.name, describe(exc))
        champ = registry.champion(self.config, self.model)
        if champ is None:
            raise StageFailed(
                f"{self.model.mlflow_name!r} has no champion in the MLflow registry: there is nothing to retrain from; "
                "register one with `driftd adopt` (or the demo's baseline) first"
            )
        uri = champ.sklearn_model_uri or champ.model_uri
        try:
            template = mlflow.sklearn.load_model(uri)
        except Exception as exc:
            raise StageFailed(
                f"cannot load the scikit-learn model of champion version {champ.version} from {mask(uri)}: {describe(exc)}; "
                "driftd retrains by refitting it — adopt a scikit-learn model with `driftd adopt`"
            ) from None
        self.say(f"champion is version {champ.version} ({type(template).__name__})")
        return client, champ, template

    def _data(self, champ: Champion) -> TrainingData:
        reference = None
        if self.model.retrain.reference_blend > 0:
            self._at("reading the champion's reference")
            reference, _ = registry.load_reference(self.config, self.model, champ.version)
        self._at("reading training data")
        since = self.now - self.model.retrain.training_window
        self.say(f"reading labelled rows logged since {since:%Y-%m-%d %H:%M} UTC")
        data = load_training_data(self.model, now=self.now, reference=reference)
        blend = f", {data.reference_rows} reference rows blended in" if data.reference_rows else ""
        self.say(
            f"training data: {data.labelled_rows} labelled of {data.read_rows} rows{blend} -> "
            f"train {len(data.train)} / validation {len(data.validation)} / holdout {len(data.holdout)}"
        )
        return data

    def _train(self, template: Any, data: TrainingData) -> Any:
        import mlflow

        self._at("training")
        self.say(f"training {type(template).__name__} on {len(data.train)} rows")
        with child_run("train"):
            trained = refit(template, data.train, features=data.features, target=data.target, seed=SEED,
                            cores=self.model.retrain.n_jobs)
            mlflow.log_params(trained.params)
            validation = self._score(trained.estimator, data.validation)
            mlflow.log_metrics({"fit_seconds": trained.seconds, f"validation_{self.metric}": validation})
        self.say(f"trained in {trained.seconds:.1f} s: validation {self.metric} {validation:.4f}")
        return trained.estimator

    def _tune(self, estimator: Any, data: TrainingData) -> Any:
        import mlflow

        from retrain.tune import tune

        self._at("tuning")
        self.say("tuning: a bounded search around the champion's parameters")
        with child_run("tune"):
            result = tune(
                estimator, data.train, data.validation, features=data.features, target=data.target,
                score=self._score, higher_is_better=higher_is_better(self.metric or ""), seed=SEED, on_trial=self._log_trial,
                cores=self.model.retrain.n_jobs,
            )  # fmt: skip
            mlflow.log_params({f"best.{k}": v for k, v in result.params.items()} or {"best": "champion's parameters"})
            mlflow.log_metric(f"best_validation_{self.metric}", result.score)
            mlflow.set_tag("driftd.tune_note", result.note)
        self.say(f"tuning: {result.note}; best validation {self.metric} {result.score:.4f}")
        return result.estimator

    def _log_trial(self, trial: Any) -> None:
        import mlflow

        with child_run(f"trial {trial.number}"):
            mlflow.log_params(trial.params or {"params": "champion's"})
            mlflow.log_metrics({f"validation_{self.metric}": trial.score, "seconds": trial.seconds})

    def _compress(self, estimator: Any, data: TrainingData) -> Any | None:
        import mlflow

        from retrain.compress import compress

        self._at("compressing")
        cols, options = self.model.columns, self.model.retrain
        strategies = list(options.compression)
        self.say(f"compressing: {', '.join(strategies) or 'no strategies configured'}")
        with child_run("compress"):
            mlflow.log_params({"strategies": ",".join(strategies) or "none", "max_quality_loss": options.max_quality_loss})
            if not strategies:
                mlflow.set_tag("driftd.compression_note", "no compression strategies configured")
                return None
            # Validation rows only: the holdout is kept for the gate that tests this choice.
            result = compress(
                estimator, data.validation, target=data.target, numerical=cols.numerical,
                categorical=cols.categorical, task=self.model.task, strategies=strategies,
                max_quality_loss=options.max_quality_loss, metric=self.metric, confidence=options.confidence, seed=SEED,
            )  # fmt: skip
            mlflow.log_metrics(variant_metrics(result))
            mlflow.set_tag("driftd.compression_note", str(result.reason)[:5000])
        chosen = result.chosen if result.onnx_model is not None else None
        if chosen is None:
            self.say(f"no compressed variant: {result.reason}; the uncompressed model will serve")
            return result
        self.say(f"compressed: {chosen.name} chosen on {result.select_rows} validation rows, {result.original.size_bytes} -> "
                 f"{chosen.size_bytes} bytes, p50 {result.original.p50_ms:.3f} -> {chosen.p50_ms:.3f} ms")
        return result

    def _evaluate(self, champ: Champion, estimator: Any, data: TrainingData) -> Evaluation:
        import mlflow

        self._at("evaluating")
        holdout, options = data.holdout, self.model.retrain
        self.say(f"evaluating against champion version {champ.version} on the {len(holdout)} most recent rows "
                 f"({options.confidence:.0%} confidence bounds)")
        with child_run("evaluate"):
            champion = Served("champion", *serving_predictions(champ.model_uri, holdout, self.model))
            uncompressed = self._served(SKLEARN, estimator, holdout)
            result = evaluate(self.model, holdout, champion=champion, uncompressed=uncompressed,
                              candidates=self._compressed(holdout), options=options)
            if result.served == SKLEARN and self.compression is not None:
                fuller = self.compression.with_lossless()
                if fuller is not self.compression:  # the chosen lossy variant was refused: the lossless
                    self.compression = fuller       # conversion, built only now, is the next fallback
                    result = evaluate(self.model, holdout, champion=champion, uncompressed=uncompressed,
                                      candidates=self._compressed(holdout), options=options)
            mlflow.log_metrics(evaluation_metrics(result))
            mlflow.set_tags({f"driftd.gate.{g.name}": g.tag for g in result.gates})
        if self.compression is not None:
            served = next((v for v in (self.compression.chosen, self.compression.lossless) if v and v.name == result.served), None)
            self.compression = self.compression.serving(served)
        for refusal in result.refused:
            self.say(refusal)
        for gate in result.gates:
            self.say(f"gate {gate.name} {gate.verdict}: {gate.detail}")
        self.say(f"{self.metric}: champion {result.champion_score:.4f}, challenger {result.challenger_score:.4f} ({result.served}); "
                 + ("all gates passed" if result.passed else "gates failed"))
        return result

    def _compressed(self, holdout: pd.DataFrame) -> list[Served]:
        """The chosen variant, then the lossless conversion, each with its holdout predictions."""
        from retrain.compress import onnx_predict

        result, cols = self.compression, self.model.columns
        if result is None:
            return []
        found: list[Any] = []
        for variant, graph in ((result.chosen, result.onnx_model), (result.lossless, result.lossless_model)):
            if variant is not None and graph is not None and variant.name not in [s.name for s in found]:
                labels, proba = onnx_predict(graph, holdout, cols.numerical, cols.categorical)
                found.append(Served(variant.name, labels, proba, lossless=variant.lossless))
        return found

    def _served(self, name: str, estimator: Any, frame: pd.DataFrame) -> Served:
        features = list(self.model.columns.features)
        proba = estimator.predict_proba(frame[features]) if self.model.task != "regression" and hasattr(estimator, "predict_proba") else None
        return Served(name, np.asarray(estimator.predict(frame[features])), proba, lossless=True)

    # --- helpers -------------------------------------------------------------------------

    def _score(self, estimator: Any, frame: pd.DataFrame) -> float:
        features = list(self.model.columns.features)
        proba = estimator.predict_proba(frame[features]) if self.model.task == "binary_classification" and hasattr(estimator, "predict_proba") else None
        return score(self.model, frame, np.asarray(estimator.predict(frame[features])), positive_probability(self.model, proba))

    def _run_tags(self, data: TrainingData) -> dict[str, str]:
        t = self.trigger
        tags = {
            "driftd.kind": "retrain",
            "driftd.model": self.model.name,
            "driftd.trigger": t.reason[:5000],
            "driftd.config_hash": self.config.fingerprint(),
            "driftd.data_hash": data.data_hash,
            "driftd.check_id": t.check_id or "",
            "driftd.window_start": t.window_start.isoformat() if t.window_start else "",
            "driftd.window_end": t.window_end.isoformat() if t.window_end else "",
            "driftd.drift_share": "" if t.drifted_share is None else f"{t.drifted_share:.4f}",
        }
        return {k: v for k, v in tags.items() if v != ""}

    def _run_params(self, data: TrainingData) -> dict[str, Any]:
        options = self.model.retrain
        return {
            "training_window": str(options.training_window),
            "data.since": data.since.isoformat(),
            "data.until": data.until.isoformat(),
            "rows.read": data.read_rows,
            "rows.labelled": data.labelled_rows,
            "rows.reference_blend": data.reference_rows,
            "rows.train": len(data.train),
            "rows.validation": len(data.validation),
            "rows.holdout": len(data.holdout),
            "min_labelled_rows": options.min_labelled_rows,
            "reference_blend": options.reference_blend,
            "min_improvement": options.min_improvement,
            "max_quality_loss": options.max_quality_loss,
            "confidence": options.confidence,
            "min_holdout_rows": options.min_holdout_rows,
            "tune": options.tune,
            "primary_metric": self.metric,
        }

    def _at(self, stage: str) -> None:
        now = time.perf_counter()
        self.stage_seconds[self.stage] = self.stage_seconds.get(self.stage, 0.0) + now - self._stage_started
        self.stage, self._stage_started = stage, now

    def say(self, line: str) -> None:
        log.debug("%s: %s", self.model.name, line)
        if self._progress is not None:
            self._progress(line)

    def _outcome(self, outcome: str, reason: str, version: str | None) -> RetrainOutcome:
        ev, result = self.evaluation, self.compression
        self._at(self.stage)  # close the current stage's clock
        seconds = {**self.stage_seconds, **{f"compressing: {k}": v for k, v in (getattr(result, "seconds", None) or {}).items()}}
        chosen = result.chosen if result is not None else None
        original = result.original if result is not None else None
        return RetrainOutcome(
            model=self.model.name,
            outcome=outcome,
            reason=mask(reason),
            version=version,
            run_id=self.run_id,
            metric=self.metric,
            champion_score=ev.champion_score if ev else None,
            challenger_score=ev.challenger_score if ev else None,
            original_size=original.size_bytes if original else None,
            compressed_size=chosen.size_bytes if chosen else None,
            original_p50_ms=original.p50_ms if original else None,
            compressed_p50_ms=chosen.p50_ms if chosen else None,
            variant=self.variant or (chosen.name if chosen else None),
            duration_seconds=time.perf_counter() - self.started,
            gates=ev.gates if ev else (),
            stage_seconds=seconds,
        )

    def _failed(self, exc: Exception) -> RetrainOutcome:
        reason = failure_reason(exc, self.stage, self.config)
        self.unreachable = is_mlflow_error(exc) and connection_problem(str(exc)) is not None
        if not isinstance(exc, EXPLAINED) and not is_mlflow_error(exc):  # a bug: keep the traceback
            log.error("retrain of %s failed while %s: %s", self.model.name, self.stage, reason, exc_info=exc)
        self.say(f"failed while {self.stage}: {reason}")
        self._mark_version_failed(reason)
        return self._outcome("failed", reason, self.version)

    def _mark_version_failed(self, reason: str) -> None:
        """A version registered before the failure must say why it serves nowhere. Best effort:
        with MLflow unreachable the next retrain does it (registry.settle_orphans)."""
        if self.version is None or self.unreachable:
            return
        try:
            registry.mark_failed(connect(self.config), self.model.mlflow_name, self.version, reason, self.stage)
        except Exception as exc:
            log.warning("could not mark version %s of %s failed (the next retrain will): %s", self.version, self.model.name, describe(exc))

    def _finish_run(self, outcome: RetrainOutcome) -> None:
        import mlflow

        if outcome.outcome != "failed":
            try:
                mlflow.log_metrics(summary_metrics(outcome))
                mlflow.set_tags({"driftd.outcome": outcome.outcome, "driftd.reason": outcome.reason[:5000]})
            except Exception as exc:
                log.warning("could not record the outcome on run %s: %s", self.run_id, describe(exc))
            end_run("FINISHED")
            return
        if not self.unreachable:  # else each call would wait out its retries again
            try:
                mlflow.set_tags({"driftd.outcome": "failed", "driftd.reason": outcome.reason[:5000], "driftd.failed_stage": self.stage})
            except Exception:  # the reason is in the outcome; the next retrain closes this run anyway
                pass
        end_run("FAILED")
