"""The model production starts with: trained on pre-shift data and registered as @champion."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sklearn.metrics import accuracy_score

from monitor.core.config import Config, ModelConfig
from monitor.demo.world import FEATURES, TARGET, make_loans, train_baseline, with_predictions


@dataclass(frozen=True)
class Baseline:
    version: str
    score: float  # holdout accuracy
    reference_rows: int
    size_trees: int


def register_baseline_model(config: Config, model: ModelConfig, *, rows: int = 6000, trees: int = 100) -> Baseline:
    from retrain.baseline import register_baseline

    start = datetime.now(timezone.utc) - timedelta(days=1)
    frame = make_loans(rows, seed=11, drift=0.0, start=start, every=timedelta(seconds=10))
    cut = int(len(frame) * 0.8)
    train, holdout = frame.iloc[:cut], frame.iloc[cut:]
    estimator = train_baseline(train, "forest", seed=0, n_estimators=trees, max_depth=10)
    reference = with_predictions(estimator, train)
    version = register_baseline(config, model, estimator, reference, with_predictions(estimator, holdout))
    score = accuracy_score(holdout[TARGET], estimator.predict(holdout[FEATURES]))
    return Baseline(str(version), float(score), len(reference), trees)
