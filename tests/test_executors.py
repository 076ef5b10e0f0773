"""The executor plug point without a cluster: its configuration, what a remote executor ships
(a prepared reference that pickles and checks the same), and Ray staying out of the default install."""

from __future__ import annotations

import pickle
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from monitor.check.drift import prepare_reference
from monitor.check.run import Inputs, WindowSpec, run_check
from monitor.check.validate import validate_reference
from monitor.core.config import ConfigError, LocalExecutorConfig, RayExecutorConfig, parse_config
from monitor.service.executors import open_executor
from monitor.service.executors.base import CheckJob
from monitor.service.executors.local import LocalExecutor
from monitor.service.executors.ray_driver import Sealed
from monitor.service.reference import Loaded
from monitor.sources import open_source
from tests.support.data import START, model_config, predictions

ROOT = Path(__file__).resolve().parents[1]


def config(executor: dict | None = None, **extra: object):
    raw: dict = {"models": [{"name": "churn", "source": {"type": "files", "path": "/nowhere/*.parquet"},
                             "columns": {"timestamp": "ts", "id": "id", "prediction": "prediction", "numerical": ["age"]},
                             "task": "binary_classification", "reference": "/nowhere/reference.parquet"}], **extra}
    if executor is not None:
        raw["executor"] = executor
    return parse_config(raw, base_dir=Path("/"))


def test_the_default_executor_is_local():
    assert isinstance(config().executor, LocalExecutorConfig)
    assert isinstance(open_executor(config()), LocalExecutor)


def test_ray_settings_per_model_fall_back_to_the_executors_defaults():
    ray = config({"type": "ray", "address": "ray://head.svc:10001", "check": {"num_cpus": 0.5},
                  "retrain": {"num_cpus": 2, "memory": "4GiB"}, "models": {"churn": {"retrain": {"num_cpus": 4}}}}).executor
    assert isinstance(ray, RayExecutorConfig)
    assert ray.resources("churn", "check").num_cpus == 0.5
    assert ray.resources("churn", "retrain").num_cpus == 4 and ray.resources("churn", "retrain").memory is None
    assert ray.resources("other", "retrain").memory == 4 * 2**30
    assert ray.check_timeout == timedelta(minutes=10)


@pytest.mark.parametrize(("executor", "message"), [
    ({"type": "ray", "address": "http://head:8265"}, "executor.address 'http://head:8265': give auto, ray://host:port"),
    ({"type": "ray", "models": {"churm": {}}}, "executor.models names models that are not configured: ['churm']"),
    ({"type": "dask"}, "unknown executor type 'dask'; available: local, ray"),
    ({"type": "ray", "adress": "auto"}, "executor.adress"),
])
def test_a_wrong_executor_section_is_named(executor, message):
    with pytest.raises(ConfigError) as raised:
        config(executor)
    assert message in str(raised.value)


def test_settings_sent_to_a_worker_print_without_their_secrets():
    model = model_config({"type": "sql", "url": "postgresql://driftd:pw-in-transit@db:5432/logs", "table": "preds"})
    sealed = Sealed(model)
    assert "pw-in-transit" not in repr(sealed) and "pw-in-transit" not in str(sealed)
    assert "churn" in repr(sealed)
    # ...while the worker gets them whole, through the pickle.
    assert pickle.loads(pickle.dumps(sealed)).model.source.resolved_url().endswith("pw-in-transit@db:5432/logs")


def test_a_pickled_reference_checks_a_window_exactly_as_the_original(tmp_path):
    """What the Ray executor puts in the object store once per champion version: a check on the
    copy gives the original's verdicts and scores (bootstrap nulls included)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    predictions(4000, seed=7, shift=0.4, start=START).to_parquet(logs / "part-0.parquet", index=False)
    model = model_config({"type": "files", "path": str(logs / "*.parquet")}, window={"size": "1h", "min_rows": 100})
    rows = validate_reference(predictions(3000, seed=12345), model)
    prepared = prepare_reference(rows, model, "v1")
    spec = WindowSpec(since=START, until=START + timedelta(hours=1))
    inputs = Inputs(model, open_source(model.source, model.columns), None)
    try:
        first = run_check(inputs, prepared, spec, now=START + timedelta(hours=2))  # draws the bootstrap nulls
        copy = pickle.loads(pickle.dumps(prepared))
        executor = LocalExecutor()
        again = executor.check(CheckJob(model, Loaded(copy, None), spec, START + timedelta(hours=2), None, inputs))
        fresh = run_check(inputs, pickle.loads(pickle.dumps(prepare_reference(rows, model, "v1"))), spec,
                          now=START + timedelta(hours=2))
    finally:
        inputs.close()
    assert first.result.status.value in ("ok", "drift") and first.result.features
    for other in (again, fresh):
        assert other.result.features == first.result.features
        assert other.result.drifted_share == first.result.drifted_share and other.result.status == first.result.status
    assert copy.evidently.get()[1] is not None  # the Evidently Dataset is rebuilt on the copy when a report needs it


def test_the_default_install_runs_without_ray():
    """Ray is imported by its executor's driver process only: the daemon's process, with `executor: ray`
    configured and the executor opened, has not imported it."""
    code = ("import sys; from pathlib import Path; from monitor.core.config import parse_config; from monitor.service.executors import open_executor;"
            "c = parse_config({'executor': {'type': 'ray'}}, base_dir=Path('/')); e = open_executor(c);"
            "print(type(e).__name__, 'ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.stdout.split() == ["RayExecutor", "False"], done.stderr
