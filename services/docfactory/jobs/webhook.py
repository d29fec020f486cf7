"""HTTP endpoint for MinIO bucket notifications (webhook target, MinIO's JSON event format).

``mc admin config set ALIAS notify_webhook:docfactory endpoint=http://HOST:PORT/events
auth_token=TOKEN`` then ``mc event add ALIAS/BUCKET arn:minio:sqs::docfactory:webhook
--event put,delete``. Each POST is enqueued as a NOTIFICATION job (durable once answered 200).

The token (``DOCFACTORY_WEBHOOK_TOKEN``, at least 16 characters) is required: the webhook does
not start without one, and a POST without ``Authorization: Bearer <token>`` (compared in
constant time) gets 401. An event names objects to ingest into a tenant, so an open endpoint
would let anyone on the network start ingestions.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from docfactory.core.errors import ConfigError, DocfactoryError
from docfactory.jobs.service import JobsService

log = logging.getLogger("docfactory.jobs.webhook")
MAX_BODY = 8 * 1024 * 1024
MIN_TOKEN_CHARS = 16


class WebhookServer:
    def __init__(
        self, service: JobsService, host: str, port: int, token: str, tenant: str, collection: str
    ) -> None:
        if len(token.strip()) < MIN_TOKEN_CHARS:
            raise ConfigError(
                "the MinIO webhook (DOCFACTORY_WEBHOOK_PORT) needs DOCFACTORY_WEBHOOK_TOKEN, at "
                f"least {MIN_TOKEN_CHARS} characters (MinIO's notify_webhook auth_token)"
            )
        svc, expected = service, token.strip().encode("utf-8")

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug(fmt, *args)

            def _reply(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # MinIO probes the endpoint when the target is added
                self._reply(200, {"status": "ok"})

            def do_POST(self) -> None:
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Bearer "):
                    self._reply(401, {"error": "WEBHOOK_TOKEN_MISSING"})
                    return
                given = auth.removeprefix("Bearer ").strip().encode("utf-8", "replace")
                if not hmac.compare_digest(given, expected):
                    self._reply(401, {"error": "WEBHOOK_TOKEN_INVALID"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length <= 0 or length > MAX_BODY:
                    self._reply(400, {"error": "INVALID_EVENT", "message": "bad body length"})
                    return
                try:
                    event = json.loads(self.rfile.read(length))
                    if not isinstance(event, dict):
                        raise ValueError("event must be a JSON object")
                    job_ids = svc.notify(tenant, collection, event)
                except (ValueError, DocfactoryError) as exc:
                    self._reply(400, {"error": "INVALID_EVENT", "message": str(exc)})
                    return
                self._reply(200, {"jobs": job_ids})

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="docfactory-webhook", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
