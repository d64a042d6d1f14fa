"""Two sequences that share a prefix, perturbed at the same sources: the second one's rows start at the prefix's end.

Why: the induction score compares each repeated sequence ``[BOS, a_1 .. a_T, a_1 .. a_T]`` with its
twin ``[BOS, a_1 .. a_T, b_1 .. b_T]`` (:mod:`..induction`), perturbing the first copy of both with
the same seed. Equal tokens at the sources give equal directions (:func:`~..perturbation._directions`
reads the seed, the sources and the tokens there), equal clean streams before the copies differ
(causal attention) give equal strengths, and so every perturbed row of the twin equals the
repeated sequence's row at every position before ``P``, the first position where the two
sequences differ. Run apart, the twin's packed rows recompute those positions (about a third of
its work, a sixth of the pair's).

How: one :class:`SharedPrefixPass` holds the ``B`` rows of the sequence (row ``b`` computes
positions ``s_b..N-1``, as in :class:`~.passes.PackedPass`) and, after them, ``B`` rows of the twin
(row ``B + b`` computes positions ``P..N-1`` only, at their true positions for the rotary
embeddings). In attention, twin row ``B + b``'s padded keys and values are the clean ones before
``s_b`` (the sequences' clean passes agree there), row ``b``'s perturbed ones at ``s_b..P-1`` (the
same packed tensor, copied) and its own from ``P`` on; its reads before ``P`` are row ``b``'s.
The clean tensors the pass compares with are the two clean passes end to end
(:class:`PairedClean`). Everything else is the packed pass's: the same rows, directions and
strengths; the result equals two :func:`~.compute.run_response` calls to float rounding (the
matrix products run on longer packed sequences).

Where the passes cannot be shared (padded passes: an attention that cannot be tapped, no prefix
reuse, a sliding window shorter than the sequence; a memory bound of one row per pass; a source
at or after ``P``) the two sequences run apart, with the same results.
"""

from __future__ import annotations

import contextlib
import dataclasses

import torch
import torch.autograd.forward_ad as fwAD

from ..perturbation import _directions
from ..progress import Progress, as_progress
from ..results_cache import memoize
from .clean import CleanPass, CleanPassCache, clean_pass
from .compute import ResponseJob, accumulate, engine_mode, finish_response, run_on_clean
from .passes import PackedPass
from .plan import pair_rows, plan_rows, shares_prefix
from .result import ResponseResult

__all__ = ["PairedClean", "SharedPrefixPass", "run_response_pair", "shared_prefix_length"]


def shared_prefix_length(tokens: torch.Tensor, twin: torch.Tensor) -> int:
    """The first position where ``tokens`` and ``twin`` (``[N]`` each) differ (``N`` if nowhere)."""
    if tokens.shape != twin.shape:
        raise ValueError(f"a twin has the sequence's length: got {tuple(twin.shape)}, expected {tuple(tokens.shape)}")
    differ = (tokens != twin).nonzero()
    return int(differ[0, 0]) if len(differ) else int(tokens.shape[0])


class PairedClean:
    """The clean passes of a sequence and its twin, end to end: what a :class:`SharedPrefixPass` compares with.

    Attributes:
        streams: ``{l: [2N, d]}`` the sequence's clean stream, then the twin's.
        norms: ``{l: [2N]}`` float64, alike.
        attention: the sequence's attention inputs (its keys and values are the twin's before ``P``).
        attn_implementation, n_tokens: the sequence's.
    """

    def __init__(self, first: CleanPass, second: CleanPass, need: list[int]):
        self.streams = {l: torch.cat([first.streams[l], second.streams[l]]) for l in need}
        self.norms = {l: torch.cat([first.norms[l], second.norms[l]]) for l in need}
        self.attention = first.attention
        self.attn_implementation = first.attn_implementation
        self.n_tokens = first.n_tokens
        self.cache = None


