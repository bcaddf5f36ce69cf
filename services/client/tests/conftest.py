"""A scripted gateway on a real ``grpc.aio`` server, in its own thread and event loop.

The server runs in a thread of its own so the blocking client can be driven from the test's
thread (and from several) without starving it. Errors are raised as the services raise them,
``aigc_common.errors`` through the real ``ErrorMappingInterceptor``, so the client is tested
against the wire format the gateway really produces (``field: message``, ``retry-after``).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from aigc.common.v1 import common_pb2
from aigc.gateway.v1 import gateway_pb2 as pb
from aigc.gateway.v1 import gateway_pb2_grpc as pb_grpc
from aigc_common.interceptors import ErrorMappingInterceptor


@dataclass(frozen=True)
class Sleep:
    """A pause in a scripted call, in seconds."""

    seconds: float


Step = Any  # a response message to send, a Sleep, or an exception to raise


@dataclass
class CallRecord:
    """What the server saw of one call."""

    method: str
    request: Any
    metadata: dict[str, str]
    cancelled: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)


class ScriptedGateway(pb_grpc.GatewayServiceServicer):
    """Plays, per key (template id, job id, request id), one list of steps per attempt; the last
    list repeats. A key without a script answers UNIMPLEMENTED, as the gateway's batch RPCs do today."""

    def __init__(self) -> None:
        self._scripts: dict[str, list[list[Step]]] = {}
        self._calls: dict[str, list[CallRecord]] = {}
        self._lock = threading.Lock()

    def script(self, key: str, *attempts: list[Step]) -> None:
        with self._lock:
            self._scripts[key] = [list(a) for a in attempts]

    def calls(self, key: str) -> list[CallRecord]:
        with self._lock:
            return list(self._calls.get(key, []))

    def _begin(
        self, method: str, key: str, request: Any, context: Any
    ) -> tuple[CallRecord, list[Step] | None]:
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        record = CallRecord(method, request, metadata)
        with self._lock:
            self._calls.setdefault(key, []).append(record)
            attempts = self._scripts.get(key)
            steps = None
            if attempts:
                steps = attempts.pop(0) if len(attempts) > 1 else attempts[0]
        return record, steps

    async def _stream(self, method: str, key: str, request: Any, context: Any) -> AsyncIterator[Any]:
        from aigc_common.errors import Unimplemented

        record, steps = self._begin(method, key, request, context)
        try:
            if steps is None:
                raise Unimplemented(f"{method} is not available yet")
            for step in steps:
                if isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                elif isinstance(step, BaseException):
                    raise step
                else:
                    yield step
        except asyncio.CancelledError:
            record.cancelled.set()
            raise
        finally:
            if context.cancelled():
                record.cancelled.set()
            record.ended.set()

    async def _unary(self, method: str, key: str, request: Any, context: Any) -> Any:
        from aigc_common.errors import Unimplemented

        record, steps = self._begin(method, key, request, context)
        try:
            if steps is None:
                raise Unimplemented(f"{method} is not available yet")
            for step in steps:
                if isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                elif isinstance(step, BaseException):
                    raise step
                else:
                    return step
            raise AssertionError(f"script for {key} ends without a reply")
        finally:
            record.ended.set()

    def Generate(self, request: pb.GenerateRequest, context: Any) -> AsyncIterator[pb.GenerateResponse]:
        return self._stream("Generate", request.template_id, request, context)

    def StreamBatchResults(self, request: pb.StreamBatchResultsRequest, context: Any) -> AsyncIterator[Any]:
        return self._stream("StreamBatchResults", request.job_id, request, context)

    async def SubmitBatch(self, request: pb.SubmitBatchRequest, context: Any) -> Any:
        return await self._unary("SubmitBatch", request.template_id, request, context)

    async def GetBatch(self, request: pb.GetBatchRequest, context: Any) -> Any:
        return await self._unary("GetBatch", request.job_id, request, context)

    async def CancelBatch(self, request: pb.CancelBatchRequest, context: Any) -> Any:
        return await self._unary("CancelBatch", request.job_id, request, context)

    async def SendFeedback(self, request: pb.SendFeedbackRequest, context: Any) -> Any:
        return await self._unary("SendFeedback", request.request_id, request, context)


class GatewayThread:
    """A grpc.aio server with the scripted gateway, plaintext and (given a key pair) TLS ports."""

    def __init__(self, servicer: ScriptedGateway, tls: tuple[bytes, bytes] | None) -> None:
        self.servicer = servicer
        self._tls = tls
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-gateway", daemon=True)
        self._server: Any = None
        self.port = 0
        self.tls_port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)

    async def _start(self) -> None:
        server = grpc.aio.server(interceptors=[ErrorMappingInterceptor()])
        pb_grpc.add_GatewayServiceServicer_to_server(self.servicer, server)
        self.port = server.add_insecure_port("127.0.0.1:0")
        if self._tls:
            key, cert = self._tls
            self.tls_port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
        await server.start()
        self._server = server

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._server.stop(0), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()


def _self_signed() -> tuple[bytes, bytes]:
    """A key and certificate for 127.0.0.1, made here so no key material lives in the repo."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aigc-test-gateway")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="session")
def tls_pair() -> tuple[bytes, bytes]:
    return _self_signed()


@pytest.fixture(scope="session")
def gateway(tls_pair: tuple[bytes, bytes]) -> Iterator[GatewayThread]:
    """One server for the session; tests isolate themselves by key (see ``key``)."""
    thread = GatewayThread(ScriptedGateway(), tls_pair)
    thread.start()
    yield thread
    thread.stop()


@pytest.fixture
def key() -> str:
    """A script key (template id, job id) no other test uses."""
    return f"t-{uuid.uuid4().hex[:10]}"


class Wire:
    """Builders of the gateway's stream messages and script steps."""

    @staticmethod
    def sleep(seconds: float) -> Sleep:
        return Sleep(seconds)

    @staticmethod
    def started(request_id: str = "req-1", cache_hit: bool = False) -> pb.GenerateResponse:
        return pb.GenerateResponse(
            started=pb.GenerateStarted(
                request_id=request_id,
                bundle_id="b-7",
                model="smollm2",
                cache_hit=cache_hit,
                template_version=3,
            )
        )

    @staticmethod
    def delta(text: str, reasoning: bool = False) -> pb.GenerateResponse:
        return pb.GenerateResponse(delta=pb.GenerateDelta(text=text, reasoning=reasoning))

    @staticmethod
    def safety() -> pb.GenerateResponse:
        return pb.GenerateResponse(
            safety=pb.SafetyEvent(
                stage="output",
                action="redact",
                policy_version="p-2",
                rule_ids=["pii.mobile_cn"],
                message="a phone number was removed",
            )
        )

    @staticmethod
    def finished(reason: int = common_pb2.FINISH_REASON_STOP) -> pb.GenerateResponse:
        return pb.GenerateResponse(
            finished=pb.GenerateFinished(
                finish_reason=reason,  # type: ignore[arg-type]
                usage=common_pb2.Usage(
                    prompt_tokens=12, completion_tokens=5, cached_tokens=0, total_tokens=17
                ),
                cost=common_pb2.Cost(currency="CNY", amount_nanos=1_234_567),
                time_to_first_token_seconds=0.25,
                duration_seconds=1.5,
            )
        )

    @classmethod
    def answer(cls, *texts: str) -> list[pb.GenerateResponse]:
        return [cls.started(), *(cls.delta(t) for t in texts), cls.finished()]


@pytest.fixture
def wire() -> type[Wire]:
    return Wire
