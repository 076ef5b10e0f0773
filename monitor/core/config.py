"""The driftd configuration: one YAML file, validated with pydantic.

Unknown keys are errors, `${VAR}` / `${VAR:-default}` expand from the environment, secrets
come from the environment or `*_file` paths, and `defaults` are deep-merged into each model.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import ByteSize, Field, SecretStr, SerializeAsAny, ValidationError, field_validator, model_validator

# The value types (monitor.core.config_types) and a model's sections (monitor.core.config_model)
# live beside this module; everything is importable from here, as the rest of driftd does.
from monitor.core.config_model import (
    CALIBRATED_METHODS,
    DRIFT_METHODS,
    MIN_ROWS_FLOOR,
    MODEL_NAME_MAX_LENGTH,
    Columns,
    Drift,
    Estimation,
    FilesSource,
    Method,
    MinEffect,
    ModelConfig,
    Multivariate,
    Policy,
    RetrainOptions,
    Schedule,
    Source,
    SourceConfig,
    SqlSource,
    Strategy,
    Task,
    Window,
)
from monitor.core.config_types import (
    ConfigError,
    Duration,
    NOfM,
    NOfMField,
    PluginConfig,
    PositiveDuration,
    SecretURL,
    Strict,
    _exactly_one,
    _read_secret_file,
    _section_of,
    parse_duration,
    parse_n_of_m,
)
from monitor.core.plugins import CHANNELS, EXECUTORS, SOURCES, PluginError
from monitor.core.redact import literal_secret

__all__ = ["ConfigError", "parse_duration", "Duration", "PositiveDuration", "NOfM", "parse_n_of_m", "NOfMField", "Strict",
           "SecretURL", "PluginConfig", "SourceConfig", "FilesSource", "SqlSource", "Source", "Columns", "Schedule",
           "MIN_ROWS_FLOOR", "Window", "DRIFT_METHODS", "CALIBRATED_METHODS", "Method", "MinEffect", "Multivariate",
           "Drift", "Policy", "Strategy", "RetrainOptions", "Task", "Estimation", "MODEL_NAME_MAX_LENGTH", "ModelConfig",
           "MLflowConfig", "BasicAuth", "TLS", "Server", "Logging", "Channel", "ChannelSection", "Alerts", "Defaults",
           "DaemonOptions", "Config", "parse_config", "load_config"]


# --- service-wide sections ---------------------------------------------------------------


class MLflowConfig(Strict):
    tracking_uri: str = "sqlite:///mlflow.db"
    registry_uri: str | None = None
    # Where experiments driftd creates keep their artifacts. Default: `mlartifacts` beside the
    # config for a local store; the server's own default (None) for an http(s) tracking server.
    artifact_root: str | None = None


class BasicAuth(Strict):
    username: str
    password: SecretStr | None = None
    password_file: Path | None = None

    @model_validator(mode="after")
    def _one(self) -> BasicAuth:
        _exactly_one(self, "password", "password_file", hint=" (from ${VAR})")
        return self

    def resolved_password(self) -> str:
        if self.password is not None:
            return self.password.get_secret_value()
        assert self.password_file is not None
        return _read_secret_file(self.password_file)


class TLS(Strict):
    cert_file: Path
    key_file: Path


class Server(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=9108, ge=0, le=65535)
    basic_auth: BasicAuth | None = None
    tls: TLS | None = None


class Logging(Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class Channel(SecretURL, PluginConfig):
    """An alert channel's section; a channel plug-in with settings of its own subclasses it."""

    name: str
    timeout: PositiveDuration = timedelta(seconds=5)
    send_resolved: bool = True

    @field_validator("type")
    @classmethod
    def _registered(cls, value: str) -> str:
        if value not in CHANNELS.names():
            raise PluginError(f"unknown alert channel type {value!r}; available: {', '.join(CHANNELS.names())}")
        return value


ChannelSection = Annotated[SerializeAsAny[Channel], _section_of(CHANNELS, Channel)]


class Alerts(Strict):
    channels: list[ChannelSection] = []

    @model_validator(mode="after")
    def _unique(self) -> Alerts:
        names = [c.name for c in self.channels]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"channel names must be unique: {dupes}")
        return self


class Defaults(Strict):
    schedule: Schedule = Schedule(every=timedelta(minutes=15))
    window: Window = Window()
    drift: Drift = Drift()
    policy: Policy = Policy()
    retrain: RetrainOptions = RetrainOptions()
    estimation: Estimation = Estimation()


class DaemonOptions(Strict):
    """How `driftd run` schedules checks (monitor.service.scheduler)."""

    workers: int | None = Field(default=None, ge=1, description="checks at once; unset: two per core the process may use")
    jitter: float = Field(default=0.05, ge=0, le=1, description="share of the interval a run may be delayed by (seeded)")
    stagger: float = Field(default=0.5, ge=0, le=1, description="share of the interval first runs are spread over")
    seed: int = 0


