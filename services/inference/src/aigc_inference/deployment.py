"""The inference service on Ray Serve: each replica owns one engine and one core, and Serve's gRPC
proxy serves ``aigc.inference.v1.InferenceService`` from them.

Serve's proxy calls the replica method named like the RPC with the request proto (and the call's
``grpc_context`` when the method takes it); a server-streaming RPC is an async generator. There is
no interceptor chain on this path, so the deployment does once per call what the standalone
bootstrap's interceptors do: map domain errors to status codes, record the RPC metrics and open a
server span. Start Serve with :data:`GRPC_SERVICER_FUNCTIONS` in its gRPC options and deploy
``build_app`` with a route prefix; callers pick the application with the ``application`` metadata
key (docs/ray_serve.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import grpc
from opentelemetry import propagate, trace
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from ray import serve

from aigc.inference.v1 import inference_pb2 as pb
from aigc_common.convert import messages_from_pb
from aigc_common.errors import AigcError, ConfigError
from aigc_common.interceptors import status_code_for
from aigc_common.runtime import ProcessRuntime
from aigc_inference.app import build_core
from aigc_inference.convert import event_to_pb, model_to_pb, request_from_pb
from aigc_inference.settings import InferenceSettings

log = logging.getLogger(__name__)

SERVICE = "inference"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["InferenceService"].full_name
GRPC_SERVICER_FUNCTIONS = ["aigc.inference.v1.inference_pb2_grpc.add_InferenceServiceServicer_to_server"]
"""What ``serve.start(grpc_options=gRPCOptions(grpc_servicer_functions=...))`` needs for this service."""


class AutoscalingArgs(BaseModel):
    """Serve's request-based autoscaling of the replicas (each replica is one engine)."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(1, ge=0, description="Replicas kept when idle (0 allows scale to zero).")
    max_replicas: int = Field(1, ge=1, description="Most replicas the deployment may have.")
    target_ongoing_requests: float = Field(
        2.0, gt=0, description="Requests in progress or queued per replica that Serve aims for."
    )
    upscale_delay_s: float = Field(30.0, ge=0, description="How long load must stay high before adding.")
    downscale_delay_s: float = Field(600.0, ge=0, description="How long load must stay low before removing.")
    look_back_period_s: float = Field(
        30.0, gt=0, description="Window over which ongoing requests are averaged for a decision."
    )

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingArgs:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) must be at least min_replicas ({self.min_replicas})"
            )
        return self


class ActorOptionsArgs(BaseModel):
    """Resources Ray reserves for each replica."""

    model_config = ConfigDict(extra="forbid")

    num_cpus: float | None = Field(
        None, ge=0, description="CPUs per replica; unset means threads x contexts for llama_cpp, else 1."
    )
    num_gpus: float | None = Field(
        None, ge=0, description="GPUs per replica; unset means tensor_parallel_size for vllm, else 0."
    )


class ServeArgs(BaseModel):
    """The ``args`` of :func:`build_app` (the ``args:`` block of a Serve config file)."""

    model_config = ConfigDict(extra="forbid")

    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="InferenceSettings fields; AIGC_INFERENCE_* environment variables fill the rest.",
    )
    autoscaling: AutoscalingArgs = Field(default_factory=AutoscalingArgs, description="Autoscaling.")
    ray_actor_options: ActorOptionsArgs = Field(
        default_factory=ActorOptionsArgs, description="Per-replica resources."
    )
    max_ongoing_requests: int | None = Field(
        None,
        ge=1,
        description="Requests Serve sends one replica at a time; unset means the engine's slots + "
        "max_queue, so the core's queue bound is what refuses work.",
    )
    graceful_shutdown_timeout_s: float = Field(
        20.0, ge=0, description="On downscale or update, how long running streams may finish."
    )
    metrics_ports: int = Field(
        8,
        ge=1,
        le=1024,
        description="Consecutive ports from settings.metrics.port a replica tries for /metrics, so several "
        "replicas on one node each get one.",
    )


