"""How well the engine uses a machine's cores: one job timed at one thread and at every core.

Why a scenario of its own: the other scenarios run at one thread (``make bench``), where CPU
seconds are steady on a shared machine; whether a second thread pays is a question of elapsed
time. The job is the one users run most, the induction scores at the canonical setting
(:data:`~residual_response.canonical.CANONICAL`), computed afresh each time (the results cache is
off). Repeats alternate the thread counts, so that a change of load on a shared machine hits
both alike; the load average and OpenMP's wait policy are recorded beside the times.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..canonical import CANONICAL
from ..models import LoadedModel

__all__ = ["ThreadScaling", "THREAD_SCALING_DEFINITION", "thread_scaling"]

THREAD_SCALING_DEFINITION = (
    "Elapsed (wall-clock) seconds of induction_scores(lm, T, seeds, eps, l0=l0) with torch.set_num_threads(n), "
    "results cache off, for each thread count n; repeats alternate the order of the counts; medians per count; "
    "speedup = wall at 1 thread / wall at the most threads. cpu_s: CPU seconds of the process (all threads) over "
    "the same calls: with idle threads that spin, it grows with the thread count although no work is added."
)


@dataclass
class ThreadScaling:
    """The canonical induction job at each thread count (:func:`thread_scaling`)."""

    job: str
    threads: list[int]
    wall_s: dict[str, float | None]  # thread count (a JSON key, so a string) -> median seconds
    cpu_s: dict[str, float | None]
    runs: dict[str, list[float]]  # thread count -> wall seconds of every repeat
    speedup: float | None
    omp_wait_policy: str | None
    load_average: list[float] | None
    definition: str


def _median(xs) -> float | None:
    return float(np.median(xs)) if xs else None


def thread_scaling(lm: LoadedModel, thread_counts: Sequence[int], *, repeats: int = 3, T: int | None = None,
                   seeds: int | None = None, say: Callable[[str], None] = lambda _m: None) -> ThreadScaling:
    """Time :func:`~residual_response.induction.induction_scores` at each of ``thread_counts``.

    ``T`` and ``seeds`` default to the canonical setting; the thread count in force before is restored.
    """
    import torch

    from ..induction import induction_scores
    from ..results_cache import switched

    T = CANONICAL["T"] if T is None else int(T)
    seeds = CANONICAL["seeds"] if seeds is None else int(seeds)
    counts = sorted({max(1, int(n)) for n in thread_counts})
    before = torch.get_num_threads()
    wall: dict[int, list[float]] = {n: [] for n in counts}
    cpu: dict[int, list[float]] = {n: [] for n in counts}
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    try:
        with switched(False):
            torch.set_num_threads(counts[0])
            induction_scores(lm, T=min(T, 4), seeds=1, eps=CANONICAL["eps"], l0=CANONICAL["layer"])  # warm-up
            for rep in range(max(1, int(repeats))):
                for n in (counts if rep % 2 == 0 else counts[::-1]):
                    torch.set_num_threads(n)
                    w, c = time.perf_counter(), time.process_time()
                    induction_scores(lm, T=T, seeds=seeds, eps=CANONICAL["eps"], l0=CANONICAL["layer"])
                    wall[n].append(time.perf_counter() - w)
                    cpu[n].append(time.process_time() - c)
                    say(f"threads={n}: {wall[n][-1]:.2f} s wall, {cpu[n][-1]:.2f} s CPU")
    finally:
        torch.set_num_threads(before)
    one, most = _median(wall[counts[0]]), _median(wall[counts[-1]])
    return ThreadScaling(
        job=f"induction_scores({lm.name}, T={T}, seeds={seeds}, eps={CANONICAL['eps']:g}, l0={CANONICAL['layer']})",
        threads=counts, wall_s={str(n): _median(wall[n]) for n in counts}, cpu_s={str(n): _median(cpu[n]) for n in counts},
        runs={str(n): wall[n] for n in counts},
        speedup=None if not one or not most or counts[0] != 1 else float(one / most),
        omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"), load_average=load, definition=THREAD_SCALING_DEFINITION,
    )
