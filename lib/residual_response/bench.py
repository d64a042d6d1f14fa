"""How fast the response engine is: against the loop a researcher writes first, and against a floor.

``scripts/bench.py`` is the command line; the book's performance page shows its ``bench.json``.
Three ways to get the same response tensor ``chi[l, s, t]`` of one sequence (one direction, one
``eps``, every source ``s``, every read stream ``l >= l0``):

* **naive** (:func:`naive_response`): for each source one full forward pass of the causal LM,
  LM head included, ``output_hidden_states=True``, a pre-hook on block ``l0`` that adds the
  perturbation; ``h[L]`` (before the final norm) from a hook on the last block.
* **engine**: :func:`residual_response.response.response`.
* **floor** (:func:`floor_passes`): plain forward passes that do only the necessary work; see
  :data:`FLOOR_DEFINITION`.

The section map repeats this at every ``l0 = 0..L-1`` (reading every ``l >= l0``). Its naive
cost does not depend on ``l0`` (the naive loop always runs the whole model), so it is measured at
a few ``l0`` and multiplied by ``L`` (:data:`NAIVE_SECTION_DEFINITION`).

All times are wall-clock seconds, medians over repeats; the measurements of one repeat are
interleaved (naive, engine, floor, ...), so that a change of load on a shared machine hits all
of them alike. Ratios are formed from the medians.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import platform
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from .io import write_json_atomic
from .models import LoadedModel, block_dims, load_model
from .perturbation import apply_perturbation, perturbation_directions
from .response import (
    _attention_weight,
    _CleanPass,
    _forward_overhead,
    _prefix_cache,
    _run_packed,
    default_batch_rows,
    plan_batches,
    response,
    reuse_clean_passes,
)
from .sequences import make_sequence
from .streams import block_hidden_input, block_output, hooked, replace_block_input, skip_blocks

__all__ = [
    "FLOOR_DEFINITION",
    "NAIVE_DEFINITION",
    "NAIVE_SECTION_DEFINITION",
    "PEAK_MEM_METHOD",
    "TARGETS",
    "QUICK",
    "FLOOR_SCHEDULES",
    "PAPER_MODELS",
    "CLOCKS",
    "naive_response",
    "floor_passes",
    "run_bench",
    "write_json",
    "non_embedding_params",
    "block_params",
    "paper_block_params",
    "paper_cost",
    "engine_rate_gflops",
    "find_bench_json",
    "response_token_forwards",
    "gpu_estimates",
    "flop_summary",
    "BOOK_WORKLOADS",
    "H100_TFLOPS",
]

NAIVE_DEFINITION = (
    "For each source s (0..N-1): one forward pass of the whole causal LM on the N tokens (batch 1, "
    "LM head included, output_hidden_states=True) with a forward pre-hook on block l0 that adds "
    "eps*||h[l0,s]||*u to position s; the streams h[l0..L] (h[L] from a hook on the last block, before "
    "the final norm) are compared with one clean pass of the same kind."
)
FLOOR_DEFINITION = (
    "floor_s = one clean forward pass of the decoder stack over the N tokens (the unperturbed streams "
    "and keys/values that every method needs; timed) + the fastest of several schedules of plain "
    "perturbed forward passes. Every pass runs blocks l0..L-1 only (earlier blocks are pass-throughs, "
    "the perturbed h[l0] is written into block l0), computes for its rows only positions p..N-1 "
    "(p = smallest source of the pass) with the clean keys/values of positions < p handed in as a cache, "
    "never runs the LM head, and records nothing (no hooks reading streams, no norms); the caches are "
    "built before the clock starts. Schedules: 'exact' = one pass per source s over positions s..N-1 "
    "(exactly the necessary row-positions, sum_s (N-s)); 'chunk-b' = sources in order, b rows per padded pass; "
    "'planned' = padded passes cut by the engine's planner (response.plan_batches); 'packed' = the "
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
PEAK_MEM_METHOD = (
    "resident set size (RSS) of the bench process, sampled every 5 ms from /proc/self/statm by a "
    "thread during each phase (peak_mem_by_phase_mb), and the kernel's high-water mark "
    "getrusage(RUSAGE_SELF).ru_maxrss for the whole run (peak_mem_mb), model weights included; on CUDA "
    "also torch.cuda.max_memory_allocated per phase"
)
#: Settings of ``--quick`` (a smoke test of the whole bench in about a minute).
QUICK = dict(T=8, repeats=1, growth_T=(4, 8, 12), floor_schedules=("exact", "chunk-8", "planned", "packed"))
#: Floor schedules timed by default ('exact' and 'chunk-<b>' on request: they never won on our CPU,
#: and 'exact', one pass per source, costs about as much as the naive loop).
FLOOR_SCHEDULES = ("planned", "packed")
#: Targets of the performance issue (speed is measured, not asserted by the tests).
TARGETS = {"speedup": 3.0, "section_map_speedup": 5.0, "floor_fraction": 0.7, "max_rel_diff": 1e-4}

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


# --------------------------------------------------------------------------------------------
# model arithmetic (FLOPs) and the GPU estimate
# --------------------------------------------------------------------------------------------

#: Architecture of the paper's models (public configs), for the FLOP estimate.
PAPER_MODELS = {
    "gemma-2-2b": dict(layers=26, d_model=2304, d_ffn=9216, q_dim=8 * 256, kv_dim=4 * 256, gated=True),
    "llama-3.2-3b": dict(layers=28, d_model=3072, d_ffn=8192, q_dim=3072, kv_dim=8 * 128, gated=True),
    "gpt2-xl": dict(layers=48, d_model=1600, d_ffn=6400, q_dim=1600, kv_dim=1600, gated=False),
}


def non_embedding_params(layers: int, d_model: int, d_ffn: int, q_dim: int, kv_dim: int, gated: bool) -> int:
    """Weights of the blocks (attention + MLP matrices; norms and biases left out)."""
    attn = d_model * q_dim * 2 + d_model * kv_dim * 2
    mlp = (3 if gated else 2) * d_model * d_ffn
    return layers * (attn + mlp)


def block_params(lm: LoadedModel) -> int:
    """Weights in ``lm``'s blocks, counted as :func:`non_embedding_params` counts the paper's models.

    Why the same count for both: the cost of a step scales with this number, so the ratio of a
    stand-in's count to a paper model's scales a measured time to an estimate.
    """
    return non_embedding_params(**_model_dims(lm))


def paper_block_params() -> dict[str, int]:
    """:func:`non_embedding_params` of every model in :data:`PAPER_MODELS` (from their public configs)."""
    return {name: non_embedding_params(**dims) for name, dims in PAPER_MODELS.items()}


def _model_dims(lm: LoadedModel) -> dict:
    b = block_dims(lm)
    return dict(layers=lm.n_layers, d_model=b.d_model, d_ffn=b.d_ffn, q_dim=b.n_heads * b.head_dim,
                kv_dim=b.n_kv_heads * b.head_dim, gated=lm.family != "gpt2")


def response_token_forwards(N: int, L: int, l0s: Iterable[int], sources: Iterable[int] | None = None,
                            rows_per_source: int = 1) -> float:
    """Token-forwards (position x full model) of the necessary work: one clean pass of ``N``
    positions, plus for every ``l0`` and source ``s`` the positions ``s..N-1`` through blocks
    ``l0..L-1`` (a fraction ``(L - l0) / L`` of the model)."""
    srcs = list(range(N)) if sources is None else list(sources)
    per_l0 = rows_per_source * sum(N - s for s in srcs)
    return float(N + sum(per_l0 * (L - l0) / L for l0 in l0s))


#: The book's workloads for the GPU estimate (published settings of its pages): sequences of
#: ``N = 2T + 1`` tokens, one direction and one eps per source.
BOOK_WORKLOADS = (
    dict(work="one response tensor (bench: T=40, every source, l0=0)", T=40, n_sequences=1, l0="0", sources="all"),
    dict(work="induction scores (emergence page: T=20, 4 seeds x repeated+control, l0=0)", T=20, n_sequences=8,
         l0="0", sources="first copy"),
    dict(work="full section map (T=16, 2 seeds x repeated+control, every l0)", T=16, n_sequences=4, l0="all",
         sources="first copy"),
)
#: Sustained H100 throughput assumed for these batches (TFLOP/s, low and high): 30-50 % of the
#: 989 dense bf16 tensor-core peak; 45-75 % of the 67 FP32 (TF32 off) peak.
H100_TFLOPS = {"bfloat16": (300.0, 500.0), "float32": (30.0, 50.0)}


def flop_summary(N: int, L: int, non_embedding: int, head: int) -> dict:
    """FLOPs of the naive loop and of the necessary work (``2 x weights x positions``).

    Naive: ``N + 1`` full passes (one clean, one per source) of ``N`` positions through the
    blocks and the LM head (``head`` weights). Necessary: one clean pass plus positions
    ``s..N-1`` of every source through the blocks. The section map repeats both for every
    ``l0``: the naive loop always runs the whole model, the necessary work only blocks
    ``l0..L-1``, and one clean pass serves all ``l0``. The ratio naive / necessary bounds the
    speedup when both run their matrix products at the same rate.
    """
    naive = 2.0 * (N + 1) * N * (non_embedding + head)
    necessary = 2.0 * non_embedding * response_token_forwards(N, L, [0])
    naive_map = L * naive
    necessary_map = 2.0 * non_embedding * response_token_forwards(N, L, range(L))
    return {"naive": naive, "necessary": necessary, "ratio": naive / necessary,
            "section_map_naive": naive_map, "section_map_necessary": necessary_map,
            "section_map_ratio": naive_map / necessary_map}


def gpu_estimates(workloads: Sequence[dict] = BOOK_WORKLOADS, tflops: dict | None = None) -> list[dict]:
    """Seconds on one H100 for the paper's models: ``2 x non-embedding params x token-forwards / throughput``.

    Token-forwards (:func:`response_token_forwards`) count the necessary work of the engine:
    one clean pass per sequence plus, for every ``l0`` and source ``s``, positions ``s..N-1``
    through blocks ``l0..L-1``. Attention score FLOPs (``~4 N d`` per position and block, a few
    per cent at these ``N``) and the LM head (never run) are left out. ``tflops`` maps a dtype to
    ``(low, high)`` sustained TFLOP/s (default :data:`H100_TFLOPS`).
    """
    tflops = dict(H100_TFLOPS if tflops is None else tflops)
    out = []
    for name, dims in PAPER_MODELS.items():
        P = non_embedding_params(**dims)
        L = dims["layers"]
        for w in workloads:
            T = int(w["T"])
            N = 2 * T + 1
            l0s = range(L) if w.get("l0", "0") == "all" else [int(w.get("l0", 0))]
            sources = range(1, T + 1) if w.get("sources", "all") == "first copy" else None
            tf = int(w.get("n_sequences", 1)) * response_token_forwards(N, L, l0s, sources, int(w.get("rows_per_source", 1)))
            flops = 2.0 * P * tf
            row = {"model": name, "work": w["work"], "layers": L, "non_embedding_params": P, "token_forwards": tf,
                   "tflop": flops / 1e12}
            for dtype, (lo, hi) in tflops.items():
                row[f"{dtype}_s_low"], row[f"{dtype}_s_high"] = flops / (hi * 1e12), flops / (lo * 1e12)
            out.append(row)
    return out


def find_bench_json(extra: Sequence[str | os.PathLike] = ()) -> Path | None:
    """The repository's ``bench.json`` (written by ``make bench``), or the first of ``extra`` that exists."""
    repo = Path(__file__).resolve().parents[2]  # lib/residual_response/bench.py
    for p in [*map(Path, extra), repo / "bench.json", Path.cwd() / "bench.json"]:
        if p.is_file():
            return p
    return None


