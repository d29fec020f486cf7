"""An OpenAI-compatible chat server for the fault tests, as its own process (so that it can be
killed with -9 mid-stream): ``python -m tests.fault.chat_standin PORT MARKER_DIR``.

``GET /health`` answers 200; ``POST /v1/chat/completions`` streams REPLY word by word (SSE,
``DELAY`` seconds apart) and touches ``MARKER_DIR/streaming-PORT-<n>`` when it starts."""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPLY = "Selon le règlement, la cantine ouvre à midi et ferme à quatorze heures [1]."
DELAY = 0.15


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    served = 0
    markers = Path(".")

    def log_message(self, *args: object) -> None:
        return

    def do_GET(self) -> None:
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).served += 1
        port = self.server.server_port  # type: ignore[attr-defined]
        (self.markers / f"streaming-{port}-{type(self).served}").touch()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for word in REPLY.split(" "):
            chunk = {"choices": [{"index": 0, "delta": {"content": word + " "}}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
            time.sleep(DELAY)
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


if __name__ == "__main__":
    Handler.markers = Path(sys.argv[2])
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
