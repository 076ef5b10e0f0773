"""What starts a retrain and what it ends with: the trigger (the check that asked for it) and
the outcome the daemon, the CLI and the state store record."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from retrain.evaluate import Gate


@dataclass(frozen=True)
class Trigger:
    check_id: str | None
    window_start: datetime | None
    window_end: datetime | None
    drifted_share: float | None
    reason: str
    drift_report: Path | None = None


@dataclass(frozen=True)
class RetrainOutcome:
    model: str
    outcome: str  # promoted | rejected | failed
    reason: str
    version: str | None
    run_id: str | None
    metric: str | None
    champion_score: float | None
    challenger_score: float | None
    original_size: int | None
    compressed_size: int | None
    original_p50_ms: float | None
    compressed_p50_ms: float | None
    variant: str | None
    duration_seconds: float
    gates: tuple[Gate, ...] = ()  # with their confidence bounds, for the CLI and the MLflow run
    stage_seconds: dict[str, float] = field(default_factory=dict)  # wall time by stage; "compressing: <part>" inside it
