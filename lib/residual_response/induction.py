"""Induction read off the response: the lag ``T-1`` stripe, its baseline, the rise over depth, the section map.

On ``[BOS, a_1 .. a_T, a_1 .. a_T]`` an induction mechanism at the second ``a_{k-1}`` (index
``T+k-1``) attends back to the first ``a_k`` (index ``k``) to predict ``a_k``. Perturbing source
``k`` therefore moves target ``T+k-1``: a stripe at lag ``T-1`` of the response matrix.

The score (the ``"twin"`` baseline, the default) compares each stripe entry with two things that
share everything with it but induction:

- **its right neighbours**: the same target's response to the next sources, ``k+1`` and ``k+2``
  (:func:`right_neighbour_baseline`). Whatever the target does to every source alike (its norm,
  the attention its duplicate draws) cancels. Only sources to the *right* of the stripe: a
  source ``j < k`` reaches the target through the second copy without any induction (a
  duplicate-token head at ``T+j`` reads ``j``, and the target reads ``T+j`` a few positions
  back), so left neighbours are inflated in every trained model;
- **its twin**: the same entries of ``[BOS, a_1 .. a_T, b_1 .. b_T]``, the same first copy with a
  fresh second half (``sequences.make_sequence(..., "twin")``). The ratio of a stripe entry to
  its right neighbours also holds how the response falls or rises with distance, which is not
  induction; the twin has the same positions and the same sources, and no repeat::

    score(l) = [mean chi_rep(k, T+k-1) / mean_o chi_rep(k+o, T+k-1)]
             / [mean chi_twin(k, T+k-1) / mean_o chi_twin(k+o, T+k-1)],   o in {1, 2}

  (means over seeds and stripe positions ``k = 2..T-1``). A model without induction scores 1:
  measured on random-init models of every architecture and size, on sequences without a repeat,
  and on the streams of trained models before their first induction heads (:mod:`.null`).

The older baselines remain as options: ``"neighbours"`` (``k-3, k-2, k+1, k+2`` of the repeated
sequence alone: left neighbours make trained models score 0.4-0.7 before induction exists),
``"random"`` and ``"shuffled"`` (the same entries of another sequence: a random model scores
0.6-0.8 against random tokens, because the repeated sequence holds duplicates and they do not).
The duplicate-token score uses lag ``T`` (source ``k``, target ``T+k``) the same way, with the
right neighbours beyond the induction source of the same target (``k+2``, ``k+3``).
Confidence intervals come from a bootstrap that resamples seeds and, within them, stripe
positions; the emergence layer is the middle of the score's rise over depth (:class:`Rise`).

Every argument is validated once, at the public functions, into a frozen
:class:`InductionSetting`; the work below them (:func:`run_induction`, :func:`run_section_map`)
takes the setting and checks nothing again. The engine calls, a seed's repeated sequence and its
twin in one (they share the first copy, where every source lies): :mod:`.induction_runs`. The
results and their files: :mod:`.induction_result`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .canonical import CANONICAL
from .checks import (InputError, check_bootstrap, check_choice, check_eps, check_eps_policy, check_int, check_int_list,
                     check_model, check_number, check_seeds, keyword_alias, seed_sequence, validate_l0,
                     validate_read_streams)
from .engine import ResponseJob, reuse_clean_passes
from .induction_result import InductionResult, SectionMap, StripeData
from .induction_runs import plan_units, run_units
from .models import LoadedModel
from .progress import Progress, as_progress
from .results_cache import memoize
from .rise import EMERGENCE_THRESHOLD, MIN_RISE, Rise, emergence_layer, half_rise_layer, rise_of
from .sequences import InductionLayout, _draw, check_length, fits_context, induction_layout
from .stats import bootstrap_ratio

__all__ = [
    "CANONICAL",
    "CONTROLS",
    "EMERGENCE_THRESHOLD",
    "InductionResult",
    "InductionSetting",
    "Rise",
    "SectionMap",
    "StripeData",
    "collect_stripes",
    "emergence_layer",
    "MIN_RISE",
    "neighbour_baseline",
    "rescore_baseline",
    "right_neighbour_baseline",
    "stripe_entries",
    "half_rise_layer",
    "induction_scores",
    "rescore_seeds",
    "rise_of",
    "run_induction",
    "run_section_map",
    "scores_from_stripes",
    "section_map",
    "section_results",
]

#: The baselines of :func:`collect_stripes`. ``"twin"`` is the default: it is the one whose score
#: a model without induction puts at 1, random-init and trained alike (the null page of the book
#: measures all of them).
CONTROLS = ("twin", "neighbours", "random", "shuffled")

#: Source offsets of the neighbour baseline, beyond the two stripes of a target on each side.
NEIGHBOUR_REACH = 2
#: what an induction run passes on to the engine, beyond its own arguments
RESPONSE_OPTIONS = ("batch_rows", "memory_budget_mb", "reuse_prefix")


@dataclass(frozen=True)
class InductionSetting:
    """The validated setting of an induction measurement: checked once, then passed down.

    Attributes:
        T: length of one copy; seeds: the sequence seeds (each also seeds the directions).
        l0: the perturbed stream; eps: the strength (``nan`` for ``method="jvp"``).
        read_streams: the streams read (``None``: every stream ``l0..L``).
        control: the baseline (:data:`CONTROLS`); n_boot, confidence: the bootstrap.
        keep_matrices: keep the full response matrices (a picture needs them).
        batch_rows, memory_budget_mb, reuse_prefix: passed on to the engine (:func:`~.engine.response`).
    """

    T: int
    seeds: Sequence[int]  # a range for a count: a billion seeds are not held before the estimate refuses them
    l0: int = 0
    eps: float = 1e-2
    n_directions: int = 1
    method: str = "finite"
    control: str = "twin"
    read_streams: tuple[int, ...] | None = None
    n_boot: int = 1000
    confidence: float = 0.95
    keep_matrices: bool = False
    batch_rows: int | None = None
    memory_budget_mb: float = 1024.0
    reuse_prefix: bool = True

    @classmethod
    def validated(cls, lm: LoadedModel, T: int = 20, seeds: Sequence[int] | int = 4, *, l0: int = 0,
                  eps: float = 1e-2, n_directions: int = 1, method: str = "finite", control: str = "twin",
                  read_streams: Iterable[int] | None = None, n_boot: int = 1000, confidence: float = 0.95,
                  keep_matrices: bool = False, **response_options) -> "InductionSetting":
        """Every argument checked before the first forward pass (``TypeError``/``InputError`` naming it):
        a bad ``n_boot`` would otherwise fail only after all seeds have run."""
        check_model(lm)
        T = fits_context(lm, check_length(T))
        unknown = sorted(set(response_options) - set(RESPONSE_OPTIONS))
        if unknown:
            raise TypeError(f"unexpected keyword argument(s) {', '.join(unknown)}; the engine's options are "
                            f"{', '.join(RESPONSE_OPTIONS)}")
        check_choice(control, "control", CONTROLS)
        if control in ("neighbours", "twin") and T < 3:
            raise InputError(f"T={T} is too short for the {control} baseline: a stripe source needs a neighbour; "
                             f"use T >= 3")
        check_choice(method, "method", ("finite", "jvp"))
        l0 = validate_l0(lm, l0)
        n_boot, confidence = check_bootstrap(n_boot, confidence)
        if response_options.get("batch_rows") is not None:
            check_int(response_options["batch_rows"], "batch_rows", minimum=1)
        if "memory_budget_mb" in response_options:
            check_number(response_options["memory_budget_mb"], "memory_budget_mb", positive=True)
        eps = check_eps(eps) if method == "finite" else math.nan
        check_eps_policy(eps, lm.dtype, stacklevel=3)  # above 1 refused, below the floor warned (checks.allow_eps)
        return cls(T=int(T), seeds=seed_sequence(seeds), l0=l0, eps=eps,
                   n_directions=check_int(n_directions, "n_directions", minimum=1), method=method, control=control,
                   read_streams=None if read_streams is None else tuple(validate_read_streams(lm, read_streams, l0)),
                   n_boot=n_boot, confidence=confidence, keep_matrices=bool(keep_matrices), **response_options)

    def at(self, l0: int) -> "InductionSetting":
        """The same setting perturbing stream ``l0`` (which the caller has validated)."""
        return dataclasses.replace(self, l0=int(l0))

    def response_job(self, lm: LoadedModel, tokens, sources: list[int], seed: int) -> ResponseJob:
        """The engine's job for one sequence of this setting (nothing is checked again)."""
        return ResponseJob.trusted(lm, tokens, [self.eps], l0=self.l0, read_streams=self.read_streams, sources=sources,
                                   n_directions=self.n_directions, direction="gaussian", seed=seed,
                                   method=self.method, batch_rows=self.batch_rows,
                                   memory_budget_mb=self.memory_budget_mb, reuse_prefix=self.reuse_prefix)


