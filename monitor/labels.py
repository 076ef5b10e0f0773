"""Delayed labels: attach the ground truth that has arrived so far to a window's predictions.

Labels often arrive hours or days after the prediction (a chargeback, a churned customer).
They are joined on the prediction id; rows whose label has not arrived keep a NaN target, so
quality is computed on the labelled rows only and improves as later checks see more labels.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from monitor.config import Columns
from monitor.sources.base import Source

log = logging.getLogger(__name__)


def attach_labels(window: pd.DataFrame, labels: Source | None, columns: Columns) -> pd.DataFrame:
    """`window` with a `columns.target` column: logged with the predictions, or joined from `labels`.

    The labels source must have the id, target and timestamp columns (named as in `columns`;
    the timestamp is when the label was recorded). When one id has several labels the latest
    wins and a warning says how many ids were affected."""
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
    found = labels.read_ids((columns.id, columns.timestamp, target), ids)
    return _join(window, _latest(found, columns), columns)


def _latest(found: pd.DataFrame, columns: Columns) -> pd.DataFrame:
    """One label per id: the last by the labels' timestamp."""
    found = found.sort_values(columns.timestamp, kind="stable")
    duplicated = found[columns.id].duplicated(keep=False)
    if duplicated.any():
        ids = found.loc[duplicated, columns.id]
        log.warning(
            "labels source has %d labels for %d prediction ids that were labelled more than once "
            "(e.g. id %r); using the latest label of each by %r",
            len(ids), ids.nunique(), ids.iloc[0], columns.timestamp,
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
