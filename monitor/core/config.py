"""The driftd configuration: one YAML file, validated with pydantic.

Unknown keys are errors, `${VAR}` / `${VAR:-default}` expand from the environment, secrets
come from the environment or `*_file` paths, and `defaults` are deep-merged into each model.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    SecretStr,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from monitor.core.plugins import CHANNELS, COMPRESSORS, SOURCES, PluginError, Registry
from monitor.core.redact import literal_secret


class ConfigError(Exception):
    """The configuration cannot be used; the message names each offending key path."""


# --- small value types -------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration; write e.g. 30s, 15m, 1h, 14d")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError(f"must be longer than 0s (got {_show(value)}); write e.g. 30s, 15m, 1h")
    return value


def _not_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError(f"must not be negative (got {_show(value)})")
    return value


def _show(value: timedelta) -> str:
    return f"{value.total_seconds():g}s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_not_negative)]
PositiveDuration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_positive)]


@dataclass(frozen=True)
class NOfM:
    """`2 of 3`: at least n of the last m windows."""

    n: int
    m: int

    def __str__(self) -> str:
        return f"{self.n} of {self.m}"


def parse_n_of_m(value: Any) -> NOfM:
    if isinstance(value, NOfM):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        n, m = value, value
    else:
        match = re.match(r"^\s*(\d+)\s+of\s+(\d+)\s*$", str(value))
        if not match:
            raise ValueError(f"{value!r} is not 'N of M' (e.g. '2 of 3')")
        n, m = int(match.group(1)), int(match.group(2))
    if not 1 <= n <= m:
        raise ValueError(f"'{n} of {m}' needs 1 <= N <= M")
    return NOfM(n, m)


NOfMField = Annotated[NOfM, BeforeValidator(parse_n_of_m)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


def _exactly_one(model: BaseModel, first: str, second: str, hint: str = "") -> None:
    if (getattr(model, first) is None) == (getattr(model, second) is None):
        raise ValueError(f"give exactly one of {first}{hint} or {second}")


def _read_secret_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None


class SecretURL(Strict):
    """A URL that may carry credentials: given inline (from ${VAR}) or read from `url_file`."""

    url: SecretStr | None = None
    url_file: Path | None = None

    @model_validator(mode="after")
    def _one_url(self) -> SecretURL:
        _exactly_one(self, "url", "url_file")
        return self

    def resolved_url(self) -> str:
        if self.url is not None:
            return self.url.get_secret_value()
        assert self.url_file is not None
        return _read_secret_file(self.url_file)


# --- plug-in sections --------------------------------------------------------------------


class PluginConfig(Strict):
    """A section whose `type` picks the class that implements it (monitor.core.plugins): the
    class's own `config_model`, a subclass of one of these, validates the rest."""

    type: str


def _section_of(registry: Registry[Any], base: type[PluginConfig]) -> BeforeValidator:
    def validate(value: Any) -> Any:
        if not isinstance(value, dict):
            return value  # a model already, or not a mapping: pydantic says which
        name = value.get("type")
        if not isinstance(name, str):
            raise ValueError(f"give the {registry.kind}'s type: one of {', '.join(registry.names())}")
        model = registry.get(name).config_model  # PluginError (a ValueError) lists the known types
        if not issubclass(model, base):
            raise PluginError(f"{registry.kind} type {name!r}: its config_model must subclass monitor.core.config.{base.__name__}")
        return model.model_validate(value)

    return BeforeValidator(validate)


# --- sources -----------------------------------------------------------------------------


class SourceConfig(PluginConfig):
    """Base of a prediction-log or label source's section; a source plug-in subclasses it."""

    # Keys whose relative paths are taken relative to the configuration file, not the cwd.
    relative_paths: ClassVar[tuple[str, ...]] = ()


class FilesSource(SourceConfig):
    relative_paths = ("path",)

    type: Literal["files"]
    path: str = Field(description="glob of Parquet, CSV or JSON-lines files")
    format: Literal["parquet", "csv", "jsonl"] | None = None


class SqlSource(SecretURL, SourceConfig):
    type: Literal["sql"]
    table: str | None = None
    query: str | None = None
    db_schema: str | None = Field(default=None, alias="schema")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _table_or_query(self) -> SqlSource:
        _exactly_one(self, "table", "query")
        return self


