"""The blocking client: one channel, safe to share between threads."""

from __future__ import annotations

import time
import uuid
from collections.abc import Generator, Mapping, Sequence
from contextlib import closing
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


class Client:
    """Blocking client of ``aigc.gateway.v1.GatewayService``.

    ``url``: ``grpcs://host[:port]`` or ``https://...`` for TLS (system roots unless
    ``root_certificates``; ``private_key`` + ``certificate_chain`` for mutual TLS), ``host:port`` or
    ``grpc://host:port`` for plaintext. ``api_key`` travels in the ``x-api-key`` metadata; empty
    sends none (a local stack without keys).

    ``timeout`` is the default deadline of each call in seconds (``None``: no deadline), shared by
    all its attempts; every method takes its own ``timeout`` too. ``retries`` bounds retries of
    UNAVAILABLE (and of RESOURCE_EXHAUSTED with ``retry_resource_exhausted``, waiting the server's
    ``retry-after`` when it is at most ``max_retry_after`` seconds) with exponential backoff and
    jitter between ``backoff_initial`` and ``backoff_max``. Streams are retried only before their
    first message: after it, a retry could charge twice and repeat text, so the error is raised.

    Share one client between threads; close it (or use ``with``) when done.
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
        self._channel = self._config.channel.sync_channel()
        self._stub = pb_grpc.GatewayServiceStub(self._channel)

    def __repr__(self) -> str:
        return f"Client({self._config.channel.target.address!r}, tls={self._config.channel.target.tls})"

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channel; calls still running are cancelled."""
        self._channel.close()

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
    ) -> Generator[Event, None, None]:
        """Streams one generation as typed events: ``Started``, then ``Delta``s (reasoning first
        when the template shows it), ``SafetyEvent``s when a check changed the stream, ``Finished``.

        ``template`` empty means the built-in chat template, which needs ``prompt``. ``label``
        empty means "production"; ``version`` pins one. Sampling values left at their defaults
        keep the template's. Breaking out of the loop or ``close()`` cancels the call on the
        server; ``contextlib.closing`` makes that deterministic on every Python.
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

    def complete(
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
        """Runs ``generate`` to the end and returns the answer, the events and the usage.

        A safety block is not an error: the result has ``blocked`` set and its safety events.
        """
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
        with closing(stream):
            return Result.collect(list(stream))

    def _events(self, request: Message, timeout: Timeout) -> Generator[Event, None, None]:
        with closing(self._server_stream("Generate", request, timeout)) as responses:
            for response in responses:
                event = convert.event_from_pb(response)
                if event is not None:
                    yield event

    # --- batch and feedback -------------------------------------------------------------------

    def submit_batch(
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
        """Submits a batch job. ``items``: ``BatchItem`` values or ``{item_id: variables}``.

        Without a ``client_token`` one is generated, so that a retry after a lost reply returns the
        same job instead of submitting (and charging) it twice; it is on the returned value.
        ``priority`` (low, normal, high) weighs the job's share of the workers' queue against other
        jobs; no job is shut out.
        """
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
        reply = self._unary("SubmitBatch", request, timeout)
        return convert.batch_submission_from_pb(reply, token)

    def get_batch(self, job_id: str, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> BatchJob:
        """A job's state and counts."""
        reply = self._unary("GetBatch", pb.GetBatchRequest(job_id=job_id), timeout)
        return convert.batch_job_from_pb(reply)

    def stream_batch_results(
        self, job_id: str, *, cursor: int = 0, timeout: Timeout = None
    ) -> Generator[BatchItemResult, None, None]:
        """Streams a job's item results, each once, as they become available. No deadline unless
        ``timeout`` is given: the stream follows the job, which may run for hours."""
        request = pb.StreamBatchResultsRequest(job_id=job_id, cursor=cursor)
        with closing(self._server_stream("StreamBatchResults", request, timeout)) as responses:
            for response in responses:
                yield convert.batch_item_result_from_pb(response)

    def cancel_batch(self, job_id: str, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> BatchState:
        """Cancels a job; items not yet started end as cancelled. Returns the state after."""
        reply = self._unary("CancelBatch", pb.CancelBatchRequest(job_id=job_id), timeout)
        return convert.batch_state_from_pb(reply.state)

    def send_feedback(
        self,
        request_id: str,
        *,
        rating: int = 0,
        correction: str = "",
        comment: str = "",
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> None:
        """Records a rating (1 bad .. 5 good, 0 none) or correction of a result, by the request id
        from ``Started`` (or ``job_id/item_id`` for a batch item)."""
        request = convert.feedback_request(
            request_id=request_id, rating=rating, correction=correction, comment=comment
        )
        self._unary("SendFeedback", request, timeout)

    # --- calls with retries -------------------------------------------------------------------

    def _unary(self, method: str, request: Message, timeout: Timeout) -> Any:
        deadline = Deadline(self._config.call_timeout(timeout))
        attempt = 0
        while True:
            call = getattr(self._stub, method)
            try:
                return call(request, timeout=deadline.attempt_timeout(), metadata=self._config.metadata())
            except grpc.RpcError as exc:
                error = error_from_rpc(exc)
                delay = self._config.retry.delay(error, attempt, deadline.remaining())
                if delay is None:
                    raise error from exc
            log_retry(method, error, attempt, self._config.retry.retries, delay)
            time.sleep(delay)
            attempt += 1

    def _server_stream(self, method: str, request: Message, timeout: Timeout) -> Generator[Any, None, None]:
        deadline = Deadline(self._config.call_timeout(timeout))
        attempt = 0
        while True:
            call = getattr(self._stub, method)(
                request, timeout=deadline.attempt_timeout(), metadata=self._config.metadata()
            )
            try:
                try:
                    first = next(call)
                except StopIteration:
                    return
                except grpc.RpcError as exc:
                    error = error_from_rpc(exc)
                    delay = self._config.retry.delay(error, attempt, deadline.remaining())
                    if delay is None:
                        raise error from exc
                else:
                    yield first
                    # The server has answered: from here a retry could charge twice and repeat
                    # text the caller already has, so any error is raised as it is.
                    try:
                        yield from call
                    except grpc.RpcError as exc:
                        raise error_from_rpc(exc) from exc
                    return
            finally:
                # Reached on close(), on a break out of the caller's loop (the generator is
                # closed) and on errors: the server sees the cancellation and stops generating.
                call.cancel()
            log_retry(method, error, attempt, self._config.retry.retries, delay)
            time.sleep(delay)
            attempt += 1
