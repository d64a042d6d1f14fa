"""The batch plan: which perturbed rows share a forward pass.

A *row* is one (source, direction, eps) combination; row ``r`` needs positions
``starts[r] .. N-1`` (earlier positions equal the clean pass, by causality). Rows sorted by
source are cut into contiguous passes that trade the positions a pass computes beyond each row's
own against the fixed cost of one more pass (:func:`plan_batches`), under a memory bound on the
rows of one pass (:func:`default_batch_rows`). The planner's two constants come from the
model's shape (:func:`~residual_response.cost.attention_weight`, the package's one cost model) and
its device (:func:`forward_overhead`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..checks import check_int, check_model, check_number
from ..cost import attention_weight, max_pass_rows
from ..models import LoadedModel
from .tap import packing_supported

__all__ = [
    "FORWARD_OVERHEAD_POSITIONS",
    "attention_weight",
    "default_batch_rows",
    "forward_overhead",
    "plan_batches",
    "pair_rows",
    "plan_rows",
    "planned_passes",
    "shares_prefix",
    "sliding_window",
    "source_batches",
    "uses_prefix",
]

#: What one more forward pass costs beyond the row-positions it computes, in units of one
#: row-position through the blocks (the weights are streamed from memory once per pass, small
#: matrix products run below peak, kernels are launched and Python runs once per block). On
#: smollm2-135m (float32, one CPU thread) a pass over ``n`` row-positions takes about
#: ``(60 + n)`` times the cost of one (scripts/bench.py measures it); GPUs stay launch-bound up
#: to thousands of row-positions per pass.
FORWARD_OVERHEAD_POSITIONS = {"cpu": 64.0, "cuda": 4096.0, "mps": 2048.0}


def default_batch_rows(lm: LoadedModel, n_positions: int, memory_budget_mb: float = 1024.0, jvp: bool = False) -> int:
    """Rows per forward pass that keep activations under ``memory_budget_mb``.

    The memory of one row is :func:`~residual_response.cost.row_bytes` (the package's one cost model).
    """
    check_model(lm)
    n_positions = check_int(n_positions, "n_positions", minimum=1)
    memory_budget_mb = check_number(memory_budget_mb, "memory_budget_mb", positive=True)
    return _batch_rows(lm, n_positions, memory_budget_mb, jvp)


def _batch_rows(lm: LoadedModel, n_positions: int, memory_budget_mb: float, jvp: bool) -> int:
    """:func:`default_batch_rows` of validated arguments (the engine's own, checked once)."""
    return max_pass_rows(lm, n_positions, memory_budget_mb, jvp)


def forward_overhead(lm: LoadedModel) -> float:
    """The fixed cost of one forward pass on ``lm``'s device (:data:`FORWARD_OVERHEAD_POSITIONS`)."""
    return FORWARD_OVERHEAD_POSITIONS.get(lm.device.type, 1024.0)


def sliding_window(lm: LoadedModel) -> int | None:
    """The model's attention window, ``None`` when every position sees all earlier ones."""
    win = getattr(lm.config, "sliding_window", None)
    return int(win) if isinstance(win, int) and win > 0 else None


def uses_prefix(lm: LoadedModel, n_positions: int, reuse_prefix: bool) -> bool:
    """Whether passes may skip the positions before their sources (the clean keys/values stand in).

    Only while the sequence fits in the model's sliding window (if it has one): the passes that
    skip the prefix hand every query all earlier clean keys and values.
    """
    window = sliding_window(lm)
    return reuse_prefix and (window is None or n_positions <= window)


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
    width = (int(n_positions) - starts).astype(np.float64)  # [R] positions of a pass whose first row is i
    cum = np.concatenate([[0.0], np.cumsum(width)])  # [R+1] packed positions of rows 0..j-1
    best = np.full(R + 1, np.inf)  # [R+1] least cost of rows 0..j-1
    best[0] = 0.0
    cut = np.zeros(R + 1, dtype=np.int64)  # [R+1] first row of the last pass in that best plan
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


def source_batches(lm: LoadedModel, sources: Sequence[int], n_positions: int, *, packed: bool,
                   max_rows: int | None = None) -> list[list[int]]:
    """The engine's plan for one row per source: the sources (sorted) of each pass.

    Why: to time or inspect the passes the engine would run for these sources without running
    the engine (the benchmark's floor). ``max_rows`` defaults to :func:`default_batch_rows`.
    """
    srcs = sorted(int(s) for s in sources)
    N = int(n_positions)
    B = max_rows or _batch_rows(lm, N, 1024.0, False)
    plan = plan_batches(srcs, N, B, forward_overhead(lm), packed=packed, attention=attention_weight(lm, N))
    return [srcs[a:b] for a, b in plan]


def plan_rows(lm: LoadedModel, srcs: list[int], K: int, n_eps: int, N: int, B: int, use_prefix: bool,
              packed: bool) -> tuple[list[tuple[int, int, int]], list[tuple[int, int]]]:
    """Rows ``(source index j, direction k, eps index e)`` ordered by source, and their passes.

    Ordered by source so a pass spans few positions; cut by :func:`plan_batches` into passes of
    at most ``B`` rows that recompute few positions before their sources.
    """
    order = sorted(range(len(srcs)), key=lambda j: srcs[j])
    rows = [(j, k, e) for j in order for k in range(K) for e in range(n_eps)]
    starts = [srcs[j] if use_prefix else 0 for j, _, _ in rows]
    plan = plan_batches(starts, N, B, forward_overhead(lm), packed=packed, attention=attention_weight(lm, N))
    return rows, plan


def pair_rows(batch_rows: int) -> int:
    """Perturbed rows of a sequence per pass shared with a twin (:mod:`.shared_prefix`): each brings
    its twin's row along, so that a pass holds at most ``batch_rows`` rows (0: not even one pair fits)."""
    return int(batch_rows) // 2


def shares_prefix(packed: bool, batch_rows: int, sources: Sequence[int], prefix: int, n_positions: int) -> bool:
    """Whether a sequence and a twin equal to it before position ``prefix`` share their passes
    (:mod:`.shared_prefix`): packed passes, a pair of rows within the memory bound, every source
    inside the shared prefix and a twin that differs somewhere."""
    return packed and pair_rows(batch_rows) >= 1 and len(sources) > 0 and max(sources) < prefix < n_positions


def planned_passes(lm: LoadedModel, n_tokens: int, sources: Sequence[int] | None = None, *, n_eps: int = 1,
                   n_directions: int = 1, method: str = "finite", batch_rows: int | None = None,
                   memory_budget_mb: float = 1024.0, reuse_prefix: bool = True, twin_prefix: int | None = None) -> int:
    """Number of forward passes :func:`~.compute.response` will plan for these arguments, without running.

    Why: a job of many calls (a section map) shows one progress bar whose total must be known
    before the first pass; the plan depends only on the shapes, not on the tokens. The count
    assumes the packed passes whenever the model's attention can be tapped (the engine falls
    back to padded passes, and a slightly different plan, only when a tap fails).

    ``twin_prefix``: count the passes of :func:`~.shared_prefix.run_response_pair` instead, for a
    sequence and a twin equal to it before that position (both sequences' passes).
    """
    N = int(n_tokens)
    srcs = list(range(N)) if sources is None else [int(s) for s in sources]
    use_prefix = uses_prefix(lm, N, reuse_prefix)
    packed = use_prefix and (method == "jvp" or packing_supported(lm))
    n_eps = 1 if method == "jvp" else int(n_eps)
    B = batch_rows or _batch_rows(lm, N, memory_budget_mb, jvp=(method == "jvp"))
    if twin_prefix is not None and shares_prefix(packed, B, srcs, int(twin_prefix), N):
        return len(plan_rows(lm, srcs, n_directions, n_eps, N, pair_rows(B), use_prefix, packed)[1])
    passes = len(plan_rows(lm, srcs, n_directions, n_eps, N, B, use_prefix, packed)[1])
    return passes if twin_prefix is None else 2 * passes
