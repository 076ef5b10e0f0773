"""The rows the state store keeps that the check reads back: check records and retrain jobs
(the policy decides on them), and the late-row bookkeeping (monitor.check.late computes it, the
store commits it with each window)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from monitor.core.results import CheckStatus, EstimatedQuality, Quality
from monitor.core.statuses import JobStatus

_ACTIVE = tuple(s.value for s in JobStatus if s.active)


@dataclass(frozen=True)
class CheckRecord:
    check_id: str
    model: str
    status: CheckStatus
    started_at: datetime
    window_start: datetime | None
    window_end: datetime
    rows: int
    rows_used: int
    drifted_share: float
    dataset_drifted: bool
    quality: Quality | None
    message: str | None
    drifted_features: tuple[str, ...] = ()
    late_rows: int = 0  # of `rows`, those found behind the watermark (monitor.check.late)
    estimated: EstimatedQuality | None = None  # the label-free estimate (monitor.check.estimates)
    reference_version: str | None = None  # the champion version (or reference file) checked against
    multivariate_drifted: bool = False  # the domain-classifier test rejected (part of dataset_drifted)


@dataclass(frozen=True)
class RetrainJob:
    job_id: str
    model: str
    status: str  # queued | running | succeeded | failed
    outcome: str | None  # promoted | rejected | failed
    reason: str | None
    trigger_check_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    run_id: str | None
    version: str | None

    @property
    def active(self) -> bool:
        return self.status in _ACTIVE


# --- late-row bookkeeping ------------------------------------------------------------------


@dataclass(frozen=True)
class Audit:
    """What the state store knows about the look-back: where auditing starts and the checked keys."""

    audit_from: pd.Timestamp | None  # None: nothing audited yet (no window recorded)
    hashes: np.ndarray  # uint64 key hashes of checked rows newer than audit_from, sorted

    def checked(self, hashes: np.ndarray) -> np.ndarray:
        """Which of `hashes` were checked: a merge of two sorted arrays (np.isin and pandas'
        hash tables take 2-20x longer at a million keys)."""
        found = np.zeros(len(hashes), dtype=bool)
        if not len(self.hashes) or not len(hashes):
            return found
        order = np.argsort(hashes)
        ordered = hashes[order]
        at = np.minimum(np.searchsorted(self.hashes, ordered), len(self.hashes) - 1)
        found[order] = self.hashes[at] == ordered
        return found


@dataclass(frozen=True)
class Seen:
    """A window's contribution to the bookkeeping, committed with its result."""

    audit_from_ns: int  # nothing at or before this is audited any more: older entries are pruned
    min_ts_ns: int
    max_ts_ns: int
    hashes: np.ndarray  # uint64, the keys of this window's rows newer than audit_from

    def encoded(self) -> bytes:
        # Raw sorted little-endian uint64: hashes are random bits, zlib saved nothing and cost
        # 1.4 s a million keys.
        return np.sort(self.hashes).astype("<u8").tobytes()


NO_AUDIT = Audit(None, np.empty(0, dtype=np.uint64))


def decode(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<u8").astype(np.uint64)
