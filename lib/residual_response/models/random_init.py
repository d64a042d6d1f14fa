"""Random-initialised models of each architecture: negative controls and the unit tests' models."""

from __future__ import annotations

import torch

from ..errors import InputError
from .loaded import LoadedModel, prepare_model, resolve_device, resolve_dtype, wrap_model
from .spec import ModelSpec

__all__ = ["RANDOM_CONTEXT", "RANDOM_VOCAB", "build_random_model"]

RANDOM_VOCAB = 512
RANDOM_CONTEXT = 512


def _random_config(family: str, n_layers: int = 4, d_model: int = 64):
    """Small configs of each supported architecture (default 4 blocks, d_model 64; heads of width 16).

    Why the size arguments: a null that holds at one size may not at another, so the null
    calibration (:mod:`.null`) builds each architecture at two sizes.
    """
    from transformers import Gemma2Config, Gemma3TextConfig, GPT2Config, LlamaConfig

    for name, value, low in (("n_layers", n_layers, 1), ("d_model", d_model, 32)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(f"{name} must be an int >= {low}, got {value!r}")
    if d_model % 32:
        raise InputError(f"d_model must be a multiple of 32 (heads of width 16, 2 heads per key-value head), got {d_model}")
    heads, kv = d_model // 16, d_model // 32
    common = dict(vocab_size=RANDOM_VOCAB, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if family == "gpt2":
        return GPT2Config(n_layer=n_layers, n_embd=d_model, n_head=heads, n_positions=RANDOM_CONTEXT, resid_pdrop=0.0,
                          embd_pdrop=0.0, attn_pdrop=0.0, **common)
    if family == "llama":
        return LlamaConfig(num_hidden_layers=n_layers, hidden_size=d_model, intermediate_size=2 * d_model,
                           num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=RANDOM_CONTEXT,
                           **common)
    if family == "gemma2":
        return Gemma2Config(num_hidden_layers=n_layers, hidden_size=d_model, intermediate_size=2 * d_model,
                            num_attention_heads=heads, num_key_value_heads=kv, head_dim=16,
                            max_position_embeddings=RANDOM_CONTEXT, sliding_window=32, query_pre_attn_scalar=16,
                            **common)
    if family == "gemma3":
        # Gemma 3's pattern: local (sliding) attention, every fourth block global
        types = ["full_attention" if (b + 1) % 4 == 0 else "sliding_attention" for b in range(n_layers)]
        return Gemma3TextConfig(num_hidden_layers=n_layers, hidden_size=d_model, intermediate_size=2 * d_model,
                                num_attention_heads=heads, num_key_value_heads=kv, head_dim=16,
                                max_position_embeddings=RANDOM_CONTEXT, sliding_window=32, query_pre_attn_scalar=16,
                                layer_types=types, **common)
    raise InputError(f"no random config for family {family!r}")


def build_random_model(family: str, *, seed: int = 0, device="cpu", dtype="float32", config=None,
                       n_layers: int = 4, d_model: int = 64) -> LoadedModel:
    """A seeded random-initialised model of one architecture (negative control, unit tests).

    Args:
        family: ``gpt2``, ``llama``, ``gemma2`` or ``gemma3``.
        seed: initialisation seed; the same seed gives the same weights.
        config: optional Hugging Face config overriding the small default one.
        n_layers, d_model: size of the default config (blocks; width, a multiple of 32).
    """
    from transformers import AutoModelForCausalLM

    cfg = config if config is not None else _random_config(family, n_layers, d_model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg)
    model = prepare_model(model, resolve_device(device), resolve_dtype(dtype))
    return wrap_model(f"random-{family}", model, None, source=f"random init, seed {seed}")


def _load_random(spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    return build_random_model(spec.family, seed=spec.extra.get("seed", 0), device=device, dtype=dtype)
