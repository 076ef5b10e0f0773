"""Input validation at the edge: a window or reference frame is usable for drift, or the user
learns exactly which column is wrong and how.

A usable frame comes back with numerical columns as float64 (Evidently mishandles the
nullable Int64/Float64 dtypes) and categorical columns as Python strings in object columns,
NaN kept as NaN. Too few rows is not an error here: the caller reports insufficient_data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from monitor.config import ModelConfig

NAN_FLOOD_SHARE = 0.5  # more missing (NaN or inf) than this in a feature means the logging is broken, not drift


class InputError(Exception):
    """Input data that cannot be checked. `column` is the first offending column (None if the
    whole frame is at fault); `columns` lists every offending column."""

    def __init__(self, message: str, column: str | None = None, columns: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.column = column
        self.columns = tuple(columns) or ((column,) if column else ())


def validate_window(frame: pd.DataFrame, model: ModelConfig) -> pd.DataFrame:
    """Check a window of prediction logs; return it with columns cast for drift computation."""
    cols = model.columns
    required = [cols.timestamp, cols.id, cols.prediction, *cols.features]
    if cols.probability:
        required.append(cols.probability)
    frame = _validated(frame, model, required, what=f"the window of model {model.name!r}")
    for key in (cols.timestamp, cols.id):
        empty = int(frame[key].isna().sum())
        if empty:
            raise InputError(
                f"{empty} rows of the window of model {model.name!r} have no {key!r}; "
                "every logged prediction needs a timestamp and an id",
                column=key,
            )
    return frame


def validate_reference(frame: pd.DataFrame, model: ModelConfig) -> pd.DataFrame:
    """Check a model's reference data (training/validation set): features must all be there;
    prediction, probability and target are cast when present."""
    return _validated(frame, model, list(model.columns.features), what=f"the reference data of model {model.name!r}")


def _validated(frame: pd.DataFrame, model: ModelConfig, required: list[str], what: str) -> pd.DataFrame:
    if frame.empty:
        raise InputError(f"{what} is empty: there are no rows to check")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(
            f"{what} lacks column(s) {', '.join(repr(c) for c in missing)} (it has: {', '.join(map(str, frame.columns))}); "
            "fix `columns` in the configuration or the logging",
            column=missing[0],
            columns=missing,
        )
    cols = model.columns
    numeric = [*cols.numerical, *[c for c in (cols.probability,) if c]]
    if model.task == "regression":
        numeric += [c for c in (cols.prediction, cols.target) if c]
    numeric = [c for c in numeric if c in frame.columns]
    out = frame.copy()
    problems: list[tuple[str, str]] = []
    for name in numeric:
        values, problem = _as_float(out[name], name)
        out[name] = values
        if problem:
            problems.append((name, problem))
    for name in cols.categorical:
        out[name] = _as_text(out[name])
    for label in (cols.prediction, cols.target):
        if label and label in out.columns and label not in numeric:
            out[label] = _without_nullable(out[label])
    bad = {name for name, _ in problems}
    problems += [(c, p) for c in cols.features if c not in bad for p in [_nan_problem(out[c], c)] if p]
    if cols.probability and cols.probability in out.columns and cols.probability not in bad:
        problem = _probability_problem(out[cols.probability], cols.probability)
        if problem:
            problems.append((cols.probability, problem))
    if problems:
        raise InputError(
            f"{what} has unusable columns:\n" + "\n".join(f"  - {p}" for _, p in problems),
            column=problems[0][0],
            columns=[c for c, _ in problems],
        )
    return out


def _as_float(series: pd.Series, name: str) -> tuple[pd.Series, str | None]:
    """The column as float64, or the reason it is not numeric (with a sample bad value)."""
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return series.astype("float64"), None
    converted = pd.to_numeric(series.astype(object), errors="coerce").astype("float64")
    bad = series.notna() & converted.isna()
    if bad.any():
        sample = series[bad].iloc[0]
        return series, (
            f"{name!r} is listed as numerical but holds non-numeric values such as {sample!r} "
            f"({int(bad.sum())} of {len(series)} rows); fix the logging, or list it under categorical"
        )
    return converted, None


def _as_text(series: pd.Series) -> pd.Series:
    """Python strings in an object column; NaN stays NaN; whole floats (7.0 from a gappy int
    column) become '7' so they match the same code logged as an int."""
    def text(value: object) -> object:
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            return str(int(value))
        return str(value)

    values = series.astype(object)
    present = values.notna()
    return values.where(~present, values[present].map(text)).where(present, np.nan).astype(object)


def _without_nullable(series: pd.Series) -> pd.Series:
    """Nullable Int64/Float64/boolean to plain numpy dtypes (float64 when there are gaps)."""
    if not isinstance(series.dtype, pd.api.extensions.ExtensionDtype) or not pd.api.types.is_numeric_dtype(series):
        return series
    if series.isna().any():
        return series.astype("float64")
    return series.astype(series.dtype.numpy_dtype)


def missing_mask(series: pd.Series) -> np.ndarray:
    """Null, NaN and +-inf: the values no drift statistic can use (inf counts like NaN)."""
    missing = series.isna().to_numpy().copy()
    if series.dtype == np.float64:
        missing |= np.isinf(series.to_numpy())
    return missing


def _nan_problem(series: pd.Series, name: str) -> str | None:
    missing = missing_mask(series)
    share = float(missing.mean()) if len(missing) else 0.0
    infinite = int(np.isinf(series.to_numpy()).sum()) if series.dtype == np.float64 else 0
    what = f"NaN or inf ({infinite} infinite)" if infinite else "NaN"
    if share == 1.0:
        return f"{name!r} is empty (all values are {what}); check the logging of this feature"
    if share > NAN_FLOOD_SHARE:
        return (
            f"{name!r} is {share:.0%} missing: {what} (more than {NAN_FLOOD_SHARE:.0%}); "
            "the feature is probably no longer logged correctly"
        )
    return None


def _probability_problem(series: pd.Series, name: str) -> str | None:
    values = series.to_numpy()
    outside = ~np.isnan(values) & ((values < 0) | (values > 1))
    if not outside.any():
        return None
    return (
        f"{name!r} is the probability column but {int(outside.sum())} of {len(values)} values lie outside [0, 1] "
        f"(such as {float(values[outside][0])!r}); log the positive class's probability, not a score or logit, "
        "or remove columns.probability"
    )
