"""The GPU engine: vLLM's ``AsyncLLM`` inside this process (the optional ``gpu`` extra, vLLM 0.32.0).

vLLM batches continuously: every running sequence advances on each forward pass, so this engine
takes as many requests at once as vLLM's scheduler admits (``max_num_seqs``) and the core's queue
only bounds what waits beyond that. The chat template is applied here with the model's own
tokenizer, so the prompt count the core checks is the prompt the GPU sees, and vLLM receives the
token ids already rendered (nothing is tokenized twice inside vLLM).

vLLM is imported in methods only: this module must import on machines without the extra, and
``tests/test_vllm_api_surface.py`` checks every vLLM name used here against the pinned wheel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from aigc_common.errors import ConfigError, InvalidArgument, ResourceExhausted, Unavailable
from aigc_common.types import ChatMessage, FinishReason
from aigc_inference.engine import Engine, EngineDelta, EngineRequest, ModelInfo, parse_json_schema
from aigc_inference.settings import VllmSettings

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 256
"""Requests decoded at once until the model is loaded; afterwards vLLM's own ``max_num_seqs``."""

GENERATION_CONFIG_KEYS = frozenset(
    {"temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty"}
)
"""Sampling defaults taken from the model's ``generation_config.json`` (``max_tokens`` is the core's)."""


