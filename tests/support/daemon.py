"""Run the real `driftd run` as a subprocess, and feed it prediction rows in PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import yaml

from tests.support.data import CATEGORICAL, NUMERICAL, predictions
from tests.support.promstack import wait_for

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def reference_file(directory: Path, rows: int = 3000) -> Path:
    path = directory / "reference.parquet"
    predictions(rows, seed=12345).to_parquet(path, index=False)
    return path


def daemon_config(directory: Path, *, source_url: str, table: str, port: int, channels: list[dict],
                  policy: dict | None = None, every: str = "1s", extra: dict | None = None) -> Path:
    config = {
        "state_url": f"sqlite:///{directory / 'state.db'}",
        "mlflow": {"tracking_uri": f"sqlite:///{directory / 'mlflow.db'}", "artifact_root": str(directory / "artifacts")},
        "server": {"host": "127.0.0.1", "port": port},
        "logging": {"level": "DEBUG", "format": "json"},
        "alerts": {"channels": channels},
        "defaults": {
            "schedule": {"every": every},
            # No lateness: the tests read rows the moment they are committed; late ones are found by the look-back.
            "window": {"size": "1h", "min_rows": 100, "lateness": "0s"},
            "policy": {"alert_after": "2 of 3", "resolve_after": 2, "retrain_after": "3 of 3", **(policy or {})},
            "retrain": {"enabled": False},
        },
        "models": [{
            "name": "churn",
            "source": {"type": "sql", "url": source_url, "table": table},
            "reference": str(reference_file(directory)),
            "columns": {"timestamp": "ts", "id": "id", "prediction": "prediction", "probability": "probability",
                        "target": "target", "numerical": NUMERICAL, "categorical": CATEGORICAL},
            "task": "binary_classification",
            "alerts": [c["name"] for c in channels],
        }],
        **(extra or {}),
    }
    path = directory / "driftd.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class DriftdProcess:
    """`driftd run -c CONFIG` in its own process group; stderr is collected line by line."""

    def __init__(self, config: Path, port: int, env: dict[str, str] | None = None, auth: tuple[str, str] | None = None) -> None:
        self.config, self.port, self.env, self.auth = config, port, env or {}, auth
        self.lines: list[str] = []
        self.proc: subprocess.Popen | None = None

    def start(self) -> DriftdProcess:
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", **self.env}
        self.proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", "run", "-c", str(self.config)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     start_new_session=True)
        threading.Thread(target=self._collect, args=(self.proc,), daemon=True).start()
        try:
            wait_for(lambda: self.healthy() or self._dead(), timeout=90)
        except BaseException:
            self.kill()
            raise
        return self

    def _collect(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _dead(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"driftd exited with {self.proc.returncode}:\n" + "\n".join(self.lines[-30:]))
        return False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", auth=self.auth, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", auth=self.auth, timeout=5).text

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"driftd did not stop within {timeout}s of SIGTERM") from None
        return self.proc.returncode

    def output(self) -> str:
        return "\n".join(self.lines)


@contextlib.contextmanager
def running(config: Path, port: int, env: dict[str, str] | None = None,
            auth: tuple[str, str] | None = None) -> Iterator[DriftdProcess]:
    proc = DriftdProcess(config, port, env, auth).start()
    try:
        yield proc
    finally:
        if proc.proc.poll() is None:
            proc.kill()


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format, or None when absent."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None