# Any registered source type; SerializeAsAny dumps a plug-in's own fields too (fingerprint).
Source = Annotated[SerializeAsAny[SourceConfig], _section_of(SOURCES, SourceConfig)]


# --- per-model sections ------------------------------------------------------------------


class Columns(Strict):
    timestamp: str
    id: str
    prediction: str
    probability: str | None = None
    target: str | None = None
    # The registered-model version that served each row, as the serving layer logs it: quality
    # is then attributed to that version (see monitor.check.attribution). Optional.
    model_version: str | None = None
    numerical: list[str] = []
    categorical: list[str] = []

    @model_validator(mode="after")
    def _distinct(self) -> Columns:
        features = self.numerical + self.categorical
        if not features:
            raise ValueError("list at least one feature under numerical or categorical")
        dupes = sorted({c for c in features if features.count(c) > 1})
        if dupes:
            raise ValueError(f"columns listed twice among the features: {dupes}")
        roles = {self.timestamp, self.id, self.prediction, *([self.model_version] if self.model_version else [])}
        clash = sorted(roles & set(features))
        if clash:
            raise ValueError(f"{clash} cannot be both a feature and timestamp/id/prediction/model_version")
        return self

    @property
    def features(self) -> list[str]:
        return self.numerical + self.categorical

    def to_read(self, *, features: bool = True, target: bool = False, version: bool = False) -> tuple[str, ...]:
        """The prediction-log columns to read, in a stable order and without duplicates;
        `target` when the labels are logged with the predictions rather than joined later;
        `version` for the serving version, when configured (quality reads it)."""
        wanted = [self.timestamp, self.id, self.prediction, self.probability, *(self.features if features else ())]
        wanted += [self.target if target else None, self.model_version if version else None]
        return tuple(dict.fromkeys(c for c in wanted if c))


class Schedule(Strict):
    every: PositiveDuration | None = None
    cron: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Schedule:
        _exactly_one(self, "every", "cron")
        if self.cron is not None:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(self.cron)
            except ValueError as exc:
                raise ValueError(f"invalid cron expression {self.cron!r}: {exc}") from None
        return self


# Below this many rows no drift verdict means anything: a two-sample test at a 1% false-alarm
# rate can then only tell shifts of more than about 0.6 standard deviations from noise (the KS
# critical distance is 1.63/sqrt(n) = 0.23 at n = 50), and a categorical with a dozen levels
# leaves most levels with a handful of rows.
MIN_ROWS_FLOOR = 50


class Window(Strict):
    size: PositiveDuration = timedelta(hours=1)
    min_rows: int = 500
    max_rows: int | None = Field(default=200_000, ge=1)
    # Rows are often committed a little after their own timestamp (buffered writers, open
    # transactions): a window ends `lateness` before now, so most of them are in place when read.
    lateness: Duration = timedelta(minutes=1)
    # Rows committed later still land behind the watermark. Each check re-reads the keys of the
    # last `lookback` behind the watermark and checks the rows it has not checked yet (late
    # rows) with the next window. 0s turns the re-read off.
    lookback: Duration = timedelta(hours=1)
    # Labels arrive late, so quality is measured on the labelled rows of a longer trailing span.
    quality_span: PositiveDuration | None = Field(default=None, description="default: 4 x size")

    @field_validator("min_rows")
    @classmethod
    def _meaningful(cls, value: int) -> int:
        if value < MIN_ROWS_FLOOR:
            raise ValueError(
                f"{value} is below the floor of {MIN_ROWS_FLOOR}: with fewer rows a drift test cannot tell a shift "
                "of less than about 0.6 standard deviations from noise at a 1% false-alarm rate. Collect more rows "
                f"per check with a longer window.size (or schedule), and keep min_rows >= {MIN_ROWS_FLOOR}"
            )
        return value

    @property
    def effective_quality_span(self) -> timedelta:
        return self.quality_span or 4 * self.size


DRIFT_METHODS = {
    "numerical": {"wasserstein", "psi", "ks", "kl_div", "jensenshannon", "hellinger", "ed", "anderson", "t_test", "mannw", "cramer_von_mises", "empirical_mmd"},
    "categorical": {"jensenshannon", "psi", "chisquare", "z", "kl_div", "hellinger", "TVD", "fisher_exact", "g_test"},
}


