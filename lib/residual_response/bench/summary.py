"""The bench record as the performance page shows it: the record to show, its tables, chart data and numbers.

Why here and not in the page: the page only calls, shows and asserts; what a table holds, which
line is "expected" in a chart and how a growth exponent is read are decisions about the bench,
tested with it. Every function takes a :class:`~.record.BenchRecord` and returns a pandas
``DataFrame``, a number or a sentence.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .cost import engine_rate_gflops
from .record import BenchRecord, find_bench_json, load_record

__all__ = [
    "h100_tflops",
    "page_record",
    "describe_run",
    "timing_table",
    "timing_numbers",
    "repeat_range",
    "range_text",
    "floor_table",
    "length_frame",
    "length_slope",
    "layers_frame",
    "half_map_share",
    "memory_table",
    "cost_table",
]


def h100_tflops(bf16_low: float, bf16_high: float, fp32_low: float, fp32_high: float) -> dict[str, tuple[float, float]]:
    """The assumed sustained H100 throughputs (TFLOP/s) as :func:`~.cost.paper_cost` takes them.

    Raises ``ValueError`` unless ``0 < low <= high`` for both formats.
    """
    out = {"bfloat16": (bf16_low, bf16_high), "float32": (fp32_low, fp32_high)}
    for name, (lo, hi) in out.items():
        if not 0 < lo <= hi:
            raise ValueError(f"{name} throughput must satisfy 0 < low <= high, got {lo}, {hi}")
    return out


def page_record(bench_json: str | os.PathLike = "", *, fallback_model: str, fallback_T: int, fallback_repeats: int,
                device: str = "cpu") -> tuple[BenchRecord, str]:
    """The record the page shows, and a phrase saying where it comes from.

    ``bench_json``: a record's path (it must exist); empty: the repository's ``bench.json``
    (:func:`~.record.find_bench_json`) if there is one, else a quick bench run here on
    ``fallback_model`` (copy length ``fallback_T``, ``fallback_repeats`` repeats) so that the page
    always shows executed numbers. Every argument is checked before anything runs; a record that
    cannot be read raises :class:`~.record.RecordError` saying to rerun ``make bench``.
    """
    for name, value in [("fallback_T", fallback_T), ("fallback_repeats", fallback_repeats)]:
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if bench_json:
        path = Path(bench_json).expanduser()
        if not path.is_file():
            raise ValueError(f"bench_json={str(bench_json)!r} does not exist; run `make bench` or pass \"\"")
    else:
        path = find_bench_json()
    if path is not None:
        rec = load_record(path)
        return rec, f"`{path.name}` written by `scripts/bench.py` on {rec.created}"
    from .run import QUICK, run_bench

    growth_T = tuple(sorted({max(2, fallback_T // 2), fallback_T, fallback_T + fallback_T // 2}))
    rec = run_bench(fallback_model, device=device, log=None,
                    **{**QUICK, "T": fallback_T, "repeats": fallback_repeats, "growth_T": growth_T, "quick": True})
    return rec, "a quick bench run by this page (no bench.json found)"


def describe_run(rec: BenchRecord, source: str) -> str:
    """One paragraph (Markdown): where the numbers come from, the model, the machine and the clock."""
    env = rec.environment
    plural = lambda n: "s" if n != 1 else ""  # noqa: E731
    clock = ("CPU seconds of the bench process (`--clock cpu`: the work done, not the time spent waiting for a core "
             "on a shared machine)" if rec.clock == "cpu" else "wall-clock seconds")
    return (f"Numbers from {source}: **{rec.model}**, {rec.dtype}, {rec.device}"
            f" ({env.get('cuda_device') or str(env.get('cpu_count', '?')) + ' CPU cores'}),"
            f" {rec.threads} torch thread{plural(rec.threads)}, T = {rec.T} (N = {rec.N}), L = {rec.n_layers},"
            f" eps = {rec.eps:g}, {clock}, medians of {rec.repeats} repeat{plural(rec.repeats)}"
            f" (section map: {rec.section_repeats}, growth: {rec.growth_repeats})"
            + (" (quick)" if rec.quick else "")
            + "; load average of the machine at the end "
            + ", ".join(f"{x:.1f}" for x in env.get("load_average") or []) + "." + _scaling_sentence(rec))


def _scaling_sentence(rec: BenchRecord) -> str:
    """How much faster the canonical job ran on every core than on one (empty for a record without it)."""
    ts = rec.thread_scaling
    if ts is None or ts.speedup is None:
        return ""
    most = ts.threads[-1]
    return (f" On {most} threads the job `{ts.job}` took {ts.wall_s[str(most)]:.1f} s against"
            f" {ts.wall_s['1']:.1f} s on one (wall clock, medians), {ts.speedup:.2f} times faster"
            + _thread_range(ts) + f" (target {rec.targets.get('thread_speedup', 1.8):g}; load average at its start "
            + ", ".join(f"{x:.1f}" for x in ts.load_average or []) + ")."
            + (f" Its sequences ran in {ts.workers[str(most)]} one-thread processes side by side; with every operation split over"
               f" {most} threads instead it took {ts.intra_op_wall_s:.1f} s ({ts.intra_op_speedup:.2f} times faster"
               + _thread_range(ts, ts.intra_op_runs or []) + ")."
               if ts.workers and ts.workers.get(str(most), 1) > 1 and ts.intra_op_wall_s and ts.intra_op_speedup else ""))


def repeat_range(numerator, denominator) -> tuple[float, float, int]:
    """The smallest and largest ratio of one repeat's two times, over the repeats, and how many there are.

    Why a range and not an interval: the bench repeats a measurement a few times (three by
    default), too few for a bootstrap to mean anything, and interleaves the methods within each
    repeat, so the ratio of the same repeat's two times is the paired quantity; its range over the
    repeats is the spread the record holds. With one repeat there is no spread: both ends are that
    repeat's ratio and the count says 1.

    Args:
        numerator, denominator: seconds per repeat, paired by index (``runs`` of a record).

    Returns:
        ``(low, high, n)``; ``nan`` ends where no repeat has both times.
    """
    if isinstance(numerator, (str, bytes)) or isinstance(denominator, (str, bytes)):
        raise TypeError("numerator and denominator must be sequences of seconds, not strings")
    num, den = list(numerator), list(denominator)
    if len(num) != len(den):
        raise ValueError(f"numerator and denominator must hold one time per repeat each, got {len(num)} and {len(den)}")
    ratios = [float(a) / float(b) for a, b in zip(num, den) if a is not None and b is not None and float(b) > 0]
    if not ratios:
        return float("nan"), float("nan"), 0
    return min(ratios), max(ratios), len(ratios)


def range_text(value: float | None, low: float, high: float, n: int, fmt: str = ".2f") -> str:
    """``"2.89 (2.67 to 2.91)"``; with one repeat ``"5.81 (1 repeat)"``, as there is no spread to give."""
    if value is None or not np.isfinite(value):
        return "-"
    if n < 2:
        return f"{value:{fmt}} ({n} repeat)"
    return f"{value:{fmt}} ({low:{fmt}} to {high:{fmt}})"


def _ratios(rec: BenchRecord) -> dict[str, tuple[float, float, int]]:
    """Per-repeat ranges of the one-tensor and section-map speedups and floor fractions."""
    out = {"speedup": repeat_range(rec.runs["naive"], rec.runs["engine"]),
           "floor_fraction": repeat_range(rec.runs["floor"], rec.runs["engine"])}
    sm = rec.section_map
    if sm is not None:
        out["sm_speedup"] = repeat_range(sm.runs["naive_extrapolated"], sm.runs["engine"])
        out["sm_floor_fraction"] = repeat_range(sm.runs["floor"], sm.runs["engine"])
    return out


def _thread_range(ts, most: list | None = None) -> str:
    """The thread speedup's range over the repeats (every repeat runs each count once, so the runs pair by
    index); ``most``: the runs to divide by, the most threads' by default."""
    most = ts.runs.get(str(ts.threads[-1]), []) if most is None else most
    one = ts.runs.get("1", [])
    if len(one) != len(most):  # a record without paired runs: nothing to pair
        return ""
    lo, hi, n = repeat_range(one, most)
    return f", {lo:.2f} to {hi:.2f} over its {n} repeats" if n >= 2 else ", timed once (no spread)"


