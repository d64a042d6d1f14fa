"""Head ablation: remove chosen attention heads' contributions for the duration of a ``with`` block.

Every supported attention layer ends with one output projection that maps the concatenated head
outputs ``z = [z_0 | z_1 | ... | z_{H-1}]`` (``H`` slices of width ``d_head``) to the residual
stream: ``o_proj`` for Llama / Gemma 2 / Gemma 3 (and Mistral, Qwen), ``attn.c_proj`` for GPT-2,
``attention.dense`` for GPT-NeoX. Head ``h``'s contribution is its slice ``z_h``; a forward
pre-hook on the projection overwrites that slice:

- ``mode="mean"`` (default): ``z_h`` becomes its mean over positions and reference sequences.
  Why mean and not zero: a head's output has a typical offset that later blocks and norms are
  used to; zeroing moves the stream off its usual distribution and measures that shock as well
  as the missing computation. Mean ablation removes only the information the head carries about
  this particular sequence.
- ``mode="zero"``: ``z_h = 0`` (the classic knock-out; no reference needed).

The bias of the projection (GPT-2) is shared by all heads and left in place.

Heads are named ``(block, head)``: ``block`` ``b`` in ``0..L-1`` is the transformer block whose
attention holds the head (it writes into stream ``b + 1``). Hooks are global state on the
modules: they are only added inside :func:`ablate_heads` and removed in its ``finally``.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator, Sequence

import torch

from .checks import InputError, check_int, check_model, check_seed, keyword_alias, validate_layer
from .models import LoadedModel, UnsupportedModelError
from .sequences import make_sequence
from .streams import hooked

__all__ = [
    "ABLATION_MODES",
    "ablate_heads",
    "default_reference_tokens",
    "head_means",
    "head_output_projection",
    "random_heads",
    "validate_heads",
]

ABLATION_MODES = ("mean", "zero")
#: ``(attention module, output projection)`` names of a block, by family: Llama, Gemma, Qwen2, Mistral and
#: Phi-3 (``self_attn.o_proj``), GPT-2 (``attn.c_proj``), GPT-NeoX (``attention.dense``), OPT
#: (``self_attn.out_proj``), Falcon (``self_attention.dense``)
OUTPUT_PROJECTIONS = (("self_attn", "o_proj"), ("attn", "c_proj"), ("attention", "dense"), ("self_attn", "out_proj"),
                      ("self_attention", "dense"))


@keyword_alias(layer="block")
def head_output_projection(lm: LoadedModel, block: int) -> torch.nn.Module:
    """The output projection of block ``block``'s attention, whose input holds the per-head outputs.

    Why: it is the one place where every head's contribution is a separate slice of one tensor,
    in all supported architectures, so ablation needs a single hook per block. (``layer=`` is
    accepted as an alias of ``block=``.)
    """
    validate_layer(lm, block, what="block index")
    module = lm.blocks[block]
    for attn_name, proj_name in OUTPUT_PROJECTIONS:
        attn = getattr(module, attn_name, None)
        proj = getattr(attn, proj_name, None) if attn is not None else None
        if isinstance(proj, torch.nn.Module):
            return proj
    names = ", ".join(f"{a}.{p}" for a, p in OUTPUT_PROJECTIONS)
    raise UnsupportedModelError(f"unsupported block class {type(module).__name__} in {lm.name}: no attention output "
                                f"projection found (looked for {names})")


def _proj_in_features(proj: torch.nn.Module) -> int:
    if isinstance(proj, torch.nn.Linear):
        return int(proj.in_features)
    nx = getattr(proj, "nx", None)  # transformers' Conv1D (GPT-2): weight [nx, nf]
    if nx is not None:
        return int(nx)
    raise TypeError(f"cannot read the input width of {type(proj).__name__}")


def _head_dim(lm: LoadedModel, block: int) -> int:
    width = _proj_in_features(head_output_projection(lm, block))
    if width % lm.n_heads:
        raise TypeError(f"{lm.name} block {block}: projection input width {width} is not a multiple of {lm.n_heads} heads")
    return width // lm.n_heads


def validate_heads(lm: LoadedModel, heads: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Check a list of ``(block, head)`` pairs and return it sorted, without repeats.

    Why: an index off by one would otherwise fail deep inside a hook (or, worse, silently ablate
    the wrong slice); the message names the bad value and the allowed range.
    """
    check_model(lm)
    if isinstance(heads, tuple) and len(heads) == 2 and all(isinstance(v, int) for v in heads):
        raise TypeError(f"heads must be a list of (block, head) pairs; got the single pair {heads!r}, write [{heads!r}]")
    try:
        items = list(heads)
    except TypeError as exc:
        raise TypeError(f"heads must be a list of (block, head) pairs, got {heads!r}") from exc
    out = set()
    for item in items:
        try:
            block, head = item
        except (TypeError, ValueError) as exc:
            raise TypeError(f"each head must be a (block, head) pair of ints, got {item!r}") from exc
        try:
            validate_layer(lm, block, what="block index")
            check_int(head, "head index")
        except (TypeError, ValueError) as exc:  # name the pair the bad index came in
            raise type(exc)(f"{exc} (in head {item!r})") from None
        if not 0 <= head < lm.n_heads:
            raise InputError(f"head index {head} out of range for {lm.name} (block {block}); allowed 0..{lm.n_heads - 1}")
        out.add((int(block), int(head)))
    return sorted(out)


