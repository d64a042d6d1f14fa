"""Where a causal LM keeps its blocks, for any decoder whose blocks are a list of modules.

The method needs two parts of a Hugging Face ``*ForCausalLM``: the decoder stack that runs the
blocks without the LM head (:func:`decoder_stack`), and the list of blocks whose input is the
residual stream (:func:`decoder_blocks`; streams and blocks: :mod:`residual_response.streams`).

Known families are found by their attribute path (:data:`BLOCK_PATHS`, each covered by a unit
test on a tiny random model); any other decoder is found by looking: the ``ModuleList`` of
``num_hidden_layers`` modules of one class nearest the top of the model. A model without such a
list is refused with one line that names its class and what is missing
(:class:`UnsupportedModelError`).
"""

from __future__ import annotations

import torch

from ..errors import InputError

__all__ = ["BLOCK_PATHS", "UnsupportedModelError", "check_blocks", "config_blocks", "decoder_blocks", "decoder_stack",
           "n_blocks"]

#: ``config.model_type`` -> attribute path of the block list from the ``*ForCausalLM`` module
BLOCK_PATHS = {
    "gpt2": "transformer.h",
    "llama": "model.layers",
    "gemma": "model.layers",
    "gemma2": "model.layers",
    "gemma3_text": "model.layers",
    "qwen2": "model.layers",
    "qwen3": "model.layers",
    "mistral": "model.layers",
    "phi3": "model.layers",
    "gpt_neox": "gpt_neox.layers",
    "opt": "model.decoder.layers",
    "falcon": "transformer.h",
}
#: config fields that give the number of blocks, by architecture
_N_BLOCK_FIELDS = ("num_hidden_layers", "n_layer", "num_layers")
#: where the path of a block list found by looking is kept on the model (found once)
_FOUND = "_residual_response_block_path"


class UnsupportedModelError(InputError):
    """A model whose blocks (or whose attention, for the measurements that need it) cannot be
    found; the message names the class and what is missing."""


def n_blocks(config) -> int | None:
    """The number of blocks a config declares, or ``None`` when it names none."""
    for name in _N_BLOCK_FIELDS:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def config_blocks(config, name: str, default: int | None = None) -> int:
    """The number of blocks a config declares (the first of :data:`_N_BLOCK_FIELDS` it has; ``default``
    when it has none), refused by :func:`check_blocks` below 1. A config of 0 blocks says 0 here,
    where :func:`n_blocks` would fall through to the next field."""
    for field in _N_BLOCK_FIELDS:
        value = getattr(config, field, None)
        if isinstance(value, int):
            return check_blocks(value, name)
    if default is None:
        raise InputError(f"model {name}: its config names no number of blocks ({', '.join(_N_BLOCK_FIELDS)})")
    return check_blocks(int(default), name)


def check_blocks(n: int, name: str) -> int:
    """``n`` blocks, refused (:class:`InputError`, one sentence) below 1: the method needs a block after
    the perturbed stream."""
    if n < 1:
        raise InputError(f"model {name} has {n} transformer blocks; the response needs at least one block after "
                         f"the perturbed stream")
    return n


def decoder_stack(model: torch.nn.Module) -> torch.nn.Module:
    """The decoder stack of a ``*ForCausalLM``: the model without its LM head, the part that ends
    with the final norm (Hugging Face's ``base_model``)."""
    stack = getattr(model, "base_model", None)
    if isinstance(stack, torch.nn.Module) and stack is not model:
        return stack
    for attr in ("model", "transformer", "gpt_neox"):
        stack = getattr(model, attr, None)
        if isinstance(stack, torch.nn.Module):
            return stack
    raise UnsupportedModelError(f"unsupported model class {type(model).__name__}: no decoder stack without the LM "
                                f"head (no base_model, .model or .transformer)")


def _at(module: torch.nn.Module, path: str):
    for attr in path.split("."):
        module = getattr(module, attr, None)
    return module


def decoder_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The list of transformer blocks of a causal LM, in order (see the module docstring)."""
    path = BLOCK_PATHS.get(getattr(model.config, "model_type", None)) or getattr(model, _FOUND, None)
    if path is not None:
        blocks = _at(model, path)
        if isinstance(blocks, torch.nn.ModuleList):
            return blocks
    path = _find_block_path(model)
    object.__setattr__(model, _FOUND, path)  # not a module: kept out of the model's state
    return _at(model, path)


def _find_block_path(model: torch.nn.Module) -> str:
    """The path of the ``ModuleList`` of ``n_blocks`` modules of one class nearest the top of ``model``."""
    n = n_blocks(model.config)
    found = [name for name, m in model.named_modules() if isinstance(m, torch.nn.ModuleList) and len(m) > 0
             and (n is None or len(m) == n) and len({type(b) for b in m}) == 1]
    if not found:
        wanted = f"{n} blocks" if n is not None else "blocks (the config names no num_hidden_layers)"
        raise UnsupportedModelError(f"unsupported model class {type(model).__name__}: no block list found "
                                    f"(no ModuleList of {wanted} of one class)")
    return min(found, key=lambda name: (name.count("."), name))