@keyword_alias(layer="l0", read_layers="read_streams")
def collect_stripes(lm: LoadedModel, T: int, seeds: Sequence[int] | int, *, l0: int = 0, eps: float = 1e-2,
                    read_streams: Iterable[int] | None = None, n_directions: int = 1, method: str = "finite",
                    control: str = "twin", keep_matrices: bool = False, progress: "bool | Progress" = False,
                    **response_options) -> StripeData:
    """Run the response of repeated sequences and their controls and keep the stripe entries.

    Only sources of the first copy are perturbed (the stripes start there), which halves the
    work against perturbing every position.

    Args:
        T: length of one copy.
        seeds: sequence seeds (a count ``K`` means ``0..K-1``); seed ``i`` also seeds the directions.
        l0: the perturbed stream (``layer=`` is accepted as its old name).
        control: the baseline each stripe entry is divided by (see :data:`CONTROLS`):
            ``"twin"`` (right neighbours, against the same ratio in the twin sequence; the
            default), ``"neighbours"`` (the same target's response to nearby sources on both
            sides, repeated sequence only), ``"random"`` (the same entries of ``2T`` random
            tokens, no repeat) or ``"shuffled"`` (second copy permuted).
        progress: ``True`` or a :class:`~residual_response.progress.Progress`: one bar for all the
            sequences, its total the passes the batch planner gives them (on a terminal only).
    """
    setting = InductionSetting.validated(lm, T, seeds, l0=l0, eps=eps, read_streams=read_streams,
                                         n_directions=n_directions, method=method, control=control,
                                         keep_matrices=keep_matrices, **response_options)
    return stripes_of(lm, setting, progress)