def timing_table(rec: BenchRecord) -> pd.DataFrame:
    """Naive, engine and floor seconds (medians), speedup and floor fraction with their range over the
    repeats (:func:`repeat_range`), and max rel. diff: one tensor, section map."""
    ranges = _ratios(rec)
    rows = [("one response tensor (l0 = 0)", rec, "")]
    if rec.section_map is not None:
        rows.append((f"section map (l0 = 0..{rec.n_layers - 1})", rec.section_map, "sm_"))
    return pd.DataFrame([{"work": work, "repeats": ranges[f"{p}speedup"][2], "naive (s)": r.naive_s,
                          "engine (s)": r.engine_s, "floor (s)": r.floor_s,
                          "speedup (range)": range_text(r.speedup, *ranges[f"{p}speedup"]),
                          "floor fraction (range)": range_text(r.floor_fraction, *ranges[f"{p}floor_fraction"]),
                          "max rel. diff": r.max_rel_diff}
                         for work, r, p in rows])


def _rates_range(rec: BenchRecord) -> str:
    """The naive loop's and the engine's operation rates, smallest to largest over the repeats (GFLOP/s), as text."""
    naive = [rec.flops.naive / t / 1e9 for t in rec.runs["naive"] if t]
    engine = [rec.flops.necessary / t / 1e9 for t in rec.runs["engine"] if t]
    if min(len(naive), len(engine)) < 2:
        return "one repeat, no spread"
    return (f"{min(naive):.1f} to {max(naive):.1f} and {min(engine):.1f} to {max(engine):.1f} GFLOP/s over the "
            f"{len(engine)} repeats")


