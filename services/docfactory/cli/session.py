"""The CLI's connection to a server: a remote one (``--address``), the embedded background
server of the data directory (:mod:`docfactory.cli.daemon`), or an embedded server started in
this process (``--no-daemon``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from docfactory.core.auth import API_KEY_HEADER
from docfactory.core.config import Settings

CHUNK_BYTES = 1024 * 1024
CLASSIFICATIONS = {"public": 1, "internal": 2, "confidential": 3, "restricted": 4}
SEARCH_MODES = {"dense": 1, "sparse": 2, "hybrid": 3}
QUERY_SERVICES = ("embedding", "answering")
INGEST_SERVICES = ("ingestion", "chunking", "embedding")


class Session:
    """A channel to a server (remote, the data directory's background server, or an embedded
    one started here) plus the API key."""

    def __init__(
        self,
        settings: Settings,
        address: str | None,
        api_key: str | None,
        services: Sequence[str] | None = None,
        *,
        daemon: bool = False,
    ) -> None:
        self.settings = settings
        # Services the in-process server runs: search and ask need no ingestion (nor its bulk
        # jobs runtime), which keeps a cold command short.
        self.services = services
        self.address = address
        self.api_key = api_key
        # Embedded default through the background server (started if none is running).
        self.daemon = daemon
        self._running: Any = None
        self.channel: grpc.aio.Channel | None = None

    async def __aenter__(self) -> Session:
        mb = self.settings.server.max_message_bytes
        options = [("grpc.max_receive_message_length", mb), ("grpc.max_send_message_length", mb)]
        if not self.address:
            if self.daemon:
                from docfactory.cli import daemon

                self.address = await asyncio.to_thread(daemon.ensure, self.settings)
                await self._local_key()
                # A Unix socket in a folder only this user can enter: no TLS on it.
                self.channel = grpc.aio.insecure_channel(self.address, options=options)
                return self
            from docfactory.app import SERVICES, start_server
            from docfactory.cli import daemon

            # One process owns the embedded index: a background server on the same data
            # directory is stopped first.
            await asyncio.to_thread(daemon.stop, self.settings.data_dir)
            self._running = await start_server(self.settings, self.services or SERVICES, port=0)
            self.address = self._running.address
            await self._local_key()
        if not self.api_key:
            raise SystemExit(
                "docfactory: set DOCFACTORY_API_KEY (or --api-key) for a remote server"
            )
        from docfactory.core.tls import aio_channel

        # TLS when DOCFACTORY_TLS_CA (or a certificate) is set
        self.channel = aio_channel(self.address, self.settings.tls, options)
        return self

    async def _local_key(self) -> None:
        if not self.api_key:
            key_file = self.settings.data_dir / "api-key"
            self.api_key = (await asyncio.to_thread(key_file.read_text)).strip()

    async def __aexit__(self, *exc: object) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self._running is not None:
            await self._running.stop(2.0)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((API_KEY_HEADER, self.api_key or ""),)


def rpc_error(exc: grpc.aio.AioRpcError) -> str:
    """``CODE [REASON]: details`` of a failed call."""
    from docfactory.core.interceptors import error_from_rpc

    e = error_from_rpc(exc)
    return f"{exc.code().name} [{e.reason}]: {exc.details()}"  # type: ignore[no-any-return]


def local_uri(path: Path) -> str:
    """The source URI of a file of the client's own disk: ``local:///abs/path``. (``file:``
    names the server's disk and is reserved to IngestPath.)"""
    return "local:" + path.as_uri().removeprefix("file:")
