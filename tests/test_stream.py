"""Streamed windows: batch by batch, the same rows, verdicts and watermark as a whole read, with
exact whole-window counts next to a seeded sample."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

import monitor.sources.files as files
import monitor.sources.sql as sql
from monitor.check.run import Inputs, WindowSpec, read_window
from monitor.check.sample import Reservoir
from monitor.check.validate import InputError, validate_window
from monitor.core.config import FilesSource, SqlSource
from monitor.core.results import Watermark
from monitor.sources import WindowQuery, open_source, watermark_of
from tests.support.data import START, columns, model_config, predictions, write_parts

COLS = columns()
WANTED = ("ts", "id", "age", "income", "score", "country", "device", "prediction", "probability", "target")
UNTIL = START + timedelta(days=30)


@pytest.fixture()
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 97 rows, so a few thousand rows make many batches (the real size is 65,536)."""
    monkeypatch.setattr(files, "BATCH_ROWS", 97)
    monkeypatch.setattr(sql, "BATCH_ROWS", 97)


def _inputs(logs: Path, *, max_rows: int | None = 200_000, min_rows: int = 50):
    model = model_config({"type": "files", "path": str(logs / "*.parquet")},
                         window={"size": "30d", "min_rows": min_rows, "max_rows": max_rows})
    return model, Inputs(model, open_source(model.source, model.columns), None)


# --- the sample --------------------------------------------------------------------------


def test_reservoir_is_the_same_sample_however_the_stream_is_cut() -> None:
    frame = pd.DataFrame({"x": np.arange(10_000)})
    picks = []
    for cuts in ([10_000], [1, 999, 4_000, 5_000], [97] * 104):
        reservoir = Reservoir(500, seed=7)
        start = 0
        for size in cuts:
            reservoir.add(frame.iloc[start : start + size])
            start += size
        sample, sampled = reservoir.result()
        assert sampled and len(sample) == 500
        picks.append(sample["x"].tolist())
    assert picks[0] == picks[1] == picks[2]
    assert picks[0] == sorted(picks[0]), "the sample keeps the stream's order"
    reservoir = Reservoir(500, seed=8)
    reservoir.add(frame)
    assert reservoir.result()[0]["x"].tolist() != picks[0]


def test_reservoir_of_arrow_and_pandas_parts_is_the_sample_of_pandas_parts() -> None:
    import pyarrow as pa

    frame = pd.DataFrame({"x": np.arange(5_000), "y": np.arange(5_000) * 0.5})
    samples = []
    for arrow in (set(), {0, 2, 3, 5}, set(range(10))):  # pandas only, mixed, Arrow only
        reservoir = Reservoir(700, seed=11, to_frame=lambda table: table.to_pandas())
        for i in range(10):
            part = frame.iloc[i * 500 : (i + 1) * 500]
            reservoir.add(pa.Table.from_pandas(part, preserve_index=False) if i in arrow else part)
        sample, sampled = reservoir.result()
        assert sampled and len(sample) == 700
        samples.append(sample)
    pd.testing.assert_frame_equal(samples[0], samples[1])
    pd.testing.assert_frame_equal(samples[0], samples[2])


