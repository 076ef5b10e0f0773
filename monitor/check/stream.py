"""A window taken in batch by batch, in memory that does not grow with the window.

As batches pass, each one is validated (vectorised casts, monitor.check.validate), fed to a seeded
reservoir of `max_rows` rows (the rows the drift statistics see), and counted into exact
summaries of the whole window: rows, per-column missing values, category counts, the watermark
and, for the late-row bookkeeping, the keys of the rows. Nothing else of a batch is kept.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from monitor.check.late import key_hashes, nanoseconds
from monitor.check.sample import Reservoir
from monitor.check.validate import BadValues, InputError, numeric_columns, outside_unit, require_columns, validate_batch, window_problems
from monitor.core.config import ModelConfig
from monitor.core.results import Watermark


@dataclass(frozen=True)
class ColumnSummary:
    """Exact counts of one checked column over every row of the window (not the sample)."""

    nulls: int  # null or NaN
    infinite: int = 0  # +inf or -inf (numerical columns)
    categories: Mapping[Any, int] | None = None  # categorical columns: rows per value, missing ones left out

    @property
    def missing(self) -> int:
        """Values the drift statistics cannot use: null, NaN or infinite."""
        return self.nulls + self.infinite


@dataclass(frozen=True)
class WindowSummary:
    """The whole window in counts, taken as its batches passed: what the drift check may use
    where a sample is not enough (missing shares, categories never seen in the reference)."""

    rows: int
    columns: Mapping[str, ColumnSummary] = field(default_factory=dict)  # every feature and the model output

    def missing_share(self, column: str) -> float:
        return self.columns[column].missing / self.rows if self.rows else 0.0


@dataclass(frozen=True)
class Streamed:
    """What a window's stream leaves behind."""

    rows: int
    sample: pd.DataFrame  # validated rows, at most max_rows, in stream order (text as category); empty when not validated
    sampled: bool  # whether rows were left out of `sample`
    summary: WindowSummary | None  # None when the window was not validated
    watermark: Watermark | None  # the key of the last fresh row (late rows never move it)
    key_ns: np.ndarray  # timestamps (int64 ns) of the rows whose keys were kept (late-row bookkeeping)
    key_hashes: np.ndarray  # and their key hashes (monitor.check.late.key_hashes)
    error: InputError | None  # why the window cannot be checked (validation), raised by the caller


