"""Alert delivery to the configured channels (webhook, Slack, Alertmanager, plug-ins), off the check's thread.

`Notifier.notify` only enqueues; one worker thread per channel delivers, so a dead channel
never delays a check, nor the other channels. Channel URLs are secrets (Slack paths, tokens,
userinfo): they are read at delivery time (rotated files are picked up) and only the channel
name and host are ever logged.

Retries are bounded twice. A delivery round makes at most `attempts` POSTs within
`max_total_s`. A failed notification (`driftd_alerts_total{outcome="failed"}` per round) is
tried again after a backoff that doubles from `backoff_s` up to `max_backoff_s`; the daemon's
re-sends of the same alert in between wait for that round instead of each POSTing again. After
`rounds` failed rounds — at once for an answer a retry cannot fix (HTTP 4xx) — the
notification is given up and counted as `outcome="dropped"`, as is one replaced by a newer
state of its alert before it could be delivered, or still undelivered when driftd stops. A
dropped alert that is still firing is tried afresh once `max_backoff_s` has passed. With the
defaults a dead endpoint sees at most 12 POSTs per alert in the first ~4 minutes, then at most
12 per ~14 minutes.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential

from monitor.core.config import Channel
from monitor.core.plugins import CHANNELS
from monitor.core.redact import host, mask, origin, url_parts
from monitor.core.statuses import AlertOutcome, AlertState
from monitor.observe.channels import SERVICE, AlertChannel, AlertEvent, alertmanager_payload, slack_payload, webhook_payload
from monitor.observe.metrics import Metrics

log = logging.getLogger(__name__)

__all__ = ["AlertEvent", "DeliveryError", "Notifier", "RetryPolicy", "alertmanager_payload", "slack_payload",
           "webhook_payload"]

@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: a round costs at most `max_total_s` of the worker's time; a notification
    at most `rounds` rounds, `backoff_s`, 2 x `backoff_s`, ... (capped at `max_backoff_s`) apart."""

    attempts: int = 3
    initial_wait_s: float = 0.5
    max_wait_s: float = 4.0
    max_total_s: float = 10.0
    backoff_s: float = 30.0
    max_backoff_s: float = 600.0
    rounds: int = 4

    def backoff(self, failures: int) -> float:
        return min(self.backoff_s * 2 ** max(failures - 1, 0), self.max_backoff_s)


@dataclass
class _Pending:
    """The newest undelivered state of one alert on one channel, and its retry schedule."""

    event: AlertEvent
    due: float  # monotonic time of the next round
    failures: int = 0
    first_failed_at: float | None = None


class DeliveryError(Exception):
    """A delivery attempt failed; the message never contains the channel URL."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


_STOP = object()
_Key = tuple[str, str, str]  # (model, alert, channel)


class _Lane:
    """One channel's queue and worker thread: a dead channel only delays itself."""

    def __init__(self, channel: Channel, queue_size: int, run: Any) -> None:
        self.channel = channel
        self.kind: AlertChannel = CHANNELS.get(channel.type)(channel)
        self.pending: dict[_Key, _Pending] = {}  # touched by the worker thread only
        self.given_up: dict[_Key, tuple[AlertState, float]] = {}  # dropped state, and until when to ignore it
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self.client = httpx.Client(follow_redirects=False, headers={"User-Agent": f"{SERVICE}-notifier"})
        self.thread = threading.Thread(target=run, args=(self,), name=f"driftd-alerts-{channel.name}", daemon=True)
        self.thread.start()