def engine_rate_gflops(rec: dict) -> float:
    """GFLOP/s of the engine's necessary work in a bench record (the stand-in's measured throughput)."""
    if rec.get("engine_gflops_per_s"):
        return float(rec["engine_gflops_per_s"])
    flops = flop_summary(rec["N"], rec["n_layers"], rec["non_embedding_params"],
                         rec.get("vocab_size", 0) * rec["d_model"])
    return flops["necessary"] / rec["engine_s"] / 1e9


def paper_cost(workloads: Sequence[dict], cpu_gflops: float, tflops: dict | None = None) -> pd.DataFrame:
    """The book's one cost model for the paper's models: FLOPs of the necessary work / a throughput.

    Why one function: every page that extrapolates to the paper's models must give the same number
    for the same work. The work of each entry of ``workloads`` (keys ``work``, ``T``,
    ``n_sequences``, ``l0`` = ``"0"``/``"all"``/a list of relative depths in [0, 1), ``sources`` =
    ``"all"``/``"first copy"``/an int count, ``rows_per_source``) is counted in token-forwards
    (:func:`response_token_forwards`) through the paper model's blocks, as :func:`gpu_estimates`
    does; the time is that work at ``cpu_gflops`` (the engine's measured rate on a stand-in, from
    the bench record, :func:`engine_rate_gflops`) and at the H100 throughputs ``tflops``
    (default :data:`H100_TFLOPS`). Returns one row per paper model and workload with columns
    ``model, work, layers, non_embedding_params, token_forwards, tflop, cpu_s, <dtype>_s_low,
    <dtype>_s_high``; for the same workloads the H100 columns equal :func:`gpu_estimates`.
    """
    if not cpu_gflops > 0:
        raise ValueError(f"cpu_gflops must be > 0, got {cpu_gflops!r}")
    tflops = dict(H100_TFLOPS if tflops is None else tflops)
    rows = []
    for name, dims in PAPER_MODELS.items():
        P, L = non_embedding_params(**dims), dims["layers"]
        for w in workloads:
            T = int(w["T"])
            N = 2 * T + 1
            l0 = w.get("l0", "0")
            if l0 == "all":
                l0s = list(range(L))
            elif isinstance(l0, str):
                l0s = [int(l0)]
            else:  # relative depths, so that a stand-in's sampled l0 map onto the paper model's depth
                l0s = sorted({min(L - 1, int(round(float(x) * L))) for x in l0})
            src = w.get("sources", "all")
            if src == "all":
                sources = None
            elif src == "first copy":
                sources = range(1, T + 1)
            else:
                n = int(src)
                sources = sorted({1 + round(i * (N - 3) / max(1, n - 1)) for i in range(n)})
            tf = int(w.get("n_sequences", 1)) * response_token_forwards(N, L, l0s, sources,
                                                                          int(w.get("rows_per_source", 1)))
            flops = 2.0 * P * tf
            row = {"model": name, "work": w["work"], "layers": L, "non_embedding_params": P, "token_forwards": tf,
                   "tflop": flops / 1e12, "cpu_s": flops / (cpu_gflops * 1e9)}
            for dtype, (lo, hi) in tflops.items():
                row[f"{dtype}_s_low"], row[f"{dtype}_s_high"] = flops / (hi * 1e12), flops / (lo * 1e12)
            rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# the three implementations
