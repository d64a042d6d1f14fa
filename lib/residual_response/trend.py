"""The trend baseline: the twin's right neighbours, extrapolated to the stripe along their trend.

Why a design of its own: the twin baseline (:mod:`.induction`) divides each stripe entry by the
mean of its right neighbours ``k+1, k+2``, in the repeated sequence and in its twin. That
cancels whatever the repeat does to every source alike, but not a repeat's effect that *changes*
from one source to the next. Random-initialised models at a stand-in's full configuration show
such a change: the repeat's lift of the response (repeated over twin, per source offset ``o``,
:func:`.null.neighbour_profile`) falls smoothly to the right, so the stripe, one offset left of
its neighbours, sits a little above their mean, and the twin scores slightly above 1 with
intervals narrow enough to exclude it. (Not every departure is a trend: a lift that scatters
from one offset to the next is not removed by a line, only its interval widened;
:func:`.null.right_trend` splits the two.)

This baseline fits a straight line to the target's mean response over the right offsets
``o = first .. first + reach - 1`` and takes its value at ``o = 0``, separately in the repeated
sequence and in its twin::

    score(l) = [mean chi_rep(k, t) / sum_o w_o mean chi_rep(k+o, t)]
             / [mean chi_twin(k, t) / sum_o w_o mean chi_twin(k+o, t)],   t = T+k-1

with ``w_o`` the least-squares weights of the line's intercept (:func:`trend_weights`; they sum
to 1, and the far offsets get negative weight). The mean is linear, so the baseline is a
per-entry weighted sum and the score keeps the twin's form: a ratio of ratios of four means,
scored by the same paired two-level bootstrap (:func:`.induction.scores_from_stripes`). The
price: the line's intercept is noisier than a mean, and every stripe position needs ``reach``
right neighbours inside the first copy, which leaves fewer positions at short copies. The null
page of the book measures both, beside the twin, on the same runs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .checks import InputError, check_int, check_model
from .induction import scores_from_stripes
from .induction_result import InductionResult, StripeData
from .models import LoadedModel
from .sequences import InductionLayout, induction_layout, make_sequence

__all__ = ["DEFAULT_REACH", "no_repeat_trend", "rescore_trend", "trend_baseline", "trend_entries", "trend_weights"]

#: right offsets the line is fitted to by default (``o = 1, 2, 3`` for the induction stripe)
DEFAULT_REACH = 3


def trend_weights(offsets: Sequence[int]) -> np.ndarray:
    """``[len(offsets)]``: the weights whose sum with values at ``offsets`` is the least-squares
    line through them, evaluated at offset 0.

    Why weights: a fit that is linear in the values commutes with the mean over stripe entries,
    so the extrapolated baseline is a weighted sum of neighbours per entry. The weights sum to 1
    (a flat profile is returned unchanged); two offsets ``1, 2`` give ``2, -1``.

    Raises:
        InputError: fewer than two offsets, repeated ones, or an offset that is not positive.
    """
    if not isinstance(offsets, (list, tuple, range, np.ndarray)):
        raise TypeError(f"offsets must be a sequence of ints, got {type(offsets).__name__}")
    x = np.asarray([check_int(o, "offset", minimum=1) for o in offsets], dtype=float)
    if len(x) < 2 or len(set(x.tolist())) != len(x):
        raise InputError(f"offsets must be two or more distinct positive offsets to fit a line; got {list(offsets)!r}")
    dx = x - x.mean()
    return 1.0 / len(x) - x.mean() * dx / float((dx ** 2).sum())


def trend_baseline(chi: np.ndarray, src_rows: np.ndarray, targets: np.ndarray, offsets: Sequence[int]) -> np.ndarray:
    """``[n_read, P]``: per stripe entry, the weighted sum ``sum_o w_o chi[:, r + o, t]`` (:func:`trend_weights`).

    Args:
        chi: ``[n_read, T, N]`` response of the first copy's sources (rows) at every target.
        src_rows: ``[P]`` stripe source rows into ``chi``; ``targets``: ``[P]`` their targets.
        offsets: the right offsets of the line; every ``r + o`` must lie inside the first copy.
    """
    w = trend_weights(offsets)
    rows, targets = np.asarray(src_rows), np.asarray(targets)
    if len(rows) and rows.max() + max(offsets) >= chi.shape[1]:
        raise InputError(f"a stripe source row {int(rows.max())} has no neighbour at offset {max(offsets)} inside "
                         f"the first copy of {chi.shape[1]} sources")
    return sum(wo * chi[:, rows + o, targets] for wo, o in zip(w, offsets))


def trend_entries(chi: np.ndarray, layout: InductionLayout, reach: int = DEFAULT_REACH) -> tuple[tuple, tuple]:
    """The stripe entries of one response matrix and their trend baselines.

    Keeps the stripe positions with ``reach`` right neighbours in the first copy: induction
    ``k = 2 .. T-reach`` (offsets ``1 .. reach``), duplicate ``k = 1 .. T-reach-1`` (offsets
    ``2 .. reach+1``: ``k+1`` is that target's induction source, as in the twin baseline).

    Args:
        chi: ``[n_read, T, N]`` response of the first copy's sources (rows) at every target.
        layout: the sequence's :class:`~.sequences.InductionLayout`.
        reach: how many right offsets the line is fitted to (2 or more).

    Returns:
        ``((ind, ind_base), (dup, dup_base))``, each ``[n_read, P]``.
    """
    reach = check_int(reach, "reach", minimum=2)
    T = layout.T
    if T < reach + 3:
        raise InputError(f"T={T} is too short for a trend over {reach} right neighbours; use T >= {reach + 3}")
    out = []
    for sources, targets, first in ((layout.induction_sources, layout.induction_targets, 1),
                                    (layout.duplicate_sources, layout.duplicate_targets, 2)):
        src, tgt = sources.numpy() - layout.offset, targets.numpy()
        offsets = list(range(first, first + reach))
        keep = src + offsets[-1] < T
        out.append((chi[:, src[keep], tgt[keep]], trend_baseline(chi, src[keep], tgt[keep], offsets)))
    return out[0], out[1]


def rescore_trend(result: InductionResult, reach: int = DEFAULT_REACH) -> InductionResult:
    """The runs of a twin result scored against the trend baseline, from its kept response matrices.

    Why from the same runs: the trend and the twin then differ only in the baseline, so their
    scores and interval widths compare the estimators, not two draws of sequences. The result's
    ``control`` is ``"trend"``; its intervals come from the same bootstrap as every score
    (:func:`.induction.scores_from_stripes`).

    Args:
        result: an :func:`.induction.induction_scores` result of the twin baseline computed with
            ``keep_matrices=True`` (it holds the repeated sequences' and the twins' matrices).
        reach: how many right offsets the line is fitted to (:data:`DEFAULT_REACH`).
    """
    if not isinstance(result, InductionResult):
        raise TypeError(f"result must be an InductionResult, got {type(result).__name__}")
    st = result.stripes
    if st is None or st.matrices is None or not {"repeated", "twin"} <= set(st.matrices):
        raise InputError("the trend baseline needs the repeated sequences' and the twins' response matrices: "
                         "compute the result with control='twin' and keep_matrices=True")
    layout = InductionLayout(T=st.T, offset=st.sources[0])
    induction, duplicate = {}, {}
    for key, base_key in (("repeated", "control"), ("twin", "twin_control")):
        parts = [trend_entries(chi, layout, reach) for chi in st.matrices[key]]  # one per seed
        induction[key] = np.stack([p[0][0] for p in parts])
        induction[base_key] = np.stack([p[0][1] for p in parts])
        duplicate[key] = np.stack([p[1][0] for p in parts])
        duplicate[base_key] = np.stack([p[1][1] for p in parts])
    new = StripeData(T=st.T, l0=st.l0, eps=st.eps, seeds=st.seeds, read_streams=st.read_streams,
                     induction=induction, duplicate=duplicate, sources=st.sources, control_kind="trend",
                     matrices=st.matrices)
    out = scores_from_stripes(new, model=result.model, method=result.method, n_directions=result.n_directions,
                              n_boot=result.n_boot, confidence=result.confidence)
    out.n_layers = result.n_layers
    return out


def no_repeat_trend(lm: LoadedModel, reference: InductionResult) -> InductionResult:
    """The trend score of sequences without a repeat: the null of the trend baseline on a trained model.

    The repeated sequences of ``reference`` are replaced by random ones of the same length and
    seeds (same sources, stream, eps and directions), scored against their own trend baseline;
    the twins' part of the score is the reference's, reused. The trend counterpart of
    :func:`.crosscheck.kind_scores` with ``kind="random"``: a trained model has nothing to copy there.

    Args:
        lm: the model of ``reference``.
        reference: a :func:`rescore_trend` result (``control="trend"``, finite eps, with stripes).
    """
    from .engine import response

    check_model(lm)
    if not isinstance(reference, InductionResult):
        raise TypeError(f"reference must be an InductionResult, got {type(reference).__name__}")
    st = reference.stripes
    if st is None or st.control_kind != "trend" or reference.method != "finite":
        raise InputError("reference must be a finite-eps rescore_trend result with its stripes (control 'trend')")
    layout = induction_layout(lm, st.T)
    if layout.offset != st.sources[0]:
        raise InputError(f"reference was not computed on {lm.name}: its first source is {st.sources[0]}, "
                         f"the model's is {layout.offset}")
    reach = int(st.T - 1 - st.induction["repeated"].shape[-1])  # positions k = 2..T-reach
    parts = []
    for seed in st.seeds:
        tokens = make_sequence(lm, "random", st.T, seed)
        res = response(lm, tokens, [st.eps], l0=st.l0, read_streams=st.read_streams, sources=st.sources,
                       n_directions=reference.n_directions, seed=seed)
        parts.append(trend_entries(np.asarray(res.chi[0]), layout, reach))
    induction = {"repeated": np.stack([p[0][0] for p in parts]), "control": np.stack([p[0][1] for p in parts])}
    duplicate = {"repeated": np.stack([p[1][0] for p in parts]), "control": np.stack([p[1][1] for p in parts])}
    for key in ("twin", "twin_control"):
        induction[key], duplicate[key] = st.induction[key], st.duplicate[key]
    new = StripeData(T=st.T, l0=st.l0, eps=st.eps, seeds=list(st.seeds), read_streams=st.read_streams,
                     induction=induction, duplicate=duplicate, sources=st.sources, control_kind="trend")
    return scores_from_stripes(new, model=f"{lm.name} (random)", n_directions=reference.n_directions,
                               n_boot=reference.n_boot, confidence=reference.confidence)