class Notifier:
    """Delivers AlertEvents to named channels, one background worker per channel."""

    def __init__(
        self,
        channels: Iterable[Channel],
        metrics: Metrics,
        *,
        retry: RetryPolicy = RetryPolicy(),
        queue_size: int = 1000,
        generator_url: str | None = None,
    ) -> None:
        _install_url_redaction()
        self._metrics = metrics
        self._retry = retry
        self._generator_url = generator_url
        self._closing = threading.Event()  # close() called: finish the queue, then exit
        self._abort = threading.Event()  # close() timed out: stop retrying, exit now
        self._last_status: dict[_Key, AlertState] = {}  # channels sending transitions only: the last one sent
        self._started_at: dict[_Key, datetime] = {}  # when each firing alert first fired
        self._lanes = {c.name: _Lane(c, queue_size, self._run) for c in channels}

    def notify(self, event: AlertEvent, channel_names: Iterable[str]) -> None:
        """Queue the event for each channel and return at once."""
        for name in channel_names:
            lane = self._lanes.get(name)
            if lane is None or self._closing.is_set():
                why = "the notifier is closed" if lane else "no such channel is configured"
                log.warning("alert %s for model %s not sent to channel %r: %s", event.alert, event.model, name, why)
                self._metrics.alert(event.model, name, AlertOutcome.FAILED)
                continue
            try:
                lane.queue.put_nowait(event)
            except queue.Full:
                log.warning(
                    "alert %s for model %s dropped: %d deliveries already queued for channel %s (slow or down)",
                    event.alert, event.model, lane.queue.qsize(), name,
                )  # fmt: skip
                self._metrics.alert(event.model, name, AlertOutcome.DROPPED)

    def close(self, timeout: float = 10.0) -> bool:
        """Deliver what is queued for up to `timeout` seconds; True when everything was handled."""
        deadline = time.monotonic() + timeout
        self._closing.set()
        for lane in self._lanes.values():
            with contextlib.suppress(queue.Full):  # a full queue's worker sees _closing instead
                lane.queue.put_nowait(_STOP)
        for lane in self._lanes.values():
            lane.thread.join(max(deadline - time.monotonic(), 0.0))
        stuck = [lane for lane in self._lanes.values() if lane.thread.is_alive()]
        if stuck:
            self._abort.set()
            for lane in stuck:
                lane.thread.join(1.0)
                log.warning(
                    "alert channel %s: gave up with about %d deliveries still queued", lane.channel.name, lane.queue.qsize()
                )
        for lane in self._lanes.values():
            lane.client.close()
        return not stuck

    # --- workers ---------------------------------------------------------------------------------

    def _run(self, lane: _Lane) -> None:
        while not self._abort.is_set():
            try:
                event = lane.queue.get(timeout=self._wait(lane))
            except queue.Empty:
                event = None
                if self._closing.is_set() and lane.queue.empty():
                    break
            if event is _STOP:
                break
            try:
                if event is not None:
                    self._accept(event, lane)
                self._deliver_due(lane)
            except Exception:  # noqa: BLE001 - the worker must outlive any one bad delivery
                log.exception("alert worker: unexpected error delivering to channel %s", lane.channel.name)
        for key, pending in list(lane.pending.items()):
            self._drop(lane, key, pending, "driftd is stopping")

    def _wait(self, lane: _Lane) -> float:
        if not lane.pending:
            return 0.5
        return min(max(min(p.due for p in lane.pending.values()) - time.monotonic(), 0.0), 0.5)

    def _accept(self, event: AlertEvent, lane: _Lane) -> None:
        """Make `event` its alert's pending notification on this lane (or skip it as a repeat)."""
        channel, key = lane.channel, (event.model, event.alert, lane.channel.name)
        pending = lane.pending.get(key)
        if pending is not None and pending.event.status == event.status:
            pending.event = event  # a re-send while a round is pending: the next round sends the newest
            return
        if pending is not None:
            self._drop(lane, key, pending, f"superseded by {event.status} before it could be delivered")
        given_up = lane.given_up.get(key)
        if given_up is not None and given_up[0] == event.status and time.monotonic() < given_up[1]:
            log.debug("alert %s (%s) for %s: given up on channel %s a short while ago; not retried yet",
                      event.alert, event.status, event.model, channel.name)
            return
        lane.given_up.pop(key, None)
        if not lane.kind.tracks_state:
            if self._last_status.get(key) == event.status:
                log.debug("alert %s for %s already %s on channel %s; not resent", event.alert, event.model, event.status, channel.name)
                return
            if event.status == AlertState.RESOLVED and not channel.send_resolved:
                self._last_status[key] = event.status
                return
        lane.pending[key] = _Pending(event, due=time.monotonic())

    def _deliver_due(self, lane: _Lane) -> None:
        for key, pending in list(lane.pending.items()):
            if pending.due > time.monotonic() or self._abort.is_set():
                continue
            try:
                self._deliver(pending.event, lane)
            except DeliveryError as exc:
                pending.failures += 1
                pending.first_failed_at = pending.first_failed_at or time.monotonic()
                if not exc.retryable or pending.failures >= self._retry.rounds:
                    why = "a retry cannot fix it" if not exc.retryable else f"{pending.failures} rounds failed"
                    self._drop(lane, key, pending, why)
                else:
                    pending.due = time.monotonic() + self._retry.backoff(pending.failures)
                continue
            del lane.pending[key]

    def _drop(self, lane: _Lane, key: _Key, pending: _Pending, why: str) -> None:
        event, channel = pending.event, lane.channel
        lane.pending.pop(key, None)
        lane.given_up[key] = (event.status, time.monotonic() + self._retry.max_backoff_s)
        self._metrics.alert(event.model, channel.name, AlertOutcome.DROPPED)
        log.warning("alert %s (%s) for model %s to channel %s (host %s) given up: %s",
                    event.alert, event.status, event.model, channel.name, _host_of(channel), why)

    def _deliver(self, event: AlertEvent, lane: _Lane) -> None:
        """One round; raises DeliveryError (after counting and logging it) when it fails."""
        channel = lane.channel
        key = (event.model, event.alert, channel.name)
        payload = lane.kind.payload(event, started=self._started(event, key), generator_url=self._generator_url)
        try:
            self._post_with_retries(lane, payload)
        except DeliveryError as exc:
            self._metrics.alert(event.model, channel.name, AlertOutcome.FAILED)
            log.warning(
                "alert %s (%s) for model %s to channel %s (host %s) failed: %s",
                event.alert, event.status, event.model, channel.name, _host_of(channel), exc,
            )  # fmt: skip
            raise
        self._metrics.alert(event.model, channel.name, AlertOutcome.SENT)
        if not lane.kind.tracks_state:
            self._last_status[key] = event.status
        log.info("alert %s (%s) for model %s sent to channel %s", event.alert, event.status, event.model, channel.name)

    def _started(self, event: AlertEvent, key: _Key) -> datetime:
        # Re-posting a firing alert keeps the first startsAt so Alertmanager sees one alert.
        if event.status == AlertState.FIRING:
            return self._started_at.setdefault(key, event.at)
        return self._started_at.pop(key, event.at)

    def _post_with_retries(self, lane: _Lane, payload: Any) -> None:
        policy = self._retry
        retrying = Retrying(
            stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.max_total_s),
            wait=wait_exponential(multiplier=policy.initial_wait_s, max=policy.max_wait_s),
            retry=retry_if_exception(lambda exc: isinstance(exc, DeliveryError) and exc.retryable),
            sleep=self._sleep,
            reraise=True,
        )
        deadline = time.monotonic() + policy.max_total_s
        attempts = 0
        try:
            for attempt in retrying:
                with attempt:
                    attempts += 1
                    self._post_once(lane, payload, deadline)
        except DeliveryError as exc:
            raise DeliveryError(f"{exc} (after {attempts} attempt{'s' * (attempts != 1)})", retryable=exc.retryable) from None

    def _sleep(self, seconds: float) -> None:
        if self._abort.wait(seconds):
            raise DeliveryError("notifier closed while waiting to retry", retryable=False)

    def _post_once(self, lane: _Lane, payload: Any, deadline: float) -> None:
        channel = lane.channel
        try:
            url = channel.resolved_url()
        except ValueError as exc:  # unreadable url_file: the message names the file, not the URL
            raise DeliveryError(str(exc), retryable=True) from None
        if not url.startswith(("http://", "https://")):
            raise DeliveryError("the channel URL must start with http:// or https://", retryable=False)
        url = lane.kind.endpoint(url)
        try:
            # No attempt may outlast the retry budget, whatever the channel's own timeout.
            timeout = max(min(channel.timeout.total_seconds(), deadline - time.monotonic()), 0.1)
            response = lane.client.post(url, json=payload, timeout=timeout)
        except httpx.HTTPError as exc:
            # httpx messages can quote the URL: report the exception type only.
            raise DeliveryError(_transport_reason(exc), retryable=True) from None
        if response.status_code >= 300:
            retryable = response.status_code >= 500 or response.status_code in (408, 429)
            raise DeliveryError(f"HTTP {response.status_code}{_body_hint(response, url)}", retryable=retryable)