def _unknown_keys(model: type[BaseModel], data: Mapping[str, Any], prefix: str) -> list[str]:
    # The settings models ignore unknown keys (they share the environment with other programs);
    # in explicit args a typo must fail instead of being dropped.
    unknown = []
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None:
            unknown.append(f"{prefix}{key}")
            continue
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel) and isinstance(value, Mapping):
            unknown.extend(_unknown_keys(sub, value, f"{prefix}{key}."))
    return unknown


def _config_error(exc: ValidationError, prefix: str = "") -> ConfigError:
    lines = [
        f"  {prefix}{'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {err.get('input')!r})"
        for err in exc.errors()
    ]
    return ConfigError("invalid aigc_inference.deployment:build_app args; change:\n" + "\n".join(lines))


def parse_args(args: Mapping[str, Any]) -> tuple[ServeArgs, InferenceSettings]:
    """Validates builder args; a bad one raises ConfigError naming the field (e.g. ``settings.threads``)."""
    try:
        parsed = ServeArgs.model_validate(dict(args))
    except ValidationError as exc:
        raise _config_error(exc) from None
    unknown = _unknown_keys(InferenceSettings, parsed.settings, "settings.")
    if unknown:
        raise ConfigError(
            "invalid aigc_inference.deployment:build_app args; change:\n"
            + "\n".join(f"  {key}: not a field of InferenceSettings" for key in unknown)
        )
    try:
        settings = InferenceSettings(**parsed.settings)
    except ValidationError as exc:
        raise _config_error(exc, "settings.") from None
    return parsed, settings


def _start_runtime(settings: InferenceSettings, ports: int) -> ProcessRuntime:
    """The replica's registry and its /metrics endpoint on the first free port of the range."""
    first = settings.metrics.port
    if not first:
        runtime = ProcessRuntime(SERVICE, settings)
        runtime.start(configure_logs=False)
        return runtime
    last = min(first + ports - 1, 65535)
    for port in range(first, last + 1):
        metrics = settings.metrics.model_copy(update={"port": port})
        runtime = ProcessRuntime(SERVICE, settings.model_copy(update={"metrics": metrics}))
        try:
            # Serve owns logging in a replica; ours would replace its handlers.
            runtime.start(configure_logs=False)
        except OSError:
            continue  # another replica on this node holds it
        return runtime
    raise ConfigError(
        f"no free /metrics port in {first}-{last} on this node; raise args.metrics_ports or give each "
        "replica its own node"
    )


class InferenceReplica:
    """One engine and one :class:`~aigc_inference.core.InferenceCore` per replica, built in ``__init__``.

    Methods are named like the RPCs of ``aigc.inference.v1.InferenceService``. ``grpc_context`` is
    Serve's :class:`ray.serve.grpc_util.RayServegRPCContext` when the call came through the gRPC
    proxy and ``None`` through a deployment handle; a handle caller gets the domain error itself.
    """

    async def __init__(self, settings: InferenceSettings, metrics_ports: int = 8) -> None:  # type: ignore[misc]
        self._runtime = _start_runtime(settings, metrics_ports)
        try:
            self._core = await build_core(settings, self._runtime)
        except BaseException:
            self._runtime.stop()
            raise
        self._closed = False

    @asynccontextmanager
    async def _call(self, method: str, context: Any) -> AsyncIterator[None]:
        """What the standalone interceptors do for one call: a span, RPC metrics, error mapping."""
        metadata = context.invocation_metadata() if context is not None else []
        carrier = {key: value for key, value in metadata if isinstance(value, str)}
        # A span that is not made current: an async generator may resume in another context.
        span = trace.get_tracer("aigc.grpc").start_span(
            f"{SERVICE_NAME}/{method}",
            context=propagate.extract(carrier),
            kind=trace.SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.method": method, "aigc.service": SERVICE},
        )
        rpc = self._runtime.rpc_metrics
        in_flight = rpc.in_flight.labels(SERVICE, method)
        in_flight.inc()
        start = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            yield
        except AigcError as exc:
            code = status_code_for(exc)
            # Serve's replica wraps the exception with the code set on the context, and its proxy
            # sends that code and these details instead of INTERNAL.
            if context is not None:
                context.set_code(code)
                context.set_details(str(exc))
            raise
        except (asyncio.CancelledError, GeneratorExit):
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("unhandled error in %s", method)
            if context is not None:
                context.set_code(code)
                context.set_details("internal error; see the service log")
            raise
        finally:
            in_flight.dec()
            rpc.duration.labels(SERVICE, method, code.name).observe(time.perf_counter() - start)
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            span.end()

    async def Generate(
        self, request: pb.GenerateRequest, grpc_context: Any = None
    ) -> AsyncIterator[pb.GenerateResponse]:
        """Streams started, deltas and finished. When the caller cancels, Serve cancels this
        generator; closing the core's stream aborts the engine request."""
        async with self._call("Generate", grpc_context):
            stream = self._core.generate(request_from_pb(request))
            try:
                async for event in stream:
                    yield event_to_pb(event)
            finally:
                await stream.aclose()  # type: ignore[attr-defined]

    async def CountTokens(
        self, request: pb.CountTokensRequest, grpc_context: Any = None
    ) -> pb.CountTokensResponse:
        async with self._call("CountTokens", grpc_context):
            tokens, window = await self._core.count_tokens(
                request.model, messages_from_pb(request.messages), request.text
            )
            return pb.CountTokensResponse(tokens=tokens, context_window=window)

    async def ListModels(
        self, request: pb.ListModelsRequest, grpc_context: Any = None
    ) -> pb.ListModelsResponse:
        async with self._call("ListModels", grpc_context):
            return pb.ListModelsResponse(models=[model_to_pb(m) for m in self._core.models])

    def check_health(self) -> None:
        """Serve's periodic health check: a replica whose engine is down is replaced."""
        if not self._core.health():
            raise RuntimeError("the inference engine is not healthy")

    async def __del__(self) -> None:
        # Serve awaits this once on graceful shutdown, after running calls drained or timed out.
        if getattr(self, "_closed", True):
            return
        self._closed = True
        try:
            await self._core.close()
        finally:
            self._runtime.stop()


