"""A tiny real HTTP webhook receiver on a free loopback port that records what it is sent.

    with Receiver() as rx:
        post_to(rx.url + "/hook")
        rx.wait_for(1)
        rx.requests[0].json

`rx.fail(n, status=500)` answers the next n requests with an error; `rx.drop(n)` closes
the next n connections without answering; `rx.hold()` keeps requests waiting until
`rx.release()` (a hung endpoint). Always stopped (and released) on exit.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str  # including the query string
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._attempts = 0
        self._plan: list[int | None] = []  # per upcoming request: HTTP status, or None = drop
        self._released = threading.Event()
        self._released.set()
        self._httpd = ThreadingHTTPServer((host, 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def requests(self) -> list[Recorded]:
        """Requests that were answered with 2xx, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def attempts(self) -> int:
        """Every request that arrived, including failed and dropped ones."""
        with self._lock:
            return self._attempts

    def fail(self, times: int, status: int = 500) -> None:
        with self._lock:
            self._plan.extend([status] * times)

    def drop(self, times: int) -> None:
        with self._lock:
            self._plan.extend([None] * times)

    def hold(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def wait_for(self, count: int, timeout: float = 10.0, *, attempts: bool = False) -> list[Recorded]:
        """Poll until `count` requests were recorded (or attempted); return the recorded ones."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.attempts if attempts else len(self.requests)
            if seen >= count:
                return self.requests
            if time.monotonic() > deadline:
                raise TimeoutError(f"receiver got {seen} of {count} expected requests within {timeout}s")
            time.sleep(0.02)

    def start(self) -> Receiver:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_answer(self) -> int | None:
        with self._lock:
            self._attempts += 1
            return self._plan.pop(0) if self._plan else 200

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                answer = receiver._next_answer()
                receiver._released.wait(30)
                if answer is None:
                    self.close_connection = True
                    return  # closes the socket without a response
                if 200 <= answer < 300:
                    with receiver._lock:
                        receiver._requests.append(Recorded(self.command, self.path, dict(self.headers), body))
                payload = b"ok" if answer < 300 else b"receiver told to fail"
                self.send_response(answer)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_PUT = do_POST

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler
