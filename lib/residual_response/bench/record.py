"""The bench record: what ``bench.json`` holds, typed and versioned, with its verdicts and definitions.

Why typed: the performance page, the model pages and ``scripts/bench.py`` read the same record;
a dataclass names every field once, and :meth:`BenchRecord.from_json` refuses a file it cannot
read with one error that says what to do (rerun ``make bench``) instead of a ``KeyError`` deep in
a page. Why versioned: records are kept in the repository (``bench.json``, ``benchmarks/``) and
outlive the code that wrote them. ``schema_version`` 1 is a record without the field (written
before the record had a version); it loads, with the verdicts it lacks added from its own
targets. Version 2 adds ``schema_version`` and the section map's verdict on ``max_rel_diff``;
version 3 the optional ``thread_scaling`` (the canonical job at one thread and at every core).

The JSON keys are flat (``speedup``, ``engine_s``, ``section_map.speedup`` ...) as the pages
and the README quote them. The verdicts against :data:`TARGETS` are computed once, when the
record is made (:func:`verdicts`), and stored in ``targets_met``; readers take them from there.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch

from ..io import write_json_atomic
from ..models import LoadedModel
from .clock import PEAK_MEM_METHOD, Clock, maxrss_mb
from .cost import block_params, flop_summary
from .scenarios import BenchInput, LengthPoint, OneTensor, SectionMapRun, row_positions
from .threads import ThreadScaling

__all__ = [
    "SCHEMA_VERSION",
    "TARGETS",
    "NAIVE_DEFINITION",
    "ENGINE_DEFINITION",
    "FLOOR_DEFINITION",
    "NAIVE_SECTION_DEFINITION",
    "GROWTH_EXPECTED_LENGTH",
    "GROWTH_EXPECTED_LAYERS",
    "RERUN_HINT",
    "RecordError",
    "Flops",
    "SectionMapTiming",
    "LengthRow",
    "LayersRow",
    "Growth",
    "BenchRecord",
    "verdicts",
    "assemble",
    "load_record",
    "write_json",
    "find_bench_json",
]

#: Version of the record's layout (see the module docstring).
SCHEMA_VERSION = 3

#: Targets of the performance issue (speed is measured, not asserted by the tests).
TARGETS = {"speedup": 3.0, "section_map_speedup": 5.0, "floor_fraction": 0.7, "max_rel_diff": 1e-4,
           "thread_speedup": 1.8}
#: ``max_rel_diff`` target in 16-bit formats: their rounding differs between batch shapes.
TARGET_MAX_REL_DIFF_16BIT = 5e-2

NAIVE_DEFINITION = (
    "For each source s (0..N-1): one forward pass of the whole causal LM on the N tokens (batch 1, "
    "LM head included, output_hidden_states=True) with a forward pre-hook on block l0 that adds "
    "eps*||h[l0,s]||*u to position s; the streams h[l0..L] (h[L] from a hook on the last block, before "
    "the final norm) are compared with one clean pass of the same kind."
)
ENGINE_DEFINITION = (
    "residual_response.engine.response(lm, tokens, [eps], l0=l0, n_directions=1, seed=seed): "
    "every source, read layers l0..L; the section map calls it for l0 = 0..L-1 inside "
    "reuse_clean_passes() (one clean pass for all l0)"
)
FLOOR_DEFINITION = (
    "floor_s = one clean forward pass of the decoder stack over the N tokens (the unperturbed streams "
    "and keys/values that every method needs; timed) + the fastest of several schedules of plain "
    "perturbed forward passes, each the engine's own pass (engine.PaddedPass / engine.PackedPass) run with "
    "nothing read. Every pass runs blocks l0..L-1 only (earlier blocks are pass-throughs, "
    "the perturbed h[l0] is written into block l0), computes for its rows only positions p..N-1 "
    "(p = smallest source of the pass) with the clean keys/values of positions < p handed in as a cache, "
    "never runs the final norm or the LM head, and records nothing (only the hooks that write h[l0] "
    "and stop after the last block; no hooks reading streams); inputs and caches are built before the clock starts. Schedules: 'exact' = one pass per source s over positions s..N-1 "
    "(exactly the necessary row-positions, sum_s (N-s)); 'chunk-b' = sources in order, b rows per padded pass; "
    "'planned' = padded passes cut by the engine's planner (engine.plan_batches); 'packed' = the "
    "engine's packed pass (every row's positions s..N-1 end to end, attention on a padded copy with the "
    "clean keys/values before s) with nothing read. Section map: one clean pass + for every l0 the passes "
    "of the schedule that was fastest at l0=0 in the same repeat."
)
NAIVE_SECTION_DEFINITION = (
    "The naive loop runs the whole model for every source whatever l0 is, so its section-map cost is "
    "L x the naive time of one l0. It is measured at a few l0 (naive_l0_measured; l0=0 is the one-tensor "
    "run of the same repeat) and extrapolated as L x their mean, per repeat; the median over repeats is "
    "reported. max_rel_diff compares naive and engine chi at those l0."
)
GROWTH_EXPECTED_LENGTH = (
    "rows = N sources; row s computes positions s..N-1, so row-positions = N(N+1)/2 ~ N^2/2 (naive: "
    "N x N = N^2 plus the LM head on every position); attention adds a term ~ N^3 (each position attends "
    "to <= N keys) that is small at these N next to the matrix products (~ d x (4 d + 3 d_ffn) per "
    "position and block). Expected: time ~ N^2, steepening towards N^3 for long sequences."
)
GROWTH_EXPECTED_LAYERS = (
    "perturbing at l0 runs blocks l0..L-1: time(l0) ~ (L - l0) x one block's work + one clean pass "
    "(shared across l0 in the section map). The section map sums this over l0: ~ L(L+1)/2 block-passes, "
    "against L x L for the naive loop."
)

#: What a reader of an unreadable record should do.
RERUN_HINT = "rerun `make bench` (scripts/bench.py --clock cpu --out bench.json) to write a record this library reads"


def _timing_definition(clock: Clock) -> str:
    return (clock.description + ", median over repeats of interleaved measurements (the order of naive, "
            "engine and floor rotates between repeats); speedup = naive_s / engine_s and floor_fraction = "
            "floor_s / engine_s from the medians")


class RecordError(ValueError):
    """A bench record this library cannot read (its message ends with :data:`RERUN_HINT`)."""


# --------------------------------------------------------------------------------------------
# the typed record
# --------------------------------------------------------------------------------------------


def _fields_of(cls, data: Any, where: str) -> dict:
    """``data``'s entries, checked against ``cls``'s fields (every required one present, no unknown one)."""
    if not isinstance(data, Mapping):
        raise RecordError(f"{where} is a {type(data).__name__}, not an object")
    names = {f.name for f in fields(cls)}
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    missing = [k for k in required if k not in data]
    unknown = [k for k in data if k not in names]
    if missing or unknown:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown {', '.join(unknown)}"] if unknown else [])
        raise RecordError(f"{where}: " + "; ".join(problems))
    return dict(data)


@dataclass
class Flops:
    """FLOPs of one tensor and of the section map, naive and necessary (:func:`~.cost.flop_summary`)."""

    naive: float
    necessary: float
    ratio: float
    section_map_naive: float
    section_map_necessary: float
    section_map_ratio: float


@dataclass
class SectionMapTiming:
    """The section map (every ``l0``): medians over the section repeats; the naive loop extrapolated."""

    l0: list[int]
    read_layers: str
    naive_s: float | None
    naive_extrapolated: bool
    naive_extrapolation: str
    naive_l0_measured: list[int]
    naive_s_by_l0: dict[str, float | None]  # l0 (as JSON keys are strings) -> median seconds
    engine_s: float | None
    floor_s: float | None
    speedup: float | None
    floor_fraction: float | None
    max_rel_diff: float  # engine against naive at every measured l0, the one-tensor runs included
    floor_schedule: list[str]  # per section repeat
    runs: dict[str, list[float]]  # engine, floor, naive_extrapolated: one value per section repeat


@dataclass
class LengthRow:
    """The one-tensor times at one sequence length (``None``: not timed at that length)."""

    T: int
    N: int
    naive_s: float | None
    engine_s: float | None
    floor_s: float | None
    row_positions_necessary: int


@dataclass
class LayersRow:
    """The section map's times at one ``l0`` (``layers_run = L - l0`` blocks)."""

    l0: int
    layers_run: int
    engine_s: float | None
    floor_s: float | None


@dataclass
class Growth:
    """The cost against the sequence length and against the number of blocks run, with what is expected."""

    sequence_length: list[LengthRow]
    sequence_length_expected: str
    layers: list[LayersRow]  # empty when the section map was skipped
    layers_expected: str


@dataclass(kw_only=True)
class BenchRecord:
    """One bench run: its setting, the medians of naive, engine and floor, and the verdicts.

    Seconds are on the run's clock (``clock``: ``"cpu"`` or ``"wall"``; ``definitions["timing"]``
    says which). ``speedup = naive_s / engine_s``, ``floor_fraction = floor_s / engine_s`` (from
    the medians; ``None`` where a time is missing or zero). ``runs`` holds every repeat's time.
    """

    schema_version: int = SCHEMA_VERSION
    created: str
    model: str
    family: str
    device: str
    dtype: str
    threads: int
    clock: str
    T: int
    N: int
    n_layers: int
    d_model: int
    non_embedding_params: int
    vocab_size: int
    eps: float
    n_directions: int
    seed: int
    repeats: int
    section_repeats: int
    growth_repeats: int
    quick: bool
    naive_s: float | None
    engine_s: float | None
    floor_s: float | None
    speedup: float | None
    floor_fraction: float | None
    max_rel_diff: float
    floor_schedule: str
    floor_schedules_s: dict[str, float | None]
    floor_clean_pass_s: float | None
    row_positions: dict[str, int | None]
    engine_meta: dict | None
    runs: dict[str, list[float]]
    section_map: SectionMapTiming | None = None
    growth: Growth
    flops: Flops
    engine_gflops_per_s: float | None
    naive_gflops_per_s: float | None
    peak_mem_mb: float
    peak_mem_method: str
    peak_mem_by_phase_mb: dict[str, float]
    cuda_peak_allocated_mb_by_phase: dict[str, float] | None = None
    model_weights_mb: float
    targets: dict[str, float]
    targets_met: dict[str, bool]
    definitions: dict[str, str]
    environment: dict[str, Any]
    bench_wall_s: float | None = None  # the whole run, wall clock (set by scripts/bench.py)
    thread_scaling: ThreadScaling | None = None  # the canonical job at 1 thread and at every core

    _OPTIONAL: ClassVar[tuple[str, ...]] = ("section_map", "cuda_peak_allocated_mb_by_phase", "bench_wall_s",
                                            "thread_scaling")

    def to_json(self) -> dict:
        """The record as ``bench.json`` holds it (optional parts left out when absent)."""
        out = asdict(self)
        for key in self._OPTIONAL:
            if out[key] is None:
                del out[key]
        return out

    @classmethod
    def from_json(cls, data: Any) -> BenchRecord:
        """Read a record (the dict of ``bench.json``); :class:`RecordError` if it cannot be read.

        A version-1 record (no ``schema_version``) gets the verdicts it lacks from its own targets.
        """
        if not isinstance(data, Mapping):
            raise RecordError(f"a bench record is a JSON object, not a {type(data).__name__}; {RERUN_HINT}")
        version = data.get("schema_version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= SCHEMA_VERSION:
            raise RecordError(f"bench record of schema_version {version!r}; this library reads versions "
                              f"1..{SCHEMA_VERSION}; {RERUN_HINT}")
        try:
            d = _fields_of(cls, {**data, "schema_version": SCHEMA_VERSION}, "bench record")
            if d.get("section_map") is not None:
                d["section_map"] = SectionMapTiming(**_fields_of(SectionMapTiming, d["section_map"], "section_map"))
            g = _fields_of(Growth, d["growth"], "growth")
            g["sequence_length"] = [LengthRow(**_fields_of(LengthRow, r, "growth.sequence_length[]"))
                                    for r in g["sequence_length"]]
            g["layers"] = [LayersRow(**_fields_of(LayersRow, r, "growth.layers[]")) for r in g["layers"]]
            d["growth"] = Growth(**g)
            d["flops"] = Flops(**_fields_of(Flops, d["flops"], "flops"))
            if d.get("thread_scaling") is not None:
                d["thread_scaling"] = ThreadScaling(**_fields_of(ThreadScaling, d["thread_scaling"], "thread_scaling"))
        except RecordError as exc:
            raise RecordError(f"{exc}; {RERUN_HINT}") from None
        if version == 1:
            d["targets_met"] = {**verdicts(d["targets"], speedup=d["speedup"], floor_fraction=d["floor_fraction"],
                                           max_rel_diff=d["max_rel_diff"], section_map=d.get("section_map")),
                                **d["targets_met"]}
        return cls(**d)


def verdicts(targets: Mapping[str, float], *, speedup: float | None, floor_fraction: float | None,
             max_rel_diff: float, section_map: SectionMapTiming | None,
             thread_scaling: ThreadScaling | None = None) -> dict[str, bool]:
    """Which of ``targets`` a run met (a missing ratio meets none): speedups and floor fractions at
    least their target, ``max_rel_diff`` at most its own (one tensor and section map)."""

    def at_least(x, target):
        return x is not None and x >= target

    met = {
        "speedup": at_least(speedup, targets["speedup"]),
        "floor_fraction": at_least(floor_fraction, targets["floor_fraction"]),
        "max_rel_diff": max_rel_diff <= targets["max_rel_diff"],
    }
    if section_map is not None:
        met["section_map_speedup"] = at_least(section_map.speedup, targets["section_map_speedup"])
        met["section_map_floor_fraction"] = at_least(section_map.floor_fraction, targets["floor_fraction"])
        met["section_map_max_rel_diff"] = section_map.max_rel_diff <= targets["max_rel_diff"]
    if thread_scaling is not None and "thread_speedup" in targets:
        met["thread_speedup"] = at_least(thread_scaling.speedup, targets["thread_speedup"])
    return met


# --------------------------------------------------------------------------------------------
# from the scenarios' repeats to the record
# --------------------------------------------------------------------------------------------


def _median(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.median(xs)) if xs else None


def _ratio(a, b) -> float | None:
    return None if a is None or b is None or b == 0 else float(a / b)


def _section_map(L: int, naive_l0: Sequence[int], one: Sequence[OneTensor],
                 runs: Sequence[SectionMapRun]) -> SectionMapTiming:
    naive_by_l0 = {l0: [r.naive_s_by_l0[l0] for r in runs] for l0 in naive_l0}
    naive_by_l0[0] = [o.naive_s for o in one]  # l0 = 0: every repeat's one-tensor time
    naive, engine, floor = (_median([getattr(r, k) for r in runs])
                            for k in ("naive_extrapolated_s", "engine_s", "floor_s"))
    return SectionMapTiming(
        l0=list(range(L)),
        read_layers="l0..L for every l0",
        naive_s=naive,
        naive_extrapolated=True,
        naive_extrapolation=NAIVE_SECTION_DEFINITION,
        naive_l0_measured=list(naive_l0),
        naive_s_by_l0={str(l0): _median(naive_by_l0[l0]) for l0 in naive_l0},
        engine_s=engine,
        floor_s=floor,
        speedup=_ratio(naive, engine),
        floor_fraction=_ratio(floor, engine),
        max_rel_diff=max([d for r in runs for d in r.rel_diffs] + [o.max_rel_diff for o in one]),
        floor_schedule=[r.schedule for r in runs],
        runs={"engine": [r.engine_s for r in runs], "floor": [r.floor_s for r in runs],
              "naive_extrapolated": [r.naive_extrapolated_s for r in runs]},
    )


def _growth(L: int, lengths: Mapping[int, Sequence[LengthPoint]], sections: Sequence[SectionMapRun]) -> Growth:
    seq = []
    for t, points in sorted(lengths.items()):
        n = points[0].N
        seq.append(LengthRow(T=int(t), N=n, naive_s=_median(p.naive_s for p in points),
                             engine_s=_median(p.engine_s for p in points), floor_s=_median(p.floor_s for p in points),
                             row_positions_necessary=n * (n + 1) // 2))
    layers = [LayersRow(l0=l0, layers_run=L - l0, engine_s=_median(r.engine_s_by_l0[l0] for r in sections),
                        floor_s=_median(r.floor_s_by_l0[l0] for r in sections))
              for l0 in range(L)] if sections else []
    return Growth(seq, GROWTH_EXPECTED_LENGTH, layers, GROWTH_EXPECTED_LAYERS)


def _environment(lm: LoadedModel) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cuda_device": torch.cuda.get_device_name(lm.device) if lm.device.type == "cuda" else None,
    }


def assemble(b: BenchInput, *, one: Sequence[OneTensor], sections: Sequence[SectionMapRun],
             lengths: Mapping[int, Sequence[LengthPoint]], schedules: Sequence[str], naive_l0: Sequence[int],
             threads: int, repeats: int, section_repeats: int, growth_repeats: int, quick: bool,
             scaling: ThreadScaling | None = None) -> BenchRecord:
    """The record of a run: medians and ratios of the scenarios' repeats, FLOPs, memory, verdicts.

    ``one``: every repeat of :func:`~.scenarios.one_tensor`; ``sections``: the repeats of
    :func:`~.scenarios.section_map` (empty: the section map was skipped); ``lengths``: the
    growth points by copy length ``T``; ``section_repeats``, ``growth_repeats``: as requested
    (``section_repeats`` is recorded as 0 when the section map was skipped).
    """
    lm, L, N = b.lm, b.lm.n_layers, b.N
    runs = {"naive": [o.naive_s for o in one], "engine": [o.engine_s for o in one],
            "floor": [o.floor_s for o in one], "floor_clean": [o.floor.clean_s for o in one],
            **{f"floor:{name}": [o.floor.schedules_s[name] for o in one] for name in schedules}}
    naive_s, engine_s, floor_s = (_median(runs[k]) for k in ("naive", "engine", "floor"))
    floor_schedules_s = {name: _median(runs[f"floor:{name}"]) for name in schedules}
    engine_meta = one[-1].engine_meta
    sm = _section_map(L, naive_l0, one, sections) if sections else None
    params = block_params(lm)
    flops = Flops(**flop_summary(N, L, params, lm.vocab_size * lm.d_model))
    targets = dict(TARGETS)
    if lm.dtype in (torch.bfloat16, torch.float16):
        targets["max_rel_diff"] = TARGET_MAX_REL_DIFF_16BIT
    speedup, floor_fraction = _ratio(naive_s, engine_s), _ratio(floor_s, engine_s)
    max_rel_diff = max(o.max_rel_diff for o in one)
    return BenchRecord(
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        model=lm.name, family=lm.family, device=str(lm.device), dtype=str(lm.dtype).replace("torch.", ""),
        threads=threads, clock=b.clock.kind, T=b.T, N=N, n_layers=L, d_model=lm.d_model,
        non_embedding_params=params, vocab_size=lm.vocab_size, eps=b.eps, n_directions=1, seed=b.seed,
        repeats=repeats, section_repeats=section_repeats if sections else 0, growth_repeats=growth_repeats,
        quick=quick, naive_s=naive_s, engine_s=engine_s, floor_s=floor_s, speedup=speedup,
        floor_fraction=floor_fraction, max_rel_diff=max_rel_diff,
        floor_schedule=min(floor_schedules_s, key=floor_schedules_s.get), floor_schedules_s=floor_schedules_s,
        floor_clean_pass_s=_median(runs["floor_clean"]), row_positions=row_positions(b, schedules, engine_meta),
        engine_meta=engine_meta, runs=runs, section_map=sm, growth=_growth(L, lengths, sections), flops=flops,
        engine_gflops_per_s=flops.necessary / engine_s / 1e9 if engine_s else None,
        naive_gflops_per_s=flops.naive / naive_s / 1e9 if naive_s else None,
        peak_mem_mb=maxrss_mb(), peak_mem_method=PEAK_MEM_METHOD, peak_mem_by_phase_mb=dict(b.memory.rss_mb),
        cuda_peak_allocated_mb_by_phase=dict(b.memory.cuda_mb) or None,
        model_weights_mb=sum(p.numel() * p.element_size() for p in lm.model.parameters()) / 2**20,
        targets=targets,
        targets_met=verdicts(targets, speedup=speedup, floor_fraction=floor_fraction, max_rel_diff=max_rel_diff,
                             section_map=sm, thread_scaling=scaling),
        thread_scaling=scaling,
        definitions={"naive": NAIVE_DEFINITION, "engine": ENGINE_DEFINITION, "floor": FLOOR_DEFINITION,
                     "timing": _timing_definition(b.clock)},
        environment=_environment(lm),
    )


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------


def _jsonable(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def write_json(record: BenchRecord | Mapping, path: str | os.PathLike) -> Path:
    """Write ``record`` as JSON atomically (temp file in the same folder, then rename; see :mod:`..io`)."""
    data = record.to_json() if isinstance(record, BenchRecord) else dict(record)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(path, data, default=_jsonable)


def load_record(path: str | os.PathLike) -> BenchRecord:
    """The record in ``path``; :class:`RecordError` naming the file and what to do if it cannot be read."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path}: not a readable bench record ({exc}); {RERUN_HINT}") from None
    try:
        return BenchRecord.from_json(data)
    except RecordError as exc:
        raise RecordError(f"{path}: {exc}") from None


def find_bench_json(extra: Sequence[str | os.PathLike] = ()) -> Path | None:
    """The repository's ``bench.json`` (written by ``make bench``), or the first of ``extra`` that exists."""
    repo = Path(__file__).resolve().parents[3]  # lib/residual_response/bench/record.py
    for p in [*map(Path, extra), repo / "bench.json", Path.cwd() / "bench.json"]:
        if p.is_file():
            return p
    return None