def stripes_of(lm: LoadedModel, setting: InductionSetting, progress: "bool | Progress" = False) -> StripeData:
    """:func:`collect_stripes` of a validated setting."""
    layout = induction_layout(lm, setting.T)
    sources = list(range(layout.offset, layout.offset + setting.T))  # first copy a_1..a_T
    units = sequence_units(lm, setting)
    plan = plan_units(lm, setting, sources, units)  # a seed's repeated sequence and its twin: one engine call
    with as_progress(progress, f"{lm.name} induction l0={setting.l0}") as bar, bar.expect(sum(n for _, n in plan)):
        return stripes_from(setting, units, run_units(lm, setting, sources, units, plan, bar), layout)


def sequence_units(lm: LoadedModel, setting: InductionSetting) -> list[tuple]:
    """The sequences of :func:`stripes_of`, ``(seed, key, tokens)``, independent of each other; one
    engine call each, but a seed's repeated sequence and its twin share one (:mod:`.induction_runs`)."""
    return [(seed, key, _draw(lm, kind, setting.T, seed)) for seed in setting.seeds
            for key, kind in _sequence_runs(setting.control, setting.keep_matrices)]


def stripes_from(setting: InductionSetting, units: list[tuple], results: list, layout: InductionLayout) -> StripeData:
    """The :class:`StripeData` of the engine's ``results`` (``ResponseResult``, one per ``(seed, key,
    tokens)`` unit of :func:`stripes_of`, in its order), perturbing the first copy's sources."""
    induction, duplicate = ({key: [] for key in _stripe_keys(setting.control)} for _ in range(2))
    matrices = {key: [] for _, key, _ in units} if setting.keep_matrices else None
    for (seed, key, _tokens), res in zip(units, results):
        chi, reads = res.chi[0], res.read_streams  # [n_read, T, N]
        if matrices is not None:
            matrices[key].append(chi)
        if key not in induction:
            continue  # run for its matrix only
        (i_s, i_b), (d_s, d_b) = stripe_entries(chi, layout, setting.control)
        base_key = "twin_control" if key == "twin" else "control"
        induction[key].append(i_s), duplicate[key].append(d_s)
        if i_b is not None:  # a baseline from the same matrix
            induction[base_key].append(i_b), duplicate[base_key].append(d_b)
    return StripeData(
        T=setting.T, l0=setting.l0, eps=setting.eps, seeds=list(setting.seeds), read_streams=reads,
        induction={k: np.stack(v) for k, v in induction.items()}, duplicate={k: np.stack(v) for k, v in duplicate.items()},
        sources=list(range(layout.offset, layout.offset + setting.T)), control_kind=setting.control,
        matrices=None if matrices is None else {k: np.stack(v) for k, v in matrices.items()},
    )


