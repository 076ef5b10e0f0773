"""Plug-in registries: a `type:` name in the configuration -> the class that implements it.

Four kinds can be added without editing driftd, each through a Python entry-point group (the
APScheduler-trigger pattern): a distribution declares, in its own pyproject.toml,

    [project.entry-points."driftd.sources"]
    my-source = "my_package.source:MySource"

and after `pip install` a model section may say `source: {type: my-source, ...}`.

| group                | base class                              | instantiated as         |
| -------------------- | --------------------------------------- | ----------------------- |
| `driftd.sources`     | `monitor.sources.base.LogSource`        | `cls(config, columns)`  |
| `driftd.channels`    | `monitor.observe.channels.AlertChannel` | `cls(config)`           |
| `driftd.compressors` | `retrain.compress.CompressionStrategy`  | see retrain/compress.py |
| `driftd.executors`   | `monitor.service.executors.base.Executor` | `cls(options, config)`  |

Every plug-in class carries `config_model`, a pydantic model (a subclass of the group's
config base in monitor.core.config) that validates its own section, so a typo in a plug-in's
settings is reported like one in driftd's. Built-ins are listed here by import path and
loaded on first use, like entry points, so reading the configuration imports no reader,
driver or HTTP client it does not need; a plug-in cannot take a built-in's name.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar

log = logging.getLogger("driftd.plugins")

SOURCES_GROUP = "driftd.sources"
CHANNELS_GROUP = "driftd.channels"
COMPRESSORS_GROUP = "driftd.compressors"
EXECUTORS_GROUP = "driftd.executors"

T = TypeVar("T")


class PluginError(ValueError):
    """A `type` names no plug-in, or the plug-in cannot be loaded; the message says which exist."""


class Registry(Generic[T]):
    """Built-in classes by import path, plus those a Python entry-point group declares.

    `names()` reads entry-point metadata only; `get(name)` imports the one class it needs."""

    def __init__(self, kind: str, group: str, builtins: Mapping[str, str]) -> None:
        self.kind = kind  # what a person calls one: "source", "alert channel", ...
        self.group = group
        self._builtins = dict(builtins)
        self._added: dict[str, type[T]] = {}
        self._loaded: dict[str, type[T]] = {}
        self._points: dict[str, EntryPoint] | None = None  # read once: scanning every distribution is slow
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """Every type name a configuration may use, sorted."""
        return sorted({*self._builtins, *self._added, *self._entry_points()})

    def register(self, name: str, cls: type[T]) -> None:
        """Add a class in-process (for an application embedding driftd); entry points are the
        way for an installed package."""
        if name in self._builtins:
            raise PluginError(f"{self.kind} type {name!r} is built into driftd; choose another name")
        with self._lock:
            self._added[name] = _checked(cls, f"{self.kind} type {name!r}")
            self._loaded.pop(name, None)

    def get(self, name: str) -> type[T]:
        """The class for `name`, imported on first use; PluginError lists the known names."""
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
        cls = self._load(name)
        with self._lock:
            self._loaded[name] = cls
        return cls

    def _load(self, name: str) -> type[T]:
        if name in self._builtins:
            module, _, attr = self._builtins[name].partition(":")
            loaded: Any = getattr(importlib.import_module(module), attr)
            return _checked(loaded, f"built-in {self.kind} type {name!r}")
        if name in self._added:
            return self._added[name]
        point = self._entry_points().get(name)
        if point is None:
            raise PluginError(
                f"unknown {self.kind} type {name!r}; available: {', '.join(self.names())} "
                f"(a plug-in adds one through the {self.group!r} entry-point group: is its package installed?)"
            )
        where = f"{self.kind} type {name!r} (entry point {point.value!r} of {_distribution(point)})"
        try:
            loaded = point.load()
        except Exception as exc:  # any import error of third-party code: say whose it is
            raise PluginError(f"cannot load {where}: {type(exc).__name__}: {exc}") from None
        return _checked(loaded, where)

    def refresh(self) -> None:
        """Read the installed entry points again (after installing a plug-in in-process)."""
        with self._lock:
            self._points = None
            self._loaded = {k: v for k, v in self._loaded.items() if k in self._builtins or k in self._added}

    def _entry_points(self) -> dict[str, EntryPoint]:
        with self._lock:
            if self._points is None:
                self._points = self._scan()
            return self._points

    def _scan(self) -> dict[str, EntryPoint]:
        found: dict[str, EntryPoint] = {}
        for point in entry_points(group=self.group):
            if point.name in self._builtins:
                log.warning("%s type %r from %s ignored: the name is built into driftd",
                            self.kind, point.name, _distribution(point))
                continue
            found.setdefault(point.name, point)
        return found


def _checked(loaded: object, where: str) -> type[Any]:
    """`loaded` when it is a class with a pydantic `config_model`; PluginError otherwise."""
    from pydantic import BaseModel

    if not isinstance(loaded, type):
        raise PluginError(f"{where} is {type(loaded).__name__}, not a class")
    model = getattr(loaded, "config_model", None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise PluginError(f"{where}: {loaded.__name__}.config_model must be a pydantic model class")
    return loaded


def _distribution(point: EntryPoint) -> str:
    dist = getattr(point, "dist", None)
    return f"package {dist.name}" if dist is not None else "an installed package"


# The classes are typed where they are used (monitor.sources, monitor.observe.alerts, retrain.compress):
# importing their base classes here would make this core module depend on all of them.
SOURCES: Registry[Any] = Registry(
    "source", SOURCES_GROUP,
    {"files": "monitor.sources.files:FileLogSource", "sql": "monitor.sources.sql:SqlLogSource"},
)  # fmt: skip
CHANNELS: Registry[Any] = Registry(
    "alert channel", CHANNELS_GROUP,
    {"webhook": "monitor.observe.channels:WebhookChannel", "slack": "monitor.observe.channels:SlackChannel",
     "alertmanager": "monitor.observe.channels:AlertmanagerChannel"},
)  # fmt: skip
COMPRESSORS: Registry[Any] = Registry(
    "compression strategy", COMPRESSORS_GROUP,
    {"onnx": "retrain.compress:PlainConversion", "prune": "retrain.compress:Pruning",
     "quantize": "retrain.compress:Int8Quantization"},
)  # fmt: skip
EXECUTORS: Registry[Any] = Registry(
    "executor", EXECUTORS_GROUP,
    {"local": "monitor.service.executors.local:LocalExecutor", "ray": "monitor.service.executors.ray:RayExecutor"},
)  # fmt: skip
