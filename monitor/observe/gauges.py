"""The "last value" gauges: one immutable ModelSnapshot per model, read at scrape time.

Publishing replaces a model's snapshot whole, so a feature the model no longer has, the
previous champion or a forgotten model simply stops being emitted: nothing removes stale
series by hand. Names, help texts and labels are DESIGN.md's contract (see monitor.observe.metrics).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from monitor.core.results import CheckResult, FeatureDrift

Pairs = tuple[tuple[str, float], ...]  # an immutable label value -> value map, in insertion order


@dataclass(frozen=True)
class FeatureValues:
    """One feature's gauges from the last window that reached a verdict."""

    feature: str
    method: str
    score: float
    drifted: bool
    missing_share: float
    p_value: float | None  # smallest raw p-value of its tests; None: no test gives one
    unseen_share: float | None  # None: numerical feature

    @classmethod
    def of(cls, f: FeatureDrift) -> FeatureValues:
        return cls(f.feature, f.method, f.score, f.drifted, f.missing_share, f.min_p_value, f.unseen_share)


@dataclass(frozen=True)
class EstimateValues:
    metric: str
    value: float
    lower: float
    upper: float


@dataclass(frozen=True)
class ModelSnapshot:
    """Every "last value" a model exports; replaced whole, never edited. None/empty: not exported."""

    interval_s: float | None = None  # None for cron schedules: no stale-check alert then
    reference_version: str | None = None
    last_check_at: float | None = None
    window_rows: int | None = None
    drifted_ratio: float | None = None
    dataset_drifted: bool | None = None
    features: tuple[FeatureValues, ...] = ()
    prediction: tuple[str, float] | None = None  # (method, score)
    labelled_ratio: float | None = None
    quality: Pairs = ()
    estimates: tuple[EstimateValues, ...] = ()
    estimation_errors: Pairs = ()
    multivariate: tuple[float, float] | None = None  # (auroc, p-value)
    alerts_firing: Pairs = ()
    champion: str | None = None
    quality_drops: Pairs = ()
    quality_drop_threshold: float | None = None
    model_sizes: Pairs = ()
    null_timestamp_rows: int | None = None

    def after_check(self, result: CheckResult) -> ModelSnapshot:
        """The snapshot once a window reached a verdict (status ok or drift)."""
        snap = self
        if result.reference_version != snap.reference_version:
            # A new champion brings its own reference: the old model's quality no longer applies.
            snap = replace(snap, reference_version=result.reference_version, quality=(), quality_drops=(), estimation_errors=())
        quality, found = result.quality, result.multivariate
        estimates = result.estimated.estimates if result.estimated else ()
        return replace(
            snap,
            last_check_at=result.started_at.timestamp() + result.duration_seconds,
            window_rows=result.rows,
            drifted_ratio=result.drifted_share,
            dataset_drifted=result.dataset_drifted,
            features=tuple(FeatureValues.of(f) for f in result.features),
            prediction=(result.prediction_drift.method, result.prediction_drift.score) if result.prediction_drift else None,
            labelled_ratio=quality.labelled_ratio if quality else 0.0,
            # labels arrive late: the last measured quality and estimation error stand until then
            quality=tuple(quality.metrics.items()) if quality and quality.metrics else snap.quality,
            estimation_errors=tuple((g.metric, g.error) for g in result.estimation_errors) or snap.estimation_errors,
            estimates=tuple(EstimateValues(e.metric, e.value, e.lower, e.upper) for e in estimates),
            multivariate=(found.auroc, found.p_value) if found else None,
        )


Samples = Iterable[tuple[tuple[str, ...], float]]  # (label values after "model", value)


@dataclass(frozen=True)
class _SnapshotGauge:
    name: str
    help: str
    labels: tuple[str, ...]  # after "model"
    samples: Callable[[ModelSnapshot], Samples]


def _one(value: float | None) -> Samples:
    return [((), float(value))] if value is not None else []


def _each(pairs: Pairs) -> Samples:
    return [((key,), float(value)) for key, value in pairs]


