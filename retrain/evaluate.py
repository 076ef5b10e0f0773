"""The gates a challenger must pass before it may serve, decided on the holdout only.

The holdout (the most recent labelled rows) took no part in training, tuning or choosing
the compressed variant, so each gate is one test on data its choice was not made on:

- `compression`: which variant serves. The variant `compress` chose on validation rows may
  serve when the upper confidence bound of its loss against the uncompressed challenger
  (`retrain.max_quality_loss`) holds on the holdout. A lossy variant (pruned, quantized) is
  refused outright on a holdout smaller than `retrain.min_holdout_rows`, where the bound
  itself is unreliable. A refused variant is replaced by the lossless ONNX conversion (one
  that agrees with the sklearn model), else by the sklearn model itself: a better
  challenger is not thrown away because its compression could not be vouched for.
- `improvement`: the serving variant must beat the champion by at least
  `retrain.min_improvement` at the lower confidence bound, on the same holdout rows.

Bounds are one-sided at `retrain.confidence` from a paired bootstrap (`retrain.bounds`).
Point scores are the model's primary metric (`monitor.check.quality.PRIMARY_METRIC`), computed by
the same code that measures live quality, so a version's `driftd.validation_score` tag and
the daemon's live numbers are comparable. Differences are stated in higher-is-better terms:
for RMSE an improvement of 0.3 means the error went down by 0.3.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from monitor.core.config import ModelConfig, RetrainOptions
from retrain.bounds import Gain, paired_gain

SEED = 0  # the bootstrap's: the same holdout always gives the same decision
SKLEARN = "none"  # the serving variant's name when the uncompressed model serves


class ScoringError(Exception):
    """A model's predictions could not be scored; the message says which and why."""


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    value: float  # the measured difference (point estimate), higher-is-better
    threshold: float  # what the lower confidence bound must reach
    detail: str  # one line for a person: what was compared, and the verdict
    bound: float | None = None  # lower confidence bound of `value`; None when not bounded
    confidence: float | None = None
    rows: int = 0

    @property
    def verdict(self) -> str:
        return "passed" if self.passed else "failed"

    @property
    def tag(self) -> str:
        """The registered version's `driftd.gate.<name>` tag value."""
        bound = "" if self.bound is None else f"; {self.confidence:.0%} lower bound {self.bound:+.4f} on {self.rows} rows"
        return f"{self.verdict} {self.value:+.4f} (threshold {self.threshold:+.4f}{bound})"


@dataclass(frozen=True)
class Served:
    """One way the challenger could serve, with its predictions on the holdout."""

    name: str  # a compression variant, or SKLEARN
    labels: np.ndarray
    probabilities: np.ndarray | None = None
    lossless: bool = False  # agrees with the uncompressed model by construction


@dataclass(frozen=True)
class Evaluation:
    metric: str
    champion_score: float | None
    challenger_score: float  # the serving variant on the holdout
    uncompressed_score: float
    gates: tuple[Gate, ...]
    served: str = SKLEARN  # the variant that passed the compression gate
    refused: tuple[str, ...] = ()  # variants refused on the way there, each with its reason
    confidence: float = 0.95
    holdout_rows: int = 0

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    @property
    def reason(self) -> str:
        failed = [g.detail for g in self.gates if not g.passed]
        return "; ".join([*(failed or [g.detail for g in self.gates]), *self.refused])


def primary_metric(model: ModelConfig) -> str:
    from monitor.check.quality import PRIMARY_METRIC

    return PRIMARY_METRIC[model.task]


def higher_is_better(metric: str) -> bool:
    from monitor.check.quality import higher_is_better as better

    return better(metric)


def gain(metric: str, new: float, old: float) -> float:
    """How much better `new` is than `old`, positive when better, whatever the metric's direction."""
    return new - old if higher_is_better(metric) else old - new


def bounded_gain(model: ModelConfig, holdout: pd.DataFrame, new: np.ndarray, old: np.ndarray, confidence: float) -> Gain:
    """Paired-bootstrap gain of predictions `new` over `old` on the labelled holdout rows."""
    y, new, old = _comparable(model, holdout, new, old)
    return paired_gain(primary_metric(model), y, new, old, confidence=confidence, seed=SEED)


def improvement_gate(metric: str, champion_score: float | None, challenger_score: float, difference: Gain | None,
                     min_improvement: float) -> Gate:
    if champion_score is None or difference is None:
        return Gate("improvement", True, 0.0, min_improvement, "no champion score to compare with")
    passed = difference.lower >= min_improvement - 1e-12
    relation = "at least" if passed else "less than"
    return Gate(
        "improvement", passed, difference.estimate, min_improvement,
        f"challenger {metric} {challenger_score:.4f} vs champion {champion_score:.4f} on the same {difference.rows} holdout rows: "
        f"{difference.estimate:+.4f}, {difference.confidence:.0%} lower bound {difference.lower:+.4f}, {relation} the required "
        f"{min_improvement:+.4f} (retrain.min_improvement)",
        difference.lower, difference.confidence, difference.rows,
    )  # fmt: skip


