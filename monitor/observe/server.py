"""driftd's HTTP endpoints on one port: /metrics, /healthz, /readyz.

Stdlib ThreadingHTTPServer in a daemon thread, so a slow scraper never blocks checks and the
endpoints come up without importing anything heavy. Optional TLS covers all three endpoints.
Optional basic auth guards /metrics; the probes stay open so Docker's HEALTHCHECK and
Kubernetes' probes work without credentials: /healthz says only "ok", and /readyz tells an
unauthenticated caller only ready or not — the reasons need the credentials.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hmac
import logging
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client.exposition import choose_encoder

from monitor.core.config import Server as ServerConfig
from monitor.observe.metrics import Metrics

log = logging.getLogger("driftd.http")

Readiness = Callable[[], list[str]]

_REALM = 'Basic realm="driftd", charset="UTF-8"'
_POLL_INTERVAL = 0.1  # how often serve_forever notices stop(); bounds stop() latency
_CLIENT_TIMEOUT = 10.0  # a client that stalls mid-request or mid-handshake is dropped


class ServerError(Exception):
    """The HTTP endpoint could not start (port taken, unreadable certificate...)."""


class MetricsServer:
    """Serves /metrics, /healthz and /readyz until stop() is called."""

    def __init__(
        self,
        metrics: Metrics,
        host: str = "127.0.0.1",
        port: int = 9108,
        readiness: Readiness | None = None,
        auth: tuple[str, str] | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self._metrics = metrics
        self._host = host
        self._requested_port = port
        self._readiness = readiness or (lambda: [])
        self._auth = _expected_credentials(auth) if auth else None
        self._tls = tls
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, metrics: Metrics, server: ServerConfig, readiness: Readiness | None = None) -> MetricsServer:
        """Build from the `server` section; the password is read (env or file) here, once."""
        auth = None
        if server.basic_auth is not None:
            try:
                auth = (server.basic_auth.username, server.basic_auth.resolved_password())
            except ValueError as exc:  # unreadable password_file: names the file, not the secret
                raise ServerError(f"server.basic_auth: {exc}") from None
        tls = (server.tls.cert_file, server.tls.key_file) if server.tls else None
        return cls(metrics, server.host, server.port, readiness=readiness, auth=auth, tls=tls)

    @property
    def port(self) -> int:
        """The bound port (the real one when port 0 was asked for)."""
        if self._httpd is None:
            return self._requested_port
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{self._host}:{self.port}"

    def start(self) -> MetricsServer:
        if self._httpd is not None:
            return self
        context = _tls_context(*self._tls) if self._tls else None
        try:
            httpd = _Server((self._host, self._requested_port), self._handler_class())
        except OSError as exc:
            raise ServerError(
                f"cannot listen on {self._host}:{self._requested_port}: {exc.strerror}; "
                "choose another server.port in the config or stop the process using it"
            ) from None
        if context is not None:
            # The handshake runs in the request's thread (see _Handler.setup), not in accept().
            httpd.socket = context.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": _POLL_INTERVAL}, name="driftd-http", daemon=True
        )
        self._thread.start()
        log.info("serving /metrics, /healthz and /readyz on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop accepting requests; returns within about a second."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(_Handler):
            owner = server

        return Handler

    # --- request handling (called from _Handler) -------------------------------------------

    def _authorized(self, header: str | None) -> bool:
        if self._auth is None:
            return True
        given = _parse_basic(header)
        if given is None:
            return False
        user_ok = hmac.compare_digest(given[0], self._auth[0])
        password_ok = hmac.compare_digest(given[1], self._auth[1])
        return user_ok and password_ok

    def _problems(self) -> list[str]:
        try:
            return list(self._readiness())
        except Exception as exc:  # noqa: BLE001 - a broken probe means "not ready", not a 500
            log.warning("readiness check raised %s", type(exc).__name__)
            return [f"readiness check failed ({type(exc).__name__})"]


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client never delays shutdown
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # TLS handshakes from plain-HTTP clients, resets, timeouts: routine, not tracebacks on stderr.
        log.debug("connection from %s ended with an error", client_address[0], exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    owner: MetricsServer
    timeout = _CLIENT_TIMEOUT
    protocol_version = "HTTP/1.1"
    server_version = "driftd"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._dispatch(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch(head=True)

    def _dispatch(self, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        authorized = self.owner._authorized(self.headers.get("Authorization"))  # noqa: SLF001
        if path == "/healthz":
            self._send(200, b"ok\n", head=head)
        elif path == "/readyz":
            problems = self.owner._problems()  # noqa: SLF001
            if problems:
                detail = "\n".join(problems) if authorized else "not ready (authenticate to see why)"
                self._send(503, (detail + "\n").encode(), head=head)
            else:
                self._send(200, b"ready\n", head=head)
        elif not authorized:
            self._send(401, b"authentication required\n", extra={"WWW-Authenticate": _REALM}, head=head)
        elif path == "/metrics":
            self._metrics(head)
        elif path == "/":
            self._send(200, b"driftd: /metrics /healthz /readyz\n", head=head)
        else:
            self._send(404, b"not found: try /metrics, /healthz or /readyz\n", head=head)

    def _metrics(self, head: bool) -> None:
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        body = encoder(self.owner._metrics.registry)  # noqa: SLF001
        extra = {}
        if "gzip" in self.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body, compresslevel=5)
            extra["Content-Encoding"] = "gzip"
        self._send(200, body, content_type=content_type, extra=extra, head=head)

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        extra: dict[str, str] | None = None,
        head: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Keep the default HTML error page out; keep the reason.
        self.close_connection = True
        self._send(code, f"{code} {message or ''}\n".encode())

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Path without the query string; headers (Authorization!) are never logged.
        path = self.path.split("?", 1)[0] if hasattr(self, "path") else "-"
        log.debug("%s %s %s %s", self.client_address[0], getattr(self, "command", "-"), path, code)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.client_address[0], *args)


def _expected_credentials(auth: tuple[str, str]) -> tuple[bytes, bytes]:
    username, password = auth
    if not username or not password:
        raise ServerError("server.basic_auth needs a non-empty username and password")
    return username.encode("utf-8"), password.encode("utf-8")


def _parse_basic(header: str | None) -> tuple[bytes, bytes] | None:
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    return (user, password) if sep else None


def _tls_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
    except (OSError, ssl.SSLError) as exc:
        raise ServerError(
            f"cannot load TLS certificate {cert_file} / key {key_file}: {exc}; "
            "check server.tls.cert_file and key_file (PEM, key matching the certificate)"
        ) from None
    return context