class WindowStream:
    """Accumulates one window. `ordered`: fresh batches come in (timestamp, id) order, so the
    watermark is the last fresh row's key as the source orders keys; otherwise the largest key.
    `keys_lookback_ns` (the look-back, in ns) keeps the key hashes of rows newer than the
    newest timestamp minus the look-back, for monitor.check.late.seen_block; None keeps none."""

    def __init__(self, model: ModelConfig, *, max_rows: int | None, seed: int, validate: bool, ordered: bool,
                 keys_lookback_ns: int | None = None) -> None:
        self._model = model
        self._validate = validate
        self._ordered = ordered
        self._lookback = keys_lookback_ns
        self._reservoir = Reservoir(max_rows, seed, to_frame=self._sample_frame) if validate else None
        self._rows = 0
        self._watermark: Watermark | None = None
        self._key_ns: list[np.ndarray] = []
        self._key_hashes: list[np.ndarray] = []
        self._max_ns: int | None = None
        self._error: InputError | None = None
        self._bad: dict[str, BadValues] = {}
        cols = model.columns
        self._numerical = [c for c in numeric_columns(model) if c in (*cols.features, cols.prediction, cols.probability)]
        self._categorical = [*cols.categorical, *([cols.prediction] if cols.prediction not in self._numerical else [])]
        self._nulls: dict[str, int] = {c: 0 for c in (*self._numerical, *self._categorical, cols.timestamp, cols.id)}
        self._infinite: dict[str, int] = {c: 0 for c in self._numerical}
        self._outside = BadValues(0, None)  # probabilities outside [0, 1]
        self._levels: dict[str, _Levels] = {c: _Levels() for c in self._categorical}

    @property
    def rows(self) -> int:
        return self._rows

    def add(self, frame: pd.DataFrame | pa.Table, *, fresh: bool = True) -> None:
        """One batch; `fresh` rows are after the watermark, late ones (fresh=False) behind it.

        An Arrow table (FileLogSource.scan_arrow) is counted in Arrow and only the rows the
        sample admits are converted to pandas; a column Arrow cannot count as validation would
        (text in a numerical column) sends the whole batch down the pandas path."""
        if isinstance(frame, pa.Table):
            if frame.num_rows and not self._arrow(frame, fresh=fresh):
                self.add(_to_pandas(frame, text=self._model.columns.categorical), fresh=fresh)
            return
        if frame.empty:
            return
        self._rows += len(frame)
        cols = self._model.columns
        if fresh:
            self._advance(frame[cols.timestamp], frame[cols.id])
        if self._lookback is not None:
            self._keep_keys(frame)
        if self._validate and self._error is None:
            try:
                frame, bad = validate_batch(frame, self._model)
            except InputError as exc:  # missing columns: no later batch can mend them
                self._error = exc
                return
            for name, found in bad.items():
                seen = self._bad.get(name)
                self._bad[name] = BadValues((seen.count if seen else 0) + found.count, seen.sample if seen else found.sample)
            codes = self._count(frame, skip=bad.keys())
            if not self._bad:  # a frame with uncastable columns is not worth sampling
                assert self._reservoir is not None
                self._reservoir.add(self._compact(frame, codes))

    def finish(self) -> Streamed:
        key_ns, hashes = self._keys()
        empty = pd.DataFrame()
        if not self._validate:
            return Streamed(self._rows, empty, False, None, self._watermark, key_ns, hashes, None)
        assert self._reservoir is not None
        error = self._error or (window_problems(self._model, self._rows, self._nulls, self._bad, self._infinite, self._outside)
                                if self._rows else None)
        summary = self._summary()
        if error is not None:
            return Streamed(self._rows, empty, False, summary, self._watermark, key_ns, hashes, error)
        sample, sampled = self._reservoir.result()
        self._reservoir = None  # spent: its Arrow rows are freed now, not with the stream
        # Arrow's allocator keeps freed pages for reuse: hand them back before the drift
        # statistics allocate theirs (158 MB after a 10M-row window).
        pa.default_memory_pool().release_unused()
        for name in self._model.columns.categorical:
            if name in sample.columns:
                sample[name] = _categories(sample[name])
        return Streamed(self._rows, sample, sampled, summary, self._watermark, key_ns, hashes, None)

    # --- the parts ------------------------------------------------------------------------

    def _arrow(self, table: pa.Table, *, fresh: bool) -> bool:
        """Add an Arrow batch as add() adds its pandas form (the same counts, the same sample
        rows and values); False, having done nothing, when only the pandas path can validate it."""
        cols = self._model.columns
        validating = self._validate and self._error is None
        if validating:
            try:
                require_columns(table.column_names, _required(self._model), f"the window of model {self._model.name!r}")
            except InputError:
                return False  # the pandas path records the error, with the same message
            if not all(_countable(table[name].type) for name in self._numerical):
                return False
        if not _utc_ns(table.schema.field(cols.timestamp).type):
            return False
        self._rows += table.num_rows
        if fresh:
            self._advance_arrow(table[cols.timestamp], table[cols.id])
        if self._lookback is not None:
            self._keep_keys(_to_pandas(table.select([cols.timestamp, cols.id])))
        if not validating:
            return True
        for name in (cols.timestamp, cols.id):
            self._nulls[name] += table[name].null_count
        for name in self._numerical:
            self._count_numbers(name, pc.cast(table[name], pa.float64(), safe=False).to_numpy())
        codes = {name: self._levels[name].encode_arrow(table[name]) if _is_text(table[name].type)
                 else self._levels[name].encode(table[name].to_pandas()) for name in self._categorical}
        for name in self._categorical:
            self._nulls[name] += int((codes[name] < 0).sum())
        if self._bad:  # as add(): a window with uncastable columns is not worth sampling
            return True
        assert self._reservoir is not None
        offer = self._reservoir.offer(table.num_rows)
        if offer is None:
            return True
        # The admitted rows stay in Arrow (numbers as float64, categorical text as level codes)
        # until the sample is taken: converting and joining them in pandas batch by batch cost
        # more than reading the window.
        rows = table if offer.rows is None else table.take(offer.rows)
        for name in self._numerical:
            rows = rows.set_column(rows.column_names.index(name), name, pc.cast(rows[name], pa.float64(), safe=False))
        for name in cols.categorical:
            picked = codes[name] if offer.rows is None else codes[name][offer.rows]
            rows = rows.set_column(rows.column_names.index(name), name, pa.array(picked, type=pa.int32()))
        self._reservoir.keep(offer, rows)
        return True

    def _sample_frame(self, rows: pa.Table) -> pd.DataFrame:
        """Admitted Arrow rows as the pandas path holds them: cast as validate_batch casts, categorical
        text as categories over every level seen so far."""
        text = self._model.columns.categorical
        frame, _ = validate_batch(_to_pandas(rows.select([c for c in rows.column_names if c not in text])), self._model, require=False)
        for name in text:
            frame[name] = pd.Categorical.from_codes(rows[name].to_numpy(), dtype=pd.CategoricalDtype(self._levels[name].categories()))
        return frame[rows.column_names]

    def _count_numbers(self, name: str, values: np.ndarray) -> None:
        values = values.astype(np.float64, copy=False)
        self._nulls[name] += int(np.isnan(values).sum())
        self._infinite[name] += int(np.isinf(values).sum())
        if name == self._model.columns.probability:
            found = outside_unit(pd.Series(values, copy=False))
            if found.count:
                first = self._outside.sample if self._outside.count else found.sample
                self._outside = BadValues(self._outside.count + found.count, first)

    def _advance(self, stamps: pd.Series, ids: pd.Series) -> None:
        if self._ordered:
            candidate = _mark(stamps.iloc[-1], ids.iloc[-1])
            self._watermark = candidate
            return
        ns = nanoseconds(stamps)
        top = ns.max()
        ident = ids[ns == top].max()
        self._raise_to(_mark(stamps[ns == top].iloc[0], ident))

    def _advance_arrow(self, stamps: pa.ChunkedArray, ids: pa.ChunkedArray) -> None:
        """_advance on Arrow columns (timestamps already UTC nanoseconds, as files hand them over)."""
        if self._ordered:
            self._watermark = _mark(pd.Timestamp(stamps[-1].value, tz="UTC"), ids[-1].as_py())
            return
        ns = stamps.cast(pa.int64()).to_numpy()
        top = ns.max()
        ident = pc.max(ids.filter(pa.array(ns == top))).as_py()
        self._raise_to(_mark(pd.Timestamp(top, tz="UTC"), ident))

    def _raise_to(self, candidate: Watermark) -> None:
        current = self._watermark
        if current is None or (pd.Timestamp(candidate.timestamp).value, candidate.id) > (pd.Timestamp(current.timestamp).value, current.id):
            self._watermark = candidate

    def _keep_keys(self, frame: pd.DataFrame) -> None:
        cols = self._model.columns
        ns = nanoseconds(frame[cols.timestamp])
        self._max_ns = int(ns.max()) if self._max_ns is None else max(self._max_ns, int(ns.max()))
        assert self._lookback is not None
        # Only rows newer than (final watermark - look-back) enter the bookkeeping, and the
        # final watermark is at least the newest timestamp seen so far.
        floor = self._max_ns - self._lookback
        inside = ns > floor
        if inside.any():
            self._key_ns.append(ns[inside])
            self._key_hashes.append(key_hashes(frame[inside], cols))
        if len(self._key_ns) > 64:  # drop what fell behind the look-back since
            ns, hashes = self._keys()
            self._key_ns, self._key_hashes = [ns], [hashes]

    def _keys(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._key_ns:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.uint64)
        ns, hashes = np.concatenate(self._key_ns), np.concatenate(self._key_hashes)
        if self._max_ns is not None and self._lookback is not None:
            inside = ns > self._max_ns - self._lookback
            ns, hashes = ns[inside], hashes[inside]
        return ns, hashes

    def _count(self, frame: pd.DataFrame, skip: Collection[str]) -> dict[str, np.ndarray]:
        """Add a validated batch's counts; `skip` the columns that could not be cast (the window
        is refused over them, with the count of bad values). Returns the category codes of
        the categorical columns (monitor.check.stream._Levels)."""
        for name in (self._model.columns.timestamp, self._model.columns.id):
            self._nulls[name] += int(frame[name].isna().sum())
        for name in self._numerical:
            if name in skip:
                continue
            self._count_numbers(name, frame[name].to_numpy(dtype=np.float64, na_value=np.nan))
        codes = {}
        for name in self._categorical:
            codes[name] = self._levels[name].encode(frame[name])
            self._nulls[name] += int((codes[name] < 0).sum())
        return codes

    def _compact(self, frame: pd.DataFrame, codes: dict[str, np.ndarray]) -> pd.DataFrame:
        """The batch as the reservoir keeps it: text as category codes over every level seen so
        far (1-2 bytes a value instead of ~15)."""
        for name in self._model.columns.categorical:
            dtype = pd.CategoricalDtype(self._levels[name].categories())
            frame[name] = pd.Series(pd.Categorical.from_codes(codes[name], dtype=dtype), index=frame.index, name=name)
        return frame

    def _summary(self) -> WindowSummary:
        columns: dict[str, ColumnSummary] = {}
        for name in self._numerical:
            columns[name] = ColumnSummary(self._nulls[name], self._infinite[name])
        for name in self._categorical:
            columns[name] = ColumnSummary(self._nulls[name], 0, self._levels[name].counted())
        return WindowSummary(self._rows, columns)


