"""driftd's retrain pipeline: training data, (re)training and tuning, compression, gates,
MLflow registry and promotion. The daemon calls it through `run_retrain` only."""

from retrain.outcome import RetrainOutcome, Trigger
from retrain.pipeline import run_retrain

__all__ = ["RetrainOutcome", "Trigger", "run_retrain"]
