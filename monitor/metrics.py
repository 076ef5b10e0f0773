"""driftd's Prometheus metrics: one private registry, names and labels as DESIGN.md fixes them.

Names are a contract with the dashboards, alert rules and users. Labels come only from
bounded sets (model, feature, method, status, outcome, channel, metric, variant, kind,
version of a champion) — never ids or values.

Two kinds of metric live here. What accumulates (checks, durations, retrains, alerts, source
errors, late rows) stays a prometheus_client Counter/Histogram. What shows "the last value"
is read at scrape time from one immutable ModelSnapshot per model: publishing a check replaces
the snapshot whole, so a feature the model no longer has, the previous champion or a removed
model simply stops being emitted — nothing removes stale series by hand.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from monitor import __version__
from monitor.results import CheckResult, CheckStatus, FeatureDrift
from monitor.statuses import AlertOutcome, RetrainOutcome, values

log = logging.getLogger(__name__)

CHECK_STATUSES = tuple(s.value for s in CheckStatus)
RETRAIN_OUTCOMES = values(RetrainOutcome)
ALERT_OUTCOMES = values(AlertOutcome)
SIZE_VARIANTS = ("original", "compressed")
# SourceError.kind values plus "labels" (the delayed-labels source); anything else is counted as
# "other" so an error path never raises.
SOURCE_ERROR_KINDS = ("unreachable", "read", "corrupt", "schema", "labels", "other")

# A check reads a window and runs Evidently: tens of ms for small windows, minutes for 1M rows.
CHECK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)
# A retrain trains, maybe tunes, compresses and evaluates: seconds to hours.
RETRAIN_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)

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


class Metrics:
    """All driftd metrics in their own CollectorRegistry; thread-safe."""

    def __init__(self, *, process_metrics: bool = True, version: str = __version__) -> None:
        # `_created` samples double every counter/histogram and no dashboard uses them.
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        if process_metrics:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        self._lock = threading.Lock()
        self._snapshots: dict[str, ModelSnapshot] = {}
        self._channels: dict[str, set[str]] = {}  # alert channels whose counters are zeroed
        self._define()
        self.registry.register(SnapshotCollector(self.snapshots))
        Gauge("driftd_build_info", "driftd version (value is always 1).", ["version"], registry=self.registry).labels(version).set(1)

    def _define(self) -> None:
        r = self.registry
        self._checks = Counter("driftd_checks_total", "Drift checks run, by outcome status.", ["model", "status"], registry=r)
        self._check_duration = Histogram(
            "driftd_check_duration_seconds", "Wall time of one drift check (read, validate, drift, quality).",
            ["model"], buckets=CHECK_BUCKETS, registry=r,
        )
        self._retrains = Counter("driftd_retrains_total", "Finished retrains, by outcome.", ["model", "outcome"], registry=r)
        self._retrain_duration = Histogram(
            "driftd_retrain_duration_seconds", "Wall time of one retrain-and-recompress pipeline run.",
            ["model"], buckets=RETRAIN_BUCKETS, registry=r,
        )
        self._source_errors = Counter(
            "driftd_source_errors_total", "Failures reading a model's prediction logs, by kind.", ["model", "kind"], registry=r
        )
        self._alerts = Counter(
            "driftd_alerts_total",
            "Alert deliveries by channel and outcome: sent; failed (a round of bounded retries failed); "
            "dropped (a notification given up).", ["model", "channel", "outcome"], registry=r
        )
        self._late_rows = Counter(
            "driftd_late_rows_total",
            "Rows found behind the watermark (committed after their window was read) and checked with a later window.",
            ["model"], registry=r,
        )
        self._accumulating: tuple[Counter | Histogram, ...] = (
            self._checks, self._check_duration, self._retrains, self._retrain_duration,
            self._source_errors, self._alerts, self._late_rows,
        )  # fmt: skip

    def snapshots(self) -> dict[str, ModelSnapshot]:
        """The models' current snapshots (a copy: the snapshots themselves are immutable)."""
        with self._lock:
            return dict(self._snapshots)

    # --- registration ----------------------------------------------------------------------

    def register_model(self, model: str, interval_s: float | None, channels: Iterable[str] = ()) -> None:
        """Export the model's schedule and zero its counters so rate() and increase() work at once.

        interval_s is None for cron schedules without a fixed interval (no stale-check alert then).
        """
        with self._lock:
            self._snapshots[model] = replace(self._snapshot(model), interval_s=interval_s)
            for channel in channels:
                self._zero_channel(model, channel)

    def forget_model(self, model: str) -> None:
        """Drop every series of a model that left the configuration."""
        with self._lock:
            self._snapshots.pop(model, None)  # its gauges go with the snapshot
            self._channels.pop(model, None)
            for metric in self._accumulating:
                metric.remove_by_labels({"model": model})

    def _snapshot(self, model: str) -> ModelSnapshot:
        """The model's snapshot; the first call zeroes its bounded-label counters."""
        snapshot = self._snapshots.get(model)
        if snapshot is None:
            snapshot = self._snapshots[model] = ModelSnapshot()
            self._channels[model] = set()
            for status in CHECK_STATUSES:
                self._checks.labels(model, status)
            for outcome in RETRAIN_OUTCOMES:
                self._retrains.labels(model, outcome)
            for kind in SOURCE_ERROR_KINDS:
                self._source_errors.labels(model, kind)
            self._late_rows.labels(model)
            # Empty histograms too: increase() over the first retrain needs a zero sample before it.
            self._retrain_duration.labels(model)
            self._check_duration.labels(model)
        return snapshot

    def _zero_channel(self, model: str, channel: str) -> None:
        if channel not in self._channels[model]:
            self._channels[model].add(channel)
            for outcome in ALERT_OUTCOMES:
                self._alerts.labels(model, channel, outcome)

    # --- checks ------------------------------------------------------------------------------

    def publish_check(self, result: CheckResult) -> None:
        """Count every check; update the drift gauges only from windows that reached a verdict."""
        model = result.model
        with self._lock:
            snapshot = self._snapshot(model)
            self._checks.labels(model, result.status.value).inc()
            self._check_duration.labels(model).observe(max(result.duration_seconds, 0.0))
            if result.status in (CheckStatus.OK, CheckStatus.DRIFT):
                self._snapshots[model] = snapshot.after_check(result)
            # else: an empty or failed window says nothing about drift: keep the last verdict

    # --- everything else ------------------------------------------------------------------------

    def alert_firing(self, model: str, alert: str, firing: bool) -> None:
        """The policy's alert state: the one truth Prometheus' rule of the same name follows."""
        with self._lock:
            snapshot = self._snapshot(model)
            self._snapshots[model] = replace(snapshot, alerts_firing=_put(snapshot.alerts_firing, alert, int(firing)))

    def source_error(self, model: str, kind: str) -> None:
        if kind not in SOURCE_ERROR_KINDS:
            log.debug("source error kind %r is not a known label value; counted as 'other'", kind)
            kind = "other"
        with self._lock:
            self._snapshot(model)
            self._source_errors.labels(model, kind).inc()

    def alert(self, model: str, channel: str, outcome: str) -> None:
        _check_label("outcome", outcome, ALERT_OUTCOMES)
        with self._lock:
            self._snapshot(model)
            self._zero_channel(model, channel)
            self._alerts.labels(model, channel, outcome).inc()

    def late_rows(self, model: str, rows: int) -> None:
        with self._lock:
            self._snapshot(model)
            self._late_rows.labels(model).inc(rows)

    def null_timestamp_rows(self, model: str, rows: int) -> None:
        with self._lock:
            self._snapshots[model] = replace(self._snapshot(model), null_timestamp_rows=rows)

    def retrain_finished(self, model: str, outcome: str, duration_s: float | None) -> None:
        """duration_s None: the retrain's length is unknown (e.g. interrupted by a restart)."""
        _check_label("outcome", outcome, RETRAIN_OUTCOMES)
        with self._lock:
            self._snapshot(model)
            self._retrains.labels(model, outcome).inc()
            if duration_s is not None:
                self._retrain_duration.labels(model).observe(max(duration_s, 0.0))

    def champion(self, model: str, version: str | None) -> None:
        """Exactly one driftd_champion_info series per model (none when it has no champion)."""
        with self._lock:
            snapshot = self._snapshot(model)
            if version == snapshot.champion:
                return
            # The drop was measured against the old champion's validation score.
            drops = () if snapshot.champion is not None else snapshot.quality_drops
            self._snapshots[model] = replace(snapshot, champion=version, quality_drops=drops)

    def model_size(self, model: str, variant: str, size_bytes: int) -> None:
        _check_label("variant", variant, SIZE_VARIANTS)
        with self._lock:
            snapshot = self._snapshot(model)
            self._snapshots[model] = replace(snapshot, model_sizes=_put(snapshot.model_sizes, variant, size_bytes))

    def quality_drop(self, model: str, metric: str, drop: float, threshold: float) -> None:
        """drop = champion's validation score - current score on labelled rows (positive = worse)."""
        with self._lock:
            snapshot = self._snapshot(model)
            self._snapshots[model] = replace(
                snapshot, quality_drops=_put(snapshot.quality_drops, metric, drop), quality_drop_threshold=threshold
            )

    def render(self) -> bytes:
        """The Prometheus text exposition format (0.0.4) of every metric."""
        return generate_latest(self.registry)


def _put(pairs: Pairs, key: str, value: float) -> Pairs:
    """pairs with key set to value (replaced in place if present, appended otherwise)."""
    if any(k == key for k, _ in pairs):
        return tuple((k, value if k == key else v) for k, v in pairs)
    return (*pairs, (key, value))


def _check_label(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
