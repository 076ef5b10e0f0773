"""The one opener of a model's sources: whatever it opened is closed, also when a second open fails."""

from __future__ import annotations

import sqlite3

import pytest

from monitor.check.inputs import open_inputs, opened_inputs
from monitor.sources.base import SourceError
from monitor.sources.sql import SqlLogSource
from tests.support.data import model_config


@pytest.fixture
def closed(monkeypatch) -> list[SqlLogSource]:
    """The SQL sources closed, in order (the real close runs)."""
    seen: list[SqlLogSource] = []
    real = SqlLogSource.close

    def close(self: SqlLogSource) -> None:
        seen.append(self)
        real(self)

    monkeypatch.setattr(SqlLogSource, "close", close)
    return seen


def _db(tmp_path) -> str:
    path = tmp_path / "logs.db"
    sqlite3.connect(path).close()
    return f"sqlite:///{path}"


def test_a_labels_source_that_fails_to_open_closes_the_prediction_source(tmp_path, closed) -> None:
    model = model_config({"type": "sql", "url": _db(tmp_path), "table": "preds"},
                         labels={"type": "sql", "url": f"sqlite:///{tmp_path / 'missing.db'}", "table": "labels"})
    with pytest.raises(SourceError, match="does not exist"):
        open_inputs(model)
    assert len(closed) == 1  # the prediction source's pool, released


def test_opened_inputs_close_both_sources_and_labels_can_be_left_out(tmp_path, closed) -> None:
    model = model_config({"type": "sql", "url": _db(tmp_path), "table": "preds"},
                         labels={"type": "sql", "url": _db(tmp_path), "table": "labels"})
    with opened_inputs(model) as inputs:
        assert inputs.labels is not None and not closed
    assert closed == [inputs.source, inputs.labels]
    with opened_inputs(model, labels=False) as alone:
        assert alone.labels is None
    assert closed[-1] is alone.source
