"""The reference a model is compared with, prepared once per champion version.

The reference is the data the current champion was trained/validated on (the run artifact
`driftd/reference.parquet`), or an explicit file (`--reference`, or `reference:` in config)
for a model with no champion registered yet.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from monitor.check.estimates import NO_SIGNALS, Signals
from monitor.core.clock import Clock, SystemClock
from monitor.core.config import Config, ModelConfig
from monitor.core.tables import ReferenceError, read_table  # noqa: F401 - re-exported: callers catch it from here

if TYPE_CHECKING:
    from monitor.check.attribution import Attribution
    from monitor.check.drift import PreparedReference
    from retrain.registry import Champion

log = logging.getLogger("driftd.reference")


@dataclass(frozen=True)
class Loaded:
    prepared: PreparedReference
    champion: Champion | None
    # When this process saw the champion replace another version (None: it was champion when
    # the process started), and which; stands in for a promotion made outside driftd.
    seen_since: datetime | None = None
    seen_previous: str | None = None
    signals: Signals = NO_SIGNALS  # the version's quality estimator and multivariate reference


class References:
    """Caches one prepared reference per model, refreshed when the champion version changes."""

    def __init__(self, config: Config, override: Path | None = None, clock: Clock | None = None) -> None:
        self._config = config
        self._override = override
        self._clock = clock or SystemClock()  # the daemon's: a simulation's promotions happen on its time
        self._cache: dict[str, Loaded] = {}
        # One lock per model: preparing one model's reference must not stall the others' checks.
        self._locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._scores: dict[tuple[str, str], float | None] = {}  # (model, version) -> validation score

    def get(self, model: ModelConfig) -> Loaded:
        path = self._override or None
        if path is None:
            champion = self._champion(model)
            if champion is not None:
                return self._cached(model, champion.version, champion, lambda: self._from_registry(model, champion))
            path = model.reference
        if path is None:
            raise ReferenceError(
                f"model {model.name!r} has no champion in the MLflow registry ({model.mlflow_name!r}@champion) "
                "and no reference file: register one with `driftd adopt`, or set `reference:` in its config"
            )
        version = f"file:{Path(path).name}@{Path(path).stat().st_mtime_ns if Path(path).exists() else 0}"
        return self._cached(model, version, None, lambda: read_table(Path(path)))

    def _champion(self, model: ModelConfig) -> Champion | None:
        if not registry_exists(self._config):
            return None  # nothing registered yet; creating the store would cost seconds for nothing
        from retrain.registry import champion

        try:
            return champion(self._config, model)
        except Exception as exc:  # the registry being down must not stop checks that have a cached reference
            cached = self._cache.get(model.name)
            if cached is not None and cached.champion is not None:
                log.warning("MLflow registry unreachable, using cached reference %s: %s", cached.prepared.version, exc)
                return cached.champion
            if model.reference is not None:
                log.warning("MLflow registry unreachable, using the configured reference file: %s", exc)
                return None
            raise ReferenceError(f"cannot reach the MLflow registry to find {model.mlflow_name!r}@champion: {exc}") from None

    def _from_registry(self, model: ModelConfig, champion: Champion | _Version) -> pd.DataFrame:
        from retrain.registry import load_reference

        try:
            frame, _ = load_reference(self._config, model, champion.version)
        except Exception as exc:  # MLflow/IO errors come in many types; the message is what matters
            raise ReferenceError(f"cannot load the reference of {model.mlflow_name} version {champion.version}: {exc}") from None
        return frame

    def _cached(self, model: ModelConfig, version: str, champion: Champion | None, load) -> Loaded:
        from monitor.check.drift import DriftError, prepare_reference
        from monitor.check.validate import InputError, validate_reference

        with self._locks[model.name]:
            cached = self._cache.get(model.name)
            if cached is not None and cached.prepared.version == version:
                return cached
            try:
                frame = validate_reference(load(), model)
                if champion is not None:
                    frame = self._topped_up(model, frame, champion, cached)
                prepared = prepare_reference(frame, model, version, nulls_dir=self._nulls_dir(model),
                                             reload=lambda: validate_reference(load(), model))
            except (InputError, DriftError) as exc:
                raise ReferenceError(f"reference {version} of {model.name!r} is unusable: {exc}") from None
            tables = {c: t.numerical.sorted for c, t in prepared.tests.items() if t.numerical is not None}
            signals = self._signals(model, champion, frame, tables)
            replaced = cached.champion.version if cached is not None and cached.champion is not None else None
            loaded = Loaded(prepared, champion, self._clock.now() if replaced else None, replaced, signals)
            self._cache[model.name] = loaded
            log.info("prepared reference %s for %s (%d rows)", version, model.name, prepared.rows)
            return loaded

    def _nulls_dir(self, model: ModelConfig) -> Path | None:
        """Where the model's calibrated null samples persist: beside driftd's state (monitor.core.paths)
        when that place is known for sure: a SQLite state file at an absolute path (every loaded
        configuration's), or systemd's $STATE_DIRECTORY. Otherwise (a Config built in code with the
        default relative URL, PostgreSQL state without $STATE_DIRECTORY) they stay in memory rather
        than land in whatever directory the process started in."""
        from sqlalchemy.engine import make_url

        from monitor.core.paths import state_dir

        try:
            url = make_url(self._config.state_url)
            local = url.get_backend_name() == "sqlite" and Path(url.database or "").is_absolute()
            if not local and not os.environ.get("STATE_DIRECTORY"):
                return None
            return state_dir(self._config) / "nulls" / hashlib.sha256(model.name.encode()).hexdigest()[:16]
        except Exception as exc:  # noqa: BLE001 - an unusable state URL is reported by the state store
            log.debug("null samples of %s are not persisted: %s", model.name, exc)
            return None

    def _topped_up(self, model: ModelConfig, frame: pd.DataFrame, champion: Champion, cached: Loaded | None) -> pd.DataFrame:
        """A retrain's reference holds only its own fit rows; when they are fewer than drift tests
        need (monitor.check.drift.min_reference_rows), keep the previous champion's reference for the
        rest: a sample of its rows tops the new one up. The mix leans toward the old data, so the
        first windows after such a promotion are compared partly with it: said in the log."""
        from monitor.check.drift import min_reference_rows
        from monitor.check.validate import validate_reference

        needed = min_reference_rows(model)
        if len(frame) >= needed:
            return frame
        previous, source = None, None
        if cached is not None and cached.prepared.version != champion.version and cached.prepared.reload is not None:
            try:  # the prepared reference keeps no rows: read the previous champion's again
                previous, source = cached.prepared.reload(), f"version {cached.prepared.version}"
            except Exception as exc:  # noqa: BLE001 - the registry is the next place to look
                log.warning("cannot re-read reference %s to top up %s: %s", cached.prepared.version, model.name, exc)
        if previous is None and champion.promoted_over:
            try:
                previous = validate_reference(self._from_registry(model, _Version(champion.promoted_over)), model)
                source = f"version {champion.promoted_over}"
            except Exception as exc:  # noqa: BLE001 - then the size check says what to do
                log.warning("cannot read the previous champion's reference to top up %s: %s", model.name, exc)
        if previous is None or previous.empty:
            return frame
        extra = previous.sample(n=min(needed - len(frame), len(previous)), random_state=0)
        log.warning("reference of %s version %s has %d rows, drift tests need %d: topped up with %d rows of the "
                    "previous champion's reference (%s)", model.name, champion.version, len(frame), needed, len(extra), source)
        return pd.concat([frame, extra[[c for c in frame.columns if c in extra.columns]]], ignore_index=True)

    def _signals(self, model: ModelConfig, champion: Champion | None, frame: pd.DataFrame,
                 tables: dict[str, np.ndarray] | None = None) -> Signals:
        """The champion's estimator (its artifact, else refitted) and multivariate reference."""
        from monitor.check.estimates import prepare_signals

        stored = None
        if champion is not None:
            from retrain.registry import load_estimator

            def stored():  # noqa: ANN202 - a registry that cannot be read is the same as no artifact
                try:
                    return load_estimator(self._config, model, champion.version)
                except Exception as exc:  # RegistryError and MLflow's own; the EstimatorError of a bad file passes
                    from monitor.check.estimation import EstimatorError

                    if isinstance(exc, EstimatorError):
                        raise
                    log.warning("cannot read the estimator artifact of %s version %s: %s", model.mlflow_name, champion.version, exc)
                    return None
        return prepare_signals(model, frame, stored, tables)

    def attribution(self, model: ModelConfig, loaded: Loaded) -> Attribution | None:
        """Whose rows quality judges: the champion's, from its promotion on (monitor.check.attribution)."""
        from monitor.check.attribution import Attribution

        champion = loaded.champion
        if champion is None:
            return None
        # The later of the two: the tag is exact for driftd's own promotions but stale after an
        # alias move elsewhere (and on the wall clock in a simulation); the sighting is always
        # at or after the switch. Later only ever hands old rows to the old version.
        since = max((t for t in (champion.promoted_at, loaded.seen_since) if t is not None), default=None)
        previous = loaded.seen_previous or champion.promoted_over
        return Attribution(champion.version, since, previous, lambda version: self.validation_score(model, version))

    def validation_score(self, model: ModelConfig, version: str) -> float | None:
        """A version's own `driftd.validation_score`, read once per version (None when unknown)."""
        key = (model.name, version)
        if not version.isdigit():  # "unknown", "previous", or a label that is no registry version
            return None
        if key not in self._scores:
            from retrain.registry import validation_score

            try:
                self._scores[key] = validation_score(self._config, model, version)
            except Exception as exc:  # unreachable now: say so, and ask again next time
                log.warning("cannot read the validation score of %s version %s: %s", model.mlflow_name, version, exc)
                return None
        return self._scores[key]


@dataclass(frozen=True)
class _Version:
    version: str


def registry_exists(config: Config) -> bool:
    """False for an embedded (SQLite) registry whose file was never created: no champion yet."""
    uri = config.mlflow.registry_uri or config.mlflow.tracking_uri
    return not uri.startswith("sqlite:///") or Path(uri.removeprefix("sqlite:///")).exists()
