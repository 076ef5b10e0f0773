"""The gates a challenger must pass before it may serve.

- `improvement`: on the SAME most-recent holdout, the challenger (the variant that would
  serve, usually compressed) must beat the champion by at least `retrain.min_improvement`.
- `compression`: the serving variant may lose at most `retrain.max_quality_loss` against
  the uncompressed challenger on that holdout.

Scores are the model's primary metric (`monitor.quality.PRIMARY_METRIC`), computed by the
same code that measures live quality, so a version's `driftd.validation_score` tag and the
daemon's live numbers are comparable. Differences are stated in higher-is-better terms:
for RMSE an improvement of 0.3 means the error went down by 0.3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from monitor.config import ModelConfig, RetrainOptions


class ScoringError(Exception):
    """A model's predictions could not be scored; the message says which and why."""


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    value: float  # the measured difference, higher-is-better
    threshold: float
    detail: str  # one line for a person: what was compared, and the verdict

    @property
    def verdict(self) -> str:
        return "passed" if self.passed else "failed"

    @property
    def tag(self) -> str:
        """The registered version's `driftd.gate.<name>` tag value."""
        return f"{self.verdict} {self.value:+.4f} (threshold {self.threshold:+.4f})"


@dataclass(frozen=True)
class Evaluation:
    metric: str
    champion_score: float | None
    challenger_score: float  # the serving variant on the holdout
    uncompressed_score: float
    gates: tuple[Gate, ...]

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    @property
    def reason(self) -> str:
        failed = [g.detail for g in self.gates if not g.passed]
        return "; ".join(failed) if failed else "; ".join(g.detail for g in self.gates)


def primary_metric(model: ModelConfig) -> str:
    from monitor.quality import PRIMARY_METRIC

    return PRIMARY_METRIC[model.task]


def higher_is_better(metric: str) -> bool:
    from monitor.quality import higher_is_better as better

    return better(metric)


def gain(metric: str, new: float, old: float) -> float:
    """How much better `new` is than `old`, positive when better, whatever the metric's direction."""
    return new - old if higher_is_better(metric) else old - new


def improvement_gate(metric: str, champion_score: float | None, challenger_score: float, min_improvement: float) -> Gate:
    if champion_score is None:
        return Gate("improvement", True, 0.0, min_improvement, "no champion score to compare with")
    value = gain(metric, challenger_score, champion_score)
    passed = value >= min_improvement
    relation = "at least" if passed else "less than"
    return Gate(
        "improvement", passed, value, min_improvement,
        f"challenger {metric} {challenger_score:.4f} vs champion {champion_score:.4f} on the same holdout: "
        f"{value:+.4f}, {relation} the required {min_improvement:+.4f} (retrain.min_improvement)",
    )  # fmt: skip


def compression_gate(metric: str, uncompressed_score: float, compressed_score: float, max_quality_loss: float, variant: str) -> Gate:
    value = gain(metric, compressed_score, uncompressed_score)  # a loss is negative
    passed = -value <= max_quality_loss + 1e-12
    return Gate(
        "compression", passed, value, -max_quality_loss,
        f"{variant} variant {metric} {compressed_score:.4f} vs uncompressed {uncompressed_score:.4f}: "
        f"{value:+.4f}, {'within' if passed else 'beyond'} the allowed loss of {max_quality_loss:.4f} (retrain.max_quality_loss)",
    )  # fmt: skip


def evaluate(
    metric: str,
    *,
    champion_score: float | None,
    challenger_score: float,
    uncompressed_score: float,
    variant: str,
    options: RetrainOptions,
) -> Evaluation:
    gates = (
        improvement_gate(metric, champion_score, challenger_score, options.min_improvement),
        compression_gate(metric, uncompressed_score, challenger_score, options.max_quality_loss, variant),
    )
    return Evaluation(metric, champion_score, challenger_score, uncompressed_score, gates)


def score(model: ModelConfig, frame: pd.DataFrame, prediction: np.ndarray, probability: np.ndarray | None = None) -> float:
    """The primary metric of `prediction` against `frame`'s target, as live quality measures it."""
    from monitor.quality import compute_quality

    cols = model.columns
    assert cols.target is not None
    scored = pd.DataFrame({cols.target: frame[cols.target].to_numpy(), cols.prediction: np.asarray(prediction).reshape(-1)})
    if cols.probability and probability is not None:
        scored[cols.probability] = probability
    quality = compute_quality(scored, model)
    metric = primary_metric(model)
    if quality is None or metric not in quality.metrics:
        raise ScoringError(f"cannot compute {metric} of model {model.name!r} on {len(frame)} rows: no labelled rows or no predictions")
    return float(quality.metrics[metric])


def positive_probability(model: ModelConfig, probabilities: np.ndarray | None) -> np.ndarray | None:
    """The positive-class column of (N, 2) probabilities, for binary models that log one."""
    if probabilities is None or model.task != "binary_classification" or not model.columns.probability:
        return None
    probabilities = np.asarray(probabilities)
    return probabilities[:, -1] if probabilities.ndim == 2 else probabilities
