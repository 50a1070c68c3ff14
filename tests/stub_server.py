"""A local HTTP stub of a gateway's API, served on 127.0.0.1 by the test itself (the real
services cannot be reached from here, and we never mock our own HTTP client).

    with StubServer() as stub:
        stub.route("POST", "/gateway.do", lambda req: (200, {"Content-Type": "application/json"},
                                                      json.dumps({...}).encode()))
        ... gateway configured with api base url stub.url ...
        assert stub.requests[0].path == "/gateway.do"
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class StubRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    form: dict[str, str] = field(default_factory=dict)


Handler = Callable[[StubRequest], tuple[int, dict[str, str], bytes]]


class StubServer:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.requests: list[StubRequest] = []
        stub = self

        class _RequestHandler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = StubRequest(
                    method=self.command,
                    path=split.path,
                    query={k: v[-1] for k, v in parse_qs(split.query).items()},
                    headers=dict(self.headers.items()),
                    body=body,
                )
                if "x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""):
                    request.form = {
                        k: v[-1] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()
                    }
                stub.requests.append(request)
                handler = stub.routes.get((self.command, split.path))
                if handler is None:
                    status, headers, payload = 404, {"Content-Type": "text/plain"}, b"no route"
                else:
                    status, headers, payload = handler(request)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _RequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def route(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method.upper(), path)] = handler

    def __enter__(self) -> StubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
