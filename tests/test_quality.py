"""Quality metrics (monitor.check.quality) on hand-checkable windows."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from monitor.check.quality import PRIMARY_METRIC, QualityError, compute_quality, higher_is_better, quality_drop
from monitor.core.config import ModelConfig, parse_config


def model_config(tmp_path: Path, *, task: str, probability: bool = True, target: bool = True) -> ModelConfig:
    columns: dict[str, Any] = {"timestamp": "ts", "id": "id", "prediction": "prediction", "numerical": ["a"]}
    if probability:
        columns["probability"] = "probability"
    if target:
        columns["target"] = "target"
    model = {"name": "m", "source": {"type": "files", "path": "logs/*.parquet"}, "columns": columns, "task": task}
    return parse_config({"models": [model]}, base_dir=tmp_path).models[0]


def test_binary_classification_on_labelled_rows(tmp_path):
    window = pd.DataFrame(
        {
            "target": [1, 0, 1, 1, np.nan, 0],  # row 4's label has not arrived
            "prediction": [1, 0, 0, 1, 1, 1],
            "probability": [0.9, 0.2, 0.4, 0.8, 0.7, 0.6],
        }
    )

    quality = compute_quality(window, model_config(tmp_path, task="binary_classification"))

    assert quality is not None
    assert quality.labelled_rows == 5
    assert quality.labelled_ratio == pytest.approx(5 / 6)
    # labelled rows: truth 1 0 1 1 0, predicted 1 0 0 1 1 -> TP 2, FP 1, FN 1
    assert quality.metrics["accuracy"] == pytest.approx(3 / 5)
    assert quality.metrics["f1"] == pytest.approx(2 / 3)
    # positives score 0.9 0.4 0.8, negatives 0.2 0.6: 5 of 6 pairs ranked right
    assert quality.metrics["roc_auc"] == pytest.approx(5 / 6)


def test_binary_positive_class_is_the_larger_label(tmp_path):
    window = pd.DataFrame({"target": ["yes", "yes", "no", "no"], "prediction": ["yes", "no", "no", "no"]})

    quality = compute_quality(window, model_config(tmp_path, task="binary_classification", probability=False))

    assert quality is not None
    # positive "yes": TP 1, FN 1, FP 0 -> f1 = 2/3 (with "no" positive it would be 0.8)
    assert quality.metrics["f1"] == pytest.approx(2 / 3)
    assert "roc_auc" not in quality.metrics


def test_roc_auc_is_left_out_when_one_class_is_present(tmp_path):
    window = pd.DataFrame({"target": [1.0, 1.0, 1.0], "prediction": [1, 0, 1], "probability": [0.9, 0.3, 0.6]})

    quality = compute_quality(window, model_config(tmp_path, task="binary_classification"))

    assert quality is not None
    assert quality.metrics["accuracy"] == pytest.approx(2 / 3)
    assert "roc_auc" not in quality.metrics


def test_multiclass_f1_is_macro_averaged(tmp_path):
    window = pd.DataFrame({"target": ["a", "a", "b", "b", "c", "c"], "prediction": ["a", "a", "b", "c", "c", "c"]})

    quality = compute_quality(window, model_config(tmp_path, task="multiclass_classification", probability=False))

    assert quality is not None
    assert quality.metrics["accuracy"] == pytest.approx(5 / 6)
    # per-class f1: a 1.0, b 2/3 (P 1, R 1/2), c 0.8 (P 2/3, R 1)
    assert quality.metrics["f1"] == pytest.approx((1.0 + 2 / 3 + 0.8) / 3)
    assert set(quality.metrics) == {"accuracy", "f1"}


def test_regression_rmse_and_mae(tmp_path):
    window = pd.DataFrame({"target": [3.0, 5.0, np.nan, 2.0, 10.0], "prediction": [4.0, 3.0, 8.0, 2.0, 13.0]})

    quality = compute_quality(window, model_config(tmp_path, task="regression", probability=False))

    assert quality is not None
    assert quality.labelled_rows == 4 and quality.labelled_ratio == pytest.approx(0.8)
    # errors 1, -2, 0, 3
    assert quality.metrics["mae"] == pytest.approx(1.5)
    assert quality.metrics["rmse"] == pytest.approx(math.sqrt(14 / 4))


def test_no_labelled_rows_gives_none(tmp_path):
    window = pd.DataFrame({"target": [np.nan, np.nan], "prediction": [1, 0]})

    assert compute_quality(window, model_config(tmp_path, task="binary_classification", probability=False)) is None
    assert compute_quality(window, model_config(tmp_path, task="binary_classification", target=False)) is None


def test_float_labels_match_integer_predictions(tmp_path):
    # a target column with missing labels arrives as float: 1.0 must equal prediction 1
    window = pd.DataFrame({"target": [1.0, 0.0, np.nan, 1.0], "prediction": ["1", "0", "1", "0"]})

    quality = compute_quality(window, model_config(tmp_path, task="binary_classification", probability=False))

    assert quality is not None and quality.metrics["accuracy"] == pytest.approx(2 / 3)


def test_binary_task_with_three_labels_is_an_error(tmp_path):
    window = pd.DataFrame({"target": [0, 1, 2], "prediction": [0, 1, 1]})

    with pytest.raises(QualityError, match="set task: multiclass_classification"):
        compute_quality(window, model_config(tmp_path, task="binary_classification", probability=False))


def test_primary_metric_and_direction():
    assert PRIMARY_METRIC["binary_classification"] == "accuracy"
    assert PRIMARY_METRIC["multiclass_classification"] == "accuracy"
    assert PRIMARY_METRIC["regression"] == "rmse"
    assert higher_is_better("accuracy") and higher_is_better("f1") and higher_is_better("roc_auc")
    assert not higher_is_better("rmse") and not higher_is_better("mae")
    with pytest.raises(ValueError, match="unknown quality metric 'r2'"):
        higher_is_better("r2")


def test_quality_drop_is_positive_when_worse():
    assert quality_drop(0.90, 0.85, "accuracy") == pytest.approx(0.05)
    assert quality_drop(0.90, 0.95, "accuracy") == pytest.approx(-0.05)
    assert quality_drop(2.0, 2.5, "rmse") == pytest.approx(0.5)
    assert quality_drop(2.0, 1.5, "rmse") == pytest.approx(-0.5)
