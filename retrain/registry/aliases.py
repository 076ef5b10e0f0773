"""Moving aliases: promotion (champion moved LAST), rollback, rejection, and the outcome tags
that leave no version without a reason."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from monitor.core.config import Config, ModelConfig
from retrain.registry.read import _by_alias
from retrain.registry.records import CHALLENGER, CHAMPION, FAILED_REASON_TAG, OUTCOME_TAG, PREVIOUS, RegistryError, _call, _now
from retrain.tracking import connect, describe, is_missing

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger("driftd.registry")


def promote(config: Config, model: ModelConfig, version: str) -> None:
    """Make `version` the champion; the champion it replaces becomes `previous`."""
    client = connect(config)
    try:
        client.get_model_version(model.mlflow_name, str(version))
    except Exception as exc:
        if is_missing(exc):
            raise RegistryError(f"registered model {model.mlflow_name!r} has no version {version}") from None
        raise RegistryError(f"cannot read {model.mlflow_name!r} version {version}: {describe(exc)}") from None
    move_champion(client, model.mlflow_name, str(version))


def rollback(config: Config, model: ModelConfig) -> str:
    """Serve the `previous` version again; returns the version now serving."""
    client = connect(config)
    name = model.mlflow_name
    previous = _by_alias(client, name, PREVIOUS)
    if previous is None:
        raise RegistryError(f"{name!r} has no `previous` version to roll back to; promote one explicitly with `driftd promote --version N`")
    current = _by_alias(client, name, CHAMPION)
    restored = str(previous.version)
    older = (previous.tags or {}).get("driftd.promoted_over")
    # Rows logged from now on are the restored version's (monitor.check.attribution reads this).
    _call(client.set_model_version_tag, name, restored, "driftd.promoted_at", _now())
    _call(client.set_registered_model_alias, name, CHAMPION, restored)
    if current is not None:
        _call(client.set_model_version_tag, name, str(current.version), "driftd.rolled_back_at", _now())
    # The restored version's own predecessor becomes `previous`, so rollbacks chain backwards.
    if older and older != restored:
        _call(client.set_registered_model_alias, name, PREVIOUS, older)
    else:
        _call(client.delete_registered_model_alias, name, PREVIOUS)
    return restored


def move_champion(client: MlflowClient, name: str, version: str) -> None:
    current = _by_alias(client, name, CHAMPION)
    if current is not None and str(current.version) == version:
        return
    if current is not None:
        _call(client.set_model_version_tag, name, version, "driftd.promoted_over", str(current.version))
        _call(client.set_registered_model_alias, name, PREVIOUS, str(current.version))
    _call(client.set_model_version_tag, name, version, "driftd.promoted_at", _now())
    _call(client.set_registered_model_alias, name, CHAMPION, version)  # last: the switch itself
    try:  # tidying after the switch: a failure here must not report the promotion as failed
        client.set_model_version_tag(name, version, OUTCOME_TAG, "promoted")
        challenger = _by_alias(client, name, CHALLENGER)
        if challenger is not None and str(challenger.version) == version:
            client.delete_registered_model_alias(name, CHALLENGER)
    except Exception as exc:
        log.warning("version %s of %s is champion, but its old challenger alias stays: %s", version, name, describe(exc))


def mark_rejected(client: MlflowClient, name: str, version: str) -> None:
    _call(client.set_model_version_tag, name, version, OUTCOME_TAG, "rejected")
    _call(client.set_registered_model_alias, name, CHALLENGER, version)


def mark_failed(client: MlflowClient, name: str, version: str, reason: str, stage: str) -> None:
    """Record why a registered version was neither promoted nor rejected (best effort: raises)."""
    _call(client.set_model_version_tag, name, version, FAILED_REASON_TAG, f"failed while {stage}: {reason}"[:5000])
    _call(client.set_model_version_tag, name, version, OUTCOME_TAG, "failed")


def settle_orphans(client: MlflowClient, name: str) -> list[str]:
    """Versions still `pending` from a retrain that could not finish (MLflow was unreachable
    even to record the failure): the champion among them was promoted, the others failed."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException as exc:
        if is_missing(exc):
            return []
        raise
    pending = [v for v in versions if (v.tags or {}).get(OUTCOME_TAG) == "pending"]
    if not pending:
        return []
    current = _by_alias(client, name, CHAMPION)
    settled = []
    for version in pending:
        number = str(version.version)
        if current is not None and str(current.version) == number:
            _call(client.set_model_version_tag, name, number, OUTCOME_TAG, "promoted")
            continue
        reason = (f"orphaned: registered by run {version.run_id}, which failed before promoting or rejecting it "
                  "(MLflow was unreachable); found by a later retrain")
        _call(client.set_model_version_tag, name, number, FAILED_REASON_TAG, reason)
        _call(client.set_model_version_tag, name, number, OUTCOME_TAG, "failed")
        settled.append(number)
    return settled