def neighbour_baseline(chi: np.ndarray, src_rows: np.ndarray, targets: np.ndarray, *, other_stripe: int) -> np.ndarray:
    """The same target's mean response to nearby sources of the same sequence: the stripe's null.

    Why within the sequence (the ``"neighbours"`` baseline): a random *sequence* differs from the
    repeated one in more than induction (the ``"twin"`` baseline, the default, matches the first
    copy instead, :func:`stripe_entries`). The repeated sequence holds duplicate tokens, and a target that attends to the
    earlier copy of its own token spreads less attention over every other source; a random model
    then scores 0.6-0.8 against random tokens. Comparing each stripe entry with the same
    target's response to sources a few positions away cancels everything the target does to all
    sources alike (its norm, its attention to duplicates, its position), and the sources on both
    sides cancel a smooth fall with distance to first order.

    For stripe entry (source row ``r``, target ``t``) the baseline averages ``chi[:, r + o, t]``
    over ``NEIGHBOUR_REACH`` offsets ``o`` beyond each of the two stripe entries of target ``t``:
    the stripe itself (offset 0) and the other stripe at ``other_stripe`` (-1 for the induction
    stripe, whose target's duplicate source is one earlier; +1 for the duplicate stripe). So the
    induction stripe uses offsets -3, -2, +1, +2 and the duplicate stripe -2, -1, +2, +3; offsets
    outside the first copy are skipped.

    Args:
        chi: ``[n_read, T, N]`` response of the first copy's sources (rows) at every target.
        src_rows: ``[P]`` stripe source rows into ``chi``; ``targets``: ``[P]`` their targets.
        other_stripe: -1 or +1, the offset of the other stripe of the same target.

    Returns:
        ``[n_read, P]`` baseline per read layer and stripe entry.
    """
    if other_stripe not in (-1, 1):
        raise InputError(f"other_stripe must be -1 or +1, got {other_stripe!r}")
    lo, hi = min(0, other_stripe), max(0, other_stripe)
    offsets = [lo - d for d in range(NEIGHBOUR_REACH, 0, -1)] + [hi + d for d in range(1, NEIGHBOUR_REACH + 1)]
    return _mean_over_offsets(chi, src_rows, targets, offsets)


