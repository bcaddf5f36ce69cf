"""Where and how to connect: the url's address and security, and the channel options."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import grpc

_TLS_SCHEMES = frozenset({"grpcs", "https"})
_PLAINTEXT_SCHEMES = frozenset({"", "grpc", "http"})

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Matches the services' own limit (``max_message_bytes`` in ``GrpcSettings``)."""

# gRPC servers refuse pings more often than every 5 minutes while they send nothing (their default
# `min_recv_ping_interval_without_data`); a faster client ping during a quiet stream (a long wait for
# the first token, a batch result stream between items) earns strikes and the connection a GOAWAY.
# Six minutes stays clear of that and still finds a dead connection behind a NAT or load balancer.
DEFAULT_KEEPALIVE_SECONDS = 360.0
DEFAULT_KEEPALIVE_TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed url: the gRPC target and whether it needs TLS."""

    address: str
    tls: bool


def parse_url(url: str) -> Target:
    """``grpcs://host[:port]`` and ``https://host[:port]`` use TLS (port 443 by default);
    ``grpc://host:port``, ``http://host:port`` and bare ``host:port`` are plaintext;
    ``unix:/path`` is a local socket."""
    url = url.strip()
    if url.startswith("unix:"):
        return Target(url, tls=False)
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    scheme = scheme.lower()
    if scheme in _TLS_SCHEMES:
        tls = True
    elif scheme in _PLAINTEXT_SCHEMES:
        tls = False
    else:
        raise ValueError(f"unsupported url scheme {scheme!r}: use grpcs://, https://, grpc:// or host:port")
    rest = rest.rstrip("/")
    if "/" in rest or "?" in rest or "#" in rest:
        raise ValueError(f"url {url!r} must be host:port without a path")
    parts = urlsplit("//" + rest)
    host = parts.hostname
    port = parts.port  # raises ValueError for a port that is not a number in range
    if not host:
        raise ValueError(f"url {url!r} has no host")
    if port is None:
        if not tls:
            raise ValueError(f"plaintext url {url!r} needs a port, e.g. 127.0.0.1:50051")
        port = 443
    host = f"[{host}]" if ":" in host else host
    return Target(f"{host}:{port}", tls=tls)


def channel_options(
    *,
    max_message_bytes: int,
    keepalive_seconds: float,
    keepalive_timeout_seconds: float,
    extra: Sequence[tuple[str, Any]],
) -> list[tuple[str, Any]]:
    """Options for both channel flavours; ``extra`` comes last so it overrides ours."""
    options: dict[str, Any] = {
        "grpc.max_receive_message_length": max_message_bytes,
        "grpc.max_send_message_length": max_message_bytes,
        "grpc.keepalive_time_ms": int(keepalive_seconds * 1000),
        "grpc.keepalive_timeout_ms": int(keepalive_timeout_seconds * 1000),
        # Ping only while a call is open: an idle channel reconnects on the next call anyway.
        "grpc.keepalive_permit_without_calls": 0,
        # Keep pinging through a long silent stream; the interval already respects the server policy.
        "grpc.http2.max_pings_without_data": 0,
        "grpc.primary_user_agent": "aigc-client-python",
    }
    options.update(dict(extra))
    return list(options.items())


def credentials(
    target: Target,
    *,
    root_certificates: bytes | None,
    private_key: bytes | None,
    certificate_chain: bytes | None,
) -> Any:
    """TLS credentials for a ``grpcs``/``https`` target (system roots unless ``root_certificates``),
    ``None`` for plaintext."""
    if not target.tls:
        if root_certificates or private_key or certificate_chain:
            raise ValueError("certificates were given but the url is plaintext; use grpcs://host:port")
        return None
    if (private_key is None) != (certificate_chain is None):
        raise ValueError("mutual TLS needs both private_key and certificate_chain")
    return grpc.ssl_channel_credentials(
        root_certificates=root_certificates, private_key=private_key, certificate_chain=certificate_chain
    )


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """Everything needed to open a channel, checked once at client construction."""

    target: Target
    credentials: Any
    options: list[tuple[str, Any]]

    def sync_channel(self) -> grpc.Channel:
        if self.credentials is None:
            return grpc.insecure_channel(self.target.address, options=self.options)
        return grpc.secure_channel(self.target.address, self.credentials, options=self.options)

    def aio_channel(self) -> grpc.aio.Channel:
        if self.credentials is None:
            return grpc.aio.insecure_channel(self.target.address, options=self.options)
        return grpc.aio.secure_channel(self.target.address, self.credentials, options=self.options)