GAUGES = (
    _SnapshotGauge(
        "driftd_last_check_timestamp_seconds",
        "Unix time when the last check that reached a drift verdict (status ok or drift) finished.", (),
        lambda s: _one(s.last_check_at),
    ),
    _SnapshotGauge("driftd_check_interval_seconds", "Scheduled interval between checks of a model.", (), lambda s: _one(s.interval_s)),
    _SnapshotGauge("driftd_window_rows", "Rows in the last checked window (before sampling).", (), lambda s: _one(s.window_rows)),
    _SnapshotGauge(
        "driftd_feature_drift_score", "Drift score of a feature in the last window, by the configured method.", ("feature", "method"),
        lambda s: [((f.feature, f.method), f.score) for f in s.features],
    ),
    _SnapshotGauge(
        "driftd_feature_drifted", "1 if the feature drifted in the last window, else 0.", ("feature",),
        lambda s: [((f.feature,), float(f.drifted)) for f in s.features],
    ),
    _SnapshotGauge("driftd_drifted_features_ratio", "Share of features that drifted in the last window.", (), lambda s: _one(s.drifted_ratio)),
    _SnapshotGauge(
        "driftd_dataset_drifted", "1 if the last window showed dataset drift (drift.dataset_rule), else 0.", (),
        lambda s: _one(s.dataset_drifted),
    ),
    _SnapshotGauge(
        "driftd_feature_p_value",
        "Smallest raw p-value of a feature's drift tests (distribution, missing, unseen) in the last window.", ("feature",),
        lambda s: [((f.feature,), f.p_value) for f in s.features if f.p_value is not None],
    ),
    _SnapshotGauge(
        "driftd_feature_missing_share", "Share of the last window's rows where the feature is null, NaN or infinite.", ("feature",),
        lambda s: [((f.feature,), f.missing_share) for f in s.features],
    ),
    _SnapshotGauge(
        "driftd_feature_unseen_share",
        "Share of the feature's present values in the last window that the reference never holds (categorical or constant features).",
        ("feature",), lambda s: [((f.feature,), f.unseen_share) for f in s.features if f.unseen_share is not None],
    ),
    _SnapshotGauge(
        "driftd_alert_firing", "1 while the policy fires the alert (e.g. DriftdDatasetDrift) for the model, else 0.", ("alert",),
        lambda s: _each(s.alerts_firing),
    ),
    _SnapshotGauge(
        "driftd_prediction_drift_score", "Drift score of the prediction column in the last window.", ("method",),
        lambda s: [((s.prediction[0],), s.prediction[1])] if s.prediction else [],
    ),
    _SnapshotGauge(
        "driftd_model_quality", "Model quality on the labelled rows of the most recent window that had labels.", ("metric",),
        lambda s: _each(s.quality),
    ),
    _SnapshotGauge(
        "driftd_labelled_rows_ratio", "Share of rows of the last window whose labels have arrived.", (), lambda s: _one(s.labelled_ratio)
    ),
    _SnapshotGauge(
        "driftd_quality_drop", "Champion's validation score minus current score (positive means worse).", ("metric",),
        lambda s: _each(s.quality_drops),
    ),
    _SnapshotGauge(
        "driftd_quality_drop_threshold", "Configured quality drop that counts as degraded (policy.quality_drop).", (),
        lambda s: _one(s.quality_drop_threshold),
    ),
    _SnapshotGauge(
        "driftd_champion_info", "The registered-model version serving as champion (value is always 1).", ("version",),
        lambda s: [((str(s.champion),), 1.0)] if s.champion is not None else [],
    ),
    _SnapshotGauge(
        "driftd_model_size_bytes", "Serialized size of the champion, original and compressed.", ("variant",),
        lambda s: _each(s.model_sizes),
    ),
    _SnapshotGauge(
        "driftd_null_timestamp_rows", "Rows of the model's source without a timestamp: no window can check them.", (),
        lambda s: _one(s.null_timestamp_rows),
    ),
    _SnapshotGauge(
        "driftd_estimated_quality",
        "Label-free estimate of the model's quality on the last window (CBPE/DLE; labelled rows count as realized).", ("metric",),
        lambda s: [((e.metric,), e.value) for e in s.estimates],
    ),
    _SnapshotGauge(
        "driftd_estimated_quality_lower", "Lower end of the estimate's band (estimation.confidence) on the last window.", ("metric",),
        lambda s: [((e.metric,), e.lower) for e in s.estimates],
    ),
    _SnapshotGauge(
        "driftd_estimated_quality_upper", "Upper end of the estimate's band (estimation.confidence) on the last window.", ("metric",),
        lambda s: [((e.metric,), e.upper) for e in s.estimates],
    ),
    _SnapshotGauge(
        "driftd_estimation_error",
        "Estimated (labels hidden) minus realized quality on the champion's labelled rows of the quality span.", ("metric",),
        lambda s: _each(s.estimation_errors),
    ),
    _SnapshotGauge(
        "driftd_multivariate_drift_auroc",
        "Held-out AUROC of a classifier telling the last window's rows from the reference's (0.5: indistinguishable).", (),
        lambda s: _one(s.multivariate[0] if s.multivariate else None),
    ),
    _SnapshotGauge(
        "driftd_multivariate_drift_p_value", "One-sided p-value of the multivariate (domain-classifier) test on the last window.", (),
        lambda s: _one(s.multivariate[1] if s.multivariate else None),
    ),
)


class SnapshotCollector(Collector):
    """Yields the "last value" gauges from the models' current snapshots at scrape time."""

    def __init__(self, snapshots: Callable[[], dict[str, ModelSnapshot]]) -> None:
        self._snapshots = snapshots

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return self._families({})

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return self._families(self._snapshots())

    @staticmethod
    def _families(snapshots: dict[str, ModelSnapshot]) -> Iterator[GaugeMetricFamily]:
        for gauge in GAUGES:
            family = GaugeMetricFamily(gauge.name, gauge.help, labels=("model", *gauge.labels))
            for model, snapshot in snapshots.items():
                for labels, value in gauge.samples(snapshot):
                    family.add_metric((model, *labels), value)
            yield family


def put(pairs: Pairs, key: str, value: float) -> Pairs:
    """pairs with key set to value (replaced in place if present, appended otherwise)."""
    if any(k == key for k, _ in pairs):
        return tuple((k, value if k == key else v) for k, v in pairs)
    return (*pairs, (key, value))