def stripe_entries(chi: np.ndarray, layout: InductionLayout, control: str) -> tuple[tuple, tuple]:
    """The stripe entries of one response matrix, and their baselines where they come from the same matrix.

    Args:
        chi: ``[n_read, T, N]`` response of the first copy's sources (rows) at every target.
        layout: the sequence's :class:`~.sequences.InductionLayout`.
        control: the baseline (:data:`CONTROLS`). ``"twin"`` keeps the stripe entries that have a
            right neighbour in the first copy (induction ``k = 2..T-1``, duplicate ``k = 1..T-2``).

    Returns:
        ``((ind, ind_base), (dup, dup_base))``, each ``[n_read, P]``; the bases are ``None`` for the
        ``"random"`` and ``"shuffled"`` controls, whose baseline is another sequence's stripe.
    """
    T = layout.T
    ind_src = layout.induction_sources.numpy() - layout.offset  # rows into the first copy's sources
    dup_src = layout.duplicate_sources.numpy() - layout.offset
    ind_tgt, dup_tgt = layout.induction_targets.numpy(), layout.duplicate_targets.numpy()
    if control == "twin":
        ind_keep, dup_keep = ind_src + 1 < T, dup_src + 2 < T
        ind_src, ind_tgt, dup_src, dup_tgt = ind_src[ind_keep], ind_tgt[ind_keep], dup_src[dup_keep], dup_tgt[dup_keep]
        return ((chi[:, ind_src, ind_tgt], right_neighbour_baseline(chi, ind_src, ind_tgt, first=1)),
                (chi[:, dup_src, dup_tgt], right_neighbour_baseline(chi, dup_src, dup_tgt, first=2)))
    if control == "neighbours":
        return ((chi[:, ind_src, ind_tgt], neighbour_baseline(chi, ind_src, ind_tgt, other_stripe=-1)),
                (chi[:, dup_src, dup_tgt], neighbour_baseline(chi, dup_src, dup_tgt, other_stripe=+1)))
    return (chi[:, ind_src, ind_tgt], None), (chi[:, dup_src, dup_tgt], None)


def right_neighbour_baseline(chi: np.ndarray, src_rows: np.ndarray, targets: np.ndarray, *, first: int) -> np.ndarray:
    """The same target's mean response to the next sources to the right: the ``"twin"`` baseline's neighbours.

    Why only the right: for the stripe target ``T+k-1`` a source ``j < k`` has a path without
    induction (a duplicate-token head at ``T+j`` reads ``j``, and the target reads ``T+j``), which
    the stripe source ``k`` and the sources after it lack; their own second-copy positions come
    after the target. Averages ``chi[:, r + o, t]`` over the ``NEIGHBOUR_REACH`` offsets ``o =
    first, first + 1, ...`` inside the first copy (``first`` = 1 for the induction stripe, 2 for the
    duplicate stripe, whose target's induction source is one to the right).

    Args:
        chi: ``[n_read, T, N]`` response of the first copy's sources (rows) at every target.
        src_rows: ``[P]`` stripe source rows into ``chi``; ``targets``: ``[P]`` their targets.

    Returns:
        ``[n_read, P]`` baseline per read stream and stripe entry.
    """
    if first not in (1, 2):
        raise InputError(f"first must be 1 (induction stripe) or 2 (duplicate stripe), got {first!r}")
    return _mean_over_offsets(chi, src_rows, targets, list(range(first, first + NEIGHBOUR_REACH)))


def _mean_over_offsets(chi: np.ndarray, src_rows: np.ndarray, targets: np.ndarray, offsets: list[int]) -> np.ndarray:
    """``[n_read, P]``: mean of ``chi[:, r + o, t]`` over the offsets ``o`` that stay inside the first copy."""
    n_rows = chi.shape[1]
    total = np.zeros((chi.shape[0], len(src_rows)))
    count = np.zeros(len(src_rows))
    for o in offsets:
        rows = np.asarray(src_rows) + o
        ok = (rows >= 0) & (rows < n_rows)
        vals = np.zeros((chi.shape[0], len(src_rows)))
        vals[:, ok] = chi[:, rows[ok], np.asarray(targets)[ok]]
        total += vals
        count += ok
    if np.any(count == 0):
        raise InputError("a stripe entry has no neighbour source inside the first copy; use a longer T")
    return total / count


def _stripe_keys(control: str) -> tuple[str, ...]:
    """The keys of :attr:`StripeData.induction` under a baseline."""
    return ("repeated", "control", "twin", "twin_control") if control == "twin" else ("repeated", "control")