# The methods whose decision is calibrated (a p-value from the reference's own null
# distribution, monitor.check.calibrate); any other method decides by its fixed threshold.
CALIBRATED_METHODS = {"numerical": "wasserstein", "categorical": "jensenshannon"}


class Method(Strict):
    method: str
    # For a calibrated method (wasserstein, jensenshannon): an effect floor, the score below which
    # a significant change is ignored (None: no floor). For any other method: Evidently's fixed
    # threshold (None: the method's own default).
    threshold: float | None = Field(default=None, gt=0)


class MinEffect(Strict):
    """Effect floors: a test that rejects only counts as drift when its effect reaches the floor.
    0 (the default) turns a floor off: every significant change counts."""

    numerical: float = Field(default=0.0, ge=0, description="normed Wasserstein score")
    categorical: float = Field(default=0.0, ge=0, description="Jensen-Shannon distance")
    missing: float = Field(default=0.0, ge=0, description="window's missing share minus the reference's")
    unseen: float = Field(default=0.0, ge=0, description="share of window values the reference never saw")


class Multivariate(Strict):
    """The domain-classifier test (monitor.check.multivariate) run on every window beside the per-column tests.

    On by default: it is the only signal for changes in how features move together, and costs
    one small boosted-tree fit on at most 2 x `max_rows` rows per check (README, "Multivariate drift")."""

    enabled: bool = True
    # No alpha of its own: its exact p-value (a Mann-Whitney test on held-out rows) is one more
    # hypothesis in the model's family at drift.false_alarm_rate, so one budget covers every test.
    min_auroc: float = Field(default=0.5, ge=0.5, lt=1, description="effect-size floor on the held-out AUROC")
    max_rows: int = Field(default=5000, ge=50, description="window rows tested (a seeded sample)")
    learner: Literal["hgb", "hgb_axis", "logistic"] = "hgb"


class Drift(Strict):
    numerical: Method = Method(method="wasserstein")
    categorical: Method = Method(method="jensenshannon")
    # Budget of false dataset-drift verdicts per model per window with no drift at all, held
    # across every test of the model's features (Benjamini-Hochberg).
    false_alarm_rate: float = Field(default=0.005, gt=0, lt=0.5)
    # any: dataset drift when any feature drifted after the correction; share: when at least
    # dataset_share of the features drifted.
    dataset_rule: Literal["any", "share"] = "any"
    dataset_share: float = Field(default=0.3, gt=0, le=1)
    min_effect: MinEffect = MinEffect()
    columns: dict[str, Method] = {}
    multivariate: Multivariate = Multivariate()

    @model_validator(mode="after")
    def _known_methods(self) -> Drift:
        for kind in ("numerical", "categorical"):
            method = getattr(self, kind).method
            if method not in DRIFT_METHODS[kind]:
                raise ValueError(f"{kind}.method {method!r} is not one of {sorted(DRIFT_METHODS[kind])}")
        return self


class Policy(Strict):
    alert_after: NOfMField = NOfM(2, 3)
    resolve_after: int = Field(default=3, ge=1)
    retrain_after: NOfMField = NOfM(3, 4)
    quality_drop: float = Field(default=0.05, ge=0)
    # The same rule on the label-free estimate (monitor.check.estimates), judged on the band's side
    # nearest the champion; None: `quality_drop`.
    estimated_drop: float | None = Field(default=None, ge=0)
    cooldown: Duration = timedelta(hours=6)
    max_retrains_per_day: int = Field(default=2, ge=0)


def _compressor(name: str) -> str:
    if name not in COMPRESSORS.names():
        raise PluginError(f"unknown compression strategy {name!r}; available: {', '.join(COMPRESSORS.names())}")
    return name


# A compression strategy's name: built in (onnx, prune, quantize) or a plug-in's (monitor.core.plugins).
Strategy = Annotated[str, AfterValidator(_compressor)]


