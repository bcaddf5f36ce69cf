"""The inference service on a real local Ray: Serve's gRPC proxy in front of replicas that each load
the CPU model (SmolLM2-135M-Instruct through llama.cpp, one thread each to fit two cores).

One Ray instance and one application serve the whole module; the autoscaling test runs last, so the
earlier tests see a single replica.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import ray
from prometheus_client.parser import text_string_to_metric_families
from ray import serve
from ray.serve.config import gRPCOptions

from aigc.common.v1 import common_pb2
from aigc.inference.v1 import inference_pb2 as pb
from aigc.inference.v1 import inference_pb2_grpc as pb_grpc
from aigc_common.errors import ConfigError
from aigc_inference.deployment import GRPC_SERVICER_FUNCTIONS, build_app


def _private_network() -> bool:
    """True inside a network namespace with nothing but loopback (see scripts/run-tests.sh)."""
    return {name for _, name in socket.if_nameindex()} <= {"lo"}


pytestmark = [
    pytest.mark.integration,
    pytest.mark.ray,
    # Serve's gRPC proxy and Ray's own services bind every interface, not just 127.0.0.1; tests may
    # only listen on loopback, so this module runs in a private network namespace.
    pytest.mark.skipif(
        not _private_network(),
        reason="Ray Serve binds all interfaces: run through scripts/run-tests.sh (private network namespace)",
    ),
    # Serve compares look_back_period_s with the deprecated metrics_interval_s (10 s), not with the
    # metric push intervals the fixture shortens; the short window is what this module wants.
    pytest.mark.filterwarnings("ignore:.*look_back_period_s.*:FutureWarning"),
]

APP = "inference"
DEPLOYMENT = "InferenceDeployment"
METADATA = (("application", APP),)
METRICS_PORTS = 4
MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class ServeCluster:
    grpc_address: str
    metrics_ports: range


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _free_port_run(count: int) -> int:
    """A first port such that it and the next ``count - 1`` are free (the replicas' /metrics range)."""
    for _ in range(50):
        first = _free_port()
        if first + count > 65535:
            continue
        socks = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no run of {count} free ports found")


def _descendants(root: int) -> dict[int, str]:
    """Pids under ``root`` with their start times (so a reused pid is never mistaken for ours)."""
    children: dict[int, list[int]] = {}
    started: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        started[pid] = fields[19]
    found: dict[int, str] = {}
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found[child] = started[child]
            stack.append(child)
    return found


def _still_ours(pid: int, start: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19] == start
    except OSError:
        return False


def _reap(processes: dict[int, str], deadline_s: float) -> None:
    """Waits for the Ray processes this module started to exit; kills (by pid) those that linger."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and any(_still_ours(p, s) for p, s in processes.items()):
        time.sleep(0.2)
    for pid, start in processes.items():
        if _still_ours(pid, start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def serve_cluster(cpu_model_path: Path) -> Iterator[ServeCluster]:
    grpc_port, http_port = _free_port(), _free_port()
    metrics_port = _free_port_run(METRICS_PORTS)
    # Ray's socket paths must fit in 107 bytes, so its temp dir is short and private to this module.
    temp_dir = tempfile.mkdtemp(prefix="aigc-ray-", dir="/tmp")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")
        # Replicas and the proxy's handle report ongoing requests every 10 s by default; the
        # autoscaling test would spend most of its time waiting for the next report.
        env.setenv("RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S", "0.5")
        env.setenv("RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S", "0.5")
        try:
            ray.init(
                address="local",  # never join a cluster RAY_ADDRESS or a running `ray start` points at
                num_cpus=4,  # two replicas at one CPU each, with room for the controller and proxy
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                _temp_dir=temp_dir,
                log_to_driver=False,  # replica logs stay in the temp dir, out of pytest's output
            )
            serve.start(
                http_options={"host": "127.0.0.1", "port": http_port},
                grpc_options=gRPCOptions(port=grpc_port, grpc_servicer_functions=GRPC_SERVICER_FUNCTIONS),
            )
            app = build_app(
                {
                    "settings": {
                        "model_path": str(cpu_model_path),
                        "threads": 1,
                        "metrics": {"port": metrics_port},
                    },
                    "metrics_ports": METRICS_PORTS,
                    "autoscaling": {
                        "min_replicas": 1,
                        "max_replicas": 2,
                        "target_ongoing_requests": 1,
                        "upscale_delay_s": 1,
                        "downscale_delay_s": 3,
                        "look_back_period_s": 2,
                    },
                    "ray_actor_options": {"num_cpus": 1},
                    "graceful_shutdown_timeout_s": 5,
                }
            )
            serve.run(app, name=APP, route_prefix="/inference")
            yield ServeCluster(f"127.0.0.1:{grpc_port}", range(metrics_port, metrics_port + METRICS_PORTS))
        finally:
            ours = _descendants(os.getpid())
            try:
                if ray.is_initialized():  # Serve would start a Ray of its own to shut down in
                    serve.shutdown()
            finally:
                ray.shutdown()
                _reap(ours, deadline_s=15)
                shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def stub(serve_cluster: ServeCluster) -> Iterator[pb_grpc.InferenceServiceStub]:
    with grpc.insecure_channel(serve_cluster.grpc_address) as channel:
        yield pb_grpc.InferenceServiceStub(channel)


def _request(text: str, max_tokens: int, temperature: float | None = None) -> pb.GenerateRequest:
    sampling = common_pb2.SamplingParams(max_tokens=max_tokens)
    if temperature is not None:
        sampling.temperature = temperature
    return pb.GenerateRequest(
        messages=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=text)], sampling=sampling
    )


def _scrape(cluster: ServeCluster) -> list[dict[str, float]]:
    """One dict per replica /metrics endpoint found in the range: sample name + labels -> value."""
    replicas = []
    for port in cluster.metrics_ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
                text = reply.read().decode()
        except OSError:
            continue
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}"] = sample.value
        replicas.append(samples)
    return replicas


def _total(replicas: list[dict[str, float]], key: str) -> float:
    return sum(samples.get(key, 0.0) for samples in replicas)


RUNNING = f"aigc_inference_running_requests{{model={MODEL}}}"
COMPLETION = f"aigc_tokens_total{{kind=completion,model={MODEL},tenant=unknown}}"
CANCELLED = "aigc_rpc_duration_seconds_count{code=CANCELLED,method=Generate,service=inference}"


def _replicas() -> dict[str, int]:
    status = serve.status().applications[APP].deployments[DEPLOYMENT]
    return {getattr(state, "value", state): count for state, count in status.replica_states.items()}


def test_generation_streams_through_the_grpc_proxy(stub: pb_grpc.InferenceServiceStub) -> None:
    replies = list(
        stub.Generate(_request("Name three colours.", 24, temperature=0.0), metadata=METADATA, timeout=60)
    )
    kinds = [r.WhichOneof("event") for r in replies]
    assert kinds[0] == "started" and kinds[-1] == "finished", kinds
    assert kinds.count("delta") >= 3, "tokens should arrive as a stream through the proxy"
    assert "".join(r.delta.text for r in replies if r.HasField("delta")).strip()
    usage = replies[-1].finished.usage
    assert usage.prompt_tokens == replies[0].started.prompt_tokens > 0
    assert 0 < usage.completion_tokens <= 24
    models = stub.ListModels(pb.ListModelsRequest(), metadata=METADATA, timeout=30)
    assert [m.name for m in models.models] == [MODEL]
    count = stub.CountTokens(pb.CountTokensRequest(text="hello world"), metadata=METADATA, timeout=30)
    assert count.tokens > 0 and count.context_window == 2048


def test_bad_requests_get_invalid_argument_naming_the_field(stub: pb_grpc.InferenceServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Generate(_request("Hi", 8, temperature=5.0), metadata=METADATA, timeout=30))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sampling.temperature" in (caught.value.details() or "")
    with pytest.raises(grpc.RpcError) as unary:
        stub.CountTokens(pb.CountTokensRequest(model="gpt-9", text="x"), metadata=METADATA, timeout=30)
    assert unary.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (unary.value.details() or "").startswith("model:")


def test_replica_metrics_keep_the_standalone_names(serve_cluster: ServeCluster) -> None:
    replicas = _scrape(serve_cluster)
    assert replicas, "each replica serves /metrics from the configured port range"
    names = {key.split("{", 1)[0] for samples in replicas for key in samples}
    assert {
        "aigc_rpc_duration_seconds_count",
        "aigc_rpc_in_flight",
        "aigc_generation_time_to_first_token_seconds_count",
        "aigc_generation_duration_seconds_count",
        "aigc_tokens_total",
        "aigc_inference_queue_depth",
    } <= names
    invalid = "aigc_rpc_duration_seconds_count{code=INVALID_ARGUMENT,method=Generate,service=inference}"
    assert _total(replicas, invalid) >= 1


def test_cancelling_a_stream_stops_the_replica_generating(
    serve_cluster: ServeCluster, stub: pb_grpc.InferenceServiceStub
) -> None:
    before = _scrape(serve_cluster)
    call = stub.Generate(_request("Write a long story about a dragon.", 1500), metadata=METADATA, timeout=120)
    deltas = 0
    for reply in call:
        deltas += reply.HasField("delta")
        if deltas >= 5:
            break
    assert _total(_scrape(serve_cluster), RUNNING) == 1
    call.cancel()

    deadline = time.monotonic() + 10
    while True:
        after = _scrape(serve_cluster)
        if _total(after, RUNNING) == 0 and _total(after, CANCELLED) > _total(before, CANCELLED):
            break
        assert time.monotonic() < deadline, f"the replica kept generating after the cancel: {after}"
        time.sleep(0.1)
    # The cancelled request was counted with the tokens it produced, far short of its 1500.
    assert 5 <= _total(after, COMPLETION) - _total(before, COMPLETION) < 200

    # The engine's only context is free again: a short request does not wait behind the story.
    start = time.monotonic()
    replies = list(stub.Generate(_request("Say hi.", 8), metadata=METADATA, timeout=30))
    assert replies[-1].HasField("finished")
    assert time.monotonic() - start < 10


def test_load_scales_to_two_replicas_and_back(serve_cluster: ServeCluster) -> None:
    assert _replicas() == {"RUNNING": 1}
    stop = threading.Event()
    errors: list[BaseException] = []
    completed = 0
    lock = threading.Lock()

    def load() -> None:
        nonlocal completed
        with grpc.insecure_channel(serve_cluster.grpc_address) as channel:
            client = pb_grpc.InferenceServiceStub(channel)
            while not stop.is_set():
                try:
                    replies = list(
                        client.Generate(_request("Describe the sea.", 150), metadata=METADATA, timeout=60)
                    )
                    assert replies[-1].HasField("finished")
                    with lock:
                        completed += 1
                except BaseException as exc:  # reported by the test thread
                    errors.append(exc)
                    return

    workers = [threading.Thread(target=load, daemon=True) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        deadline = time.monotonic() + 60
        while _replicas().get("RUNNING", 0) < 2:
            assert not errors, errors
            assert time.monotonic() < deadline, f"no second replica under load: {_replicas()}"
            time.sleep(0.5)
        # Both replicas serve the load: each one's /metrics shows Generate calls.
        deadline = time.monotonic() + 30
        while sum(1 for r in _scrape(serve_cluster) if r.get(RUNNING, 0) > 0) < 2:
            assert time.monotonic() < deadline, "the new replica got no traffic"
            time.sleep(0.5)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
    assert not errors, errors
    assert completed > 0

    deadline = time.monotonic() + 60
    while _replicas() != {"RUNNING": 1}:
        assert time.monotonic() < deadline, f"did not scale back to one replica: {_replicas()}"
        time.sleep(0.5)


def test_bad_builder_args_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"settings\.threads"):
        build_app({"settings": {"threads": 0}})
    with pytest.raises(ConfigError, match=r"settings\.metrics\.prot: not a field"):
        build_app({"settings": {"metrics": {"prot": 9100}}})
    with pytest.raises(ConfigError, match=r"autoscaling.*max_replicas \(1\) must be at least min_replicas"):
        build_app({"autoscaling": {"min_replicas": 2, "max_replicas": 1}})
    with pytest.raises(ConfigError, match=r"autoscaling\.target_ongoing_requests"):
        build_app({"autoscaling": {"target_ongoing_requests": 0}})
    with pytest.raises(ConfigError, match=r"autoscale: Extra inputs"):
        build_app({"autoscale": {}})