def test_reservoir_is_uniform_over_the_stream() -> None:
    # Every tenth of the stream should hold about a tenth of the sample (binomial sd ~ 28 of 1,000).
    reservoir = Reservoir(10_000, seed=3)
    for start in range(0, 100_000, 1_000):
        reservoir.add(pd.DataFrame({"x": np.arange(start, start + 1_000)}))
    sample, _ = reservoir.result()
    per_tenth = np.bincount(sample["x"].to_numpy() // 10_000, minlength=10)
    assert np.all(np.abs(per_tenth - 1_000) < 150), per_tenth
    assert sample["x"].is_unique


def test_a_short_stream_is_kept_whole() -> None:
    reservoir = Reservoir(500, seed=1)
    reservoir.add(pd.DataFrame({"x": [3, 1]}))
    reservoir.add(pd.DataFrame({"x": [2]}))
    sample, sampled = reservoir.result()
    assert sample["x"].tolist() == [3, 1, 2] and not sampled


# --- sources -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_file_scan_yields_exactly_the_rows_read_returns(tmp_path: Path, fmt: str, small_batches: None) -> None:
    frame = predictions(2_000, seed=4, timestamps=300)
    write_parts(frame.sample(frac=1, random_state=1), tmp_path, 5, fmt)  # files out of time order
    source = open_source(FilesSource(type="files", path=str(tmp_path / f"*.{fmt}")), COLS)
    after = Watermark(pd.Timestamp(frame["ts"].iloc[400]), int(frame["id"].iloc[400]))
    query = WindowQuery(WANTED, until=pd.Timestamp(frame["ts"].iloc[1_700]).to_pydatetime(), after=after)

    batches = list(source.scan(query))
    whole = source.read(query)

    assert len(batches) > 5 and all(len(b) <= 97 for b in batches)
    streamed = pd.concat(batches, ignore_index=True).sort_values(["ts", "id"], ignore_index=True)
    assert streamed["id"].tolist() == whole["id"].tolist()
    assert str(batches[0]["country"].dtype) == "string", "categorical text stays Arrow-backed"
    pd.testing.assert_frame_equal(streamed.astype({"country": object, "device": object}), whole, check_dtype=False)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_text_files_stream_in_blocks_and_survive_a_type_that_changes(tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A text file is parsed a block at a time; where a later block does not fit the types of the
    first (ints turning fractional, numbers turning text), the rest is read whole: same rows as read()."""
    import pyarrow as pa

    import monitor.sources.textfiles as textfiles

    monkeypatch.setattr(textfiles, "TEXT_BLOCK_BYTES", 8_192)
    frame = predictions(2_000, seed=15)
    frame["age"] = frame["age"].round().astype("int64")
    write_parts(frame, tmp_path, 1, fmt)
    path = next(tmp_path.glob(f"*.{fmt}"))
    blocks = list(textfiles.stream_text_file(path, fmt, list(WANTED), frozenset(COLS.categorical)))
    assert len(blocks) > 5 and sum(b.num_rows for b in blocks) == 2_000
    assert blocks[0].schema.field("age").type == blocks[-1].schema.field("age").type

    frame["age"] = frame["age"].astype(object)
    frame.loc[1_500, "age"] = 40.5  # past the first blocks: the stream's int64 cannot hold it
    frame.loc[1_900, "country"] = None
    write_parts(frame, tmp_path, 1, fmt)
    blocks = list(textfiles.stream_text_file(path, fmt, list(WANTED), frozenset(COLS.categorical)))
    assert (blocks[0].schema.field("age").type, blocks[-1].schema.field("age").type) == (pa.int64(), pa.float64())
    source = open_source(FilesSource(type="files", path=str(tmp_path / f"*.{fmt}")), COLS)
    query = WindowQuery(WANTED, until=UNTIL, since=START - timedelta(seconds=1))
    streamed = pd.concat(list(source.scan(query)), ignore_index=True)
    whole = source.read(query)
    assert len(streamed) == 2_000 and 40.5 in set(streamed["age"])
    streamed = streamed.sort_values(["ts", "id"], ignore_index=True)
    for text in ("country", "device"):  # Arrow-backed text (pd.NA) against Python str (NaN)
        assert streamed.pop(text).fillna("-").tolist() == whole.pop(text).fillna("-").tolist()
    pd.testing.assert_frame_equal(streamed, whole, check_dtype=False)


def test_sql_scan_streams_the_rows_read_returns_in_order(tmp_path: Path, small_batches: None) -> None:
    frame = predictions(1_000, seed=5, timestamps=200)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'logs.db'}")
    frame.to_sql("predictions", engine, index=False)
    engine.dispose()
    source = open_source(SqlSource.model_validate({"type": "sql", "url": f"sqlite:///{tmp_path / 'logs.db'}", "table": "predictions"}), COLS)
    try:
        query = WindowQuery(WANTED, until=UNTIL, since=START - timedelta(seconds=1))
        batches = list(source.scan(query))
        whole = source.read(query)
    finally:
        source.close()
    assert len(batches) == 11
    pd.testing.assert_frame_equal(pd.concat(batches, ignore_index=True), whole)


# --- a streamed window -------------------------------------------------------------------


def test_streamed_window_counts_every_row_while_sampling_few(tmp_path: Path, small_batches: None) -> None:
    frame = predictions(3_000, seed=6)
    frame.loc[frame.index % 7 == 0, "income"] = np.nan
    frame.loc[frame.index % 11 == 0, "score"] = np.inf
    frame.loc[frame.index % 13 == 0, "country"] = None
    write_parts(frame, tmp_path, 3)
    model, inputs = _inputs(tmp_path, max_rows=400)

    window = read_window(inputs, WindowSpec(since=START - timedelta(seconds=1), until=UNTIL), UNTIL)

    assert window.rows == 3_000 and len(window.sample) == 400 and window.sampled and window.error is None
    summary = window.summary
    assert summary is not None and summary.rows == 3_000
    assert summary.columns["income"].nulls == int(frame["income"].isna().sum())
    assert summary.columns["score"].infinite == int(np.isinf(frame["score"]).sum()) and summary.columns["score"].nulls == 0
    assert summary.columns["country"].nulls == int(frame["country"].isna().sum())
    assert summary.columns["country"].categories == frame["country"].value_counts().to_dict()
    assert summary.columns["prediction"].categories == frame["prediction"].value_counts().to_dict()
    assert summary.missing_share("income") == pytest.approx(frame["income"].isna().mean())
    assert window.watermark == watermark_of(frame, COLS)
    # the sample holds what the drift statistics read, drawn from the window's rows (probability is unique per row)
    sample = window.sample
    assert sorted(sample.columns) == sorted(WANTED)
    assert isinstance(sample["country"].dtype, pd.CategoricalDtype)
    assert all(isinstance(c, str) for c in sample["country"].cat.categories)
    joined = sample.astype({"country": object}).merge(frame[["probability", "country", "age"]], on="probability", suffixes=("", "_w"))
    assert len(joined) == 400
    assert (joined["country"].fillna("-") == joined["country_w"].fillna("-")).all() and (joined["age"].fillna(-1) == joined["age_w"].fillna(-1)).all()


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_arrow_batches_give_the_window_pandas_batches_give(tmp_path: Path, small_batches: None, fmt: str) -> None:
    """The stream counts Arrow batches in Arrow and converts only the rows its sample admits:
    the same sample (rows, values, dtypes), summary and watermark as batches handed over as pandas."""
    frame = predictions(3_000, seed=14)
    frame.loc[frame.index % 7 == 0, "income"] = np.nan
    frame.loc[frame.index % 11 == 0, "score"] = -np.inf
    frame.loc[frame.index % 13 == 0, "country"] = None
    frame.loc[frame.index % 29 == 0, "probability"] = np.nan
    write_parts(frame, tmp_path, 3, fmt)
    model = model_config({"type": "files", "path": str(tmp_path / f"*.{fmt}")}, window={"size": "30d", "min_rows": 50, "max_rows": 400})
    arrow_source = open_source(model.source, model.columns)
    assert hasattr(arrow_source, "scan_arrow")

    class PandasOnly:  # the same source without scan_arrow: batches arrive as pandas frames
        scan_ordered = False

        def __getattr__(self, name: str):
            if name == "scan_arrow":
                raise AttributeError(name)
            return getattr(arrow_source, name)

    spec = WindowSpec(since=START - timedelta(seconds=1), until=UNTIL)
    arrow = read_window(Inputs(model, arrow_source, None), spec, UNTIL)
    pandas = read_window(Inputs(model, PandasOnly(), None), spec, UNTIL)  # type: ignore[arg-type]

    assert arrow.error is None and arrow.sampled and len(arrow.sample) == 400
    pd.testing.assert_frame_equal(arrow.sample, pandas.sample)
    assert arrow.summary == pandas.summary and arrow.watermark == pandas.watermark and arrow.rows == pandas.rows == 3_000


def test_drift_scores_of_the_streamed_sample_equal_those_of_the_same_rows_read_whole(tmp_path: Path, small_batches: None) -> None:
    from monitor.check.drift import check_drift, prepare_reference

    frame = predictions(3_000, seed=12, shift=0.3)
    frame.loc[frame.index % 17 == 0, "device"] = None
    write_parts(frame, tmp_path, 2)
    model, inputs = _inputs(tmp_path, max_rows=700)
    window = read_window(inputs, WindowSpec(since=START - timedelta(seconds=1), until=UNTIL), UNTIL)
    reference = prepare_reference(validate_window(predictions(2_000, seed=13), model), model, "1")

    # the same rows, as a whole-frame read and validate_window give them (text as Python str)
    rows = frame.set_index("probability").loc[window.sample["probability"]].reset_index()
    whole = check_drift(reference, validate_window(rows, model), model)
    streamed = check_drift(reference, window.sample, model)

    assert [(f.feature, f.score, f.drifted) for f in streamed.features] == [(f.feature, f.score, f.drifted) for f in whole.features]
    assert streamed.prediction_drift == whole.prediction_drift


def test_streamed_watermark_is_the_largest_key_whatever_the_file_order(tmp_path: Path, small_batches: None) -> None:
    frame = predictions(2_000, seed=8, timestamps=50)  # many rows share each timestamp: ids break ties
    write_parts(frame.iloc[::-1], tmp_path, 4)  # the newest rows in the first file
    _, inputs = _inputs(tmp_path)
    window = read_window(inputs, WindowSpec(since=START - timedelta(seconds=1), until=UNTIL), UNTIL)
    assert window.watermark == watermark_of(frame, COLS)


def test_a_nan_flood_is_judged_on_the_whole_window_not_one_batch(tmp_path: Path, small_batches: None) -> None:
    frame = predictions(1_000, seed=9)
    frame.loc[:299, "income"] = np.nan  # the first three batches are all NaN, the window 30%
    write_parts(frame, tmp_path, 1)
    _, inputs = _inputs(tmp_path)
    window = read_window(inputs, WindowSpec(since=START - timedelta(seconds=1), until=UNTIL), UNTIL)
    assert window.error is None and window.summary.columns["income"].nulls == 300

    frame.loc[:699, "income"] = np.nan  # 70% of the window
    write_parts(frame, tmp_path, 1)
    window = read_window(inputs, WindowSpec(since=START - timedelta(seconds=1), until=UNTIL), UNTIL)
    with pytest.raises(InputError) as whole:
        validate_window(frame, model_config())
    assert isinstance(window.error, InputError) and str(window.error) == str(whole.value)
    assert "70% missing" in str(window.error)


def test_non_numeric_values_are_counted_over_every_batch(tmp_path: Path, small_batches: None) -> None:
    frame = predictions(1_000, seed=10)
    frame["score"] = frame["score"].astype(str)
    frame.loc[[5, 500, 900], "score"] = "n/a"
    write_parts(frame, tmp_path, 1)
    _, inputs = _inputs(tmp_path)
    window = read_window(inputs, WindowSpec(since=START - timedelta(seconds=1), until=UNTIL), UNTIL)
    assert window.error is not None and window.error.column == "score"
    assert "'n/a' (3 of 1000 rows)" in str(window.error)


@pytest.mark.integration
def test_postgres_scan_streams_through_a_server_side_cursor(small_batches: None) -> None:
    from tests.test_sources import PG_URL

    engine = sa.create_engine(PG_URL)
    name = f"stream_{np.random.default_rng().integers(1 << 40):x}"
    frame = predictions(1_500, seed=14, timestamps=100)
    frame.to_sql(name, engine, index=False)
    source = open_source(SqlSource.model_validate({"type": "sql", "url": PG_URL, "table": name}), COLS)
    try:
        after = Watermark(pd.Timestamp(frame["ts"].iloc[200]), int(frame["id"].iloc[200]))
        query = WindowQuery(WANTED, until=UNTIL, after=after)
        batches = list(source.scan(query))
        whole = source.read(query)
        with source._engine.connect() as conn:  # noqa: SLF001 - the cursor kind is the point of the test
            result = conn.execution_options(stream_results=True).execute(sa.text(f'SELECT 1 FROM "{name}"'))
            assert type(result.cursor).__name__ == "ServerCursor"
            result.close()
    finally:
        source.close()
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{name}"'))
        engine.dispose()
    assert len(batches) == 14 and all(len(b) <= 97 for b in batches)
    pd.testing.assert_frame_equal(pd.concat(batches, ignore_index=True), whole)
    assert whole["id"].tolist() == frame["id"].iloc[201:].tolist()


def test_inf_floods_and_impossible_probabilities_get_validate_windows_verdict(tmp_path: Path, small_batches: None) -> None:
    frame = predictions(1_000, seed=15)
    frame.loc[:399, "income"] = np.nan
    frame.loc[400:699, "income"] = np.inf  # 70% missing, 300 of them infinite
    frame.loc[[10, 600], "probability"] = [1.5, -0.2]
    write_parts(frame, tmp_path, 1)
    _, inputs = _inputs(tmp_path)
    window = read_window(inputs, WindowSpec(since=START - timedelta(seconds=1), until=UNTIL), UNTIL)
    with pytest.raises(InputError) as whole:
        validate_window(frame, model_config())
    assert isinstance(window.error, InputError) and str(window.error) == str(whole.value)
    assert window.error.columns == ("income", "probability")
