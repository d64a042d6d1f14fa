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
- :mod:`.run`        :func:`run_bench`: one run of every scenario, assembled into the record
- :mod:`.summary`    the record as the performance page shows it (tables, chart data, numbers)
"""

from __future__ import annotations

from .clock import CLOCKS, PEAK_MEM_METHOD, Clock
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
    find_bench_json,
    load_record,
    write_json,
)
from .run import QUICK, run_bench
from .scenarios import FLOOR_SCHEDULES
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
    range_text,
    repeat_range,
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
