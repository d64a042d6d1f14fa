"""Reading and writing the residual stream with hooks on the blocks; the package's stream vocabulary.

Streams and blocks, as every module of this package counts them (other docstrings point here):

* a model has ``L`` blocks ``b = 0..L-1`` and ``L + 1`` residual streams ``l = 0..L``;
* stream ``l`` enters block ``l``: ``h[0]`` is the embedding output exactly as the model feeds
  it to block 0 (Gemma's sqrt(d) scaling included);
* block ``b`` reads stream ``b`` and writes stream ``b + 1`` (so what a head of block ``b`` adds
  is first seen at stream ``b + 1``);
* stream ``L`` is the output of the last block, *before* the final norm.

The same streams by TransformerLens's hook names: :func:`stream_name`. Hugging Face's
``output_hidden_states`` applies the final norm to its last entry for Llama and Gemma, so we
never use it: every stream here is read by a hook on a block.

Hooks are global state on the module; they are only ever added inside a context manager that
removes them in ``finally``.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch

from .checks import InputError
from .models import LoadedModel

__all__ = [
    "stream_name",
    "clean_streams",
    "hooked",
    "skip_blocks",
    "block_hidden_input",
    "replace_block_input",
    "StopForward",
]


def stream_name(l: int, n_layers: int) -> str:
    """TransformerLens's hook name of stream ``l`` in a model of ``n_layers`` blocks (module docstring).

    ``"blocks.{l}.hook_resid_pre"`` for ``l < L`` (the input of block ``l``) and
    ``"blocks.{L-1}.hook_resid_post"`` for ``l = L`` (the output of the last block, before the
    final norm). Why: to say which stream a number belongs to in the words of the tools a reader
    already knows.

    Raises:
        ValueError: ``n_layers`` is not an int >= 1, or ``l`` is not an int in ``0..L``.
    """
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
        raise InputError(f"n_layers must be an int >= 1, got {n_layers!r}")
    if isinstance(l, bool) or not isinstance(l, int) or not 0 <= l <= n_layers:
        raise InputError(f"stream l={l!r} out of range; allowed 0..{n_layers}")
    if l < n_layers:
        return f"blocks.{l}.hook_resid_pre"
    return f"blocks.{n_layers - 1}.hook_resid_post"


class StopForward(Exception):
    """Raised by a hook once every stream that is needed has been read (skips the rest)."""


def block_hidden_input(args: tuple, kwargs: dict) -> torch.Tensor:
    """The ``hidden_states`` argument of a block call (positional or keyword)."""
    if args:
        return args[0]
    return kwargs["hidden_states"]


def replace_block_input(args: tuple, kwargs: dict, new: torch.Tensor) -> tuple[tuple, dict]:
    """``(args, kwargs)`` of a block call with its ``hidden_states`` replaced by ``new``: what a
    forward pre-hook returns to change the stream a block reads."""
    if args:
        return (new, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": new}


def block_output(output) -> torch.Tensor:
    """Blocks return a tensor (transformers >= 5) or a tuple whose first entry is the stream."""
    return output[0] if isinstance(output, (tuple, list)) else output


@contextlib.contextmanager
def hooked(hooks: Sequence[tuple[torch.nn.Module, str, Callable]]) -> Iterator[None]:
    """Register ``(module, kind, fn)`` hooks for the duration of a ``with`` block.

    ``kind`` is ``"pre"`` (forward pre-hook with kwargs) or ``"post"`` (forward hook).
    """
    handles = []
    try:
        for module, kind, fn in hooks:
            if kind == "pre":
                handles.append(module.register_forward_pre_hook(fn, with_kwargs=True))
            elif kind == "post":
                handles.append(module.register_forward_hook(fn))
            else:
                raise InputError(f"hook kind must be 'pre' or 'post', got {kind!r}")
        yield
    finally:
        for handle in handles:
            handle.remove()


class _PassThrough(torch.nn.Module):
    """Stands in for a block that need not run: returns its input stream unchanged, in the form the
    block returns it (the stream itself, or a tuple whose first entry is the stream)."""

    def __init__(self, block: torch.nn.Module, as_tuple: bool):
        super().__init__()
        self.as_tuple = as_tuple
        # keep attributes that model code reads from blocks (Gemma's attention_type, ...)
        for attr in ("attention_type", "layer_idx", "is_sliding"):
            if hasattr(block, attr):
                setattr(self, attr, getattr(block, attr))

    def forward(self, hidden_states=None, *args, **kwargs):
        return (hidden_states, None) if self.as_tuple else hidden_states


#: where :func:`blocks_return_tuples` keeps its answer on the model (found once)
_TUPLES = "_residual_response_blocks_return_tuples"


def blocks_return_tuples(lm: LoadedModel) -> bool:
    """Whether ``lm``'s blocks return a tuple (older modeling code, Falcon's) or the stream itself.

    Why it matters: a decoder that reads ``outputs[0]`` from a block would take the first batch row
    of a bare tensor, so a skipped block must answer in the same form. Read once per model, from a
    forward pass of two tokens stopped after block 0, and kept on the model.
    """
    found = getattr(lm.model, _TUPLES, None)
    if found is None:
        seen = {}

        def post(module, args, output):
            seen["tuple"] = isinstance(output, (tuple, list))
            raise StopForward

        ids = torch.zeros(1, 2, dtype=torch.long, device=lm.device)
        with hooked([(lm.blocks[0], "post", post)]), torch.no_grad(), contextlib.suppress(StopForward):
            lm.base_model(input_ids=ids, use_cache=False)
        found = seen["tuple"]
        object.__setattr__(lm.model, _TUPLES, found)  # not a module: kept out of the model's state
    return found


@contextlib.contextmanager
def skip_blocks(lm: LoadedModel, below: int) -> Iterator[None]:
    """Replace blocks ``0..below-1`` by pass-throughs for the duration of a ``with`` block.

    Why: a perturbation applied at layer ``l0`` only needs blocks ``l0..L-1``; the stream
    entering block ``l0`` is then overwritten by a pre-hook, so the earlier blocks are waste.
    """
    blocks = lm.blocks
    saved = [blocks[i] for i in range(below)]
    as_tuple = below > 0 and blocks_return_tuples(lm)
    try:
        for i in range(below):
            blocks[i] = _PassThrough(saved[i], as_tuple)
        yield
    finally:
        for i, block in enumerate(saved):
            blocks[i] = block


@torch.no_grad()
def clean_streams(lm: LoadedModel, tokens: torch.Tensor, layers: Sequence[int] | None = None) -> torch.Tensor:
    """Residual streams of an unperturbed forward pass.

    Args:
        tokens: ``[N]`` token ids.
        layers: which streams to return (default all ``0..L``).

    Returns:
        ``[n_layers_read, N, d]`` tensor, ``out[i] = h[layers[i]]``.
    """
    L = lm.n_layers
    layers = list(range(L + 1)) if layers is None else [int(x) for x in layers]
    for l in layers:
        if not 0 <= l <= L:
            raise InputError(f"layer {l} out of range; allowed 0..{L}")
    want = set(layers)
    got: dict[int, torch.Tensor] = {}
    last = max(layers)

    def make_pre(l):
        def pre(module, args, kwargs):
            if l in want:
                got[l] = block_hidden_input(args, kwargs)[0].detach().clone()
            if l == last:
                raise StopForward
        return pre

    def post(module, args, output):
        got[L] = block_output(output)[0].detach().clone()

    hooks = [(lm.blocks[l], "pre", make_pre(l)) for l in range(L)]
    hooks.append((lm.blocks[L - 1], "post", post))
    with hooked(hooks), contextlib.suppress(StopForward):  # the decoder stack only: no LM head
        lm.base_model(input_ids=tokens.to(lm.device).unsqueeze(0), use_cache=False)
    return torch.stack([got[l] for l in layers])
