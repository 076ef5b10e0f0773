"""Static checks of the Grafana dashboards and provisioning files.

No Grafana server can run here, so these check what Grafana would trip over (bad JSON,
duplicate ids, missing datasources) and what users would (metrics that do not exist).
That Prometheus can evaluate every panel query is checked in test_deploy.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.promstack import ALLOWED_SERIES, annotation_queries, panel_queries, promql_metric_names, walk_panels

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS = REPO / "dashboards"
DASHBOARD_FILES = sorted(DASHBOARDS.glob("*.json"))
PROVISIONED_UID = "driftd-prometheus"
PANEL_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())




def walk_datasources(node: Any) -> Iterator[Any]:
    """Every value of a "datasource" key anywhere in the dashboard."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            yield from walk_datasources(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk_datasources(item)


@pytest.fixture(params=DASHBOARD_FILES, ids=lambda p: p.name)
def dashboard(request) -> dict[str, Any]:
    return load(request.param)


def test_expected_dashboards_exist_with_unique_fixed_uids():
    assert {p.name for p in DASHBOARD_FILES} >= {"driftd-fleet.json", "driftd-model.json"}
    uids = [load(p).get("uid") for p in DASHBOARD_FILES]
    assert all(uids), "every dashboard needs a fixed uid (links and provisioning rely on it)"
    assert len(uids) == len(set(uids)), f"duplicate dashboard uids: {uids}"


def test_dashboard_header(dashboard):
    assert dashboard["title"]
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard.get("id") is None, "an exported numeric id breaks provisioning into another Grafana"
    assert "driftd" in dashboard.get("tags", [])