def default_reference_tokens(lm: LoadedModel, T: int | None = None, n_seeds: int = 4) -> torch.Tensor:
    """Reference sequences for mean ablation: repeated and random sequences of one length.

    Why these: the experiments run on exactly these two kinds, so the mean a head is replaced by
    is its typical output on the inputs it is ablated on, not on some other distribution. Seeds
    start at 10000 so that they never coincide with the analysis seeds (0, 1, 2, ...).

    Returns:
        ``[2 * n_seeds, 2T (+1)]`` int64 token ids (``T = 20`` or what fits the context).
    """
    if T is None:
        T = min(20, (lm.max_length - 1) // 2)
    seqs = [make_sequence(lm, kind, T, 10_000 + i) for kind in ("repeated", "random") for i in range(n_seeds)]
    return torch.stack(seqs)


def _as_batches(reference_tokens) -> list[torch.Tensor]:
    """``[N]``, ``[B, N]`` or a list of ``[N_i]`` tensors -> list of ``[b, N]`` int64 batches."""
    if isinstance(reference_tokens, torch.Tensor):
        if reference_tokens.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"reference_tokens must hold integer token ids, got dtype {reference_tokens.dtype}")
        if reference_tokens.ndim == 1:
            return [reference_tokens.long().unsqueeze(0)]
        if reference_tokens.ndim == 2:
            return [reference_tokens.long()]
        raise InputError(f"reference_tokens must be [N] or [B, N], got shape {tuple(reference_tokens.shape)}")
    if isinstance(reference_tokens, (list, tuple)) and reference_tokens:
        out = []
        for t in reference_tokens:
            if not isinstance(t, torch.Tensor) or t.ndim != 1:
                raise TypeError("a list of reference_tokens must hold 1-D token-id tensors")
            out.append(t.long().unsqueeze(0))
        return out
    raise TypeError(f"reference_tokens must be a token-id tensor or a non-empty list of them, got {type(reference_tokens).__name__}")


@torch.no_grad()
@keyword_alias(layers="blocks")
def head_means(lm: LoadedModel, reference_tokens=None, blocks: Sequence[int] | None = None) -> torch.Tensor:
    """Mean output of every head over the positions of the reference sequences.

    Why: mean ablation replaces a head's output by this vector; computing it once lets many
    ablations (e.g. several random head sets) share it.

    The BOS position is left out of the mean: many heads park their attention on BOS, and the
    stream there is unlike any other position, so including it would bias the mean towards a
    position the ablation is never evaluated at.

    Args:
        reference_tokens: ``[N]``, ``[B, N]`` or a list of 1-D token tensors; default
            :func:`default_reference_tokens`.
        blocks: which blocks to compute (default all); the others are left zero. (``layers=`` is
            accepted as an alias.)

    Returns:
        ``[L, H, d_head]`` tensor on the model's device and dtype (computed in float64).
    """
    if reference_tokens is None:
        reference_tokens = default_reference_tokens(lm)
    batches = _as_batches(reference_tokens)
    blocks = list(range(lm.n_layers)) if blocks is None else sorted(
        {validate_layer(lm, b, what="block index") for b in blocks})
    H = lm.n_heads
    dh = {b: _head_dim(lm, b) for b in blocks}
    if len(set(dh.values())) > 1:
        raise TypeError(f"{lm.name}: head widths differ between blocks ({dh}); not supported")
    width = next(iter(dh.values())) if dh else 1
    sums = torch.zeros(lm.n_layers, H, width, dtype=torch.float64)
    count = {"n": 0}
    skip_first = {"v": 0}

    def make_pre(b):
        def pre(module, args, kwargs):
            z = args[0] if args else kwargs["input"]  # [B, N, H * d_head]
            z = z[:, skip_first["v"] :].double()
            sums[b] += z.reshape(-1, H, width).sum(dim=0).cpu()
        return pre

    hooks = [(head_output_projection(lm, b), "pre", make_pre(b)) for b in blocks]
    with hooked(hooks):
        for batch in batches:
            first_is_bos = lm.bos_token_id is not None and bool((batch[:, 0] == lm.bos_token_id).all())
            skip_first["v"] = 1 if first_is_bos and batch.shape[1] > 1 else 0
            count["n"] += batch.shape[0] * (batch.shape[1] - skip_first["v"])
            lm.base_model(input_ids=batch.to(lm.device), use_cache=False)
    return (sums / max(count["n"], 1)).to(device=lm.device, dtype=lm.dtype)


