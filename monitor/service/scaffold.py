"""A commented driftd configuration for one model: the inferred roles with their reasons, and every
other key of the configuration reference at driftd's current default.

The defaults are read from the configuration models themselves, so a new key or a changed
default shows up here without editing this file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr

from monitor.core.config import Defaults, NOfM
from monitor.service.roles import Roles

COMMENT_COLUMN = 48

# Why a key exists, for the reader of the generated file (keys without one get no comment).
_COMMENTS = {
    "state_url": "driftd's own state; or postgresql+psycopg://user@host/db",
    "mlflow.tracking_uri": "or http://mlflow:5000",
    "mlflow.registry_uri": "null: the tracking URI",
    "mlflow.artifact_root": "null: ./mlartifacts for a local store, the server's own for http(s)",
    "server.port": "override with the DRIFTD_PORT environment variable",
    "server.basic_auth": "{username: driftd, password_file: /run/secrets/metrics}",
    "server.tls": "{cert_file: ..., key_file: ...}",
    "logging.format": "text | json",
    "alerts.channels": "e.g. [{name: oncall, type: slack, url_file: /run/secrets/slack}]",
    "defaults": "every model inherits these (driftd's defaults)",
    "schedule": "or {cron: '*/15 * * * *'}",
    "window.size": "the span of one window",
    "window.min_rows": "fewer rows wait for the next window",
    "window.max_rows": "larger windows are checked on a seeded sample",
    "window.lateness": "a window ends this long before now",
    "window.quality_span": "null: 4 x size",
    "drift.false_alarm_rate": "false dataset-drift verdicts per window with no drift, across all tests",
    "drift.dataset_rule": "any: dataset drift when any feature drifts; share: when dataset_share of them do",
    "drift.dataset_share": "with dataset_rule share: dataset drift when at least this share of features drift",
    "drift.min_effect": "effect floors below which a significant change is ignored (0: off)",
    "drift.columns": "per-column {method, threshold}",
    "policy.alert_after": "drifted windows before the alert fires",
    "policy.resolve_after": "clean windows before it resolves",
    "policy.retrain_after": "drifted windows that start a retrain",
    "policy.quality_drop": "absolute drop of the primary metric vs the champion's",
    "policy.cooldown": "between retrains of one model",
    "retrain.enabled": "needs a champion: `driftd adopt`",
    "retrain.reference_blend": "share of reference rows mixed into the training data",
    "retrain.compression": "strategies tried; the smallest passing variant wins",
    "retrain.max_quality_loss": "compressed vs uncompressed challenger",
    "retrain.min_improvement": "challenger vs champion on the same recent holdout",
}


@dataclass(frozen=True)
class Scaffold:
    """What goes into the model's section besides the roles."""

    name: str
    source: dict[str, Any]
    labels: dict[str, Any] | None
    reference: str | None
    window: dict[str, Any]  # inferred window keys (e.g. size), with `why`
    why_window: str
    header: str
    tracking_uri: str = "sqlite:///mlflow.db"


def render(scaffold: Scaffold, roles: Roles) -> str:
    lines = [*(f"# {line}" if line else "#" for line in scaffold.header.splitlines()), ""]
    lines += [
        _line(0, "state_url", "sqlite:///driftd-state.db", _COMMENTS["state_url"]),
        "mlflow:",
        _line(1, "tracking_uri", scaffold.tracking_uri, _COMMENTS["mlflow.tracking_uri"]),
        _line(1, "registry_uri", None, _COMMENTS["mlflow.registry_uri"]),
        _line(1, "artifact_root", None, _COMMENTS["mlflow.artifact_root"]),
        "server:                                         # /metrics, /healthz, /readyz",
        _line(1, "host", "127.0.0.1"),
        _raw(1, "port", "${DRIFTD_PORT:-9108}", _COMMENTS["server.port"]),
        _line(1, "basic_auth", None, _COMMENTS["server.basic_auth"]),
        _line(1, "tls", None, _COMMENTS["server.tls"]),
        "logging:",
        _line(1, "level", "INFO"),
        _line(1, "format", "text", _COMMENTS["logging.format"]),
        "alerts:",
        _line(1, "channels", [], _COMMENTS["alerts.channels"]),
        "",
        _raw(0, "defaults", "", _COMMENTS["defaults"]).rstrip(),
        *_section(Defaults(), 1, ""),
        "",
        "models:",
        *_model(scaffold, roles),
    ]
    return "\n".join(lines) + "\n"


