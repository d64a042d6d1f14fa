"""The response engine: how every later token, at every later layer, moves under a weak
single-token perturbation.

    r[l, s, t](eps)   = || h~[l, t] - h[l, t] || / || h[l, t] ||
    chi[l, s, t](eps) = r[l, s, t](eps) / eps

One forward pass perturbs many sources at once: each batch row carries one (source, direction,
eps) combination. The work that cannot change is skipped:

* blocks before ``l0`` never run: the clean stream ``h[l0]`` is cached and written into the input
  of block ``l0`` by a pre-hook;
* positions before the smallest source of a batch never run: by causality they equal the clean
  pass, whose keys and values are handed to the attention layers as a cache; rows are sorted by
  source and cut into batches by a small planner (:func:`plan_batches`) that trades the positions
  a batch recomputes before its rows' sources against the fixed cost of one more forward pass;
* inside :func:`reuse_clean_passes` the clean pass of a sequence is computed once and shared by
  every call (the section map perturbs the same sequence at every ``l0``);
* the LM head never runs, and blocks after the last read layer are cut off;
* each read layer's stream is reduced to per-token norms as soon as the block produces it.

``method="jvp"`` replaces the finite difference by the exact linear response (the eps -> 0
limit), computed with forward-mode automatic differentiation through the same hooks:
``chi = ||J u|| * ||h[l0, s]|| / ||h[l, t]||``. It needs eager attention (SDPA kernels have no
forward-mode AD on the CPU), which the engine switches on for the call.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import json
import math
import os
import sys
import weakref
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD

from .checks import (check_finite_result, check_int, check_int_list, check_model, check_number, check_seed, validate_eps,
                     validate_layer, validate_tokens)
from .io import write_bytes_atomic
from .models import LoadedModel, block_dims
from .perturbation import DIRECTION_KINDS, apply_perturbation, perturbation_directions
from .progress import Progress, as_progress
from .streams import StopForward, block_hidden_input, block_output, hooked, replace_block_input, skip_blocks

__all__ = [
    "ResponseResult",
    "response",
    "validate_eps",
    "validate_layer",
    "default_batch_rows",
    "plan_batches",
    "planned_passes",
    "reuse_clean_passes",
    "FORWARD_OVERHEAD_POSITIONS",
    "METHODS",
]

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
    #: how the result was made (see :mod:`.provenance`); ``None`` when not recorded
    provenance: dict | None = None

    #: the ``kind`` tag of the file :meth:`save_npz` writes
    KIND = "response"

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

    def write_npz(self, fh) -> None:
        """Write the result as an ``.npz`` archive to an open binary file ``fh``."""
        chi = self.full_matrix() if len(self.sources) == len(self.tokens) else self.chi
        np.savez(
            fh,
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
            kind=np.str_(self.KIND),
            meta=np.str_(json.dumps(self.meta, allow_nan=False)),
            provenance=np.str_(json.dumps(self.provenance, allow_nan=False)),
        )

    def save_npz(self, path: str | os.PathLike) -> None:
        """Write the result atomically (temp file in the same folder, then rename; see :mod:`.io`)."""
        write_bytes_atomic(path, self.write_npz)

    @classmethod
    def load(cls, path: str | os.PathLike, *, against=None) -> "ResponseResult":
        """Read a file written by :meth:`save_npz` (``residual-response response --out``).

        Why ``against``: a result is often compared with a model or another result; give it
        (a :class:`~residual_response.models.LoadedModel`, a result or a provenance dict) and a
        :class:`~residual_response.provenance.ProvenanceWarning` says when the file was made with
        other weights, model or dtype.

        Raises ``ValueError`` (one sentence) for a file of another kind.
        """
        from .provenance import warn_if_different
        from .resultfile import read

        d = read(path, cls.KIND)
        sources = [int(s) for s in d["sources"]]
        chi = d["chi"]  # [n_eps, n_read, N, N] when every position was perturbed, else [n_eps, n_read, n_src, N]
        if len(sources) == len(d["tokens"]):  # written as the full matrix (row = position)
            chi = chi[:, :, sources, :]
        res = cls(
            chi=chi, eps=d["eps"], read_layers=[int(l) for l in d["read_layers"]], sources=sources,
            tokens=d["tokens"], layer=int(d["layer"]), n_directions=int(d["n_directions"]),
            direction=str(d["direction"]), method=str(d["method"]), seed=int(d["seed"]),
            model=str(d["model"]) if "model" in d else "", dtype=str(d["dtype"]) if "dtype" in d else "",
            meta=json.loads(str(d["meta"])) if "meta" in d else {},
            provenance=json.loads(str(d["provenance"])) if "provenance" in d else None,
        )
        if against is not None:
            warn_if_different(res, against, what=os.fspath(path))
        return res


# --------------------------------------------------------------------------------------------
# batching
# --------------------------------------------------------------------------------------------


def default_batch_rows(lm: LoadedModel, n_positions: int, memory_budget_mb: float = 1024.0, jvp: bool = False) -> int:
    """Rows per forward pass that keep activations under ``memory_budget_mb``.

    A rough per-row estimate: the widest activations of one block (MLP hidden, attention scores)
    plus the cached keys/values of every layer, times the element size (twice for forward-mode
    AD, which carries a tangent beside every primal).
    """
    check_model(lm)
    n_positions = check_int(n_positions, "n_positions", minimum=1)
    memory_budget_mb = check_number(memory_budget_mb, "memory_budget_mb", positive=True)
    dims = block_dims(lm)
    d, ffn, heads, kv, head_dim = dims.d_model, dims.d_ffn, dims.n_heads, dims.n_kv_heads, dims.head_dim
    itemsize = torch.finfo(lm.dtype).bits // 8
    per_row = n_positions * (12 * d + 4 * ffn + 3 * heads * n_positions + 2 * lm.n_layers * kv * head_dim) * itemsize
    if jvp:
        per_row *= 3
    return int(max(1, min(512, memory_budget_mb * 2**20 // max(per_row, 1))))


#: What one more forward pass costs beyond the row-positions it computes, in units of one
#: row-position through the blocks (the weights are streamed from memory once per pass, small
#: matrix products run below peak, kernels are launched and Python runs once per block). On
#: smollm2-135m (float32, one CPU thread) a pass over ``n`` row-positions takes about
#: ``(60 + n)`` times the cost of one (scripts/bench.py measures it); GPUs stay launch-bound up
#: to thousands of row-positions per pass.
FORWARD_OVERHEAD_POSITIONS = {"cpu": 64.0, "cuda": 4096.0, "mps": 2048.0}


def plan_batches(starts, n_positions: int, max_rows: int, overhead: float = 64.0, *, packed: bool = False,
                 attention: float = 0.0) -> list[tuple[int, int]]:
    """Cut rows (sorted by source) into forward passes that do little work beyond the necessary.

    Row ``r`` needs positions ``starts[r] .. N-1``. A pass over rows ``i..j-1`` costs, in
    row-positions through the blocks,

    * ``overhead`` (fixed cost of a pass), plus
    * its matrix products: ``rows * (N - starts[i])`` when the rows are padded to a rectangle
      (``packed=False``: positions between ``starts[i]`` and a row's own start are recomputed,
      equal to the clean pass), or exactly ``sum_r (N - starts[r])`` when they are packed end to
      end (``packed=True``), plus
    * its attention, ``attention * rows * (N - starts[i])`` (a query position against ``N`` keys,
      relative to a position's matrix products; small).

    Rows are cut into contiguous passes of at most ``max_rows`` that minimise the total (exact, by
    dynamic programming over the cut points).

    Args:
        starts: ``[R]`` first position each row needs, non-decreasing (``0`` everywhere when the
            prefix is not reused).
        n_positions: sequence length ``N``.
        max_rows: most rows per pass (the memory bound).
        overhead: cost of one pass beyond its row-positions.
        packed: rows are packed end to end (the engine's packed pass) instead of padded.
        attention: relative cost of the attention of one row-position.

    Returns:
        half-open row ranges ``[(begin, end), ...]`` covering ``0..R`` in order.
    """
    starts = np.asarray(starts, dtype=np.int64).reshape(-1)
    R = starts.size
    if R == 0:
        return []
    if np.any(np.diff(starts) < 0):
        raise ValueError("plan_batches: starts must be sorted (non-decreasing)")
    max_rows = max(1, int(max_rows))
    width = (int(n_positions) - starts).astype(np.float64)  # positions of a pass whose first row is i
    cum = np.concatenate([[0.0], np.cumsum(width)])  # packed positions of rows 0..j-1
    best = np.full(R + 1, np.inf)
    best[0] = 0.0
    cut = np.zeros(R + 1, dtype=np.int64)
    for j in range(1, R + 1):
        lo = max(0, j - max_rows)
        first = np.arange(lo, j)
        rows = j - first
        padded = rows * width[lo:j]
        work = (cum[j] - cum[lo:j]) if packed else padded
        cost = best[lo:j] + float(overhead) + work + float(attention) * padded
        k = int(np.argmin(cost))  # ties: the earliest cut, i.e. the larger last pass
        best[j] = cost[k]
        cut[j] = lo + k
    bounds = []
    j = R
    while j > 0:
        bounds.append((int(cut[j]), j))
        j = int(cut[j])
    return bounds[::-1]


def planned_passes(lm: LoadedModel, n_tokens: int, sources: Sequence[int] | None = None, *, n_eps: int = 1,
                   n_directions: int = 1, method: str = "finite", batch_rows: int | None = None,
                   memory_budget_mb: float = 1024.0, reuse_prefix: bool = True) -> int:
    """Number of forward passes :func:`response` will plan for these arguments, without running.

    Why: a job of many calls (a section map) shows one progress bar whose total must be known
    before the first pass; the plan depends only on the shapes, not on the tokens. The count
    assumes the packed passes whenever the model's attention can be tapped (the engine falls
    back to padded passes, and a slightly different plan, only when a tap fails).
    """
    N = int(n_tokens)
    srcs = list(range(N)) if sources is None else [int(s) for s in sources]
    use_prefix = reuse_prefix and (_sliding_window(lm) is None or N <= _sliding_window(lm))
    packed = use_prefix and (method == "jvp" or _packing_supported(lm))
    n_eps = 1 if method == "jvp" else int(n_eps)
    B = batch_rows or default_batch_rows(lm, N, memory_budget_mb, jvp=(method == "jvp"))
    return len(_plan_rows(lm, srcs, n_directions, n_eps, N, B, use_prefix, packed)[1])


def _plan_rows(lm: LoadedModel, srcs: list[int], K: int, n_eps: int, N: int, B: int, use_prefix: bool,
               packed: bool) -> tuple[list[tuple[int, int, int]], list[tuple[int, int]]]:
    """Rows ``(source j, direction k, eps e)`` ordered by source, and their passes (:func:`plan_batches`).

    Ordered by source so a pass spans few positions; cut into passes of at most ``B`` rows that
    recompute few positions before their sources.
    """
    order = sorted(range(len(srcs)), key=lambda j: srcs[j])
    rows = [(j, k, e) for j in order for k in range(K) for e in range(n_eps)]
    starts = [srcs[j] if use_prefix else 0 for j, _, _ in rows]
    plan = plan_batches(starts, N, B, _forward_overhead(lm), packed=packed, attention=_attention_weight(lm, N))
    return rows, plan


def _forward_overhead(lm: LoadedModel) -> float:
    return FORWARD_OVERHEAD_POSITIONS.get(lm.device.type, 1024.0)


def _attention_weight(lm: LoadedModel, n_positions: int) -> float:
    """Attention of one query position over ``N`` keys, relative to its matrix products."""
    dims = block_dims(lm)
    d, heads, head_dim, kv, ffn = dims.d_model, dims.n_heads, dims.head_dim, dims.n_kv_heads, dims.d_ffn
    block = 2 * d * heads * head_dim + 2 * d * kv * head_dim + 3 * d * ffn  # weights of one block
    return 2.0 * n_positions * heads * head_dim / block


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


# Attention implementations whose functions take (module, q, k, v, mask, **kwargs) with a
# [B, 1, q, k] mask (bool or additive) and return ([B, q, H, hd], weights): the packed pass
# can hand them one padded row per perturbed source (see _attention_tap).
_PACKABLE_ATTENTION = ("sdpa", "eager", "rr_eager")


def _packing_supported(lm: LoadedModel) -> bool:
    return getattr(lm.model.config, "_attn_implementation", None) in _PACKABLE_ATTENTION


class _TapUnsupported(RuntimeError):
    """The model's attention cannot be tapped (the engine then uses padded passes)."""


@contextlib.contextmanager
def _attention_tap(lm: LoadedModel, tap):
    """Route every attention call of ``lm`` through ``tap(module, original, q, k, v, mask, **kw)``.

    Hugging Face attention modules project, rotate and cache keys themselves and then call the
    attention function registered for ``config._attn_implementation`` (``eager`` falls back to
    the modeling file's ``eager_attention_forward``). The tap replaces that function for the
    duration of the block and receives the original, so that it can call it on other tensors.
    """
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    impl = lm.model.config._attn_implementation
    had_local = impl in ALL_ATTENTION_FUNCTIONS._local_mapping
    previous = ALL_ATTENTION_FUNCTIONS._local_mapping.get(impl)

    def original_for(module):
        if had_local:
            return previous
        if impl == "eager":
            fn = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
            if fn is None:
                raise _TapUnsupported(f"{type(module).__name__} has no eager_attention_forward")
            return fn
        return ALL_ATTENTION_FUNCTIONS._global_mapping[impl]

    def routed(module, query, key, value, attention_mask, **kwargs):
        return tap(module, original_for(module), query, key, value, attention_mask, **kwargs)

    ALL_ATTENTION_FUNCTIONS[impl] = routed
    try:
        yield
    finally:
        if had_local:
            ALL_ATTENTION_FUNCTIONS[impl] = previous
        else:
            del ALL_ATTENTION_FUNCTIONS[impl]


class _CleanPass:
    """The unperturbed pass: streams at the ``need`` layers, their norms, the prefix for the rows.

    With ``want_cache`` (prefix reuse) the perturbed rows need the clean keys and values. Where
    the model's attention can be tapped (``capture_attention``, sdpa or eager) they are kept as
    the attention function received them, per block: ``self.attention[l] = (k [1, KV, N, hd], v,
    mask or None)``, for the packed passes; otherwise as the Hugging Face cache (``self.cache``)
    for padded passes. ``keep_cache`` keeps the cache in both cases (the bench's floor times both
    kinds of passes).
    """

    def __init__(self, lm: LoadedModel, tokens: torch.Tensor, need: list[int], want_cache: bool,
                 capture_attention: bool = False, keep_cache: bool = False):
        L = lm.n_layers
        N = tokens.shape[0]
        need = sorted(set(need))
        got: dict[int, torch.Tensor] = {}
        current = {"block": None}
        attention: dict[int, tuple] = {}

        def make_pre(l):
            def pre(module, args, kwargs):
                current["block"] = l
                if l in need:
                    got[l] = block_hidden_input(args, kwargs)[0].detach().clone()
            return pre

        def post(module, args, output):
            got[L] = block_output(output)[0].detach().clone()

        def tap(module, original, query, key, value, attention_mask, **kwargs):
            l = current["block"]
            if l is not None and l not in attention:
                mask = attention_mask.detach() if isinstance(attention_mask, torch.Tensor) else None
                attention[l] = (key.detach(), value.detach(), mask)
            return original(module, query, key, value, attention_mask, **kwargs)

        hooks = [(lm.blocks[l], "pre", make_pre(l)) for l in range(L)] + [(lm.blocks[L - 1], "post", post)]
        ids = tokens.to(lm.device)[None]
        capture = want_cache and capture_attention and _packing_supported(lm)
        out = None
        if capture:
            try:
                with hooked(hooks), torch.no_grad(), _attention_tap(lm, tap):
                    out = lm.base_model(input_ids=ids, use_cache=keep_cache)
            except _TapUnsupported:
                out = None
        # packed passes only if every block's attention went through the tap with all N keys
        complete = (out is not None and len(attention) == L
                    and all(k.shape[0] == 1 and k.shape[-2] == N for k, _, _ in attention.values()))
        if complete:
            self.attention = attention
            self.cache = (getattr(out, "cache", None) or getattr(out, "past_key_values", None)) if keep_cache else None
        else:  # the plain pass (again, if the tap failed), with the cache for padded passes
            with hooked(hooks), torch.no_grad():
                out = lm.base_model(input_ids=ids, use_cache=want_cache)
            self.attention = None
            self.cache = (getattr(out, "cache", None) or getattr(out, "past_key_values", None)) if want_cache else None
        self.attn_implementation = lm.model.config._attn_implementation
        self.streams = got  # {l: [N, d]}
        self.norms = {l: got[l].double().norm(dim=-1) for l in need}  # {l: [N]} float64


# The memo of reuse_clean_passes(): None outside the block, else {key: (check, _CleanPass)}.
_CLEAN_MEMO: "collections.OrderedDict | None" = None
_CLEAN_MEMO_SIZE = 16


@contextlib.contextmanager
def reuse_clean_passes(max_sequences: int = 16):
    """Compute the clean pass of a sequence once for all :func:`response` calls in the block.

    Every call needs the unperturbed streams and keys/values of its sequence: one forward pass
    over all ``N`` positions. A loop that perturbs the same sequences at every ``l0`` (the
    section map) repeats it ``L`` times; inside this block it runs once per (model, sequence)
    and is reused (the ``max_sequences`` most recent sequences are kept). Results are the same
    as without the block, bit for bit.

    The clean pass is recomputed when the model's parameters change (replaced, or updated in
    place: their version counters move), or its attention implementation, dtype or device.
    Hooks added to the model inside the block are *not* seen: do not change what the model
    computes with hooks (ablations) inside it. Nested blocks share the outermost memo.
    """
    global _CLEAN_MEMO, _CLEAN_MEMO_SIZE
    if _CLEAN_MEMO is not None:
        yield
        return
    _CLEAN_MEMO, _CLEAN_MEMO_SIZE = collections.OrderedDict(), max(1, int(max_sequences))
    try:
        yield
    finally:
        _CLEAN_MEMO = None


def _model_state(lm: LoadedModel) -> tuple:
    """What the clean pass depends on besides the tokens: weights (identity, version), settings."""
    params = tuple((p.data_ptr(), p._version) for p in lm.model.parameters())
    return (getattr(lm.model.config, "_attn_implementation", None), lm.dtype, str(lm.device), params)


def _clean_pass(lm: LoadedModel, tokens: torch.Tensor, l0: int, read_layers: list[int], want_cache: bool) -> _CleanPass:
    """The clean pass of ``tokens``: computed, or taken from the memo of :func:`reuse_clean_passes`.

    With ``want_cache`` (prefix reuse) it keeps both the Hugging Face cache (padded passes) and
    the attention inputs of every block (packed passes).
    """
    if _CLEAN_MEMO is None:
        return _CleanPass(lm, tokens, [l0] + read_layers, want_cache, capture_attention=want_cache)
    key = (id(lm.model), tuple(tokens.tolist()))
    state = _model_state(lm)
    hit = _CLEAN_MEMO.get(key)
    if hit is not None:
        ref, old_state, clean = hit
        if ref() is lm.model and old_state == state:
            _CLEAN_MEMO.move_to_end(key)
            return clean
    clean = _CleanPass(lm, tokens, list(range(lm.n_layers + 1)), want_cache=True, capture_attention=True)
    _CLEAN_MEMO[key] = (weakref.ref(lm.model), state, clean)
    while len(_CLEAN_MEMO) > _CLEAN_MEMO_SIZE:
        _CLEAN_MEMO.popitem(last=False)
    return clean


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
        else:
            kwargs["use_cache"] = False  # nothing reads the keys/values this pass makes
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


def _run_packed(
    lm: LoadedModel,
    tokens: torch.Tensor,
    clean: _CleanPass,
    l0: int,
    read_layers: list[int],
    src_pos: torch.Tensor,
    dirs: torch.Tensor,
    eps: torch.Tensor,
    method: str,
    record: bool = True,
) -> torch.Tensor:
    """Response of one pass of rows, packed: row ``b`` computes exactly positions ``s_b .. N-1``.

    The rows' positions are laid end to end in one sequence of ``M = sum_b (N - s_b)`` positions,
    so every matrix product of the blocks runs on the positions that can change and on no other.
    Attention is the one step that mixes positions: a tap on the attention function scatters
    each row's queries, keys and values into a padded ``[B, heads, N, head_dim]`` layout whose
    positions ``< s_b`` hold the clean keys and values, calls the model's own attention function
    on it with the clean pass's mask (causal, sliding window...) and gathers the outputs back.

    Args and returns as :func:`_run_chunk` (``p`` is the smallest source of the pass);
    ``record=False`` runs the same pass without reading any stream (the bench's floor).
    """
    B = src_pos.shape[0]
    N = tokens.shape[0]
    device = lm.device
    last = max(read_layers)
    read_index = {l: i for i, l in enumerate(read_layers)}
    r = torch.zeros(len(read_layers), B, N, dtype=torch.float64)  # [n_read, B, N]
    src = src_pos.long().cpu()
    p = int(src.min())
    nq = N - p  # query positions a padded row covers
    lengths = N - src  # [B]
    row_of = torch.repeat_interleave(torch.arange(B), lengths)  # [M] row of each packed position
    offset = torch.cumsum(lengths, 0) - lengths  # [B] packed index of each row's source
    pos_of = torch.arange(int(lengths.sum())) - offset[row_of] + src[row_of]  # [M] absolute position
    row_d, pos_d = row_of.to(device), pos_of.to(device)
    flat_kv = row_d * N + pos_d  # into [B * N]
    flat_q = row_d * nq + (pos_d - p)  # into [B * nq]

    h0 = clean.streams[l0][pos_d].unsqueeze(0).clone()  # [1, M, d]
    first = offset.to(device)
    if method == "finite":
        at_src = h0[0, first].unsqueeze(1)  # [B, 1, d]
        apply_perturbation(at_src, torch.zeros(B, dtype=torch.long, device=device), dirs, eps)
        h0[0, first] = at_src[:, 0]
        stream_in = h0
        tangent_of = None
    else:
        tangent = torch.zeros_like(h0)
        scale = clean.norms[l0][src].to(device)[:, None]  # [B, 1]
        tangent[0, first] = (scale * dirs.to(device).double()).to(h0.dtype)
        stream_in = fwAD.make_dual(h0, tangent)

        def tangent_of(x):
            t = fwAD.unpack_dual(x).tangent
            return torch.zeros_like(fwAD.unpack_dual(x).primal) if t is None else t

    def reduce(l: int, h: torch.Tensor) -> None:
        """Store ``||h~ - h|| / ||h||`` for read layer ``l`` (``h``: ``[1, M, d]``)."""
        if not record:
            return
        if method == "finite":
            diff = (h[0].detach().double() - clean.streams[l][pos_d].double()).norm(dim=-1)
        else:
            diff = tangent_of(h)[0].detach().double().norm(dim=-1)
        r[read_index[l], row_of, pos_of] = (diff / clean.norms[l][pos_d]).cpu()

    if l0 in read_index:
        reduce(l0, stream_in)
    if last == l0:
        return r

    impl = clean.attn_implementation
    masks = {}

    def mask_for(l: int, like: torch.Tensor):
        """The clean pass's mask of block ``l`` for query positions ``p..N-1`` ([1, 1, nq, N])."""
        if l not in masks:
            mask = clean.attention[l][2]
            if mask is None:  # sdpa took the causal shortcut: spell the causal mask out
                causal = torch.ones(N, N, dtype=torch.bool, device=device).tril()
                mask = causal if impl == "sdpa" else torch.zeros(N, N, dtype=like.dtype, device=device).masked_fill(
                    ~causal, torch.finfo(like.dtype).min)
                mask = mask[None, None]
            masks[l] = mask[:, :, p:N, :N]
        return masks[l]

    current = {"block": None}

    def tap(module, original, query, key, value, attention_mask, **kwargs):
        l = current["block"]
        kc, vc, _ = clean.attention[l]  # [1, KV, N, hd]

        def padded(clean_kv, new):  # clean_kv [1, KV, N, hd], new [1, KV, M, hd] -> [B, KV, N, hd]
            heads, hd = clean_kv.shape[1], clean_kv.shape[3]
            base = clean_kv[0].transpose(0, 1).unsqueeze(0).expand(B, N, heads, hd).reshape(B * N, heads, hd)
            return base.index_copy(0, flat_kv, new[0].transpose(0, 1)).view(B, N, heads, hd).transpose(1, 2)

        H, hd = query.shape[1], query.shape[3]
        q = query.new_zeros(B * nq, H, hd).index_copy(0, flat_q, query[0].transpose(0, 1))
        q = q.view(B, nq, H, hd).transpose(1, 2)  # [B, H, nq, hd]
        out, _ = original(module, q, padded(kc, key), padded(vc, value), mask_for(l, query), **kwargs)  # [B, nq, H, hd]
        out = out.reshape(B * nq, *out.shape[2:]).index_select(0, flat_q)  # [M, H, hd]
        return out.unsqueeze(0), None

    def pre(module, args, kwargs):
        return replace_block_input(args, kwargs, stream_in)

    def make_enter(l):
        def enter(module, args, kwargs):
            current["block"] = l
        return enter

    def make_post(l):
        def post(module, args, output):
            if l + 1 in read_index:
                reduce(l + 1, block_output(output))
            if l + 1 == last:
                raise StopForward
        return post

    hooks = [(lm.blocks[l0], "pre", pre)]
    hooks += [(lm.blocks[l], "pre", make_enter(l)) for l in range(l0, last)]
    hooks += [(lm.blocks[l], "post", make_post(l)) for l in range(l0, last)]
    ids = tokens.to(device)[pos_d][None]  # [1, M] (the embeddings are overwritten at block l0)
    # a ready 4D mask stops the model from building an [M, M] one; the tap ignores it
    dummy_mask = torch.zeros(1, 1, 1, 1, dtype=lm.dtype, device=device)
    with skip_blocks(lm, l0), hooked(hooks), _attention_tap(lm, tap):
        try:
            lm.base_model(input_ids=ids, position_ids=pos_d[None], attention_mask=dummy_mask, use_cache=False)
        except StopForward:
            pass
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
    progress: "bool | Progress" = False,
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
        batch_rows: most rows per forward pass (default: from ``memory_budget_mb``); rows sorted
            by source are cut into batches of at most this many by :func:`plan_batches`.
        reuse_prefix: skip positions before each batch's first source (causality).
        progress: ``True``: a progress bar over the passes, on a terminal only; a
            :class:`~residual_response.progress.Progress`: count the passes on a job's bar.

    Returns:
        :class:`ResponseResult` with ``chi`` of shape ``[n_eps, n_read, n_src, N]``.

    Raises:
        TypeError, ValueError: a bad argument, before any forward pass (one sentence naming it).
        NonFiniteResultError: ``chi`` holds NaN or inf (overflowing activations, damaged
            weights); a ``ValueError`` naming the first bad read layer and source, so that no
            NaN leaves the engine looking like a result.
    """
    check_model(lm)
    tokens = validate_tokens(lm, tokens)
    N = tokens.shape[0]
    l0 = validate_layer(lm, layer, what="layer")
    n_directions = check_int(n_directions, "n_directions", minimum=1)
    if batch_rows is not None:
        batch_rows = check_int(batch_rows, "batch_rows", minimum=1)
    memory_budget_mb = check_number(memory_budget_mb, "memory_budget_mb", positive=True)
    seed = check_seed(seed)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
    if direction not in DIRECTION_KINDS:
        raise ValueError(f"unknown direction {direction!r}; allowed: {', '.join(DIRECTION_KINDS)}")
    eps_arr = validate_eps(eps) if method == "finite" else np.array([np.nan])
    if read_layers is None:
        reads = list(range(l0, lm.n_layers + 1))
    else:
        reads = sorted(set(validate_layer(lm, l, allow_last=True, what="read layer")
                           for l in check_int_list(read_layers, "read_layers")))
        if reads[0] < l0:
            raise ValueError(f"read layer {reads[0]} lies before the perturbed layer {l0}; allowed {l0}..{lm.n_layers}")
    if sources is None:
        srcs = list(range(N))
    else:
        srcs = check_int_list(sources, "sources")
        bad = [s for s in srcs if not 0 <= s < N]
        if bad:
            raise ValueError(f"source {bad[0]} out of range; allowed 0..{N - 1}")

    window = _sliding_window(lm)
    use_prefix = reuse_prefix and (window is None or N <= window)
    src_t = torch.tensor(srcs)
    dirs = perturbation_directions(lm, tokens, src_t, n_directions, direction, int(seed))  # [S, K, d]
    S, K = len(srcs), n_directions
    n_eps = len(eps_arr)

    B = batch_rows or default_batch_rows(lm, N, memory_budget_mb, jvp=(method == "jvp"))

    acc = torch.zeros(n_eps, len(reads), S, N, dtype=torch.float64)  # sum over directions of r
    attn = None
    if method == "jvp":  # SDPA kernels have no forward-mode AD on the CPU
        if lm.dtype == torch.float64:
            from .precision import register_precise_eager

            attn = register_precise_eager()
        else:
            attn = "eager"
    ad = fwAD.dual_level() if method == "jvp" else contextlib.nullcontext()
    grad = torch.no_grad() if method == "finite" else torch.enable_grad()
    row_positions = 0  # positions computed, summed over rows (the work the passes did)
    with _attention(lm, attn), grad:
        clean = _clean_pass(lm, tokens, l0, reads, want_cache=use_prefix)
        # packed passes compute exactly the positions >= each row's source (needs the attention
        # inputs of the clean pass); padded passes recompute positions between a pass's first
        # source and each row's own
        packed = use_prefix and clean.attention is not None
        rows, plan = _plan_rows(lm, srcs, K, n_eps, N, B, use_prefix, packed)
        chunks = [rows[a:b] for a, b in plan]
        with ad, as_progress(progress, f"{lm.name} l0={l0}") as bar, bar.expect(len(chunks)):
            for chunk in chunks:
                j_idx = torch.tensor([c[0] for c in chunk])
                k_idx = torch.tensor([c[1] for c in chunk])
                e_idx = torch.tensor([c[2] for c in chunk])
                src_pos = src_t[j_idx]
                eps_rows = torch.as_tensor(eps_arr)[e_idx] if method == "finite" else torch.zeros(len(chunk))
                if packed:
                    row_positions += int((N - src_pos).sum())
                    r = _run_packed(lm, tokens, clean, l0, reads, src_pos, dirs[j_idx, k_idx], eps_rows, method)
                else:
                    p = int(src_pos.min()) if use_prefix else 0
                    row_positions += len(chunk) * (N - p)
                    r = _run_chunk(lm, tokens, clean, l0, reads, src_pos, dirs[j_idx, k_idx], eps_rows, p, method)
                # r: [n_read, B, N]
                acc.index_put_((e_idx[:, None], torch.arange(len(reads))[None, :], j_idx[:, None]),
                               r.permute(1, 0, 2), accumulate=True)
                bar.update()
    chi = acc / K
    if method == "finite":
        chi = chi / torch.as_tensor(eps_arr)[:, None, None, None]
    # a NaN here would travel on as "no score" or "no regime"; stop it where it is made
    check_finite_result(chi.numpy(), read_layers=reads, sources=srcs, eps=eps_arr,
                        dtype=str(lm.dtype).replace("torch.", ""))
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
        meta={"batch_rows": B, "n_batches": len(chunks), "reuse_prefix": use_prefix, "packed": packed,
              "row_positions": row_positions},
    )
