"""Server interceptors wired once by the bootstrap: tracing, metrics and error mapping.

Each interceptor is an async context manager around one call; :func:`_wrap` applies it to
whichever of the four handler shapes the method has, so streaming calls are measured and
mapped until their last message, not just until the handler returns a generator.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from aigc_common import errors
from aigc_common.metrics import RpcMetrics

log = logging.getLogger(__name__)

Around = Callable[[str, grpc.aio.ServicerContext], AbstractAsyncContextManager[None]]

FIELD_METADATA = "aigc-field-bin"
"""Trailing metadata naming the request field a failed call's error is about."""

_CODES: dict[type[errors.AigcError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
}


def status_code_for(error: errors.AigcError) -> grpc.StatusCode:
    """The gRPC status code of a domain error."""
    for cls in type(error).__mro__:
        if cls in _CODES:
            return _CODES[cls]
    return grpc.StatusCode.UNKNOWN


def _wrap(handler: grpc.RpcMethodHandler, method: str, around: Around) -> grpc.RpcMethodHandler:
    if handler.unary_unary:
        inner_uu = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with around(method, context):
                return await inner_uu(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream:
        inner_us = handler.unary_stream

        async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async with around(method, context):
                async for item in inner_us(request, context):
                    yield item

        return grpc.unary_stream_rpc_method_handler(
            unary_stream, handler.request_deserializer, handler.response_serializer
        )
    if handler.stream_unary:
        inner_su = handler.stream_unary

        async def stream_unary(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            async with around(method, context):
                return await inner_su(requests, context)

        return grpc.stream_unary_rpc_method_handler(
            stream_unary, handler.request_deserializer, handler.response_serializer
        )
    inner_ss = handler.stream_stream

    async def stream_stream(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async with around(method, context):
            async for item in inner_ss(requests, context):
                yield item

    return grpc.stream_stream_rpc_method_handler(
        stream_stream, handler.request_deserializer, handler.response_serializer
    )


class _AroundInterceptor(grpc.aio.ServerInterceptor):
    """Applies ``around`` to every method except the standard health and reflection ones."""

    def around(self, method: str, context: grpc.aio.ServicerContext) -> AbstractAsyncContextManager[None]:
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(("/grpc.health.", "/grpc.reflection.")):
            return handler
        return _wrap(handler, method, self.around)


def _code_of(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.OK if code in (None, 0) else grpc.StatusCode.UNKNOWN


class ErrorMappingInterceptor(_AroundInterceptor):
    """Maps domain errors to status codes; anything unexpected becomes INTERNAL, logged once."""

    @asynccontextmanager
    async def around(self, method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        try:
            yield
        except errors.AigcError as exc:
            trailing: list[tuple[str, str | bytes]] = []
            if isinstance(exc, errors.ResourceExhausted) and exc.retry_after > 0:
                trailing.append(("retry-after", f"{exc.retry_after:.3f}"))
            if exc.field:
                # Binary metadata: field paths may hold non-ASCII variable names (variables.品名).
                trailing.append((FIELD_METADATA, exc.field.encode("utf-8")))
            if trailing:
                context.set_trailing_metadata(tuple(trailing))
            await context.abort(status_code_for(exc), str(exc))
        except (asyncio.CancelledError, grpc.aio.AbortError, GeneratorExit):
            raise
        except Exception:
            log.exception("unhandled error in %s", method)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the service log")


class MetricsInterceptor(_AroundInterceptor):
    """Records ``aigc_rpc_duration_seconds{service,method,code}`` and ``aigc_rpc_in_flight``."""

    def __init__(self, service: str, metrics: RpcMetrics) -> None:
        self._service = service
        self._metrics = metrics

    @asynccontextmanager
    async def around(self, method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        name = method.rsplit("/", 1)[-1]
        in_flight = self._metrics.in_flight.labels(self._service, name)
        in_flight.inc()
        start = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            yield
            code = _code_of(context)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except grpc.aio.AbortError:
            code = _code_of(context)
            raise
        except BaseException:
            code = grpc.StatusCode.UNKNOWN
            raise
        finally:
            in_flight.dec()
            self._metrics.duration.labels(self._service, name, code.name).observe(time.perf_counter() - start)


class TracingInterceptor(_AroundInterceptor):
    """Continues the caller's trace from the metadata and opens a SERVER span per call."""

    def __init__(self, service: str) -> None:
        self._service = service

    @asynccontextmanager
    async def around(self, method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        carrier = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        parent = propagate.extract(carrier)
        token = otel_context.attach(parent)
        tracer = trace.get_tracer("aigc.grpc")
        try:
            with tracer.start_as_current_span(
                method.lstrip("/"),
                kind=trace.SpanKind.SERVER,
                attributes={"rpc.system": "grpc", "rpc.method": method, "aigc.service": self._service},
            ) as span:
                try:
                    yield
                except grpc.aio.AbortError:
                    span.set_attribute("rpc.grpc.status_code", _code_of(context).value[0])
                    raise
        finally:
            otel_context.detach(token)


class ChainedInterceptor(_AroundInterceptor):
    """Several interceptors' ``around`` managers applied by ONE wrapper, outermost first.

    Each interceptor registered on its own wraps a stream in its own async generator, so every
    streamed message would pass through one generator per interceptor; chained, it passes through
    one. Behaviour is the same as registering them in this order.
    """

    def __init__(self, *links: _AroundInterceptor) -> None:
        self._links = links

    @asynccontextmanager
    async def around(self, method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for link in self._links:
                await stack.enter_async_context(link.around(method, context))
            yield


def error_from_rpc(exc: grpc.aio.AioRpcError, service: str) -> errors.AigcError:
    """The domain error a remote status stands for, so a gateway re-raises it with its meaning
    (and the request field it names, from the ``aigc-field-bin`` trailing metadata)."""
    code = exc.code()
    details = exc.details() or code.name
    field = ""
    for key, value in exc.trailing_metadata() or ():
        if key == FIELD_METADATA:
            field = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    if field and details.startswith(f"{field}: "):
        details = details[len(field) + 2 :]
    for cls, mapped in _CODES.items():
        if mapped == code:
            return cls(details, field=field)
    if code == grpc.StatusCode.CANCELLED:
        return errors.Unavailable(f"{service} cancelled the call")
    return errors.Unavailable(f"{service} failed: {code.name}")