def compression_gate(metric: str, variant: str, difference: Gain, max_quality_loss: float) -> Gate:
    """`difference`: gain of the serving variant over the uncompressed model (a loss is negative)."""
    worst = -difference.lower + 0.0  # + 0.0: no "-0.0000"
    passed = worst <= max_quality_loss + 1e-9  # float32 rounding is no loss
    return Gate(
        "compression", passed, difference.estimate, -max_quality_loss,
        f"{variant} variant vs the uncompressed challenger on {difference.rows} holdout rows: {metric} "
        f"{difference.estimate + 0.0:+.4f}, {difference.confidence:.0%} upper bound of the loss {worst:.4f}, "
        f"{'within' if passed else 'beyond'} the allowed {max_quality_loss:.4f} (retrain.max_quality_loss)",
        difference.lower, difference.confidence, difference.rows,
    )  # fmt: skip


def gate_compression(model: ModelConfig, holdout: pd.DataFrame, uncompressed: np.ndarray, candidates: Sequence[Served],
                     options: RetrainOptions) -> tuple[Served, Gate, tuple[str, ...]]:
    """The first of `candidates` (most compressed first; the last should be lossless, e.g.
    the sklearn model) that may serve, its gate, and why each earlier one was refused."""
    metric, refused = primary_metric(model), []
    for served in candidates:
        if not served.lossless and len(holdout) < options.min_holdout_rows:
            refused.append(
                f"{served.name} refused: the holdout has {len(holdout)} rows, fewer than retrain.min_holdout_rows "
                f"({options.min_holdout_rows}) needed to bound a lossy variant's loss — collect more labelled rows or "
                "lengthen retrain.training_window"
            )
            continue
        gate = compression_gate(metric, served.name, bounded_gain(model, holdout, served.labels, uncompressed, options.confidence),
                                options.max_quality_loss)
        if gate.passed or served is candidates[-1]:
            return served, gate, tuple(refused)
        refused.append(f"{served.name} refused: {gate.detail}")
    raise ValueError("gate_compression needs at least one candidate")


def evaluate(model: ModelConfig, holdout: pd.DataFrame, *, champion: Served | None, uncompressed: Served,
             candidates: Sequence[Served], options: RetrainOptions) -> Evaluation:
    """Choose the serving variant (compression gate), then compare it with the champion."""
    metric = primary_metric(model)
    served, compression, refused = gate_compression(model, holdout, uncompressed.labels, [*candidates, uncompressed], options)
    challenger_score = score(model, holdout, served.labels, positive_probability(model, served.probabilities))
    champion_score = difference = None
    if champion is not None:
        champion_score = score(model, holdout, champion.labels, positive_probability(model, champion.probabilities))
        difference = bounded_gain(model, holdout, served.labels, champion.labels, options.confidence)
    improvement = improvement_gate(metric, champion_score, challenger_score, difference, options.min_improvement)
    uncompressed_score = score(model, holdout, uncompressed.labels, positive_probability(model, uncompressed.probabilities))
    return Evaluation(metric, champion_score, challenger_score, uncompressed_score, (improvement, compression), served.name,
                      refused, options.confidence, len(holdout))


def score(model: ModelConfig, frame: pd.DataFrame, prediction: np.ndarray, probability: np.ndarray | None = None) -> float:
    """The primary metric of `prediction` against `frame`'s target, as live quality measures it."""
    from monitor.check.quality import compute_quality

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


def _comparable(model: ModelConfig, holdout: pd.DataFrame, *predictions: np.ndarray) -> tuple[np.ndarray, ...]:
    """Target and predictions as the live quality compares them (1 == 1.0; else as text)."""
    from monitor.check.quality import comparable_labels

    cols = model.columns
    assert cols.target is not None
    y = holdout[cols.target].reset_index(drop=True)
    if y.isna().any():
        raise ScoringError(f"the holdout of {model.name!r} has rows without a label; gates need every row labelled")
    if model.task == "regression":
        return (y.to_numpy(dtype=float), *(np.asarray(p, dtype=float).reshape(-1) for p in predictions))
    out = []
    for pred in predictions:
        y_as, p_as = comparable_labels(y, pd.Series(np.asarray(pred).reshape(-1)), cols.target, cols.prediction)
        out.append(p_as.to_numpy())
    return (y_as.to_numpy(), *out)