class Lease(Strict):
    """Leadership among replicas sharing a PostgreSQL state store (monitor.state.lease). Unset: the ttl is
    half the shortest check interval (2s..60s), renewed every quarter ttl."""

    ttl: PositiveDuration | None = Field(default=None, description="a dead leader's lease runs out after this")
    renew_every: PositiveDuration | None = Field(default=None, description="how often the leader renews and standbys look")

    @model_validator(mode="after")
    def _renew_within_ttl(self) -> Lease:
        if self.ttl is not None and self.renew_every is not None and self.renew_every >= self.ttl:
            raise ValueError(f"renew_every ({self.renew_every.total_seconds():g}s) must be shorter than ttl ({self.ttl.total_seconds():g}s)")
        return self


class StateOptions(Strict):
    """Replicas: several `driftd run` on one PostgreSQL state_url, one leading. SQLite is single-instance."""

    instance: str | None = Field(default=None, min_length=1, max_length=253,
                                 description="this replica's name; unset: $DRIFTD_INSTANCE, else the host name")
    lease: Lease = Lease()


# --- the executor: where checks and retrains compute (monitor.executors) ----------------


class ExecutorConfig(PluginConfig):
    """Base of the `executor:` section; an executor class's `config_model` subclasses it."""

    def unknown_models(self, names: set[str]) -> list[str]:
        """Models the section has settings for that the configuration does not define."""
        return []


class LocalExecutorConfig(ExecutorConfig):
    """Checks on the daemon's worker threads or in a pool of worker processes, each retrain in an isolated child process."""

    # Worker processes computing checks (monitor.service.executors.pool): "auto" = the cores this
    # process may use; 0 = the daemon's own threads, which share one GIL (about one core's worth of
    # checks). 0 by default: `driftd check`, backfill, the demo and embedding code run a few checks,
    # where a pool costs each worker seconds of imports and ~250 MB; a daemon watching many models
    # on several cores sets "auto" (driftd.example.yaml does).
    processes: Annotated[int, Field(ge=0)] | Literal["auto"] = 0


class RayResources(Strict):
    """What one Ray task asks the cluster for (Ray schedules on it; it does not enforce it)."""

    num_cpus: float = Field(default=1.0, gt=0)
    memory: ByteSize | None = Field(default=None, gt=0)  # "2GiB", "500MB" or a number of bytes


class RayModelResources(Strict):
    check: RayResources | None = None  # None: the executor's default
    retrain: RayResources | None = None


_RAY_ADDRESS = re.compile(r"^(auto|ray://[^\s/:@]+:\d+|[^\s/:@]+:\d+)$")


class RayExecutorConfig(ExecutorConfig):
    """Checks and retrains as tasks on a Ray cluster; the daemon still schedules and records."""

    address: str = "auto"  # auto (the cluster this host belongs to), ray://host:port (Ray Client) or host:port (the GCS)
    namespace: str = "driftd"
    check_timeout: PositiveDuration = timedelta(minutes=10)  # a check waiting longer (no free CPU, lost worker) fails
    connect_timeout: PositiveDuration = timedelta(seconds=60)  # for the driver process to join the cluster (Ray retries for minutes)
    check: RayResources = RayResources()
    retrain: RayResources = RayResources()
    models: dict[str, RayModelResources] = {}

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not _RAY_ADDRESS.match(value):
            raise ValueError(f"executor.address {value!r}: give auto, ray://host:port (Ray Client) or host:port (the head's GCS)")
        return value

    def unknown_models(self, names: set[str]) -> list[str]:
        return sorted(set(self.models) - names)

    def resources(self, model: str, kind: Literal["check", "retrain"]) -> RayResources:
        chosen: RayResources | None = getattr(self.models[model], kind) if model in self.models else None
        return chosen or (self.check if kind == "check" else self.retrain)


# Any registered executor type (monitor.plugins.EXECUTORS).
ExecutorSection = Annotated[SerializeAsAny[ExecutorConfig], _section_of(EXECUTORS, ExecutorConfig)]


class Config(Strict):
    state_url: str = "sqlite:///driftd-state.db"
    state: StateOptions = StateOptions()
    mlflow: MLflowConfig = MLflowConfig()
    server: Server = Server()
    daemon: DaemonOptions = DaemonOptions()
    executor: ExecutorSection = LocalExecutorConfig(type="local")
    logging: Logging = Logging()
    alerts: Alerts = Alerts()
    defaults: Defaults = Defaults()
    models: list[ModelConfig] = []

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        lease = self.state.lease
        if (lease.ttl is not None or lease.renew_every is not None) and self.state_url.startswith("sqlite"):
            raise ValueError("state.lease needs a PostgreSQL state_url: SQLite state is single-instance "
                             "(a second `driftd run` on the same file is refused)")
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique: {dupes}")
        channels = {c.name for c in self.alerts.channels}
        for model in self.models:
            missing = sorted(set(model.alerts) - channels)
            if missing:
                raise ValueError(f"model {model.name!r} routes alerts to undefined channels {missing}")
        unknown = self.executor.unknown_models(set(names))
        if unknown:
            raise ValueError(f"executor.models names models that are not configured: {unknown}")
        return self

    def model(self, name: str) -> ModelConfig:
        for model in self.models:
            if model.name == name:
                return model
        raise ConfigError(f"no model named {name!r} in the configuration (known: {[m.name for m in self.models]})")

    def fingerprint(self) -> str:
        """A short hash of the effective configuration (secrets excluded) for run tags."""
        dumped = self.model_dump(mode="json", exclude_none=True)
        return hashlib.sha256(json.dumps(dumped, sort_keys=True, default=str).encode()).hexdigest()[:12]


