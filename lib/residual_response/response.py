"""The response engine: how every later token, at every later layer, moves under a weak
single-token perturbation.

    r[l, s, t](eps)   = || h~[l, t] - h[l, t] || / || h[l, t] ||
    chi[l, s, t](eps) = r[l, s, t](eps) / eps

One forward pass perturbs many sources at once: each batch row carries one (source, direction,
eps) combination. The work that cannot change is skipped:

* blocks before ``l0`` never run: the clean stream ``h[l0]`` is cached and written into the input
  of block ``l0`` by a pre-hook;
* positions before the smallest source of a batch never run: by causality they equal the clean
  pass, whose keys and values are handed to the attention layers as a cache;
* the LM head never runs, and blocks after the last read layer are cut off;
* each read layer's stream is reduced to per-token norms as soon as the block produces it.

``method="jvp"`` replaces the finite difference by the exact linear response (the eps -> 0
limit), computed with forward-mode automatic differentiation through the same hooks:
``chi = ||J u|| * ||h[l0, s]|| / ||h[l, t]||``. It needs eager attention (SDPA kernels have no
forward-mode AD on the CPU), which the engine switches on for the call.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import tempfile
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD

from .models import LoadedModel
from .perturbation import DIRECTION_KINDS, apply_perturbation, perturbation_directions
from .streams import StopForward, block_hidden_input, block_output, hooked, replace_block_input, skip_blocks

__all__ = ["ResponseResult", "response", "validate_eps", "validate_layer", "default_batch_rows", "METHODS"]

METHODS = ("finite", "jvp")


@dataclass
class ResponseResult:
    """Normalised response of one sequence.

    Attributes:
        chi: ``[n_eps, n_read, n_src, N]`` float64, ``chi[e, i, j, t]`` for strength ``eps[e]``,
            read layer ``read_layers[i]``, source ``sources[j]`` and target ``t``. Averaged over
            ``n_directions`` directions.
        eps: ``[n_eps]`` strengths (``[0.0]``-free; for ``method="jvp"`` a single ``nan``).
        read_layers: streams read (``l`` is the stream entering block ``l``; ``L`` is the last
            block's output before the final norm).
        sources: perturbed positions.
        tokens: ``[N]`` the sequence.
        layer: the perturbed stream ``l0``.
    """

    chi: np.ndarray
    eps: np.ndarray
    read_layers: list[int]
    sources: list[int]
    tokens: np.ndarray
    layer: int
    n_directions: int
    direction: str
    method: str
    seed: int
    model: str = ""
    dtype: str = ""
    meta: dict = field(default_factory=dict)

    def layer_index(self, layer: int) -> int:
        try:
            return self.read_layers.index(int(layer))
        except ValueError:
            raise ValueError(f"layer {layer} was not read; read layers are {self.read_layers}") from None

    def full_matrix(self) -> np.ndarray:
        """``[n_eps, n_read, N, N]`` with rows for unperturbed sources filled with ``nan``."""
        N = len(self.tokens)
        out = np.full(self.chi.shape[:2] + (N, N), np.nan)
        out[:, :, self.sources, :] = self.chi
        return out

    def save_npz(self, path: str | os.PathLike) -> None:
        """Write the result atomically (temp file in the same folder, then rename)."""
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
        os.close(fd)
        try:
            chi = self.full_matrix() if len(self.sources) == len(self.tokens) else self.chi
            np.savez(
                tmp,
                chi=chi,
                eps=self.eps,
                read_layers=np.asarray(self.read_layers, dtype=np.int64),
                sources=np.asarray(self.sources, dtype=np.int64),
                tokens=np.asarray(self.tokens, dtype=np.int64),
                layer=np.int64(self.layer),
                n_directions=np.int64(self.n_directions),
                seed=np.int64(self.seed),
                method=np.str_(self.method),
                direction=np.str_(self.direction),
                model=np.str_(self.model),
                dtype=np.str_(self.dtype),
            )
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def validate_eps(eps) -> np.ndarray:
    """Strengths must be finite and > 0; returns a float64 array ``[n_eps]``."""
    arr = np.atleast_1d(np.asarray(eps, dtype=np.float64)) if not isinstance(eps, torch.Tensor) else eps.double().reshape(-1).numpy()
    if arr.size == 0:
        raise ValueError("eps is empty; give at least one strength > 0")
    bad = arr[~np.isfinite(arr) | (arr <= 0)]
    if bad.size:
        raise ValueError(f"eps must be finite and > 0, got {bad[0]!r}")
    return arr


def validate_layer(lm: LoadedModel, layer, *, allow_last: bool = False, what: str = "layer") -> int:
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
        raise TypeError(f"{what} must be an int, got {layer!r}")
    top = lm.n_layers if allow_last else lm.n_layers - 1
    if not 0 <= int(layer) <= top:
        raise ValueError(f"{what} {layer} out of range for {lm.name}; allowed 0..{top}")
    return int(layer)


def _validate_tokens(lm: LoadedModel, tokens) -> torch.Tensor:
    tokens = torch.as_tensor(tokens)
    if tokens.ndim != 1 or tokens.numel() < 2 or tokens.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"tokens must be a 1-D integer sequence of length >= 2, got shape {tuple(tokens.shape)} {tokens.dtype}")
    if tokens.numel() > lm.max_length:
        raise ValueError(f"sequence of {tokens.numel()} tokens is beyond the context of {lm.name} ({lm.max_length})")
    if int(tokens.min()) < 0 or int(tokens.max()) >= lm.vocab_size:
        raise ValueError(f"token ids must lie in 0..{lm.vocab_size - 1}")
    return tokens.long().cpu()


# --------------------------------------------------------------------------------------------
# batching
# --------------------------------------------------------------------------------------------


def default_batch_rows(lm: LoadedModel, n_positions: int, memory_budget_mb: float = 1024.0, jvp: bool = False) -> int:
    """Rows per forward pass that keep activations under ``memory_budget_mb``.

    A rough per-row estimate: the widest activations of one block (MLP hidden, attention scores)
    plus the cached keys/values of every layer, times the element size (twice for forward-mode
    AD, which carries a tangent beside every primal).
    """
    cfg = lm.config
    d = lm.d_model
    ffn = int(getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None) or 4 * d)
    heads = lm.n_heads
    kv = int(getattr(cfg, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(cfg, "head_dim", None) or d // heads)
    itemsize = torch.finfo(lm.dtype).bits // 8
    per_row = n_positions * (12 * d + 4 * ffn + 3 * heads * n_positions + 2 * lm.n_layers * kv * head_dim) * itemsize
    if jvp:
        per_row *= 3
    return int(max(1, min(512, memory_budget_mb * 2**20 // max(per_row, 1))))


@contextlib.contextmanager
def _attention(lm: LoadedModel, implementation: str | None):
    """Temporarily switch the attention implementation (``None``: leave it)."""
    current = getattr(lm.model.config, "_attn_implementation", None)
    if implementation is None or implementation == current:
        yield
        return
    lm.model.set_attn_implementation(implementation)
    try:
        yield
    finally:
        lm.model.set_attn_implementation(current)


def _sliding_window(lm: LoadedModel) -> int | None:
    win = getattr(lm.config, "sliding_window", None)
    return int(win) if isinstance(win, int) and win > 0 else None


# --------------------------------------------------------------------------------------------
# the engine
# --------------------------------------------------------------------------------------------


class _CleanPass:
    """The unperturbed pass: streams at ``l0`` and the read layers, their norms, the K/V cache."""

    def __init__(self, lm: LoadedModel, tokens: torch.Tensor, l0: int, read_layers: list[int], want_cache: bool):
        L = lm.n_layers
        need = sorted(set([l0] + read_layers))
        got: dict[int, torch.Tensor] = {}

        def make_pre(l):
            def pre(module, args, kwargs):
                if l in need:
                    got[l] = block_hidden_input(args, kwargs)[0].detach().clone()
            return pre

        def post(module, args, output):
            got[L] = block_output(output)[0].detach().clone()

        hooks = [(lm.blocks[l], "pre", make_pre(l)) for l in range(L)] + [(lm.blocks[L - 1], "post", post)]
        with hooked(hooks), torch.no_grad():
            out = lm.base_model(input_ids=tokens.to(lm.device)[None], use_cache=want_cache)
        self.cache = (getattr(out, "cache", None) or getattr(out, "past_key_values", None)) if want_cache else None
        self.streams = got  # {l: [N, d]}
        self.norms = {l: got[l].double().norm(dim=-1) for l in need}  # {l: [N]} float64


def _prefix_cache(clean: _CleanPass, p: int, n_tokens: int, batch: int):
    """The clean keys/values of positions ``< p``, repeated for ``batch`` rows."""
    cache = copy.deepcopy(clean.cache)
    if n_tokens > p:
        cache.crop(p - n_tokens)  # negative: number of positions to drop from the end
    cache.batch_repeat_interleave(batch)
    return cache


def _run_chunk(
    lm: LoadedModel,
    tokens: torch.Tensor,
    clean: _CleanPass,
    l0: int,
    read_layers: list[int],
    src_pos: torch.Tensor,
    dirs: torch.Tensor,
    eps: torch.Tensor,
    p: int,
    method: str,
) -> torch.Tensor:
    """Response of one batch of rows.

    Args:
        src_pos: ``[B]`` source of each row (all ``>= p``).
        dirs: ``[B, d]`` unit directions.
        eps: ``[B]`` strengths (ignored by ``jvp``).
        p: first position computed; positions ``< p`` are unchanged by causality.

    Returns:
        ``[n_read, B, N]`` float64 relative change ``r`` (``||J delta|| / ||h||`` for ``jvp``,
        with ``delta = ||h[l0,s]|| u``), zero for positions ``< p``.
    """
    B = src_pos.shape[0]
    N = tokens.shape[0]
    L = lm.n_layers
    device = lm.device
    h0 = clean.streams[l0][p:].unsqueeze(0).expand(B, -1, -1).clone()  # [B, N-p, d]
    local = (src_pos - p).to(device)
    r = torch.zeros(len(read_layers), B, N, dtype=torch.float64)  # [n_read, B, N]
    read_index = {l: i for i, l in enumerate(read_layers)}
    last = max(read_layers)

    if method == "finite":
        apply_perturbation(h0, local, dirs, eps)
        stream_in = h0
        tangent_of = None
    else:
        tangent = torch.zeros_like(h0)
        rows = torch.arange(B, device=device)
        scale = clean.norms[l0][src_pos].to(device)[:, None]  # [B, 1]
        tangent[rows, local] = (scale * dirs.to(device).double()).to(h0.dtype)
        stream_in = fwAD.make_dual(h0, tangent)

        def tangent_of(x):
            t = fwAD.unpack_dual(x).tangent
            return torch.zeros_like(fwAD.unpack_dual(x).primal) if t is None else t

    def reduce(l: int, h: torch.Tensor) -> None:
        """Store ``||h~ - h|| / ||h||`` for read layer ``l`` (``h``: ``[B, N-p, d]``)."""
        if method == "finite":
            diff = (h.detach().double() - clean.streams[l][p:].double()).norm(dim=-1)
        else:
            diff = tangent_of(h).detach().double().norm(dim=-1)
        r[read_index[l], :, p:] = (diff / clean.norms[l][p:]).cpu()

    if l0 in read_index:
        reduce(l0, stream_in)
    hooks = []
    if last > l0:
        def pre(module, args, kwargs):
            return replace_block_input(args, kwargs, stream_in)

        def make_post(l):
            def post(module, args, output):
                if l + 1 in read_index:
                    reduce(l + 1, block_output(output))
                if l + 1 == last:
                    raise StopForward
            return post

        hooks = [(lm.blocks[l0], "pre", pre)] + [(lm.blocks[l], "post", make_post(l)) for l in range(l0, last)]
        kwargs = {"position_ids": torch.arange(p, N, device=device)[None].expand(B, -1)}
        if p > 0:
            kwargs["cache"] = _prefix_cache(clean, p, N, B)
            kwargs["use_cache"] = True
        ids = tokens[p:].to(device)[None].expand(B, -1)
        with skip_blocks(lm, l0), hooked(hooks):
            try:
                lm.base_model(input_ids=ids, **kwargs)
            except StopForward:
                pass
    # Targets before a row's source are unchanged by causality (tests/test_response.py shows it
    # exactly on the naive loop). Positions p..s-1 of a batch were still recomputed, with kernels
    # whose rounding can depend on the batch shape (~1e-7 relative); report the exact zeros.
    before = torch.arange(N)[None, :] < src_pos[:, None].cpu()  # [B, N]
    r[:, before] = 0.0
    return r


def response(
    lm: LoadedModel,
    tokens,
    eps: Sequence[float] | float = (1e-3,),
    *,
    layer: int = 0,
    read_layers: Iterable[int] | None = None,
    sources: Iterable[int] | None = None,
    n_directions: int = 1,
    direction: str = "gaussian",
    seed: int = 0,
    method: str = "finite",
    batch_rows: int | None = None,
    memory_budget_mb: float = 1024.0,
    reuse_prefix: bool = True,
    progress: bool = False,
) -> ResponseResult:
    """Normalised response ``chi`` of a sequence to weak single-token perturbations.

    Args:
        lm: the model.
        tokens: ``[N]`` token ids.
        eps: relative strengths (finite, > 0). Ignored by ``method="jvp"``.
        layer: perturbed stream ``l0`` in ``0..L-1``.
        read_layers: streams to read, each in ``l0..L`` (default all of them).
        sources: positions to perturb (default all ``0..N-1``).
        n_directions: directions averaged per source.
        direction: ``"gaussian"`` or ``"embedding"``.
        seed: seed of the directions; the same seed gives bit-identical ``chi`` on the CPU.
        method: ``"finite"`` (finite eps) or ``"jvp"`` (exact linear response).
        batch_rows: rows per forward pass (default: from ``memory_budget_mb``).
        reuse_prefix: skip positions before each batch's first source (causality).
        progress: show a tqdm progress bar over batches.

    Returns:
        :class:`ResponseResult` with ``chi`` of shape ``[n_eps, n_read, n_src, N]``.
    """
    tokens = _validate_tokens(lm, tokens)
    N = tokens.shape[0]
    l0 = validate_layer(lm, layer, what="layer")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
    if direction not in DIRECTION_KINDS:
        raise ValueError(f"unknown direction {direction!r}; allowed: {', '.join(DIRECTION_KINDS)}")
    eps_arr = validate_eps(eps) if method == "finite" else np.array([np.nan])
    if read_layers is None:
        reads = list(range(l0, lm.n_layers + 1))
    else:
        reads = sorted(set(validate_layer(lm, l, allow_last=True, what="read layer") for l in read_layers))
        if not reads:
            raise ValueError("read_layers is empty")
        if reads[0] < l0:
            raise ValueError(f"read layer {reads[0]} lies before the perturbed layer {l0}; allowed {l0}..{lm.n_layers}")
    if sources is None:
        srcs = list(range(N))
    else:
        srcs = [int(s) for s in sources]
        bad = [s for s in srcs if not 0 <= s < N]
        if bad or not srcs:
            raise ValueError(f"source {bad[0] if bad else None} out of range; allowed 0..{N - 1}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r}")

    window = _sliding_window(lm)
    use_prefix = reuse_prefix and (window is None or N <= window)
    src_t = torch.tensor(srcs)
    dirs = perturbation_directions(lm, tokens, src_t, n_directions, direction, int(seed))  # [S, K, d]
    S, K = len(srcs), n_directions
    n_eps = len(eps_arr)

    # rows: (source j, direction k, eps e), ordered by source so a batch spans few positions
    order = sorted(range(S), key=lambda j: srcs[j])
    rows = [(j, k, e) for j in order for k in range(K) for e in range(n_eps)]
    B = batch_rows or default_batch_rows(lm, N, memory_budget_mb, jvp=(method == "jvp"))
    chunks = [rows[i:i + B] for i in range(0, len(rows), B)]

    acc = torch.zeros(n_eps, len(reads), S, N, dtype=torch.float64)  # sum over directions of r
    attn = None
    if method == "jvp":  # SDPA kernels have no forward-mode AD on the CPU
        if lm.dtype == torch.float64:
            from .precision import register_precise_eager

            attn = register_precise_eager()
        else:
            attn = "eager"
    iterator = chunks
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(chunks, desc=f"{lm.name} l0={l0}", unit="batch", leave=False)
    ad = fwAD.dual_level() if method == "jvp" else contextlib.nullcontext()
    grad = torch.no_grad() if method == "finite" else torch.enable_grad()
    with _attention(lm, attn), grad:
        clean = _CleanPass(lm, tokens, l0, reads, want_cache=use_prefix)
        with ad:
            for chunk in iterator:
                j_idx = torch.tensor([c[0] for c in chunk])
                k_idx = torch.tensor([c[1] for c in chunk])
                e_idx = torch.tensor([c[2] for c in chunk])
                src_pos = src_t[j_idx]
                p = int(src_pos.min()) if use_prefix else 0
                r = _run_chunk(
                    lm, tokens, clean, l0, reads, src_pos, dirs[j_idx, k_idx],
                    torch.as_tensor(eps_arr)[e_idx] if method == "finite" else torch.zeros(len(chunk)), p, method,
                )  # [n_read, B, N]
                acc.index_put_((e_idx[:, None], torch.arange(len(reads))[None, :], j_idx[:, None]),
                               r.permute(1, 0, 2), accumulate=True)
    chi = acc / K
    if method == "finite":
        chi = chi / torch.as_tensor(eps_arr)[:, None, None, None]
    return ResponseResult(
        chi=chi.numpy(),
        eps=eps_arr,
        read_layers=reads,
        sources=srcs,
        tokens=tokens.numpy(),
        layer=l0,
        n_directions=K,
        direction=direction,
        method=method,
        seed=int(seed),
        model=lm.name,
        dtype=str(lm.dtype).replace("torch.", ""),
        meta={"batch_rows": B, "n_batches": len(chunks), "reuse_prefix": use_prefix},
    )
