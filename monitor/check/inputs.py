"""Opening a model's inputs: its prediction-log source and, when configured, its labels source.

Every reader of a model's logs opens them here: the daemon and `driftd backfill` keep them open
across windows (`open_inputs`, closed when they stop), one-off readers — `driftd check`,
`driftd skip-window`, a retrain's training data — hold them for one read (`opened_inputs`).
SQL sources hold a connection pool, so what is opened is always closed, including the
prediction source when the labels source then fails to open.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from monitor.check.run import Inputs
from monitor.core.config import ModelConfig
from monitor.sources import open_source


def open_inputs(model: ModelConfig, *, labels: bool = True) -> Inputs:
    """The model's sources (its labels source too, when configured and `labels`); the caller closes them."""
    source = open_source(model.source, model.columns)
    try:
        label_source = open_source(model.labels, model.columns) if labels and model.labels else None
    except BaseException:
        source.close()
        raise
    return Inputs(model, source, label_source)


@contextmanager
def opened_inputs(model: ModelConfig, *, labels: bool = True) -> Iterator[Inputs]:
    """`open_inputs` for the length of a `with` block."""
    inputs = open_inputs(model, labels=labels)
    try:
        yield inputs
    finally:
        inputs.close()