# --- loading -----------------------------------------------------------------------------

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: Any, path: str, env: dict[str, str], errors: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, f"{path}.{k}" if path else str(k), env, errors) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{path}.{i}", env, errors) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    written_in = literal_secret(value)
    if written_in:
        errors.append(f"{path}: {written_in}; put it in an environment variable (${{VAR}}) or a *_file")

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        errors.append(f"{path}: environment variable {name} is not set (set it, or write ${{{name}:-default}})")
        return ""

    return _VAR.sub(substitute, value)


# A model's schedule replaces the default one whole: merging {every} with {cron} means neither.
_REPLACED_WHOLE = {"schedule"}


def _deep_merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            whole = key in _REPLACED_WHOLE or key not in base
            merged[key] = value if whole else _deep_merge(base[key], value)
        return merged
    return override


def _format(exc: ValidationError, prefix: str = "") -> list[str]:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("function-", "tagged-union")))
        loc = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "(top level)"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see the configuration reference in README.md)"
        lines.append(f"{loc}: {message}")
    return lines


def _absolutize(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative paths and sqlite URLs are taken relative to the config file, not the cwd."""

    def fix_url(url: Any) -> Any:
        if isinstance(url, str) and url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            rest = url.removeprefix("sqlite:///")
            if rest and not rest.startswith(":memory:"):
                return f"sqlite:///{(base / rest).resolve()}"
        return url

    raw["state_url"] = fix_url(raw.get("state_url", "sqlite:///driftd-state.db"))
    mlflow = raw.setdefault("mlflow", {}) or {}
    raw["mlflow"] = mlflow
    mlflow["tracking_uri"] = fix_url(mlflow.get("tracking_uri", "sqlite:///mlflow.db"))
    if mlflow.get("registry_uri"):
        mlflow["registry_uri"] = fix_url(mlflow["registry_uri"])
    root = mlflow.get("artifact_root")
    if root is None and not str(mlflow["tracking_uri"]).startswith(("http://", "https://")):
        root = "mlartifacts"
    if root is not None and not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", str(root)):  # a path, not a URI
        mlflow["artifact_root"] = str((base / str(root)).resolve())
    for model in raw.get("models") or []:
        if not isinstance(model, dict):
            continue
        for key in ("source", "labels"):
            section = model.get(key)
            if isinstance(section, dict):
                for name in _relative_paths(section.get("type")):
                    if isinstance(section.get(name), str) and not os.path.isabs(section[name]):
                        section[name] = str(base / section[name])
                section["url"] = fix_url(section.get("url")) if "url" in section else None
                if section["url"] is None:
                    del section["url"]
        if isinstance(model.get("reference"), str):
            model["reference"] = str(base / model["reference"])
    return raw


def _relative_paths(kind: Any) -> tuple[str, ...]:
    try:
        model = SOURCES.get(kind).config_model if isinstance(kind, str) else None
    except PluginError:
        return ()  # validation reports the unknown type
    return model.relative_paths if model is not None and issubclass(model, SourceConfig) else ()


def parse_config(raw: Any, *, base_dir: Path, env: dict[str, str] | None = None) -> Config:
    """Validate an already-parsed YAML document. Raises ConfigError listing every problem."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("the configuration must be a YAML mapping at the top level")
    errors: list[str] = []
    raw = _expand(raw, "", dict(os.environ) if env is None else env, errors)
    if errors:
        raise ConfigError("\n".join(errors))
    defaults = raw.get("defaults") or {}
    try:
        Defaults.model_validate(defaults)
    except ValidationError as exc:
        raise ConfigError("\n".join(_format(exc, "defaults."))) from None
    models = raw.get("models") or []
    if not isinstance(models, list):
        raise ConfigError("models: must be a list of model sections")
    raw["models"] = [_deep_merge(defaults, m) if isinstance(m, dict) else m for m in models]
    raw = _absolutize(raw, base_dir)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError("\n".join(_format(exc))) from None


def load_config(path: str | Path, env: dict[str, str] | None = None) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    return parse_config(raw, base_dir=path.resolve().parent, env=env)
