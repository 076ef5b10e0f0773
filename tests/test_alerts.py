"""Alert delivery to real HTTP receivers (and a real Alertmanager), as an on-call person sees it."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import yaml

from monitor.core.config import Channel
from monitor.observe.alerts import AlertEvent, Notifier, RetryPolicy
from monitor.observe.metrics import Metrics
from tests.support.receiver import Receiver

FAST = RetryPolicy(attempts=3, initial_wait_s=0.01, max_wait_s=0.05, max_total_s=5.0)
TOKEN = "T0123/B4567/xoxb-SECRET-token-89ab"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


def event(status: str = "firing", *, alert: str = "DriftDetected", model: str = "churn", at: datetime = T0) -> AlertEvent:
    return AlertEvent(
        model=model,
        alert=alert,
        status=status,  # type: ignore[arg-type]
        summary=f"Drift on {model}",
        description="income and age drifted (2 of 5 features, share 0.40 >= 0.30)",
        check_id="chk-20250301-1200",
        severity="warning",
        at=at,
    )


def channel(name: str, kind: str, url: str, **extra: object) -> Channel:
    return Channel.model_validate({"name": name, "type": kind, "url": url, **extra})


def alerts_total(metrics: Metrics, channel_name: str, outcome: str, model: str = "churn") -> float:
    needle = f'driftd_alerts_total{{channel="{channel_name}",model="{model}",outcome="{outcome}"}} '
    for line in metrics.render().decode().splitlines():
        if line.startswith(needle):
            return float(line.removeprefix(needle))
    return 0.0


def wait_until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.02)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(process_metrics=False)


def make_notifier(metrics: Metrics, *channels: Channel) -> Notifier:
    return Notifier(list(channels), metrics, retry=FAST)


def test_webhook_payload(rx: Receiver, metrics: Metrics) -> None:
    notifier = make_notifier(metrics, channel("ops", "webhook", f"{rx.url}/hooks/driftd"))
    notifier.notify(event(), ["ops"])
    assert notifier.close(5)
    [request] = rx.requests
    assert request.path == "/hooks/driftd"
    assert request.headers["Content-Type"] == "application/json"
    body = request.json
    assert body["model"] == "churn" and body["alert"] == "DriftDetected" and body["status"] == "firing"
    assert body["check_id"] == "chk-20250301-1200"
    assert body["summary"] == "Drift on churn" and "income" in body["description"]
    assert body["labels"] == {"alertname": "DriftDetected", "model": "churn", "severity": "warning", "service": "driftd"}
    assert body["startsAt"] == "2025-03-01T12:00:00Z" and body["endsAt"] is None
    assert alerts_total(metrics, "ops", "sent") == 1


def test_slack_payload(rx: Receiver, metrics: Metrics) -> None:
    notifier = make_notifier(metrics, channel("slack", "slack", f"{rx.url}/services/{TOKEN}"))
    notifier.notify(event(), ["slack"])
    notifier.notify(event("resolved", at=T0 + timedelta(hours=1)), ["slack"])
    assert notifier.close(5)
    firing, resolved = (r.json for r in rx.requests)
    assert firing["text"].startswith("[FIRING] DriftDetected on model churn")
    assert set(firing) == {"text", "blocks"}
    block_text = " ".join(b["text"]["text"] for b in firing["blocks"] if b["type"] == "section")
    assert "Drift on churn" in block_text and "income and age drifted" in block_text
    assert firing["blocks"][-1]["type"] == "context" and "chk-20250301-1200" in str(firing["blocks"][-1])
    assert resolved["text"].startswith("[RESOLVED] DriftDetected on model churn")


def test_each_transition_is_sent_once(rx: Receiver, metrics: Metrics) -> None:
    notifier = make_notifier(metrics, channel("ops", "webhook", rx.url))
    for status in ("firing", "firing", "resolved", "resolved", "firing"):
        notifier.notify(event(status), ["ops"])
    notifier.notify(event("firing", model="fraud"), ["ops"])  # another model is its own alert
    assert notifier.close(5)
    assert [(r.json["model"], r.json["status"]) for r in rx.requests] == [
        ("churn", "firing"), ("churn", "resolved"), ("churn", "firing"), ("fraud", "firing"),
    ]  # fmt: skip


def test_send_resolved_false_skips_resolutions(rx: Receiver, metrics: Metrics) -> None:
    notifier = make_notifier(metrics, channel("ops", "webhook", rx.url, send_resolved=False))
    notifier.notify(event("firing"), ["ops"])
    notifier.notify(event("resolved"), ["ops"])
    notifier.notify(event("firing"), ["ops"])
    assert notifier.close(5)
    assert [r.json["status"] for r in rx.requests] == ["firing", "firing"]


def test_transient_errors_are_retried(rx: Receiver, metrics: Metrics) -> None:
    rx.fail(1, status=503)
    rx.drop(1)
    notifier = make_notifier(metrics, channel("ops", "webhook", rx.url))
    notifier.notify(event(), ["ops"])
    assert notifier.close(5)
    assert rx.attempts == 3 and len(rx.requests) == 1
    assert (alerts_total(metrics, "ops", "sent"), alerts_total(metrics, "ops", "failed")) == (1, 0)


def test_exhausted_retries_are_counted_and_logged_without_secrets(
    rx: Receiver, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rx.fail(10, status=500)
    notifier = make_notifier(metrics, channel("slack", "slack", f"{rx.url}/services/{TOKEN}?token=abc"))
    notifier.notify(event(), ["slack"])
    assert notifier.close(5)
    assert rx.attempts == 3
    assert (alerts_total(metrics, "slack", "sent"), alerts_total(metrics, "slack", "failed")) == (0, 1)
    assert alerts_total(metrics, "slack", "dropped") == 1  # still undelivered when the notifier closed
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING and "failed:" in r.getMessage()]
    message = warning.getMessage()
    assert "channel slack" in message and "127.0.0.1" in message and "HTTP 500" in message
    assert "3 attempts" in message
    for secret in (TOKEN, "xoxb", "/services/", "token=abc"):
        assert secret not in caplog.text
        assert secret not in metrics.render().decode()


def test_client_errors_are_not_retried(rx: Receiver, metrics: Metrics) -> None:
    rx.fail(1, status=404)
    notifier = make_notifier(metrics, channel("ops", "webhook", rx.url))
    notifier.notify(event(), ["ops"])
    wait_until(lambda: alerts_total(metrics, "ops", "dropped") == 1)  # a retry cannot fix a 404
    assert notifier.close(5)
    assert rx.attempts == 1 and alerts_total(metrics, "ops", "failed") == 1


# Rounds 0.05 s and 0.1 s apart; a dropped alert is not tried again for a minute.
BACKOFF = RetryPolicy(attempts=2, initial_wait_s=0.01, max_wait_s=0.01, max_total_s=5.0, backoff_s=0.05, max_backoff_s=60, rounds=3)


def test_a_failing_endpoint_gets_bounded_rounds_however_often_the_alert_is_resent(rx: Receiver, metrics: Metrics) -> None:
    rx.fail(1000, status=500)
    notifier = Notifier([channel("chat", "slack", rx.url)], metrics, retry=BACKOFF)
    for _ in range(200):  # the daemon re-sends a firing alert on every check
        notifier.notify(event(), ["chat"])
    wait_until(lambda: alerts_total(metrics, "chat", "dropped") == 1)
    for _ in range(50):  # re-sends after giving up wait for max_backoff_s
        notifier.notify(event(), ["chat"])
    assert notifier.close(5)
    assert rx.attempts == BACKOFF.rounds * BACKOFF.attempts == 6
    assert (alerts_total(metrics, "chat", "failed"), alerts_total(metrics, "chat", "dropped")) == (3, 1)
    assert alerts_total(metrics, "chat", "sent") == 0


def test_a_failed_notification_is_delivered_by_a_later_round(rx: Receiver, metrics: Metrics) -> None:
    rx.fail(2)  # the whole first round
    notifier = Notifier([channel("ops", "webhook", rx.url)], metrics, retry=BACKOFF)
    notifier.notify(event(), ["ops"])
    notifier.notify(event(), ["ops"])  # a re-send waits for the next round rather than posting again
    wait_until(lambda: alerts_total(metrics, "ops", "sent") == 1)
    assert notifier.close(5)
    assert len(rx.requests) == 1 and rx.attempts == 3
    assert (alerts_total(metrics, "ops", "failed"), alerts_total(metrics, "ops", "dropped")) == (1, 0)


def test_a_state_superseded_before_delivery_is_dropped(rx: Receiver, metrics: Metrics) -> None:
    slow = RetryPolicy(attempts=1, initial_wait_s=0.01, max_wait_s=0.01, max_total_s=5.0, backoff_s=0.3, max_backoff_s=60, rounds=3)
    rx.fail(1)
    notifier = Notifier([channel("ops", "webhook", rx.url)], metrics, retry=slow)
    notifier.notify(event("firing"), ["ops"])
    wait_until(lambda: alerts_total(metrics, "ops", "failed") == 1)
    notifier.notify(event("resolved"), ["ops"])  # before the firing's next round
    wait_until(lambda: alerts_total(metrics, "ops", "sent") == 1)
    assert notifier.close(5)
    assert [r.json["status"] for r in rx.requests] == ["resolved"]
    assert alerts_total(metrics, "ops", "dropped") == 1


def test_a_dropped_alert_still_firing_is_tried_afresh_after_max_backoff(rx: Receiver, metrics: Metrics) -> None:
    quick = RetryPolicy(attempts=1, initial_wait_s=0.01, max_wait_s=0.01, max_total_s=5.0, backoff_s=0.01, max_backoff_s=0.2, rounds=1)
    rx.fail(1)
    notifier = Notifier([channel("ops", "webhook", rx.url)], metrics, retry=quick)
    notifier.notify(event(), ["ops"])
    wait_until(lambda: alerts_total(metrics, "ops", "dropped") == 1)
    time.sleep(0.3)  # longer than max_backoff_s: the next re-send starts a new notification
    notifier.notify(event(), ["ops"])
    wait_until(lambda: alerts_total(metrics, "ops", "sent") == 1)
    assert notifier.close(5)


def test_refusing_channel_does_not_block_notify(metrics: Metrics, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    dead_url = f"http://user:pa55w0rd@127.0.0.1:{closed_port()}/hook/{TOKEN}"
    notifier = make_notifier(metrics, channel("dead", "webhook", dead_url))
    started = time.monotonic()
    for i in range(20):
        notifier.notify(event(model=f"m{i}"), ["dead"])
    assert time.monotonic() - started < 0.05
    wait_until(lambda: alerts_total(metrics, "dead", "failed", model="m19") == 1)
    assert notifier.close(5)
    assert alerts_total(metrics, "dead", "failed", model="m0") == 1
    assert "connection failed" in caplog.text and "channel dead (host 127.0.0.1:" in caplog.text
    for secret in (TOKEN, "pa55w0rd", "/hook/"):
        assert secret not in caplog.text


def test_hung_channel_does_not_delay_other_channels(rx: Receiver, metrics: Metrics) -> None:
    with Receiver() as hung:
        hung.hold()
        notifier = make_notifier(metrics, channel("hung", "webhook", hung.url), channel("ops", "webhook", rx.url))
        for i in range(5):
            notifier.notify(event(model=f"m{i}"), ["hung", "ops"])
        rx.wait_for(5)
        assert hung.attempts == 1 and alerts_total(metrics, "hung", "sent", model="m0") == 0
        hung.release()
        hung.wait_for(5)
        assert notifier.close(5)


def test_url_file_is_read_at_delivery_time(tmp_path: Path, metrics: Metrics) -> None:
    url_file = tmp_path / "slack-url"
    with Receiver() as old, Receiver() as new:
        url_file.write_text(f"{old.url}/services/old\n")
        notifier = Notifier([Channel(name="slack", type="slack", url_file=url_file)], metrics, retry=FAST)
        notifier.notify(event("firing"), ["slack"])
        old.wait_for(1)
        url_file.write_text(f"{new.url}/services/rotated\n")  # secret rotated, no restart
        notifier.notify(event("resolved"), ["slack"])
        assert notifier.close(5)
    assert [r.path for r in old.requests] == ["/services/old"]
    assert [r.path for r in new.requests] == ["/services/rotated"]


def test_unreadable_url_file_counts_a_failure(tmp_path: Path, metrics: Metrics, caplog: pytest.LogCaptureFixture) -> None:
    notifier = make_notifier(metrics, Channel(name="ops", type="webhook", url_file=tmp_path / "missing"))
    notifier.notify(event(), ["ops", "undefined"])
    assert notifier.close(5)
    assert alerts_total(metrics, "ops", "failed") == 1
    assert alerts_total(metrics, "undefined", "failed") == 1
    assert "cannot read secret file" in caplog.text and "missing" in caplog.text


def test_close_gives_up_after_its_timeout(rx: Receiver, metrics: Metrics) -> None:
    rx.fail(3)
    slow = RetryPolicy(attempts=3, initial_wait_s=5, max_wait_s=5, max_total_s=20)
    notifier = Notifier([channel("ops", "webhook", rx.url)], metrics, retry=slow)
    notifier.notify(event(), ["ops"])
    rx.wait_for(1, attempts=True)  # the worker is now waiting 5 s to retry
    started = time.monotonic()
    assert notifier.close(0.3) is False
    assert time.monotonic() - started < 1.5


# --- Alertmanager -----------------------------------------------------------------------------


def _am_alerts(am_url: str) -> list[dict]:
    return httpx.get(f"{am_url}/api/v2/alerts", params={"filter": 'service="driftd"'}, timeout=5).json()


@pytest.mark.integration
def test_alertmanager_receives_refires_and_resolves(tmp_path: Path, rx: Receiver, metrics: Metrics) -> None:
    from tests.support.promstack import start_alertmanager

    config = {
        "route": {"receiver": "hook", "group_by": ["alertname", "model"], "group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "hook", "webhook_configs": [{"url": f"{rx.url}/am", "send_resolved": True}]}],
    }
    config_path = tmp_path / "alertmanager.yml"
    config_path.write_text(yaml.safe_dump(config))
    with start_alertmanager(config_path, tmp_path) as am_url:
        notifier = Notifier([channel("am", "alertmanager", am_url)], metrics, retry=FAST, generator_url="http://driftd.example:9108/")
        now = datetime.now(timezone.utc)
        notifier.notify(event("firing", at=now), ["am"])
        notifier.notify(event("firing", at=now + timedelta(seconds=1)), ["am"])  # re-post, not deduplicated
        wait_until(lambda: alerts_total(metrics, "am", "sent") == 2)
        [alert] = _am_alerts(am_url)
        assert alert["labels"] == {"alertname": "DriftDetected", "model": "churn", "severity": "warning", "service": "driftd"}
        assert alert["annotations"]["summary"] == "Drift on churn"
        assert alert["status"]["state"] == "active"
        assert alert["startsAt"].startswith(now.strftime("%Y-%m-%dT%H:%M:%S"))  # the first firing time is kept

        notified = rx.wait_for(1, timeout=15)[0].json
        assert notified["status"] == "firing" and notified["alerts"][0]["labels"]["model"] == "churn"

        notifier.notify(event("resolved", at=datetime.now(timezone.utc)), ["am"])
        wait_until(lambda: _am_alerts(am_url) == [], timeout=10)
        resolved = rx.wait_for(2, timeout=15)[-1].json
        assert resolved["status"] == "resolved" and resolved["alerts"][0]["labels"]["alertname"] == "DriftDetected"
        assert notifier.close(5)
    assert alerts_total(metrics, "am", "failed") == 0