# --------------------------------------------------------------------------------------------


#: The clocks a bench can time with. "wall": elapsed seconds (what a user waits). "cpu": CPU
#: seconds of this process, all its threads (time.process_time). Why both: on a CPU shared with
#: other jobs the wall clock also counts the time the bench waits for a core, and that varies
#: between runs by a factor of two or more; the CPU time counts only the work done. On a GPU only
#: the wall clock means anything (the CPU waits for the device).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_active_clock = {"fn": time.perf_counter}


def _clock() -> float:
    return _active_clock["fn"]()


def _sync(lm: LoadedModel) -> None:
    if lm.device.type == "cuda":
        torch.cuda.synchronize(lm.device)


def naive_response(lm: LoadedModel, tokens: torch.Tensor, eps: float, l0: int, directions: torch.Tensor) -> np.ndarray:
    """The loop a researcher writes first (see :data:`NAIVE_DEFINITION`).

    Args:
        tokens: ``[N]`` token ids.
        eps: relative strength.
        l0: perturbed stream.
        directions: ``[N, d]`` unit directions, one per source.

    Returns:
        ``[L + 1 - l0, N, N]`` float64 ``chi[l - l0, s, t]``.
    """
    L, N = lm.n_layers, int(tokens.shape[0])
    ids = tokens[None].to(lm.device)

    def streams(pre_hook=None) -> torch.Tensor:
        last = {}

        def grab_last(module, args, output):
            last["h"] = block_output(output)[0].detach()

        hooks = [(lm.blocks[L - 1], "post", grab_last)]
        if pre_hook is not None:
            hooks.append((lm.blocks[l0], "pre", pre_hook))
        with hooked(hooks), torch.no_grad():
            out = lm.model(input_ids=ids, output_hidden_states=True)
        return torch.stack([h[0] for h in out.hidden_states[:L]] + [last["h"]]).double()  # [L+1, N, d]

    clean = streams()
    clean_norm = clean.norm(dim=-1)
    chi = np.zeros((L + 1 - l0, N, N))
    for s in range(N):
        fed = {}

        def perturb(module, args, kwargs, s=s):
            h = block_hidden_input(args, kwargs).clone()
            base = h[0, s].double()
            h[0, s] = (base + eps * base.norm() * directions[s].to(h.device).double()).to(h.dtype)
            fed["h"] = h[0]
            return replace_block_input(args, kwargs, h)

        pert = streams(perturb)
        pert[l0] = fed["h"].double()  # HF records hidden_states[l0] before the pre-hook runs
        r = (pert - clean).norm(dim=-1) / clean_norm  # [L+1, N]
        chi[:, s, :] = (r[l0:] / eps).cpu().numpy()
    return chi


