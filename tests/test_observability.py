"""The shipped Prometheus config, rules, Alertmanager route and dashboards against a real driftd.

driftd runs a small model through drift and a retrain (the demo's building blocks, the real
daemon); a real Prometheus scrapes it with the shipped scrape job and rules and alerts a real
Alertmanager running the shipped route. Then every dashboard panel's PromQL is evaluated.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from monitor.core.clock import SimulatedClock
from monitor.core.config import load_config
from monitor.demo.baseline import register_baseline_model
from monitor.demo.production import Production, create_tables
from monitor.demo.scenario import MODEL, Timeline, write_config
from monitor.demo.serving import Serving
from monitor.service.daemon import Daemon
from tests.support.promstack import free_port, panel_queries, promql_metric_names, query, start_alertmanager, start_prometheus_with, wait_for
from tests.support.receiver import Receiver

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))


def _rules(tmp_path: Path) -> Path:
    """The shipped rules, with the alerts' `for` holds cut to 1s so a test can see them fire.
    Expressions, labels and annotations stay exactly as shipped."""
    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules/driftd.rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    path = tmp_path / "driftd.rules.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def _alertmanager_config(tmp_path: Path, hook_url: str) -> Path:
    """The shipped route with the webhook pointed at the test's receiver and short group waits."""
    config = yaml.safe_load((ROOT / "deploy/alertmanager/alertmanager.yml").read_text())
    config["route"].update(group_wait="1s", group_interval="1s")
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = hook_url
        for slack in receiver.get("slack_configs", []):
            dead = tmp_path / "slack-url"
            dead.write_text(f"http://127.0.0.1:{free_port()}/slack\n")
            slack["api_url_file"] = str(dead)
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _prometheus_config(driftd_target: str, am_url: str, rules: Path) -> dict:
    """The shipped prometheus.yml: its driftd job and alerting, retargeted to loopback."""
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(rules)]
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [urlsplit(am_url).netloc]
    driftd = next(job for job in config["scrape_configs"] if job["job_name"] == "driftd")
    driftd["static_configs"][0]["targets"] = [driftd_target]
    config["scrape_configs"] = [driftd]  # the other jobs name compose hosts
    return config


class _Story:
    """The demo's production and the real daemon on one simulated clock, stepped a window at a
    time (a retrain finishes before time moves on); Prometheus scrapes the daemon meanwhile."""

    def __init__(self, config, model, timeline: Timeline) -> None:
        self.model, self.window = model, timedelta(seconds=timeline.window)
        self.clock = SimulatedClock(datetime.now(timezone.utc))
        self.serving = Serving(config, model)
        self.serving.refresh()
        self.production = Production(create_tables(model.source.resolved_url()), self.serving.current,
                                     rows_per_second=timeline.rows_per_second,
                                     label_delay=timedelta(seconds=timeline.label_delay), start=self.clock.now())
        self.daemon = Daemon(config, clock=self.clock)

    def step(self) -> None:
        self.production.advance(self.clock.now() + self.window)
        self.clock.advance(self.window)
        self.daemon.tick(self.model)
        wait_for(self.daemon.handoff.idle, timeout=300)
        self.serving.refresh()

    def until_promoted(self, on_drift=None) -> None:
        """`on_drift` runs once, right after the window that made the policy fire its drift alert:
        time stands still until it returns, so a scraper can see the alert however fast the
        machine steps the story."""
        for _ in range(3):
            self.step()
        self.production.shift(1.0)
        for _ in range(12):
            self.step()
            alert = self.daemon.store.alert_state(MODEL, "DriftdDatasetDrift")
            if on_drift is not None and alert is not None and alert.firing:
                on_drift()
                on_drift = None
            jobs = [j for j in self.daemon.store.retrain_jobs(MODEL) if j.status in ("succeeded", "failed")]
            if jobs:
                assert jobs[0].outcome == "promoted", jobs[0].reason
                break
        else:
            raise AssertionError("no retrain finished in 12 windows after the shift")
        for _ in range(2):  # the new champion's first checks: the series a promotion resets come back
            self.step()


def test_dashboards_rules_and_route_work_against_a_real_driftd(tmp_path):
    timeline = Timeline()
    with Receiver() as driftd_hook, Receiver() as am_hook:
        config_path = write_config(tmp_path, timeline, driftd_hook.url + "/driftd")
        port = free_port()
        raw = yaml.safe_load(config_path.read_text())
        raw["server"]["port"] = port
        config_path.write_text(yaml.safe_dump(raw))
        config = load_config(config_path)
        model = config.model(MODEL)
        register_baseline_model(config, model, rows=3000, trees=30)
        story = _Story(config, model, timeline)
        daemon = story.daemon
        with start_alertmanager(_alertmanager_config(tmp_path, am_hook.url + "/am"), tmp_path) as am_url, \
                start_prometheus_with(_prometheus_config(f"127.0.0.1:{port}", am_url, _rules(tmp_path)), tmp_path) as prom:
            daemon.start(schedule=False)
            try:
                # Prometheus must see the drift before the story moves on (a fast machine would
                # otherwise step through the drifted windows between two rule evaluations).
                story.until_promoted(on_drift=lambda: wait_for(
                    lambda: query(prom, f'ALERTS{{alertname="DriftdDatasetDrift",alertstate="firing",model="{MODEL}"}}'), timeout=60))
                # Everything a retrain exports has been scraped at least once.
                wait_for(lambda: query(prom, f'driftd_model_size_bytes{{model="{MODEL}"}}'), timeout=30)
                _assert_every_panel_evaluates(prom)
                firing = query(prom, 'max_over_time(ALERTS{alertname="DriftdDatasetDrift",alertstate="firing"}[10m])')
                assert firing and firing[0]["metric"]["model"] == MODEL
                notified = wait_for(lambda: [a for r in am_hook.requests for a in r.json["alerts"]
                                             if a["labels"]["alertname"] == "DriftdDatasetDrift"], timeout=60)
                assert notified[0]["labels"]["model"] == MODEL
                assert notified[0]["annotations"]["runbook"]
            finally:
                daemon.stop()


def _assert_every_panel_evaluates(prom: str) -> None:
    # A promotion resets the series measured against the old champion until the next check
    # and scrape: poll a little before calling a panel empty.
    try:
        wait_for(lambda: not _empty_panels(prom), timeout=20)
    except TimeoutError:
        pass
    empty = _empty_panels(prom)
    assert not empty, "panels over driftd metrics returned no data:\n" + "\n".join(empty)


def _empty_panels(prom: str) -> list[str]:
    empty, checked = [], 0
    substitutions = {"model": MODEL, "datasource": "driftd-prometheus", "__rate_interval": "1m", "__interval": "5s"}
    for path in DASHBOARDS:
        for title, expr in panel_queries(json.loads(path.read_text()), substitutions):
            result = query(prom, expr)  # raises on any PromQL error
            checked += 1
            if any(name.startswith("driftd_") for name in promql_metric_names(expr)) and not result:
                empty.append(f"{path.name}: {title}: {expr}")
    assert checked > 10
    return empty
