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
from collections.abc import Iterable
from dataclasses import replace

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector, disable_created_metrics, generate_latest

from monitor import __version__
from monitor.core.results import CheckResult, CheckStatus
from monitor.core.statuses import AlertOutcome, RetrainOutcome, values
from monitor.observe.gauges import ModelSnapshot, SnapshotCollector, put

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
        self._leader = Gauge(
            "driftd_leader", "1 on the replica that leads (schedules checks, writes the state store), 0 on a standby.",
            ["instance"], registry=r,
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
            self._snapshots[model] = replace(snapshot, alerts_firing=put(snapshot.alerts_firing, alert, int(firing)))

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
            self._snapshots[model] = replace(snapshot, model_sizes=put(snapshot.model_sizes, variant, size_bytes))

    def quality_drop(self, model: str, metric: str, drop: float, threshold: float) -> None:
        """drop = champion's validation score - current score on labelled rows (positive = worse)."""
        with self._lock:
            snapshot = self._snapshot(model)
            self._snapshots[model] = replace(
                snapshot, quality_drops=put(snapshot.quality_drops, metric, drop), quality_drop_threshold=threshold
            )

    def leader(self, instance: str, leading: bool) -> None:
        """This replica's role (monitor.state.lease); one series per process."""
        self._leader.labels(instance).set(int(leading))

    def render(self) -> bytes:
        """The Prometheus text exposition format (0.0.4) of every metric."""
        return generate_latest(self.registry)


def _check_label(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
