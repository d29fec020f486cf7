"""Channels to other docfactory services (TLS when configured, core/tls.py). The caller's
identity and remaining deadline travel with every downstream call, so tenancy and deadlines hold
across service boundaries: attested by this service's own identity (client certificate or
service key) rather than by re-sending the caller's API key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from docfactory.core import tls
from docfactory.core.auth import current_principal, remaining_seconds
from docfactory.core.config import TlsConfig
from docfactory.core.tracing import client_interceptors

T = TypeVar("T")


def channel_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.enable_retries", 1),
    ]


class Channels:
    """Lazily opened channels keyed by address; the all-in-one address is set after bind."""

    def __init__(self, max_message_bytes: int, tls_config: TlsConfig | None = None) -> None:
        self._max = max_message_bytes
        self._tls = tls_config or TlsConfig()
        self._stamp = tls.files_stamp(self._tls)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._retired: list[grpc.aio.Channel] = []
        self._self_address = ""

    def set_self_address(self, address: str) -> None:
        self._self_address = address

    def get(self, address: str) -> grpc.aio.Channel:
        target = address or self._self_address
        if not target:
            raise RuntimeError("service address not known yet (server not bound)")
        stamp = tls.files_stamp(self._tls)
        if stamp != self._stamp:  # certificates rotated: new connections use the new ones
            self._stamp = stamp
            self._retired.extend(self._channels.values())
            self._channels.clear()
        ch = self._channels.get(target)
        if ch is None:
            ch = tls.aio_channel(
                target, self._tls, channel_options(self._max), client_interceptors()
            )
            self._channels[target] = ch
        return ch

    def stub(self, address: str, factory: Callable[[grpc.aio.Channel], T]) -> Callable[[], T]:
        """A callable returning a stub on the (lazily opened) channel."""
        cache: dict[str, tuple[grpc.aio.Channel, T]] = {}

        def get() -> T:
            channel = self.get(address)
            target = address or self._self_address
            cached = cache.get(target)
            if cached is None or cached[0] is not channel:
                cached = cache[target] = (channel, factory(channel))
            return cached[1]

        return get

    async def close(self) -> None:
        for ch in [*self._retired, *self._channels.values()]:
            await ch.close()
        self._channels.clear()
        self._retired.clear()


def call_options(default_timeout: float = 300.0) -> dict[str, Any]:
    """Metadata and timeout for a downstream call made on behalf of the current caller (the
    attested caller, or its API key when this service has no identity of its own; the trace
    context is added by the channel's tracing interceptors when tracing is on)."""
    principal = current_principal()
    return {
        "metadata": tls.outgoing_metadata(principal),
        "timeout": remaining_seconds(default_timeout),
    }
