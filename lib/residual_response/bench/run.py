"""One run of the benchmark: :func:`run_bench` measures naive, engine and floor (the package's
docstring says how) and assembles the record."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch

from ..models import LoadedModel, load_model
from ..results_cache import switched
from .clock import Clock, MemoryLog
from .record import BenchRecord, assemble
from .scenarios import FLOOR_SCHEDULES, BenchInput, LengthPoint, growth_in_length, one_tensor, time_section_map
from .threads import thread_scaling

__all__ = ["QUICK", "run_bench"]


#: Settings of ``--quick`` (a smoke test of the whole bench in about a minute).
QUICK = dict(T=8, repeats=1, growth_T=(4, 8, 12), floor_schedules=("exact", "chunk-8", "planned", "packed"))


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[int]:
    """``torch.set_num_threads(threads)`` inside the block (``None``: leave it); yields the count in force."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def run_bench(
    model: str | LoadedModel = "smollm2-135m",
    *,
    T: int = 40,
    eps: float = 1e-2,
    seed: int = 0,
    repeats: int = 3,
    section_repeats: int = 1,
    growth_repeats: int = 1,
    clock: str = "wall",
    device: str = "cpu",
    dtype: str = "float32",
    threads: int | None = 1,
    floor_schedules: Sequence[str] = FLOOR_SCHEDULES,
    naive_l0: Sequence[int] | None = None,
    section: bool = True,
    growth_T: Sequence[int] = (10, 20, 40, 80),
    naive_growth_max_T: int | None = None,
    quick: bool = False,
    thread_counts: Sequence[int] | None = None,
    log: Callable[[str], None] | None = print,
) -> BenchRecord:
    """Measure naive, engine and floor (see the module docstring) and return the bench record.

    Args:
        model: registry name (loaded with ``device``/``dtype``) or a loaded model.
        T: length of one copy of the repeated sequence (``N = 2T + 1`` with BOS).
        eps: relative perturbation strength (one value; one Gaussian direction per source).
        repeats: repeats of the one-tensor measurement (naive, engine, floor); medians are reported.
        section_repeats, growth_repeats: how many of those repeats also time the section map and
            the growth series (at most ``repeats``). Why fewer: on one CPU thread a section map of
            SmolLM2 costs ~15 minutes a repeat, and its ratio moves less than the one-tensor
            times, which are short enough to be disturbed by other load.
        clock: ``"wall"`` or ``"cpu"`` (see :data:`CLOCKS`; ``"cpu"`` is refused on CUDA).
        threads: ``torch.set_num_threads`` for the run (``None``: leave it). One thread gives
            stable times on a shared CPU; the ratios compare like with like either way.
        floor_schedules: schedules timed for the floor at ``l0 = 0`` (see :data:`FLOOR_DEFINITION`).
        naive_l0: ``l0`` values in ``0..L-1`` at which the naive section map is measured (default
            ``L//2, L-1``; ``0`` is always measured).
        section: also time the full section map (every ``l0``).
        growth_T: lengths for the growth with sequence length (engine; floor and naive up to
            ``naive_growth_max_T``, default ``T``, as they cost the most).
        quick: only recorded (:data:`QUICK` holds the settings of a smoke test; its thread scaling
            runs at T = 8 with 2 seeds).
        thread_counts: also time the canonical job at these thread counts (:func:`~.threads.thread_scaling`).
        log: progress lines (``None``: quiet).
    """
    say = log or (lambda _msg: None)
    timer = Clock(clock, model.device if isinstance(model, LoadedModel) else device)
    repeats = max(1, int(repeats))
    section_repeats = min(repeats, max(1, int(section_repeats)))
    growth_repeats = min(repeats, max(1, int(growth_repeats)))
    naive_growth_max_T = T if naive_growth_max_T is None else naive_growth_max_T
    with _torch_threads(threads) as n_threads, switched(False):  # the bench times work, never a stored result
        lm = model if isinstance(model, LoadedModel) else load_model(model, device=device, dtype=dtype)
        L = lm.n_layers
        naive_l0 = sorted({0, *(int(x) for x in (naive_l0 if naive_l0 is not None else (L // 2, L - 1)))})
        if not all(0 <= l0 < L for l0 in naive_l0):
            raise ValueError(f"naive_l0 must lie in 0..{L - 1} for {lm.name}, got {naive_l0}")
        b = BenchInput.prepare(lm, T, eps, seed, timer, MemoryLog(lm.device))
        say(f"[bench] {lm.name} {str(lm.dtype).replace('torch.', '')} on {lm.device}, {n_threads} thread(s): "
            f"T={T} N={b.N} L={L}, {repeats} repeat(s)")
        one, sections, lengths = [], [], {int(t): [] for t in growth_T}
        for rep in range(repeats):
            rep_say = lambda msg, rep=rep: say(f"[bench] repeat {rep + 1}: {msg}")  # noqa: E731
            one.append(one_tensor(b, floor_schedules, rotate=rep, say=rep_say))
            best = one[-1].floor.best
            if section and rep < section_repeats:
                sections.append(time_section_map(b, best, naive_l0, one[-1].naive_s, rotate=rep, say=rep_say))
            for t_len in (lengths if rep < growth_repeats else []):
                lengths[t_len].append(LengthPoint.of(b, one[-1]) if t_len == T else
                                      growth_in_length(b.at_length(t_len), best, t_len <= naive_growth_max_T, rep_say))
        scaling = None if not thread_counts else thread_scaling(
            lm, thread_counts, repeats=repeats, T=8 if quick else None, seeds=2 if quick else None,
            say=lambda msg: say(f"[bench] thread scaling: {msg}"))
        return assemble(b, one=one, sections=sections, lengths=lengths, schedules=list(floor_schedules),
                        naive_l0=naive_l0, threads=n_threads, repeats=repeats, section_repeats=section_repeats,
                        growth_repeats=growth_repeats, quick=quick, scaling=scaling)