def _schedule(name: str, sources: Sequence[int], N: int, lm: LoadedModel) -> list[list[int]]:
    """Batches of sources (in order) of one floor schedule."""
    srcs = sorted(sources)
    if name == "exact":
        return [[s] for s in srcs]
    if name.startswith("chunk-"):
        b = int(name.split("-", 1)[1])
        return [srcs[i:i + b] for i in range(0, len(srcs), b)]
    if name in ("planned", "packed"):
        B = default_batch_rows(lm, N)
        plan = plan_batches(srcs, N, B, _forward_overhead(lm), packed=name == "packed",
                            attention=_attention_weight(lm, N))
        return [srcs[a:b] for a, b in plan]
    raise ValueError(f"unknown floor schedule {name!r}; use exact, chunk-<b>, planned or packed")


def floor_passes(lm: LoadedModel, tokens: torch.Tensor, clean: _CleanPass, l0: int, batches: list[list[int]],
                 eps: float, directions: torch.Tensor, packed: bool = False) -> float:
    """Seconds of the plain perturbed passes of one schedule (see :data:`FLOOR_DEFINITION`).

    ``clean`` must hold the streams, the keys/values and (for ``packed``) the attention inputs
    (``_timed_clean``). The inputs and caches of all padded passes are prepared first; only the
    passes are timed. ``packed`` runs the engine's packed pass with nothing read.
    """
    N = int(tokens.shape[0])
    device = lm.device
    if packed:
        if clean.attention is None:
            raise ValueError(f"{lm.name}: the packed schedule needs sdpa or eager attention")
        _sync(lm)
        start = _clock()
        with torch.no_grad():
            for batch in batches:
                B = len(batch)
                _run_packed(lm, tokens, clean, l0, [lm.n_layers], torch.tensor(batch), directions[torch.tensor(batch)],
                            torch.full((B,), float(eps)), "finite", record=False)
        _sync(lm)
        return _clock() - start
    jobs = []
    for batch in batches:
        src = torch.tensor(batch)
        p = int(src.min())
        B = len(batch)
        h0 = clean.streams[l0][p:].unsqueeze(0).expand(B, -1, -1).clone()
        apply_perturbation(h0, (src - p).to(device), directions[src], torch.full((B,), float(eps)))
        kwargs = {"position_ids": torch.arange(p, N, device=device)[None].expand(B, -1)}
        if p > 0:
            kwargs["cache"] = _prefix_cache(clean, p, N, B)
            kwargs["use_cache"] = True
        else:
            kwargs["use_cache"] = False
        jobs.append((tokens[p:].to(device)[None].expand(B, -1), kwargs, h0))
    current = {}

    def pre(module, args, kwargs):
        return replace_block_input(args, kwargs, current["h"])

    _sync(lm)
    start = _clock()
    with skip_blocks(lm, l0), hooked([(lm.blocks[l0], "pre", pre)]), torch.no_grad():
        for ids, kwargs, h0 in jobs:
            current["h"] = h0
            lm.base_model(input_ids=ids, **kwargs)
    _sync(lm)
    return _clock() - start


