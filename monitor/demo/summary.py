"""What the demo proved, read back from the state store and MLflow rather than remembered."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from monitor.core.config import Config, ModelConfig
from monitor.state.store import StateStore


@dataclass(frozen=True)
class Summary:
    shift_at: datetime | None
    windows_checked: int  # countable windows before the shift
    drift_windows_before_shift: int
    first_drift_at: datetime | None
    detection_delay_windows: int | None  # countable windows after the shift until the first drift
    alert: dict[str, Any] | None
    alert_resolved_at: datetime | None  # the first resolution after the promotion
    promoted_at: datetime | None
    retrain_run_id: str | None
    retrain_outcome: str | None
    retrain_reason: str | None
    baseline_version: str
    champion_version: str | None
    compression: str | None
    metric: str | None
    champion_score: float | None  # the old champion, on the recent (post-shift) holdout
    challenger_score: float | None
    size_original: float | None
    size_compressed: float | None
    p50_ms_original: float | None
    p50_ms_compressed: float | None

    @property
    def promoted(self) -> bool:
        return self.retrain_outcome == "promoted" and self.champion_version != self.baseline_version

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "promoted": self.promoted}

    def render(self, directory: Path) -> str:
        lines = [
            f"  shift injected at        {_t(self.shift_at)}, after {self.windows_checked} windows",
            f"  drift detected at        {_t(self.first_drift_at)}"
            + (f", {self.detection_delay_windows} window(s) after the shift" if self.detection_delay_windows else ""),
            f"  false alarms before it   {self.drift_windows_before_shift} drifted window(s)",
            f"  alert delivered          {self._alert_line()}",
            f"  alert resolved           {self._resolved_line()}",
            f"  retrain run              {self.retrain_run_id or '-'} -> {self.retrain_outcome or 'none'}",
            f"  {self.metric or 'quality'} on post-shift data  champion {_n(self.champion_score)}  ->  challenger {_n(self.challenger_score)}",
            f"  model size               {_bytes(self.size_original)} -> {_bytes(self.size_compressed)} ({self.compression or 'uncompressed'})",
            f"  single-row latency p50   {_n(self.p50_ms_original, 3)} ms -> {_n(self.p50_ms_compressed, 3)} ms",
            f"  champion                 version {self.baseline_version} -> version {self.champion_version}"
            + ("  (PROMOTED)" if self.promoted else "  (not promoted)"),
            "",
            "Look around:",
            f"  MLflow UI:  {Path('.venv/bin/mlflow')} ui --backend-store-uri sqlite:///{directory / 'mlflow.db'} --port 5000",
            f"  state:      .venv/bin/driftd status -c {directory / 'driftd.yaml'}",
            f"  alerts:     {directory / 'alerts.jsonl'}",
            "  Grafana + Prometheus + Alertmanager: docker compose -f deploy/docker-compose.yml up -d  (README: Run it in production)",
        ]
        return "\n".join(lines)

    def _resolved_line(self) -> str:
        if self.alert_resolved_at is None:
            return "no (still firing)" if self.alert else "-"
        after = f", {(self.alert_resolved_at - self.promoted_at).total_seconds():.0f} s after the promotion" if self.promoted_at else ""
        return f"{_t(self.alert_resolved_at)}{after} (quality judged on the new champion's own rows)"

    def _alert_line(self) -> str:
        if not self.alert:
            return "none"
        return f"{self.alert.get('alert')} {self.alert.get('status')}: {self.alert.get('summary')}"


def build_summary(config: Config, model: ModelConfig, store: StateStore, shift_at: datetime | None,
                  alerts: list[dict[str, Any]], baseline) -> Summary:
    checks = [c for c in reversed(store.recent_checks(model.name, 10_000)) if c.status.value in ("ok", "drift")]
    before = [c for c in checks if shift_at is None or c.window_end <= shift_at]
    after = [c for c in checks if shift_at is not None and c.window_end > shift_at]
    first = next((i for i, c in enumerate(after) if c.dataset_drifted), None)
    jobs = store.retrain_jobs(model.name)
    job = jobs[0] if jobs else None
    run = _run_metrics(config, job.run_id) if job and job.run_id else {}
    champion_version, compression = _champion(config, model)
    promoted_at = job.finished_at if job and job.outcome == "promoted" else None
    resolved = [datetime.fromisoformat(a["endsAt"].replace("Z", "+00:00")) for a in alerts if a.get("status") == "resolved" and a.get("endsAt")]
    return Summary(
        shift_at=shift_at,
        windows_checked=len(before),
        drift_windows_before_shift=sum(c.dataset_drifted for c in before),
        first_drift_at=after[first].window_end if first is not None else None,
        detection_delay_windows=first + 1 if first is not None else None,
        alert=next((a for a in alerts if a.get("status") == "firing"), None),
        alert_resolved_at=min((at for at in resolved if promoted_at and at > promoted_at), default=None),
        promoted_at=promoted_at,
        retrain_run_id=job.run_id if job else None,
        retrain_outcome=job.outcome if job else None,
        retrain_reason=job.reason if job else None,
        baseline_version=baseline.version,
        champion_version=champion_version,
        compression=compression,
        metric=run.get("metric"),
        champion_score=run.get("champion_score"),
        challenger_score=run.get("challenger_score"),
        size_original=run.get("size_bytes.original"),
        size_compressed=run.get("size_bytes.compressed"),
        p50_ms_original=run.get("p50_ms.original"),
        p50_ms_compressed=run.get("p50_ms.compressed"),
    )


def _run_metrics(config: Config, run_id: str) -> dict[str, Any]:
    from mlflow import MlflowClient

    run = MlflowClient(config.mlflow.tracking_uri).get_run(run_id)
    return {**run.data.metrics, "metric": run.data.params.get("primary_metric") or "accuracy"}


def _champion(config: Config, model: ModelConfig) -> tuple[str | None, str | None]:
    from mlflow import MlflowClient

    from retrain.registry import champion

    current = champion(config, model)
    if current is None:
        return None, None
    version = MlflowClient(config.mlflow.tracking_uri, config.mlflow.registry_uri).get_model_version(model.mlflow_name, current.version)
    return current.version, version.tags.get("driftd.compression")


def _t(value: datetime | None) -> str:
    return value.strftime("%H:%M:%S") if value else "-"


def _n(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return "-"