def _sequence_runs(control: str, keep_matrices: bool) -> tuple[tuple[str, str], ...]:
    """``(key, sequence kind)`` of the sequences :func:`collect_stripes` runs per seed.

    The twin baseline runs each repeated sequence and its twin; the neighbours baseline needs no
    second sequence (its matrices, when kept for a picture, are those of the twin).
    """
    if control == "twin":
        return (("repeated", "repeated"), ("twin", "twin"))
    if control == "neighbours":
        return (("repeated", "repeated"), ("twin", "twin")) if keep_matrices else (("repeated", "repeated"),)
    return (("repeated", "repeated"), ("control", control))


def scores_from_stripes(stripes: StripeData, *, model: str = "", method: str = "finite", n_directions: int = 1,
                        n_boot: int = 1000, confidence: float = 0.95, boot_seed: int = 0) -> InductionResult:
    """Turn stripe entries into scores, CIs, the rise over depth and the emergence layer (:class:`Rise`)."""
    ind = stripes.parts("induction")
    score, lo, hi, boots = bootstrap_ratio(ind[0], ind[1], twin=ind[2:] or None, n_boot=n_boot,
                                           confidence=confidence, seed=boot_seed, return_boots=True)
    after = np.asarray(stripes.read_streams) > stripes.l0  # the perturbed stream itself has no score
    rise = None
    # a rise needs two streams whose score and replicates are all positive (an extrapolated baseline can cross 0)
    if (after & np.isfinite(score) & (score > 0) & np.all(np.isfinite(boots) & (boots > 0), axis=0)).sum() >= 2:
        rise = rise_of(np.asarray(stripes.read_streams)[after], score[after], boots[:, after], confidence)
    dup = stripes.parts("duplicate")
    dscore, dlo, dhi = bootstrap_ratio(dup[0], dup[1], twin=dup[2:] or None, n_boot=n_boot, confidence=confidence,
                                       seed=boot_seed + 1)
    return InductionResult(
        model=model, T=stripes.T, seeds=stripes.seeds, l0=stripes.l0, eps=stripes.eps, method=method,
        read_streams=list(stripes.read_streams), score=score.tolist(), ci_low=lo.tolist(), ci_high=hi.tolist(),
        duplicate_score=dscore.tolist(), duplicate_ci_low=dlo.tolist(), duplicate_ci_high=dhi.tolist(),
        emergence_layer=None if rise is None else rise.stream, n_directions=n_directions,
        control=stripes.control_kind, confidence=confidence, n_boot=n_boot, stripes=stripes, rise=rise,
    )


def rescore_seeds(result: InductionResult, seeds: Sequence[int]) -> InductionResult:
    """The same result computed from a subset of its seeds, without running the model again.

    Why: how the emergence layer and its interval depend on the number of seeds is a question of
    the estimator, and the stripes of a run with more seeds answer it for every smaller number.

    Args:
        result: an :func:`induction_scores` result with its stripes.
        seeds: a non-empty subset of ``result.seeds``.
    """
    st = result.stripes
    if st is None:
        raise InputError("result has no stripes to rescore (it was loaded from a file or computed without them)")
    use = check_seeds(seeds)
    if any(x not in st.seeds for x in use):
        raise InputError(f"seeds must be a non-empty subset of the result's seeds {st.seeds}, got {list(seeds)!r}")
    rows = [st.seeds.index(x) for x in use]
    sub = StripeData(T=st.T, l0=st.l0, eps=st.eps, seeds=use, read_streams=st.read_streams,
                     induction={k: v[rows] for k, v in st.induction.items()},
                     duplicate={k: v[rows] for k, v in st.duplicate.items()},
                     sources=st.sources, control_kind=st.control_kind,
                     matrices=None if st.matrices is None else {k: v[rows] for k, v in st.matrices.items()})
    out = scores_from_stripes(sub, model=result.model, method=result.method, n_directions=result.n_directions,
                              n_boot=result.n_boot, confidence=result.confidence)
    out.n_layers = result.n_layers
    return out