@contextlib.contextmanager
def ablate_heads(
    lm: LoadedModel,
    heads: Iterable[tuple[int, int]],
    mode: str = "mean",
    reference_tokens=None,
    *,
    means: torch.Tensor | None = None,
) -> Iterator[dict]:
    """Ablate attention heads inside a ``with`` block; the model is restored on exit.

    Why: if the heads named by attention patterns (or by the response) really carry the induction
    mechanism, removing them must lower the second-copy advantage and the response stripe, and
    removing as many random heads must not.

    Args:
        lm: the model.
        heads: ``[(block, head), ...]``; an empty list ablates nothing (the model runs unchanged).
        mode: ``"mean"`` (replace by the mean over reference positions) or ``"zero"``.
        reference_tokens: sequences for the mean (see :func:`head_means`); ignored for ``"zero"``
            and when ``means`` is given.
        means: precomputed :func:`head_means` ``[L, H, d_head]``, to share between ablations.

    Yields:
        ``{"heads": [...], "mode": mode, "means": [L, H, d_head] or None}``.

    Example::

        with ablate_heads(lm, [(1, 3), (1, 0)], mode="mean"):
            loss = repeat_loss(lm, 20, range(8))
    """
    if mode not in ABLATION_MODES:
        raise InputError(f"unknown ablation mode {mode!r}; allowed: {', '.join(ABLATION_MODES)}")
    heads = validate_heads(lm, heads)
    by_block: dict[int, list[int]] = {}
    for b, h in heads:
        by_block.setdefault(b, []).append(h)
    if mode == "mean" and heads:
        if means is None:
            means = head_means(lm, reference_tokens, blocks=list(by_block))
        else:
            expect = (lm.n_layers, lm.n_heads)
            if not isinstance(means, torch.Tensor) or means.ndim != 3 or tuple(means.shape[:2]) != expect:
                got = tuple(means.shape) if isinstance(means, torch.Tensor) else type(means).__name__
                raise InputError(f"means must be a [L, H, d_head] tensor with L, H = {expect}, got {got}")
        means = means.to(device=lm.device, dtype=lm.dtype)
    H = lm.n_heads

    def make_pre(b, hs):
        idx = torch.tensor(hs, device=lm.device)

        def pre(module, args, kwargs):
            key = None if args else "input"
            z = args[0] if args else kwargs[key]  # [B, N, H * d_head]
            z = z.clone()
            view = z.view(*z.shape[:-1], H, z.shape[-1] // H)  # [B, N, H, d_head]
            if mode == "zero":
                view[..., idx, :] = 0
            else:
                view[..., idx, :] = means[b, idx].to(z.dtype)
            if key is None:
                return (z, *args[1:]), kwargs
            return args, {**kwargs, key: z}
        return pre

    hooks = [(head_output_projection(lm, b), "pre", make_pre(b, hs)) for b, hs in sorted(by_block.items())]
    with hooked(hooks):
        yield {"heads": heads, "mode": mode, "means": means if mode == "mean" else None}


@keyword_alias(layers="blocks")
def random_heads(
    lm: LoadedModel,
    k: int,
    seed: int = 0,
    exclude: Iterable[tuple[int, int]] = (),
    blocks: Sequence[int] | None = None,
) -> list[tuple[int, int]]:
    """``k`` distinct heads drawn uniformly at random (seeded), sorted.

    Why: the control for an ablation of named heads is an ablation of as many random heads; a
    drop that random heads also cause says nothing about the named ones.

    Args:
        k: number of heads.
        seed: the same seed gives the same heads.
        exclude: heads never drawn (typically the named heads themselves).
        blocks: draw only from these blocks (e.g. the blocks of the named heads, to control for
            depth); default all. (``layers=`` is accepted as an alias.)
    """
    seed = check_seed(seed)
    excluded = set(validate_heads(lm, exclude))
    if blocks is None:
        blocks = range(lm.n_layers)
    block_list = sorted({validate_layer(lm, b, what="block index") for b in blocks})
    candidates = [(b, h) for b in block_list for h in range(lm.n_heads) if (b, h) not in excluded]
    check_int(k, "k (heads to draw, from those left after exclusions)", minimum=0, maximum=len(candidates))
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(candidates), generator=gen)[:k]
    return sorted(candidates[int(i)] for i in pick)