class VllmEngine(Engine):
    """Serves one model with vLLM's ``AsyncLLM`` on this node's GPUs.

    ``start`` loads the weights (minutes for a large model); until then ``health`` is false and
    ``info.context_window`` is the configured ``max_model_len`` (0 when the model decides).
    """

    def __init__(self, settings: VllmSettings, *, name: str) -> None:
        self._settings = settings
        self._info = ModelInfo(
            name=name,
            engine="vllm",
            context_window=settings.max_model_len,
            supports_json_schema=True,
            tokenizer=settings.model,
        )
        self._llm: Any = None  # vllm.v1.engine.async_llm.AsyncLLM once started
        self._tokenizer: Any = None  # vllm.tokenizers.TokenizerLike (a thread-safe HF tokenizer pool)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._defaults: dict[str, Any] = {}
        self._concurrency = DEFAULT_CONCURRENCY
        self._running: set[str] = set()
        self._abort_tasks: set[asyncio.Task[None]] = set()

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def concurrency(self) -> int:
        """vLLM's ``max_num_seqs``: its scheduler decodes that many sequences in one batch and queues
        the rest itself, so the core need not hold them back."""
        return self._concurrency

    async def start(self) -> None:
        """Loads the model on the GPUs, then the tokenizer and the model's limits and defaults."""
        if self._llm is not None:
            return
        settings = self._settings
        if not settings.model:
            raise ConfigError(
                "AIGC_INFERENCE_VLLM__MODEL is empty: set it to a local model directory "
                "(or a Hugging Face id already in the local cache)"
            )
        try:
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.usage.usage_lib import UsageContext
            from vllm.v1.engine.async_llm import AsyncLLM
        except ModuleNotFoundError as exc:
            if exc.name != "vllm":
                raise
            raise ConfigError(
                "AIGC_INFERENCE_ENGINE=vllm needs the gpu extra on a CUDA node: "
                "`uv pip sync requirements/gpu-lock.txt` (see services/inference/docs/vllm.md)"
            ) from exc
        args = AsyncEngineArgs(
            model=settings.model,
            dtype=settings.dtype,
            tensor_parallel_size=settings.tensor_parallel_size,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            # None lets vLLM derive the window from the model's config (and check it fits in memory).
            max_model_len=settings.max_model_len or None,
            enable_prefix_caching=settings.enable_prefix_caching,
            # vLLM's request log prints prompt token ids at DEBUG; prompts never reach our logs.
            enable_log_requests=False,
        )
        # Built on the running loop, as vLLM's own servers do: AsyncLLM starts its output handler on
        # it. Loading blocks the loop meanwhile, before the server takes any traffic. vLLM's stat
        # loggers stay on (disable_log_stats is left False): they feed its vllm:* Prometheus metrics.
        # OPENAI_API_SERVER picks vLLM's online-serving batch sizes for this GPU (max_num_seqs 256,
        # 1024 on H100-class cards); the default ENGINE_CONTEXT has no entry and falls back to 128.
        llm = AsyncLLM.from_engine_args(args, usage_context=UsageContext.OPENAI_API_SERVER)
        try:
            model_config = llm.model_config
            tokenizer = llm.get_tokenizer()  # synchronous in 0.32: the renderer loaded it already
            self._check_chat_template(tokenizer)
            # Unset sampling fields take the model's generation_config.json defaults, as `vllm serve`
            # does, so this engine and a `vllm serve` behind the OpenAI-compatible engine sample alike.
            self._defaults = {
                key: value
                for key, value in model_config.get_diff_sampling_param().items()
                if key in GENERATION_CONFIG_KEYS
            }
            self._concurrency = llm.scheduler_config.max_num_seqs
            self._info = replace(
                self._info,
                context_window=model_config.max_model_len,
                chat_template=_chat_template(tokenizer),
            )
        except BaseException:
            llm.shutdown()
            raise
        self._llm, self._tokenizer, self._loop = llm, tokenizer, asyncio.get_running_loop()
        log.info(
            "model loaded",
            extra={
                "fields": {
                    "model": self._info.name,
                    "context_window": self._info.context_window,
                    "max_num_seqs": self._concurrency,
                    "tensor_parallel_size": settings.tensor_parallel_size,
                }
            },
        )

    def _check_chat_template(self, tokenizer: Any) -> None:
        # A base model without a chat template would fail every request; say so at start-up instead.
        try:
            _render(tokenizer, [{"role": "user", "content": "ping"}])
        except Exception as exc:  # transformers raises ValueError, a template's own check a jinja error
            raise ConfigError(
                f"{self._settings.model} has no usable chat template ({exc}); serve an instruct/chat "
                "model or one whose tokenizer_config.json carries a chat_template"
            ) from None

    def health(self) -> bool:
        return self._llm is not None and not self._llm.errored

    def _ready(self) -> Any:
        if self._llm is None:
            raise Unavailable("the model is still loading")
        if self._llm.errored:
            raise Unavailable("the vLLM engine has failed; the pod needs a restart")
        return self._llm

    async def _prompt_ids(self, messages: Sequence[ChatMessage]) -> list[int]:
        self._ready()
        conversation = [{"role": message.role.value, "content": message.content} for message in messages]
        # Rendering and tokenizing a long prompt takes milliseconds of CPU; on the loop it would stall
        # every stream, since vLLM's output handler runs on this loop too. The tokenizer vLLM hands
        # out is a thread-safe pool (vLLM's renderer tokenizes from threads the same way).
        return await asyncio.to_thread(_render, self._tokenizer, conversation)

    async def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(await self._prompt_ids(messages))

    async def count_text_tokens(self, text: str) -> int:
        self._ready()
        ids = await asyncio.to_thread(self._tokenizer.encode, text, add_special_tokens=False)
        return len(ids)

    def _sampling_params(self, request: EngineRequest) -> Any:
        from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams

        sampling = request.sampling
        values = dict(self._defaults)
        if sampling.temperature is not None:
            values["temperature"] = sampling.temperature
        if sampling.top_p is not None:
            values["top_p"] = sampling.top_p
        if sampling.top_k:  # our 0 means unset; vLLM's 0 (or -1) means "all tokens"
            values["top_k"] = sampling.top_k
        structured = (
            StructuredOutputsParams(json=parse_json_schema(request.json_schema))
            if request.json_schema
            else None
        )
        # Stop sequences stay with the core (it holds text back until they can no longer match), so
        # every engine ends on them alike; closing the stream then aborts the sequence here.
        return SamplingParams(
            max_tokens=request.max_tokens,
            seed=sampling.seed,
            # 0: the sampled token's log-probability only; deltas carry no alternatives.
            logprobs=0 if request.logprobs else None,
            output_kind=RequestOutputKind.DELTA,
            structured_outputs=structured,
            **values,
        )

    async def generate(self, request: EngineRequest) -> AsyncIterator[EngineDelta]:
        llm = self._ready()  # before the imports: without the extra, "not loaded" is the answer
        from vllm.exceptions import GracefulHTTPError, VLLMClientError
        from vllm.inputs import tokens_input
        from vllm.v1.engine.exceptions import EngineDeadError

        prompt_ids = await self._prompt_ids(request.messages)
        request_id = request.request_id
        stream: Any = None
        finished = False
        produced = 0
        self._running.add(request_id)
        try:
            params = self._sampling_params(request)
            # tokens_input() is the rendered form AsyncLLM.add_request takes as is; a TokensPrompt
            # still works in 0.32 but goes through the deprecated raw-prompt path.
            stream = llm.generate(tokens_input(prompt_ids), params, request_id=request_id)
            async for output in stream:
                completion = output.outputs[0]
                produced += len(completion.token_ids)
                finish = _finish_reason(completion.finish_reason) if output.finished else None
                finished = output.finished
                yield EngineDelta(
                    text=completion.text,
                    token_ids=tuple(completion.token_ids),
                    finish_reason=finish,
                    logprobs=_sampled_logprobs(completion),
                    completion_tokens=produced if finished else 0,
                    prompt_tokens=len(prompt_ids) if finished else 0,
                )
        except VLLMClientError as exc:
            # Validation before admission, e.g. a schema the grammar backend cannot compile.
            field = getattr(exc, "parameter", None) or ("json_schema" if request.json_schema else "")
            raise InvalidArgument(str(exc), field=field) from None
        except GracefulHTTPError as exc:
            # vLLM's own admission limits (queue length or queued tokens) refused the request.
            raise ResourceExhausted(str(exc), retry_after=1.0) from None
        except EngineDeadError:
            raise Unavailable("the vLLM engine has failed; the pod needs a restart") from None
        finally:
            self._running.discard(request_id)
            if stream is not None:
                if not finished and not llm.errored:
                    # The caller went away (cancel, deadline, a stop sequence seen by the core): free
                    # the sequence's KV cache now instead of decoding on to max_tokens.
                    await llm.abort(request_id)
                await stream.aclose()

    def abort(self, request_id: str) -> None:
        """Schedules vLLM's abort; the request's stream then ends with CANCELLED."""
        llm, loop = self._llm, self._loop
        if llm is None or loop is None or request_id not in self._running:
            return
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            task = loop.create_task(llm.abort(request_id))
            # The loop keeps only weak references to tasks: hold it until it is done.
            self._abort_tasks.add(task)
            task.add_done_callback(self._abort_tasks.discard)
        else:
            asyncio.run_coroutine_threadsafe(llm.abort(request_id), loop)

    async def stop(self) -> None:
        """Ends running requests (their streams finish with CANCELLED) and frees the GPUs."""
        llm, self._llm = self._llm, None
        if llm is None:
            return
        if self._running and not llm.errored:
            await llm.abort(list(self._running))
        # Stops the engine-core processes and their GPU workers; vLLM calls it from the loop too.
        llm.shutdown()
        self._tokenizer = None
        self._loop = None