def _model(scaffold: Scaffold, roles: Roles) -> list[str]:
    lines = [f"  - name: {_yaml(scaffold.name)}",
             _line(2, "registered_model", scaffold.name, "the MLflow registered model; its @champion is monitored")]
    if scaffold.reference:
        lines.append(_line(2, "reference", scaffold.reference, "the training data, used until the registry has a champion"))
    lines.append(_line(2, "source", scaffold.source))
    if scaffold.labels:
        lines.append(_line(2, "labels", scaffold.labels, "delayed labels, joined on columns.id"))
    lines.append("    columns:                                    # why each column has its role: `driftd init` says")
    for role in ("timestamp", "id", "prediction", "probability", "target"):
        column = getattr(roles, role)
        lines.append(_line(3, role, column, roles.reason(column) if column else _absent(role)))
    for kind in ("numerical", "categorical"):
        columns = getattr(roles, kind)
        if not columns:
            lines.append(_line(3, kind, []))
            continue
        lines.append(f"      {kind}:")
        lines += [_item(4, column, roles.reason(column)) for column in columns]
    ignored = [c for c in roles.choices if c.role == "ignored"]
    if ignored:
        lines.append("      # not monitored:")
        lines += [f"      #   {c.column}: {c.reason}" for c in ignored]
    lines.append(_line(2, "task", roles.task, roles.task_reason))
    if scaffold.window:
        lines.append(_line(2, "window", scaffold.window, scaffold.why_window))
    lines.append(_line(2, "alerts", [], "channel names from alerts.channels"))
    return lines


def _absent(role: str) -> str:
    return {
        "probability": "none found: prediction drift is measured on the prediction",
        "target": "none found: no quality metrics and no retraining without labels (name it with --target)",
    }.get(role, "")


def _section(model: BaseModel, depth: int, path: str) -> list[str]:
    lines = []
    for key in type(model).model_fields:
        value = getattr(model, key)
        dotted = f"{path}.{key}" if path else key
        comment = _COMMENTS.get(dotted) or _COMMENTS.get(key)
        if isinstance(value, BaseModel) and key != "schedule" and not _is_leaf(value):
            lines.append(_raw(depth, key, "", comment).rstrip())
            lines += _section(value, depth + 1, dotted)
        else:
            lines.append(_line(depth, key, _plain(value), comment))
    return lines


def _is_leaf(model: BaseModel) -> bool:
    """Small models read best on one line: {method: wasserstein, threshold: 0.1}."""
    return all(not isinstance(getattr(model, k), BaseModel) for k in type(model).model_fields) and len(type(model).model_fields) <= 2


def _plain(value: Any) -> Any:
    """A configuration value as the YAML a person would write."""
    if isinstance(value, BaseModel):
        return {k: _plain(getattr(value, k)) for k in type(value).model_fields if getattr(value, k) is not None}
    if isinstance(value, timedelta):
        return _duration(value)
    if isinstance(value, NOfM):
        return str(value)
    if isinstance(value, SecretStr):
        return "${SECRET}"
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _yaml(value: Any) -> str:
    text = yaml.safe_dump(value, allow_unicode=True, default_flow_style=True, sort_keys=False, width=10_000)
    return text.strip().removesuffix("...").strip()


def _line(depth: int, key: str, value: Any, comment: str | None = None) -> str:
    return _raw(depth, key, _yaml(_plain(value)), comment)


def _raw(depth: int, key: str, text: str, comment: str | None = None) -> str:
    line = f"{'  ' * depth}{_yaml(key)}: {text}".rstrip() if text != "" else f"{'  ' * depth}{_yaml(key)}:"
    return _commented(line, comment)


def _item(depth: int, value: str, comment: str | None) -> str:
    return _commented(f"{'  ' * depth}- {_yaml(value)}", comment)


def _commented(line: str, comment: str | None) -> str:
    if not comment:
        return line
    return f"{line.ljust(COMMENT_COLUMN - 1)} # {comment}"
