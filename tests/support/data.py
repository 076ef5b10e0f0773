"""Test helpers around the synthetic prediction logs of monitor.demo.synthetic: files, configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from monitor.core.config import ModelConfig
from monitor.demo.synthetic import CATEGORICAL, COUNTRIES, DEVICES, NUMERICAL, START, columns, predictions

__all__ = ["CATEGORICAL", "COUNTRIES", "DEVICES", "NUMERICAL", "START", "columns", "model_config", "predictions", "write_parts"]


def write_parts(frame: pd.DataFrame, directory: Path, parts: int, fmt: str = "parquet") -> list[Path]:
    """Split `frame` into `parts` consecutive files (part-000.parquet, …) like a log shipper would."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, chunk in enumerate(np.array_split(np.arange(len(frame)), parts)):
        part = frame.iloc[chunk]
        path = directory / f"part-{i:03d}.{fmt}"
        if fmt == "parquet":
            part.to_parquet(path, index=False)
        elif fmt == "csv":
            part.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
        elif fmt == "jsonl":
            part.to_json(path, orient="records", lines=True, date_format="iso", date_unit="us")
        else:
            raise ValueError(f"unknown format {fmt!r}; use parquet, csv or jsonl")
        paths.append(path)
    return paths


def model_config(
    source: dict[str, object] | None = None, *, task: str = "binary_classification", target: bool = True, **overrides: object
) -> ModelConfig:
    """A validated ModelConfig for `predictions()` frames (files source at a dummy path by default)."""
    return ModelConfig.model_validate(
        {
            "name": "churn",
            "source": source or {"type": "files", "path": "/nonexistent/*.parquet"},
            "columns": columns(target=target).model_dump(),
            "task": task,
            **overrides,
        }
    )
