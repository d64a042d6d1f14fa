"""The loaded model: :class:`LoadedModel`, its block widths, its dtype and device, and how a Hugging
Face causal LM becomes one (:func:`wrap_model`, :func:`prepare_model`).

Every analysis in this package takes a :class:`LoadedModel`, a thin record around a Hugging Face
causal LM that knows what the method needs: the list of blocks whose inputs are the residual
stream, the BOS token, the ordinary (non-special) vocabulary and the context length.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ..errors import InputError
from .blocks import check_blocks, decoder_blocks, decoder_stack

__all__ = [
    "DTYPES",
    "ROUNDING_FLOOR",
    "BlockDims",
    "LoadedModel",
    "LowPrecisionWarning",
    "ModelUnavailableError",
    "block_dims",
    "decoder_blocks",
    "decoder_stack",
    "ordinary_ids_from_tokenizer",
    "prepare_model",
    "quiet_hf_progress",
    "resolve_device",
    "resolve_dtype",
    "wrap_model",
]

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


#: Relative rounding step of each dtype, roughly: below ``eps`` of about this size a finite
#: perturbation drowns in rounding (the lower end of the universal regime).
ROUNDING_FLOOR = {torch.float64: 1e-15, torch.float32: 1e-6, torch.bfloat16: 1e-2, torch.float16: 1e-3}


@contextlib.contextmanager
def quiet_hf_progress():
    """Silence transformers' per-load progress bars ("Loading weights") for a ``with`` block, then restore.

    Why: a page or a test loads models dozens of times and each load would print a bar; the one
    slow step that deserves a bar (de-quantising a GGUF file, once) runs outside this block.
    """
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


class LowPrecisionWarning(UserWarning):
    """A 16-bit model: its rounding floor is close to the strengths the book uses."""


class ModelUnavailableError(RuntimeError):
    """The weights of a model cannot be obtained on this machine (no hub access, no local copy)."""



@dataclass
class LoadedModel:
    """A causal LM ready for residual-stream perturbation.

    Attributes:
        name: registry name or path it was loaded from.
        family: architecture family (``gpt2``, ``llama``, ``gemma2``, ``gemma3``, ...).
        model: the Hugging Face ``*ForCausalLM`` module, in eval mode.
        tokenizer: its tokenizer, or ``None`` for random-initialised and toy models.
        n_layers: number of blocks ``L``; residual streams are indexed ``0..L`` (:mod:`.streams`).
        d_model: width ``d`` of the residual stream.
        vocab_size: number of token ids.
        bos_token_id: the token every sequence starts with, or ``None`` if the model has none.
        max_length: longest sequence the model accepts.
        ordinary_token_ids: ``[n_ordinary]`` int64 ids that random sequences may draw from
            (no special, control or unused tokens).
    """

    name: str
    family: str
    model: torch.nn.Module
    tokenizer: object | None
    n_layers: int
    d_model: int
    vocab_size: int
    bos_token_id: int | None
    max_length: int
    ordinary_token_ids: torch.Tensor
    source: str = ""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def config(self):
        return self.model.config

    @property
    def n_heads(self) -> int:
        cfg = self.model.config
        return int(getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head"))

    @property
    def base_model(self) -> torch.nn.Module:
        """The decoder stack without the LM head (``model.model`` or ``model.transformer``)."""
        return decoder_stack(self.model)

    @property
    def blocks(self) -> torch.nn.ModuleList:
        """The ``L`` blocks, in order (stream and block indices: :mod:`.streams`)."""
        return decoder_blocks(self.model)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "family": self.family,
            "layers": self.n_layers,
            "d_model": self.d_model,
            "vocab_size": self.vocab_size,
            "bos_token_id": self.bos_token_id,
            "dtype": str(self.dtype).replace("torch.", ""),
            "device": str(self.device),
        }


@dataclass(frozen=True)
class BlockDims:
    """Widths of one transformer block, read from a model's config.

    Why one reader: configs name these differently (``n_inner`` in GPT-2, ``intermediate_size``
    elsewhere; ``head_dim`` and ``num_key_value_heads`` only where they differ from the default),
    and the memory budget, the batch planner and the FLOP counts all need the same numbers.
    """

    d_model: int
    n_heads: int
    head_dim: int
    n_kv_heads: int
    d_ffn: int


#: config fields that name the MLP's width, by architecture (GPT-2 ``n_inner``, OPT ``ffn_dim``, Falcon ``ffn_hidden_size``)
_FFN_FIELDS = ("intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size")


def _kv_heads(cfg, heads: int) -> int:
    """Key-value heads: ``num_key_value_heads`` (grouped-query attention), Falcon's one head of
    ``multi_query`` (or its ``num_kv_heads`` in the new decoder architecture), else one per head."""
    if getattr(cfg, "model_type", None) == "falcon" and not getattr(cfg, "new_decoder_architecture", False):
        return 1 if getattr(cfg, "multi_query", False) else heads
    return int(getattr(cfg, "num_key_value_heads", None) or getattr(cfg, "num_kv_heads", None) or heads)


def block_dims(lm: LoadedModel) -> BlockDims:
    """:class:`BlockDims` of ``lm`` (defaults where the config is silent: ``d/heads``, ``heads``, ``4d``)."""
    cfg = lm.config
    d, heads = lm.d_model, lm.n_heads
    return BlockDims(
        d_model=d,
        n_heads=heads,
        head_dim=int(getattr(cfg, "head_dim", None) or d // heads),
        n_kv_heads=_kv_heads(cfg, heads),
        d_ffn=int(next((v for v in (getattr(cfg, f, None) for f in _FFN_FIELDS) if v), 4 * d)),
    )


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Map ``"float32"`` etc. to a torch dtype; raise ``ValueError`` naming the allowed values."""
    if isinstance(dtype, torch.dtype):
        if dtype in DTYPES.values():
            return dtype
        raise InputError(f"unsupported dtype {dtype}; allowed: {', '.join(DTYPES)}")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise InputError(f"unsupported dtype {dtype!r}; allowed: {', '.join(DTYPES)}")
    return DTYPES[dtype]


