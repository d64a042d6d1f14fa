"""How fast the response engine is: against the loop a researcher writes first, and against a floor.

``scripts/bench.py`` is the command line; ``make bench`` runs ``scripts/bench.py --clock cpu --out
bench.json``, and the book's performance page shows that record. Three ways to get the same
response tensor ``chi[l, s, t]`` of one sequence (one direction, one ``eps``, every source ``s``,
every read stream ``l >= l0``):

* **naive** (:func:`~.floor.naive_response`): for each source one full forward pass of the causal
  LM, LM head included, ``output_hidden_states=True``, a pre-hook on block ``l0`` that adds the
  perturbation; ``h[L]`` (before the final norm) from a hook on the last block.
* **engine**: :func:`residual_response.engine.response`.
* **floor** (:func:`~.floor.floor_passes`): plain forward passes that do only the necessary work;
  see :data:`~.record.FLOOR_DEFINITION`.

The section map repeats this at every ``l0 = 0..L-1`` (reading every ``l >= l0``). Its naive
cost does not depend on ``l0`` (the naive loop always runs the whole model), so it is measured at
a few ``l0`` and multiplied by ``L`` (:data:`~.record.NAIVE_SECTION_DEFINITION`).

Times are seconds on the run's :class:`~.clock.Clock`: CPU seconds of the bench process with
``clock="cpu"`` (what ``make bench`` uses: the work done, steady on a shared CPU), elapsed seconds
with ``clock="wall"`` (the default of :func:`run_bench` and ``scripts/bench.py``, and the only one
on a GPU); the record names its clock. Medians over repeats; the measurements of one repeat are
interleaved (naive, engine, floor, ...), so that a change of load on a shared machine hits all of
them alike. Ratios are formed from the medians.

Modules:

- :mod:`.cost`       the cost model: FLOPs of the work, times at a measured or an assumed rate
- :mod:`.clock`      the clock scenarios time with, and peak memory (an RSS sampler per phase)
- :mod:`.floor`      the naive loop and the floor's plain passes
- :mod:`.scenarios`  one function per scenario (one tensor, section map, growth), one repeat each
- :mod:`.threads`    the canonical job at one thread and at every core (does a second core pay?)
- :mod:`.record`     the typed, versioned record (``bench.json``), its verdicts and definitions
- :mod:`.summary`    the record as the performance page shows it (tables, chart data, numbers)
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch

from ..models import LoadedModel, load_model
from .clock import CLOCKS, PEAK_MEM_METHOD, Clock, MemoryLog
from .cost import (
    BOOK_WORKLOADS,
    H100_TFLOPS,
    PAPER_MODELS,
    block_params,
    engine_rate_gflops,
    flop_summary,
    gpu_estimates,
    non_embedding_params,
    paper_block_params,
    paper_cost,
    response_token_forwards,
)
from .floor import floor_passes, naive_response
from .record import (
    FLOOR_DEFINITION,
    NAIVE_DEFINITION,
    NAIVE_SECTION_DEFINITION,
    SCHEMA_VERSION,
    TARGETS,
    BenchRecord,
    RecordError,
    assemble,
    find_bench_json,
    load_record,
    write_json,
)
from .scenarios import FLOOR_SCHEDULES, BenchInput, LengthPoint, growth_in_length, one_tensor, time_section_map
from .threads import THREAD_SCALING_DEFINITION, ThreadScaling, thread_scaling
from . import summary
from .summary import (
    cost_table,
    describe_run,
    floor_table,
    h100_tflops,
    half_map_share,
    timing_numbers,
    timing_table,
    layers_frame,
    length_frame,
    length_slope,
    memory_table,
    page_record,
)

__all__ = [
    "run_bench",
    "QUICK",
    "ThreadScaling",
    "THREAD_SCALING_DEFINITION",
    "thread_scaling",
    "FLOOR_SCHEDULES",
    "CLOCKS",
    "Clock",
    "BenchRecord",
    "RecordError",
    "SCHEMA_VERSION",
    "TARGETS",
    "FLOOR_DEFINITION",
    "NAIVE_DEFINITION",
    "NAIVE_SECTION_DEFINITION",
    "PEAK_MEM_METHOD",
    "naive_response",
    "floor_passes",
    "load_record",
    "write_json",
    "find_bench_json",
    "PAPER_MODELS",
    "BOOK_WORKLOADS",
    "H100_TFLOPS",
    "non_embedding_params",
    "block_params",
    "paper_block_params",
    "paper_cost",
    "engine_rate_gflops",
    "response_token_forwards",
    "gpu_estimates",
    "flop_summary",
    *summary.__all__,
]

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
    from ..results_cache import switched

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
