"""Prediction-log sources: files (Parquet, CSV, JSON lines), SQLite and a real PostgreSQL."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from monitor.core.config import FilesSource, SqlSource
from monitor.core.results import Watermark
from monitor.sources import SourceError, WindowQuery, engines, open_source, watermark_of
from tests.support.data import START, columns, predictions, write_parts

PG_URL = os.environ.get("DRIFTD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
COLS = columns()
ALL = ("ts", "id", "age", "income", "score", "country", "device", "prediction", "probability", "target")
END = START + timedelta(days=365)


def files_source(pattern: Path | str, fmt: str | None = None):
    return open_source(FilesSource(type="files", path=str(pattern), format=fmt), COLS)


def drain(source, *, until: datetime = END, limit: int | None = None, after: Watermark | None = None,
          wanted: tuple[str, ...] = ("ts", "id")) -> tuple[list, Watermark | None]:
    """Read successive windows, each starting at the last one's watermark, until nothing is left."""
    seen: list = []
    for _ in range(1_000):
        window = source.read(WindowQuery(columns=wanted, until=until, after=after, limit=limit))
        if window.empty:
            return seen, after
        seen += window["id"].tolist()
        after = watermark_of(window, COLS)
    raise AssertionError("the source never ran dry: the watermark does not advance")


def sqlite_source(path: Path, frame: pd.DataFrame, *, table: str = "predictions", query: str | None = None):
    engine = sa.create_engine(f"sqlite:///{path}")
    frame.to_sql(table, engine, index=False, if_exists="replace")
    engine.dispose()
    cfg = {"type": "sql", "url": f"sqlite:///{path}", **({"query": query} if query else {"table": table})}
    return open_source(SqlSource.model_validate(cfg), COLS)


@pytest.fixture()
def pg_table() -> Iterator[tuple[sa.Engine, str]]:
    engine = sa.create_engine(PG_URL)
    name = f"preds_{uuid.uuid4().hex[:10]}"
    yield engine, name
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP TABLE IF EXISTS "{name}"'))
    engine.dispose()


def pg_source(engine: sa.Engine, name: str, frame: pd.DataFrame, **cfg):
    frame.to_sql(name, engine, index=False)
    source = open_source(SqlSource.model_validate({"type": "sql", "url": PG_URL, **(cfg or {"table": name})}), COLS)
    return source


# --- files ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_file_window_returns_exactly_the_rows_in_the_window(tmp_path: Path, fmt: str) -> None:
    frame = predictions(600, seed=1, every=timedelta(seconds=10))
    write_parts(frame, tmp_path, 4, fmt)
    source = files_source(tmp_path / f"*.{fmt}")
    since, until = START + timedelta(minutes=20), START + timedelta(minutes=70)

    window = source.read(WindowQuery(columns=("ts", "id", "age", "country"), since=since, until=until))

    expected = frame[(frame.ts > since) & (frame.ts <= until)]
    assert list(window.columns) == ["ts", "id", "age", "country"]
    assert window["id"].tolist() == expected["id"].tolist()
    assert str(window["ts"].dtype) == "datetime64[ns, UTC]"
    assert window["ts"].tolist() == expected["ts"].tolist()
    assert window["age"].tolist() == pytest.approx(expected["age"].tolist())
    assert window["country"].tolist() == expected["country"].tolist()


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_many_rows_on_few_timestamps_are_each_read_exactly_once(tmp_path: Path, fmt: str) -> None:
    frame = predictions(1000, seed=2, timestamps=7, every=timedelta(minutes=1))
    write_parts(frame, tmp_path, 3, fmt)

    seen, last = drain(files_source(tmp_path / f"*.{fmt}"), limit=333)

    assert sorted(seen) == list(range(1000))
    assert last == Watermark(frame.ts.iloc[-1], 999)


def test_a_window_edge_inside_a_run_of_equal_timestamps_loses_nothing(tmp_path: Path) -> None:
    frame = predictions(1000, seed=3, timestamps=7, every=timedelta(minutes=1))
    write_parts(frame, tmp_path, 2)
    source = files_source(tmp_path / "*.parquet")
    edge = START + timedelta(minutes=3)

    first, wm = drain(source, until=edge, limit=100)
    rest, _ = drain(source, after=wm, limit=100)

    assert first == frame.loc[frame.ts <= edge, "id"].tolist()
    assert sorted(first + rest) == list(range(1000))


