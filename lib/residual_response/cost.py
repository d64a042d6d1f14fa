"""The package's one cost model: the weights a block multiplies by, the work of a response
computation in FLOPs, and its memory.

Why one module: the batch planner (:mod:`.engine.plan`), the command line's estimate before a run
(:mod:`.cli.estimate`) and the benchmark's extrapolation to the paper's models (:mod:`.bench.cost`)
each counted the same work with a formula of their own, and they disagreed (the MLP of GPT-2 has
two matrices, not three). Every count here is ``2 x weights x positions`` through the blocks:
embeddings and the LM head are left out (the engine never multiplies by them), so are norms and
biases, and the attention scores (``~4 N d`` a position and block, a few per cent at the book's
``N``) enter only where the planner weighs them (:func:`attention_weight`).

Work is counted in *token-forwards*: one position through the whole stack of ``L`` blocks
(:func:`response_token_forwards`); a position through blocks ``l0..L-1`` is ``(L - l0) / L`` of one.
"""

from __future__ import annotations

from typing import Iterable

import torch

from .models import LoadedModel, block_dims

__all__ = ["matmul_weights", "non_embedding_params", "block_weights", "model_dims", "response_token_forwards",
           "response_flops", "attention_weight", "row_bytes", "max_pass_rows", "pass_bytes",
           "result_bytes"]


def matmul_weights(d_model: int, d_ffn: int, q_dim: int, kv_dim: int, gated: bool) -> int:
    """Weights of one block's matrices: the query and output projections (``d x q_dim`` each), the key
    and value projections (``d x kv_dim`` each), and two MLP matrices (three when the MLP is gated)."""
    return 2 * d_model * q_dim + 2 * d_model * kv_dim + (3 if gated else 2) * d_model * d_ffn


def non_embedding_params(layers: int, d_model: int, d_ffn: int, q_dim: int, kv_dim: int, gated: bool) -> int:
    """Weights of all ``layers`` blocks (:func:`matmul_weights` each; norms and biases left out)."""
    return layers * matmul_weights(d_model, d_ffn, q_dim, kv_dim, gated)


def block_weights(lm: LoadedModel) -> int:
    """Weights of one of ``lm``'s blocks, counted on the module itself: every 2-D weight of block 0.

    Why counted and not computed from the config: fused projections (Phi-3's ``qkv_proj``,
    Falcon's ``query_key_value``), gated or plain MLPs and the config's names for them differ by
    architecture; the matrices are what a forward pass multiplies by, whatever they are called.
    """
    return int(sum(p.numel() for p in lm.blocks[0].parameters() if p.ndim == 2))


def model_dims(lm: LoadedModel) -> dict:
    """``lm``'s widths as the arguments of :func:`non_embedding_params` (``gated``: the MLP has three
    matrices, read off :func:`block_weights`)."""
    b = block_dims(lm)
    dims = dict(layers=lm.n_layers, d_model=b.d_model, d_ffn=b.d_ffn, q_dim=b.n_heads * b.head_dim,
                kv_dim=b.n_kv_heads * b.head_dim)
    plain = matmul_weights(b.d_model, b.d_ffn, dims["q_dim"], dims["kv_dim"], gated=False)
    return {**dims, "gated": block_weights(lm) > plain}


def response_token_forwards(N: int, L: int, l0s: Iterable[int], sources: Iterable[int] | None = None,
                            rows_per_source: int = 1) -> float:
    """Token-forwards (position x full model) of the necessary work: one clean pass of ``N``
    positions, plus for every ``l0`` and source ``s`` the positions ``s..N-1`` through blocks
    ``l0..L-1`` (a fraction ``(L - l0) / L`` of the model)."""
    srcs = list(range(N)) if sources is None else list(sources)
    per_l0 = rows_per_source * sum(N - s for s in srcs)
    return float(N + sum(per_l0 * (L - l0) / L for l0 in l0s))


