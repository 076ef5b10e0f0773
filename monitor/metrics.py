"""driftd's Prometheus metrics: one private registry, names and labels as DESIGN.md fixes them.

Names are a contract with the dashboards, alert rules and users. Labels come only from
bounded sets (model, feature, method, status, outcome, channel, metric, variant, kind,
version of a champion) — never ids or values. Series that stop being true (a feature the
model no longer has, the previous champion) are removed rather than left frozen.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from monitor import __version__
from monitor.results import CheckResult, CheckStatus

log = logging.getLogger(__name__)

CHECK_STATUSES = tuple(s.value for s in CheckStatus)
RETRAIN_OUTCOMES = ("promoted", "rejected", "failed")
ALERT_OUTCOMES = ("sent", "failed", "dropped")
SIZE_VARIANTS = ("original", "compressed")
# SourceError.kind values plus "labels" (the delayed-labels source); anything else is counted as
# "other" so an error path never raises.
SOURCE_ERROR_KINDS = ("unreachable", "read", "corrupt", "schema", "labels", "other")

# A check reads a window and runs Evidently: tens of ms for small windows, minutes for 1M rows.
CHECK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)
# A retrain trains, maybe tunes, compresses and evaluates: seconds to hours.
RETRAIN_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)


@dataclass
class _ModelSeries:
    """Label sets currently exported for one model, so stale ones can be removed."""

    interval_set: bool = False
    reference_version: str | None = None
    features: set[tuple[str, str]] = field(default_factory=set)  # (feature, method)
    prediction_method: str | None = None
    quality_metrics: set[str] = field(default_factory=set)
    quality_drop_metrics: set[str] = field(default_factory=set)
    estimated_metrics: set[str] = field(default_factory=set)
    error_metrics: set[str] = field(default_factory=set)
    multivariate: bool = False
    champion: str | None = None
    channels: set[str] = field(default_factory=set)


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
        self._models: dict[str, _ModelSeries] = {}
        self._define()
        self._build_info.labels(version).set(1)

    def _define(self) -> None:
        r = self.registry
        self._checks = Counter("driftd_checks_total", "Drift checks run, by outcome status.", ["model", "status"], registry=r)
        self._check_duration = Histogram(
            "driftd_check_duration_seconds", "Wall time of one drift check (read, validate, drift, quality).",
            ["model"], buckets=CHECK_BUCKETS, registry=r,
        )
        self._last_check = Gauge(
            "driftd_last_check_timestamp_seconds",
            "Unix time when the last check that reached a drift verdict (status ok or drift) finished.", ["model"], registry=r,
        )
        self._interval = Gauge("driftd_check_interval_seconds", "Scheduled interval between checks of a model.", ["model"], registry=r)
        self._window_rows = Gauge("driftd_window_rows", "Rows in the last checked window (before sampling).", ["model"], registry=r)
        self._feature_score = Gauge(
            "driftd_feature_drift_score", "Drift score of a feature in the last window, by the configured method.",
            ["model", "feature", "method"], registry=r,
        )
        self._feature_drifted = Gauge(
            "driftd_feature_drifted", "1 if the feature drifted in the last window, else 0.", ["model", "feature"], registry=r
        )
        self._drifted_ratio = Gauge(
            "driftd_drifted_features_ratio", "Share of features that drifted in the last window.", ["model"], registry=r
        )
        self._dataset_drifted = Gauge(
            "driftd_dataset_drifted", "1 if the last window showed dataset drift (drift.dataset_rule), else 0.",
            ["model"], registry=r,
        )
        self._feature_p_value = Gauge(
            "driftd_feature_p_value", "Smallest raw p-value of a feature's drift tests (distribution, missing, unseen) in the last window.",
            ["model", "feature"], registry=r,
        )
        self._feature_missing = Gauge(
            "driftd_feature_missing_share", "Share of the last window's rows where the feature is null, NaN or infinite.",
            ["model", "feature"], registry=r,
        )
        self._feature_unseen = Gauge(
            "driftd_feature_unseen_share",
            "Share of the feature's present values in the last window that the reference never holds (categorical or constant features).",
            ["model", "feature"], registry=r,
        )
        self._alert_firing = Gauge(
            "driftd_alert_firing", "1 while the policy fires the alert (e.g. DriftdDatasetDrift) for the model, else 0.",
            ["model", "alert"], registry=r,
        )
        self._prediction_score = Gauge(
            "driftd_prediction_drift_score", "Drift score of the prediction column in the last window.",
            ["model", "method"], registry=r,
        )
        self._quality = Gauge(
            "driftd_model_quality", "Model quality on the labelled rows of the most recent window that had labels.",
            ["model", "metric"], registry=r,
        )
        self._labelled_ratio = Gauge(
            "driftd_labelled_rows_ratio", "Share of rows of the last window whose labels have arrived.", ["model"], registry=r
        )
        self._quality_drop = Gauge(
            "driftd_quality_drop", "Champion's validation score minus current score (positive means worse).",
            ["model", "metric"], registry=r,
        )
        self._quality_drop_threshold = Gauge(
            "driftd_quality_drop_threshold", "Configured quality drop that counts as degraded (policy.quality_drop).",
            ["model"], registry=r,
        )
        self._retrains = Counter("driftd_retrains_total", "Finished retrains, by outcome.", ["model", "outcome"], registry=r)
        self._retrain_duration = Histogram(
            "driftd_retrain_duration_seconds", "Wall time of one retrain-and-recompress pipeline run.",
            ["model"], buckets=RETRAIN_BUCKETS, registry=r,
        )
        self._champion = Gauge(
            "driftd_champion_info", "The registered-model version serving as champion (value is always 1).",
            ["model", "version"], registry=r,
        )
        self._model_size = Gauge(
            "driftd_model_size_bytes", "Serialized size of the champion, original and compressed.", ["model", "variant"], registry=r
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
        self._null_timestamps = Gauge(
            "driftd_null_timestamp_rows", "Rows of the model's source without a timestamp: no window can check them.",
            ["model"], registry=r,
        )
        self._estimated = Gauge(
            "driftd_estimated_quality",
            "Label-free estimate of the model's quality on the last window (CBPE/DLE; labelled rows count as realized).",
            ["model", "metric"], registry=r,
        )
        self._estimated_lower = Gauge(
            "driftd_estimated_quality_lower", "Lower end of the estimate's band (estimation.confidence) on the last window.",
            ["model", "metric"], registry=r,
        )
        self._estimated_upper = Gauge(
            "driftd_estimated_quality_upper", "Upper end of the estimate's band (estimation.confidence) on the last window.",
            ["model", "metric"], registry=r,
        )
        self._estimation_error = Gauge(
            "driftd_estimation_error",
            "Estimated (labels hidden) minus realized quality on the champion's labelled rows of the quality span.",
            ["model", "metric"], registry=r,
        )
        self._multivariate_auroc = Gauge(
            "driftd_multivariate_drift_auroc",
            "Held-out AUROC of a classifier telling the last window's rows from the reference's (0.5: indistinguishable).",
            ["model"], registry=r,
        )
        self._multivariate_p = Gauge(
            "driftd_multivariate_drift_p_value", "One-sided p-value of the multivariate (domain-classifier) test on the last window.",
            ["model"], registry=r,
        )
        self._build_info = Gauge("driftd_build_info", "driftd version (value is always 1).", ["version"], registry=r)

    # --- registration ----------------------------------------------------------------------

    def register_model(self, model: str, interval_s: float | None, channels: Iterable[str] = ()) -> None:
        """Export the model's schedule and zero its counters so rate() and increase() work at once.

        interval_s is None for cron schedules without a fixed interval (no stale-check alert then).
        """
        with self._lock:
            series = self._series(model)
            if interval_s is not None:
                self._interval.labels(model).set(interval_s)
                series.interval_set = True
            elif series.interval_set:
                self._interval.remove(model)
                series.interval_set = False
            for channel in channels:
                series.channels.add(channel)
                for outcome in ALERT_OUTCOMES:
                    self._alerts.labels(model, channel, outcome)

    def forget_model(self, model: str) -> None:
        """Drop every series of a model that left the configuration."""
        with self._lock:
            self._models.pop(model, None)
            for metric in self._per_model_metrics():
                metric.remove_by_labels({"model": model})

    def _series(self, model: str) -> _ModelSeries:
        """The model's bookkeeping; the first call zeroes its bounded-label counters."""
        series = self._models.get(model)
        if series is None:
            series = self._models[model] = _ModelSeries()
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
        return series

    def _per_model_metrics(self) -> list[Counter | Gauge | Histogram]:
        return [
            self._checks, self._check_duration, self._last_check, self._interval, self._window_rows,
            self._feature_score, self._feature_drifted, self._drifted_ratio, self._dataset_drifted,
            self._feature_p_value, self._feature_missing, self._feature_unseen, self._alert_firing,
            self._prediction_score, self._quality, self._labelled_ratio, self._quality_drop,
            self._quality_drop_threshold, self._retrains, self._retrain_duration, self._champion,
            self._model_size, self._source_errors, self._alerts, self._late_rows, self._null_timestamps,
            self._estimated, self._estimated_lower, self._estimated_upper, self._estimation_error,
            self._multivariate_auroc, self._multivariate_p,
        ]  # fmt: skip

    # --- checks ------------------------------------------------------------------------------

    def publish_check(self, result: CheckResult) -> None:
        """Count every check; update the drift gauges only from windows that reached a verdict."""
        model = result.model
        with self._lock:
            series = self._series(model)
            self._checks.labels(model, result.status.value).inc()
            self._check_duration.labels(model).observe(max(result.duration_seconds, 0.0))
            if result.status not in (CheckStatus.OK, CheckStatus.DRIFT):
                return  # an empty or failed window says nothing about drift: keep the last verdict
            if result.reference_version != series.reference_version:
                # A new champion brings its own reference: the old model's quality no longer applies.
                self._drop_quality(model, series)
                series.reference_version = result.reference_version
            self._last_check.labels(model).set(result.started_at.timestamp() + result.duration_seconds)
            self._window_rows.labels(model).set(result.rows)
            self._drifted_ratio.labels(model).set(result.drifted_share)
            self._dataset_drifted.labels(model).set(int(result.dataset_drifted))
            self._publish_features(model, series, result)
            self._publish_prediction(model, series, result)
            self._publish_quality(model, series, result)
            self._publish_estimates(model, series, result)
            self._publish_multivariate(model, series, result)

    def _publish_features(self, model: str, series: _ModelSeries, result: CheckResult) -> None:
        current = {(f.feature, f.method) for f in result.features}
        for feature, method in series.features - current:
            self._feature_score.remove(model, feature, method)
        for feature in {f for f, _ in series.features} - {f for f, _ in current}:
            for gauge in (self._feature_drifted, self._feature_p_value, self._feature_missing, self._feature_unseen):
                _remove(gauge, model, feature)
        for f in result.features:
            self._feature_score.labels(model, f.feature, f.method).set(f.score)
            self._feature_drifted.labels(model, f.feature).set(int(f.drifted))
            self._feature_missing.labels(model, f.feature).set(f.missing_share)
            p_value = f.min_p_value
            if p_value is not None:
                self._feature_p_value.labels(model, f.feature).set(p_value)
            else:
                _remove(self._feature_p_value, model, f.feature)
            if f.unseen_share is not None:
                self._feature_unseen.labels(model, f.feature).set(f.unseen_share)
            else:
                _remove(self._feature_unseen, model, f.feature)
        series.features = current

    def _publish_prediction(self, model: str, series: _ModelSeries, result: CheckResult) -> None:
        method = result.prediction_drift.method if result.prediction_drift else None
        if series.prediction_method is not None and series.prediction_method != method:
            self._prediction_score.remove(model, series.prediction_method)
        if result.prediction_drift is not None:
            self._prediction_score.labels(model, method).set(result.prediction_drift.score)
        series.prediction_method = method

    def _publish_quality(self, model: str, series: _ModelSeries, result: CheckResult) -> None:
        quality = result.quality
        self._labelled_ratio.labels(model).set(quality.labelled_ratio if quality else 0.0)
        if quality is None or not quality.metrics:
            return  # labels arrive late: the last measured quality stays the best estimate
        for metric in series.quality_metrics - set(quality.metrics):
            self._quality.remove(model, metric)
        for metric, value in quality.metrics.items():
            self._quality.labels(model, metric).set(value)
        series.quality_metrics = set(quality.metrics)

    def _publish_estimates(self, model: str, series: _ModelSeries, result: CheckResult) -> None:
        estimated = result.estimated
        current = {e.metric for e in estimated.estimates} if estimated else set()
        for metric in series.estimated_metrics - current:
            for gauge in (self._estimated, self._estimated_lower, self._estimated_upper):
                gauge.remove(model, metric)
        for e in estimated.estimates if estimated else ():
            self._estimated.labels(model, e.metric).set(e.value)
            self._estimated_lower.labels(model, e.metric).set(e.lower)
            self._estimated_upper.labels(model, e.metric).set(e.upper)
        series.estimated_metrics = current
        if result.estimation_errors:  # labels arrive late: the last measured error stands until then
            gaps = {g.metric: g.error for g in result.estimation_errors}
            for metric in series.error_metrics - set(gaps):
                self._estimation_error.remove(model, metric)
            for metric, error in gaps.items():
                self._estimation_error.labels(model, metric).set(error)
            series.error_metrics = set(gaps)

    def _publish_multivariate(self, model: str, series: _ModelSeries, result: CheckResult) -> None:
        found = result.multivariate
        if found is None:
            if series.multivariate:
                self._multivariate_auroc.remove(model)
                self._multivariate_p.remove(model)
            series.multivariate = False
            return
        self._multivariate_auroc.labels(model).set(found.auroc)
        self._multivariate_p.labels(model).set(found.p_value)
        series.multivariate = True

    def _drop_quality(self, model: str, series: _ModelSeries) -> None:
        for metric in series.quality_metrics:
            self._quality.remove(model, metric)
        series.quality_metrics = set()
        for metric in series.quality_drop_metrics:
            self._quality_drop.remove(model, metric)
        series.quality_drop_metrics = set()
        for metric in series.error_metrics:  # the old champion's estimator's error
            self._estimation_error.remove(model, metric)
        series.error_metrics = set()

    # --- everything else ------------------------------------------------------------------------

    def alert_firing(self, model: str, alert: str, firing: bool) -> None:
        """The policy's alert state: the one truth Prometheus' rule of the same name follows."""
        with self._lock:
            self._series(model)
            self._alert_firing.labels(model, alert).set(int(firing))

    def source_error(self, model: str, kind: str) -> None:
        if kind not in SOURCE_ERROR_KINDS:
            log.debug("source error kind %r is not a known label value; counted as 'other'", kind)
            kind = "other"
        with self._lock:
            self._series(model)
            self._source_errors.labels(model, kind).inc()

    def alert(self, model: str, channel: str, outcome: str) -> None:
        _check_label("outcome", outcome, ALERT_OUTCOMES)
        with self._lock:
            series = self._series(model)
            if channel not in series.channels:
                series.channels.add(channel)
                for other in ALERT_OUTCOMES:
                    self._alerts.labels(model, channel, other)
            self._alerts.labels(model, channel, outcome).inc()

    def late_rows(self, model: str, rows: int) -> None:
        with self._lock:
            self._series(model)
            self._late_rows.labels(model).inc(rows)

    def null_timestamp_rows(self, model: str, rows: int) -> None:
        with self._lock:
            self._series(model)
            self._null_timestamps.labels(model).set(rows)

    def retrain_finished(self, model: str, outcome: str, duration_s: float | None) -> None:
        """duration_s None: the retrain's length is unknown (e.g. interrupted by a restart)."""
        _check_label("outcome", outcome, RETRAIN_OUTCOMES)
        with self._lock:
            self._series(model)
            self._retrains.labels(model, outcome).inc()
            if duration_s is not None:
                self._retrain_duration.labels(model).observe(max(duration_s, 0.0))

    def champion(self, model: str, version: str | None) -> None:
        """Exactly one driftd_champion_info series per model (none when it has no champion)."""
        with self._lock:
            series = self._series(model)
            if version == series.champion:
                return
            if series.champion is not None:
                self._champion.remove(model, series.champion)
                # The drop was measured against the old champion's validation score.
                for metric in series.quality_drop_metrics:
                    self._quality_drop.remove(model, metric)
                series.quality_drop_metrics = set()
            if version is not None:
                self._champion.labels(model, str(version)).set(1)
            series.champion = version

    def model_size(self, model: str, variant: str, size_bytes: int) -> None:
        _check_label("variant", variant, SIZE_VARIANTS)
        with self._lock:
            self._series(model)
            self._model_size.labels(model, variant).set(size_bytes)

    def quality_drop(self, model: str, metric: str, drop: float, threshold: float) -> None:
        """drop = champion's validation score - current score on labelled rows (positive = worse)."""
        with self._lock:
            series = self._series(model)
            self._quality_drop.labels(model, metric).set(drop)
            self._quality_drop_threshold.labels(model).set(threshold)
            series.quality_drop_metrics.add(metric)

    def render(self) -> bytes:
        """The Prometheus text exposition format (0.0.4) of every metric."""
        return generate_latest(self.registry)


def _remove(gauge: Gauge, *labels: str) -> None:
    try:
        gauge.remove(*labels)
    except KeyError:  # never exported for these labels
        pass


def _check_label(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
