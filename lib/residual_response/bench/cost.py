"""The book's one cost model: floating-point operations of a response computation, and their time.

Why one module of pure functions: every page that quotes what a result costs (the performance
page, every model page) must give the same number for the same work, from the same count: the
package's one cost model (:mod:`residual_response.cost`, which the batch planner and the command
line's estimate use too). The count is ``2 x weights x positions`` through the blocks (embeddings and the LM head left out: the
engine never multiplies by them); a time is that count divided by a throughput, either one
measured by the bench on a stand-in (:func:`engine_rate_gflops`) or one assumed for an H100
(:data:`H100_TFLOPS`).

Nothing here runs a model: the paper's models enter by their public configs
(:data:`PAPER_MODELS`), a loaded stand-in by its block dimensions (:func:`block_params`).
pandas is imported only by :func:`paper_cost`, the one function that returns a table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..cost import model_dims, non_embedding_params, response_token_forwards

if TYPE_CHECKING:
    import pandas as pd

    from ..models import LoadedModel
    from .record import BenchRecord

__all__ = [
    "PAPER_MODELS",
    "BOOK_WORKLOADS",
    "H100_TFLOPS",
    "non_embedding_params",
    "block_params",
    "model_dims",
    "paper_block_params",
    "response_token_forwards",
    "workload_token_forwards",
    "flop_summary",
    "gpu_estimates",
    "paper_cost",
    "engine_rate_gflops",
]

#: Architecture of the paper's models (public configs), for the FLOP estimate.
PAPER_MODELS = {
    "gemma-2-2b": dict(layers=26, d_model=2304, d_ffn=9216, q_dim=8 * 256, kv_dim=4 * 256, gated=True),
    "llama-3.2-3b": dict(layers=28, d_model=3072, d_ffn=8192, q_dim=3072, kv_dim=8 * 128, gated=True),
    "gpt2-xl": dict(layers=48, d_model=1600, d_ffn=6400, q_dim=1600, kv_dim=1600, gated=False),
}

#: The book's workloads for the GPU estimate (published settings of its pages): sequences of
#: ``N = 2T + 1`` tokens, one direction and one eps per source.
BOOK_WORKLOADS = (
    dict(work="one response tensor (bench: T=40, every source, l0=0)", T=40, n_sequences=1, l0="0", sources="all"),
    dict(work="induction scores (emergence page: T=20, 4 seeds x (repeated + twin), l0=0)", T=20, n_sequences=8,
         l0="0", sources="first copy"),
    dict(work="full section map (T=16, 2 seeds x (repeated + twin), every l0)", T=16, n_sequences=4, l0="all",
         sources="first copy"),
)

#: Sustained H100 throughput assumed for these batches (TFLOP/s, low and high): 30-50 % of the
#: 989 dense bf16 tensor-core peak; 45-75 % of the 67 FP32 (TF32 off) peak.
H100_TFLOPS = {"bfloat16": (300.0, 500.0), "float32": (30.0, 50.0)}


def block_params(lm: LoadedModel) -> int:
    """Weights in ``lm``'s blocks, counted as :func:`non_embedding_params` counts the paper's models.

    Why the same count for both: the cost of a step scales with this number, so the ratio of a
    stand-in's count to a paper model's scales a measured time to an estimate.
    """
    return non_embedding_params(**model_dims(lm))


def paper_block_params() -> dict[str, int]:
    """:func:`non_embedding_params` of every model in :data:`PAPER_MODELS` (from their public configs)."""
    return {name: non_embedding_params(**dims) for name, dims in PAPER_MODELS.items()}


def workload_token_forwards(workload: Mapping[str, Any], L: int) -> float:
    """Token-forwards of one workload on a model of ``L`` blocks (:func:`response_token_forwards`).

    Keys of ``workload``: ``T`` (sequences of ``N = 2T + 1`` tokens), ``n_sequences`` (default 1),
    ``rows_per_source`` (default 1), ``l0`` = ``"all"`` (every stream ``0..L-1``), one stream
    (``"0"`` or an int; the default ``"0"``) or a list of relative depths in ``[0, 1)`` (so that a
    stand-in's sampled ``l0`` map onto the paper model's depth), and ``sources`` = ``"all"`` (the
    default), ``"first copy"`` (``1..T``) or an int count spread evenly over ``1..N-2``.
    """
    T = int(workload["T"])
    N = 2 * T + 1
    l0 = workload.get("l0", "0")
    if l0 == "all":
        l0s = list(range(L))
    elif isinstance(l0, (str, int)):
        l0s = [int(l0)]
    else:
        l0s = sorted({min(L - 1, int(round(float(x) * L))) for x in l0})
    src = workload.get("sources", "all")
    if src == "all":
        sources = None
    elif src == "first copy":
        sources = range(1, T + 1)
    else:
        n = int(src)
        sources = sorted({1 + round(i * (N - 3) / max(1, n - 1)) for i in range(n)})
    return int(workload.get("n_sequences", 1)) * response_token_forwards(N, L, l0s, sources,
                                                                         int(workload.get("rows_per_source", 1)))


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


def _cost_rows(workloads: Sequence[Mapping[str, Any]], tflops: dict | None, cpu_gflops: float | None) -> list[dict]:
    """One row per paper model and workload: the work, and its time at each throughput."""
    tflops = dict(H100_TFLOPS if tflops is None else tflops)
    rows = []
    for name, dims in PAPER_MODELS.items():
        P, L = non_embedding_params(**dims), dims["layers"]
        for w in workloads:
            tf = workload_token_forwards(w, L)
            flops = 2.0 * P * tf
            row = {"model": name, "work": w["work"], "layers": L, "non_embedding_params": P, "token_forwards": tf,
                   "tflop": flops / 1e12}
            if cpu_gflops is not None:
                row["cpu_s"] = flops / (cpu_gflops * 1e9)
            for dtype, (lo, hi) in tflops.items():
                row[f"{dtype}_s_low"], row[f"{dtype}_s_high"] = flops / (hi * 1e12), flops / (lo * 1e12)
            rows.append(row)
    return rows


def gpu_estimates(workloads: Sequence[dict] = BOOK_WORKLOADS, tflops: dict | None = None) -> list[dict]:
    """Seconds on one H100 for the paper's models: ``2 x non-embedding params x token-forwards / throughput``.

    Token-forwards (:func:`workload_token_forwards`) count the necessary work of the engine:
    one clean pass per sequence plus, for every ``l0`` and source ``s``, positions ``s..N-1``
    through blocks ``l0..L-1``. Attention score FLOPs (``~4 N d`` per position and block, a few
    per cent at these ``N``) and the LM head (never run) are left out. ``tflops`` maps a dtype to
    ``(low, high)`` sustained TFLOP/s (default :data:`H100_TFLOPS`).
    """
    return _cost_rows(workloads, tflops, None)


def paper_cost(workloads: Sequence[dict], cpu_gflops: float, tflops: dict | None = None) -> pd.DataFrame:
    """The book's one cost model for the paper's models: FLOPs of the necessary work / a throughput.

    Why one function: every page that extrapolates to the paper's models must give the same number
    for the same work. The work of each entry of ``workloads`` is counted in token-forwards
    (:func:`workload_token_forwards`) through the paper model's blocks, as :func:`gpu_estimates`
    does; the time is that work at ``cpu_gflops`` (the engine's measured rate on a stand-in, from
    the bench record, :func:`engine_rate_gflops`) and at the H100 throughputs ``tflops``
    (default :data:`H100_TFLOPS`). Returns one row per paper model and workload with columns
    ``model, work, layers, non_embedding_params, token_forwards, tflop, cpu_s, <dtype>_s_low,
    <dtype>_s_high``; for the same workloads the H100 columns equal :func:`gpu_estimates`.
    """
    import pandas as pd

    if not cpu_gflops > 0:
        raise ValueError(f"cpu_gflops must be > 0, got {cpu_gflops!r}")
    return pd.DataFrame(_cost_rows(workloads, tflops, cpu_gflops))


def engine_rate_gflops(rec: BenchRecord | Mapping[str, Any]) -> float:
    """GFLOP/s of the engine's necessary work in a bench record (the stand-in's measured throughput).

    ``rec`` is a :class:`~.record.BenchRecord` or the dict ``bench.json`` holds. Records that
    lack the stored rate get it from their times.
    """
    if hasattr(rec, "to_json"):
        rec = rec.to_json()
    if not isinstance(rec, Mapping):
        raise TypeError(f"rec must be a BenchRecord or its JSON dict, got {type(rec).__name__}")
    if rec.get("engine_gflops_per_s"):
        return float(rec["engine_gflops_per_s"])
    flops = flop_summary(rec["N"], rec["n_layers"], rec["non_embedding_params"],
                         rec.get("vocab_size", 0) * rec["d_model"])
    return flops["necessary"] / rec["engine_s"] / 1e9
