"""driftd's retrain pipeline: training data, (re)training and tuning, compression, gates,
MLflow registry and promotion. The daemon calls it through `run_retrain` only."""

from retrain.pipeline import RetrainOutcome, Trigger, run_retrain

__all__ = ["RetrainOutcome", "Trigger", "run_retrain"]
