"""Input validation: usable frames come back ready for drift; bad ones say which column and why."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitor.check.validate import InputError, validate_reference, validate_window
from tests.support.data import model_config, predictions

MODEL = model_config()


def test_a_good_window_comes_back_with_drift_ready_dtypes() -> None:
    window = predictions(200, seed=1)
    window["age"] = window["age"].round().astype("Int64")  # nullable ints from a SQL driver
    window.loc[3, "age"] = pd.NA
    window["country"] = window["country"].astype("string")
    window.loc[5, "country"] = pd.NA

    out = validate_window(window, MODEL)

    assert out["age"].dtype == np.float64 and np.isnan(out.loc[3, "age"])
    missing = out.loc[5, "country"]
    assert out["country"].dtype == object and isinstance(missing, float) and np.isnan(missing)  # NaN, not pd.NA
    assert out.loc[0, "country"] == window.loc[0, "country"] and isinstance(out.loc[0, "country"], str)
    assert out["probability"].dtype == np.float64
    assert len(out) == 200


def test_numeric_text_is_accepted_and_float_codes_match_int_codes() -> None:
    window = predictions(10, seed=2)
    window["income"] = window["income"].astype(str)  # "45114.41" from a CSV export
    window["device"] = [7.0, np.nan, 3.0, 7.0, 7.0, 3.0, 7.0, 3.0, 7.0, 3.0]  # an int code column with a gap

    out = validate_window(window, MODEL)

    assert out["income"].tolist() == pytest.approx(predictions(10, seed=2)["income"].tolist())
    assert out["device"].iloc[0] == "7" and out["device"].iloc[2] == "3" and np.isnan(out["device"].iloc[1])


def test_missing_columns_are_all_listed() -> None:
    window = predictions(10).drop(columns=["income", "device", "probability"])

    with pytest.raises(InputError) as err:
        validate_window(window, MODEL)

    assert err.value.columns == ("income", "device", "probability")
    assert "'income', 'device', 'probability'" in str(err.value)


def test_non_numeric_numerical_column_is_named_with_a_sample_value() -> None:
    window = predictions(10)
    window["score"] = window["score"].astype(object)
    window.loc[4, "score"] = "n/a"

    with pytest.raises(InputError) as err:
        validate_window(window, MODEL)

    assert err.value.column == "score"
    assert "'score' is listed as numerical" in str(err.value) and "'n/a'" in str(err.value)


def test_all_nan_feature_is_named() -> None:
    window = predictions(10)
    window["country"] = np.nan

    with pytest.raises(InputError) as err:
        validate_window(window, MODEL)

    assert err.value.column == "country" and "all values are NaN" in str(err.value)


def test_nan_flood_names_the_column_and_its_share() -> None:
    window = predictions(100)
    window.loc[:72, "income"] = np.nan  # 73 of 100

    with pytest.raises(InputError) as err:
        validate_window(window, MODEL)

    assert err.value.column == "income" and "73% missing: NaN" in str(err.value)


def test_inf_flood_is_rejected_like_a_nan_flood() -> None:
    window = predictions(100)
    window.loc[:89, "income"] = np.inf  # 90 of 100: the rest must not be scored as if nothing happened

    with pytest.raises(InputError) as err:
        validate_window(window, MODEL)

    assert err.value.column == "income" and "90% missing: NaN or inf (90 infinite)" in str(err.value)


def test_probability_outside_zero_one_is_an_input_error_naming_the_column() -> None:
    window = predictions(100)
    window.loc[7, "probability"] = 1.7
    window.loc[9, "probability"] = -0.2

    with pytest.raises(InputError) as err:
        validate_window(window, MODEL)

    assert err.value.column == "probability"
    assert "2 of 100 values lie outside [0, 1] (such as 1.7)" in str(err.value)


def test_half_nan_is_still_usable() -> None:
    window = predictions(100)
    window.loc[:49, "income"] = np.nan

    assert validate_window(window, MODEL)["income"].isna().sum() == 50


def test_every_bad_column_is_reported_at_once() -> None:
    window = predictions(10)
    window["age"] = "old"
    window["device"] = None

    with pytest.raises(InputError) as err:
        validate_window(window, MODEL)

    assert err.value.columns == ("age", "device")


def test_empty_window_is_an_error_but_few_rows_are_not() -> None:
    with pytest.raises(InputError, match="empty"):
        validate_window(predictions(0), MODEL)
    assert len(validate_window(predictions(3), MODEL)) == 3


def test_rows_without_an_id_are_rejected() -> None:
    window = predictions(10)
    window["id"] = window["id"].astype("float64")
    window.loc[2, "id"] = np.nan

    with pytest.raises(InputError) as err:
        validate_window(window, MODEL)

    assert err.value.column == "id" and "1 rows" in str(err.value)


def test_reference_needs_features_but_not_timestamps_or_ids() -> None:
    reference = predictions(50, seed=3).drop(columns=["ts", "id", "prediction", "probability"])

    out = validate_reference(reference, MODEL)

    assert out["age"].dtype == np.float64 and out["target"].dtype == np.int64
    with pytest.raises(InputError, match="reference data") as err:
        validate_reference(reference.drop(columns=["age"]), MODEL)
    assert err.value.column == "age"


def test_regression_prediction_must_be_numeric() -> None:
    model = model_config(task="regression")
    window = predictions(10)
    window["prediction"] = "high"

    with pytest.raises(InputError) as err:
        validate_window(window, model)

    assert err.value.column == "prediction"
