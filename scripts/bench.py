#!/usr/bin/env python
"""Time the response engine against the naive loop and against a floor; write bench.json.

    python scripts/bench.py --out bench.json [--quick] [--repeats 3] [--model smollm2-135m]
                            [--device cpu|cuda] [--dtype float32|bfloat16] [--threads 1]
                            [--clock wall|cpu]

The logic lives in :mod:`residual_response.bench` (definitions of naive, engine and floor are
written into the JSON, a typed record with a ``schema_version``). ``make bench`` runs it as
``--clock cpu --out bench.json`` (CPU seconds, steady on a shared machine); the default clock is
the wall clock, the only one on a GPU. The book's performance page reads the result. A full run on
smollm2-135m (T=40: three repeats of the one-tensor times, one of the section map over every l0
and of the growth up to T=80) takes about 30-45 minutes on one CPU thread; ``--quick`` is a smoke
test of a minute or two. On the CPU the run also times the canonical induction job at one thread
and at every core (``--thread-scaling``, wall clock: ``thread_scaling`` in the record, its ratio
against the target 1.8), alternating the counts, with the load average before every run; at every
core the job's sequences run in forked one-thread processes, and each repeat also times it with
those off (every operation split over the threads instead, ``intra_op_*``). Run it on a quiet
machine: other work on the cores changes the wall-clock ratio more than the engine does.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lib"))  # this checkout's library

from residual_response.bench import CLOCKS, FLOOR_SCHEDULES, QUICK, run_bench, write_json  # noqa: E402


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output JSON file")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke test: {', '.join(f'{k}={v}' for k, v in QUICK.items())} (explicit options win)")
    parser.add_argument("--model", default="smollm2-135m", help="registry name, folder or hub id (default smollm2-135m)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: stable times on a shared machine; 0 = leave torch's default)")
    parser.add_argument("--T", type=int, default=None, help="length of one copy of the repeated sequence (default 40)")
    parser.add_argument("--eps", type=float, default=1e-2, help="relative perturbation strength (default 1e-2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall",
                        help="wall (default): elapsed seconds; cpu: CPU seconds of the process, steadier on a shared CPU")
    parser.add_argument("--repeats", type=int, default=None, help="repeats of the one-tensor measurement (default 3)")
    parser.add_argument("--section-repeats", type=int, default=1,
                        help="how many of the repeats also time the full section map (default 1)")
    parser.add_argument("--growth-repeats", type=int, default=1,
                        help="how many of the repeats also time the growth series (default 1)")
    parser.add_argument("--growth-T", type=_ints, default=None, help="lengths for the growth chart (default 10,20,40,80)")
    parser.add_argument("--naive-l0", type=_ints, default=None,
                        help="l0 values where the naive section map is measured (default 0,L//2,L-1)")
    parser.add_argument("--floor-schedules", default=None,
                        help=f"comma-separated floor schedules (default {','.join(FLOOR_SCHEDULES)})")
    parser.add_argument("--no-section", action="store_true", help="skip the section map")
    parser.add_argument("--thread-scaling", type=_ints, default=[1, 0],
                        help="also time the canonical induction job at these thread counts, wall clock "
                             "(default 1,0; 0 = every core; empty: skip)")
    args = parser.parse_args(argv)

    settings = dict(T=40, repeats=3, growth_T=(10, 20, 40, 80), floor_schedules=FLOOR_SCHEDULES)
    if args.quick:
        settings.update(QUICK)
    for key in ("T", "repeats", "growth_T"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if args.floor_schedules:
        settings["floor_schedules"] = tuple(x.strip() for x in args.floor_schedules.split(",") if x.strip())
    if settings["T"] not in settings["growth_T"]:
        settings["growth_T"] = tuple(sorted(set(settings["growth_T"]) | {settings["T"]}))

    os.environ.setdefault("RESIDUAL_RESPONSE_CACHE", str(Path(__file__).resolve().parent.parent / ".cache"))
    from residual_response.models import ModelUnavailableError
    from residual_response.threads import available_cores

    start = time.perf_counter()
    try:
        record = run_bench(
            args.model, device=args.device, dtype=args.dtype, threads=args.threads or None, eps=args.eps,
            seed=args.seed, naive_l0=args.naive_l0, section=not args.no_section, quick=args.quick,
            clock=args.clock, section_repeats=args.section_repeats, growth_repeats=args.growth_repeats,
            thread_counts=[n or available_cores() for n in args.thread_scaling] if args.device == "cpu" else None,
            **settings,
        )
    except (ValueError, TypeError, ModelUnavailableError) as exc:  # bad input: one line, exit status 2
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    record.bench_wall_s = time.perf_counter() - start
    write_json(record, args.out)
    sm = record.section_map
    print(f"[bench] wrote {args.out}: speedup {record.speedup:.2f}x, floor fraction {record.floor_fraction:.2f}, "
          f"max rel diff {record.max_rel_diff:.1e}"
          + (f"; section map speedup {sm.speedup:.2f}x, floor fraction {sm.floor_fraction:.2f}" if sm else "")
          + (f"; {record.thread_scaling.threads[-1]} threads {record.thread_scaling.speedup:.2f}x faster than 1"
             if record.thread_scaling and record.thread_scaling.speedup else "")
          + f"; peak RSS {record.peak_mem_mb:.0f} MB; {record.bench_wall_s:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
