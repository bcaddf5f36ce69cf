"""Prometheus instruments shared by all services, and the per-process /metrics endpoint.

Names are the contract with SREs (docs/metrics.md). Instruments live on a registry the
composition root creates once per process, so several services can share one process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

# Buckets from 1 ms to 5 min: unary calls sit low, long generations high.
RPC_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class RpcMetrics:
    """``aigc_rpc_duration_seconds`` and ``aigc_rpc_in_flight`` for every gRPC method."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.duration = Histogram(
            "aigc_rpc_duration_seconds",
            "Time from a gRPC call's start to its end (for streams: the last message), by status code.",
            ["service", "method", "code"],
            buckets=RPC_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "aigc_rpc_in_flight",
            "gRPC calls currently being served.",
            ["service", "method"],
            registry=registry,
        )


class UsageMetrics:
    """``aigc_tokens_total{tenant,model,kind}``: one counter per process, shared by the services in it.

    Inference counts prompt and completion tokens (it knows the exact numbers); the gateway counts
    ``cached`` tokens, which never reach inference. So no token is counted twice.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.tokens = Counter(
            "aigc_tokens_total",
            "Tokens per tenant and model, by kind: prompt, completion, or cached (served from the cache).",
            ["tenant", "model", "kind"],
            registry=registry,
        )


class GlobalRegistryBridge(Collector):
    """Re-exports prometheus_client's global registry (libraries' own metrics) from ours."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


class MetricsEndpoint:
    """Serves the registry at http://host:port/metrics in a background thread."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self._registry = registry
        self._host = host
        self._port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when 0 was asked for)."""
        return self._server.server_port if self._server else 0

    def start(self) -> None:
        self._server, self._thread = start_http_server(self._port, self._host, self._registry)

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
