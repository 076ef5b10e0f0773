"""A window (or a set of ids) as an Arrow filter expression, pushed down into pyarrow's readers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import pyarrow as pa
import pyarrow.dataset as ds

from monitor.core.clock import utc_timestamp
from monitor.sources.base import SourceError, WindowQuery

# Builds a filter for a table whose column types are given by the schema.
FilterFor = Callable[[pa.Schema], "ds.Expression | None"]


def pushable(schema: pa.Schema, ts_name: str) -> bool:
    """Whether the filter can run on the stored types (text timestamps are parsed first)."""
    return ts_name not in schema.names or pa.types.is_timestamp(schema.field(ts_name).type)


def apply_filter(table: pa.Table, filter_for: FilterFor) -> pa.Table:
    expression = filter_for(table.schema)
    return table if expression is None else table.filter(expression)


def _ts_literal(value: datetime, kind: pa.TimestampType) -> tuple[pa.Scalar, bool]:
    """`value` as a scalar of the column's type, floored to its unit; and whether that was exact.

    For an integer-valued column, ts > x <=> ts > floor(x) and ts <= x <=> ts <= floor(x),
    so flooring keeps the window exact even when `until` is finer than the stored unit."""
    stamp = utc_timestamp(value)
    floored = stamp.floor(kind.unit) if kind.unit != "ns" else stamp
    if kind.tz is None:
        floored = floored.tz_convert(None)
        exact = floored == stamp.tz_convert(None)
    else:
        exact = floored == stamp
    return pa.scalar(floored, type=kind), bool(exact)


def window_filter(query: WindowQuery, ts_name: str, id_name: str, schema: pa.Schema) -> ds.Expression:
    ts_type = schema.field(ts_name).type
    ts = ds.field(ts_name)
    until, _ = _ts_literal(query.until, ts_type)
    expression = ts <= until
    if query.after is not None:
        after, exact = _ts_literal(query.after.timestamp, ts_type)
        lower = ts > after
        if exact:
            id_literal = _id_literal(query.after.id, schema.field(id_name).type, id_name)
            lower = lower | ((ts == after) & (ds.field(id_name) > id_literal))
        expression = expression & lower
    elif query.since is not None:
        since, _ = _ts_literal(query.since, ts_type)
        expression = expression & (ts > since)
    if query.through is not None:
        through, exact = _ts_literal(query.through.timestamp, ts_type)
        upper = ts <= through
        if exact:
            id_literal = _id_literal(query.through.id, schema.field(id_name).type, id_name)
            upper = (ts < through) | ((ts == through) & (ds.field(id_name) <= id_literal))
        expression = expression & upper
    return expression


def _id_literal(value: str | int, kind: pa.DataType, name: str) -> pa.Scalar:
    try:
        return pa.scalar(value).cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise SourceError(
            f"watermark id {value!r} does not fit id column {name!r} of type {kind}; "
            "did the id column change type? convert the ids back, or move the model past these rows with `driftd skip-window`",
            kind="schema",
        ) from None


def ids_filter(ids: Sequence[str | int], id_name: str, schema: pa.Schema) -> ds.Expression:
    kind = schema.field(id_name).type
    try:
        values = pa.array(list(ids)).cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        values = pa.array([str(i) for i in ids]).cast(kind, safe=False)
    return ds.field(id_name).isin(values)