# Applied as a call, not as a class decorator, so type checkers see a Deployment (``.options``,
# ``.bind``) and the plain class stays usable without Ray.
InferenceDeployment = serve.deployment(name="InferenceDeployment")(InferenceReplica)


def _actor_options(options: ActorOptionsArgs, settings: InferenceSettings) -> dict[str, float]:
    num_cpus = options.num_cpus
    if num_cpus is None:
        num_cpus = float(settings.threads * settings.contexts) if settings.engine == "llama_cpp" else 1.0
    num_gpus = options.num_gpus
    if num_gpus is None:
        num_gpus = float(settings.vllm.tensor_parallel_size) if settings.engine == "vllm" else 0.0
    return {"num_cpus": num_cpus, "num_gpus": num_gpus}


def _engine_slots(settings: InferenceSettings) -> int:
    """Requests the configured engine decodes at once (the core admits these plus max_queue)."""
    if settings.engine == "openai_compatible":
        return settings.openai.max_connections
    if settings.engine == "vllm":
        from aigc_inference.engines.vllm_engine import DEFAULT_CONCURRENCY  # no vllm import

        return DEFAULT_CONCURRENCY
    return settings.contexts


def build_app(args: dict[str, Any]) -> serve.Application:
    """The Serve application (``import_path: aigc_inference.deployment:build_app``).

    ``args`` are validated by :class:`ServeArgs` and ``InferenceSettings`` here, where the
    application is built, so a bad value fails the deploy with the field's name instead of
    failing in every replica.
    """
    parsed, settings = parse_args(args)
    scaling = parsed.autoscaling
    deployment = InferenceDeployment.options(
        autoscaling_config={
            "min_replicas": scaling.min_replicas,
            "initial_replicas": max(scaling.min_replicas, 1),
            "max_replicas": scaling.max_replicas,
            "target_ongoing_requests": scaling.target_ongoing_requests,
            "upscale_delay_s": scaling.upscale_delay_s,
            "downscale_delay_s": scaling.downscale_delay_s,
            "look_back_period_s": scaling.look_back_period_s,
        },
        max_ongoing_requests=parsed.max_ongoing_requests or _engine_slots(settings) + settings.max_queue,
        graceful_shutdown_timeout_s=parsed.graceful_shutdown_timeout_s,
        ray_actor_options=_actor_options(parsed.ray_actor_options, settings),
    )
    return deployment.bind(settings, parsed.metrics_ports)
