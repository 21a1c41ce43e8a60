"""An HTTP server on a free loopback port, served from a thread: the base of the tests' stand-in endpoints."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that writes no access log."""

    def log_message(self, *args) -> None:
        pass


class LoopbackServer:
    """Serves ``handler`` on 127.0.0.1 until :meth:`close` (or the end of a ``with`` block); ``url`` ends in
    ``path``."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], path: str = ""):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}{path}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *_) -> None:
        self.close()
