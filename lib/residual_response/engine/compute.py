"""The algorithm: ``chi`` of one sequence from a clean pass and a plan of perturbed passes.

    r[l, s, t](eps)   = || h~[l, t] - h[l, t] || / || h[l, t] ||
    chi[l, s, t](eps) = r[l, s, t](eps) / eps

:func:`response` validates its arguments once into a frozen :class:`ResponseJob`; :func:`run_response`
computes (or reuses) the clean pass, plans the rows into passes, runs them and averages over
directions. ``method="jvp"`` replaces the finite
difference by the exact linear response (the eps -> 0 limit), computed with forward-mode
automatic differentiation through the same hooks: ``chi = ||J u|| * ||h[l0, s]|| / ||h[l, t]||``.
It needs eager attention (SDPA kernels have no forward-mode AD on the CPU), which the engine
switches on for the call.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD

from ..checks import (InputError, check_choice, check_eps_policy, check_finite_result, check_int, check_int_list,
                      check_model, check_number, check_seed, keyword_alias, validate_eps, validate_l0,
                      validate_read_streams, validate_tokens)
from ..models import LoadedModel
from ..perturbation import DIRECTION_KINDS, _directions
from ..progress import Progress, as_progress
from ..results_cache import memoize
from .clean import CleanPassCache, clean_pass
from .passes import METHODS, PackedPass, PaddedPass
from .plan import _batch_rows, plan_rows, uses_prefix
from .result import ResponseResult

__all__ = ["ResponseJob", "response", "run_response"]


@keyword_alias(layer="l0", read_layers="read_streams")
def response(
    lm: LoadedModel,
    tokens,
    eps: Sequence[float] | float = (1e-3,),
    *,
    l0: int = 0,
    read_streams: Iterable[int] | None = None,
    sources: Iterable[int] | None = None,
    n_directions: int = 1,
    direction: str = "gaussian",
    seed: int = 0,
    method: str = "finite",
    batch_rows: int | None = None,
    memory_budget_mb: float = 1024.0,
    reuse_prefix: bool = True,
    progress: "bool | Progress" = False,
    clean_cache: CleanPassCache | None = None,
) -> ResponseResult:
    """Normalised response ``chi`` of a sequence to weak single-token perturbations.

    Args:
        lm: the model.
        tokens: ``[N]`` token ids.
        eps: relative strengths (finite, > 0). Ignored by ``method="jvp"``. Above 1 refused, below
            the dtype's rounding floor a :class:`~residual_response.checks.BelowFloorWarning`
            (:func:`~residual_response.checks.allow_eps` overrides both).
        l0: perturbed stream in ``0..L-1`` (``layer=`` is accepted as its old name).
        read_streams: streams to read, each in ``l0..L`` (default all of them; ``read_layers=``
            is accepted as its old name).
        sources: positions to perturb (default all ``0..N-1``).
        n_directions: directions averaged per source.
        direction: ``"gaussian"`` or ``"embedding"``.
        seed: seed of the directions; the same seed gives bit-identical ``chi`` on the CPU.
        method: ``"finite"`` (finite eps) or ``"jvp"`` (exact linear response).
        batch_rows: most rows per forward pass (default: from ``memory_budget_mb``); rows sorted
            by source are cut into batches of at most this many by :func:`~.plan.plan_batches`.
        reuse_prefix: skip positions before each batch's first source (causality).
        progress: ``True``: a progress bar over the passes, on a terminal only; a
            :class:`~residual_response.progress.Progress`: count the passes on a job's bar.
        clean_cache: where to find and keep the clean pass of the sequence (default: the cache
            installed by :func:`~.clean.reuse_clean_passes`, else none).

    Returns:
        :class:`~.result.ResponseResult` with ``chi`` of shape ``[n_eps, n_read, n_src, N]``.

    Raises:
        TypeError, InputError: a bad argument, before any forward pass (one sentence naming it).
        NonFiniteResultError: ``chi`` holds NaN or inf (overflowing activations, damaged
            weights); an :class:`~residual_response.checks.InputError` naming the first bad read
            stream and source, so that no NaN leaves the engine looking like a result.
    """
    job = ResponseJob.validated(lm, tokens, eps, l0=l0, read_streams=read_streams, sources=sources,
                                n_directions=n_directions, direction=direction, seed=seed, method=method,
                                batch_rows=batch_rows, memory_budget_mb=memory_budget_mb, reuse_prefix=reuse_prefix)
    return run_response(job, progress=progress, clean_cache=clean_cache)


@memoize("response", ignore=("progress", "clean_cache"))
def run_response(job: "ResponseJob", *, progress: "bool | Progress" = False,
                 clean_cache: CleanPassCache | None = None) -> ResponseResult:
    """The algorithm, on a validated :class:`ResponseJob`: clean pass, plan, passes, average, result.

    Kept in the results cache while it is switched on (:mod:`..results_cache`), keyed by the job.

    Why apart from :func:`response`: callers that validated their own setting once (the induction
    scores run this for every seed and sequence) hand the engine a job built from it
    (:meth:`ResponseJob.trusted`), and nothing is checked again.
    """
    with engine_mode(job.lm, job.method):
        clean = clean_pass(job.lm, job.tokens, job.l0, job.reads, want_cache=job.use_prefix, cache=clean_cache)
        return run_on_clean(job, clean, progress)


def run_on_clean(job: "ResponseJob", clean, progress: "bool | Progress" = False) -> ResponseResult:
    """The perturbed passes of ``job`` on its clean pass ``clean``, and the result (inside :func:`engine_mode`)."""
    lm = job.lm
    dirs = _directions(lm, job.tokens, torch.tensor(job.sources), job.K, job.direction, job.seed)  # [S, K, d]
    acc = torch.zeros(len(job.eps), len(job.reads), len(job.sources), job.N, dtype=torch.float64)  # sum of r over directions
    row_positions = 0  # positions computed, summed over rows (the work the passes did)
    # packed passes compute exactly the positions >= each row's source (they need the attention
    # inputs of the clean pass); padded passes recompute those between a pass's first source and a row's
    packed = job.use_prefix and clean.attention is not None
    rows, plan = plan_rows(lm, job.sources, job.K, len(job.eps), job.N, job.B, job.use_prefix, packed)
    dual = fwAD.dual_level() if job.method == "jvp" else contextlib.nullcontext()
    with dual, as_progress(progress, f"{lm.name} l0={job.l0}") as bar, bar.expect(len(plan)):
        for a, b in plan:
            j, k, e = (torch.tensor(c) for c in zip(*rows[a:b]))  # [B] source, direction, eps index of each row
            one = _make_pass(job, clean, packed, dirs[j, k], j, e)
            accumulate(acc, one.run(), j, e)
            row_positions += one.row_positions
            bar.update()
    return finish_response(job, acc, n_batches=len(plan), packed=packed, row_positions=row_positions)


def accumulate(acc: torch.Tensor, r: torch.Tensor, j: torch.Tensor, e: torch.Tensor) -> None:
    """Add a pass's ``r`` (``[n_read, B, N]``) of rows with source indices ``j`` and eps indices ``e``
    (``[B]`` each) into ``acc`` (``[n_eps, n_read, n_src, N]``), in place."""
    acc.index_put_((e[:, None], torch.arange(acc.shape[1])[None, :], j[:, None]), r.permute(1, 0, 2), accumulate=True)


def finish_response(job: "ResponseJob", acc: torch.Tensor, *, n_batches: int, packed: bool,
                    row_positions: int) -> ResponseResult:
    """The result of a job from ``acc`` ``[n_eps, n_read, n_src, N]``, the relative changes summed
    over directions: ``chi`` is their mean over directions, divided by eps (``finite``)."""
    chi = acc / job.K
    if job.method == "finite":
        chi = chi / torch.as_tensor(job.eps)[:, None, None, None]
    # a NaN here would travel on as "no score" or "no regime"; stop it where it is made
    check_finite_result(chi.numpy(), read_streams=job.reads, sources=job.sources, eps=job.eps, dtype=job.dtype)
    return ResponseResult(
        chi=chi.numpy(), eps=job.eps, read_streams=job.reads, sources=job.sources, tokens=job.tokens.numpy(),
        l0=job.l0, n_directions=job.K, direction=job.direction, method=job.method, seed=job.seed, model=job.lm.name,
        dtype=job.dtype, meta={"batch_rows": job.B, "n_batches": n_batches, "reuse_prefix": job.use_prefix,
                               "packed": packed, "row_positions": row_positions})


@dataclass(frozen=True)
class ResponseJob:
    """The validated setting of one response computation, frozen: checked once, then passed down.

    ``reads`` are the read streams, ``K`` the directions per source, ``B`` the most rows per
    pass; ``eps`` is ``[n_eps]`` (``[nan]`` for ``method="jvp"``).
    """

    lm: LoadedModel
    tokens: torch.Tensor  # [N]
    N: int
    l0: int
    reads: list[int]
    sources: list[int]
    eps: np.ndarray  # [n_eps]; [nan] for jvp
    K: int  # directions per source
    direction: str
    seed: int
    method: str
    B: int  # most rows per pass
    use_prefix: bool
    dtype: str

    @classmethod
    def validated(cls, lm, tokens, eps=(1e-3,), *, l0=0, read_streams=None, sources=None, n_directions=1,
                  direction="gaussian", seed=0, method="finite", batch_rows=None, memory_budget_mb=1024.0,
                  reuse_prefix=True) -> "ResponseJob":
        """Check every argument of :func:`response` (``TypeError``/``InputError`` naming it)."""
        check_model(lm)
        tokens = validate_tokens(lm, tokens)
        N = tokens.shape[0]
        l0 = validate_l0(lm, l0)
        n_directions = check_int(n_directions, "n_directions", minimum=1)
        if batch_rows is not None:
            batch_rows = check_int(batch_rows, "batch_rows", minimum=1)
        memory_budget_mb = check_number(memory_budget_mb, "memory_budget_mb", positive=True)
        seed = check_seed(seed)
        check_choice(method, "method", METHODS)
        check_choice(direction, "direction", DIRECTION_KINDS)
        eps_arr = validate_eps(eps) if method == "finite" else np.array([np.nan])
        check_eps_policy(eps_arr, lm.dtype, stacklevel=4)  # above 1 refused, below the floor warned
        reads = None if read_streams is None else validate_read_streams(lm, read_streams, l0)
        if sources is not None:
            sources = check_int_list(sources, "sources")
            bad = [s for s in sources if not 0 <= s < N]
            if bad:
                raise InputError(f"source {bad[0]} out of range; allowed 0..{N - 1}")
        return cls.trusted(lm, tokens, eps_arr, l0=l0, read_streams=reads, sources=sources, n_directions=n_directions,
                           direction=direction, seed=int(seed), method=method, batch_rows=batch_rows,
                           memory_budget_mb=memory_budget_mb, reuse_prefix=reuse_prefix)

    @classmethod
    def trusted(cls, lm, tokens, eps, *, l0, read_streams, sources, n_directions, direction, seed, method,
                batch_rows=None, memory_budget_mb=1024.0, reuse_prefix=True) -> "ResponseJob":
        """A job from values its caller has validated already (its own frozen setting): nothing is
        checked. ``tokens``: ``[N]`` int64 CPU; ``eps``: ``[n_eps]`` float64 (ignored for jvp)."""
        N = int(tokens.shape[0])
        reads = list(range(l0, lm.n_layers + 1)) if read_streams is None else list(read_streams)
        srcs = list(range(N)) if sources is None else list(sources)
        eps_arr = np.asarray(eps, dtype=np.float64) if method == "finite" else np.array([np.nan])
        B = batch_rows or _batch_rows(lm, N, memory_budget_mb, jvp=(method == "jvp"))
        return cls(lm=lm, tokens=tokens, N=N, l0=int(l0), reads=reads, sources=srcs, eps=eps_arr, K=int(n_directions),
                   direction=direction, seed=int(seed), method=method, B=B, use_prefix=uses_prefix(lm, N, reuse_prefix),
                   dtype=str(lm.dtype).replace("torch.", ""))


def _make_pass(job: ResponseJob, clean, packed: bool, dirs: torch.Tensor, j: torch.Tensor, e: torch.Tensor):
    """The pass of rows with source indices ``j`` ([B]), directions ``dirs`` ([B, d]) and eps indices ``e``."""
    src_pos = torch.tensor(job.sources)[j]  # [B]
    eps_rows = torch.as_tensor(job.eps)[e] if job.method == "finite" else torch.zeros(len(j))  # [B]
    args = (job.lm, job.tokens, clean, job.l0, job.reads, src_pos, dirs, eps_rows, job.method)
    if packed:
        return PackedPass(*args)
    return PaddedPass(*args, first=None if job.use_prefix else 0)


@contextlib.contextmanager
def engine_mode(lm: LoadedModel, method: str):
    """What every pass of a call runs under: its attention implementation (:func:`_attention_for`)
    and no autograd graph (``finite``), or autograd on for forward-mode AD (``jvp``)."""
    with _attention_for(lm, method), (torch.no_grad() if method == "finite" else torch.enable_grad()):
        yield


@contextlib.contextmanager
def _attention_for(lm: LoadedModel, method: str):
    """The attention implementation of the call: eager for ``jvp`` (SDPA kernels have no
    forward-mode AD on the CPU; float64 models get the precise eager of :mod:`..precision`)."""
    implementation = None
    if method == "jvp":
        if lm.dtype == torch.float64:
            from ..precision import register_precise_eager

            implementation = register_precise_eager()
        else:
            implementation = "eager"
    current = getattr(lm.model.config, "_attn_implementation", None)
    if implementation is None or implementation == current:
        yield
        return
    lm.model.set_attn_implementation(implementation)
    try:
        yield
    finally:
        lm.model.set_attn_implementation(current)