def _timed_clean(lm: LoadedModel, tokens: torch.Tensor) -> tuple[_CleanPass, float]:
    _sync(lm)
    start = _clock()
    clean = _CleanPass(lm, tokens, list(range(lm.n_layers + 1)), want_cache=True, capture_attention=True,
                       keep_cache=True)
    _sync(lm)
    return clean, _clock() - start


def _timed(fn: Callable, lm: LoadedModel):
    _sync(lm)
    start = _clock()
    out = fn()
    _sync(lm)
    return out, _clock() - start


def _rel_diff(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / np.abs(ref).max())


# --------------------------------------------------------------------------------------------
# memory
# --------------------------------------------------------------------------------------------


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return float("nan")


def _maxrss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


class _PeakRSS:
    """Highest RSS seen while the block runs (a thread samples /proc/self/statm)."""

    def __init__(self, lm: LoadedModel, interval: float = 0.005):
        self.lm, self.interval, self.peak, self.cuda_peak = lm, interval, _rss_mb(), None
        self._stop = threading.Event()

    def _run(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _rss_mb())

    def __enter__(self):
        if self.lm.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.lm.device)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())
        if self.lm.device.type == "cuda":
            self.cuda_peak = torch.cuda.max_memory_allocated(self.lm.device) / 2**20
        return False


# --------------------------------------------------------------------------------------------
# the bench
# --------------------------------------------------------------------------------------------


def _median(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.median(xs)) if xs else None


