"""Which model version served each row, so that quality is judged against the right model.

After a promotion the quality span still holds rows the previous champion served. Scored
against the new champion's validation score they make a good new model look bad (after the
demo's promotion the alert never resolved: `accuracy 0.6369 vs champion 0.7626`, the 0.6369
being the old model's rows). So the labelled rows of a quality span are attributed:

- with `columns.model_version`: to the version the serving layer logged on each row. Exact,
  also for serving layers that follow an alias late, canaries and rollbacks. Log the
  registered-model version number (`2`; `2.0` and `"2"` read the same);
- without it: by time. Rows logged after the champion's promotion are its own; earlier rows
  belong to the version it replaced. The promotion time is the champion's `driftd.promoted_at`
  version tag, written by every promotion and rollback driftd makes: it lives with the alias in
  the registry, so every replica and the CLI read the same time and it survives restarts. When
  this process saw the champion replace another version, the later of that sighting (on the
  daemon's clock) and the tag counts: an alias moved outside driftd leaves a stale tag or none,
  and a sighting is never before the real switch, so old rows never count against the new
  champion (a model already champion when driftd started, with no tag, served it all).

Each version's rows are scored on their own. Only the champion's rows are compared with the
champion's validation score; other versions' rows are reported beside their own score.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import pandas as pd

from monitor.core.config import ModelConfig
from monitor.core.results import Quality, VersionQuality

PREVIOUS = "previous"  # rows served before the promotion, when the replaced version is unknown
UNKNOWN = "unknown"  # rows whose version column is empty


@dataclass(frozen=True)
class Attribution:
    champion: str  # the version whose quality the policy judges
    since: datetime | None = None  # without a version column: rows after this are the champion's
    previous: str | None = None  # the version that served before `since`
    score_of: Callable[[str], float | None] | None = None  # a version's own validation score


def version_label(value: object) -> str:
    """A logged version as the registry names it: 2, 2.0 and "2" are all "2"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return UNKNOWN
    if isinstance(value, (int, float, np.integer, np.floating)) and float(value).is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or UNKNOWN


def split_by_version(frame: pd.DataFrame, model: ModelConfig, attribution: Attribution) -> dict[str, pd.DataFrame]:
    """The rows of `frame`, grouped by the version that served them."""
    column = model.columns.model_version
    if column:
        if column not in frame.columns:
            raise ValueError(f"the prediction logs lack the columns.model_version column {column!r}; log it or remove the setting")
        labels = frame[column].map(version_label)
        return {version: rows for version, rows in frame.groupby(labels, sort=True)}
    if attribution.since is None:
        return {attribution.champion: frame}
    after = frame[model.columns.timestamp] > pd.Timestamp(attribution.since)
    groups = {attribution.champion: frame[after], attribution.previous or PREVIOUS: frame[~after]}
    return {version: rows for version, rows in groups.items() if len(rows)}


def attributed_quality(frame: pd.DataFrame, model: ModelConfig, attribution: Attribution | None) -> Quality | None:
    """The champion's quality on the rows it served, other versions' beside it; without an
    attribution (no champion: a reference file) every row counts."""
    from monitor.check.quality import compute_quality

    if attribution is None:
        return compute_quality(frame, model)
    groups = split_by_version(frame, model, attribution)
    own = groups.pop(attribution.champion, None)
    measured = compute_quality(own, model) if own is not None else None
    others = []
    for version, rows in groups.items():
        quality = compute_quality(rows, model)
        if quality is not None:
            score = attribution.score_of(version) if attribution.score_of else None
            others.append(VersionQuality(version, quality.labelled_rows, quality.metrics, score))
    if measured is None and not others:
        return None
    return replace(measured or Quality(0, 0.0, {}), version=attribution.champion, others=tuple(others))
