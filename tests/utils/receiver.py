"""A webhook receiver for tests: a tiny HTTP server on 127.0.0.1 in a thread.

It records every request (headers and raw body), answers ``500`` to the first
``fail_first`` of them and ``200`` afterwards, and can hold its answers until a gate
opens (a slow or hung receiver).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int
    at: float

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


class WebhookReceiver:
    def __init__(self, fail_first: int = 0, port: int = 0) -> None:
        self.fail_first = fail_first
        self.requests: list[Received] = []
        self.arrived = 0  # requests received, answered or not
        self.gate: threading.Event | None = None  # while set and not open, answers wait
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.arrived += 1
                gate = receiver.gate
                if gate is not None:
                    gate.wait(30)
                with receiver._lock:
                    failing = receiver.fail_first > 0
                    if failing:
                        receiver.fail_first -= 1
                    status = 500 if failing else 200
                    receiver.requests.append(
                        Received(dict(self.headers.items()), body, status, time.time())
                    )
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.gate is not None:
            self.gate.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def delivered(self) -> list[Received]:
        """Requests answered 200, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.status == 200]

    def wait_for(self, condition: Callable[[WebhookReceiver], bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not condition(self):
            if time.monotonic() > deadline:
                got = [(r.status, r.body[:80]) for r in self.requests]
                raise AssertionError(f"receiver: condition not met in {timeout}s; got {got}")
            time.sleep(0.05)
