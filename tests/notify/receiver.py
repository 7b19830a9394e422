"""A local chat webhook for tests: records every JSON body posted to it, by path, and answers like
Teams (202) and Slack (200 "ok"); a path under /broken answers 500."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    base_url: str
    posts: list[tuple[str, Any]] = field(default_factory=list)

    def bodies(self, path: str) -> list[Any]:
        return [body for where, body in self.posts if where == path]


@contextmanager
def webhook_receiver() -> Iterator[Received]:
    received = Received("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length", 0))
            received.posts.append((self.path, json.loads(self.rfile.read(length))))
            status, answer = (500, b"boom") if self.path.startswith("/broken") else \
                (200, b"ok") if "slack" in self.path else (202, b"")
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    received.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