class _Levels:
    """Every value a categorical column has shown, in order of appearance, with exact counts.

    A batch is factorized once (dictionary-encoded in Arrow for Arrow text); its few distinct values are mapped to their
    global codes in Python, the rows by a numpy take: no Python call per row."""

    def __init__(self) -> None:
        self._values: list[Any] = []
        self._index: dict[Any, int] = {}
        self._counts = np.zeros(0, dtype=np.int64)
        self._arrow: pa.Array | None = None  # the levels as Arrow text, for encode_arrow

    def encode(self, series: pd.Series) -> np.ndarray:
        """int32 codes into the levels (-1 where missing), the batch's counts added."""
        local, uniques = pd.factorize(series, use_na_sentinel=True)  # Arrow's dictionary_encode for Arrow text
        mapping = np.fromiter((self._code(_plain(v)) for v in uniques), dtype=np.int32, count=len(uniques))
        codes = np.full(len(local), -1, dtype=np.int32)
        present = local >= 0
        codes[present] = mapping[local[present]]
        self._add_counts(codes)
        return codes

    def _add_counts(self, codes: np.ndarray) -> None:
        self._grow()
        self._counts += np.bincount(codes[codes >= 0], minlength=len(self._values))

    def _grow(self) -> None:
        if len(self._counts) < len(self._values):
            self._counts = np.concatenate([self._counts, np.zeros(len(self._values) - len(self._counts), dtype=np.int64)])

    def encode_arrow(self, column: pa.ChunkedArray) -> np.ndarray:
        """encode() for Arrow text (plain or dictionary-encoded): the batch's dictionary is
        matched against the levels in Arrow (pc.index_in); only values never seen before
        reach Python, once each."""
        parts = []
        if not pa.types.is_dictionary(column.type):
            column = pc.dictionary_encode(column)
        for chunk in column.chunks:
            dictionary = chunk.dictionary
            mapping = pc.index_in(dictionary, value_set=self._arrow_levels())
            new = pc.and_(pc.is_null(mapping), pc.is_valid(dictionary))
            if pc.any(new).as_py():
                for value in dictionary.filter(new).to_pylist():
                    self._code(value)
                mapping = pc.index_in(dictionary, value_set=self._arrow_levels())
            # One slot past the dictionary stands for a missing value: code -1.
            lookup = np.append(mapping.fill_null(-1).to_numpy(zero_copy_only=False), np.int32(-1)).astype(np.int32)
            local = chunk.indices.fill_null(len(dictionary)).to_numpy(zero_copy_only=False)
            parts.append(lookup[local])
            self._grow()
            per_entry = np.bincount(local, minlength=len(lookup))
            present = lookup >= 0
            np.add.at(self._counts, lookup[present], per_entry[present])
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int32)

    def _arrow_levels(self) -> pa.Array:
        if self._arrow is None or len(self._arrow) != len(self._values):
            self._arrow = pa.array(self._values, type=pa.string())
        return self._arrow

    def categories(self) -> pd.Index:
        return pd.Index(self._values, dtype=object)

    def counted(self) -> dict[Any, int]:
        return {value: int(count) for value, count in zip(self._values, self._counts) if count}

    def _code(self, value: Any) -> int:
        code = self._index.get(value)
        if code is None:
            code = self._index[value] = len(self._values)
            self._values.append(value)
        return code


