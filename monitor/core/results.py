"""Typed results that cross module boundaries: label-free estimates, watermarks, windows and check results."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from monitor.core.statuses import CheckStatus as CheckStatus  # re-exported: results carry it

# --- label-free quality estimates (computed by monitor.check.estimation) -------------------


@dataclass(frozen=True)
class Estimate:
    """One metric estimated on a window: the value and the band the realized value should fall in.

    `lower`/`upper` bound the realized metric at `confidence` for this window's size, assuming
    the estimator's assumptions hold (they cover label noise, not a broken assumption).
    """

    metric: str
    value: float
    lower: float
    upper: float
    confidence: float
    rows: int  # rows the estimate is over
    labelled_rows: int  # of which the label was known and used as is

    @property
    def width(self) -> float:
        return self.upper - self.lower


@dataclass(frozen=True)
class EstimatedQuality:
    method: str  # cbpe | dle
    estimates: tuple[Estimate, ...]
    rows: int
    skipped_rows: int  # rows without a usable prediction/score, left out with a count

    def get(self, metric: str) -> Estimate:
        for estimate in self.estimates:
            if estimate.metric == metric:
                return estimate
        raise KeyError(f"{self.method} did not estimate {metric!r}; it estimated {[e.metric for e in self.estimates]}")

    def values(self) -> dict[str, float]:
        return {e.metric: e.value for e in self.estimates}


@dataclass(frozen=True)
class EstimationGap:
    """Estimated minus realized on the same labelled rows (the estimate computed without labels)."""

    metric: str
    estimated: float
    realized: float
    lower: float
    upper: float
    rows: int

    @property
    def error(self) -> float:
        return self.estimated - self.realized

    @property
    def within_band(self) -> bool:
        return self.lower <= self.realized <= self.upper


# --- windows and checks ------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Watermark:
    """The last row a window consumed: rows strictly after (timestamp, id) come next.

    The id breaks ties, so many rows sharing one timestamp are split exactly across windows.
    """

    timestamp: datetime  # timezone-aware UTC
    id: str | int  # the id column's own type, so SQL compares it natively

    def to_json(self) -> dict[str, str | int]:
        return {"timestamp": self.timestamp.isoformat(), "id": self.id}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Watermark:
        return cls(datetime.fromisoformat(data["timestamp"]), data["id"])


@dataclass(frozen=True)
class FeatureDrift:
    """One column's tests in one window (monitor.check.drift). p-values are raw; `drifted` is the
    verdict after the model's multiple-testing correction and effect floors."""

    feature: str
    kind: str  # numerical | categorical
    method: str
    score: float  # Evidently's score for the method (normed Wasserstein, Jensen-Shannon, ...)
    threshold: float | None  # calibrated methods: effect floor (None: none); others: fixed threshold
    drifted: bool
    p_value: float | None = None  # distribution test (novelty for a constant reference); None: not calibrated
    missing_share: float = 0.0  # null/NaN/inf share of the window's rows
    missing_p_value: float | None = None  # one-sided: more missing than the reference
    unseen_share: float | None = None  # share of present values the reference never holds (categorical / constant)
    unseen_p_value: float | None = None
    drifted_by: tuple[str, ...] = ()  # which tests drifted: distribution, novelty, missing, unseen, threshold

    @property
    def min_p_value(self) -> float | None:
        """The smallest of the column's p-values (None when none was computed)."""
        values = [p for p in (self.p_value, self.missing_p_value, self.unseen_p_value) if p is not None]
        return min(values) if values else None


@dataclass(frozen=True)
class VersionQuality:
    """Quality of the labelled rows one (non-champion) model version served."""

    version: str
    labelled_rows: int
    metrics: dict[str, float]
    validation_score: float | None = None  # that version's own `driftd.validation_score`, when known


@dataclass(frozen=True)
class Quality:
    labelled_rows: int
    labelled_ratio: float
    metrics: dict[str, float]  # metric name -> value on the labelled rows of the window
    # The champion version these rows were served by; None when rows were not attributed
    # (no champion, e.g. a reference file). Rows other versions served are in `others`.
    version: str | None = None
    others: tuple[VersionQuality, ...] = ()


@dataclass(frozen=True)
class Contribution:
    feature: str
    auroc_drop: float  # held-out AUROC lost when the feature is shuffled


@dataclass(frozen=True)
class MultivariateSignal:
    """The domain-classifier test of one window (monitor.check.multivariate): its own p-value, so a
    multiple-testing family over the window's tests can take it as one more hypothesis."""

    auroc: float
    p_value: float
    alpha: float
    drifted: bool  # p_value < alpha and auroc >= the configured floor
    window_rows: int
    reference_rows: int
    learner: str
    contributions: tuple[Contribution, ...] = ()  # strongest first; only when it rejected
    seconds: float = 0.0

    @property
    def strongest(self) -> list[str]:
        return [c.feature for c in self.contributions[:3]]


@dataclass(frozen=True)
class CheckResult:
    check_id: str
    model: str
    status: CheckStatus
    started_at: datetime
    window_start: datetime | None
    window_end: datetime
    rows: int = 0  # late rows included
    rows_used: int = 0
    sampled: bool = False
    features: tuple[FeatureDrift, ...] = ()
    drifted_share: float = 0.0
    dataset_drifted: bool = False
    prediction_drift: FeatureDrift | None = None
    quality: Quality | None = None
    reference_version: str | None = None
    watermark: Watermark | None = None  # the watermark after this window
    duration_seconds: float = 0.0
    message: str | None = None  # why the window is insufficient_data or error, or an input problem, for a user
    details: dict[str, Any] = field(default_factory=dict)
    late_rows: int = 0  # rows committed after the watermark passed them, checked with this window
    null_timestamps: int = 0  # rows of the source without a timestamp (never in any window)
    # Label-free estimate of the window's quality (its labelled rows count as realized).
    estimated: EstimatedQuality | None = None
    # Estimated (labels hidden) minus realized on the labelled rows of the quality span.
    estimation_errors: tuple[EstimationGap, ...] = ()
    multivariate: MultivariateSignal | None = None

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["status"] = self.status.value
        for key in ("started_at", "window_start", "window_end"):
            value = getattr(self, key)
            data[key] = value.isoformat() if value else None
        data["watermark"] = self.watermark.to_json() if self.watermark else None
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)
