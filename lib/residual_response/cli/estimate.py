"""What a command will cost, estimated before it runs: memory and time, refused beyond what is free
or a week."""

from __future__ import annotations

from ..checks import InputError
from ..memory import human_bytes as _human_bytes

__all__ = ["MAX_SECONDS", "check_size", "estimate"]


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


def estimate(lm, *, n_positions: int, sources, n_directions: int, n_eps: int, l0: int, passes: int = 1,
             keep_full: bool = False, jvp: bool = False) -> tuple[float, float]:
    """Rough memory (bytes) and time (seconds) of ``passes`` response calls perturbing ``sources``.

    Both from the package's one cost model (:mod:`residual_response.cost`): the memory of the
    results (:func:`~residual_response.cost.result_bytes`) and the activations of the largest
    forward pass (:func:`~residual_response.cost.pass_bytes`), and the FLOPs of the necessary work
    (:func:`~residual_response.cost.response_flops`) at the rate of :data:`_ASSUMED_FLOPS`, plus
    :data:`_CALL_OVERHEAD_S` per call (what dominates for tiny models and many seeds).
    """
    from ..cost import pass_bytes, response_flops, result_bytes

    sources = list(sources)
    memory = result_bytes(lm, n_positions=n_positions, n_sources=len(sources), n_directions=n_directions, n_eps=n_eps,
                          l0=l0, passes=passes, keep_full=keep_full)
    memory += pass_bytes(lm, n_positions, len(sources) * n_directions * n_eps, jvp=jvp)
    flops = passes * response_flops(lm, n_positions, sources, l0, rows_per_source=n_directions * n_eps)
    seconds = flops / _ASSUMED_FLOPS.get(lm.device.type, 1e11) + passes * _CALL_OVERHEAD_S
    return memory, seconds


def check_size(what: str, memory: float, seconds: float) -> None:
    """Refuse a run whose estimate exceeds the memory it may still take or :data:`MAX_SECONDS`; the
    message gives the estimate and the bound (:func:`..memory.memory_headroom`: the smallest of the
    available memory, the process's rlimits and its cgroup's limit)."""
    from ..memory import memory_headroom

    room = memory_headroom()
    if memory > room.bytes:
        raise InputError(f"{what} needs about {_human_bytes(memory)} of memory for its results and passes, more than "
                         f"the {_human_bytes(room.bytes)} left under {room.source}; use fewer points, directions, seeds "
                         f"or a shorter length")
    if seconds > MAX_SECONDS:
        raise InputError(f"{what} would take about {_human_seconds(seconds)} at an optimistic rate; the bound is "
                       f"{_human_seconds(MAX_SECONDS)}; use fewer points, directions, seeds, layers or a shorter length")