_ARROW_TEXT = {pa.string(): pd.StringDtype("pyarrow")}


def _to_pandas(table: pa.Table, text: Collection[str] = ()) -> pd.DataFrame:
    """As FileLogSource.scan hands a batch over: the `text` columns as Arrow-backed strings
    (dictionary-encoded or not), other text as Python str, timestamps as datetime64[ns, UTC]."""
    for index, kind in enumerate(table.schema.types):
        if pa.types.is_dictionary(kind):
            name = table.column_names[index]
            table = table.set_column(index, name, table[name].cast(kind.value_type))
    # Arrow's threads would allocate the numpy blocks, each in a malloc arena of its own that
    # keeps its pages: peak memory grew by 125 MB from 1M to 10M rows with threads on.
    frame = table.select([c for c in table.column_names if c not in text]).to_pandas(use_threads=False)
    arrow_text = [c for c in table.column_names if c in text]
    for name in arrow_text:
        frame[name] = table[name].to_pandas(types_mapper=_ARROW_TEXT.get, use_threads=False)
    frame = frame[table.column_names] if arrow_text else frame
    for name in frame.columns:
        if frame[name].dtype.kind == "M":
            frame[name] = frame[name].astype("datetime64[ns, UTC]")
    return frame


def _required(model: ModelConfig) -> list[str]:
    cols = model.columns
    return [cols.timestamp, cols.id, cols.prediction, *cols.features, *[c for c in (cols.probability,) if c]]


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or (pa.types.is_dictionary(kind) and pa.types.is_string(kind.value_type))


def _utc_ns(kind: pa.DataType) -> bool:
    return pa.types.is_timestamp(kind) and kind.unit == "ns" and kind.tz in ("UTC", "+00:00")


def _countable(kind: pa.DataType) -> bool:
    """A numerical column Arrow hands over as numbers: no value can fail the cast to float64."""
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind) or pa.types.is_null(kind)


def _categories(series: pd.Series) -> pd.Series:
    """The sample's text as the drift check types it: category with the values present, sorted
    (exactly what `astype("category")` of the same strings gives), Python str categories."""
    if not isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object).where(series.notna(), np.nan).astype("category")
    present = series.cat.remove_unused_categories()
    ordered = sorted(present.cat.categories.to_numpy(dtype=object))
    return present.cat.reorder_categories(pd.Index(ordered, dtype=object))


def _mark(stamp: Any, ident: Any) -> Watermark:
    """As monitor.sources.watermark_of: the timestamp a UTC pandas Timestamp, the id a plain value."""
    stamp = pd.Timestamp(stamp)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return Watermark(stamp, _plain(ident))


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
