"""Deployment as code: every file in deploy/ is checked by the tool that will consume it.

promtool, amtool and docker-compose come from `make system-deps`; a missing binary fails
the test (a skipped check would silently ship a broken config).
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from tests.support.promstack import (
    ALLOWED_SERIES,
    annotation_queries,
    find_binary,
    free_port,
    panel_queries,
    promql_metric_names,
    query,
    start_alertmanager,
    start_prometheus,
    wait_for,
)

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
RULES = DEPLOY / "prometheus/rules/driftd.rules.yml"
RULE_TESTS = DEPLOY / "prometheus/tests/driftd.rules.test.yml"
ALERTMANAGER_YML = DEPLOY / "alertmanager/alertmanager.yml"
COMPOSE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "k8s"
REQUIRED_ALERTS = {
    "DriftdDatasetDrift", "DriftdQualityDrop", "DriftdStaleChecks",
    "DriftdSourceErrors", "DriftdRetrainFailed", "DriftdDown",
}
# variables docker-compose.yml requires (deploy/.env in real use)
COMPOSE_ENV = {
    "POSTGRES_PASSWORD": "test-password",
    "GRAFANA_ADMIN_PASSWORD": "test-password",
    "PREDICTIONS_DB_URL": "postgresql+psycopg://driftd:test-password@postgres:5432/driftd",
}


def tool(name: str) -> str:
    try:
        return find_binary(name)
    except FileNotFoundError:
        pytest.fail(f"{name} is not installed: run `make system-deps`")


def run(*argv: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def k8s_docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


# --- Prometheus ------------------------------------------------------------------------

def test_promtool_check_config_and_rules():
    out = ok(run(tool("promtool"), "check", "config", str(DEPLOY / "prometheus/prometheus.yml")))
    assert "1 rule files found" in out, "prometheus.yml must load the driftd rules"
    ok(run(tool("promtool"), "check", "rules", str(RULES)))


def test_promtool_rule_unit_tests_pass():
    # run from elsewhere: the test file's rule_files path must resolve relative to itself
    ok(run(tool("promtool"), "test", "rules", str(RULE_TESTS), cwd=Path("/")))


def test_every_alert_is_unit_tested_firing_and_not_firing():
    cases = [c for t in yaml.safe_load(RULE_TESTS.read_text())["tests"] for c in t.get("alert_rule_test", [])]
    for alert in {r["alert"] for r in rules()}:
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c.get("exp_alerts") for c in mine), f"{alert}: no test where it fires"
        assert any(not c.get("exp_alerts") for c in mine), f"{alert}: no test where it stays quiet"


def test_rules_are_documented_and_use_contract_metrics():
    assert {r["alert"] for r in rules()} >= REQUIRED_ALERTS
    for rule in rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), name
        assert re.search(r"`(driftd|kubectl|systemctl|docker) [^`]+`", rule["annotations"]["runbook"]), (
            f"{name}: the runbook should name a concrete command"
        )
        unknown = promql_metric_names(rule["expr"]) - ALLOWED_SERIES
        assert not unknown, f"{name} uses non-contract metrics {unknown}"
    # promtool 2.42 rejects newer group fields; keep the file loadable by it
    assert all(set(g) <= {"name", "interval", "limit", "rules"} for g in yaml.safe_load(RULES.read_text())["groups"])


def test_prometheus_config_targets_live_only_in_prometheus_yml():
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["driftd"]["static_configs"][0]["targets"] == ["driftd:9108"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    assert "9108" not in RULES.read_text(), "rules must not hard-code targets"


# --- Alertmanager ----------------------------------------------------------------------

def test_amtool_check_config():
    ok(run(tool("amtool"), "check-config", str(ALERTMANAGER_YML)))


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["alertname=DriftdDatasetDrift", "model=credit", "severity=warning"], "driftd-webhook,team-slack"),
        (["alertname=DriftdDown", "job=driftd", "severity=critical"], "driftd-webhook,team-slack"),
        (["alertname=SomethingElse"], "driftd-webhook"),
    ],
)
def test_alertmanager_routes(labels, receivers):
    out = ok(run(tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER_YML}", *labels))
    assert out.splitlines()[0].strip() == receivers


def test_alertmanager_config_shape():
    config = yaml.safe_load(ALERTMANAGER_YML.read_text())
    assert config["route"]["group_by"] == ["alertname", "model"]
    slack = next(r for r in config["receivers"] if r.get("slack_configs"))["slack_configs"][0]
    assert "api_url_file" in slack and "api_url" not in slack, "no Slack secret in the file"
    inhibit = config["inhibit_rules"][0]
    assert inhibit["source_matchers"] == ['alertname="DriftdDown"']
    targets = inhibit["target_matchers"][0]
    assert all(a in targets for a in ("DriftdDatasetDrift", "DriftdQualityDrop", "DriftdStaleChecks"))


# --- docker-compose and Dockerfile -----------------------------------------------------

def compose(*args: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    env_file = tmp_path / "empty.env"  # ignore a developer's deploy/.env
    env_file.write_text("")
    clean = {k: v for k, v in os.environ.items() if k not in COMPOSE_ENV}
    return run(tool("docker-compose"), "--env-file", str(env_file), "-f", str(COMPOSE), *args, env={**clean, **env})


def test_docker_compose_config_is_valid(tmp_path):
    ok(compose("config", "-q", env=COMPOSE_ENV, tmp_path=tmp_path))
    config = yaml.safe_load(ok(compose("config", env=COMPOSE_ENV, tmp_path=tmp_path)))
    services = config["services"]
    assert set(services) >= {"driftd", "postgres", "mlflow", "prometheus", "alertmanager", "grafana"}
    assert services["driftd"]["build"]["dockerfile"] == "deploy/Dockerfile"
    # every bind-mounted file or directory from the repository exists
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith("/"):
                assert Path(source).exists(), f"{name} mounts missing {source}"


def test_docker_compose_refuses_to_start_without_passwords(tmp_path):
    proc = compose("config", "-q", env={}, tmp_path=tmp_path)
    assert proc.returncode != 0 and "POSTGRES_PASSWORD" in proc.stderr


def test_dockerfile():
    text = (DEPLOY / "Dockerfile").read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert instructions[0] == "FROM python:3.11-slim"
    user = next(line.split()[1] for line in instructions if line.startswith("USER "))
    assert user.split(":")[0] not in ("root", "0")
    assert dockerfile_healthcheck() == ["driftd", "health", "-c", "/etc/driftd/driftd.yaml"]
    assert 'ENTRYPOINT ["driftd"]' in instructions
    assert 'CMD ["run", "-c", "/etc/driftd/driftd.yaml"]' in instructions
    for line in instructions:
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (REPO / src).exists(), f"COPY source {src} missing"
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore and "!monitor/" in ignore, "the build context should be an allow-list (no .venv, no secrets)"


def dockerfile_healthcheck() -> list[str]:
    text = (DEPLOY / "Dockerfile").read_text()
    return json.loads(re.search(r"HEALTHCHECK[^\n]*\\\n\s*CMD (\[.*\])", text).group(1))


def k8s_probes() -> dict[str, list[str]]:
    (deploy,) = k8s_docs("deployment.yaml")
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    return {p: container[p]["exec"]["command"] for p in ("startupProbe", "livenessProbe", "readinessProbe")}


@pytest.mark.integration
def test_the_shipped_probes_work_with_tls_and_basic_auth(tmp_path):
    from tests.test_server import _self_signed

    cert, key = _self_signed(tmp_path)
    port = free_port()
    config = tmp_path / "driftd.yaml"
    config.write_text(yaml.safe_dump({
        "state_url": f"sqlite:///{tmp_path / 'state.db'}",
        "mlflow": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
        "server": {"host": "0.0.0.0", "port": port, "tls": {"cert_file": str(cert), "key_file": str(key)},
                   "basic_auth": {"username": "prometheus", "password": "${METRICS_PASSWORD}"}},
        "models": [],
    }))
    env = {**os.environ, "METRICS_PASSWORD": "probe-secret-41", "MLFLOW_DISABLE_TELEMETRY": "true"}
    driftd = shutil.which("driftd", path=str(Path(sys.executable).parent))
    commands = {"docker HEALTHCHECK": dockerfile_healthcheck(), **{f"k8s {k}": v for k, v in k8s_probes().items()}}

    def probe(command: list[str]) -> subprocess.CompletedProcess:
        argv = [driftd if a == "driftd" else str(config) if a == "/etc/driftd/driftd.yaml" else a for a in command]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)

    assert probe(commands["docker HEALTHCHECK"]).returncode == 1  # nothing listens yet: unhealthy
    daemon = subprocess.Popen([driftd, "run", "-c", str(config)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        wait_for(lambda: probe(commands["docker HEALTHCHECK"]).returncode == 0 or daemon.poll() is not None, timeout=90)
        assert daemon.poll() is None, daemon.stderr.read()
        for name, command in commands.items():
            result = probe(command)
            assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
            assert f"https://127.0.0.1:{port}/" in result.stdout and "probe-secret-41" not in result.stdout + result.stderr
        scrape = httpx.get(f"https://127.0.0.1:{port}/metrics", verify=False, timeout=5)
        assert scrape.status_code == 401  # the probes are open; the metrics are not
    finally:
        daemon.terminate()
        daemon.wait(timeout=20)
    assert probe(commands["k8s livenessProbe"]).returncode == 1


# --- Kubernetes --------------------------------------------------------------------------

BUILTIN_MANIFESTS = ["configmap.yaml", "secret.example.yaml", "deployment.yaml", "service.yaml", "poddisruptionbudget.yaml"]


def kubernetes_validate() -> str:
    path = shutil.which("kubernetes-validate", path=str(Path(sys.executable).parent)) or shutil.which("kubernetes-validate")
    if not path:
        pytest.fail("kubernetes-validate is not installed: run `make install` (it is a test extra)")
    return path


def test_kubernetes_validate_strict_builtin_kinds():
    out = ok(run(kubernetes_validate(), "--strict", *(str(K8S / m) for m in BUILTIN_MANIFESTS)))
    assert out.count("passed") == len(BUILTIN_MANIFESTS), out


def test_every_k8s_manifest_is_covered():
    crds = {"servicemonitor.yaml", "prometheusrule.yaml", "raycluster.yaml"}
    assert {p.name for p in K8S.glob("*.yaml")} == set(BUILTIN_MANIFESTS) | crds


def test_deployment_is_hardened_and_wired_to_service_config_and_secret():
    (deploy,) = k8s_docs("deployment.yaml")
    (service,) = k8s_docs("service.yaml")
    (configmap,) = k8s_docs("configmap.yaml")
    (secret,) = k8s_docs("secret.example.yaml")
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    uid = re.search(r"--uid (\d+)", (DEPLOY / "Dockerfile").read_text()).group(1)
    assert str(pod["securityContext"]["runAsUser"]) == uid, "runAsUser should be the image's user"
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert {"requests", "limits"} <= set(container["resources"])
    probes = k8s_probes()
    assert probes["livenessProbe"][:2] == ["driftd", "health"] and "--ready" not in probes["livenessProbe"]
    assert probes["readinessProbe"][:3] == ["driftd", "health", "--ready"]
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9108, "targetPort": "metrics", "protocol": "TCP"}]
    assert {"name": "metrics", "containerPort": 9108, "protocol": "TCP"} in container["ports"]
    assert service["spec"]["selector"].items() <= deploy["spec"]["template"]["metadata"]["labels"].items()
    # the config the args point at is the ConfigMap's key, and it is YAML
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert container["args"] == ["run", "-c", f"{mounts['config']}/driftd.yaml"]
    assert yaml.safe_load(configmap["data"]["driftd.yaml"])["server"]["port"] == 9108
    refs = [e["valueFrom"]["secretKeyRef"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    refs += [{"name": v["secret"]["secretName"], "key": i["key"]} for v in pod["volumes"] if "secret" in v for i in v["secret"]["items"]]
    for ref in refs:
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"], ref


# kubernetes-validate has no schemas for prometheus-operator CRDs (it only warns), so check
# the fields driftd uses against the CRDs' documented structure, rejecting unknown keys.
def _obj(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


_METADATA = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "labels": {"type": "object"}}}
_STR = {"type": "string"}
_DURATION = {"type": "string", "pattern": r"^(\d+(ms|s|m|h|d|w|y))+$"}
SERVICE_MONITOR_SCHEMA = _obj({
    "apiVersion": {"const": "monitoring.coreos.com/v1"},
    "kind": {"const": "ServiceMonitor"},
    "metadata": _METADATA,
    "spec": _obj({
        "jobLabel": _STR,
        "selector": _obj({"matchLabels": {"type": "object"}}, ["matchLabels"]),
        "endpoints": {"type": "array", "minItems": 1, "items": _obj(
            {"port": _STR, "path": _STR, "interval": _DURATION, "scrapeTimeout": _DURATION, "scheme": _STR},
            ["port"])},
    }, ["selector", "endpoints"]),
}, ["apiVersion", "kind", "metadata", "spec"])
PROMETHEUS_RULE_SCHEMA = _obj({
    "apiVersion": {"const": "monitoring.coreos.com/v1"},
    "kind": {"const": "PrometheusRule"},
    "metadata": _METADATA,
    "spec": _obj({"groups": {"type": "array", "minItems": 1, "items": _obj({
        "name": _STR, "interval": _DURATION, "limit": {"type": "integer"},
        "rules": {"type": "array", "items": _obj({
            "alert": _STR, "record": _STR, "expr": _STR, "for": _DURATION,
            "labels": {"type": "object", "additionalProperties": _STR},
            "annotations": {"type": "object", "additionalProperties": _STR},
        }, ["expr"])},
    }, ["name", "rules"])}}, ["groups"]),
}, ["apiVersion", "kind", "metadata", "spec"])


def test_service_monitor_scrapes_the_service():
    (monitor,) = k8s_docs("servicemonitor.yaml")
    jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
    (service,) = k8s_docs("service.yaml")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    # the job label defaults to the Service name; rules and dashboards select job="driftd"
    assert "jobLabel" not in monitor["spec"] and service["metadata"]["name"] == "driftd"


def render_prometheus_rule() -> str:
    # run_path: no import side effects, no __pycache__ left in deploy/
    return runpy.run_path(str(K8S / "render_prometheusrule.py"))["render"](RULES)


def test_prometheus_rule_is_generated_from_the_rules_file(tmp_path):
    committed = (K8S / "prometheusrule.yaml").read_text()
    assert committed == render_prometheus_rule(), (
        "deploy/k8s/prometheusrule.yaml is stale: run `python deploy/k8s/render_prometheusrule.py`"
    )
    resource = yaml.safe_load(committed)
    jsonschema.validate(resource, PROMETHEUS_RULE_SCHEMA)
    assert resource["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    extracted = tmp_path / "groups.yml"
    extracted.write_text(yaml.safe_dump({"groups": resource["spec"]["groups"]}))
    ok(run(tool("promtool"), "check", "rules", str(extracted)))


# --- replicas and Ray ------------------------------------------------------------------

def test_two_replicas_share_a_postgresql_state_store_under_the_lease():
    (deploy,) = k8s_docs("deployment.yaml")
    (budget,) = k8s_docs("poddisruptionbudget.yaml")
    (configmap,) = k8s_docs("configmap.yaml")
    (secret,) = k8s_docs("secret.example.yaml")
    spec = deploy["spec"]
    assert spec["replicas"] == 2
    # a rolling update never takes both down: the leader's stop releases the lease to the other pod
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert budget["spec"]["minAvailable"] == 1 < spec["replicas"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    (container,) = spec["template"]["spec"]["containers"]
    instance = next(e for e in container["env"] if e["name"] == "DRIFTD_INSTANCE")
    assert instance["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}, "each replica needs its own name in the lease"
    # the state store is shared PostgreSQL (SQLite refuses a second daemon, and an emptyDir each would split it)
    config = yaml.safe_load(configmap["data"]["driftd.yaml"])
    assert config["state_url"] == "${DRIFTD_STATE_URL}" and secret["stringData"]["state-url"].startswith("postgresql")
    assert set(config["state"]["lease"]) == {"ttl", "renew_every"}
    # readiness does not depend on leadership: the standby stays behind the Service and scraped
    assert k8s_probes()["readinessProbe"] == ["driftd", "health", "--ready", "-c", "/etc/driftd/driftd.yaml"]


def _commented_executor(text: str) -> dict[str, Any]:
    """The `# executor: {...}` line a config ships commented out, parsed."""
    (line,) = re.findall(r"^\s*# (executor: .*)$", text, re.M)
    return yaml.safe_load(line)["executor"]


_POD_TEMPLATE = {"type": "object", "required": ["spec"], "properties": {"spec": {"type": "object"}}, "additionalProperties": False}
RAY_CLUSTER_SCHEMA = _obj({
    "apiVersion": {"const": "ray.io/v1"},
    "kind": {"const": "RayCluster"},
    "metadata": {"type": "object", "required": ["name"]},
    "spec": _obj({
        "rayVersion": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
        "headGroupSpec": _obj({"rayStartParams": {"type": "object", "additionalProperties": {"type": "string"}},
                               "template": _POD_TEMPLATE}, ["rayStartParams", "template"]),
        "workerGroupSpecs": {"type": "array", "minItems": 1, "items": _obj({
            "groupName": {"type": "string"}, "replicas": {"type": "integer"}, "minReplicas": {"type": "integer"},
            "maxReplicas": {"type": "integer"}, "rayStartParams": {"type": "object", "additionalProperties": {"type": "string"}},
            "template": _POD_TEMPLATE}, ["groupName", "rayStartParams", "template"])},
    }, ["rayVersion", "headGroupSpec", "workerGroupSpecs"]),
}, ["apiVersion", "kind", "metadata", "spec"])


def test_kuberay_cluster_is_valid_and_wired_to_the_daemons_executor(tmp_path):
    """KubeRay's CRD is not in kubernetes-validate: the RayCluster's own fields are checked against
    a schema of the fields used, and each pod template as a Pod with kubernetes-validate --strict."""
    (cluster,) = k8s_docs("raycluster.yaml")
    jsonschema.validate(cluster, RAY_CLUSTER_SCHEMA)
    groups = [cluster["spec"]["headGroupSpec"], *cluster["spec"]["workerGroupSpecs"]]
    pods = []
    for i, group in enumerate(groups):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"ray-{i}"}, "spec": group["template"]["spec"]}
        pods.append(tmp_path / f"pod-{i}.yaml")
        pods[-1].write_text(yaml.safe_dump(pod))
    out = ok(run(kubernetes_validate(), "--strict", *map(str, pods)))
    assert out.count("passed") == len(pods), out

    head = cluster["spec"]["headGroupSpec"]
    port = head["rayStartParams"]["ray-client-server-port"]
    (head_container,) = head["template"]["spec"]["containers"]
    assert {"name": "client", "containerPort": int(port), "protocol": "TCP"} in head_container["ports"]
    executor = _commented_executor(yaml.safe_load((K8S / "configmap.yaml").read_text())["data"]["driftd.yaml"])
    assert executor == {"type": "ray", "address": f"ray://{cluster['metadata']['name']}-head-svc:{port}"}
    # every node runs the daemon's image (built with Ray): driftd's code and the versions match
    (deploy,) = k8s_docs("deployment.yaml")
    repository = deploy["spec"]["template"]["spec"]["containers"][0]["image"].rsplit(":", 1)[0]
    for group in groups:
        for container in group["template"]["spec"]["containers"]:
            assert container["image"].rsplit(":", 1)[0] == repository
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert group["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_docker_compose_ray_profile_is_optional_and_wired(tmp_path):
    plain = yaml.safe_load(ok(compose("config", env=COMPOSE_ENV, tmp_path=tmp_path)))["services"]
    # Ray is opt-in (`--profile ray`; docker-compose 1.29's `config` lists every profile's services)
    assert {n for n, svc in plain.items() if svc.get("profiles")} == {"ray-head", "ray-worker"}
    assert all(plain[n]["profiles"] == ["ray"] for n in ("ray-head", "ray-worker"))
    assert not any(set(svc.get("depends_on") or ()) & {"ray-head", "ray-worker"} for n, svc in plain.items() if not svc.get("profiles"))
    env = {**COMPOSE_ENV, "DRIFTD_RAY_VERSION": "2.60.0"}
    ok(compose("--profile", "ray", "config", "-q", env=env, tmp_path=tmp_path))
    services = yaml.safe_load(ok(compose("--profile", "ray", "config", env=env, tmp_path=tmp_path)))["services"]
    assert services["driftd"]["build"]["args"] == {"RAY_VERSION": "2.60.0"}
    head, worker = services["ray-head"], services["ray-worker"]
    assert head["image"] == worker["image"] == services["driftd"]["image"], "one image: driftd's code on every node"
    assert "--head" in head["command"] and "--address=ray-head:6379" in worker["command"]
    port = next(a.split("=")[1] for a in head["command"] if a.startswith("--ray-client-server-port="))
    executor = _commented_executor((DEPLOY / "driftd.compose.yaml").read_text())
    assert executor == {"type": "ray", "address": f"ray://ray-head:{port}"}
    assert 'ARG RAY_VERSION=""' in (DEPLOY / "Dockerfile").read_text()


# --- systemd -----------------------------------------------------------------------------

UNIT = DEPLOY / "systemd/driftd.service"


def test_systemd_unit_directives():
    text = UNIT.read_text()
    for directive in (
        "ProtectSystem=strict", "StateDirectory=driftd", "NoNewPrivileges=yes", "PrivateTmp=yes",
        "ProtectHome=yes", "Restart=on-failure", "KillSignal=SIGTERM", "TimeoutStopSec=15",
        "ExecStart=/usr/bin/env driftd run -c /etc/driftd/driftd.yaml",
    ):
        assert re.search(rf"^{re.escape(directive)}$", text, re.M), f"missing {directive}"
    assert re.search(r"^(DynamicUser=yes|User=driftd)$", text, re.M)
    assert re.search(r"^RestrictAddressFamilies=.*AF_INET", text, re.M)
    assert re.search(r"^EnvironmentFile=-?/etc/driftd/", text, re.M)


def test_systemd_analyze_verify():
    # systemd-analyze is not a `make system-deps` package (and needs no running systemd):
    # this one check is skipped where the tool is absent, the directive check above still runs.
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze not installed")
    proc = run(analyze, "verify", str(UNIT))
    # verify exits 0 even for unknown directives; any complaint about the unit counts
    assert proc.returncode == 0 and UNIT.name not in proc.stderr, proc.stderr


# --- the real servers --------------------------------------------------------------------

@pytest.mark.integration
def test_prometheus_loads_rules_reaches_alertmanager_and_evaluates_dashboards(tmp_path):
    tool("promtool")  # fail early with the install hint if the stack is missing
    nobody = f"127.0.0.1:{free_port()}"  # no driftd yet: the target is down, which DriftdDown must notice
    with start_alertmanager(ALERTMANAGER_YML, tmp_path) as am_url, \
            start_prometheus([nobody], [RULES], am_url, tmp_path) as prom_url:
        assert httpx.get(f"{am_url}/-/ready").status_code == 200

        groups = httpx.get(f"{prom_url}/api/v1/rules").json()["data"]["groups"]
        expected = yaml.safe_load(RULES.read_text())["groups"]
        assert sorted(g["name"] for g in groups) == sorted(g["name"] for g in expected)
        assert {r["name"] for g in groups for r in g["rules"]} == {r["alert"] for r in rules()}
        assert all(r["health"] != "err" for g in groups for r in g["rules"])

        def alertmanager_discovered():
            return httpx.get(f"{prom_url}/api/v1/alertmanagers").json()["data"]["activeAlertmanagers"]
        wait_for(alertmanager_discovered, timeout=15)

        # the scrape fails, up == 0, and DriftdDown goes pending (it fires after its 5m `for`)
        def driftd_down_pending():
            alerts = httpx.get(f"{prom_url}/api/v1/alerts").json()["data"]["alerts"]
            return [a for a in alerts if a["labels"]["alertname"] == "DriftdDown" and a["state"] == "pending"]
        wait_for(driftd_down_pending, timeout=15)

        for board in sorted((REPO / "dashboards").glob("*.json")):
            dashboard = json.loads(board.read_text())
            for model in (".*", "(credit|churn)"):
                for title, expr in panel_queries(dashboard, {"model": model}) + annotation_queries(dashboard, {"model": model}):
                    try:
                        query(prom_url, expr)
                    except RuntimeError as exc:
                        pytest.fail(f"{board.name} / {title}: {exc}")


@pytest.mark.integration
def test_alertmanager_inhibits_model_alerts_while_driftd_is_down(tmp_path):
    with start_alertmanager(ALERTMANAGER_YML, tmp_path) as am_url:
        def post(alertname: str, **labels: str) -> None:
            alert = {"labels": {"alertname": alertname, "job": "driftd", "severity": "warning", **labels}}
            httpx.post(f"{am_url}/api/v2/alerts", json=[alert]).raise_for_status()

        post("DriftdDatasetDrift", model="credit")
        post("DriftdRetrainFailed", model="credit")  # not inhibited: a retrain failure is independent
        post("DriftdDown", severity="critical")

        def states():
            got = {a["labels"]["alertname"]: a["status"]["state"] for a in httpx.get(f"{am_url}/api/v2/alerts").json()}
            return got if got.get("DriftdDatasetDrift") == "suppressed" else None
        got = wait_for(states, timeout=15)
        assert got == {"DriftdDatasetDrift": "suppressed", "DriftdRetrainFailed": "active", "DriftdDown": "active"}


@pytest.mark.integration
def test_promstack_reports_a_failed_start_with_the_servers_log(tmp_path):
    bad = tmp_path / "bad.rules.yml"
    bad.write_text("groups: [{name: bad, rules: [{alert: A, expr: 'sum(('}]}]\n")
    with (pytest.raises(RuntimeError, match=r"(?s)prometheus did not become ready.*exited with 1.*unclosed left parenthesis"),
          start_prometheus([], [bad], None, tmp_path)):
        pass


# --- the shipped driftd configurations ------------------------------------------------------

@pytest.mark.parametrize("source", ["compose", "k8s", "compose with ray", "k8s with ray"])
def test_shipped_driftd_configs_pass_driftd_validate(tmp_path, source):
    """The configs the stack mounts must load with the real schema (given their env), also with
    their commented `executor: ray` line switched on."""
    if source.startswith("compose"):
        text = (REPO / "deploy" / "driftd.compose.yaml").read_text()
    else:
        text = yaml.safe_load((REPO / "deploy" / "k8s" / "configmap.yaml").read_text())["data"]["driftd.yaml"]
    if source.endswith("with ray"):
        text, switched = re.subn(r"^(\s*)# (executor: .*)$", r"\1\2", text, flags=re.M)
        assert switched == 1
    config = tmp_path / "driftd.yaml"
    config.write_text(text)
    env = {**os.environ, "POSTGRES_PASSWORD": "pw", "DRIFTD_STATE_URL": "postgresql+psycopg://driftd:pw@db/driftd",
           "PREDICTIONS_DB_URL": "postgresql+psycopg://reader@db/predictions"}
    proc = subprocess.run([sys.executable, "-m", "monitor.cli", "validate", "-c", str(config)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("OK")
