"""A scripted HTTP server for answers the emulator never gives (malformed 2xx bodies, redirects)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

Answer = tuple[int, dict[str, str], bytes]


@dataclass
class ScriptedServer:
    """Answers every request with ``answer`` (status, headers, body) and records what it was sent.

    ``script``, when set, answers instead: called with the method and path, for answers that change
    from one request to the next.
    """

    url: str = ""
    answer: Answer = (200, {"Content-Type": "application/json"}, b"{}")
    received: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    script: Callable[[str, str], Answer] | None = None

    def set_answer(
        self, status: int, body: bytes | str | object, content_type: str = "application/json", **headers: str
    ) -> None:
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        raw = body.encode() if isinstance(body, str) else body
        self.answer = (status, {"Content-Type": content_type, **headers}, raw)

    def conn_json(self, token: str = "scripted-secret-token") -> str:
        return json.dumps({"conn_type": "toloka", "host": self.url, "password": token})


def _serve(server: ScriptedServer) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            server.received.append((self.command, self.path, dict(self.headers)))
            script = server.script
            status, headers, body = script(self.command, self.path) if script else server.answer
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the tests read ``received`` instead."""

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    httpd = _serve(server)
    yield server
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def other_server() -> Iterator[ScriptedServer]:
    """A second host: where a redirect would lead. It must never hear from the provider."""
    server = ScriptedServer()
    httpd = _serve(server)
    yield server
    httpd.shutdown()
    httpd.server_close()
