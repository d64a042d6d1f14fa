"""One sequence's response under several variants of a model that differ only from some block on.

A head ablation changes nothing before the first block whose heads it ablates: up to that block's
input, the clean pass and every perturbed row of the ablated model are those of the unablated
one. An ablation study runs ~25 such variants of one sequence (named heads, random draws), and
each of them would run every block from ``l0``. Here the unchanged model's perturbed passes run
once, up to the last block where a variant starts, keeping the perturbed stream entering each
such block (``kept`` of :class:`.passes.Pass`); each variant then runs only from its own start
(:meth:`.passes.Pass.resume`), and its reads of the streams before that start are the unchanged
pass's. The result of each variant equals :func:`.compute.run_response` run inside the variant's
context: the same rows, plans and operations, in the same order.
"""

from __future__ import annotations

from typing import Callable, ContextManager, Hashable, Mapping

import torch

from ..perturbation import _directions
from .clean import CleanPass
from .compute import ResponseJob, _make_pass, finish_response
from .plan import plan_rows
from .result import ResponseResult

__all__ = ["run_response_variants"]

#: a variant: ``(start, context)``; the model inside ``context()`` computes what the unchanged model
#: computes up to the input of block ``start``
Variant = tuple[int, Callable[[], ContextManager]]


def _clean(job: ResponseJob) -> CleanPass:
    """The clean pass of the job's sequence (no clean-pass cache: a variant's hooks are not in its key)."""
    return CleanPass(job.lm, job.tokens, [job.l0] + job.reads, job.use_prefix, capture_attention=job.use_prefix)


@torch.no_grad()
def run_response_variants(job: ResponseJob, variants: Mapping[Hashable, Variant]) -> dict[Hashable, ResponseResult]:
    """:func:`.compute.run_response` of ``job`` inside each variant's context, sharing the blocks
    before each variant's start with the unchanged model (module docstring).

    Args:
        job: a finite-eps job (a kept stream carries no tangent).
        variants: ``{key: (start, context)}``: ``context()`` changes the model (installs hooks) for
            the duration of a ``with`` block, and changes nothing before block ``start``; a start
            at or before ``job.l0`` runs the variant whole.

    Returns:
        ``{key: ResponseResult}``, as :func:`.compute.run_response` inside ``context()`` returns it.
    """
    if job.method != "finite":
        raise ValueError(f"variants share perturbed streams of finite-eps passes only, got method={job.method!r}")
    lm = job.lm
    dirs = _directions(lm, job.tokens, torch.tensor(job.sources), job.K, job.direction, job.seed)  # [S, K, d]
    last = max(job.reads)
    starts = {key: int(start) if job.l0 < int(start) < last else job.l0 for key, (start, _) in variants.items()}
    keep = sorted({s for s in starts.values() if s > job.l0})
    clean = _clean(job)
    packed = job.use_prefix and clean.attention is not None
    rows, plan = plan_rows(lm, job.sources, job.K, len(job.eps), job.N, job.B, job.use_prefix, packed)
    batches = [tuple(torch.tensor(c) for c in zip(*rows[a:b])) for a, b in plan]  # [B] source, direction, eps index
    kept, prefix = [], []  # per pass: {block: perturbed stream entering it}, the reads of the unchanged model
    for j, k, e in batches if keep else ():
        one = _make_pass(job, clean, packed, dirs[j, k], j, e)
        one.keep, one.last = set(keep), keep[-1]  # stop once the last kept stream is made
        prefix.append(one.run())
        kept.append(one.kept)
    reads = torch.tensor(job.reads)
    out = {}
    for key, (_, context) in variants.items():
        start = starts[key]
        acc = torch.zeros(len(job.eps), len(job.reads), len(job.sources), job.N, dtype=torch.float64)
        row_positions = 0
        with context():
            clean_v = _clean(job)
            packed_v = job.use_prefix and clean_v.attention is not None
            if packed_v != packed:  # a different layout: the kept streams do not fit; run whole
                start = job.l0
            for i, (j, k, e) in enumerate(batches):
                one = _make_pass(job, clean_v, packed_v, dirs[j, k], j, e)
                if start > job.l0:
                    one.resume(start, kept[i][start].clone())
                r = one.run()  # [n_read, B, N]
                if start > job.l0:
                    before = reads <= start
                    r[before] = prefix[i][before]
                acc.index_put_((e[:, None], torch.arange(len(job.reads))[None, :], j[:, None]), r.permute(1, 0, 2),
                               accumulate=True)
                row_positions += one.row_positions
        out[key] = finish_response(job, acc, n_batches=len(plan), packed=packed_v, row_positions=row_positions)
    return out

