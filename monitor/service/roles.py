"""Which column of a prediction log plays which role, inferred from a sample, with the reason.

Roles: timestamp, id, prediction, probability, target, numerical and categorical features —
or ignored. Evidence, strongest first: what the user said (`overrides`), what the model reads
(its `feature_names_in_` and which columns its pipeline encodes), the values (types, ranges,
uniqueness, order) and finally the names. Column names are taken as they are: spaces, dots,
unicode and leading digits are ordinary characters here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import pandas as pd

_Name = TypeVar("_Name", str, str | None)  # a required role's column is a str, an optional one's may be None

SMALL_INT_LEVELS = 10  # a non-negative integer column with at most this many values reads as a code
TEXT_LEVELS = 50  # more distinct text values than this (and most rows distinct): free text or an id
TASK_CLASSES = 50  # more distinct predicted values than this: regression

_TIME_NAMES = {"ts", "timestamp", "time", "datetime", "date", "event_time", "created_at", "predicted_at", "logged_at", "served_at"}
_ID_TOKENS = {"id", "uuid", "guid", "key"}
_PREDICTION_TOKENS = {"prediction", "predicted", "pred", "predict", "yhat", "y_pred", "output"}
_PROBABILITY_TOKENS = {"probability", "proba", "prob", "score", "confidence", "likelihood", "p"}
_TARGET_TOKENS = {"target", "label", "y", "y_true", "truth", "actual", "outcome", "ground_truth", "class"}


class RolesError(Exception):
    """A role could not be inferred; the message lists the candidates and the option that settles it."""


@dataclass(frozen=True)
class Choice:
    column: str
    role: str  # timestamp | id | prediction | probability | target | numerical | categorical | ignored
    reason: str


@dataclass(frozen=True)
class Roles:
    timestamp: str
    id: str
    prediction: str
    probability: str | None
    target: str | None
    numerical: list[str]
    categorical: list[str]
    task: str
    task_reason: str
    choices: list[Choice] = field(default_factory=list)

    def reason(self, column: str) -> str:
        return next((c.reason for c in self.choices if c.column == column), "")


@dataclass(frozen=True)
class Evidence:
    """What is known besides the log sample."""

    reference: pd.DataFrame | None = None  # the data the model was trained on
    labels: pd.DataFrame | None = None  # a sample of the labels source, when separate
    model_columns: Sequence[str] | None = None  # the columns the model reads, when it says
    model_categorical: Sequence[str] = ()  # of which it encodes as categories
    model_task: str | None = None
    overrides: Mapping[str, str] = field(default_factory=dict)  # role -> column, from the command line


def infer_roles(sample: pd.DataFrame, evidence: Evidence = Evidence()) -> Roles:
    """The role of every column of `sample` (a few thousand logged predictions)."""
    if sample.empty:
        raise RolesError("the sample has no rows: point init at logs that hold predictions (or pass --reference)")
    choices: dict[str, Choice] = {}
    taken: set[str] = set(evidence.model_columns or ())

    def choose(role: str, column: _Name, reason: str) -> _Name:
        if column is not None:
            choices[column] = Choice(column, role, reason)
            taken.add(column)
        return column

    ts = choose("timestamp", *_timestamp(sample, evidence, taken))
    ident = choose("id", *_id(sample, evidence, taken, ts))
    prediction = choose("prediction", *_prediction(sample, evidence, taken))
    task, task_reason = _task(sample[prediction], evidence)
    probability = choose("probability", *_probability(sample, evidence, taken, prediction, task))
    target = choose("target", *_target(sample, evidence, taken))
    numerical: list[str] = []
    categorical: list[str] = []
    for column in sample.columns:
        if column in choices:
            continue
        role, reason = _feature(sample[column], column, evidence)
        choices[column] = Choice(column, role, reason)
        (numerical if role == "numerical" else categorical if role == "categorical" else []).append(column)
    missing = [c for c in evidence.model_columns or () if c not in sample.columns]
    if missing:
        raise RolesError(f"the model reads {_names(missing)}, which the logs do not have (they have: {_names(sample.columns)}); "
                         "log every model input with each prediction")
    if not numerical and not categorical:
        raise RolesError("no column is left to monitor as a feature: every column has another role or was ignored")
    ordered = [choices[c] for c in sample.columns] + [c for name, c in choices.items() if name not in sample.columns]
    return Roles(ts, ident, prediction, probability, target, numerical, categorical, task, task_reason, ordered)


# --- the roles, one by one -------------------------------------------------------------------


def _overridden(role: str, sample: pd.DataFrame, evidence: Evidence) -> tuple[str, str] | None:
    column = evidence.overrides.get(role)
    if column is None:
        return None
    if column not in sample.columns and not (role == "target" and evidence.labels is not None and column in evidence.labels.columns):
        raise RolesError(f"--{role} {column!r}: no such column (the logs have: {_names(sample.columns)})")
    return column, f"given with --{role}"


def _timestamp(sample: pd.DataFrame, evidence: Evidence, taken: set[str]) -> tuple[str, str]:
    given = _overridden("timestamp", sample, evidence)
    if given:
        return given
    found = []
    for column in sample.columns:
        if column in taken:
            continue
        values = sample[column]
        if pd.api.types.is_datetime64_any_dtype(values):
            found.append((column, f"a datetime column ({values.dtype})"))
        elif _is_text(values):
            parsed = pd.to_datetime(values.dropna().astype(str), errors="coerce", utc=True, format="ISO8601")
            if len(parsed) and parsed.notna().mean() >= 0.99 and values.dropna().astype(str).str.contains(r"\d[-:T ]\d").all():
                found.append((column, "ISO-8601 text, parsed as times"))
    if not found:
        raise RolesError("no column holds times: name the timestamp column with --timestamp COLUMN "
                         f"(the logs have: {_names(sample.columns)})")
    found.sort(key=lambda item: (_norm(item[0]) not in _TIME_NAMES, not _has_token(item[0], {"time", "ts", "date", "at"}),
                                 -sample[item[0]].nunique()))
    column, why = found[0]
    others = f"; other time columns: {_names([c for c, _ in found[1:]])} (use --timestamp to pick one)" if len(found) > 1 else ""
    return column, f"{why}{', and a time-like name' if _norm(column) in _TIME_NAMES else ''}{others}"


def _id(sample: pd.DataFrame, evidence: Evidence, taken: set[str], ts: str) -> tuple[str, str]:
    given = _overridden("id", sample, evidence)
    if given:
        return given
    n = len(sample)
    found = []
    for column in sample.columns:
        values = sample[column]
        if column in taken or values.isna().any() or pd.api.types.is_bool_dtype(values) or pd.api.types.is_float_dtype(values):
            continue
        if pd.api.types.is_datetime64_any_dtype(values) or values.nunique() != n:
            continue
        named = _has_token(column, _ID_TOKENS) or _norm(column).endswith("id")
        increasing = pd.api.types.is_integer_dtype(values) and values[sample[ts].argsort(kind="stable")].is_monotonic_increasing
        text = not pd.api.types.is_numeric_dtype(values)
        found.append((column, named, increasing, text))
    if not found:
        raise RolesError("no column has a unique value in every sampled row: every logged prediction needs an id; "
                         "name it with --id COLUMN")
    found.sort(key=lambda f: (not f[1], not (f[2] or f[3])))
    column, named, increasing, text = found[0]
    evidence_text = [f"unique in all {n} sampled rows, never empty"]
    if pd.api.types.is_integer_dtype(sample[column]):
        evidence_text.append("integers increasing with time: a counter, not a feature" if increasing else "integers")
    if named:
        evidence_text.append("an id-like name")
    return column, ", ".join(evidence_text)


def _prediction(sample: pd.DataFrame, evidence: Evidence, taken: set[str]) -> tuple[str, str]:
    given = _overridden("prediction", sample, evidence)
    if given:
        return given
    found = [c for c in sample.columns if c not in taken and _has_token(c, _PREDICTION_TOKENS)
             and not _has_token(c, _PROBABILITY_TOKENS - {"score"})]
    if not found:
        raise RolesError("no column looks like the model's output: name it with --prediction COLUMN "
                         f"(the logs have: {_names(sample.columns)})")
    found.sort(key=lambda c: (_norm(c) not in _PREDICTION_TOKENS, len(c)))
    return found[0], "a prediction-like name" + (f" (also: {_names(found[1:])})" if len(found) > 1 else "")


def _task(prediction: pd.Series, evidence: Evidence) -> tuple[str, str]:
    given = evidence.overrides.get("task")
    if given:
        return given, "given with --task"
    if evidence.model_task:
        return evidence.model_task, "what the model is (scikit-learn's classifier/regressor, its classes)"
    values = prediction.dropna()
    levels = values.nunique()
    numeric = pd.api.types.is_numeric_dtype(values)
    if numeric and (levels > TASK_CLASSES or pd.api.types.is_float_dtype(values) and not np.allclose(values, values.round())):
        return "regression", f"the prediction takes {levels} distinct values, not whole classes"
    if levels <= 2:
        return "binary_classification", f"the prediction takes {levels} values ({_values(values)})"
    return "multiclass_classification", f"the prediction takes {levels} class values ({_values(values)})"


def _probability(sample: pd.DataFrame, evidence: Evidence, taken: set[str], prediction: str, task: str) -> tuple[str | None, str]:
    given = _overridden("probability", sample, evidence)
    if given:
        return given
    if task != "binary_classification":
        return None, ""
    predicted = sample[prediction]
    positive = predicted.max() if pd.api.types.is_numeric_dtype(predicted) else sorted(predicted.dropna().unique(), key=str)[-1]
    found = []
    for column in sample.columns:
        values = sample[column]
        if column in taken or not pd.api.types.is_float_dtype(values) or values.isna().all():
            continue
        if values.min() < 0 or values.max() > 1:
            continue
        agree = float(((values >= 0.5) == (predicted == positive)).mean())
        found.append((column, _has_token(column, _PROBABILITY_TOKENS), agree))
    # Agreement with the prediction is the stronger evidence: a feature may be a share in [0, 1] too.
    found.sort(key=lambda f: (f[2] < 0.95, not f[1], -f[2]))
    if not found or (found[0][2] < 0.95 and not found[0][1]):
        return None, ""
    column, named, agree = found[0]
    reasons = ["values within [0, 1]"]
    if agree >= 0.95:
        reasons.append(f"the prediction is (value >= 0.5) on {agree:.0%} of rows")
    if named:
        reasons.append("a probability-like name")
    return column, ", ".join(reasons)


def _target(sample: pd.DataFrame, evidence: Evidence, taken: set[str]) -> tuple[str | None, str]:
    given = _overridden("target", sample, evidence)
    if given:
        return given
    labels = evidence.labels
    if labels is not None:
        roles = {evidence.overrides.get("id"), evidence.overrides.get("timestamp")}
        rest = [c for c in labels.columns if c not in taken and c not in roles
                and not pd.api.types.is_datetime64_any_dtype(labels[c])]
        if len(rest) == 1:
            return rest[0], "the labels source's only column besides the id and timestamp"
        named = [c for c in rest if _has_token(c, _TARGET_TOKENS)]
        if len(named) == 1:
            return named[0], "a label-like name in the labels source"
        raise RolesError(f"the labels source has several candidate label columns {_names(rest)}: name it with --target COLUMN")
    named = [c for c in sample.columns if c not in taken and _has_token(c, _TARGET_TOKENS)]
    if named:
        column = sorted(named, key=lambda c: _norm(c) not in _TARGET_TOKENS)[0]
        gaps = sample[column].isna().mean()
        late = f"; {gaps:.0%} of sampled rows have no label yet" if gaps else ""
        return column, f"a label-like name{late}"
    return None, ""


def _feature(values: pd.Series, column: str, evidence: Evidence) -> tuple[str, str]:
    model = evidence.model_columns
    reference = evidence.reference
    if model is not None and column not in model:
        return "ignored", "not an input of the model"
    if reference is not None and column not in reference.columns:
        return "ignored", "not in the reference file, so its drift cannot be measured"
    kept = values.dropna()
    if kept.empty:
        return "ignored", "empty in every sampled row"
    if model is None and kept.nunique() == 1:
        return "ignored", f"constant in the sample ({kept.iloc[0]!r}): nothing to drift"
    if column in evidence.model_categorical:
        return "categorical", "the model encodes it as a category"
    if pd.api.types.is_bool_dtype(values):
        return "categorical", "true/false"
    if pd.api.types.is_datetime64_any_dtype(values):
        return "ignored", "a second time column"
    if pd.api.types.is_numeric_dtype(values):
        levels = kept.nunique()
        whole = pd.api.types.is_integer_dtype(values) or bool(np.allclose(kept, kept.round()))
        if model is None and whole and levels <= SMALL_INT_LEVELS and kept.min() >= 0:
            return "categorical", (f"whole numbers with only {levels} values ({_values(kept)}): a code, watched as a category "
                                   "(move it to numerical if it is a count)")
        if model is None and _unique(values) and pd.api.types.is_integer_dtype(values):
            return "ignored", "integers unique in every row: another identifier, not a feature"
        return "numerical", f"numbers ({values.dtype}, {levels} distinct values)"
    levels = kept.nunique()
    if model is None and levels > TEXT_LEVELS and levels > len(kept) / 2:
        return "ignored", f"text with {levels} distinct values in {len(kept)} rows: free text or an identifier"
    return "categorical", f"text with {levels} distinct values"


# --- helpers ---------------------------------------------------------------------------------


def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", str(name).lower()).strip("_")


def _has_token(name: str, tokens: set[str]) -> bool:
    norm = _norm(name)
    parts = set(norm.split("_"))
    return norm in tokens or bool(parts & tokens) or any(t in norm for t in tokens if len(t) > 3 and "_" not in t)


def _is_text(values: pd.Series) -> bool:
    return pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)


def _unique(values: pd.Series) -> bool:
    return values.notna().all() and values.nunique() == len(values)


def _values(values: pd.Series, shown: int = 4) -> str:
    levels = sorted(values.dropna().unique(), key=str)
    text = ", ".join(str(v) for v in levels[:shown])
    return text + (", …" if len(levels) > shown else "")


def _names(columns: Sequence[str] | pd.Index) -> str:
    return ", ".join(repr(str(c)) for c in columns)