def timing_numbers(rec: BenchRecord) -> dict[str, float | str]:
    """The numbers the page's prose quotes, by glue name.

    ``speedup``, ``floor_fraction``, ``sm_speedup``, ``sm_floor_fraction`` (NaN without a section
    map), each with ``<name>_range``: its range over the repeats as text (:func:`repeat_range`; a
    single repeat is said to have no spread), and ``speedup_lo``, ``speedup_hi``, ``n_repeats``;
    ``flop_ratio``, ``sm_flop_ratio`` (naive / necessary FLOPs); ``naive_rate``, ``engine_rate``
    (GFLOP/s, ``rates_range``: both over the repeats) and ``rate_gain`` (their ratio, with
    ``rate_gain_range``); ``growth_spread`` (whether the growth series were repeated); ``naive_l0`` (the ``l0``
    where the naive section map was measured, text); ``max_rel_diff`` (the largest over the record).
    """
    sm = rec.section_map
    naive_rate = rec.naive_gflops_per_s or rec.flops.naive / rec.naive_s / 1e9
    engine_rate = engine_rate_gflops(rec)
    ranges = _ratios(rec)
    texts = {f"{name}_range": (f"{lo:.2f} to {hi:.2f} over its {n} repeats" if n >= 2 else
                               "timed once, so the record holds no spread")
             for name, (lo, hi, n) in ranges.items()}
    gain = [x / rec.flops.ratio for x in ranges["speedup"][:2]]  # rate gain = speedup / operation ratio, per repeat
    return {
        **texts,
        "speedup_lo": ranges["speedup"][0], "speedup_hi": ranges["speedup"][1], "n_repeats": ranges["speedup"][2],
        "rate_gain_range": (f"{gain[0]:.2f} to {gain[1]:.2f} over the repeats" if ranges["speedup"][2] >= 2 else
                            "one repeat, no spread"),
        "rates_range": _rates_range(rec),
        "growth_spread": ("one timing per length, so the record holds no spread for it"
                          if rec.growth_repeats < 2 else f"medians of {rec.growth_repeats} repeats per length"),
        "speedup": rec.speedup,
        "floor_fraction": rec.floor_fraction,
        "flop_ratio": rec.flops.ratio,
        "sm_speedup": sm.speedup if sm else float("nan"),
        "sm_floor_fraction": sm.floor_fraction if sm else float("nan"),
        "sm_flop_ratio": rec.flops.section_map_ratio,
        "naive_rate": naive_rate,
        "engine_rate": engine_rate,
        "rate_gain": engine_rate / naive_rate,
        "naive_l0": ", ".join(str(x) for x in sm.naive_l0_measured) if sm else "-",
        "max_rel_diff": max(rec.max_rel_diff, sm.max_rel_diff if sm else 0.0),
    }


def floor_table(rec: BenchRecord) -> pd.DataFrame:
    """The floor's schedules at ``l0 = 0`` beside the engine and the naive loop: time (median, and the
    smallest to the largest over the repeats), row-positions, and work relative to the necessary work."""
    pos = rec.row_positions
    necessary = pos["necessary"]

    def spread(key: str) -> str:  # the smallest and largest time over the repeats
        times = [t for t in rec.runs.get(key, []) if t is not None]
        return f"{min(times):.3g} to {max(times):.3g}" if len(times) >= 2 else f"{len(times)} repeat"

    rows = [{"schedule": name, "time (s)": sec, "range (s)": spread(f"floor:{name}"),
             "row-positions": pos.get(f"floor:{name}"),
             "row-positions / necessary": (pos.get(f"floor:{name}") or np.nan) / necessary,
             "fastest": "yes" if name == rec.floor_schedule else ""}
            for name, sec in rec.floor_schedules_s.items()]
    for name, key, sec in (("engine", "engine", rec.engine_s), ("naive loop", "naive", rec.naive_s)):
        rows.append({"schedule": f"{name} (for comparison)", "time (s)": sec, "range (s)": spread(key),
                     "row-positions": pos[key], "row-positions / necessary": pos[key] / necessary, "fastest": ""})
    return pd.DataFrame(rows)


