"""Start a real Prometheus and Alertmanager on loopback for integration tests.

Both context managers bind free 127.0.0.1 ports, keep all state under the test's
tmp_path, poll /-/ready instead of sleeping, and always terminate the server on exit.
Binaries come from the Debian packages installed by `make system-deps`.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import yaml

T = TypeVar("T")

# Debian ships Alertmanager as `prometheus-alertmanager`; upstream tarballs as `alertmanager`.
_BINARIES = {
    "prometheus": ("prometheus",),
    "alertmanager": ("alertmanager", "prometheus-alertmanager"),
}
_START_TIMEOUT = 30.0
_START_ATTEMPTS = 3  # free_port() can race with another process grabbing the port


def find_binary(kind: str) -> str:
    """Path of the prometheus/alertmanager/promtool/amtool binary, or a clear error."""
    for name in _BINARIES.get(kind, (kind,)):
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError(f"{kind} not found on PATH: run `make system-deps`")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], T], timeout: float, interval: float = 0.2) -> T:
    """Call predicate until it returns something truthy; return that value.

    Exceptions raised by predicate count as "not yet". On timeout raises TimeoutError
    naming the last exception or falsy result, so a failing test says what it saw.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = predicate()
            if result:
                return result
            last = result
        except Exception as exc:  # noqa: BLE001 - anything short of success means "retry"
            last = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout}s; last result: {last!r}")
        time.sleep(interval)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def _serve(name: str, argv_for_port: Callable[[int], list[str]], workdir: Path) -> Iterator[str]:
    """Run a server until it answers /-/ready; yield its base URL; stop it on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    for attempt in range(1, _START_ATTEMPTS + 1):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(argv_for_port(port), stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
        try:
            if _wait_ready(proc, url):
                break
            exited = proc.poll() is not None
            log_text = _tail(log_path)
            if exited and "address already in use" in log_text and attempt < _START_ATTEMPTS:
                continue  # lost the race for the port: try another one
            raise RuntimeError(
                f"{name} did not become ready at {url} "
                f"({'exited with ' + str(proc.returncode) if exited else 'timed out'}); "
                f"last lines of {log_path}:\n{log_text}"
            )
        except BaseException:
            _stop(proc)
            raise
    try:
        yield url
    finally:
        _stop(proc)


def _wait_ready(proc: subprocess.Popen, url: str) -> bool:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    return False


@contextlib.contextmanager
def start_alertmanager(config_path: Path, tmp_path: Path) -> Iterator[str]:
    """Run Alertmanager with config_path; yield its base URL (http://127.0.0.1:PORT)."""
    workdir = Path(tmp_path) / "alertmanager"
    binary = find_binary("alertmanager")

    def argv(port: int) -> list[str]:
        return [
            binary,
            f"--config.file={Path(config_path).resolve()}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            # empty = no clustering; otherwise every instance binds 0.0.0.0:9094
            "--cluster.listen-address=",
        ]

    with _serve("alertmanager", argv, workdir) as url:
        yield url


def prometheus_config(
    scrape_targets: list[str],
    rule_files: list[Path],
    alertmanager_url: str | None,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
) -> dict[str, Any]:
    """The prometheus.yml start_prometheus writes: job `driftd` scraping scrape_targets."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
        "rule_files": [str(Path(p).resolve()) for p in rule_files],
        "scrape_configs": [{"job_name": "driftd", "static_configs": [{"targets": list(scrape_targets)}]}],
    }
    if alertmanager_url:
        parts = urlsplit(alertmanager_url)
        am: dict[str, Any] = {"scheme": parts.scheme or "http", "static_configs": [{"targets": [parts.netloc]}]}
        if parts.path.strip("/"):
            am["path_prefix"] = parts.path
        config["alerting"] = {"alertmanagers": [am]}
    return config


@contextlib.contextmanager
def start_prometheus(
    scrape_targets: list[str],
    rule_files: list[Path],
    alertmanager_url: str | None,
    tmp_path: Path,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
) -> Iterator[str]:
    """Run Prometheus scraping scrape_targets ("host:port") as job `driftd`; yield its base URL."""
    config = prometheus_config(scrape_targets, rule_files, alertmanager_url, scrape_interval, evaluation_interval)
    with start_prometheus_with(config, tmp_path) as url:
        yield url


@contextlib.contextmanager
def start_prometheus_with(config: dict[str, Any], tmp_path: Path) -> Iterator[str]:
    """Run Prometheus with a whole prometheus.yml given as a dict; yield its base URL."""
    workdir = Path(tmp_path) / "prometheus"
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    binary = find_binary("prometheus")

    def argv(port: int) -> list[str]:
        return [
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            # default 1m: a notification dropped before Alertmanager was reachable would wait that long
            "--rules.alert.resend-delay=1s",
        ]

    with _serve("prometheus", argv, workdir) as url:
        yield url


def query(prom_url: str, promql: str) -> list[dict[str, Any]]:
    """Instant query; returns data.result. Raises on HTTP or PromQL errors."""
    resp = httpx.get(f"{prom_url}/api/v1/query", params={"query": promql}, timeout=10.0)
    body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
    if resp.status_code != 200 or body.get("status") != "success":
        raise RuntimeError(f"query {promql!r} failed ({resp.status_code}): {body.get('error') or resp.text[:500]}")
    result = body["data"]["result"]
    # scalar/string results come back as [ts, value]; wrap them so the return type is always a list of dicts
    return result if body["data"]["resultType"] in ("vector", "matrix") else [{"value": result}]


# Grafana's built-in interval/range variables, substituted with values Prometheus accepts.
DEFAULT_SUBSTITUTIONS = {
    "__rate_interval": "1m",
    "__interval_ms": "15000",
    "__interval": "15s",
    "__range_s": "3600",
    "__range_ms": "3600000",
    "__range": "1h",
}


def substitute(expr: str, substitutions: dict[str, str]) -> str:
    """Replace $name, ${name} and ${name:format} for every name in substitutions."""
    names = sorted(substitutions, key=len, reverse=True)  # $__range_s before $__range
    pattern = re.compile(
        r"\$\{(" + "|".join(map(re.escape, names)) + r")(?::[^}]*)?\}"
        r"|\$(" + "|".join(map(re.escape, names)) + r")(?![A-Za-z0-9_])"
    )
    return pattern.sub(lambda m: substitutions[m.group(1) or m.group(2)], expr)


def _normalise(substitutions: dict[str, str]) -> dict[str, str]:
    # accept "model", "$model" and "${model}" as keys alike
    given = {k.lstrip("$").strip("{}"): v for k, v in substitutions.items()}
    return {**DEFAULT_SUBSTITUTIONS, **given}


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels") or [])  # collapsed rows nest their panels


def panel_queries(dashboard: dict[str, Any], substitutions: dict[str, str]) -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel, including those inside rows.

    substitutions maps variable names (e.g. {"model": ".*"}; "$model" works too) to values; Grafana's
    interval/range variables default to DEFAULT_SUBSTITUTIONS unless given.
    """
    subs = _normalise(substitutions)
    return [
        (panel.get("title", ""), substitute(target["expr"], subs))
        for panel in walk_panels(dashboard.get("panels", []))
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def annotation_queries(dashboard: dict[str, Any], substitutions: dict[str, str]) -> list[tuple[str, str]]:
    """(annotation name, expr) for every Prometheus annotation query, substituted like panel_queries."""
    subs = _normalise(substitutions)
    return [
        (a.get("name", ""), substitute(a.get("expr") or a.get("target", {}).get("expr", ""), subs))
        for a in dashboard.get("annotations", {}).get("list", [])
        if a.get("expr") or a.get("target", {}).get("expr")
    ]


# --- PromQL helpers for static checks of dashboards and rules ---------------------------

# The metric names contract (DESIGN.md): dashboards and rules may reference only these.
DRIFTD_METRICS = frozenset({
    "driftd_checks_total",
    "driftd_last_check_timestamp_seconds",
    "driftd_window_rows",
    "driftd_feature_drift_score",
    "driftd_feature_drifted",
    "driftd_drifted_features_ratio",
    "driftd_dataset_drifted",
    "driftd_prediction_drift_score",
    "driftd_model_quality",
    "driftd_labelled_rows_ratio",
    "driftd_retrains_total",
    "driftd_champion_info",
    "driftd_model_size_bytes",
    "driftd_source_errors_total",
    "driftd_alerts_total",
    "driftd_build_info",
    "driftd_check_interval_seconds",
    "driftd_quality_drop",
    "driftd_quality_drop_threshold",
    "driftd_late_rows_total",
    "driftd_null_timestamp_rows",
    "driftd_feature_p_value",
    "driftd_feature_missing_share",
    "driftd_feature_unseen_share",
    "driftd_alert_firing",
    "driftd_leader",
    "driftd_estimated_quality",
    "driftd_estimated_quality_lower",
    "driftd_estimated_quality_upper",
    "driftd_estimation_error",
    "driftd_multivariate_drift_auroc",
    "driftd_multivariate_drift_p_value",
})
DRIFTD_HISTOGRAMS = frozenset({"driftd_check_duration_seconds", "driftd_retrain_duration_seconds"})
# Histograms exist only as their _bucket/_sum/_count series; `up` comes from Prometheus.
ALLOWED_SERIES = DRIFTD_METRICS | {
    h + suffix for h in DRIFTD_HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")
} | {"up"}

_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
    "and", "or", "unless", "atan2", "inf", "nan",
}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names selected by a PromQL expression (a lexer-level approximation).

    Drops strings, label matchers, ranges, grouping label lists, offsets and numbers,
    then keeps identifiers that are not keywords or function/aggregation calls.
    """
    s = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s, flags=re.I)
    s = re.sub(r"\boffset\s+-?\S+", " ", s, flags=re.I)
    s = re.sub(r"(?<![\w:])\d[\w.]*", " ", s)  # numbers and durations (1e3, 0.95, 5m)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][\w:]*", s):
        if s[m.end():].lstrip().startswith("(") or m.group(0).lower() in _KEYWORDS:
            continue
        names.add(m.group(0))
    return names
