"""Training data for a retrain: the labelled production rows of the training window.

Rows are the model's prediction logs in `retrain.training_window` before `now`, joined with
their delayed labels (features + target only). They are split by time, never shuffled:
the oldest 60 % train (an estimator's own early stopping carves its rows out of these), the
next 20 % validate (tuning, and choosing the compressed variant: retrain.compress), and the
most recent 20 % are the holdout — the rows most like tomorrow's traffic, seen by nothing but
the gates (retrain.evaluate), so every gate is a test on rows its choice was not made on.
`retrain.reference_blend` mixes that share of the champion's reference rows into the
training split only, so the holdout stays purely recent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone

import pandas as pd

from monitor.core.config import ModelConfig

SPLIT = (0.6, 0.2, 0.2)  # train, validation, holdout — by time, oldest first


class DataError(Exception):
    """The training data cannot be assembled; the message says what to fix."""


class InsufficientData(DataError):
    """Too few labelled rows to retrain on."""

    def __init__(self, message: str, *, rows: int, needed: int) -> None:
        super().__init__(message)
        self.rows = rows
        self.needed = needed


@dataclass(frozen=True)
class TrainingData:
    train: pd.DataFrame
    validation: pd.DataFrame
    holdout: pd.DataFrame
    features: list[str]
    target: str
    since: datetime
    until: datetime
    read_rows: int  # production rows in the window, labelled or not
    labelled_rows: int  # of which carry a label
    reference_rows: int  # reference rows blended into `train`
    data_hash: str

    @property
    def fit_rows(self) -> pd.DataFrame:
        """Train + validation: the data the final model was built from."""
        return pd.concat([self.train, self.validation], ignore_index=True)


def load_training_data(model: ModelConfig, *, now: datetime | None = None, reference: pd.DataFrame | None = None) -> TrainingData:
    """Read, label, check and split the training window of `model`.

    `reference` (the champion's reference rows) is only used when `retrain.reference_blend`
    is above zero. Raises InsufficientData below `retrain.min_labelled_rows`, DataError or
    the source's SourceError / InputError on unusable input."""
    target = model.columns.target
    if target is None:
        raise DataError(f"model {model.name!r} has no columns.target: driftd needs labels to retrain; name the label column")
    until = now or datetime.now(timezone.utc)
    since = until - model.retrain.training_window
    window = _read_window(model, since, until)
    labelled = _restore_label_dtype(window[window[target].notna()], target, model)
    needed = model.retrain.min_labelled_rows
    if len(labelled) < needed:
        raise InsufficientData(
            f"only {len(labelled)} labelled rows of {len(window)} logged between {since:%Y-%m-%d %H:%M} and "
            f"{until:%Y-%m-%d %H:%M} UTC; retraining needs at least {needed} (retrain.min_labelled_rows) — "
            "wait for more labels, lengthen retrain.training_window or lower min_labelled_rows",
            rows=len(labelled),
            needed=needed,
        )
    features = list(model.columns.features)
    train, validation, holdout = split_by_time(labelled, model.columns.timestamp, model.columns.id)
    blended = _blend(model, reference, features, target, len(train))
    keep = features + [target]
    train = pd.concat([blended[keep], train[keep]], ignore_index=True) if len(blended) else train[keep].reset_index(drop=True)
    validation = validation[keep].reset_index(drop=True)
    holdout = holdout[keep].reset_index(drop=True)
    _check_classes(model, train, target)
    return TrainingData(
        train=train,
        validation=validation,
        holdout=holdout,
        features=features,
        target=target,
        since=since,
        until=until,
        read_rows=len(window),
        labelled_rows=len(labelled),
        reference_rows=len(blended),
        data_hash=frame_hash(pd.concat([train, validation, holdout], ignore_index=True)),
    )


def _read_window(model: ModelConfig, since: datetime, until: datetime) -> pd.DataFrame:
    from monitor.check.inputs import opened_inputs
    from monitor.check.labels import attach_labels
    from monitor.sources.base import WindowQuery

    cols = model.columns
    with opened_inputs(model) as inputs:
        window = inputs.source.read(WindowQuery(columns=cols.to_read(target=model.labels is None), until=until, since=since))
        return attach_labels(_validated(window, model), inputs.labels, cols)


def _validated(window: pd.DataFrame, model: ModelConfig) -> pd.DataFrame:
    from monitor.check.validate import validate_window

    return validate_window(window, model)


def split_by_time(frame: pd.DataFrame, timestamp: str, id_column: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Oldest 60 % / next 20 % / most recent 20 % of `frame`, ordered by (timestamp, id)."""
    ordered = frame.sort_values([timestamp, id_column], kind="stable")
    n = len(ordered)
    first = int(round(n * SPLIT[0]))
    second = int(round(n * (SPLIT[0] + SPLIT[1])))
    return ordered.iloc[:first], ordered.iloc[first:second], ordered.iloc[second:]


def _blend(model: ModelConfig, reference: pd.DataFrame | None, features: list[str], target: str, train_rows: int) -> pd.DataFrame:
    """Reference rows making up `reference_blend` of the blended training split (seeded sample)."""
    share = model.retrain.reference_blend
    if share <= 0 or reference is None or len(reference) == 0:
        return pd.DataFrame(columns=features + [target])
    missing = [c for c in features + [target] if c not in reference.columns]
    if missing:
        raise DataError(
            f"retrain.reference_blend is {share} but the reference of {model.name!r} lacks columns {missing}; "
            "set reference_blend: 0 or provide a reference with features and target"
        )
    usable = reference[reference[target].notna()]
    wanted = train_rows if share >= 1 else int(round(train_rows * share / (1 - share)))
    if wanted >= len(usable):
        return usable[features + [target]]
    return usable.sample(n=wanted, random_state=0)[features + [target]]


def _check_classes(model: ModelConfig, train: pd.DataFrame, target: str) -> None:
    if model.task == "regression":
        return
    classes = train[target].nunique()
    if classes < 2:
        raise InsufficientData(
            f"the {len(train)} training rows all have the same {target!r} label ({train[target].iloc[0]!r}); "
            "a classifier needs at least two classes — lengthen retrain.training_window",
            rows=len(train),
            needed=len(train),
        )


def frame_hash(frame: pd.DataFrame) -> str:
    """A short content hash of a frame (values and column names, not the index)."""
    digest = hashlib.sha256(",".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def _restore_label_dtype(labelled: pd.DataFrame, target: str, model: ModelConfig) -> pd.DataFrame:
    """A left join with missing labels makes integer classes float (1 -> 1.0); undo it so the
    model's classes, and the `proba_<class>` columns it serves, keep the labels' own names."""
    column = labelled[target]
    if model.task == "regression" or not pd.api.types.is_float_dtype(column) or column.empty:
        return labelled
    if (column == column.round()).all():
        return labelled.assign(**{target: column.astype("int64")})
    return labelled