class SharedPrefixPass(PackedPass):
    """A packed pass of ``B`` perturbed rows of ``tokens`` and ``B`` rows of ``twin`` (module docstring).

    Args (beyond :class:`~.passes.PackedPass`'s):
        twin: ``[N]`` token ids equal to ``tokens`` before ``prefix``.
        clean: the :class:`PairedClean` of both sequences.
        prefix: ``P``, larger than every source.

    :meth:`run` returns ``[n_read, 2B, N]``: the sequence's rows, then the twin's in the same order.
    """

    def __init__(self, lm, tokens: torch.Tensor, twin: torch.Tensor, clean: PairedClean, l0: int,
                 read_streams: list[int], src_pos: torch.Tensor, dirs: torch.Tensor, eps: torch.Tensor,
                 method: str = "finite", *, prefix: int):
        if not int(src_pos.max()) < prefix:
            raise ValueError(f"every source must lie before the shared prefix's end {prefix}, got {int(src_pos.max())}")
        self.twin, self.P = twin, int(prefix)
        super().__init__(lm, tokens, clean, l0, read_streams, src_pos, dirs, eps, method)

    def _row_starts(self):
        src = self.src_pos.long().cpu()  # [B]
        return torch.cat([src, torch.full_like(src, self.P)]), torch.cat([torch.zeros_like(src), torch.ones_like(src)])

    def _sequences(self):
        return torch.cat([self.tokens, self.twin])  # [2N]

    def _clean_input(self):
        h0 = super()._clean_input()
        B, N = self.B, self.N
        self.twin_positions = B * (N - self.P)  # of row_positions
        # twin row B + b reads row b's perturbed keys/values at s_b..P-1: copy them there too
        shared = ((self._row_of < B) & (self._pos_of < self.P)).nonzero()[:, 0]  # [K'] packed index
        to = (self._row_of[shared] + B) * N + self._pos_of[shared]  # [K'] into [2B * N]
        self._kv_from = torch.cat([torch.arange(self.row_positions), shared]).to(self.device)
        self._kv_to = torch.cat([self._flat_kv, to.to(self.device)])
        return h0

    def _finish(self, r):  # r [n_read, 2B, N]
        r[:, self.B:, :self.P] = r[:, :self.B, :self.P]
        return r


@memoize("response_pair", ignore=("progress", "clean_cache"))
def run_response_pair(job: ResponseJob, twin: torch.Tensor, *, progress: "bool | Progress" = False,
                      clean_cache: CleanPassCache | None = None) -> tuple[ResponseResult, ResponseResult]:
    """:func:`~.compute.run_response` of ``job`` and of the same job on ``twin``, sharing the passes
    where the two sequences agree (module docstring).

    Kept in the results cache while it is switched on (:mod:`..results_cache`), keyed by the job and
    the twin.

    Args:
        job: the sequence's validated job.
        twin: ``[N]`` int64 CPU token ids; shared with ``job.tokens`` up to their first difference.
        progress, clean_cache: as for :func:`~.compute.run_response` (both clean passes are kept).

    Returns:
        ``(result of job.tokens, result of twin)``; the two share ``meta["n_batches"]`` (the passes
        they ran together) and name ``meta["shared_prefix"]``, ``P``, when they shared them.
    """
    lm, other = job.lm, dataclasses.replace(job, tokens=twin)
    P = shared_prefix_length(job.tokens, twin)
    with engine_mode(lm, job.method), as_progress(progress, f"{lm.name} l0={job.l0}") as bar:
        cleans = [clean_pass(lm, t, job.l0, job.reads, want_cache=job.use_prefix, cache=clean_cache)
                  for t in (job.tokens, twin)]
        packed = job.use_prefix and cleans[0].attention is not None
        if not shares_prefix(packed, job.B, job.sources, P, job.N):
            return run_on_clean(job, cleans[0], bar), run_on_clean(other, cleans[1], bar)
        clean = PairedClean(*cleans, [job.l0] + job.reads)
        dirs = _directions(lm, job.tokens, torch.tensor(job.sources), job.K, job.direction, job.seed)  # [S, K, d]
        accs = [torch.zeros(len(job.eps), len(job.reads), len(job.sources), job.N, dtype=torch.float64)
                for _ in range(2)]  # [n_eps, n_read, n_src, N] each: sum of r over directions
        positions = [0, 0]
        rows, plan = plan_rows(lm, job.sources, job.K, len(job.eps), job.N, pair_rows(job.B), True, True)
        dual = fwAD.dual_level() if job.method == "jvp" else contextlib.nullcontext()
        with dual, bar.expect(len(plan)):
            for a, b in plan:
                j, k, e = (torch.tensor(c) for c in zip(*rows[a:b]))  # [B] source, direction, eps index of each row
                eps_rows = torch.as_tensor(job.eps)[e] if job.method == "finite" else torch.zeros(len(j))  # [B]
                one = SharedPrefixPass(lm, job.tokens, twin, clean, job.l0, job.reads, torch.tensor(job.sources)[j],
                                       dirs[j, k], eps_rows, job.method, prefix=P)
                r = one.run()  # [n_read, 2B, N]
                accumulate(accs[0], r[:, :len(j)], j, e)
                accumulate(accs[1], r[:, len(j):], j, e)
                positions[0] += one.row_positions - one.twin_positions
                positions[1] += one.twin_positions
                bar.update()
        out = tuple(finish_response(jb, acc, n_batches=len(plan), packed=True, row_positions=n)
                    for jb, acc, n in zip((job, other), accs, positions))
    for res in out:
        res.meta["shared_prefix"] = P
    return out