def test_parquet_read_pushes_the_time_filter_and_projection_down(tmp_path: Path) -> None:
    # 20 daily files of incompressible floats; a one-hour window must not read them all.
    rng = np.random.default_rng(4)
    n = 20_000
    for day in range(20):
        day_frame = pd.DataFrame(
            {"ts": pd.date_range(START + timedelta(days=day), periods=n, freq="4s"), "id": np.arange(day * n, (day + 1) * n)}
        )
        for name in ("age", "income", "score"):
            day_frame[name] = rng.random(n)
        day_frame.to_parquet(tmp_path / f"day-{day:02d}.parquet", index=False)
    source = files_source(tmp_path / "*.parquet")
    features = ("ts", "id", "age", "income", "score")

    full_bytes, full = bytes_read(lambda: source.read(WindowQuery(columns=features, until=END)))
    hour = START + timedelta(days=5)
    narrow_bytes, narrow = bytes_read(lambda: source.read(WindowQuery(columns=features, since=hour, until=hour + timedelta(hours=1))))
    keys_bytes, _ = bytes_read(lambda: source.read(WindowQuery(columns=("ts", "id"), until=END)))

    assert len(full) == 20 * n and len(narrow) == 900
    assert narrow_bytes < full_bytes / 3, (narrow_bytes, full_bytes)
    assert keys_bytes < full_bytes * 0.6, (keys_bytes, full_bytes)


def bytes_read(action) -> tuple[int, object]:
    """Bytes this process read through read()/pread() while running `action` (all threads)."""
    def rchar() -> int:
        with open("/proc/self/io") as io:
            return next(int(line.split()[1]) for line in io if line.startswith("rchar"))

    before = rchar()
    result = action()
    return rchar() - before, result


def test_naive_parquet_timestamps_are_taken_as_utc(tmp_path: Path) -> None:
    frame = predictions(10, seed=5)
    frame["ts"] = frame["ts"].dt.tz_convert(None)  # written without a zone
    frame.to_parquet(tmp_path / "naive.parquet", index=False)

    window = files_source(tmp_path / "*.parquet").read(WindowQuery(columns=("ts", "id"), until=START + timedelta(seconds=4)))

    assert window["id"].tolist() == [0, 1, 2, 3, 4]
    assert window["ts"].iloc[0] == pd.Timestamp(START)


def test_seconds_resolution_timestamps_with_a_finer_until(tmp_path: Path) -> None:
    table = pa.table({"ts": pa.array([START + timedelta(seconds=s) for s in range(5)], pa.timestamp("s", tz="UTC")), "id": range(5)})
    pq.write_table(table, tmp_path / "coarse.parquet")
    source = files_source(tmp_path / "*.parquet")

    window = source.read(WindowQuery(columns=("ts", "id"), until=START + timedelta(seconds=2, microseconds=500)))
    after = source.read(WindowQuery(columns=("ts", "id"), after=Watermark(START + timedelta(seconds=1, microseconds=1), 0), until=END))

    assert window["id"].tolist() == [0, 1, 2]
    assert after["id"].tolist() == [2, 3, 4]


def test_text_ids_keep_their_type_in_the_watermark(tmp_path: Path) -> None:
    frame = predictions(50, seed=6, timestamps=3)
    frame["id"] = [f"req-{i:04d}" for i in frame["id"]]
    frame.to_parquet(tmp_path / "text.parquet", index=False)

    seen, last = drain(files_source(tmp_path / "*.parquet"), limit=7)

    assert sorted(seen) == sorted(frame["id"])
    assert last is not None and last.id == "req-0049"


def test_categorical_codes_stay_text_in_csv(tmp_path: Path) -> None:
    (tmp_path / "log.csv").write_text("ts,id,country\n2024-05-01T00:00:00Z,1,007\n2024-05-01T00:00:01Z,2,010\n")

    window = files_source(tmp_path / "*.csv").read(WindowQuery(columns=("ts", "id", "country"), until=END))

    assert window["country"].tolist() == ["007", "010"]


def test_corrupt_parquet_names_the_file_and_what_to_do(tmp_path: Path) -> None:
    write_parts(predictions(20), tmp_path, 2)
    (tmp_path / "part-001.parquet").write_bytes(b"PAR1 truncated by a crashed writer")

    with pytest.raises(SourceError) as err:
        files_source(tmp_path / "*.parquet").read(WindowQuery(columns=("ts", "id"), until=END))

    assert err.value.kind == "corrupt"
    assert "part-001.parquet" in str(err.value)
    assert "move it out of the source path" in str(err.value)