def test_template_variables(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    ds = variables["datasource"]
    assert (ds["type"], ds["query"]) == ("datasource", "prometheus")
    model = variables["model"]
    assert model["type"] == "query"
    assert model["datasource"] == PANEL_DATASOURCE
    query = model["query"]["query"] if isinstance(model["query"], dict) else model["query"]
    assert query == "label_values(driftd_checks_total, model)"
    assert model["multi"] is True and model["includeAll"] is True


def test_panels_have_unique_ids_titles_and_the_datasource_variable(dashboard):
    panels = list(walk_panels(dashboard["panels"]))
    ids = [p.get("id") for p in panels]
    assert None not in ids and len(ids) == len(set(ids)), f"panel ids must be unique: {ids}"
    for panel in panels:
        assert panel.get("title"), f"panel {panel['id']} has no title"
        assert panel.get("datasource") == PANEL_DATASOURCE, f"{panel['title']}: {panel.get('datasource')}"
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, f"{panel['title']} is wider than the grid"
        if panel["type"] != "row":
            assert panel.get("targets"), f"{panel['title']} has no query"
        for target in panel.get("targets", []):
            assert target.get("datasource", PANEL_DATASOURCE) == PANEL_DATASOURCE, panel["title"]
            assert target.get("expr"), f"{panel['title']} has a target without expr"


def test_no_hard_coded_datasource(dashboard):
    for ds in walk_datasources(dashboard):
        uid = ds.get("uid") if isinstance(ds, dict) else ds
        assert uid in ("${datasource}", PROVISIONED_UID), f"hard-coded datasource {ds!r}"


def all_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    subs = {"model": "(credit|churn)"}
    return panel_queries(dashboard, subs) + annotation_queries(dashboard, subs)


def test_queries_use_only_contract_metrics(dashboard):
    for title, expr in all_queries(dashboard):
        names = promql_metric_names(expr)
        assert names, f"{title}: no metric found in {expr!r}"
        unknown = names - ALLOWED_SERIES
        assert not unknown, f"{title}: {sorted(unknown)} are not driftd metrics ({expr})"


def test_model_queries_follow_the_model_variable(dashboard):
    # Every per-model selector must honour $model, or the variable silently does nothing.
    for panel in walk_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            for name, matchers in re.findall(r"(driftd_\w+)(\{[^}]*\})?", target["expr"]):
                if name not in ("driftd_build_info", "driftd_leader"):  # per process, not per model
                    assert 'model=~"$model"' in matchers, f"{panel['title']}: {name} ignores $model"


def metrics_of(path: Path) -> set[str]:
    d = load(DASHBOARDS / path)
    return set().union(*(promql_metric_names(e) for _, e in all_queries(d)))


def test_fleet_dashboard_covers_the_fleet_view():
    assert metrics_of("driftd-fleet.json") >= {
        "driftd_dataset_drifted", "driftd_drifted_features_ratio", "driftd_checks_total",
        "driftd_last_check_timestamp_seconds", "driftd_retrains_total", "driftd_champion_info",
    }


def test_model_dashboard_covers_the_model_view():
    d = load(DASHBOARDS / "driftd-model.json")
    assert metrics_of("driftd-model.json") >= {
        "driftd_feature_drift_score", "driftd_feature_drifted", "driftd_model_quality",
        "driftd_labelled_rows_ratio", "driftd_window_rows", "driftd_check_duration_seconds_bucket",
        "driftd_source_errors_total", "driftd_alerts_total", "driftd_model_size_bytes",
        "driftd_feature_p_value", "driftd_feature_missing_share", "driftd_feature_unseen_share", "driftd_alert_firing",
    }
    types = {p["type"] for p in walk_panels(d["panels"])}
    assert {"state-timeline", "timeseries", "table"} <= types
    exprs = [e for _, e in panel_queries(d, {})]
    assert any("histogram_quantile" in e and "driftd_check_duration_seconds_bucket" in e for e in exprs)
    annotations = annotation_queries(d, {})
    assert any("driftd_champion_info" in expr for _, expr in annotations), "champion changes annotation missing"


def test_provisioning_matches_dashboards_and_compose():
    ds = yaml.safe_load((DASHBOARDS / "provisioning/datasources/driftd.yaml").read_text())["datasources"]
    assert [(d["uid"], d["type"], d["url"]) for d in ds] == [(PROVISIONED_UID, "prometheus", "http://prometheus:9090")]
    providers = yaml.safe_load((DASHBOARDS / "provisioning/dashboards/driftd.yaml").read_text())["providers"]
    path = providers[0]["options"]["path"]
    assert providers[0]["type"] == "file" and path == "/var/lib/grafana/dashboards/driftd"
    # the compose stack must mount the dashboards where the provider looks
    grafana = yaml.safe_load((REPO / "deploy/docker-compose.yml").read_text())["services"]["grafana"]
    assert f"../dashboards:{path}:ro" in grafana["volumes"]


# --- the helpers the checks above rely on must be able to fail -----------------------------

def test_metric_extraction_sees_through_promql_syntax():
    expr = (
        'histogram_quantile(0.95, sum by (model, le) (rate(driftd_check_duration_seconds_bucket{model=~"$model"}[1h])))'
        ' / on (model) group_left () max without (x) (driftd_bogus_metric offset 5m) > bool 1e3'
    )
    assert promql_metric_names(expr) == {"driftd_check_duration_seconds_bucket", "driftd_bogus_metric"}
    assert "driftd_check_duration_seconds" not in ALLOWED_SERIES, "histograms exist only as _bucket/_sum/_count"


def test_panel_queries_substitutes_variables_and_descends_into_rows():
    board = {"panels": [
        {"type": "row", "title": "r", "panels": [
            {"title": "inner", "targets": [{"expr": 'rate(x{model=~"$model"}[$__rate_interval]) offset $__interval'}]},
        ]},
        {"title": "outer", "targets": [{"expr": 'y{model=~"${model}"}[$__range] ${model:regex}'}, {"refId": "B"}]},
    ]}
    assert panel_queries(board, {"model": "a|b", "__rate_interval": "2m"}) == [
        ("inner", 'rate(x{model=~"a|b"}[2m]) offset 15s'),
        ("outer", 'y{model=~"a|b"}[1h] a|b'),
    ]
