"""One drift check: read a window, validate it, compare it with the reference, measure quality.

A window holds the rows after the watermark, up to `window.size` of time, extended to at
least `min_rows` rows when more have arrived, plus the late rows found behind the watermark
(monitor.check.late). Too few rows is `insufficient_data` and the watermark stays put, so those
rows are carried into the next window rather than dropped.

The window is streamed (monitor.check.stream): batches are validated, sampled down to `max_rows`
and counted as they pass, so memory does not grow with the window; the exact whole-window
counts travel with it as `Window.summary` (and `Checked.summary`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from monitor.check import estimates
from monitor.check.estimates import NO_SIGNALS, Signals, estimator_columns
from monitor.check.labels import attach_labels
from monitor.check.late import Audit, Seen, audit_start, find_late, seen_block_of_keys
from monitor.check.stream import WindowStream, WindowSummary
from monitor.check.validate import InputError
from monitor.core.config import ModelConfig
from monitor.core.redact import mask
from monitor.core.results import CheckResult, CheckStatus, MultivariateSignal, Quality, Watermark
from monitor.sources.base import Source, SourceError, WindowQuery, scan, scan_ordered

if TYPE_CHECKING:
    from monitor.check.attribution import Attribution
    from monitor.check.drift import PreparedReference

log = logging.getLogger("driftd.check")


@dataclass(frozen=True)
class WindowSpec:
    """Which rows to check: the next window after a watermark (the daemon), or after a time as if it
    were one (`driftd backfill` of a model without a watermark), or between two times (`driftd check`).

    `audit` (the daemon's late-row bookkeeping) adds the rows behind the watermark that were
    never checked; None for one-off checks."""

    after: Watermark | datetime | None = None
    since: datetime | None = None
    until: datetime | None = None  # None: now
    audit: Audit | None = None

    @property
    def start(self) -> datetime | None:
        """Where the window begins (exclusive), when known before reading."""
        return self.after.timestamp if isinstance(self.after, Watermark) else self.after or self.since


@dataclass(frozen=True)
class Window:
    rows: int  # every row of the window, late rows included
    start: datetime | None
    end: datetime
    late_rows: int
    watermark: Watermark | None  # the watermark after this window; None when it holds no rows
    sample: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)  # validated rows for drift, <= max_rows
    sampled: bool = False  # whether rows were left out of `sample`
    summary: WindowSummary | None = None  # exact counts over every row; None when not validated
    error: InputError | None = None  # why the rows cannot be checked (validation); None when they can
    key_ns: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0, dtype=np.int64))  # late-row bookkeeping:
    key_hashes: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0, dtype=np.uint64))  # keys in the look-back


@dataclass(frozen=True)
class Checked:
    result: CheckResult
    snapshot: Any = None  # the Evidently snapshot, for the HTML report; None when no drift was computed
    seen: Seen | None = None  # the keys to record with the result (late-row bookkeeping)
    summary: WindowSummary | None = None  # the window's exact counts, when it was read and validated


@dataclass(frozen=True)
class Inputs:
    model: ModelConfig
    source: Source
    labels: Source | None

    def close(self) -> None:
        """Release the sources' connections (SQL sources hold a pool)."""
        for source in (self.source, self.labels):
            if source is not None:
                source.close()


def window_columns(model: ModelConfig, labels: Source | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(model.columns.to_read(target=labels is None) + estimator_columns(model)))


def read_window(inputs: Inputs, spec: WindowSpec, now: datetime, *, validate: bool = True) -> Window:
    """Read the window's rows (late rows included) batch by batch: its bounds, row count and
    watermark, and when `validate` its validated sample and exact summary."""
    model = inputs.model
    lookback_ns = int(model.window.lookback.total_seconds() * 1e9) if spec.audit is not None else None

    def stream(end: datetime) -> WindowStream:
        return WindowStream(model, max_rows=model.window.max_rows, seed=_sample_seed(model.name, end), validate=validate,
                            ordered=scan_ordered(inputs.source), keys_lookback_ns=lookback_ns)

    taken, start, end = _read_fresh(inputs, spec, now, stream)
    late = _read_late(inputs, spec)
    if not late.empty:
        log.info("%d late rows (committed after the watermark passed their time) join this window", len(late))
        taken.add(late, fresh=False)
    streamed = taken.finish()
    after = spec.after if isinstance(spec.after, Watermark) else None  # late rows are only read after a watermark
    watermark = streamed.watermark or (after if not late.empty else None)
    return Window(streamed.rows, start, end, len(late), watermark, streamed.sample, streamed.sampled, streamed.summary,
                  streamed.error, streamed.key_ns, streamed.key_hashes)


def _read_fresh(inputs: Inputs, spec: WindowSpec, now: datetime,
                stream: Callable[[datetime], WindowStream]) -> tuple[WindowStream, datetime | None, datetime]:
    """The rows after the watermark (or in the given span), streamed, and the window's (start, end)."""
    model, columns = inputs.model, window_columns(inputs.model, inputs.labels)
    until = spec.until or now
    if spec.after is None:
        since = spec.since or until - model.window.size
        return _taken(stream(until), inputs.source, WindowQuery(columns, until=until, since=since)), since, until
    start = spec.start
    assert start is not None
    # A time in place of a watermark bounds by time alone: every row after it is new.
    lower = {"after": spec.after} if isinstance(spec.after, Watermark) else {"since": start}
    end = min(until, start + model.window.size)
    taken = _taken(stream(end), inputs.source, WindowQuery(columns, until=end, **lower))
    if taken.rows < model.window.min_rows and end < until:
        # Catching up on sparse data: stretch the window until it holds min_rows rows (at most
        # min_rows rows, read whole and in order).
        frame = inputs.source.read(WindowQuery(columns, until=until, limit=model.window.min_rows, **lower))
        end = until if len(frame) < model.window.min_rows else frame[model.columns.timestamp].iloc[-1].to_pydatetime()
        taken = stream(end)
        taken.add(frame)
    return taken, start, end


def _taken(taken: WindowStream, source: Source, query: WindowQuery) -> WindowStream:
    for batch in scan(source, query, arrow=True):
        taken.add(batch)
    return taken


def _read_late(inputs: Inputs, spec: WindowSpec) -> pd.DataFrame:
    # After the fresh read, on purpose: a row committed between the two reads is either read
    # here or lies after the watermark this window leaves, so the next check finds it.
    if spec.audit is None or not isinstance(spec.after, Watermark):  # nothing lies behind a mere time
        return pd.DataFrame()
    model = inputs.model
    lookback_ns = int(model.window.lookback.total_seconds() * 1e9)
    return find_late(inputs.source, model.columns, window_columns(model, inputs.labels), spec.after, spec.audit, lookback_ns)


def seen_of(window: Window, spec: WindowSpec, model: ModelConfig) -> Seen | None:
    """The late-row bookkeeping to commit with this window (None for one-off checks)."""
    start = audit_start(spec.audit, window.start) if spec.audit is not None else None
    if start is None or window.watermark is None:
        return None
    lookback_ns = int(model.window.lookback.total_seconds() * 1e9)
    return seen_block_of_keys(window.key_ns, window.key_hashes, window.watermark, start, lookback_ns)


def _sample_seed(model: str, end: datetime) -> int:
    # Stable across runs and processes, so re-checking a window samples the same rows.
    return zlib.crc32(f"{model}|{end.isoformat()}".encode())


def run_check(inputs: Inputs, reference: PreparedReference, spec: WindowSpec, *, now: datetime | None = None,
              attribution: Attribution | None = None, signals: Signals | None = None) -> Checked:
    """Run one check. Never raises for bad data or sources: the result carries status and message.
    `attribution` says which version's rows quality judges (monitor.check.attribution); None: all rows.
    `signals`: the champion's quality estimator and multivariate reference (monitor.check.estimates)."""
    from monitor.check.drift import DriftError, check_drift

    now = now or datetime.now(timezone.utc)
    clock = time.perf_counter()
    result = CheckResult(
        check_id=uuid.uuid4().hex,
        model=inputs.model.name,
        status=CheckStatus.ERROR,
        started_at=now,
        window_start=spec.start,
        window_end=spec.until or now,
        reference_version=reference.version,
    )
    model = inputs.model
    try:
        window = read_window(inputs, spec, now)
        start, end = window.start, window.end
        result = replace(result, window_start=start, window_end=end, rows=window.rows, late_rows=window.late_rows,
                         null_timestamps=_null_timestamps(inputs))
        log.debug("window read: %d rows", window.rows)
        if window.rows < model.window.min_rows:
            return Checked(_finish(result, clock, status=CheckStatus.INSUFFICIENT_DATA, message=_too_few(window.rows, model, start, end)))
        if window.error is not None:
            raise window.error
        signals = signals or NO_SIGNALS
        seed = _sample_seed(model.name, end)
        # The multivariate test caps its rows with its own seeded sample: drawn from the window's
        # uniform sample, it is a uniform sample of the window too.
        joint, joint_note = _guarded(model, "multivariate test", lambda: estimates.multivariate(signals, model, window.sample, seed), None)
        drift = check_drift(reference, window.sample, model, extra=_family_member(joint, model))
    except SourceError as exc:
        return Checked(_finish(result, clock, status=CheckStatus.ERROR, message=str(exc), details={"source_error": exc.kind}))
    except (InputError, DriftError) as exc:
        return Checked(_finish(result, clock, status=CheckStatus.ERROR, message=str(exc), details={"input_error": type(exc).__name__}))
    quality, quality_note, labelled = _measure_quality(inputs, end, attribution, features=signals.needs_features)
    extra, notes = _label_free(signals, model, window.sample, labelled, seed)
    if joint is not None:
        extra["multivariate"] = _decided(joint, drift.extra_drifted)
    if joint_note or signals.domain_note:
        notes["multivariate_error"] = mask(joint_note or signals.domain_note or "")
    result = replace(
        result,
        rows_used=len(window.sample),
        sampled=window.sampled,
        features=drift.features,
        drifted_share=drift.drifted_share,
        dataset_drifted=drift.dataset_drifted,
        prediction_drift=drift.prediction_drift,
        quality=quality,
        watermark=window.watermark,
        details={**({"labels_error": quality_note} if quality_note else {}), **notes},
        **extra,
    )
    status = CheckStatus.DRIFT if result.dataset_drifted else CheckStatus.OK
    return Checked(_finish(result, clock, status=status, message=None), drift.snapshot, seen_of(window, spec, model), window.summary)


def _null_timestamps(inputs: Inputs) -> int:
    """Rows the source holds without a timestamp: no window will ever contain them."""
    try:
        return inputs.source.null_timestamps()
    except SourceError as exc:  # the window's own read reports the source's problems
        log.debug("could not count rows without a timestamp: %s", exc)
        return 0


def _too_few(rows: int, model: ModelConfig, start: datetime | None, end: datetime) -> str:
    return (
        f"only {rows} rows between {start:%Y-%m-%d %H:%M:%S} and {end:%Y-%m-%d %H:%M:%S} "
        f"(window.min_rows is {model.window.min_rows}); the rows are kept for the next window"
        if start
        else f"only {rows} rows (window.min_rows is {model.window.min_rows})"
    )


def _finish(result: CheckResult, clock: float, *, status: CheckStatus, message: str | None, details: dict | None = None) -> CheckResult:
    merged = {**result.details, **(details or {})}
    watermark = result.watermark if status in (CheckStatus.OK, CheckStatus.DRIFT) else None
    if result.null_timestamps:
        message = "; ".join(filter(None, [message, null_timestamps_note(result.null_timestamps, result.model)]))
    return replace(result, status=status, message=mask(message) if message else None, details=merged, watermark=watermark,
                   duration_seconds=time.perf_counter() - clock)


def null_timestamps_note(rows: int, model: str) -> str:
    return (f"{rows} rows of model {model!r} have no timestamp and can never be checked: fix the logging of the "
            "timestamp column (counted in driftd_null_timestamp_rows)")


def _guarded(model: ModelConfig, what: str, compute: Callable[[], tuple[Any, str | None]], empty: Any) -> tuple[Any, str | None]:
    try:
        return compute()
    except Exception as exc:  # an optional signal never fails the drift verdict
        log.exception("%s failed for %s", what, model.name)
        return empty, f"{what} failed: {type(exc).__name__}: {exc}"


def _family_member(joint: MultivariateSignal | None, model: ModelConfig) -> dict[str, float]:
    """The multivariate p-value as one more hypothesis of the model's false-alarm family, so one
    budget (drift.false_alarm_rate) covers every test; below the AUROC floor it cannot reject."""
    if joint is None:
        return {}
    return {"multivariate": joint.p_value if joint.auroc >= model.drift.multivariate.min_auroc else 1.0}


def _decided(joint: MultivariateSignal, rejected: tuple[str, ...]) -> MultivariateSignal:
    if "multivariate" in rejected:
        return replace(joint, drifted=True)
    return replace(joint, drifted=False, contributions=())


def _label_free(signals: Signals, model: ModelConfig, sample: pd.DataFrame, labelled: pd.DataFrame | None,
                seed: int) -> tuple[dict[str, Any], dict[str, str]]:
    """The window's estimated quality and the estimate's error where labels arrived; what could
    not be computed is named in the details, never fatal."""
    estimated, note_estimate = _guarded(model, "quality estimate", lambda: estimates.estimate(signals, model, sample, labelled, seed), None)
    gaps, note_errors = _guarded(model, "estimation error", lambda: estimates.errors(signals, model, labelled, seed), ())
    notes = {}
    estimation = [n for n in (signals.estimator_note if signals.estimator is None else None, note_estimate, note_errors) if n]
    if estimation:
        notes["estimation_error"] = mask("; ".join(estimation))
    return {"estimated": estimated, "estimation_errors": gaps}, notes


def _measure_quality(inputs: Inputs, end: datetime, attribution: Attribution | None,
                     features: bool = False) -> tuple[Quality | None, str | None, pd.DataFrame | None]:
    """Quality on the labelled rows of the trailing quality span (labels arrive late), each
    row attributed to the model version that served it; and the champion's labelled rows
    (with the features when `features`), which the label-free estimate is judged on."""
    from monitor.check.attribution import attributed_quality
    from monitor.check.quality import QualityError

    model, cols = inputs.model, inputs.model.columns
    if not cols.target:
        return None, None, None
    wanted = cols.to_read(features=features, target=inputs.labels is None, version=attribution is not None)
    wanted = tuple(dict.fromkeys(wanted + estimator_columns(model)))
    since = end - model.window.effective_quality_span
    try:
        frame = inputs.source.read(WindowQuery(wanted, until=end, since=since))
        frame = attach_labels(frame, inputs.labels, cols)
        quality = attributed_quality(frame, model, attribution) if not frame.empty else None
        return quality, None, _champion_labelled(frame, model, attribution)
    except (SourceError, QualityError, ValueError) as exc:
        # Drift results stand on their own; quality is reported missing, with the reason
        # (sklearn raises plain ValueError for e.g. an infinite probability).
        log.warning("quality skipped for %s: %s", model.name, exc)
        return None, str(exc), None


def _champion_labelled(frame: pd.DataFrame, model: ModelConfig, attribution: Attribution | None) -> pd.DataFrame | None:
    """The labelled rows the champion served (all labelled rows without an attribution)."""
    from monitor.check.attribution import split_by_version

    target = model.columns.target
    if frame.empty or target not in frame.columns:
        return None
    labelled = frame[frame[target].notna()]
    if attribution is not None and not labelled.empty:
        labelled = split_by_version(labelled, model, attribution).get(attribution.champion, labelled.iloc[:0])
    return labelled
