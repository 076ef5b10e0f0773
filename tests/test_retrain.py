"""The retrain-and-recompress pipeline: training data, gates, tuning, and whole retrains.

Unit-level tests use MLflow's embedded SQLite store (the store driftd runs on with no
servers). The integration tests run the same retrains against a real `mlflow server`
(started once for the module), including one stopped halfway through.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

from monitor.core.config import Config, MLflowConfig, ModelConfig
from monitor.state.store import StateStore
from retrain import RetrainOutcome, Trigger, run_retrain
from retrain.baseline import register_baseline
from retrain.bounds import paired_gain
from retrain.data import InsufficientData, load_training_data, split_by_time
from retrain.evaluate import Served, gate_compression, improvement_gate
from retrain.registry import champion, load_reference
from retrain.tune import tune
from tests.support.mlflow_server import MlflowServer, mlflow_server
from tests.support.models import FEATURES, ID, PREDICTION, TARGET, TIMESTAMP, make_loans, model_config, train_baseline, with_predictions, write_log  # fmt: skip

NOW = datetime(2024, 3, 1, tzinfo=timezone.utc)
TRIGGER = Trigger("check-42", NOW - timedelta(hours=1), NOW, 0.625, "drift in 3 of the last 4 windows")


@dataclass
class World:
    config: Config
    model: ModelConfig
    champion: Any  # the baseline estimator serving before the retrain
    logs: Path


def make_world(
    root: Path,
    name: str = "loans",
    *,
    tracking_uri: str | None = None,
    artifact_root: str | None = None,
    kind: str = "logistic",
    rows: int = 4000,
    drift: float = 1.0,
    labelled: float = 1.0,
    now: datetime = NOW,
    **retrain: Any,
) -> World:
    """A champion trained before the drift, registered, and `rows` drifted production rows logged."""
    options = {"min_labelled_rows": 1000, "training_window": "7d", "compression": ["onnx"], **retrain}
    # a 2,400-row reference: drift tests need 5 x min_rows
    model = model_config(name, root / name / "logs" / "*.parquet", retrain=options, window={"min_rows": 300})
    config = Config(
        mlflow=MLflowConfig(
            tracking_uri=tracking_uri or f"sqlite:///{root / 'mlflow.db'}",
            artifact_root=artifact_root or str(root / "artifacts"),
        ),
        models=[model],
    )
    before = make_loans(3000, seed=1, start=NOW - timedelta(days=30), every=timedelta(minutes=5))
    train, holdout = before.iloc[:2400], before.iloc[2400:]
    estimator = train_baseline(train, kind)
    register_baseline(config, model, estimator, with_predictions(estimator, train), with_predictions(estimator, holdout))
    after = make_loans(rows, seed=5, drift=drift, start=now - timedelta(days=5), first_id=1_000_000)
    logs = root / name / "logs"
    write_log(logs, estimator, after, labelled=labelled)
    return World(config, model, estimator, logs)


def aliases(config: Config, name: str) -> dict[str, str]:
    found = mlflow.MlflowClient(config.mlflow.tracking_uri).get_registered_model(name).aliases
    return {alias: str(version) for alias, version in found.items()}


def child_runs(config: Config, run_id: str) -> dict[str, Any]:
    client = mlflow.MlflowClient(config.mlflow.tracking_uri)
    parent = client.get_run(run_id)
    children = client.search_runs([parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    return {run.info.run_name: run for run in children}


# --- training data ----------------------------------------------------------------------------


def test_training_data_holds_out_the_most_recent_labelled_rows(tmp_path):
    model = model_config("loans", tmp_path / "logs" / "*.parquet", retrain={"min_labelled_rows": 500, "training_window": "3d"})
    frame = make_loans(3000, seed=3, start=NOW - timedelta(days=5), every=timedelta(minutes=3))
    estimator = train_baseline(frame.iloc[:1000], "logistic")
    # Shuffled on disk, 70 % labelled, rows before the window and after `now` present too.
    shuffled = frame.sample(frac=1.0, random_state=0)
    write_log(tmp_path / "logs", estimator, shuffled, labelled=0.7, seed=1)
    late = make_loans(50, seed=4, start=NOW + timedelta(minutes=1), first_id=900_000)
    write_log(tmp_path / "logs", estimator, late, name="late.parquet")

    data = load_training_data(model, now=NOW)

    logged = pd.read_parquet(tmp_path / "logs" / "part-0.parquet")
    in_window = logged[(logged[TIMESTAMP] > NOW - timedelta(days=3)) & (logged[TIMESTAMP] <= NOW)]
    labelled = in_window[in_window[TARGET].notna()].sort_values([TIMESTAMP, ID])
    assert data.read_rows == len(in_window) and data.labelled_rows == len(labelled)
    assert (len(data.train), len(data.validation), len(data.holdout)) == (
        round(0.6 * len(labelled)), round(0.8 * len(labelled)) - round(0.6 * len(labelled)), len(labelled) - round(0.8 * len(labelled)),
    )  # fmt: skip
    assert list(data.holdout["income"]) == list(labelled["income"].iloc[-len(data.holdout) :])
    assert list(data.train["income"]) == list(labelled["income"].iloc[: len(data.train)])
    assert set(data.train.columns) == {*FEATURES, TARGET}  # features + target only


def test_too_few_labelled_rows_are_refused_with_the_numbers(tmp_path):
    model = model_config("loans", tmp_path / "logs" / "*.parquet", retrain={"min_labelled_rows": 2500, "training_window": "7d"})
    frame = make_loans(4000, seed=3, start=NOW - timedelta(days=3))
    write_log(tmp_path / "logs", train_baseline(frame.iloc[:500], "logistic"), frame, labelled=0.5, seed=2)
    with pytest.raises(InsufficientData) as refused:
        load_training_data(model, now=NOW)
    labelled = int(pd.read_parquet(tmp_path / "logs" / "part-0.parquet")[TARGET].notna().sum())
    assert refused.value.rows == labelled and refused.value.needed == 2500
    assert f"only {labelled} labelled rows of 4000" in str(refused.value)
    assert "at least 2500 (retrain.min_labelled_rows)" in str(refused.value)


def test_reference_rows_are_blended_into_the_training_split_only(tmp_path):
    model = model_config("loans", tmp_path / "logs" / "*.parquet", retrain={"min_labelled_rows": 500, "reference_blend": 0.25})
    frame = make_loans(2000, seed=3, start=NOW - timedelta(days=2))
    write_log(tmp_path / "logs", train_baseline(frame, "logistic"), frame)
    reference = make_loans(5000, seed=8)
    data = load_training_data(model, now=NOW, reference=reference)
    assert data.reference_rows == 400  # 25 % of the blended 1600-row training split
    assert len(data.train) == 1200 + 400 and len(data.validation) == 400 and len(data.holdout) == 400
    assert data.train["income"].isin(reference["income"]).sum() == 400
    assert not data.holdout["income"].isin(reference["income"]).any()


def test_labels_from_a_separate_source_are_joined_on_the_prediction_id(tmp_path):
    from monitor.core.config import FilesSource

    frame = make_loans(1500, seed=3, start=NOW - timedelta(days=2))
    estimator = train_baseline(frame, "logistic")
    write_log(tmp_path / "logs", estimator, frame.drop(columns=[TARGET]))
    labels = frame[[ID, TIMESTAMP, TARGET]].iloc[::2]  # every second prediction got its label
    (tmp_path / "labels").mkdir()
    labels.to_parquet(tmp_path / "labels" / "labels.parquet", index=False)
    model = model_config(
        "loans", tmp_path / "logs" / "*.parquet", retrain={"min_labelled_rows": 500},
        labels=FilesSource(type="files", path=str(tmp_path / "labels" / "*.parquet")),
    )  # fmt: skip
    data = load_training_data(model, now=NOW)
    assert data.read_rows == 1500 and data.labelled_rows == 750


def test_training_data_from_a_sql_table(tmp_path):
    import sqlalchemy as sa

    from monitor.core.config import SqlSource

    frame = make_loans(2000, seed=3, start=NOW - timedelta(days=2))
    logged = with_predictions(train_baseline(frame, "logistic"), frame)
    logged.loc[logged.index[::4], TARGET] = np.nan  # a quarter of the labels have not arrived
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'logs.db'}")
    logged.to_sql("predictions", engine, index=False)
    engine.dispose()
    source = SqlSource(type="sql", url=f"sqlite:///{tmp_path / 'logs.db'}", table="predictions")
    model = model_config("loans", "unused", retrain={"min_labelled_rows": 500}).model_copy(update={"source": source})
    data = load_training_data(model, now=NOW)
    assert data.read_rows == 2000 and data.labelled_rows == 1500
    assert len(data.holdout) == 300 and data.holdout[TARGET].notna().all()


def test_split_by_time_orders_ties_by_id():
    frame = pd.DataFrame({"ts": [2, 1, 1, 3, 3], "id": [5, 2, 1, 4, 3], "x": range(5)})
    train, validation, holdout = split_by_time(frame, "ts", "id")
    assert list(train["id"]) == [1, 2, 5] and list(validation["id"]) == [3] and list(holdout["id"]) == [4]


# --- gates and tuning -------------------------------------------------------------------------


def flipped(y: np.ndarray, share: float, seed: int) -> np.ndarray:
    """`y` with a seeded `share` of its binary labels wrong."""
    return np.where(np.random.default_rng(seed).random(len(y)) < share, 1 - y, y)


def test_improvement_gate_decides_on_the_lower_confidence_bound_in_higher_is_better_terms():
    y = np.random.default_rng(0).integers(0, 2, 400)
    champion_pred, challenger_pred = flipped(y, 0.22, 1), flipped(y, 0.18, 2)
    difference = paired_gain("accuracy", y, challenger_pred, champion_pred, confidence=0.95)
    assert difference.estimate == pytest.approx(np.mean(challenger_pred == y) - np.mean(champion_pred == y))
    assert difference.lower < difference.estimate < difference.upper

    zero = improvement_gate("accuracy", 0.78, 0.82, difference, 0.0)
    assert zero.passed == (difference.lower >= 0) and zero.bound == difference.lower and zero.rows == 400
    # the point estimate clears the threshold, the lower bound does not: refused
    point_only = improvement_gate("accuracy", 0.78, 0.82, difference, difference.estimate - 0.001)
    assert not point_only.passed and "95% lower bound" in point_only.detail
    assert point_only.tag.startswith(f"failed {difference.estimate:+.4f}") and "lower bound" in point_only.tag

    truth = np.random.default_rng(3).normal(size=500)
    worse, better = truth + np.random.default_rng(4).normal(size=500), truth + 0.5 * np.random.default_rng(5).normal(size=500)
    lower_error = paired_gain("rmse", truth, better, worse, confidence=0.95)  # RMSE down by ~0.5: a gain
    assert lower_error.estimate > 0.3 and improvement_gate("rmse", 1.0, 0.5, lower_error, 0.2).passed


def test_compression_gate_bounds_the_loss_and_falls_back_to_a_lossless_variant(tmp_path):
    model = model_config("loans", tmp_path / "*.parquet", retrain={"max_quality_loss": 0.01, "min_holdout_rows": 300})
    holdout = make_loans(400, seed=7)
    y = holdout[TARGET].to_numpy()
    uncompressed = Served("none", flipped(y, 0.2, 1), lossless=True)
    # loses ~0.5 pt on average, but disagrees with the uncompressed model on ~6 % of the rows
    noisy = Served("prune_trees(k=3)", np.where(np.random.default_rng(2).random(400) < 0.06, 1 - uncompressed.labels, uncompressed.labels))
    lossless = Served("onnx", uncompressed.labels.copy(), lossless=True)

    served, gate, refused = gate_compression(model, holdout, uncompressed.labels, [noisy, lossless, uncompressed], model.retrain)
    assert served.name == "onnx" and gate.passed and gate.value == 0.0
    (why,) = refused
    assert why.startswith("prune_trees(k=3) refused:") and "upper bound" in why and "retrain.max_quality_loss" in why

    small = model.retrain.model_copy(update={"min_holdout_rows": 401})
    served, _, refused = gate_compression(model, holdout, uncompressed.labels, [noisy, lossless, uncompressed], small)
    assert served.name == "onnx"
    assert refused == ("prune_trees(k=3) refused: the holdout has 400 rows, fewer than retrain.min_holdout_rows (401) needed to "
                       "bound a lossy variant's loss — collect more labelled rows or lengthen retrain.training_window",)

    equal = Served("prune_trees(k=30)", uncompressed.labels.copy())
    served, gate, refused = gate_compression(model, holdout, uncompressed.labels, [equal, lossless, uncompressed], model.retrain)
    assert served.name == "prune_trees(k=30)" and gate.passed and refused == ()


def test_tuning_is_bounded_and_starts_from_the_champions_parameters():
    frame = make_loans(3000, seed=6, drift=1.0)
    template = train_baseline(frame.iloc[:300], "forest", n_estimators=10)
    trials = []

    def accuracy(estimator: Any, rows: pd.DataFrame) -> float:
        return float(accuracy_score(rows[TARGET], estimator.predict(rows[FEATURES])))

    result = tune(template, frame.iloc[:1800], frame.iloc[1800:2400], features=FEATURES, target=TARGET, score=accuracy,
                  higher_is_better=True, max_trials=4, on_trial=trials.append)  # fmt: skip
    assert [t.number for t in trials] == [0, 1, 2, 3] and trials[0].params == {}
    assert result.score == max(t.score for t in trials)
    assert result.score == pytest.approx(accuracy(result.estimator, frame.iloc[1800:2400]))

    budgeted = tune(template, frame.iloc[:1800], frame.iloc[1800:2400], features=FEATURES, target=TARGET, score=accuracy,
                    higher_is_better=True, max_trials=8, budget_seconds=0.0)  # fmt: skip
    assert len(budgeted.trials) == 1 and "budget" in budgeted.note


# --- whole retrains on the embedded store -----------------------------------------------------


def test_retrain_with_tuning_and_blend_is_promoted_with_child_runs(tmp_path):
    world = make_world(tmp_path, tune=True, reference_blend=0.1)
    lines: list[str] = []
    outcome = run_retrain(world.config, world.model, TRIGGER, now=NOW, progress=lines.append)

    assert outcome.outcome == "promoted", outcome.reason
    assert outcome.challenger_score > outcome.champion_score + 0.1
    assert aliases(world.config, "loans") == {"champion": "2", "previous": "1"}
    children = child_runs(world.config, outcome.run_id)
    assert {"train", "tune", "compress", "evaluate"} <= set(children)
    trials = child_runs(world.config, children["tune"].info.run_id)
    assert len(trials) >= 2 and all(name.startswith("trial ") for name in trials)
    params = mlflow.MlflowClient(world.config.mlflow.tracking_uri).get_run(outcome.run_id).data.params
    assert int(params["rows.reference_blend"]) > 0
    assert any(line.startswith("tuning:") for line in lines)


def test_retrain_without_enough_labels_fails_and_changes_nothing(tmp_path):
    world = make_world(tmp_path, labelled=0.2, min_labelled_rows=2000)
    outcome = run_retrain(world.config, world.model, TRIGGER, now=NOW)
    assert outcome.outcome == "failed" and outcome.version is None and outcome.run_id is None
    assert "labelled rows" in outcome.reason and "at least 2000" in outcome.reason
    assert aliases(world.config, "loans") == {"champion": "1"}


def test_retrain_without_a_champion_says_how_to_get_one(tmp_path):
    model = model_config("loans", tmp_path / "logs" / "*.parquet")
    config = Config(mlflow=MLflowConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path)), models=[model])
    outcome = run_retrain(config, model, TRIGGER, now=NOW)
    assert outcome.outcome == "failed" and "driftd adopt" in outcome.reason


def test_retrain_on_a_single_class_window_fails_with_the_reason(tmp_path):
    world = make_world(tmp_path)
    frame = make_loans(3000, seed=9, start=NOW - timedelta(days=2), first_id=5_000_000).assign(**{TARGET: 1})
    for old in world.logs.glob("*.parquet"):
        old.unlink()
    write_log(world.logs, world.champion, frame)
    outcome = run_retrain(world.config, world.model, TRIGGER, now=NOW)
    assert outcome.outcome == "failed" and "at least two classes" in outcome.reason
    assert aliases(world.config, "loans") == {"champion": "1"}


def test_nothing_but_the_gates_sees_the_holdout(tmp_path, monkeypatch):
    import sklearn.pipeline

    import retrain.compress as compress_module
    import retrain.compress.select as selection

    world = make_world(tmp_path, kind="forest", compression=["onnx", "prune"], max_quality_loss=0.05, min_holdout_rows=100)
    seen: dict[str, list[pd.DataFrame]] = {"fit": [], "compress": [], "build": [], "select": []}

    def spy(kind: str, function: Any, frame_at: int) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            seen[kind].append(args[frame_at])
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(sklearn.pipeline.Pipeline, "fit", spy("fit", sklearn.pipeline.Pipeline.fit, 1))  # every fit, early stopping included
    monkeypatch.setattr(compress_module, "compress", spy("compress", compress_module.compress, 1))
    monkeypatch.setattr(selection, "_validation", spy("build", selection._validation, 1))
    monkeypatch.setattr(selection, "_rows", spy("select", selection._rows, 0))
    outcome = run_retrain(world.config, world.model, TRIGGER, now=NOW)
    assert outcome.outcome == "promoted", outcome.reason

    data = load_training_data(world.model, now=NOW)

    def rows(frame: pd.DataFrame) -> set[tuple]:
        return set(map(tuple, frame[FEATURES].astype(str).to_numpy()))

    holdout, validation = rows(data.holdout), rows(data.validation)
    assert len(holdout) == len(data.holdout) == 800  # rows are distinct, so set arithmetic is exact
    (compressed_on,), (built_on,), (selected_on,) = seen["compress"], seen["build"], seen["select"]
    assert rows(compressed_on) == validation
    assert rows(built_on) | rows(selected_on) == validation and not rows(built_on) & rows(selected_on)
    assert seen["fit"] and all(not rows(frame) & holdout for frame in seen["fit"])
    assert all(not rows(frame) & holdout for frame in (compressed_on, built_on, selected_on))

    # The gates' bounds are logged with the run and on the registered version.
    client = mlflow.MlflowClient(world.config.mlflow.tracking_uri)
    evaluated = child_runs(world.config, outcome.run_id)["evaluate"].data.metrics
    improvement, compression = outcome.gates
    assert evaluated["gate.improvement.lower_bound"] == pytest.approx(improvement.bound) and improvement.bound > 0.05
    assert evaluated["gate.compression.lower_bound"] == pytest.approx(compression.bound) and compression.bound >= -0.05
    assert evaluated["gate.confidence"] == 0.95 and evaluated["gate.holdout_rows"] == 800
    tags = client.get_model_version("loans", outcome.version).tags
    assert tags["driftd.gate.improvement"] == improvement.tag and "95% lower bound" in tags["driftd.gate.improvement"]
    assert tags["driftd.gate.confidence"] == "0.95" and tags["driftd.gate.holdout_rows"] == "800"


def test_a_lossy_variant_is_refused_below_the_holdout_minimum_and_the_cli_says_why(tmp_path, capsys):
    import argparse

    from monitor.service.commands import cmd_retrain

    now = datetime.now(timezone.utc)
    world = make_world(tmp_path, kind="forest", compression=["onnx", "prune"], max_quality_loss=0.05, min_holdout_rows=5000, now=now)
    config = world.config.model_copy(update={"state_url": f"sqlite:///{tmp_path / 'state.db'}"})

    assert cmd_retrain(config, argparse.Namespace(model="loans")) == 0

    printed = capsys.readouterr().out
    assert "chosen on 400 validation rows" in printed and "compressed: prune_trees" in printed  # a lossy choice ...
    refusal = "refused: the holdout has 800 rows, fewer than retrain.min_holdout_rows (5000)"
    assert refusal in printed  # ... refused at the gate
    assert "gate improvement passed:" in printed and "95% lower bound" in printed
    assert "gate compression passed: onnx variant vs the uncompressed challenger" in printed
    version = mlflow.MlflowClient(config.mlflow.tracking_uri).get_model_version("loans", "2")
    assert version.tags["driftd.compression"] == "onnx"  # the lossless conversion serves
    assert refusal in version.tags["driftd.gate.compression.refused"]
    job = StateStore(config.state_url).retrain_jobs("loans")[0]
    assert job.outcome == "promoted" and refusal in job.reason


# --- against a real MLflow server -------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> MlflowServer:
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as running:
        yield running


def server_world(server: MlflowServer, root: Path, name: str, **options: Any) -> World:
    # Artifacts go through the server (mlflow-artifacts:/), as with a remote production server.
    return make_world(root, name, tracking_uri=server.url, artifact_root="mlflow-artifacts:/driftd", **options)


@pytest.mark.integration
def test_drift_retrain_promotes_a_compressed_champion(server, tmp_path):
    world = server_world(server, tmp_path, "loans-promote", kind="forest", compression=["onnx", "prune"], max_quality_loss=0.02)
    report = tmp_path / "check-42.html"
    report.write_text("<html><body>drift report</body></html>")
    trigger = Trigger("check-42", NOW - timedelta(hours=1), NOW, 0.625, "drift in 3 of the last 4 windows", report)

    outcome = run_retrain(world.config, world.model, trigger, now=NOW)

    assert outcome.outcome == "promoted", outcome.reason
    assert outcome.version == "2"
    assert outcome.variant == "onnx" or outcome.variant.startswith("prune")
    assert outcome.compressed_size < outcome.original_size
    assert outcome.compressed_p50_ms < outcome.original_p50_ms
    assert aliases(world.config, "loans-promote") == {"champion": "2", "previous": "1"}

    client = mlflow.MlflowClient(server.url)
    parent = client.get_run(outcome.run_id)
    assert parent.info.status == "FINISHED"
    tags = parent.data.tags
    assert tags["driftd.check_id"] == "check-42" and tags["driftd.drift_share"] == "0.6250"
    assert tags["driftd.config_hash"] == world.config.fingerprint() and len(tags["driftd.data_hash"]) == 16
    assert tags["driftd.window_end"] == NOW.isoformat()
    assert {"train", "compress", "evaluate"} <= set(child_runs(world.config, outcome.run_id))
    artifacts = {a.path for a in client.list_artifacts(outcome.run_id, "driftd")}
    assert artifacts == {"driftd/reference.parquet", "driftd/schema.json", "driftd/drift_report.html", "driftd/estimator"}
    # the new champion's quality estimator, calibrated on rows it was not trained on, through the server
    assert [a.path for a in client.list_artifacts(outcome.run_id, "driftd/estimator")] == ["driftd/estimator/cbpe.json"]

    version = client.get_model_version("loans-promote", "2")
    assert version.tags["driftd.gate.improvement"].startswith("passed")
    assert version.tags["driftd.gate.compression"].startswith("passed")
    assert version.tags["driftd.compression"] == outcome.variant
    assert float(version.tags["driftd.validation_score"]) == pytest.approx(outcome.challenger_score)
    current = champion(world.config, world.model)
    assert current.version == "2" and current.validation_score == pytest.approx(outcome.challenger_score)

    reference, ref_version = load_reference(world.config, world.model)
    assert ref_version == "2" and len(reference) == 3200 and PREDICTION in reference.columns

    fresh = make_loans(1500, seed=21, drift=1.0)
    served = mlflow.pyfunc.load_model("models:/loans-promote@champion").predict(fresh[FEATURES])
    new_accuracy = accuracy_score(fresh[TARGET], served["prediction"])
    assert new_accuracy > accuracy_score(fresh[TARGET], world.champion.predict(fresh[FEATURES])) + 0.1
    uncompressed = mlflow.sklearn.load_model(current.sklearn_model_uri)
    assert accuracy_score(fresh[TARGET], uncompressed.predict(fresh[FEATURES])) == pytest.approx(new_accuracy, abs=0.04)


@pytest.mark.integration
def test_a_challenger_that_is_not_better_enough_is_registered_but_not_promoted(server, tmp_path):
    world = server_world(server, tmp_path, "loans-reject", min_improvement=0.5)
    outcome = run_retrain(world.config, world.model, TRIGGER, now=NOW)

    assert outcome.outcome == "rejected" and outcome.version == "2"
    assert "less than the required +0.5000" in outcome.reason
    assert aliases(world.config, "loans-reject") == {"champion": "1", "challenger": "2"}
    version = mlflow.MlflowClient(server.url).get_model_version("loans-reject", "2")
    assert version.tags["driftd.gate.improvement"].startswith("failed")
    assert "retrain.min_improvement" in version.tags["driftd.rejected_reason"]
    assert champion(world.config, world.model).version == "1"
    assert mlflow.MlflowClient(server.url).get_run(outcome.run_id).data.tags["driftd.outcome"] == "rejected"


@pytest.mark.integration
def test_server_outage_mid_retrain_leaves_the_champion_serving(server, tmp_path):
    world = server_world(server, tmp_path, "loans-outage")

    def stop_at_compression(line: str) -> None:
        if line.startswith("compressing"):
            server.stop()

    try:
        outcome: RetrainOutcome = run_retrain(world.config, world.model, TRIGGER, now=NOW, progress=stop_at_compression)
    finally:
        server.start()

    assert outcome.outcome == "failed" and outcome.version is None
    assert outcome.reason.startswith(f"MLflow at {server.url} is unreachable (connection refused) while compressing")
    assert outcome.duration_seconds < 45  # bounded retries, not minutes of back-off
    assert aliases(world.config, "loans-outage") == {"champion": "1"}

    rerun = run_retrain(world.config, world.model, TRIGGER, now=NOW)
    assert rerun.outcome == "promoted", rerun.reason
    assert aliases(world.config, "loans-outage") == {"champion": "2", "previous": "1"}
    interrupted = mlflow.MlflowClient(server.url).get_run(outcome.run_id)
    assert interrupted.info.status == "FAILED"  # closed by the rerun: the UI shows no phantom RUNNING retrain


@pytest.mark.integration
def test_an_outage_between_register_and_promote_leaves_no_version_without_a_reason(server, tmp_path):
    world = server_world(server, tmp_path, "loans-orphan")

    def stop_after_registering(line: str) -> None:
        if line.startswith("registered"):
            server.stop()

    try:
        outcome = run_retrain(world.config, world.model, TRIGGER, now=NOW, progress=stop_after_registering)
    finally:
        server.start()

    assert outcome.outcome == "failed" and outcome.version == "2", outcome.reason
    client = mlflow.MlflowClient(server.url)
    assert client.get_model_version("loans-orphan", "2").tags["driftd.outcome"] == "pending"  # nothing could be written
    assert aliases(world.config, "loans-orphan") == {"champion": "1"}

    rerun = run_retrain(world.config, world.model, TRIGGER, now=NOW)
    assert rerun.outcome == "promoted", rerun.reason
    orphan = client.get_model_version("loans-orphan", "2").tags
    assert orphan["driftd.outcome"] == "failed" and orphan["driftd.failed_reason"].startswith("orphaned: registered by run")
    assert client.get_model_version("loans-orphan", rerun.version).tags["driftd.outcome"] == "promoted"
    assert aliases(world.config, "loans-orphan") == {"champion": rerun.version, "previous": "1"}
