"""A GGUF model's tokenizer and chat template, for exact token counts without an engine.

Loading with ``vocab_only`` reads the vocabulary and metadata, not the weights, so any
service can count tokens exactly as the serving model does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aigc_common.types import ChatMessage

# Used when a GGUF carries no chat template: ChatML, which SmolLM2 and many small models use.
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class GgufChatTokenizer:
    """Applies the GGUF's chat template and tokenizes with its vocabulary."""

    def __init__(self, llama: Any) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._llama = llama
        template = llama.metadata.get("tokenizer.chat_template") or CHATML_TEMPLATE
        self.template = str(template)
        eos = llama.detokenize([llama.token_eos()], special=True).decode("utf-8", "replace")
        bos = llama.detokenize([llama.token_bos()], special=True).decode("utf-8", "replace")
        self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)

    @classmethod
    def from_path(cls, path: Path) -> GgufChatTokenizer:
        """Loads only the vocabulary and metadata of a GGUF file."""
        from llama_cpp import Llama

        return cls(Llama(model_path=str(path), vocab_only=True, verbose=False))

    def apply_chat_template(self, messages: Sequence[ChatMessage]) -> str:
        chat: Any = [{"role": str(m.role), "content": m.content} for m in messages]
        result = self._formatter(messages=chat)
        return str(result.prompt)

    def tokenize(self, text: str) -> list[int]:
        """Token ids of text that may carry the chat template's special tokens."""
        return list(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def count_messages(self, messages: Sequence[ChatMessage]) -> int:
        return len(self.tokenize(self.apply_chat_template(messages)))
