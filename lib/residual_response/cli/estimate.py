"""What a command will cost, estimated before it runs: memory and time, refused beyond what is free
or a week."""

from __future__ import annotations

from .output import _human_bytes
from .parser import CLIError

__all__ = ["MAX_SECONDS", "estimate"]


def _human_seconds(t: float) -> str:
    for unit, size in (("years", 365 * 86400), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if t >= size:
            return f"{t / size:.3g} {unit}"
    return f"{t:.3g} seconds"


#: Arithmetic rate assumed by the time estimate (FLOP/s). Generous on purpose: the bound only
#: refuses runs that cannot finish, not runs that are merely slow.
_ASSUMED_FLOPS = {"cpu": 1e11, "cuda": 1e14, "mps": 1e13}


#: Least time one response call takes whatever its size (Python, hooks, kernel launches), seconds.
_CALL_OVERHEAD_S = 2e-3


#: Longest run the command line starts (seconds, at the assumed rate).
MAX_SECONDS = 7 * 86400


def estimate(lm, *, n_positions: int, n_sources: int, n_directions: int, n_eps: int, l0: int, passes: int = 1,
             keep_full: bool = False, jvp: bool = False) -> tuple[float, float]:
    """Rough memory (bytes) and time (seconds) of ``passes`` response calls with these sizes.

    Memory: the float64 result arrays (accumulator, chi and, for ``response``, the full
    ``[n_eps, n_read, N, N]`` matrix), the directions, what each call keeps (the stripes of a
    seed), and the activations of the largest forward pass (:func:`..engine.plan.pass_bytes`).
    Time: each of the ``sources x directions x eps`` rows runs about ``N/2`` positions
    through the ``L - l0`` blocks at two FLOPs per weight, at the rate of :data:`_ASSUMED_FLOPS`,
    plus :data:`_CALL_OVERHEAD_S` per call (what dominates for tiny models and many seeds).
    """
    from ..engine.plan import pass_bytes
    from ..models import block_dims

    dims = block_dims(lm)
    n_read = lm.n_layers + 1 - l0
    per_block = (2 * dims.d_model * dims.n_heads * dims.head_dim + 2 * dims.d_model * dims.n_kv_heads * dims.head_dim
                 + 3 * dims.d_model * dims.d_ffn)
    result = float(n_eps) * n_read * n_sources * n_positions * 8
    memory = (3 if keep_full else 2) * result + float(n_sources) * n_directions * dims.d_model * 8
    if keep_full:
        memory += float(n_eps) * n_read * n_positions * n_positions * 8
    if passes > 1:  # stripes kept per call, and the seed list itself
        memory += float(passes) * (2 * n_read * n_sources * 8 + 64)
    rows = float(n_sources) * n_directions * n_eps
    memory += pass_bytes(lm, n_positions, int(rows), jvp=jvp)
    flops = passes * rows * max(n_positions / 2, 1) * (lm.n_layers - l0) * 2 * per_block
    seconds = flops / _ASSUMED_FLOPS.get(lm.device.type, 1e11) + passes * _CALL_OVERHEAD_S
    return memory, seconds


def _check_size(what: str, memory: float, seconds: float) -> None:
    """Refuse a run whose estimate exceeds the memory it may still take or :data:`MAX_SECONDS`; the
    message gives the estimate and the bound (:func:`..memory.memory_headroom`: the smallest of the
    available memory, the process's rlimits and its cgroup's limit)."""
    from ..memory import memory_headroom

    room = memory_headroom()
    if memory > room.bytes:
        raise CLIError(f"{what} needs about {_human_bytes(memory)} of memory for its results and passes, more than "
                       f"the {_human_bytes(room.bytes)} left under {room.source}; use fewer points, directions, seeds "
                       f"or a shorter length")
    if seconds > MAX_SECONDS:
        raise CLIError(f"{what} would take about {_human_seconds(seconds)} at an optimistic rate; the bound is "
                       f"{_human_seconds(MAX_SECONDS)}; use fewer points, directions, seeds, layers or a shorter length")