def _ratio(a, b) -> float | None:
    return None if a is None or b is None or b == 0 else float(a / b)


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
    log: Callable[[str], None] | None = print,
) -> dict:
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
        clock: ``"wall"`` or ``"cpu"`` (see :data:`CLOCKS`).
        threads: ``torch.set_num_threads`` for the run (``None``: leave it). One thread gives
            stable times on a shared CPU; the ratios compare like with like either way.
        floor_schedules: schedules timed for the floor at ``l0 = 0`` (see :data:`FLOOR_DEFINITION`).
        naive_l0: ``l0`` values at which the naive section map is measured (default ``0, L//2, L-1``).
        section: also time the full section map (every ``l0``).
        growth_T: lengths for the growth with sequence length (engine; floor and naive up to
            ``naive_growth_max_T``, default ``T``, as they cost the most).
        quick: only recorded (``QUICK`` holds the settings of a smoke test).
        log: progress lines (``None``: quiet).
    """
    say = log or (lambda _msg: None)
    if clock not in CLOCKS:
        raise ValueError(f"unknown clock {clock!r}; allowed: {', '.join(CLOCKS)}")
    if clock == "cpu" and str(device).startswith("cuda"):
        raise ValueError("clock='cpu' does not measure GPU work; use clock='wall' with device cuda")
    old_threads = torch.get_num_threads()
    old_clock = _active_clock["fn"]
    _active_clock["fn"] = CLOCKS[clock]
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        lm = model if isinstance(model, LoadedModel) else load_model(model, device=device, dtype=dtype)
        repeats = max(1, int(repeats))
        return _run(lm, T=T, eps=eps, seed=seed, repeats=repeats, floor_schedules=list(floor_schedules),
                    section_repeats=min(repeats, max(1, int(section_repeats))),
                    growth_repeats=min(repeats, max(1, int(growth_repeats))),
                    naive_l0=naive_l0, section=section, growth_T=list(growth_T),
                    naive_growth_max_T=T if naive_growth_max_T is None else naive_growth_max_T, quick=quick, say=say,
                    threads=torch.get_num_threads(), clock=clock)
    finally:
        torch.set_num_threads(old_threads)
        _active_clock["fn"] = old_clock


def _run(lm, *, T, eps, seed, repeats, section_repeats, growth_repeats, floor_schedules, naive_l0, section, growth_T,
         naive_growth_max_T, quick, say, threads, clock="wall") -> dict:
    L = lm.n_layers
    tokens = make_sequence(lm, "repeated", T, seed=seed)
    N = int(tokens.shape[0])
    sources = list(range(N))
    dirs = perturbation_directions(lm, tokens, torch.arange(N), 1, "gaussian", seed)[:, 0]  # [N, d]
    naive_l0 = sorted(set([0] + [int(x) for x in (naive_l0 if naive_l0 is not None else (L // 2, L - 1))]))
    mem: dict[str, float] = {}
    cuda_mem: dict[str, float] = {}

    def track(phase: str):
        peak = _PeakRSS(lm)

        @contextlib.contextmanager
        def ctx():
            with peak:
                yield
            mem[phase] = max(mem.get(phase, 0.0), peak.peak)
            if peak.cuda_peak is not None:
                cuda_mem[phase] = max(cuda_mem.get(phase, 0.0), peak.cuda_peak)

        return ctx()

    def engine(l0, toks=tokens):
        return response(lm, toks, [eps], layer=l0, n_directions=1, seed=seed)

    runs = {k: [] for k in ("naive", "engine", "floor", "floor_clean")}
    runs.update({f"floor:{name}": [] for name in floor_schedules})
    sec_runs = {"engine": [], "floor": [], "naive_extrapolated": [], "floor_schedule": []}
    sec_naive = {l0: [] for l0 in naive_l0}
    per_l0 = {"engine": {l0: [] for l0 in range(L)}, "floor": {l0: [] for l0 in range(L)}}
    growth = {int(t): {"naive": [], "engine": [], "floor": []} for t in growth_T}
    diffs, sec_diffs = [], []
    engine_meta = None
    say(f"[bench] {lm.name} {str(lm.dtype).replace('torch.', '')} on {lm.device}, {threads} thread(s): "
        f"T={T} N={N} L={L}, {repeats} repeat(s)")

    for rep in range(repeats):
        # --- one response tensor, l0 = 0 --------------------------------------------------
        steps = ["naive", "engine", "floor"]
        steps = steps[rep % 3:] + steps[:rep % 3]  # rotate the order between repeats
        best_schedule = None
        for step in steps:
            if step == "naive":
                with track("naive"):
                    chi_naive, t = _timed(lambda: naive_response(lm, tokens, eps, 0, dirs), lm)
                runs["naive"].append(t)
                sec_naive[0].append(t)
                say(f"[bench] repeat {rep + 1}: naive {t:.2f} s")
            elif step == "engine":
                with track("engine"):
                    res, t = _timed(lambda: engine(0), lm)
                runs["engine"].append(t)
                engine_meta = res.meta
                chi_engine = res.chi[0]
                say(f"[bench] repeat {rep + 1}: engine {t:.2f} s ({res.meta['n_batches']} batches)")
            else:
                with track("floor"):
                    clean, t_clean = _timed_clean(lm, tokens)
                    times = {}
                    for name in floor_schedules:
                        times[name] = floor_passes(lm, tokens, clean, 0, _schedule(name, sources, N, lm), eps, dirs,
                                                   packed=name == "packed")
                        runs[f"floor:{name}"].append(times[name])
                best_schedule = min(times, key=times.get)
                runs["floor_clean"].append(t_clean)
                runs["floor"].append(t_clean + times[best_schedule])
                say(f"[bench] repeat {rep + 1}: floor clean {t_clean:.2f} s + "
                    + ", ".join(f"{k} {v:.2f} s" for k, v in times.items()))
        diffs.append(_rel_diff(chi_engine, chi_naive))

        # --- the section map: every l0 ------------------------------------------------------
        if section and rep < section_repeats:
            batches = _schedule(best_schedule, sources, N, lm)
            with track("section_floor"):
                clean, floor_total = _timed_clean(lm, tokens)
            eng_total = 0.0
            sec_chi = {}
            with reuse_clean_passes():  # the first engine call (l0 = 0) computes the clean pass
                for i, l0 in enumerate(range(L)):
                    order = ("engine", "floor") if (i + rep) % 2 == 0 else ("floor", "engine")
                    for step in order:
                        if step == "engine":
                            with track("section_engine"):
                                res, t = _timed(lambda: engine(l0), lm)
                            per_l0["engine"][l0].append(t)
                            eng_total += t
                            if l0 in sec_naive and l0 != 0:
                                sec_chi[l0] = res.chi[0]
                        else:
                            with track("section_floor"):
                                t = floor_passes(lm, tokens, clean, l0, batches, eps, dirs,
                                                 packed=best_schedule == "packed")
                            per_l0["floor"][l0].append(t)
                            floor_total += t
                    if l0 in sec_naive and l0 != 0:
                        with track("naive"):
                            chi_n, t = _timed(lambda: naive_response(lm, tokens, eps, l0, dirs), lm)
                        sec_naive[l0].append(t)
                        sec_diffs.append(_rel_diff(sec_chi.pop(l0), chi_n))
            sec_runs["engine"].append(eng_total)
            sec_runs["floor"].append(floor_total)
            sec_runs["floor_schedule"].append(best_schedule)
            sec_runs["naive_extrapolated"].append(L * float(np.mean([sec_naive[l0][-1] for l0 in naive_l0])))
            say(f"[bench] repeat {rep + 1}: section map engine {eng_total:.1f} s, floor {floor_total:.1f} s "
                f"({best_schedule}), naive (extrapolated) {sec_runs['naive_extrapolated'][-1]:.1f} s")

        # --- growth with sequence length ------------------------------------------------------
        for t_len in (growth_T if rep < growth_repeats else []):
            toks = tokens if t_len == T else make_sequence(lm, "repeated", int(t_len), seed=seed)
            n = int(toks.shape[0])
            d_t = perturbation_directions(lm, toks, torch.arange(n), 1, "gaussian", seed)[:, 0]
            g = growth[int(t_len)]
            if t_len == T:  # measured above in this repeat
                g["engine"].append(runs["engine"][-1])
                g["floor"].append(runs["floor"][-1])
                g["naive"].append(runs["naive"][-1])
                continue
            with track("growth"):
                _, t = _timed(lambda: engine(0, toks), lm)
                g["engine"].append(t)
                if t_len <= naive_growth_max_T:  # floor and naive up to the main length (cost)
                    clean, t_clean = _timed_clean(lm, toks)
                    g["floor"].append(t_clean + floor_passes(lm, toks, clean, 0,
                                                             _schedule(best_schedule, range(n), n, lm), eps, d_t,
                                                             packed=best_schedule == "packed"))
                    _, t = _timed(lambda: naive_response(lm, toks, eps, 0, d_t), lm)
                    g["naive"].append(t)
            say(f"[bench] repeat {rep + 1}: growth T={t_len} N={n}: engine {g['engine'][-1]:.2f} s"
                + (f", floor {g['floor'][-1]:.2f} s, naive {g['naive'][-1]:.2f} s" if g["naive"] else ""))

    # --- the record ---------------------------------------------------------------------------
    naive_s, engine_s, floor_s = (_median(runs[k]) for k in ("naive", "engine", "floor"))
    schedules = {name: _median(runs[f"floor:{name}"]) for name in floor_schedules}
    best = min(schedules, key=schedules.get)
    row_positions = {
        "necessary": N * (N + 1) // 2,
        "engine": engine_meta.get("row_positions") if engine_meta else None,
        "naive": N * N,
        **{f"floor:{name}": sum((sum(N - s for s in b) if name == "packed" else len(b) * (N - min(b)))
                                for b in _schedule(name, sources, N, lm)) for name in floor_schedules},
    }
    record = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": lm.name,
        "family": lm.family,
        "device": str(lm.device),
        "dtype": str(lm.dtype).replace("torch.", ""),
        "threads": threads,
        "clock": clock,
        "T": T,
        "N": N,
        "n_layers": L,
        "d_model": lm.d_model,
        "non_embedding_params": non_embedding_params(**_model_dims(lm)),
        "vocab_size": lm.vocab_size,
        "eps": eps,
        "n_directions": 1,
        "seed": seed,
        "repeats": repeats,
        "section_repeats": section_repeats if section else 0,
        "growth_repeats": growth_repeats,
        "quick": quick,
        "naive_s": naive_s,
        "engine_s": engine_s,
        "floor_s": floor_s,
        "speedup": _ratio(naive_s, engine_s),
        "floor_fraction": _ratio(floor_s, engine_s),
        "max_rel_diff": max(diffs),
        "floor_schedule": best,
        "floor_schedules_s": schedules,
        "floor_clean_pass_s": _median(runs["floor_clean"]),
        "row_positions": row_positions,
        "engine_meta": engine_meta,
        "runs": runs,
    }
    if section:
        sm_naive = _median(sec_runs["naive_extrapolated"])
        sm_engine = _median(sec_runs["engine"])
        sm_floor = _median(sec_runs["floor"])
        record["section_map"] = {
            "l0": list(range(L)),
            "read_layers": "l0..L for every l0",
            "naive_s": sm_naive,
            "naive_extrapolated": True,
            "naive_extrapolation": NAIVE_SECTION_DEFINITION,
            "naive_l0_measured": naive_l0,
            "naive_s_by_l0": {str(l0): _median(v) for l0, v in sec_naive.items()},
            "engine_s": sm_engine,
            "floor_s": sm_floor,
            "speedup": _ratio(sm_naive, sm_engine),
            "floor_fraction": _ratio(sm_floor, sm_engine),
            "max_rel_diff": max(sec_diffs + diffs),
            "floor_schedule": sec_runs["floor_schedule"],
            "runs": {k: v for k, v in sec_runs.items() if k != "floor_schedule"},
        }
    record["growth"] = {
        "sequence_length": [
            {"T": int(t), "N": 2 * int(t) + (N - 2 * T), "naive_s": _median(g["naive"]), "engine_s": _median(g["engine"]),
             "floor_s": _median(g["floor"]), "row_positions_necessary": (2 * int(t) + N - 2 * T) * (2 * int(t) + N - 2 * T + 1) // 2}
            for t, g in sorted(growth.items())
        ],
        "sequence_length_expected": GROWTH_EXPECTED_LENGTH,
        "layers": [
            {"l0": l0, "layers_run": L - l0, "engine_s": _median(per_l0["engine"][l0]), "floor_s": _median(per_l0["floor"][l0])}
            for l0 in range(L)
        ] if section else [],
        "layers_expected": GROWTH_EXPECTED_LAYERS,
    }
    flops = flop_summary(N, L, record["non_embedding_params"], lm.vocab_size * lm.d_model)
    record["flops"] = flops
    record["engine_gflops_per_s"] = flops["necessary"] / engine_s / 1e9 if engine_s else None
    record["naive_gflops_per_s"] = flops["naive"] / naive_s / 1e9 if naive_s else None
    record["peak_mem_mb"] = _maxrss_mb()
    record["peak_mem_method"] = PEAK_MEM_METHOD
    record["peak_mem_by_phase_mb"] = mem
    if cuda_mem:
        record["cuda_peak_allocated_mb_by_phase"] = cuda_mem
    record["model_weights_mb"] = sum(p.numel() * p.element_size() for p in lm.model.parameters()) / 2**20
    record["targets"] = dict(TARGETS)
    if lm.dtype in (torch.bfloat16, torch.float16):  # 16-bit rounding differs between batch shapes
        record["targets"]["max_rel_diff"] = 5e-2
    met = {
        "speedup": record["speedup"] is not None and record["speedup"] >= TARGETS["speedup"],
        "floor_fraction": record["floor_fraction"] is not None and record["floor_fraction"] >= TARGETS["floor_fraction"],
        "max_rel_diff": record["max_rel_diff"] <= record["targets"]["max_rel_diff"],
    }
    if section:
        sm = record["section_map"]
        met["section_map_speedup"] = sm["speedup"] is not None and sm["speedup"] >= TARGETS["section_map_speedup"]
        met["section_map_floor_fraction"] = (sm["floor_fraction"] is not None
                                             and sm["floor_fraction"] >= TARGETS["floor_fraction"])
    record["targets_met"] = met
    record["definitions"] = {
        "naive": NAIVE_DEFINITION,
        "engine": "residual_response.response.response(lm, tokens, [eps], layer=l0, n_directions=1, seed=seed): "
                  "every source, read layers l0..L; the section map calls it for l0 = 0..L-1 inside "
                  "reuse_clean_passes() (one clean pass for all l0)",
        "floor": FLOOR_DEFINITION,
        "timing": ("CPU seconds of the bench process (time.process_time)" if clock == "cpu" else "wall-clock seconds")
                  + ", median over repeats of interleaved measurements (the order of naive, "
                  "engine and floor rotates between repeats); speedup = naive_s / engine_s and floor_fraction = "
                  "floor_s / engine_s from the medians",
    }
    record["environment"] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cuda_device": torch.cuda.get_device_name(lm.device) if lm.device.type == "cuda" else None,
    }
    return record


def write_json(record: dict, path: str | os.PathLike) -> Path:
    """Write ``record`` as JSON atomically (temp file in the same folder, then rename; see :mod:`.io`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(path, record, default=_jsonable)


def _jsonable(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
