"""A user's own data, shaped the way real data is: feature names with spaces, dots, unicode and a
leading digit (like scikit-learn's `load_breast_cancer` names), a pickled scikit-learn model,
Parquet prediction logs, and labels in a separate `(id, label)` table without a timestamp.

The story: a champion trained before `shift_at`; afterwards the inputs move and the concept
changes (a larger `mean radius` now means the opposite, and the `région` starts to matter), so
the champion is clearly worse on post-shift rows and a model retrained on them is better.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

TIMESTAMP, ID, PREDICTION, PROBABILITY, TARGET = "logged at", "request id", "predicted class", "probability", "label"
NUMERICAL = ["mean radius", "worst.area", "größe", "1st score"]
CATEGORICAL = ["home type", "région"]
FEATURES = NUMERICAL + CATEGORICAL
HOMES, REGIONS = ["rent", "own", "mortgage"], ["nord", "süd", "øst"]


def make_rows(n: int, *, seed: int, shifted: float, start: datetime, every: timedelta, first_id: int = 0) -> pd.DataFrame:
    """`n` rows, one every `every` from `start`; `shifted` in 0..1 moves inputs and concept."""
    rng = np.random.default_rng(seed)
    radius = rng.normal(14 + 2.5 * shifted, 3, n)
    area = rng.lognormal(6.5 + 0.5 * shifted, 0.4, n)
    size = rng.normal(170, 10, n)
    score = rng.normal(0, 1, n)
    home = rng.choice(HOMES, n, p=[0.4, 0.3, 0.3])
    region = rng.choice(REGIONS, n, p=np.array([0.45, 0.35, 0.2]) * (1 - shifted) + np.array([0.15, 0.25, 0.6]) * shifted)
    z = (radius - 14) / 3
    before = 1.6 * z + 1.0 * score + 0.6 * (home == "rent")
    after = -1.6 * z + 1.0 * score + 2.0 * (region == "øst") - 1.0
    logit = (1 - shifted) * before + shifted * after
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64")
    return pd.DataFrame({
        TIMESTAMP: pd.date_range(start, periods=n, freq=every, tz="UTC"),
        ID: [f"req-{first_id + i:07d}" for i in range(n)],
        "mean radius": radius.round(3), "worst.area": area.round(2), "größe": size.round(1), "1st score": score,
        "home type": pd.Series(home, dtype=object), "région": pd.Series(region, dtype=object),
        TARGET: label,
    })


def champion_pipeline(seed: int = 0) -> Pipeline:
    columns = ColumnTransformer([("num", StandardScaler(), NUMERICAL), ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL)])
    forest = RandomForestClassifier(n_estimators=30, max_depth=8, min_samples_leaf=5, n_jobs=1, random_state=seed)
    return Pipeline([("columns", columns), ("forest", forest)])


def logged(estimator: Pipeline, frame: pd.DataFrame) -> pd.DataFrame:
    """What the serving application logs: the features, the predicted class and its probability."""
    out = frame.drop(columns=[TARGET])
    out[PREDICTION] = estimator.predict(frame[FEATURES]).astype("int64")
    out[PROBABILITY] = estimator.predict_proba(frame[FEATURES])[:, 1]
    return out


@dataclass(frozen=True)
class OwnData:
    logs: Path  # folder of Parquet prediction logs
    labels: Path  # (request id, label), no timestamp
    reference: Path  # the champion's training data, with the label
    model: Path  # the pickled champion
    rows: int
    shift_at: datetime


def write_own_data(directory: Path, *, now: datetime, days: int = 5, per_day: int = 1000, shift_after_days: float = 1.0) -> OwnData:
    """Logs from `days` days before `now` until just before it; the shift after `shift_after_days`."""
    import joblib

    train = make_rows(3000, seed=1, shifted=0.0, start=now - timedelta(days=60), every=timedelta(minutes=10))
    champion = champion_pipeline().fit(train[FEATURES], train[TARGET])
    every = timedelta(days=1) / per_day
    start = now - timedelta(days=days) + timedelta(minutes=10)
    calm = int(per_day * shift_after_days)
    before = make_rows(calm, seed=2, shifted=0.0, start=start, every=every)
    after = make_rows(per_day * days - calm - per_day // 100, seed=3, shifted=1.0, start=start + calm * every,
                      every=every, first_id=calm)
    rows = pd.concat([before, after], ignore_index=True)
    (directory / "logs").mkdir(parents=True, exist_ok=True)
    half = len(rows) // 2  # two files, as a log shipper would write them
    logged(champion, rows.iloc[:half]).to_parquet(directory / "logs" / "part-0000.parquet", index=False)
    logged(champion, rows.iloc[half:]).to_parquet(directory / "logs" / "part-0001.parquet", index=False)
    rows[[ID, TARGET]].to_parquet(directory / "labels.parquet", index=False)
    train.drop(columns=[TIMESTAMP, ID]).to_parquet(directory / "reference.parquet", index=False)
    joblib.dump(champion, directory / "model.pkl")
    return OwnData(directory / "logs", directory / "labels.parquet", directory / "reference.parquet", directory / "model.pkl",
                   len(rows), start + calm * every)