# --- keeping URLs out of logs --------------------------------------------------------------------


def _host_of(channel: Channel) -> str:
    try:
        return host(channel.resolved_url())
    except ValueError:  # an unreadable url_file must not break the warning about it
        return "unknown"


def _transport_reason(exc: httpx.HTTPError) -> str:
    reasons = {
        httpx.ConnectError: "connection failed (refused or unreachable)",
        httpx.ConnectTimeout: "connection timed out",
        httpx.ReadTimeout: "no response within the channel timeout",
        httpx.WriteTimeout: "request could not be sent within the channel timeout",
        httpx.RemoteProtocolError: "the server closed the connection or answered garbage",
    }
    for kind, reason in reasons.items():
        if isinstance(exc, kind):
            return reason
    return type(exc).__name__


def _body_hint(response: httpx.Response, url: str) -> str:
    """A short, URL-free excerpt of an error body (Slack says e.g. `invalid_token`)."""
    text = mask(response.text.strip().replace("\n", " ")[:120], url_parts(url))
    return f": {text}" if text else ""


class _RedactURLs(logging.Filter):
    """httpx logs every request's full URL at INFO; keep only scheme://host:port."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(origin(str(a)) if isinstance(a, httpx.URL) else a for a in record.args)
        return True


_redaction_lock = threading.Lock()


def _install_url_redaction() -> None:
    with _redaction_lock:
        httpx_log = logging.getLogger("httpx")
        if not any(isinstance(f, _RedactURLs) for f in httpx_log.filters):
            httpx_log.addFilter(_RedactURLs())
