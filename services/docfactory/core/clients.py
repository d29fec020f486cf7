"""Channels to other docfactory services. The caller's API key and remaining deadline travel
with every downstream call, so tenancy and deadlines hold across service boundaries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from docfactory.core.auth import current_principal, remaining_seconds
from docfactory.core.tracing import outgoing_metadata

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

    def __init__(self, max_message_bytes: int) -> None:
        self._max = max_message_bytes
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._self_address = ""

    def set_self_address(self, address: str) -> None:
        self._self_address = address

    def get(self, address: str) -> grpc.aio.Channel:
        target = address or self._self_address
        if not target:
            raise RuntimeError("service address not known yet (server not bound)")
        ch = self._channels.get(target)
        if ch is None:
            ch = grpc.aio.insecure_channel(target, options=channel_options(self._max))
            self._channels[target] = ch
        return ch

    def stub(self, address: str, factory: Callable[[grpc.aio.Channel], T]) -> Callable[[], T]:
        """A callable returning a stub on the (lazily opened) channel."""
        cache: dict[str, T] = {}

        def get() -> T:
            target = address or self._self_address
            if target not in cache:
                cache[target] = factory(self.get(address))
            return cache[target]

        return get

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()


def call_options(default_timeout: float = 300.0) -> dict[str, Any]:
    """Metadata and timeout for a downstream call made on behalf of the current caller
    (API key, and the W3C trace context of the current span when tracing is on)."""
    principal = current_principal()
    return {
        "metadata": (*principal.metadata(), *outgoing_metadata()),
        "timeout": remaining_seconds(default_timeout),
    }
