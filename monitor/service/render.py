"""Plain-text tables for the terminal: a check's verdict and the fleet's status."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from monitor.core.results import CheckResult, CheckStatus


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "DRIFT" if value else "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return "-" if value is None else str(value)


def check_report(result: CheckResult) -> str:
    head = f"model {result.model}  window {_cell(result.window_start)} .. {_cell(result.window_end)}  rows {result.rows}"
    if result.sampled:
        head += f" (sampled {result.rows_used})"
    head += f"  reference {result.reference_version}"
    parts = [head]
    if result.features:
        rows = [_feature_row(f.feature, f) for f in result.features]
        if result.prediction_drift:
            p = result.prediction_drift
            rows.append(_feature_row(f"{p.feature} (prediction)", p))
        parts.append(table(("feature", "method", "score", "p-value", "missing", "unseen", "drifted"), rows))
    if result.quality:
        quality = result.quality
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(quality.metrics.items()))
        served = f" served by version {quality.version}" if quality.version else ""
        parts.append(f"quality on {quality.labelled_rows} labelled rows{served} ({quality.labelled_ratio:.0%}): {metrics}")
        for other in quality.others:
            own = f" (its validation score {other.validation_score:.4f})" if other.validation_score is not None else ""
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(other.metrics.items()))
            parts.append(f"  not counted: {other.labelled_rows} labelled rows served by version {other.version}{own}: {metrics}")
    if result.estimated:
        est = result.estimated
        values = ", ".join(f"{e.metric} {e.value:.4f} [{e.lower:.4f}, {e.upper:.4f}]" for e in est.estimates)
        labelled = est.estimates[0].labelled_rows if est.estimates else 0
        parts.append(f"estimated quality ({est.method}, {labelled} of {est.rows} rows labelled): {values}")
    for gap in result.estimation_errors:
        inside = "inside" if gap.within_band else "OUTSIDE"
        parts.append(f"  estimate vs labels on {gap.rows} rows: {gap.metric} estimated {gap.estimated:.4f}, realized "
                     f"{gap.realized:.4f} (error {gap.error:+.4f}, {inside} the band)")
    if result.multivariate:
        mv = result.multivariate
        strongest = f"; strongest: {', '.join(mv.strongest)}" if mv.strongest else ""
        parts.append(f"multivariate: AUROC {mv.auroc:.3f}, p {mv.p_value:.2g} (alpha {mv.alpha:g}) on {mv.window_rows} rows: "
                     f"{'joint distribution moved' if mv.drifted else 'no joint change'}{strongest}")
    if result.late_rows:
        parts.append(f"{result.late_rows} late rows (committed after the watermark passed them) are in this window")
    if result.null_timestamps:
        parts.append(f"WARNING: {result.null_timestamps} rows have no timestamp and can never be checked; fix the logging")
    parts.append(verdict(result))
    return "\n".join(parts)


def _feature_row(name: str, f) -> tuple[object, ...]:
    p_value = f.min_p_value
    drifted = ", ".join(f.drifted_by) if f.drifted else "no"
    unseen = "-" if f.unseen_share is None else f"{f.unseen_share:.1%}"
    return (name, f.method, f"{f.score:.4g}", "-" if p_value is None else f"{p_value:.2g}", f"{f.missing_share:.1%}", unseen, drifted)


def verdict(result: CheckResult) -> str:
    if result.status is CheckStatus.DRIFT and result.multivariate and result.multivariate.drifted and not result.drifted_features:
        return f"DRIFT: the joint distribution moved (multivariate AUROC {result.multivariate.auroc:.3f}); no single feature drifted"
    if result.status is CheckStatus.DRIFT:
        return (f"DRIFT: {len(result.drifted_features)} of {len(result.features)} features drifted ({result.drifted_share:.0%}): "
                f"{', '.join(result.drifted_features)}")
    if result.status is CheckStatus.OK:
        return f"OK: {len(result.drifted_features)} of {len(result.features)} features drifted ({result.drifted_share:.0%}), no dataset drift"
    if result.status is CheckStatus.INSUFFICIENT_DATA:
        return f"INSUFFICIENT DATA: {result.message}"
    return f"ERROR: {result.message}"