class RetrainOptions(Strict):
    training_window: PositiveDuration = timedelta(days=14)
    min_labelled_rows: int = Field(default=2000, ge=1)
    reference_blend: float = Field(default=0.0, ge=0, le=1, description="share of reference rows mixed into training data")
    tune: bool = False
    compression: list[Strategy] = ["onnx", "prune", "quantize"]
    max_quality_loss: float = Field(default=0.01, ge=0)
    min_improvement: float = 0.0
    # Gates decide on one-sided bounds at this confidence (paired bootstrap on the holdout).
    confidence: float = Field(default=0.95, ge=0.5, lt=1)
    # Below this many holdout rows a lossy variant (pruned, quantized) may not serve: a
    # variant at exactly the loss budget passed the 95% bound in up to 23% (100 rows) / 9%
    # (200) of holdouts, 4-7% from 500 rows on (bench/gates.py, part 2).
    min_holdout_rows: int = Field(default=500, ge=1)
    # Threads a retrain trains on (estimators with n_jobs, OpenMP ones); unset: every core the process may use.
    n_jobs: int | None = Field(default=None, ge=1)
    # Each retrain runs in its own process (monitor.service.isolation): killed past `timeout`, and on Linux
    # refused memory beyond `memory_limit` bytes of address space ("4GiB", "500MB" or a number).
    timeout: PositiveDuration = timedelta(hours=2)
    memory_limit: ByteSize | None = Field(default=None, gt=0)
    enabled: bool = True


Task = Literal["binary_classification", "multiclass_classification", "regression"]


class Estimation(Strict):
    """Label-free quality estimates (CBPE for classifiers, DLE for regressors), fitted once per
    champion version on labelled rows it was not trained on (monitor.check.estimates)."""

    enabled: bool = True
    # Multiclass one-vs-rest needs one probability column per class (class label -> column);
    # with only `columns.probability` (the predicted class's confidence) accuracy is estimated.
    probabilities: dict[str, str] = {}
    confidence: float = Field(default=0.95, gt=0.5, lt=1, description="coverage of the band")


# The state store's model columns are VARCHAR(200); a longer name would fail every write.
MODEL_NAME_MAX_LENGTH = 200


class ModelConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=MODEL_NAME_MAX_LENGTH)
    registered_model: str | None = None
    source: Source
    labels: Source | None = None
    columns: Columns
    task: Task
    reference: Path | None = None
    schedule: Schedule = Schedule(every=timedelta(minutes=15))
    window: Window = Window()
    drift: Drift = Drift()
    policy: Policy = Policy()
    retrain: RetrainOptions = RetrainOptions()
    estimation: Estimation = Estimation()
    alerts: list[str] = []

    @property
    def mlflow_name(self) -> str:
        return self.registered_model or self.name

    def method_for(self, column: str) -> Method:
        if column in self.drift.columns:
            return self.drift.columns[column]
        return self.drift.categorical if column in self.columns.categorical else self.drift.numerical

    @model_validator(mode="after")
    def _overrides_name_features(self) -> ModelConfig:
        known = set(self.columns.features) | {self.columns.prediction, self.columns.probability}
        unknown = sorted(set(self.drift.columns) - known)
        if unknown:
            raise ValueError(f"drift.columns names {unknown}, which are not features of this model")
        for column, method in self.drift.columns.items():
            kind = "categorical" if column in self.columns.categorical else "numerical"
            if column == self.columns.prediction and self.task != "regression":
                kind = "categorical"  # a classifier's predicted label
            if method.method not in DRIFT_METHODS[kind]:
                raise ValueError(f"drift.columns.{column}.method {method.method!r} does not apply to the {kind} column "
                                 f"{column!r}; use one of {sorted(DRIFT_METHODS[kind])}")
        return self


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


class Config(Strict):
    state_url: str = "sqlite:///driftd-state.db"
    mlflow: MLflowConfig = MLflowConfig()
    server: Server = Server()
    daemon: DaemonOptions = DaemonOptions()
    logging: Logging = Logging()
    alerts: Alerts = Alerts()
    defaults: Defaults = Defaults()
    models: list[ModelConfig] = []

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique: {dupes}")
        channels = {c.name for c in self.alerts.channels}
        for model in self.models:
            missing = sorted(set(model.alerts) - channels)
            if missing:
                raise ValueError(f"model {model.name!r} routes alerts to undefined channels {missing}")
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
