"""The CPU default engine: llama.cpp through llama-cpp-python, with a GGUF model.

A llama.cpp context decodes one sequence at a time, so the engine keeps a pool of
contexts (``contexts``, each with its own KV cache, sharing nothing but the file) and
requests wait for a free one; the core bounds how many may wait. Decoding runs in a
worker thread per request and hands deltas to the event loop, so the loop never blocks.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import random
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from aigc_common.errors import InvalidArgument, Unavailable
from aigc_common.tokenizer import GgufChatTokenizer
from aigc_common.types import ChatMessage, FinishReason
from aigc_inference.engine import Engine, EngineDelta, EngineRequest, ModelInfo, parse_json_schema

log = logging.getLogger(__name__)


class LlamaCppEngine(Engine):
    """Serves one GGUF model from a pool of llama.cpp contexts."""

    def __init__(
        self,
        model_path: Path,
        *,
        name: str = "smollm2-135m-instruct",
        context_window: int = 2048,
        threads: int = 2,
        contexts: int = 1,
        repeat_penalty: float = 1.1,
    ) -> None:
        self._path = model_path
        self._info = ModelInfo(
            name=name,
            engine="llama_cpp",
            context_window=context_window,
            supports_json_schema=True,
            tokenizer=f"gguf:{model_path.name}",
        )
        self._threads = threads
        self._contexts = contexts
        # Small models loop on greedy decoding; a mild penalty keeps answers readable.
        self._repeat_penalty = repeat_penalty
        self._pool: asyncio.Queue[Any] = asyncio.Queue()
        self._llamas: list[Any] = []
        self._aborts: dict[str, threading.Event] = {}
        self._tokenizer: GgufChatTokenizer | None = None
        self._recent_prompts: dict[tuple[ChatMessage, ...], tuple[int, ...]] = {}

    @property
    def info(self) -> ModelInfo:
        return self._info

    async def start(self) -> None:
        if not self._path.is_file():
            raise Unavailable(f"model file not found: {self._path}")
        for _ in range(self._contexts):
            llama = await asyncio.to_thread(self._load)
            self._llamas.append(llama)
            self._pool.put_nowait(llama)
        self._tokenizer = GgufChatTokenizer(self._llamas[0])
        self._info = replace(self._info, chat_template=self._tokenizer.template)
        log.info(
            "model loaded",
            extra={
                "fields": {"model": self._info.name, "contexts": self._contexts, "threads": self._threads}
            },
        )

    def _load(self) -> Any:
        from llama_cpp import Llama  # imported here: loading the native library is the slow part

        return Llama(
            model_path=str(self._path),
            n_ctx=self._info.context_window,
            n_threads=self._threads,
            n_threads_batch=self._threads,
            verbose=False,
        )

    @property
    def concurrency(self) -> int:
        return self._contexts

    def health(self) -> bool:
        return len(self._llamas) == self._contexts and self._contexts > 0

    def _ready_tokenizer(self) -> GgufChatTokenizer:
        if self._tokenizer is None:
            raise Unavailable("the model is still loading")
        return self._tokenizer

    def _prompt_ids(self, messages: Sequence[ChatMessage]) -> list[int]:
        # The core counts a prompt and then generates from it: remember the last few so the chat
        # template and tokenizer run once per request, not twice.
        key = tuple(messages)
        ids = self._recent_prompts.get(key)
        if ids is None:
            tokenizer = self._ready_tokenizer()
            # Tokenizing reads only the vocabulary, which the contexts share read-only.
            ids = tuple(tokenizer.tokenize(tokenizer.apply_chat_template(messages)))
            self._recent_prompts[key] = ids
            while len(self._recent_prompts) > 64:
                self._recent_prompts.pop(next(iter(self._recent_prompts)))
        return list(ids)

    async def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(self._prompt_ids(messages))

    async def count_text_tokens(self, text: str) -> int:
        return len(self._ready_tokenizer().tokenize(text))

    def abort(self, request_id: str) -> None:
        event = self._aborts.get(request_id)
        if event is not None:
            event.set()

    async def generate(self, request: EngineRequest) -> AsyncIterator[EngineDelta]:
        prompt_ids = self._prompt_ids(request.messages)
        grammar = self._grammar(request.json_schema) if request.json_schema else None
        llama = await self._pool.get()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[EngineDelta | BaseException] = asyncio.Queue()
        abort = threading.Event()
        self._aborts[request.request_id] = abort

        def emit(item: EngineDelta | BaseException) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def decode() -> None:
            try:
                self._decode(llama, request, prompt_ids, grammar, abort, emit)
            except BaseException as exc:  # handed to the consumer, which re-raises it
                emit(exc)
            finally:
                # The context goes back to the pool only when its thread is done with it.
                loop.call_soon_threadsafe(self._pool.put_nowait, llama)

        worker = threading.Thread(target=decode, name=f"llama-{request.request_id[:8]}", daemon=True)
        worker.start()
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            # Reached on normal end, on error and when the caller closes the stream (cancel).
            abort.set()
            self._aborts.pop(request.request_id, None)

    def _grammar(self, json_schema: str) -> Any:
        from llama_cpp import LlamaGrammar

        parse_json_schema(json_schema)  # the same refusal of malformed schemas as every engine
        try:
            return LlamaGrammar.from_json_schema(json_schema, verbose=False)
        except (ValueError, TypeError, KeyError, RuntimeError) as exc:
            raise InvalidArgument(f"not a usable JSON schema: {exc}", field="json_schema") from None

    def _decode(
        self,
        llama: Any,
        request: EngineRequest,
        prompt_ids: list[int],
        grammar: Any,
        abort: threading.Event,
        emit: Any,
    ) -> None:
        from llama_cpp import llama_vocab_is_eog

        sampling = request.sampling
        temperature = 0.7 if sampling.temperature is None else sampling.temperature
        llama.set_seed(sampling.seed if sampling.seed is not None else random.getrandbits(31))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        room = self._info.context_window - len(prompt_ids)
        limit = min(request.max_tokens, room)
        produced = 0
        vocab = llama._model.vocab
        for token in llama.generate(
            prompt_ids,
            temp=temperature,
            top_p=1.0 if sampling.top_p is None else sampling.top_p,
            top_k=sampling.top_k,
            min_p=0.0,
            repeat_penalty=self._repeat_penalty,
            reset=True,
            grammar=grammar,
        ):
            if abort.is_set():
                emit(EngineDelta("", (), FinishReason.CANCELLED))
                return
            # End-of-generation covers EOS and template end markers such as <|im_end|>.
            if llama_vocab_is_eog(vocab, token):
                emit(EngineDelta(decoder.decode(b"", final=True), (), FinishReason.STOP))
                return
            produced += 1
            text = decoder.decode(llama.detokenize([token], special=False))
            done = produced >= limit
            emit(EngineDelta(text, (token,), FinishReason.LENGTH if done else None))
            if done:
                return
        emit(EngineDelta("", (), FinishReason.STOP))

    async def stop(self) -> None:
        """Aborts running requests and frees the contexts once no thread uses them."""
        for event in list(self._aborts.values()):
            event.set()
        # Freeing a context under a decoding thread would crash the process: take each one back first.
        held = []
        for _ in range(len(self._llamas)):
            held.append(await asyncio.wait_for(self._pool.get(), timeout=30))
        for llama in held:
            llama.close()
        self._llamas.clear()
        self._tokenizer = None
