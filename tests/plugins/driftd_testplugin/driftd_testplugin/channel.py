"""`type: testplugin-channel`: a chat-style alert channel with a setting of its own (`room`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from monitor.core.config import Channel
from monitor.observe.channels import AlertChannel, AlertEvent


class ChatConfig(Channel):
    room: str
    mention: str | None = None


class ChatChannel(AlertChannel):
    config_model = ChatConfig

    def endpoint(self, url: str) -> str:
        assert isinstance(self.config, ChatConfig)
        return url.rstrip("/") + f"/rooms/{self.config.room}/messages"

    def payload(self, event: AlertEvent, *, started: datetime, generator_url: str | None) -> Any:
        assert isinstance(self.config, ChatConfig)
        who = f"{self.config.mention} " if self.config.mention else ""
        return {"room": self.config.room, "message": f"{who}{event.alert} is {event.status} for {event.model}: {event.summary}",
                "since": started.isoformat()}
