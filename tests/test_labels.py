"""Delayed labels joined onto a window of predictions by prediction id."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from monitor.check.labels import attach_labels
from monitor.core.config import FilesSource, SqlSource
from monitor.sources import SourceError, WindowQuery, open_source
from tests.support.data import START, columns, predictions

COLS = columns()
WINDOW_COLUMNS = ("ts", "id", "age", "prediction", "probability")


def labels_table(path: Path, labels: pd.DataFrame, *, if_exists: str = "replace"):
    engine = sa.create_engine(f"sqlite:///{path}")
    labels.to_sql("labels", engine, index=False, if_exists=if_exists)
    engine.dispose()
    return open_source(SqlSource.model_validate({"type": "sql", "url": f"sqlite:///{path}", "table": "labels"}), COLS)


def label_rows(frame: pd.DataFrame, delay: timedelta = timedelta(days=1)) -> pd.DataFrame:
    return pd.DataFrame({"id": frame["id"], "ts": frame["ts"] + delay, "target": frame["target"]})


def test_target_logged_with_predictions_is_kept() -> None:
    window = predictions(50, seed=1)

    out = attach_labels(window, None, COLS)

    assert out["target"].tolist() == window["target"].tolist()


def test_no_labels_anywhere_means_an_unlabelled_window() -> None:
    window = predictions(5, seed=1)[list(WINDOW_COLUMNS)]

    out = attach_labels(window, None, COLS)

    assert out["target"].isna().all() and len(out) == 5


def test_late_labels_fill_in_on_later_checks(tmp_path: Path) -> None:
    frame = predictions(400, seed=2)
    window = frame[list(WINDOW_COLUMNS)]
    db = tmp_path / "labels.db"
    labels = labels_table(db, label_rows(frame.iloc[:100]))  # only the oldest labels have arrived

    first = attach_labels(window, labels, COLS)
    labels_table(db, label_rows(frame.iloc[100:300]), if_exists="append")  # more arrive a day later
    second = attach_labels(window, labels, COLS)

    assert first["target"].notna().sum() == 100
    assert second["target"].notna().sum() == 300
    assert second["target"].iloc[:300].tolist() == frame["target"].iloc[:300].tolist()
    assert second["target"].iloc[300:].isna().all()
    assert second["id"].tolist() == window["id"].tolist() and second.index.equals(window.index)


def test_duplicate_labels_take_the_latest_and_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    frame = predictions(10, seed=3)
    first = label_rows(frame)
    first["target"] = 0
    corrected = label_rows(frame.iloc[:3], delay=timedelta(days=2))
    corrected["target"] = 1  # a chargeback overturned the first verdict
    labels = labels_table(tmp_path / "labels.db", pd.concat([corrected, first]))  # stored out of order

    with caplog.at_level(logging.WARNING, logger="monitor.check.labels"):
        out = attach_labels(frame[list(WINDOW_COLUMNS)], labels, COLS)

    assert out["target"].tolist() == [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert "3 prediction ids" in caplog.text and "latest" in caplog.text


def test_labels_in_the_same_table_as_predictions(tmp_path: Path) -> None:
    # The serving log's target column is back-filled when the outcome is known.
    frame = predictions(12_000, seed=4)  # more ids than one IN (...) batch holds
    frame.loc[frame.index % 3 == 0, "target"] = np.nan
    db = tmp_path / "logs.db"
    engine = sa.create_engine(f"sqlite:///{db}")
    frame.to_sql("predictions", engine, index=False)
    engine.dispose()
    cfg = SqlSource.model_validate({"type": "sql", "url": f"sqlite:///{db}", "table": "predictions"})
    source = open_source(cfg, COLS)
    window = source.read(WindowQuery(columns=WINDOW_COLUMNS, until=START + timedelta(days=1)))

    out = attach_labels(window, source, COLS)

    assert len(out) == 12_000
    assert out["target"].isna().sum() == 4_000
    pd.testing.assert_series_equal(out["target"], frame["target"].astype("float64"), check_names=False)


def test_labels_from_parquet_files_with_text_ids(tmp_path: Path) -> None:
    frame = predictions(20, seed=5)
    rows = label_rows(frame.iloc[::2])
    rows["id"] = rows["id"].astype(str)  # the labelling system writes ids as text
    rows.to_parquet(tmp_path / "labels.parquet", index=False)
    labels = open_source(FilesSource(type="files", path=str(tmp_path / "*.parquet")), COLS)

    out = attach_labels(frame[list(WINDOW_COLUMNS)], labels, COLS)

    assert out["target"].iloc[::2].tolist() == frame["target"].iloc[::2].tolist()
    assert out["target"].iloc[1::2].isna().all()


@pytest.mark.parametrize("kind", ["sql", "parquet"])
def test_an_id_label_table_without_timestamp_is_accepted_and_the_last_row_wins(tmp_path: Path, kind: str,
                                                                                caplog: pytest.LogCaptureFixture) -> None:
    # Many outcome tables are just (id, label); a corrected label is appended after the first one.
    frame = predictions(10, seed=6)
    rows = pd.DataFrame({"id": frame["id"], "target": 0})
    corrections = pd.DataFrame({"id": frame["id"].iloc[:2], "target": 1})
    if kind == "sql":
        labels = labels_table(tmp_path / "labels.db", pd.concat([rows, corrections]))
    else:
        rows.to_parquet(tmp_path / "labels-1.parquet", index=False)
        corrections.to_parquet(tmp_path / "labels-2.parquet", index=False)
        labels = open_source(FilesSource(type="files", path=str(tmp_path / "labels-*.parquet")), COLS)

    with caplog.at_level(logging.INFO, logger="monitor.check.labels"):
        first = attach_labels(frame[list(WINDOW_COLUMNS)], labels, COLS)
        second = attach_labels(frame[list(WINDOW_COLUMNS)], labels, COLS)

    assert first["target"].tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert second["target"].tolist() == first["target"].tolist()
    assert caplog.text.count("has no 'ts' column") == 1  # found out once, not on every check
    assert "by source order" in caplog.text


def test_a_labels_source_missing_its_target_column_still_fails_clearly(tmp_path: Path) -> None:
    frame = predictions(5, seed=7)
    labels = labels_table(tmp_path / "labels.db", pd.DataFrame({"id": frame["id"], "outcome": 1}))

    with pytest.raises(SourceError, match="'target'.*missing"):
        attach_labels(frame[list(WINDOW_COLUMNS)], labels, COLS)