def resolve_device(device: str | torch.device) -> torch.device:
    """Parse a device string and check that it exists here."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"invalid device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'mps'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available on this machine; use 'cpu'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {device!r} requested but MPS is not available on this machine; use 'cpu'")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"unsupported device {device!r}; use 'cpu', 'cuda' or 'mps'")
    return dev


# --- ordinary vocabulary ----------------------------------------------------------------------


def ordinary_ids_from_tokenizer(tokenizer, vocab_size: int) -> torch.Tensor:
    """Token ids that are neither special nor control/unused/byte-fallback tokens.

    Random sequences must be made of ordinary text tokens: special tokens (BOS, EOS, chat
    markers, ``<unusedN>``, ``<0xAB>`` byte tokens) carry behaviour of their own that would mix
    into the response.
    """
    special = set(int(i) for i in getattr(tokenizer, "all_special_ids", []) if i is not None)
    added = set()
    with contextlib.suppress(Exception):
        added = set(int(i) for i in tokenizer.get_added_vocab().values())
    vocab = tokenizer.get_vocab()
    keep = []
    for tok, idx in vocab.items():
        idx = int(idx)
        if idx >= vocab_size or idx in special or idx in added:
            continue
        if tok.startswith("<") and tok.endswith(">"):
            continue  # <unused12>, <0x0A>, <start_of_image>, <|im_end|> ...
        if tok.startswith("[") and tok.endswith("]") and len(tok) > 2:
            continue  # [multimodal], [@BOS@] ...
        if not tok.strip() or "\ufffd" in tok:
            continue
        keep.append(idx)
    if not keep:
        raise InputError("tokenizer has no ordinary tokens")
    return torch.tensor(sorted(keep), dtype=torch.long)


# --- building LoadedModel ---------------------------------------------------------------------

_FAMILIES = {
    "gpt2": "gpt2",
    "llama": "llama",
    "gemma2": "gemma2",
    "gemma3_text": "gemma3",
    "gemma3": "gemma3",
    "gemma": "gemma",
    "mistral": "mistral",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
    "gpt_neox": "gpt_neox",
}


def wrap_model(
    name: str,
    model: torch.nn.Module,
    tokenizer=None,
    *,
    bos_token_id: int | None = None,
    ordinary_token_ids: torch.Tensor | None = None,
    source: str = "",
) -> LoadedModel:
    """Wrap a Hugging Face causal LM as a :class:`LoadedModel` (eval mode, no grad needed)."""
    model.eval()
    cfg = model.config
    family = _FAMILIES.get(cfg.model_type, cfg.model_type)
    # found by path or by looking, refused in one line if there is none; and at least one (a checkpoint of 0)
    n_layers = check_blocks(len(decoder_blocks(model)), name)
    d_model = int(getattr(cfg, "hidden_size", None) or cfg.n_embd)
    vocab_size = int(cfg.vocab_size)
    if bos_token_id is None:
        bos_token_id = getattr(tokenizer, "bos_token_id", None) if tokenizer is not None else None
        if bos_token_id is None:
            bos_token_id = getattr(cfg, "bos_token_id", None)
    max_length = int(
        getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None) or 2048
    )
    if ordinary_token_ids is None:
        if tokenizer is not None:
            ordinary_token_ids = ordinary_ids_from_tokenizer(tokenizer, vocab_size)
        else:
            ids = torch.arange(vocab_size)
            specials = {i for i in (bos_token_id, getattr(cfg, "eos_token_id", None), getattr(cfg, "pad_token_id", None)) if isinstance(i, int)}
            ordinary_token_ids = ids[~torch.isin(ids, torch.tensor(sorted(specials) or [-1]))]
    return LoadedModel(
        name=name,
        family=family,
        model=model,
        tokenizer=tokenizer,
        n_layers=n_layers,
        d_model=d_model,
        vocab_size=vocab_size,
        bos_token_id=None if bos_token_id is None else int(bos_token_id),
        max_length=max_length,
        ordinary_token_ids=ordinary_token_ids,
        source=source,
    )


def prepare_model(model: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Ready a freshly loaded Hugging Face model for perturbation: on ``device`` in ``dtype``, no
    gradients, eval mode, and in float64 also the norms and eager attention kept in float64.

    Why one function: every loader (registry entries, folders, hub ids, the toy model) must hand
    :func:`wrap_model` a model prepared the same way, or float64 runs would silently round some
    operations in float32 (:mod:`.precision`). ``device`` and ``dtype`` are already resolved
    (:func:`resolve_device`, :func:`resolve_dtype`).
    """
    model = model.to(device=device, dtype=dtype)
    model.requires_grad_(False)
    if dtype == torch.float64:
        from ..precision import keep_norms_in_input_dtype, register_precise_eager

        keep_norms_in_input_dtype(model)
        if getattr(model.config, "_attn_implementation", None) == "eager":
            model.set_attn_implementation(register_precise_eager())
    return model.eval()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