def response_flops(lm: LoadedModel, n_positions: int, sources: Iterable[int], l0: int, rows_per_source: int = 1) -> float:
    """FLOPs of one response computation on ``lm``: ``2 x`` its block weights ``x`` the token-forwards
    (:func:`response_token_forwards`) of perturbing ``sources`` at stream ``l0``."""
    P = lm.n_layers * block_weights(lm)
    return 2.0 * P * response_token_forwards(n_positions, lm.n_layers, [l0], sources, rows_per_source)


def attention_weight(lm: LoadedModel, n_positions: int) -> float:
    """The attention of one query position over ``N`` keys, relative to its matrix products: the
    batch planner's weight of the positions a pass computes (:func:`~.engine.plan.plan_batches`).

    It counts every MLP as gated (three matrices). Why not :func:`block_weights`: the planner was
    tuned with this count, and for GPT-2 (two MLP matrices) the exact count re-plans about a third
    of the batches, which moves ``chi`` in its last bits (measured: up to 0.36 at eps 1e-6, where
    chi is rounding noise); the book's numbers must not move with a refactoring.
    """
    b = block_dims(lm)
    block = matmul_weights(b.d_model, b.d_ffn, b.n_heads * b.head_dim, b.n_kv_heads * b.head_dim, gated=True)
    return 2.0 * n_positions * b.n_heads * b.head_dim / block


def row_bytes(lm: LoadedModel, n_positions: int, jvp: bool = False) -> int:
    """Activation memory of one batch row, roughly: the widest activations of one block (MLP
    hidden, attention scores) plus the cached keys/values of every layer, times the element size;
    three times that for forward-mode AD (``jvp``), which carries a tangent beside every primal and
    keeps the intermediates that the tangents are computed from."""
    b = block_dims(lm)
    itemsize = torch.finfo(lm.dtype).bits // 8
    N = n_positions
    per_row = N * (12 * b.d_model + 4 * b.d_ffn + 3 * b.n_heads * N + 2 * lm.n_layers * b.n_kv_heads * b.head_dim) * itemsize
    return per_row * 3 if jvp else per_row


def max_pass_rows(lm: LoadedModel, n_positions: int, memory_budget_mb: float = 1024.0, jvp: bool = False) -> int:
    """Rows of one forward pass whose activations (:func:`row_bytes` each) fit ``memory_budget_mb``,
    between 1 and 512 (the batch planner's bound, :func:`~.engine.plan.default_batch_rows`)."""
    return int(max(1, min(512, memory_budget_mb * 2**20 // max(row_bytes(lm, n_positions, jvp), 1))))


def pass_bytes(lm: LoadedModel, n_positions: int, n_rows: int, *, jvp: bool = False,
               memory_budget_mb: float = 1024.0) -> int:
    """Activation bytes of the largest forward pass of a call with ``n_rows`` rows (the memory a run
    needs beside its results; :func:`max_pass_rows` rows at most)."""
    B = min(max(int(n_rows), 1), max_pass_rows(lm, n_positions, memory_budget_mb, jvp))
    return B * row_bytes(lm, int(n_positions), jvp)


def result_bytes(lm: LoadedModel, *, n_positions: int, n_sources: int, n_directions: int, n_eps: int, l0: int,
                 passes: int = 1, keep_full: bool = False) -> float:
    """Memory of the results of ``passes`` response calls: the float64 arrays (accumulator, chi and,
    with ``keep_full``, the full ``[n_eps, n_read, N, N]`` matrix), the directions, and what each
    call keeps (the stripes of a seed)."""
    n_read = lm.n_layers + 1 - l0
    result = float(n_eps) * n_read * n_sources * n_positions * 8
    memory = (3 if keep_full else 2) * result + float(n_sources) * n_directions * lm.d_model * 8
    if keep_full:
        memory += float(n_eps) * n_read * n_positions * n_positions * 8
    if passes > 1:  # stripes kept per call, and the seed list itself
        memory += float(passes) * (2 * n_read * n_sources * 8 + 64)
    return memory
