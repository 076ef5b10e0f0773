#!/usr/bin/env python3
"""Render deploy/k8s/prometheusrule.yaml from deploy/prometheus/rules/driftd.rules.yml.

The rules file is the single source of truth; tests fail when the two differ.
Run after editing the rules:  python deploy/k8s/render_prometheusrule.py
"""

from __future__ import annotations

from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE.parent / "prometheus" / "rules" / "driftd.rules.yml"
OUTPUT = HERE / "prometheusrule.yaml"

HEADER = """\
# GENERATED from deploy/prometheus/rules/driftd.rules.yml by deploy/k8s/render_prometheusrule.py.
# Do not edit: change the rules file and re-run the script.
# prometheus-operator CRD (monitoring.coreos.com/v1). kube-prometheus-stack selects rules
# by its ruleSelector, by default `release: <helm release name>`: adjust the label.
"""


def render(rules_path: Path = RULES) -> str:
    groups = yaml.safe_load(rules_path.read_text())["groups"]
    resource = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "driftd",
            "labels": {"app.kubernetes.io/name": "driftd", "release": "prometheus"},
        },
        "spec": {"groups": groups},
    }
    return HEADER + yaml.safe_dump(resource, sort_keys=False, width=1000, allow_unicode=True)


if __name__ == "__main__":
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}")
