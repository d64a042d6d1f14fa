"""Keeping float64 models in float64 everywhere the perturbation flows.

Hugging Face's Llama and Gemma code computes RMSNorm in float32 and its eager attention takes the
softmax in float32, whatever the model's dtype. In a float64 model those steps round the
perturbed stream to float32 precision (~1e-7 relative), so the response floor would not move
below float32's. For float64 models we therefore (a) compute RMSNorm in the input's dtype and
(b) register an eager attention, ``"rr_eager"``, whose softmax stays in the input's dtype.
Nothing changes for float32 or bfloat16 models.
"""

from __future__ import annotations

import types

import torch

__all__ = ["PRECISE_EAGER", "keep_norms_in_input_dtype", "register_precise_eager"]

PRECISE_EAGER = "rr_eager"


def _rmsnorm_in_input_dtype(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    gemma_style = "Gemma" in type(module).__name__  # Gemma scales by (1 + w), Llama by w
    eps = getattr(module, "variance_epsilon", None) or getattr(module, "eps")
    normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return normed * ((1.0 + module.weight) if gemma_style else module.weight)


def keep_norms_in_input_dtype(model: torch.nn.Module) -> int:
    """Make every ``*RMSNorm`` of ``model`` compute in its input dtype; returns how many."""
    count = 0
    for module in model.modules():
        if type(module).__name__.endswith("RMSNorm") and hasattr(module, "weight"):
            module.forward = types.MethodType(_rmsnorm_in_input_dtype, module)
            count += 1
    return count


def _precise_eager_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                             softcap=None, **kwargs):
    """Eager attention with the softmax in the query's dtype.

    Shapes: query ``[B, H, n, hd]``, key/value ``[B, H_kv, m, hd]``, additive mask
    ``[B, 1, n, >=m]``; returns ``([B, n, H, hd], [B, H, n, m])``.
    """
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    groups = query.shape[1] // key.shape[1]
    key = key.repeat_interleave(groups, dim=1)
    value = value.repeat_interleave(groups, dim=1)
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # [B, H, n, m]
    if softcap is not None:
        weights = torch.tanh(weights / softcap) * softcap
    if attention_mask is not None:
        mask = attention_mask[:, :, :, : key.shape[-2]]
        if mask.dtype == torch.bool:
            weights = weights.masked_fill(~mask, torch.finfo(weights.dtype).min)
        else:
            weights = weights + mask
    weights = torch.softmax(weights, dim=-1)
    weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
    out = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return out, weights


_registered = False


def register_precise_eager() -> str:
    """Register ``"rr_eager"`` with transformers (idempotent) and return its name."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

        AttentionInterface.register(PRECISE_EAGER, _precise_eager_attention)
        ALL_MASK_ATTENTION_FUNCTIONS.register(PRECISE_EAGER, eager_mask)
        _registered = True
    return PRECISE_EAGER
