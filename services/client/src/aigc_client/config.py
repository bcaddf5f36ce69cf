"""What both clients are configured with, checked once when they are constructed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import propagate

from .channel import ChannelSpec, channel_options, credentials, parse_url
from .retry import RetryPolicy, Timeout, UseClientDefault

API_KEY_HEADER = "x-api-key"


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Channel, retry policy, default timeout and the caller's identity."""

    channel: ChannelSpec
    retry: RetryPolicy
    timeout: float | None
    # Out of the repr: a config printed in a traceback or a debug log must not show the key.
    api_key: str = field(repr=False)

    @classmethod
    def build(
        cls,
        url: str,
        api_key: str,
        *,
        timeout: float | None,
        retries: int,
        retry_resource_exhausted: bool,
        max_retry_after: float,
        backoff_initial: float,
        backoff_max: float,
        max_message_bytes: int,
        keepalive_seconds: float,
        keepalive_timeout_seconds: float,
        root_certificates: bytes | None,
        private_key: bytes | None,
        certificate_chain: bytes | None,
        channel_options_extra: Sequence[tuple[str, Any]],
    ) -> ClientConfig:
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be > 0 seconds, or None for no deadline")
        if any(c in api_key for c in "\r\n"):
            raise ValueError("api_key must be a single line")
        target = parse_url(url)
        spec = ChannelSpec(
            target=target,
            credentials=credentials(
                target,
                root_certificates=root_certificates,
                private_key=private_key,
                certificate_chain=certificate_chain,
            ),
            options=channel_options(
                max_message_bytes=max_message_bytes,
                keepalive_seconds=keepalive_seconds,
                keepalive_timeout_seconds=keepalive_timeout_seconds,
                extra=channel_options_extra,
            ),
        )
        retry = RetryPolicy(
            retries=retries,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            retry_resource_exhausted=retry_resource_exhausted,
            max_retry_after=max_retry_after,
        )
        return cls(channel=spec, retry=retry, timeout=timeout, api_key=api_key)

    def call_timeout(self, timeout: Timeout) -> float | None:
        return self.timeout if isinstance(timeout, UseClientDefault) else timeout

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Metadata for one call: the API key (when there is one; a local stack without keys needs
        none) and the current trace context, so the gateway's span continues the caller's trace."""
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        pairs = [(k.lower(), v) for k, v in carrier.items()]
        if self.api_key:
            pairs.insert(0, (API_KEY_HEADER, self.api_key))
        return tuple(pairs)