def rescore_baseline(result: InductionResult, control: str) -> InductionResult:
    """The same runs scored against another baseline, from the response matrices the result kept.

    Why: comparing baselines on the *same* sequences and directions shows what the baseline
    alone changes. Needs ``keep_matrices=True``; ``"neighbours"`` needs the repeated sequences'
    matrices, ``"twin"`` also the twins' (kept by a ``"twin"`` run).

    Args:
        result: an :func:`induction_scores` result with stripes and matrices.
        control: ``"twin"`` or ``"neighbours"``.
    """
    st = result.stripes
    if st is None or st.matrices is None:
        raise InputError("result has no response matrices to rescore (compute it with keep_matrices=True)")
    check_choice(control, "control", ("twin", "neighbours"))
    if control == "twin" and "twin" not in st.matrices:
        raise InputError("the twin baseline needs the twins' matrices: compute the result with the twin baseline")
    layout = InductionLayout(T=st.T, offset=st.sources[0])
    induction = {k: [] for k in _stripe_keys(control)}
    duplicate = {k: [] for k in _stripe_keys(control)}
    for key in (("repeated", "twin") if control == "twin" else ("repeated",)):
        base_key = "twin_control" if key == "twin" else "control"
        for chi in st.matrices[key]:  # [n_read, T, N] per seed
            (i_s, i_b), (d_s, d_b) = stripe_entries(chi, layout, control)
            induction[key].append(i_s)
            induction[base_key].append(i_b)
            duplicate[key].append(d_s)
            duplicate[base_key].append(d_b)
    new = StripeData(T=st.T, l0=st.l0, eps=st.eps, seeds=st.seeds, read_streams=st.read_streams,
                     induction={k: np.stack(v) for k, v in induction.items()},
                     duplicate={k: np.stack(v) for k, v in duplicate.items()},
                     sources=st.sources, control_kind=control, matrices=st.matrices)
    out = scores_from_stripes(new, model=result.model, method=result.method, n_directions=result.n_directions,
                              n_boot=result.n_boot, confidence=result.confidence)
    out.n_layers = result.n_layers
    return out


@keyword_alias(layer="l0")
def induction_scores(lm: LoadedModel, T: int = 20, seeds: Sequence[int] | int = 4, *, l0: int = 0, eps: float = 1e-2,
                     n_directions: int = 1, method: str = "finite", control: str = "twin", n_boot: int = 1000,
                     confidence: float = 0.95, keep_matrices: bool = False, progress: "bool | Progress" = False,
                     **response_options) -> InductionResult:
    """Induction score per read stream ``l0..L`` (with CI) and the emergence layer.

    Args:
        T: length of one copy (sequences have ``2T`` tokens plus BOS).
        seeds: an int ``K`` (seeds ``0..K-1``) or an explicit list.
        l0: perturbed stream (``layer=`` is accepted as its old name).
        eps: relative strength, inside the universal regime (1e-2 is inside it for float32
            models we tested; check with :func:`~residual_response.regime.universal_regime`).

    Returns:
        :class:`InductionResult`; the score at read stream ``l0`` is ``nan`` (chi is a delta there).
    """
    setting = InductionSetting.validated(lm, T, seeds, l0=l0, eps=eps, n_directions=n_directions, method=method,
                                         control=control, n_boot=n_boot, confidence=confidence,
                                         keep_matrices=keep_matrices, **response_options)
    return run_induction(lm, setting, progress)


@memoize("induction_scores", ignore=("progress",))
def run_induction(lm: LoadedModel, setting: InductionSetting, progress: "bool | Progress" = False) -> InductionResult:
    """:func:`induction_scores` of a validated setting (nothing is checked again); kept in the
    results cache while it is switched on (:mod:`.results_cache`), keyed by the model and the setting."""
    stripes = stripes_of(lm, setting, progress)
    res = scores_from_stripes(stripes, model=lm.name, method=setting.method, n_directions=setting.n_directions,
                              n_boot=setting.n_boot, confidence=setting.confidence)
    res.n_layers = lm.n_layers
    return res


