"""What a retrain writes to its MLflow run beyond the models: one child run per stage, and the
metrics and tags of the variants, the gates and the outcome, under MLflow-safe names."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from retrain.evaluate import Evaluation
from retrain.outcome import RetrainOutcome
from retrain.packaging import end_run


@contextmanager
def child_run(name: str) -> Iterator[Any]:
    """A nested run for one stage that ends FAILED on error without masking the error."""
    import mlflow

    parent = mlflow.active_run()
    assert parent is not None, "stage runs nest under the retrain's parent run"
    # Without an explicit experiment MLflow files nested runs under the default experiment.
    run = mlflow.start_run(experiment_id=parent.info.experiment_id, run_name=name, nested=True, tags={"driftd.stage": name})
    status = "FAILED"
    try:
        yield run
        status = "FINISHED"
    finally:
        end_run(status)


def variant_metrics(result: Any) -> dict[str, float]:
    """size, latency and quality of every variant, keyed `<variant>.<measure>`."""
    metrics: dict[str, float] = {}
    for variant in [result.original, *result.variants]:
        name = metric_key(variant.name)
        for key in ("size_bytes", "native_bytes", "p50_ms", "p99_ms", "batch10k_ms", "quality", "agreement"):
            if key == "size_bytes" and not getattr(variant, "converted", True):
                continue  # scored natively, never converted: it has no ONNX size (native_bytes ranks it)
            value = getattr(variant, key, None)
            if isinstance(value, (int, float)) and np.isfinite(value):
                metrics[f"{name}.{key}"] = float(value)
        metrics[f"{name}.passed"] = float(bool(getattr(variant, "passed", True)))
    return metrics


def metric_key(name: str) -> str:
    """`prune_trees(k=6)` -> `prune_trees_k_6`: MLflow metric names allow few characters."""
    return re.sub(r"[^A-Za-z0-9_.\- /]+", "_", name).strip("_") or "variant"


def evaluation_metrics(ev: Evaluation) -> dict[str, float]:
    metrics = {"challenger_score": ev.challenger_score, "uncompressed_score": ev.uncompressed_score,
               "gate.confidence": ev.confidence, "gate.holdout_rows": float(ev.holdout_rows)}
    if ev.champion_score is not None:
        metrics["champion_score"] = ev.champion_score
    for gate in ev.gates:
        metrics[f"gate.{gate.name}.value"] = gate.value
        metrics[f"gate.{gate.name}.passed"] = float(gate.passed)
        if gate.bound is not None:
            metrics[f"gate.{gate.name}.lower_bound"] = gate.bound
    return metrics


def evaluation_tags(ev: Evaluation) -> dict[str, str]:
    """Version tags beyond the gates' own: why the challenger was rejected, and which
    compressed variants were refused on the way to the one that serves."""
    tags = {"driftd.gate.confidence": f"{ev.confidence:g}", "driftd.gate.holdout_rows": str(ev.holdout_rows)}
    if ev.refused:
        tags["driftd.gate.compression.refused"] = "; ".join(ev.refused)[:5000]
    if not ev.passed:
        tags["driftd.rejected_reason"] = ev.reason[:5000]
    return tags


def summary_metrics(outcome: RetrainOutcome) -> dict[str, float]:
    values = {
        "champion_score": outcome.champion_score,
        "challenger_score": outcome.challenger_score,
        "size_bytes.original": outcome.original_size,
        "size_bytes.compressed": outcome.compressed_size,
        "p50_ms.original": outcome.original_p50_ms,
        "p50_ms.compressed": outcome.compressed_p50_ms,
        "duration_seconds": outcome.duration_seconds,
    }
    return {k: float(v) for k, v in values.items() if v is not None}
