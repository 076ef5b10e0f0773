"""The configuration's value types and base models: durations, "N of M" rules, strict models,
secret URLs and plug-in sections (monitor.core.config assembles them)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, SecretStr, model_validator

from monitor.core.plugins import PluginError, Registry


class ConfigError(Exception):
    """The configuration cannot be used; the message names each offending key path."""


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