@keyword_alias(perturb_layers="l0s")
def section_map(lm: LoadedModel, T: int = 20, seeds: Sequence[int] | int = 2, *, l0s: Iterable[int] | None = None,
                eps: float = 1e-2, n_directions: int = 1, n_boot: int = 500, progress: "bool | Progress" = False,
                **response_options) -> SectionMap:
    """The map ``score(l0, l)`` over perturbed and read streams.

    The stripe shows up in ``score(l0, l)`` only when blocks ``l0..l-1`` contain both the
    block that moves previous-token information and the one that attends back: the map shows
    which span of blocks composes induction. ``l0s``: the perturbed streams (default every
    ``0..L-1``; ``perturb_layers=`` is accepted as its old name). ``progress`` (``True`` or a
    :class:`~residual_response.progress.Progress`) draws one bar for the whole map, its total
    planned before the first pass.
    """
    setting, l0s = section_setting(lm, T, seeds, l0s=l0s, eps=eps, n_directions=n_directions, n_boot=n_boot,
                                   **response_options)
    return run_section_map(lm, setting, l0s, progress)[0]


def section_setting(lm: LoadedModel, T: int, seeds: Sequence[int] | int, *, l0s: Iterable[int] | None,
                    eps: float = 1e-2, n_directions: int = 1, n_boot: int = 500,
                    **response_options) -> tuple[InductionSetting, list[int]]:
    """The validated setting of a section map and its perturbed streams (sorted, without repeats)."""
    setting = InductionSetting.validated(lm, T, seeds, eps=eps, n_directions=n_directions, n_boot=n_boot,
                                         **response_options)
    if l0s is None:
        return setting, list(range(lm.n_layers))
    return setting, sorted({validate_l0(lm, l) for l in check_int_list(l0s, "l0s")})


def run_section_map(lm: LoadedModel, setting: InductionSetting, l0s: list[int],
                    progress: "bool | Progress" = False) -> tuple[SectionMap, dict[int, InductionResult]]:
    """The section map of a validated setting, and the result of each of its rows.

    Every row perturbs the same sequences, so the rows share their clean passes
    (:func:`~.engine.reuse_clean_passes`): one clean pass per sequence for the whole map, as the
    benchmark measures it.
    """
    L = lm.n_layers
    shape = (len(l0s), L + 1)
    score, lo, hi, dup = (np.full(shape, np.nan) for _ in range(4))
    layout = induction_layout(lm, setting.T)
    sources = list(range(layout.offset, layout.offset + setting.T))
    # every l0 runs the same passes: the default baseline's sequences per seed, sources of the first copy
    passes = len(l0s) * sum(n for _, n in plan_units(lm, setting, sources, sequence_units(lm, setting)))
    rows = {}
    with as_progress(progress, f"{lm.name} section map") as bar, bar.expect(passes), reuse_clean_passes():
        for i, l0 in enumerate(l0s):
            res = run_induction(lm, setting.at(l0), progress=bar)
            cols = np.asarray(res.read_streams)
            score[i, cols], lo[i, cols], hi[i, cols], dup[i, cols] = res.score, res.ci_low, res.ci_high, res.duplicate_score
            score[i, l0] = lo[i, l0] = hi[i, l0] = dup[i, l0] = np.nan
            rows[l0] = res
    sm = SectionMap(lm.name, setting.T, list(setting.seeds), l0s, list(range(L + 1)), score, lo, hi, dup,
                    eps=setting.eps, n_directions=setting.n_directions)
    return sm, rows


@keyword_alias(perturb_layers="l0s")
def section_results(lm: LoadedModel, T: int = 20, seeds: Sequence[int] | int = 2, *, l0s: Iterable[int],
                    eps: float = 1e-2, n_boot: int = 500) -> tuple[SectionMap, dict[int, InductionResult]]:
    """The section map of :func:`section_map` together with the result of each of its rows.

    Why: where a row's score rises is the rise of that row's :class:`InductionResult` (its
    :attr:`~InductionResult.rise`, with paired bootstrap intervals), the one definition of "where
    the score rises" the book uses; :class:`SectionMap` keeps only the scores. The rows are
    computed by :func:`run_section_map` itself, so the map is the same.

    Returns:
        ``(map, {l0: result})``; each result's ``n_layers`` is set.
    """
    if l0s is None:
        raise TypeError("section_results: l0s must be given (a list of perturbed streams)")
    setting, l0s = section_setting(lm, T, seeds, l0s=l0s, eps=eps, n_boot=n_boot)
    return run_section_map(lm, setting, l0s)
