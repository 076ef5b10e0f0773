"""The HTTP endpoints as Prometheus, a load balancer and an operator with curl see them."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from monitor.core.config import Server as ServerConfig
from monitor.observe.metrics import Metrics
from monitor.observe.server import MetricsServer, ServerError

PASSWORD = "s3cret-Pa55word-xyz"


@pytest.fixture
def metrics() -> Metrics:
    m = Metrics()
    m.register_model("churn", 900)
    return m


@pytest.fixture
def problems() -> list[str]:
    return []


@pytest.fixture
def server(metrics: Metrics, problems: list[str]) -> Iterator[MetricsServer]:
    with MetricsServer(metrics, "127.0.0.1", 0, readiness=lambda: list(problems)) as srv:
        yield srv


def test_endpoints_answer(server: MetricsServer, problems: list[str]) -> None:
    assert server.port != 0
    health = httpx.get(f"{server.url}/healthz")
    assert (health.status_code, health.text) == (200, "ok\n")

    scrape = httpx.get(f"{server.url}/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'driftd_checks_total{model="churn",status="ok"} 0.0' in scrape.text

    assert httpx.get(f"{server.url}/readyz").status_code == 200
    problems.extend(["state store unreachable", "MLflow tracking server unreachable"])
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 503
    assert ready.text.splitlines() == ["state store unreachable", "MLflow tracking server unreachable"]
    assert httpx.get(f"{server.url}/nope").status_code == 404


def test_scrape_passes_promtool(server: MetricsServer) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: run make system-deps")
    body = httpx.get(f"{server.url}/metrics", headers={"Accept-Encoding": "gzip"}).content  # httpx un-gzips
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_readiness_callback_that_raises_means_not_ready(metrics: Metrics) -> None:
    def broken() -> list[str]:
        raise ConnectionError("postgresql://driftd:hunter2@db/driftd refused")

    with MetricsServer(metrics, "127.0.0.1", 0, readiness=broken) as srv:
        ready = httpx.get(f"{srv.url}/readyz")
    assert ready.status_code == 503
    assert "ConnectionError" in ready.text and "hunter2" not in ready.text


def test_stop_returns_quickly_and_frees_the_port(metrics: Metrics) -> None:
    srv = MetricsServer(metrics, "127.0.0.1", 0).start()
    port = srv.port
    with httpx.Client() as keepalive:  # an open keep-alive connection must not hold stop() up
        assert keepalive.get(f"{srv.url}/healthz").status_code == 200
        started = time.monotonic()
        srv.stop()
        assert time.monotonic() - started < 1.0
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_port_in_use_is_a_clear_error(server: MetricsServer, metrics: Metrics) -> None:
    with pytest.raises(ServerError, match=rf"127.0.0.1:{server.port}.*server.port"):
        MetricsServer(metrics, "127.0.0.1", server.port).start()


def test_basic_auth_guards_metrics_and_the_probes_stay_open(metrics: Metrics, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with MetricsServer(metrics, "127.0.0.1", 0, auth=("prometheus", PASSWORD)) as srv:
        for path in ("/metrics", "/"):
            anonymous = httpx.get(srv.url + path)
            assert anonymous.status_code == 401
            assert anonymous.headers["www-authenticate"].startswith("Basic ")
            assert httpx.get(srv.url + path, auth=("prometheus", "wrong")).status_code == 401
            assert httpx.get(srv.url + path, auth=("someone", PASSWORD)).status_code == 401
            assert httpx.get(srv.url + path, auth=("prometheus", PASSWORD)).status_code == 200
        assert httpx.get(srv.url + "/metrics", headers={"Authorization": "Basic !!notbase64"}).status_code == 401
        # Docker's HEALTHCHECK and Kubernetes' probes carry no credentials.
        for path in ("/healthz", "/readyz"):
            assert httpx.get(srv.url + path).status_code == 200
            assert httpx.get(srv.url + path, auth=("prometheus", PASSWORD)).status_code == 200
    access = [r for r in caplog.records if r.name == "driftd.http"]
    assert any("/metrics 401" in r.getMessage() for r in access)
    assert any("/metrics 200" in r.getMessage() for r in access)
    assert PASSWORD not in caplog.text
    assert "cHJvbWV0aGV1c" not in caplog.text  # base64 of "prometheus:..." (the Authorization header)
    assert PASSWORD not in metrics.render().decode()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "driftd-test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def test_readiness_reasons_need_the_credentials(metrics: Metrics) -> None:
    problems = ["state store unreachable at postgresql://driftd@db/state"]
    with MetricsServer(metrics, "127.0.0.1", 0, readiness=lambda: problems, auth=("prometheus", PASSWORD)) as srv:
        anonymous = httpx.get(srv.url + "/readyz")
        assert anonymous.status_code == 503 and "state store" not in anonymous.text
        assert "state store unreachable" in httpx.get(srv.url + "/readyz", auth=("prometheus", PASSWORD)).text


def test_tls_with_basic_auth(metrics: Metrics, tmp_path: Path) -> None:
    cert_file, key_file = _self_signed(tmp_path)
    trust = ssl.create_default_context(cafile=str(cert_file))
    with MetricsServer(metrics, "127.0.0.1", 0, auth=("prometheus", PASSWORD), tls=(cert_file, key_file)) as srv:
        assert srv.url.startswith("https://")
        # A plain-HTTP client gets no answer, and does not take the server down.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{srv.port}/healthz", timeout=3)
        with pytest.raises(httpx.ConnectError):  # untrusted certificate
            httpx.get(f"{srv.url}/healthz", timeout=3)
        with httpx.Client(verify=trust) as client:
            assert client.get(f"{srv.url}/metrics").status_code == 401
            scrape = client.get(f"{srv.url}/metrics", auth=("prometheus", PASSWORD))
            assert scrape.status_code == 200 and "driftd_build_info" in scrape.text


def test_from_config_reads_the_password_file(metrics: Metrics, tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    config = ServerConfig.model_validate(
        {"host": "127.0.0.1", "port": 0, "basic_auth": {"username": "prometheus", "password_file": str(password_file)}}
    )
    with MetricsServer.from_config(metrics, config) as srv:
        assert httpx.get(f"{srv.url}/metrics").status_code == 401
        assert httpx.get(f"{srv.url}/metrics", auth=("prometheus", PASSWORD)).status_code == 200
    password_file.unlink()
    with pytest.raises(ServerError, match="server.basic_auth: cannot read secret file .*password"):
        MetricsServer.from_config(metrics, config)


def test_unreadable_certificate_is_a_clear_error(metrics: Metrics, tmp_path: Path) -> None:
    missing = tmp_path / "missing.crt"
    with pytest.raises(ServerError, match="missing.crt.*server.tls"):
        MetricsServer(metrics, "127.0.0.1", 0, tls=(missing, tmp_path / "missing.key")).start()