def length_frame(rec: BenchRecord) -> pd.DataFrame:
    """Time against the sequence length ``N`` (columns ``N, time (s), method``), with the expected
    growth ``N^2`` drawn through the engine's time at the bench's own length."""
    grow = rec.growth.sequence_length
    rows = [{"N": g.N, "time (s)": getattr(g, f"{m}_s"), "method": m}
            for g in grow for m in ("naive", "engine", "floor") if getattr(g, f"{m}_s")]
    anchor = next(g for g in grow if g.N == rec.N)
    rows += [{"N": g.N, "time (s)": anchor.engine_s * (g.N / rec.N) ** 2, "method": "expected ~ N²"} for g in grow]
    return pd.DataFrame(rows)


def length_slope(rec: BenchRecord) -> tuple[float, str]:
    """The exponent ``a`` of the engine's time ``~ N^a`` (least squares on log-log), and what it says.

    Below 1.8: the fixed cost of a pass still weighs; above 2.2: the attention term ``~N^3`` (or
    interference on a shared machine) shows; between: the expected ``N^2``. NaN with one length.
    """
    eng = [(g.N, g.engine_s) for g in rec.growth.sequence_length if g.engine_s]
    if len(eng) < 2:
        return float("nan"), "one length only: no slope."
    slope = float(np.polyfit(np.log([n for n, _ in eng]), np.log([t for _, t in eng]), 1)[0])
    if slope < 1.8:
        reading = ("slower than N²: at these lengths a pass costs more than its positions (the weights are read "
                   "from memory once per pass, whatever its size), so the time approaches N² from below as N grows.")
    elif slope > 2.2:
        reading = ("faster than N²: the attention term, ~N³, already shows, and on a shared machine the "
                   "longest runs also meet more interference.")
    else:
        reading = "close to the expected N²."
    return slope, reading


def layers_frame(rec: BenchRecord) -> pd.DataFrame | None:
    """Time of engine and floor against the blocks run ``L - l0`` (columns ``blocks run, time (s),
    method``), with the proportional growth drawn through the engine at ``l0 = 0``; ``None``
    when the bench skipped the section map."""
    layers = rec.growth.layers
    if not layers:
        return None
    top = next(x for x in layers if x.l0 == 0)
    rows = [{"blocks run": x.layers_run, "time (s)": getattr(x, f"{m}_s"), "method": m}
            for x in layers for m in ("engine", "floor") if getattr(x, f"{m}_s")]
    rows += [{"blocks run": x.layers_run, "time (s)": top.engine_s * x.layers_run / rec.n_layers,
              "method": "expected ~ L - l0"} for x in layers]
    return pd.DataFrame(rows)


def half_map_share(rec: BenchRecord) -> float:
    """Share of the section map's engine time spent on the first half of the ``l0`` (NaN without one)."""
    layers = sorted(rec.growth.layers, key=lambda x: x.l0)
    if not layers:
        return float("nan")
    cum = np.cumsum([x.engine_s for x in layers])
    return float(cum[len(cum) // 2 - 1] / cum[-1])


def memory_table(rec: BenchRecord) -> pd.DataFrame:
    """Peak RSS by phase, of the whole run (``ru_maxrss``) and the model's weights, in MB."""
    return pd.DataFrame([{"phase": k, "peak RSS (MB)": v} for k, v in rec.peak_mem_by_phase_mb.items()]
                        + [{"phase": "whole run (ru_maxrss)", "peak RSS (MB)": rec.peak_mem_mb},
                           {"phase": "model weights", "peak RSS (MB)": rec.model_weights_mb}])


def cost_table(est: pd.DataFrame) -> pd.DataFrame:
    """:func:`~.cost.paper_cost`'s rows for reading: blocks in billions of weights, the H100 ranges
    as ``low - high`` text (bfloat16 and float32 seconds) and the CPU time in hours."""
    return pd.DataFrame({
        "model": est["model"], "work": est["work"], "blocks (B weights)": est["non_embedding_params"] / 1e9,
        "tflop": est["tflop"],
        "bf16 (s)": [f"{lo:.2f} - {hi:.2f}" for lo, hi in zip(est["bfloat16_s_low"], est["bfloat16_s_high"])],
        "fp32 (s)": [f"{lo:.1f} - {hi:.1f}" for lo, hi in zip(est["float32_s_low"], est["float32_s_high"])],
        "this CPU (h)": est["cpu_s"] / 3600,
    })
