"""Input validation at the edge: a window or reference frame is usable for drift, or the user
learns exactly which column is wrong and how.

A usable frame comes back with numerical columns as float64 (Evidently mishandles the
nullable Int64/Float64 dtypes) and categorical columns as Python strings in object columns,
NaN kept as NaN. Too few rows is not an error here: the caller reports insufficient_data.

A streamed window (monitor.check.stream) is cast batch by batch with `validate_batch` (categorical
text stays Arrow-backed there) and judged as a whole with `window_problems`, on counts taken
over every row: the same verdicts and messages as `validate_window` on the whole frame.
Every cast is vectorised: no Python call per value on the usual types.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from monitor.core.config import ModelConfig

NAN_FLOOD_SHARE = 0.5  # more missing (NaN or inf) than this in a feature means the logging is broken, not drift
_EXACT_INT = 2.0**53  # whole floats below this convert to int64 exactly


@dataclass(frozen=True)
class BadValues:
    """Values of a column that cannot be used: how many, and the first one seen."""

    count: int
    sample: object


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
    error = _keyless({key: int(frame[key].isna().sum()) for key in (cols.timestamp, cols.id)}, model)
    if error:
        raise error
    return frame


def validate_batch(frame: pd.DataFrame, model: ModelConfig, *, require: bool = True) -> tuple[pd.DataFrame, dict[str, BadValues]]:
    """One batch of a streamed window, cast as validate_window casts a whole one, except that
    categorical text stays as it came when it is already text (Arrow-backed strings stay
    Arrow-backed). Returns the non-numeric values found per numerical column; the verdict on
    the window comes from `window_problems` once every batch has been seen.
    Raises InputError for missing columns (no later batch can repair those); `require=False`
    casts the columns present (monitor.check.stream has checked the batch they were taken from)."""
    cols = model.columns
    required = [cols.timestamp, cols.id, cols.prediction, *cols.features, *[c for c in (cols.probability,) if c]]
    if require:
        _require(frame, required, f"the window of model {model.name!r}")
    return _cast(frame, model, keep_text=True)


def window_problems(model: ModelConfig, rows: int, nulls: Mapping[str, int], bad: Mapping[str, BadValues],
                    infinite: Mapping[str, int] | None = None, outside: BadValues | None = None) -> InputError | None:
    """The verdict validate_window gives a window, from counts over all its rows: `nulls` per
    feature and key column (null/NaN after casting), `infinite` the ±inf per numerical column,
    `bad` the non-numeric values per column, `outside` the probabilities outside [0, 1]."""
    what = f"the window of model {model.name!r}"
    if rows == 0:
        return InputError(f"{what} is empty: there are no rows to check")
    infinite = infinite or {}
    problems = [(name, _non_numeric(name, b, rows)) for name, b in bad.items() if b.count]
    flagged = {name for name, _ in problems}
    problems += [(c, p) for c in model.columns.features if c not in flagged
                 for p in [_missing_problem(nulls[c] + infinite.get(c, 0), infinite.get(c, 0), rows, c)] if p]
    probability = model.columns.probability
    if probability and probability not in flagged and outside is not None:
        problem = _probability_problem(outside, rows, probability)
        if problem:
            problems.append((probability, problem))
    if problems:
        return _unusable(what, problems)
    return _keyless({key: nulls[key] for key in (model.columns.timestamp, model.columns.id)}, model)


def _keyless(empty: Mapping[str, int], model: ModelConfig) -> InputError | None:
    for key, count in empty.items():
        if count:
            return InputError(
                f"{count} rows of the window of model {model.name!r} have no {key!r}; "
                "every logged prediction needs a timestamp and an id",
                column=key,
            )
    return None


def validate_reference(frame: pd.DataFrame, model: ModelConfig) -> pd.DataFrame:
    """Check a model's reference data (training/validation set): features must all be there;
    prediction, probability and target are cast when present."""
    return _validated(frame, model, list(model.columns.features), what=f"the reference data of model {model.name!r}")


def _validated(frame: pd.DataFrame, model: ModelConfig, required: list[str], what: str) -> pd.DataFrame:
    _require(frame, required, what)
    out, bad = _cast(frame, model, keep_text=False)
    problems = [(name, _non_numeric(name, b, len(frame))) for name, b in bad.items()]
    problems += [(c, p) for c in model.columns.features if c not in bad for p in [_nan_problem(out[c], c)] if p]
    probability = model.columns.probability
    if probability and probability in out.columns and probability not in bad:
        problem = _probability_problem(outside_unit(out[probability]), len(out), probability)
        if problem:
            problems.append((probability, problem))
    if problems:
        raise _unusable(what, problems)
    return out


def _require(frame: pd.DataFrame, required: list[str], what: str) -> None:
    if frame.empty:
        raise InputError(f"{what} is empty: there are no rows to check")
    require_columns(list(frame.columns), required, what)


def require_columns(present: Sequence[str], required: Sequence[str], what: str) -> None:
    """Raise InputError naming every column of `required` not in `present`."""
    missing = [c for c in required if c not in present]
    if missing:
        raise InputError(
            f"{what} lacks column(s) {', '.join(repr(c) for c in missing)} (it has: {', '.join(map(str, present))}); "
            "fix `columns` in the configuration or the logging",
            column=missing[0],
            columns=missing,
        )


def numeric_columns(model: ModelConfig) -> list[str]:
    """The columns validation casts to float64: numerical features, the probability, and for
    regression the prediction and target."""
    cols = model.columns
    numeric = [*cols.numerical, *[c for c in (cols.probability,) if c]]
    if model.task == "regression":
        numeric += [c for c in (cols.prediction, cols.target) if c]
    return numeric


def _cast(frame: pd.DataFrame, model: ModelConfig, *, keep_text: bool) -> tuple[pd.DataFrame, dict[str, BadValues]]:
    cols = model.columns
    numeric = [c for c in numeric_columns(model) if c in frame.columns]
    out = frame.copy()
    bad: dict[str, BadValues] = {}
    for name in numeric:
        values, problem = _as_float(out[name])
        out[name] = values
        if problem:
            bad[name] = problem
    for name in cols.categorical:
        if name in out.columns:
            out[name] = _as_text(out[name], keep_text=keep_text)
    for label in (cols.prediction, cols.target):
        if label and label in out.columns and label not in numeric:
            out[label] = _without_nullable(out[label])
    return out, bad


def _unusable(what: str, problems: list[tuple[str, str]]) -> InputError:
    return InputError(
        f"{what} has unusable columns:\n" + "\n".join(f"  - {p}" for _, p in problems),
        column=problems[0][0],
        columns=[c for c, _ in problems],
    )


def _non_numeric(name: str, bad: BadValues, rows: int) -> str:
    return (
        f"{name!r} is listed as numerical but holds non-numeric values such as {bad.sample!r} "
        f"({bad.count} of {rows} rows); fix the logging, or list it under categorical"
    )


def _as_float(series: pd.Series) -> tuple[pd.Series, BadValues | None]:
    """The column as float64, or the values that are not numeric (the column then comes back as it was)."""
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return series.astype("float64"), None
    converted = pd.to_numeric(series.astype(object), errors="coerce").astype("float64")
    bad = series.notna() & converted.isna()
    if bad.any():
        return series, BadValues(int(bad.sum()), series[bad].iloc[0])
    return converted, None


def _as_text(series: pd.Series, *, keep_text: bool = False) -> pd.Series:
    """Python strings in an object column; NaN stays NaN; whole floats (7.0 from a gappy int
    column) become '7' so they match the same code logged as an int. With `keep_text`, a
    column that is already text is returned as it is (Arrow-backed strings stay so).

    Vectorised for text, integer and float columns; anything else (mixed Python objects)
    falls back to converting value by value."""
    if isinstance(series.dtype, pd.StringDtype) or (
            isinstance(series.dtype, pd.ArrowDtype) and _is_arrow_text(series.dtype)):
        if keep_text:
            return series
        return pd.Series(series.to_numpy(dtype=object, na_value=np.nan), index=series.index, name=series.name, dtype=object)
    values = series.to_numpy(dtype=object) if series.dtype.kind not in "iuf" else series.to_numpy()
    present = pd.notna(values)
    out = np.full(len(values), np.nan, dtype=object)
    text = _texts(values[present])
    if text is None:  # mixed Python objects: the slow, exact way
        text = np.array([_text(v) for v in values[present]], dtype=object)
    out[present] = text
    return pd.Series(out, index=series.index, name=series.name, dtype=object)


def _is_arrow_text(dtype: pd.ArrowDtype) -> bool:
    import pyarrow as pa

    return pa.types.is_string(dtype.pyarrow_dtype) or pa.types.is_large_string(dtype.pyarrow_dtype)


def _texts(values: np.ndarray) -> np.ndarray | None:
    """`values` (no missing ones) as an object array of str, or None when no vectorised rule applies."""
    if values.dtype.kind in "iu":
        return values.astype(str).astype(object)
    if values.dtype.kind == "f":
        return _float_texts(values)
    kind = pd.api.types.infer_dtype(values, skipna=False)
    if kind in ("string", "empty"):
        return values
    if kind == "integer":
        try:
            return values.astype(np.int64).astype(str).astype(object)
        except OverflowError:
            return None
    if kind in ("floating", "mixed-integer-float"):
        return _float_texts(values.astype(np.float64))
    return None


def _float_texts(values: np.ndarray) -> np.ndarray | None:
    whole = np.isfinite(values) & (np.floor(values) == values)
    if (np.abs(values[whole]) >= _EXACT_INT).any():
        return None  # huge whole floats: let Python print their exact integer value
    out = values.astype(str).astype(object)  # numpy prints floats as Python's str() does (shortest repr)
    out[whole] = values[whole].astype(np.int64).astype(str).astype(object)
    return out


def _text(value: object) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


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
    infinite = int(np.isinf(series.to_numpy()).sum()) if series.dtype == np.float64 else 0
    return _missing_problem(int(missing.sum()), infinite, len(missing), name)


def _missing_problem(missing: int, infinite: int, rows: int, name: str) -> str | None:
    """The NaN-flood verdict from counts: `missing` null/NaN/inf values (`infinite` of them inf) in `rows`."""
    share = missing / rows if rows else 0.0
    what = f"NaN or inf ({infinite} infinite)" if infinite else "NaN"
    if share == 1.0:
        return f"{name!r} is empty (all values are {what}); check the logging of this feature"
    if share > NAN_FLOOD_SHARE:
        return (
            f"{name!r} is {share:.0%} missing: {what} (more than {NAN_FLOOD_SHARE:.0%}); "
            "the feature is probably no longer logged correctly"
        )
    return None


def outside_unit(series: pd.Series) -> BadValues:
    """The probabilities outside [0, 1] in a float64 column: how many, and the first one."""
    values = series.to_numpy()
    outside = ~np.isnan(values) & ((values < 0) | (values > 1))
    return BadValues(int(outside.sum()), float(values[outside][0]) if outside.any() else None)


def _probability_problem(outside: BadValues, rows: int, name: str) -> str | None:
    if not outside.count:
        return None
    return (
        f"{name!r} is the probability column but {outside.count} of {rows} values lie outside [0, 1] "
        f"(such as {outside.sample!r}); log the positive class's probability, not a score or logit, "
        "or remove columns.probability"
    )
