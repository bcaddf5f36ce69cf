"""The asyncio client (``grpc.aio``): one channel, used from one event loop."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from datetime import datetime
from types import TracebackType
from typing import Any

import grpc
from google.protobuf.message import Message

from aigc.gateway.v1 import gateway_pb2 as pb
from aigc.gateway.v1 import gateway_pb2_grpc as pb_grpc

from . import convert
from .batch import BatchItemResult, BatchJob, BatchState, BatchSubmission
from .channel import DEFAULT_KEEPALIVE_SECONDS, DEFAULT_KEEPALIVE_TIMEOUT_SECONDS, DEFAULT_MAX_MESSAGE_BYTES
from .config import ClientConfig
from .errors import error_from_rpc
from .events import Event, Result
from .retry import USE_CLIENT_DEFAULT, Deadline, Timeout, log_retry


class AsyncClient:
    """Asyncio client of ``aigc.gateway.v1.GatewayService``; the same options and behaviour as
    :class:`aigc_client.Client`.

    The channel opens on the first call, inside the running event loop (a ``grpc.aio`` channel
    belongs to the loop it was made in), so the client can be constructed anywhere. Use it from
    that one loop; ``async with`` or ``await close()`` when done.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float | None = 120.0,
        retries: int = 2,
        retry_resource_exhausted: bool = False,
        max_retry_after: float = 10.0,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        keepalive_seconds: float = DEFAULT_KEEPALIVE_SECONDS,
        keepalive_timeout_seconds: float = DEFAULT_KEEPALIVE_TIMEOUT_SECONDS,
        root_certificates: bytes | None = None,
        private_key: bytes | None = None,
        certificate_chain: bytes | None = None,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self._config = ClientConfig.build(
            url,
            api_key,
            timeout=timeout,
            retries=retries,
            retry_resource_exhausted=retry_resource_exhausted,
            max_retry_after=max_retry_after,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            max_message_bytes=max_message_bytes,
            keepalive_seconds=keepalive_seconds,
            keepalive_timeout_seconds=keepalive_timeout_seconds,
            root_certificates=root_certificates,
            private_key=private_key,
            certificate_chain=certificate_chain,
            channel_options_extra=channel_options,
        )
        self._channel: Any = None
        self._stub: Any = None
        self._closed = False

    def __repr__(self) -> str:
        return f"AsyncClient({self._config.channel.target.address!r}, tls={self._config.channel.target.tls})"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the channel; calls still running are cancelled."""
        self._closed = True
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close()

    def _gateway(self) -> Any:
        if self._closed:
            raise RuntimeError("the AsyncClient is closed")
        if self._stub is None:
            self._channel = self._config.channel.aio_channel()
            self._stub = pb_grpc.GatewayServiceStub(self._channel)
        return self._stub

    # --- generation ---------------------------------------------------------------------------

    def generate(
        self,
        *,
        template: str = "",
        variables: Mapping[str, str] | None = None,
        label: str = "",
        version: int = 0,
        prompt: str = "",
        model: str = "",
        max_tokens: int = 0,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int = 0,
        seed: int | None = None,
        stop: Sequence[str] = (),
        skip_cache: bool = False,
        request_id: str = "",
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> AsyncGenerator[Event, None]:
        """Streams one generation as typed events (see :meth:`aigc_client.Client.generate`).

        ``aclose()`` or cancelling the consuming task cancels the call on the server. After a
        ``break`` the generator is closed only when garbage-collected; wrap it in
        ``contextlib.aclosing`` to cancel at once.
        """
        request = convert.generate_request(
            template=template,
            variables=variables,
            label=label,
            version=version,
            prompt=prompt,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seed=seed,
            stop=stop,
            skip_cache=skip_cache,
            request_id=request_id,
        )
        return self._events(request, timeout)

    async def complete(
        self,
        *,
        template: str = "",
        variables: Mapping[str, str] | None = None,
        label: str = "",
        version: int = 0,
        prompt: str = "",
        model: str = "",
        max_tokens: int = 0,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int = 0,
        seed: int | None = None,
        stop: Sequence[str] = (),
        skip_cache: bool = False,
        request_id: str = "",
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> Result:
        """Runs ``generate`` to the end and returns the answer, the events and the usage."""
        stream = self.generate(
            template=template,
            variables=variables,
            label=label,
            version=version,
            prompt=prompt,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seed=seed,
            stop=stop,
            skip_cache=skip_cache,
            request_id=request_id,
            timeout=timeout,
        )
        async with aclosing(stream):
            return Result.collect([event async for event in stream])

    async def _events(self, request: Message, timeout: Timeout) -> AsyncGenerator[Event, None]:
        async with aclosing(self._server_stream("Generate", request, timeout)) as responses:
            async for response in responses:
                event = convert.event_from_pb(response)
                if event is not None:
                    yield event

    # --- batch and feedback -------------------------------------------------------------------

    async def submit_batch(
        self,
        template: str,
        items: convert.BatchItems,
        *,
        label: str = "",
        model: str = "",
        deadline: datetime | None = None,
        client_token: str = "",
        all_or_nothing: bool = False,
        max_tokens: int = 0,
        priority: str = "normal",
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> BatchSubmission:
        """Submits a batch job (see :meth:`aigc_client.Client.submit_batch`)."""
        token = client_token or uuid.uuid4().hex
        request = convert.submit_batch_request(
            template=template,
            items=items,
            label=label,
            model=model,
            deadline=deadline,
            client_token=token,
            all_or_nothing=all_or_nothing,
            max_tokens=max_tokens,
            priority=priority,
        )
        reply = await self._unary("SubmitBatch", request, timeout)
        return convert.batch_submission_from_pb(reply, token)

    async def get_batch(self, job_id: str, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> BatchJob:
        """A job's state and counts."""
        reply = await self._unary("GetBatch", pb.GetBatchRequest(job_id=job_id), timeout)
        return convert.batch_job_from_pb(reply)

    async def stream_batch_results(
        self, job_id: str, *, cursor: int = 0, timeout: Timeout = None
    ) -> AsyncGenerator[BatchItemResult, None]:
        """Streams a job's item results, each once; no deadline unless ``timeout`` is given."""
        request = pb.StreamBatchResultsRequest(job_id=job_id, cursor=cursor)
        async with aclosing(self._server_stream("StreamBatchResults", request, timeout)) as responses:
            async for response in responses:
                yield convert.batch_item_result_from_pb(response)

    async def cancel_batch(self, job_id: str, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> BatchState:
        """Cancels a job; returns the state after."""
        reply = await self._unary("CancelBatch", pb.CancelBatchRequest(job_id=job_id), timeout)
        return convert.batch_state_from_pb(reply.state)

    async def send_feedback(
        self,
        request_id: str,
        *,
        rating: int = 0,
        correction: str = "",
        comment: str = "",
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> None:
        """Records a rating (1 bad .. 5 good, 0 none) or correction of a result."""
        request = convert.feedback_request(
            request_id=request_id, rating=rating, correction=correction, comment=comment
        )
        await self._unary("SendFeedback", request, timeout)

    # --- calls with retries -------------------------------------------------------------------

    async def _unary(self, method: str, request: Message, timeout: Timeout) -> Any:
        deadline = Deadline(self._config.call_timeout(timeout))
        attempt = 0
        while True:
            call = getattr(self._gateway(), method)
            try:
                return await call(
                    request, timeout=deadline.attempt_timeout(), metadata=self._config.metadata()
                )
            except grpc.aio.AioRpcError as exc:
                error = error_from_rpc(exc)
                delay = self._config.retry.delay(error, attempt, deadline.remaining())
                if delay is None:
                    raise error from exc
            log_retry(method, error, attempt, self._config.retry.retries, delay)
            await asyncio.sleep(delay)
            attempt += 1

    async def _server_stream(
        self, method: str, request: Message, timeout: Timeout
    ) -> AsyncGenerator[Any, None]:
        deadline = Deadline(self._config.call_timeout(timeout))
        attempt = 0
        while True:
            call = getattr(self._gateway(), method)(
                request, timeout=deadline.attempt_timeout(), metadata=self._config.metadata()
            )
            try:
                try:
                    first = await call.read()
                except grpc.aio.AioRpcError as exc:
                    error = error_from_rpc(exc)
                    delay = self._config.retry.delay(error, attempt, deadline.remaining())
                    if delay is None:
                        raise error from exc
                else:
                    if first is grpc.aio.EOF:
                        return
                    yield first
                    # The server has answered: from here a retry could charge twice and repeat
                    # text the caller already has, so any error is raised as it is.
                    while True:
                        try:
                            response = await call.read()
                        except grpc.aio.AioRpcError as exc:
                            raise error_from_rpc(exc) from exc
                        if response is grpc.aio.EOF:
                            return
                        yield response
            finally:
                # Reached on aclose(), on cancellation of the consuming task and on errors: the
                # server sees the cancellation and stops generating.
                call.cancel()
            log_retry(method, error, attempt, self._config.retry.retries, delay)
            await asyncio.sleep(delay)
            attempt += 1