def _render(tokenizer: Any, conversation: list[dict[str, str]]) -> list[int]:
    """Prompt token ids of a conversation under the model's chat template."""
    # transformers 5 returns a BatchEncoding for tokenize=True unless return_dict=False (vLLM's own
    # renderer passes it too); vLLM's Mistral tokenizer returns the ids in any case.
    ids = tokenizer.apply_chat_template(
        conversation, tokenize=True, add_generation_prompt=True, return_dict=False
    )
    if isinstance(ids, Mapping):
        ids = ids["input_ids"]
    return list(ids)


def _chat_template(tokenizer: Any) -> str:
    template = getattr(tokenizer, "chat_template", None)
    return template if isinstance(template, str) else ""


def _finish_reason(reason: str | None) -> FinishReason:
    """Maps vLLM's finish reasons (``vllm.v1.engine.FINISH_REASON_STRINGS``) to ours."""
    match reason:
        case "stop":
            return FinishReason.STOP
        case "length":
            return FinishReason.LENGTH
        case "abort":
            return FinishReason.CANCELLED
        case _:
            # "error" (a request-level engine failure); "repetition" needs repetition detection,
            # which this engine never turns on.
            return FinishReason.ERROR


def _sampled_logprobs(completion: Any) -> tuple[float, ...]:
    """Log-probability of each sampled token; vLLM lists the sampled token at every position, both
    in ``list[dict[int, Logprob]]`` and in ``FlatLogprobs``."""
    if not completion.logprobs:
        return ()
    values: list[float] = []
    for token_id, position in zip(completion.token_ids, completion.logprobs, strict=False):
        chosen = position[token_id]
        values.append(chosen.logprob)
    return tuple(values)
