"""How well the engine uses a machine's cores: one job timed at one thread and at every core.

Why a scenario of its own: the other scenarios run at one thread (``make bench``), where CPU
seconds are steady on a shared machine; whether a second thread pays is a question of elapsed
time. The job is the one users run most, the induction scores at the canonical setting
(:data:`~residual_response.canonical.CANONICAL`), computed afresh each time (the results cache is
off). Repeats alternate the thread counts, so that a change of load on a shared machine hits
both alike; the load average (before every run, and at the end) and OpenMP's wait policy are
recorded beside the times.

At more than one thread the job's sequences run side by side in forked one-thread workers
(:mod:`..workers`), each computed as the one-thread run computes it. Each repeat also times the
job at the most threads with the workers switched off (``intra_op``: every operation split over
torch's intra-op threads, as before the workers), so that the record shows what each way gives on
the same machine at the same moment.
"""

from __future__ import annotations

import contextlib
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
    "speedup = wall at 1 thread / wall at the most threads (speedup_min: the same of the fastest repeats). At more "
    "than one thread the sequences run in forked one-thread workers (workers: how many); intra_op_wall_s: the most "
    "threads with the workers off (torch's intra-op threads only), intra_op_speedup its ratio. cpu_s: CPU seconds "
    "of this process (all threads) and of its workers over the same calls. load_average: the 1-minute load "
    "before every run (runs_load, in the order run) and the 1/5/15-minute load at the start and the end."
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
    speedup_min: float | None = None  # fastest repeat at 1 thread / fastest at the most threads
    workers: dict[str, int] | None = None  # thread count -> forked workers the job used
    intra_op_wall_s: float | None = None  # median at the most threads, workers off
    intra_op_runs: list[float] | None = None
    intra_op_speedup: float | None = None
    runs_load: list[list] | None = None  # [label, 1-minute load before the run] in the order run
    load_average_after: list[float] | None = None


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
    from ..workers import intra_op_only, last_workers

    T = CANONICAL["T"] if T is None else int(T)
    seeds = CANONICAL["seeds"] if seeds is None else int(seeds)
    counts = sorted({max(1, int(n)) for n in thread_counts})
    most = counts[-1]
    before = torch.get_num_threads()
    wall: dict = {n: [] for n in counts}
    cpu: dict = {n: [] for n in counts}
    used: dict[str, int] = {}
    if most > 1:
        wall["intra_op"], cpu["intra_op"] = [], []
    load = _load()
    runs_load = []

    def timed(label, n: int) -> None:
        torch.set_num_threads(n)
        runs_load.append([str(label), (_load() or [None])[0]])
        with (intra_op_only() if label == "intra_op" else contextlib.nullcontext()):
            w, c = time.perf_counter(), _cpu()
            induction_scores(lm, T=T, seeds=seeds, eps=CANONICAL["eps"], l0=CANONICAL["layer"])
            wall[label].append(time.perf_counter() - w)
            cpu[label].append(_cpu() - c)
            if label != "intra_op":
                used[str(n)] = last_workers()
        say(f"threads={n}{' (intra-op only)' if label == 'intra_op' else ''}: {wall[label][-1]:.2f} s wall, "
            f"{cpu[label][-1]:.2f} s CPU, load {runs_load[-1][1]}")

    try:
        with switched(False):
            torch.set_num_threads(counts[0])
            induction_scores(lm, T=min(T, 4), seeds=1, eps=CANONICAL["eps"], l0=CANONICAL["layer"])  # warm-up
            for rep in range(max(1, int(repeats))):
                order = [(n, n) for n in counts] + ([("intra_op", most)] if most > 1 else [])
                for label, n in (order if rep % 2 == 0 else order[::-1]):
                    timed(label, n)
    finally:
        torch.set_num_threads(before)
    one, top = _median(wall[counts[0]]), _median(wall[most])
    intra = _median(wall.get("intra_op"))
    first = counts[0] == 1
    return ThreadScaling(
        job=f"induction_scores({lm.name}, T={T}, seeds={seeds}, eps={CANONICAL['eps']:g}, l0={CANONICAL['layer']})",
        threads=counts, wall_s={str(n): _median(wall[n]) for n in counts}, cpu_s={str(n): _median(cpu[n]) for n in counts},
        runs={str(n): wall[n] for n in counts},
        speedup=None if not one or not top or not first else float(one / top),
        omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"), load_average=load, definition=THREAD_SCALING_DEFINITION,
        speedup_min=None if not wall[counts[0]] or not wall[most] or not first else
        float(min(wall[counts[0]]) / min(wall[most])),
        workers=used, intra_op_wall_s=intra, intra_op_runs=wall.get("intra_op"),
        intra_op_speedup=None if not one or not intra or not first else float(one / intra),
        runs_load=runs_load, load_average_after=_load(),
    )


def _cpu() -> float:
    """CPU seconds of this process and of its ended children (the forked workers, once joined):
    the provenance block's own count."""
    from ..provenance import _cpu_seconds

    return _cpu_seconds()


def _load() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
