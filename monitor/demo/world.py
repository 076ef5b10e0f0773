"""The demo's world: a seeded, loan-default-like tabular problem and its baseline model.

`make_loans(n, seed=..., drift=...)` draws applications with numerical and categorical
features and a `defaulted` target. `drift` (0..1) moves both the inputs (poorer, more indebted
applicants from other regions) and the concept (which applicants default), so a model trained
at drift 0 loses accuracy at drift 1 and a model retrained on drifted rows wins it back.
Everything is a pure function of its arguments: same seed, same frame.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

TIMESTAMP = "ts"
ID = "id"
PREDICTION = "prediction"
PROBABILITY = "probability"
TARGET = "defaulted"
NUMERICAL = ["income", "loan_amount", "credit_score", "debt_ratio", "age"]
CATEGORICAL = ["purpose", "home_ownership", "region"]
FEATURES = NUMERICAL + CATEGORICAL

PURPOSES = ["car", "home", "education", "business", "debt_consolidation"]
HOME = ["rent", "own", "mortgage"]
REGIONS = ["north", "south", "east", "west"]
START = datetime(2024, 1, 1, tzinfo=timezone.utc)

Kind = Literal["forest", "boosting", "logistic"]


def _mix(p0: list[float], p1: list[float], drift: float) -> np.ndarray:
    p = (1 - drift) * np.asarray(p0) + drift * np.asarray(p1)
    return p / p.sum()


def make_loans(
    n: int,
    *,
    seed: int = 0,
    drift: float = 0.0,
    start: datetime = START,
    every: timedelta = timedelta(minutes=1),
    first_id: int = 0,
) -> pd.DataFrame:
    """`n` loan applications with ts (UTC, one per `every`), id, features and `defaulted`."""
    if not 0 <= drift <= 1:
        raise ValueError(f"drift must be within 0..1, got {drift}")
    rng = np.random.default_rng(seed)
    income = rng.lognormal(mean=np.log(52_000) - 0.35 * drift, sigma=0.45, size=n)
    loan = rng.lognormal(mean=np.log(14_000) + 0.25 * drift, sigma=0.6, size=n)
    score = np.clip(rng.normal(680 - 40 * drift, 60, size=n), 300, 850)
    debt = np.clip(rng.beta(2 + 2 * drift, 5, size=n), 0, 1)
    age = np.clip(rng.normal(41 - 4 * drift, 11, size=n), 18, 90).round()
    purpose = rng.choice(PURPOSES, size=n, p=_mix([0.25, 0.2, 0.15, 0.15, 0.25], [0.1, 0.1, 0.2, 0.3, 0.3], drift))
    home = rng.choice(HOME, size=n, p=_mix([0.4, 0.25, 0.35], [0.6, 0.15, 0.25], drift))
    region = rng.choice(REGIONS, size=n, p=_mix([0.3, 0.3, 0.2, 0.2], [0.15, 0.15, 0.3, 0.4], drift))

    # The concept: before drift, debt and credit score decide; after it, business loans in the
    # west and young borrowers default far more while the score matters less.
    logit = (
        -0.4
        + 6.0 * (debt - 0.3)
        - (1 - 0.8 * drift) * (score - 680) / 35
        + 0.9 * np.log(loan / income * 4)
        + drift * (3.0 * ((purpose == "business") | (region == "west")) - 4.2)
        + drift * 2.5 * (age < 35)
        + 0.6 * (home == "rent")
    )
    defaulted = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64")
    return pd.DataFrame(
        {
            TIMESTAMP: pd.date_range(start, periods=n, freq=every, tz="UTC"),
            ID: [f"loan-{first_id + i:07d}" for i in range(n)],
            "income": income.round(2),
            "loan_amount": loan.round(2),
            "credit_score": score.round(),
            "debt_ratio": debt.round(4),
            "age": age.astype("float64"),
            "purpose": pd.Series(purpose, dtype="object"),
            "home_ownership": pd.Series(home, dtype="object"),
            "region": pd.Series(region, dtype="object"),
            TARGET: defaulted,
        }
    )


def baseline_pipeline(kind: Kind = "forest", *, seed: int = 0, **params: Any) -> Pipeline:
    """The baseline: scaling + one-hot encoding in a ColumnTransformer, then a classifier.

    Kept small so tests stay fast; `params` override the classifier's defaults."""
    preprocess = ColumnTransformer(
        [
            ("num", StandardScaler(), NUMERICAL),
            ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
        ]
    )
    if kind == "forest":
        options = {"n_estimators": 40, "max_depth": 8, "min_samples_leaf": 5, "n_jobs": 1, "random_state": seed}
        classifier = RandomForestClassifier(**{**options, **params})
    elif kind == "boosting":
        options = {"max_iter": 60, "max_leaf_nodes": 15, "random_state": seed}
        classifier = HistGradientBoostingClassifier(**{**options, **params})
    elif kind == "logistic":
        classifier = LogisticRegression(**{"max_iter": 500, **params})
    else:
        raise ValueError(f"unknown model kind {kind!r} (use forest, boosting or logistic)")
    return Pipeline([("preprocess", preprocess), ("classifier", classifier)])


def train_baseline(frame: pd.DataFrame, kind: Kind = "forest", *, seed: int = 0, **params: Any) -> Pipeline:
    """Fit `baseline_pipeline` on the features and target of `frame`."""
    return baseline_pipeline(kind, seed=seed, **params).fit(frame[FEATURES], frame[TARGET])


def with_predictions(estimator: Any, frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` plus what a production service logs: the predicted class and its probability."""
    out = frame.copy()
    out[PREDICTION] = estimator.predict(frame[FEATURES]).astype("int64")
    out[PROBABILITY] = estimator.predict_proba(frame[FEATURES])[:, 1]
    return out