def test_corrupt_jsonl_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"ts": "2024-05-01T00:00:00Z", "id": 1}\n{"ts": oops\n')

    with pytest.raises(SourceError) as err:
        files_source(tmp_path / "*.jsonl").read(WindowQuery(columns=("ts", "id"), until=END))

    assert err.value.kind == "corrupt" and "a.jsonl" in str(err.value)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_missing_column_names_the_column_and_the_file(tmp_path: Path, fmt: str) -> None:
    write_parts(predictions(20).drop(columns=["income"]), tmp_path, 1, fmt)

    with pytest.raises(SourceError) as err:
        files_source(tmp_path / f"*.{fmt}").read(WindowQuery(columns=("ts", "id", "age", "income"), until=END))

    assert err.value.kind == "schema"
    assert "'income'" in str(err.value) and f"part-000.{fmt}" in str(err.value)


def test_unparsable_text_timestamp_is_shown(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("ts,id\n2024-05-01T00:00:00Z,1\nyesterday,2\n")

    with pytest.raises(SourceError, match="'yesterday'") as err:
        files_source(tmp_path / "*.csv").read(WindowQuery(columns=("ts", "id"), until=END))
    assert err.value.kind == "schema"


def test_empty_directory_is_an_empty_window_but_a_missing_one_is_an_error(tmp_path: Path) -> None:
    empty = files_source(tmp_path / "*.parquet").read(WindowQuery(columns=("ts", "id", "age"), until=END))
    assert empty.empty and list(empty.columns) == ["ts", "id", "age"]

    with pytest.raises(SourceError) as err:
        files_source(tmp_path / "gone" / "2024-*" / "*.parquet").read(WindowQuery(columns=("ts", "id"), until=END))
    assert err.value.kind == "unreachable" and str(tmp_path / "gone") in str(err.value)


def test_files_read_ids_finds_rows_across_files(tmp_path: Path) -> None:
    write_parts(predictions(300, seed=7), tmp_path, 5, "parquet")

    found = files_source(tmp_path / "*.parquet").read_ids(("id", "target"), [299, 3, 150, 100_000])

    assert sorted(found["id"]) == [3, 150, 299]


# --- SQL: SQLite --------------------------------------------------------------------------


def test_sqlite_table_window_with_sqlalchemy_datetime_text(tmp_path: Path) -> None:
    frame = predictions(1000, seed=8, timestamps=7, every=timedelta(minutes=1))
    source = sqlite_source(tmp_path / "logs.db", frame)

    seen, _ = drain(source, limit=333)
    window = source.read(WindowQuery(columns=("ts", "id", "age"), since=START, until=START + timedelta(minutes=2)))

    assert sorted(seen) == list(range(1000))
    expected = frame[(frame.ts > START) & (frame.ts <= START + timedelta(minutes=2))]
    assert window["id"].tolist() == expected["id"].tolist()
    assert list(window.columns) == ["ts", "id", "age"]
    assert str(window["ts"].dtype) == "datetime64[ns, UTC]"


def test_sqlite_iso_text_with_zulu_and_a_user_query(tmp_path: Path) -> None:
    frame = predictions(200, seed=9, timestamps=11, every=timedelta(seconds=1))
    frame["ts"] = frame["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # as a JSON logger writes it
    query = "SELECT * FROM raw_logs WHERE device <> 'web'"

    source = sqlite_source(tmp_path / "logs.db", frame, table="raw_logs", query=query)
    seen, _ = drain(source, limit=17)
    edge = source.read(WindowQuery(columns=("ts", "id"), until=START + timedelta(seconds=5)))

    kept = frame[frame.device != "web"]
    assert sorted(seen) == sorted(kept["id"])
    assert edge["ts"].max() <= pd.Timestamp(START + timedelta(seconds=5))
    assert len(edge) == int((pd.to_datetime(kept["ts"]) <= pd.Timestamp(START + timedelta(seconds=5))).sum())


def test_sqlite_missing_column_is_named(tmp_path: Path) -> None:
    source = sqlite_source(tmp_path / "logs.db", predictions(10).drop(columns=["score"]))

    with pytest.raises(SourceError) as err:
        source.read(WindowQuery(columns=("ts", "id", "score"), until=END))

    assert err.value.kind == "schema" and "'score'" in str(err.value) and "predictions" in str(err.value)


def test_sqlite_missing_database_file_is_unreachable_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    with pytest.raises(SourceError) as err:
        open_source(SqlSource.model_validate({"type": "sql", "url": f"sqlite:///{path}", "table": "t"}), COLS)
    assert err.value.kind == "unreachable" and not path.exists()


# --- SQL: PostgreSQL ----------------------------------------------------------------------


@pytest.mark.integration
def test_postgres_table_reads_every_row_once_across_equal_timestamps(pg_table) -> None:
    engine, name = pg_table
    frame = predictions(1000, seed=10, timestamps=7, every=timedelta(minutes=1))
    source = pg_source(engine, name, frame)
    try:
        seen, last = drain(source, limit=333)
        window = source.read(WindowQuery(columns=("ts", "id", "country"), since=START, until=START + timedelta(minutes=3)))
    finally:
        source.close()

    assert sorted(seen) == list(range(1000)) and len(seen) == 1000
    assert last == Watermark(frame.ts.iloc[-1], 999) and isinstance(last.id, int)
    expected = frame[(frame.ts > START) & (frame.ts <= START + timedelta(minutes=3))]
    assert window["id"].tolist() == expected["id"].tolist()
    assert list(window.columns) == ["ts", "id", "country"]
    assert str(window["ts"].dtype) == "datetime64[ns, UTC]"


@pytest.mark.integration
def test_postgres_zone_less_timestamps_are_utc_and_queries_work(pg_table) -> None:
    engine, name = pg_table
    frame = predictions(100, seed=11)
    frame["ts"] = frame["ts"].dt.tz_convert(None)  # a `timestamp without time zone` column
    source = pg_source(engine, name, frame, query=f'SELECT * FROM "{name}" WHERE id % 2 = 0')
    try:
        window = source.read(WindowQuery(columns=("ts", "id"), until=START + timedelta(seconds=9)))
    finally:
        source.close()

    assert window["id"].tolist() == [0, 2, 4, 6, 8]
    assert window["ts"].iloc[1] == pd.Timestamp(START + timedelta(seconds=2))


@pytest.mark.integration
def test_postgres_missing_column_and_read_ids_in_batches(pg_table) -> None:
    engine, name = pg_table
    frame = predictions(25_000, seed=12)
    source = pg_source(engine, name, frame[["ts", "id", "target"]])
    try:
        with pytest.raises(SourceError) as err:
            source.read(WindowQuery(columns=("ts", "id", "age"), until=END))
        ids = frame["id"].to_numpy()[::2]  # numpy ints, as a window hands them over
        found = source.read_ids(("id", "target"), list(ids))
    finally:
        source.close()

    assert err.value.kind == "schema" and "'age'" in str(err.value)
    assert found["id"].tolist() == sorted(ids.tolist())


def test_unreachable_database_message_hides_the_password() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    secret = "s3cr3t-pw"
    cfg = SqlSource.model_validate({"type": "sql", "url": f"postgresql+psycopg://driftd:{secret}@127.0.0.1:{port}/logs", "table": "t"})
    source = open_source(cfg, COLS)

    with pytest.raises(SourceError) as err:
        source.read(WindowQuery(columns=("ts", "id"), until=END))

    message = str(err.value)
    assert err.value.kind == "unreachable"
    assert secret not in message and secret not in repr(err.value.__cause__) and err.value.__cause__ is None
    assert f"driftd:***@127.0.0.1:{port}/logs" in message


def test_watermark_of_an_empty_window_is_none() -> None:
    assert watermark_of(predictions(0), COLS) is None
    frame = predictions(3, start=datetime(2024, 1, 1, tzinfo=timezone.utc))
    assert watermark_of(frame, COLS) == Watermark(datetime(2024, 1, 1, 0, 0, 2, tzinfo=timezone.utc), 2)


def test_sources_on_one_database_share_one_engine_until_the_last_closes(tmp_path: Path) -> None:
    # One pool per database, not per model: a thousand models on one database held a thousand pools.
    frame = predictions(200, seed=9, timestamps=7, every=timedelta(minutes=1))
    first = sqlite_source(tmp_path / "logs.db", frame)
    second = open_source(SqlSource(type="sql", url=f"sqlite:///{tmp_path / 'logs.db'}", table="predictions"), COLS)
    query = WindowQuery(columns=("ts", "id"), since=START - timedelta(minutes=1), until=START + timedelta(hours=1))

    assert first._engine is second._engine
    first.close()
    assert len(second.read(query)) == 200  # the other model's source still reads
    with pytest.raises(SourceError, match="closed"):
        first.read(query)
    engine = second._engine
    second.close()
    second.close()  # closing twice is harmless
    assert engine is not None and engine.pool.checkedin() == 0  # disposed: a fresh, empty pool
    assert all(held is not engine for held, _ in engines._shared.values())
