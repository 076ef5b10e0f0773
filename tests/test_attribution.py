"""Version-aware quality: each labelled row counts for the model version that served it, and a
new champion is never judged on its predecessor's rows."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from monitor.check.attribution import Attribution, attributed_quality, version_label
from monitor.check.drift import prepare_reference
from monitor.check.policy import decide
from monitor.check.run import Inputs, WindowSpec, run_check
from monitor.core.config import FilesSource, ModelConfig
from monitor.core.results import CheckResult, CheckStatus, Quality, VersionQuality
from monitor.sources import open_source
from monitor.state.store import StateStore
from tests.support.data import columns, predictions
from tests.test_policy import POLICY, RETRAIN, history

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
PROMOTED = NOW - timedelta(minutes=20)


def served_rows() -> pd.DataFrame:
    """An hour of rows: version 1 served until PROMOTED and was right on 60 % of its rows;
    version 2 served after it and was right on 90 %."""
    frame = predictions(600, seed=4, start=NOW - timedelta(hours=1), every=timedelta(seconds=6))
    rng = np.random.default_rng(0)
    new = frame["ts"] > pd.Timestamp(PROMOTED)
    right = rng.random(len(frame)) < np.where(new, 0.9, 0.6)
    frame["prediction"] = np.where(right, frame["target"], 1 - frame["target"])
    frame["served_by"] = np.where(new, 2, 1)  # as a serving layer logs it: the registry version number
    return frame


def model_config(tmp_path, *, version_column: bool) -> ModelConfig:
    return ModelConfig(
        name="churn", source=FilesSource(type="files", path=str(tmp_path / "logs" / "*.parquet")),
        columns=columns().model_copy(update={"model_version": "served_by" if version_column else None}),
        task="binary_classification", window={"size": "1h", "min_rows": 100, "quality_span": "1h"},
    )  # fmt: skip


def accuracy(frame: pd.DataFrame) -> float:
    return float(np.mean(frame["prediction"] == frame["target"]))


def test_with_a_version_column_each_labelled_row_counts_for_the_version_that_served_it(tmp_path):
    frame = served_rows()
    (tmp_path / "logs").mkdir()
    frame.to_parquet(tmp_path / "logs" / "part-0.parquet", index=False)
    model = model_config(tmp_path, version_column=True)
    inputs = Inputs(model, open_source(model.source, model.columns), None)
    reference = prepare_reference(predictions(2000, seed=1), model, "2")
    scores = {"1": 0.77, "2": 0.91}
    # The promotion time is deliberately wrong: with the column, the rows themselves say who served them.
    attribution = Attribution("2", since=NOW - timedelta(hours=3), previous="1", score_of=scores.get)

    quality = run_check(inputs, reference, WindowSpec(since=NOW - timedelta(hours=1), until=NOW), now=NOW,
                        attribution=attribution).result.quality  # fmt: skip

    read = frame[frame["ts"] > pd.Timestamp(NOW - timedelta(hours=1))]  # the quality span excludes its start
    mine, theirs = read[read["served_by"] == 2], read[read["served_by"] == 1]
    assert quality.version == "2" and quality.labelled_rows == len(mine)
    assert quality.metrics["accuracy"] == pytest.approx(accuracy(mine))
    (old,) = quality.others
    assert (old.version, old.labelled_rows, old.validation_score) == ("1", len(theirs), 0.77)
    assert old.metrics["accuracy"] == pytest.approx(accuracy(theirs))
    assert old.metrics["accuracy"] < 0.7 < quality.metrics["accuracy"]


def test_without_the_column_the_promotion_time_splits_the_rows(tmp_path):
    frame = served_rows().drop(columns=["served_by"])
    model = model_config(tmp_path, version_column=False)

    quality = attributed_quality(frame, model, Attribution("2", since=PROMOTED, previous="1"))

    after = frame[frame["ts"] > pd.Timestamp(PROMOTED)]
    assert quality.version == "2" and quality.labelled_rows == len(after) == 199  # a row logged at PROMOTED is the old one's
    assert quality.metrics["accuracy"] == pytest.approx(accuracy(after))
    assert [(o.version, o.labelled_rows) for o in quality.others] == [("1", 401)]
    # A champion whose promotion driftd never saw served every row; no champion: nothing is attributed.
    assert attributed_quality(frame, model, Attribution("2")).labelled_rows == 600
    assert attributed_quality(frame, model, None).version is None


def test_versions_are_read_as_the_registry_names_them():
    assert [version_label(v) for v in (2, 2.0, np.int64(2), " 2 ", "v2", None, float("nan"))] == ["2", "2", "2", "2", "v2", "unknown", "unknown"]


def test_rows_of_a_previous_champion_never_count_against_a_new_one():
    old_rows = VersionQuality("1", 400, {"accuracy": 0.61}, 0.77)
    # Three clean windows while version 1 served, its quality well below version 2's score ...
    unattributed = history("ccc", {0: {"accuracy": 0.64}, 1: {"accuracy": 0.63}, 2: {"accuracy": 0.62}})
    before = [replace(c, quality=replace(c.quality, version="1")) for c in unattributed]
    # ... then right after the promotion the newest window holds only version 1's labelled rows.
    just_promoted = replace(before[0], quality=Quality(0, 0.0, {}, "2", (old_rows,)))
    args = dict(alert_firing=True, jobs=[], champion_score=0.79, primary_metric="accuracy", now=NOW, labelled_rows=None)

    decision = decide(POLICY, RETRAIN, [just_promoted, *before[1:]], champion_version="2", **args)
    reasons = "\n".join(decision.reasons)
    assert decision.alert == "resolve" and not decision.retrain
    assert "quality not compared: no recent window has labelled rows served by champion version 2 for accuracy" in reasons
    assert "not counted against the champion: version 1 accuracy 0.61 vs its own 0.77 on 400 rows" in reasons

    # Once the new champion's own rows are labelled, they are compared with its own score.
    labelled = replace(before[0], quality=Quality(300, 0.5, {"accuracy": 0.70}, "2", (old_rows,)))
    decision = decide(POLICY, RETRAIN, [labelled, *before[1:]], champion_version="2", **args)
    assert decision.alert is None and "quality dropped: accuracy 0.7 vs champion 0.79" in "\n".join(decision.reasons)
    # Unattributed (as before driftd knew versions), the old rows would keep the alert firing.
    decision = decide(POLICY, RETRAIN, unattributed, champion_version="2", **args)
    assert decision.alert is None and "alert stays firing: quality is still below the champion" in "\n".join(decision.reasons)


def test_attributed_quality_survives_the_state_store(tmp_path):
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    quality = Quality(300, 0.5, {"accuracy": 0.9}, "2", (VersionQuality("1", 400, {"accuracy": 0.61}, 0.77),))
    store.record_check(CheckResult("c1", "churn", CheckStatus.OK, NOW, NOW - timedelta(hours=1), NOW, quality=quality))
    (record,) = store.recent_checks("churn", 5)
    store.close()
    assert record.quality == quality
