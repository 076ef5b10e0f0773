"""Alert channels: what one channel type sends, and to which URL.

A channel type is a small class: `payload` turns an `AlertEvent` into the JSON its receiver
understands, `endpoint` says where on the channel's URL to POST it. Queuing, retries, the
secret URL and its redaction stay in the `Notifier` (monitor.observe.alerts), the same for every type.
Built in: webhook, slack, alertmanager. A package adds one through the `driftd.channels`
entry-point group (see monitor.core.plugins); its `config_model` may add settings to the section.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar, Literal

from monitor.core.clock import utc
from monitor.core.config import Channel
from monitor.core.statuses import AlertState

Severity = Literal["info", "warning", "critical"]
SERVICE = "driftd"


@dataclass(frozen=True)
class AlertEvent:
    """One alert transition (or, for Alertmanager, a still-firing alert to re-post)."""

    model: str
    alert: str  # bounded name, e.g. DriftDetected, QualityDrop, RetrainFailed
    status: AlertState
    summary: str
    description: str
    check_id: str | None = None
    severity: Severity = "warning"
    at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    runbook: str | None = None
    # How long a firing alert stays valid without being re-posted (Alertmanager's endsAt);
    # None leaves it to Alertmanager's resolve_timeout, which is shorter than slow schedules.
    valid_for: timedelta | None = None

    @property
    def labels(self) -> dict[str, str]:
        return {"alertname": self.alert, "model": self.model, "severity": self.severity, "service": SERVICE}


class AlertChannel:
    """Base of every channel type: subclass it, implement `payload`, and set `config_model`
    to a subclass of `monitor.core.config.Channel` when the type has settings of its own."""

    config_model: ClassVar[type[Channel]] = Channel
    # True when the receiver keeps alert state itself (Alertmanager): every notification is
    # sent, re-posts of a firing alert and resolutions included (`send_resolved` is then the
    # receiver's own setting). False: only transitions are sent, resolutions if send_resolved.
    tracks_state: ClassVar[bool] = False

    def __init__(self, config: Channel) -> None:
        self.config = config

    def endpoint(self, url: str) -> str:
        """Where to POST, given the channel's (secret) URL."""
        return url

    def payload(self, event: AlertEvent, *, started: datetime, generator_url: str | None) -> Any:
        """The JSON body for `event`; `started` is when this alert first fired (kept across
        re-posts), `generator_url` the link back to driftd, when configured."""
        raise NotImplementedError(f"{type(self).__name__} must implement payload()")


class WebhookChannel(AlertChannel):
    def payload(self, event: AlertEvent, *, started: datetime, generator_url: str | None) -> Any:
        return webhook_payload(event)


class SlackChannel(AlertChannel):
    def payload(self, event: AlertEvent, *, started: datetime, generator_url: str | None) -> Any:
        return slack_payload(event)


class AlertmanagerChannel(AlertChannel):
    # An alert left un-resolved would linger until Alertmanager's resolve_timeout, and a
    # firing one not re-posted expires at its endsAt: Alertmanager gets every state.
    tracks_state = True

    def endpoint(self, url: str) -> str:
        return url.rstrip("/") + "/api/v2/alerts"

    def payload(self, event: AlertEvent, *, started: datetime, generator_url: str | None) -> Any:
        return alertmanager_payload(event, started, generator_url)


def _iso(at: datetime) -> str:
    return utc(at).isoformat().replace("+00:00", "Z")


def webhook_payload(event: AlertEvent) -> dict[str, Any]:
    """Generic JSON for any webhook receiver."""
    return {
        "version": "1",
        "source": SERVICE,
        "model": event.model,
        "alert": event.alert,
        "status": event.status,
        "severity": event.severity,
        "summary": event.summary,
        "description": event.description,
        "check_id": event.check_id,
        "runbook": event.runbook,
        "labels": event.labels,
        "startsAt": _iso(event.at) if event.status == AlertState.FIRING else None,
        "endsAt": _iso(event.at) if event.status == AlertState.RESOLVED else None,
    }


_SLACK_ICON = {AlertState.FIRING: ":red_circle:", AlertState.RESOLVED: ":large_green_circle:"}


def slack_payload(event: AlertEvent) -> dict[str, Any]:
    """Slack incoming-webhook message: `text` for notifications, `blocks` for the channel."""
    title = f"[{event.status.upper()}] {event.alert} on model {event.model}: {event.summary}"
    context = [f"severity: {event.severity}", f"at: {_iso(event.at)}"]
    if event.check_id:
        context.append(f"check: {event.check_id}")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{_SLACK_ICON[event.status]} *{_slack_escape(title)}*"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(event.description)[:2900] or " "}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _slack_escape(" | ".join(context))}]},
    ]
    if event.runbook:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"runbook: {_slack_escape(event.runbook)}"}]})
    return {"text": title, "blocks": blocks}


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn treats &, < and > as control characters.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def alertmanager_payload(event: AlertEvent, started: datetime, generator_url: str | None = None) -> list[dict[str, Any]]:
    """Alertmanager API v2 postable alerts; a resolved alert is the same labels with endsAt."""
    annotations = {"summary": event.summary, "description": event.description}
    if event.runbook:
        annotations["runbook"] = event.runbook
    if event.check_id:
        annotations["check_id"] = event.check_id
    alert: dict[str, Any] = {"labels": event.labels, "annotations": annotations, "startsAt": _iso(started)}
    if event.status == AlertState.RESOLVED:
        alert["endsAt"] = _iso(max(event.at, started))
    elif event.valid_for is not None:
        alert["endsAt"] = _iso(event.at + event.valid_for)
    if generator_url:
        alert["generatorURL"] = generator_url
    return [alert]
