"""Delayed labels: attach the ground truth that has arrived so far to a window's predictions.

Labels often arrive hours or days after the prediction (a chargeback, a churned customer).
They are joined on the prediction id; rows whose label has not arrived keep a NaN target, so
quality is computed on the labelled rows only and improves as later checks see more labels.

Many outcome tables are just `(id, label)`. Without the timestamp column, an id labelled more
than once keeps the label read last: for files the last matching row of the last file (files
in name order), for SQL the database's row order (defined only for append-only tables; add a
timestamp column when labels are corrected).
"""

from __future__ import annotations

import logging
import weakref

import numpy as np
import pandas as pd

from monitor.core.config import Columns
from monitor.sources.base import Source, SourceError

log = logging.getLogger(__name__)

# Labels sources found to have no timestamp column: asked once per source, not on every check.
_UNTIMED: weakref.WeakSet[Source] = weakref.WeakSet()


def attach_labels(window: pd.DataFrame, labels: Source | None, columns: Columns) -> pd.DataFrame:
    """`window` with a `columns.target` column: logged with the predictions, or joined from `labels`.

    The labels source has the id and target columns and, optionally, the timestamp column
    (named as in `columns`; the timestamp is when the label was recorded). When one id has
    several labels the latest wins and a warning says how many ids were affected."""
    target = columns.target
    if target is None:
        return window
    if labels is None:
        if target in window.columns:
            return window
        log.debug("no labels source and no %r column in the window: quality is not computed", target)
        return window.assign(**{target: np.nan})
    if window.empty:
        return window if target in window.columns else window.assign(**{target: np.nan})
    ids = window[columns.id].dropna().unique().tolist()
    return _join(window, _latest(_read_labels(labels, ids, columns), columns), columns)


def _read_labels(labels: Source, ids: list, columns: Columns) -> pd.DataFrame:
    assert columns.target is not None
    untimed = (columns.id, columns.target)
    if labels in _UNTIMED:
        return labels.read_ids(untimed, ids)
    try:
        return labels.read_ids((columns.id, columns.timestamp, columns.target), ids)
    except SourceError as exc:
        if exc.missing != (columns.timestamp,):
            raise
    log.info("the labels source has no %r column: an id labelled twice keeps the label read last", columns.timestamp)
    _UNTIMED.add(labels)
    return labels.read_ids(untimed, ids)


def _latest(found: pd.DataFrame, columns: Columns) -> pd.DataFrame:
    """One label per id: the last by the labels' timestamp, or by source order without one."""
    order = columns.timestamp if columns.timestamp in found.columns else "source order"
    if order != "source order":
        found = found.sort_values(columns.timestamp, kind="stable")
    duplicated = found[columns.id].duplicated(keep=False)
    if duplicated.any():
        ids = found.loc[duplicated, columns.id]
        log.warning(
            "labels source has %d labels for %d prediction ids that were labelled more than once "
            "(e.g. id %r); using the latest label of each by %s",
            len(ids), ids.nunique(), ids.iloc[0], order if order == "source order" else repr(order),
        )
    return found.drop_duplicates(columns.id, keep="last")[[columns.id, columns.target]]


def _join(window: pd.DataFrame, found: pd.DataFrame, columns: Columns) -> pd.DataFrame:
    key, target = columns.id, columns.target
    assert target is not None
    left_key, right_key = window[key], found[key]
    if left_key.dtype.kind != right_key.dtype.kind:
        # An int id in the logs and a text id in the labels table still name the same prediction.
        left_key, right_key = left_key.astype(str), right_key.astype(str)
    label_of = pd.Series(found[target].to_numpy(), index=right_key.to_numpy())
    joined = left_key.map(label_of)
    if target in window.columns:
        # A target logged with some predictions stays where no separate label arrived.
        joined = joined.where(joined.notna(), window[target])
    return window.assign(**{target: joined.to_numpy()})
