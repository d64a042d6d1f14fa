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
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import numpy as np

from .canonical import CANONICAL
from .checks import (check_bootstrap, check_choice, check_int, check_int_list, check_model, check_number, check_seeds,
                     validate_layer)
from .models import LoadedModel
from .progress import Progress, as_progress
from .engine import planned_passes, response
from .sequences import InductionLayout, induction_layout, make_sequence, validate_length
from .stats import bootstrap_ratio, percentile_interval

__all__ = [
    "CANONICAL",
    "EMERGENCE_THRESHOLD",
    "InductionResult",
    "Rise",
    "StripeData",
    "collect_stripes",
    "emergence_layer",
    "induction_scores",
    "rescore_baseline",
    "rescore_seeds",
    "right_neighbour_baseline",
    "stripe_entries",
    "rise_of",
    "section_map",
    "SectionMap",
    "section_results",
    "half_rise_layer",
]

#: a fixed score threshold, for series of known scale (:func:`emergence_layer`); the emergence
#: layer of a model follows the score's own rise instead (:class:`Rise`)
EMERGENCE_THRESHOLD = 2.0



@dataclass
class StripeData:
    """Stripe entries of chi and their baselines, per seed.

    Attributes:
        read_layers: ``[n_read]`` streams read.
        induction: ``{key: [n_seeds, n_read, P]}`` at the induction stripe (k, T+k-1): ``"repeated"``
            the stripe entries, ``"control"`` their baselines, and with the ``"twin"`` baseline
            also ``"twin"`` and ``"twin_control"``, the same entries and baselines of the twins.
        duplicate: the same at the duplicate stripe (k, T+k).
        matrices: optional full response matrices ``{kind: [n_seeds, n_read, T, N]}`` (sources of
            the first copy), kept when ``keep_matrices=True``.
    """

    T: int
    layer: int
    eps: float
    seeds: list[int]
    read_layers: list[int]
    induction: dict[str, np.ndarray]
    duplicate: dict[str, np.ndarray]
    sources: list[int]
    control_kind: str = "twin"
    matrices: dict[str, np.ndarray] | None = None

    def parts(self, stripe: str = "induction") -> tuple[np.ndarray, ...]:
        """``(rep, ctrl)``, or ``(rep, ctrl, twin, twin_ctrl)`` with the twin baseline: the arrays the
        score is a ratio (of ratios) of, in the order :func:`.stats.bootstrap_ratio` takes them."""
        d = {"induction": self.induction, "duplicate": self.duplicate}[stripe]
        keys = ("repeated", "control", "twin", "twin_control") if "twin" in d else ("repeated", "control")
        return tuple(d[k] for k in keys)


@dataclass
class InductionResult:
    """Induction and duplicate-token scores per read layer, with bootstrap CIs."""

    model: str
    length: int
    seeds: list[int]
    layer: int
    eps: float
    method: str
    layers: list[int]
    score: list[float]
    ci_low: list[float]
    ci_high: list[float]
    duplicate_score: list[float]
    duplicate_ci_low: list[float]
    duplicate_ci_high: list[float]
    emergence_layer: int | None
    n_directions: int = 1
    control: str = "twin"
    confidence: float = 0.95
    n_boot: int = 1000
    stripes: StripeData | None = field(default=None, repr=False)
    #: number of blocks ``L`` of the model (relative depth is ``layer / n_layers``)
    n_layers: int | None = None
    #: the rise of the score that locates the emergence layer (:class:`Rise`), as a plain dict
    rise: dict | None = None
    #: how the result was made (see :mod:`.provenance`); ``None`` when not recorded
    provenance: dict | None = field(default=None, repr=False)

    #: the ``kind`` tag of the file the command line writes
    KIND = "induction"
    _FLOAT_LISTS = ("score", "ci_low", "ci_high", "duplicate_score", "duplicate_ci_low", "duplicate_ci_high")

    def to_json_dict(self) -> dict:
        """Plain JSON types; ``nan`` (layer ``l0`` itself, where chi is a delta) becomes ``None``."""
        d = asdict(self)
        d.pop("stripes")
        for key, val in d.items():
            if isinstance(val, list):
                d[key] = [None if isinstance(v, float) and not math.isfinite(v) else v for v in val]
            elif isinstance(val, float) and not math.isfinite(val):  # eps of method="jvp"
                d[key] = None
        return {"kind": self.KIND, **d}

    @classmethod
    def load(cls, path: str | os.PathLike, *, against=None) -> "InductionResult":
        """Read a file written by ``residual-response induction --out`` (or :meth:`to_json_dict`).

        ``None`` scores (layer ``l0``) come back as ``nan``; the seed list is ``seed_list`` when
        the file has one (the command line stores the seed *count* under ``seeds``). Give
        ``against`` (a model, a result or a provenance dict) to be warned when the file was
        made with other weights, model or dtype. Raises ``ValueError`` for another kind of file.
        """
        from .provenance import warn_if_different
        from .resultfile import read

        d = read(path, cls.KIND)
        seeds = check_seeds(d.get("seed_list", d.get("seeds")))
        names = {f for f in cls.__dataclass_fields__ if f not in ("stripes",)}
        kw = {k: v for k, v in d.items() if k in names}
        for key in cls._FLOAT_LISTS:
            kw[key] = [math.nan if v is None else float(v) for v in d[key]]
        kw["seeds"] = seeds
        kw["eps"] = math.nan if d.get("eps") is None else float(d["eps"])
        res = cls(**kw)
        if against is not None:
            warn_if_different(res, against, what=os.fspath(path))
        return res


def collect_stripes(
    lm: LoadedModel,
    T: int,
    seeds: Sequence[int],
    *,
    layer: int = 0,
    eps: float = 1e-2,
    read_layers: Iterable[int] | None = None,
    n_directions: int = 1,
    method: str = "finite",
    control: str = "twin",
    keep_matrices: bool = False,
    progress: "bool | Progress" = False,
    **response_kwargs,
) -> StripeData:
    """Run the response of repeated sequences and their controls and keep the stripe entries.

    Only sources of the first copy are perturbed (the stripes start there), which halves the
    work against perturbing every position.

    Args:
        T: length of one copy.
        seeds: sequence seeds; seed ``i`` also seeds the directions.
        control: the baseline each stripe entry is divided by (see :data:`CONTROLS`):
            ``"twin"`` (right neighbours, against the same ratio in the twin sequence; the
            default), ``"neighbours"`` (the same target's response to nearby sources on both
            sides, repeated sequence only), ``"random"`` (the same entries of ``2T`` random
            tokens, no repeat) or ``"shuffled"`` (second copy permuted).
        progress: ``True`` or a :class:`~residual_response.progress.Progress`: one bar for all the
            sequences, its total the passes the batch planner gives them (on a terminal only).
    """
    check_model(lm)
    validate_length(lm, T)
    seeds = check_seeds(seeds)
    check_choice(control, "control", CONTROLS)
    if control in ("neighbours", "twin") and T < 3:
        raise ValueError(f"T={T} is too short for the {control} baseline: a stripe source needs a neighbour; use T >= 3")
    check_choice(method, "method", ("finite", "jvp"))
    validate_layer(lm, layer)
    n_directions = check_int(n_directions, "n_directions", minimum=1)
    layout = induction_layout(lm, T)
    sources = list(range(layout.offset, layout.offset + T))  # first copy a_1..a_T
    eps_value = check_number(eps, "eps", positive=True) if method == "finite" else float("nan")

    runs = _sequence_runs(control, keep_matrices)
    induction = {key: [] for key in _stripe_keys(control)}
    duplicate = {key: [] for key in _stripe_keys(control)}
    matrices = {key: [] for key, _ in runs} if keep_matrices else None
    reads = None
    passes = len(runs) * len(seeds) * _passes_per_sequence(lm, T, layout.offset, sources, n_directions, method,
                                                           response_kwargs)
    with as_progress(progress, f"{lm.name} induction l0={layer}") as bar, bar.expect(passes):
        for seed in seeds:
            for key, kind in runs:
                tokens = make_sequence(lm, kind, T, seed)
                res = response(lm, tokens, [eps_value] if method == "finite" else None, layer=layer,
                               read_layers=read_layers, sources=sources, n_directions=n_directions, seed=seed,
                               method=method, progress=bar, **response_kwargs)
                chi = res.chi[0]  # [n_read, T, N]
                reads = res.read_layers
                if matrices is not None:
                    matrices[key].append(chi)
                if key not in induction:
                    continue  # run for its matrix only
                ind, dup = stripe_entries(chi, layout, control)
                base_key = "twin_control" if key == "twin" else "control"
                induction[key].append(ind[0])
                duplicate[key].append(dup[0])
                if ind[1] is not None:  # a baseline from the same matrix
                    induction[base_key].append(ind[1])
                    duplicate[base_key].append(dup[1])
    return StripeData(
        T=T, layer=layer, eps=eps_value, seeds=seeds, read_layers=reads,
        induction={k: np.stack(v) for k, v in induction.items()},
        duplicate={k: np.stack(v) for k, v in duplicate.items()},
        sources=sources, control_kind=control,
        matrices=None if matrices is None else {k: np.stack(v) for k, v in matrices.items()},
    )


#: The baselines of :func:`collect_stripes`. ``"twin"`` is the default: it is the one whose score
#: a model without induction puts at 1, random-init and trained alike (the null page of the book
#: measures all of them).
CONTROLS = ("twin", "neighbours", "random", "shuffled")

#: Source offsets of the neighbour baseline, beyond the two stripes of a target on each side.
NEIGHBOUR_REACH = 2


def neighbour_baseline(chi: np.ndarray, src_rows: np.ndarray, targets: np.ndarray, *, other_stripe: int) -> np.ndarray:
    """The same target's mean response to nearby sources of the same sequence: the stripe's null.

    Why within the sequence: a control *sequence* differs from the repeated one in more than
    induction. The repeated sequence holds duplicate tokens, and a target that attends to the
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
        raise ValueError(f"other_stripe must be -1 or +1, got {other_stripe!r}")
    lo, hi = min(0, other_stripe), max(0, other_stripe)
    offsets = [lo - d for d in range(NEIGHBOUR_REACH, 0, -1)] + [hi + d for d in range(1, NEIGHBOUR_REACH + 1)]
    return _mean_over_offsets(chi, src_rows, targets, offsets)


def stripe_entries(chi: np.ndarray, layout, control: str) -> tuple[tuple, tuple]:
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
        ``[n_read, P]`` baseline per read layer and stripe entry.
    """
    if first not in (1, 2):
        raise ValueError(f"first must be 1 (induction stripe) or 2 (duplicate stripe), got {first!r}")
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
        raise ValueError("a stripe entry has no neighbour source inside the first copy; use a longer T")
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


def _passes_per_sequence(lm: LoadedModel, T: int, offset: int, sources: list[int], n_directions: int, method: str,
                         response_kwargs: dict) -> int:
    """Forward passes of one :func:`response` call of the stripe collection (for the job's bar)."""
    plan_kw = {k: response_kwargs[k] for k in ("batch_rows", "memory_budget_mb", "reuse_prefix")
               if k in response_kwargs}
    return planned_passes(lm, 2 * T + offset, sources, n_eps=1, n_directions=n_directions, method=method, **plan_kw)


def emergence_layer(layers: Sequence[int], ci_low: Sequence[float], threshold: float = EMERGENCE_THRESHOLD) -> int | None:
    """First entry of ``layers`` whose CI lower bound exceeds ``threshold`` (``None`` if none does).

    A fixed threshold, for series whose scale is known (the toy model's training steps). The
    emergence layer of a model is *not* this: it follows the score's own scale (:func:`rise_of`).
    """
    for layer, low in zip(layers, ci_low):
        if low is not None and np.isfinite(low) and low > threshold:
            return int(layer)
    return None


@dataclass(frozen=True)
class Rise:
    """The rise of the induction score over depth, and the layer where it happens.

    Why a rise and not a threshold: how high the score climbs depends on the baseline, on ``T``
    and on the model (2-3x in SmolLM2, 10x and more in Gemma 3), so a fixed threshold on the
    score finds different layers at different settings. Where the score rises does not: the
    emergence layer is the middle of the rise, measured in factors.

    Definition, over the read layers after the perturbed one: ``top`` is the layer of the largest
    score, ``bottom`` the layer of the smallest score at or before it, and the rise is
    ``R = S(top) / S(bottom)``. Induction *emerges* when the lower end of the paired bootstrap
    interval of ``R`` lies above :data:`MIN_RISE`. Why not above 1: ``top`` and ``bottom`` are
    picked from the same noisy profile, so a flat profile always shows some rise, and at full size
    the intervals are narrow enough to call a 5 % wobble significant (random-init models rise by
    up to 1.25 [1.05, 1.51]; trained ones by 4 and more; the null page measures both). The
    emergence layer is
    then the first layer from ``bottom`` on whose log score reaches half way from
    ``log S(bottom)`` to ``log S(top)``; ``start`` and ``end`` are the first layers that reach
    10 % and 90 % of the way, and ``width = end - start`` says whether the rise is sudden (a
    layer or two) or gradual. Each of them gets an interval from the same rule applied to every
    bootstrap replicate (2.5 % and 97.5 % quantiles, over the replicates that show a rise).

    Attributes:
        emerged: whether the rise is significant; the layers below are ``None`` when not.
        layer, layer_ci: the emergence layer and its interval.
        start, end, width, width_ci: the 10 % and 90 % layers, and ``end - start`` with its interval.
        bottom, top: the layers of the smallest and the largest score.
        factor, factor_ci: ``R`` and its paired interval.
        from_one: the first layer whose score reaches half way from 1 to ``S(top)`` in log
            (``S >= sqrt(S(top))``): the rise measured from "no induction" rather than from the
            minimum; the same as ``layer`` when the score before the rise lies at 1.
    """

    emerged: bool
    layer: int | None
    layer_ci: tuple[int, int] | None
    start: int | None
    end: int | None
    width: int | None
    width_ci: tuple[int, int] | None
    bottom: int
    top: int
    factor: float
    factor_ci: tuple[float, float]
    from_one: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


#: fractions of the log rise that define the start, the middle (emergence) and the end of the rise
RISE_FRACTIONS = (0.1, 0.5, 0.9)

#: the smallest rise, ``S(top) / S(bottom)``, whose interval must lie above it for induction to
#: count as emerged (:class:`Rise`)
MIN_RISE = 1.5


def _rise_layers(layers: np.ndarray, score: np.ndarray) -> tuple[int, int, tuple[int, ...]]:
    """``(bottom index, top index, layers reaching each of RISE_FRACTIONS)`` of one score profile."""
    top = int(np.argmax(score))
    bottom = int(np.argmin(score[: top + 1]))
    logs = np.log(score)
    crossing = []
    for f in RISE_FRACTIONS:
        level = logs[bottom] + f * (logs[top] - logs[bottom])
        crossing.append(int(layers[next(i for i in range(bottom, top + 1) if logs[i] >= level)]))
    return bottom, top, tuple(crossing)


def rise_of(layers: Sequence[int], score: Sequence[float], boots: np.ndarray, confidence: float = 0.95) -> Rise:
    """Locate the rise of an induction score over depth (see :class:`Rise`).

    Args:
        layers: ``[n]`` read layers; score: ``[n]`` scores (non-finite entries, the perturbed
            layer itself, are left out).
        boots: ``[n_boot, n]`` paired bootstrap replicates of the scores (:func:`.stats.bootstrap_ratio`
            with ``return_boots``).
    """
    layers = np.asarray(layers)
    score = np.asarray(score, dtype=float)
    boots = np.asarray(boots, dtype=float)
    keep = np.isfinite(score) & (score > 0) & np.all(np.isfinite(boots) & (boots > 0), axis=0)
    if keep.sum() < 2:
        raise ValueError("rise_of needs finite, positive scores at two read layers at least")
    layers, score, boots = layers[keep], score[keep], boots[:, keep]
    bottom, top, (start, mid, end) = _rise_layers(layers, score)
    factors = boots[:, top] / boots[:, bottom]  # paired: the same resample at both layers
    f_lo, f_hi = (float(q) for q in percentile_interval(factors, confidence))
    emerged = bool(f_lo > MIN_RISE)
    layer_ci = width_ci = None
    if emerged:
        mids, widths = [], []
        for b in boots:
            bb, bt, (s10, s50, s90) = _rise_layers(layers, b)
            if bt > bb:
                mids.append(s50)
                widths.append(s90 - s10)
        layer_ci = tuple(int(round(q)) for q in percentile_interval(mids, confidence))
        width_ci = tuple(int(round(q)) for q in percentile_interval(widths, confidence))
    return Rise(
        emerged=emerged, layer=mid if emerged else None, layer_ci=layer_ci,
        start=start if emerged else None, end=end if emerged else None,
        width=(end - start) if emerged else None, width_ci=width_ci,
        bottom=int(layers[bottom]), top=int(layers[top]),
        factor=float(score[top] / score[bottom]), factor_ci=(f_lo, f_hi),
        from_one=_half_from_one(layers, score, top) if emerged else None,
    )


def _half_from_one(layers: np.ndarray, score: np.ndarray, top: int) -> int | None:
    """The first layer up to ``top`` whose score reaches ``sqrt(S(top))`` (half way from 1 in log)."""
    if score[top] <= 1.0:
        return None
    level = math.sqrt(score[top])
    return int(next(layers[i] for i in range(top + 1) if score[i] >= level))


def scores_from_stripes(stripes: StripeData, *, model: str = "", method: str = "finite", n_directions: int = 1,
                        n_boot: int = 1000, confidence: float = 0.95, boot_seed: int = 0) -> InductionResult:
    """Turn stripe entries into scores, CIs, the rise over depth and the emergence layer (:class:`Rise`)."""
    ind = stripes.parts("induction")
    score, lo, hi, boots = bootstrap_ratio(ind[0], ind[1], twin=ind[2:] or None, n_boot=n_boot,
                                           confidence=confidence, seed=boot_seed, return_boots=True)
    after = np.asarray(stripes.read_layers) > stripes.layer  # the perturbed stream itself has no score
    rise = None
    if after.sum() >= 2:
        rise = rise_of(np.asarray(stripes.read_layers)[after], score[after], boots[:, after], confidence)
    dup = stripes.parts("duplicate")
    dscore, dlo, dhi = bootstrap_ratio(dup[0], dup[1], twin=dup[2:] or None, n_boot=n_boot, confidence=confidence,
                                       seed=boot_seed + 1)
    return InductionResult(
        model=model, length=stripes.T, seeds=stripes.seeds, layer=stripes.layer, eps=stripes.eps, method=method,
        layers=list(stripes.read_layers), score=score.tolist(), ci_low=lo.tolist(), ci_high=hi.tolist(),
        duplicate_score=dscore.tolist(), duplicate_ci_low=dlo.tolist(), duplicate_ci_high=dhi.tolist(),
        emergence_layer=None if rise is None else rise.layer, n_directions=n_directions,
        control=stripes.control_kind, confidence=confidence, n_boot=n_boot, stripes=stripes,
        rise=None if rise is None else rise.to_dict(),
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
        raise ValueError("result has no stripes to rescore (it was loaded from a file or computed without them)")
    use = check_seeds(seeds)
    if any(x not in st.seeds for x in use):
        raise ValueError(f"seeds must be a non-empty subset of the result's seeds {st.seeds}, got {list(seeds)!r}")
    rows = [st.seeds.index(x) for x in use]
    sub = StripeData(T=st.T, layer=st.layer, eps=st.eps, seeds=use, read_layers=st.read_layers,
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
        raise ValueError("result has no response matrices to rescore (compute it with keep_matrices=True)")
    check_choice(control, "control", ("twin", "neighbours"))
    if control == "twin" and "twin" not in st.matrices:
        raise ValueError("the twin baseline needs the twins' matrices: compute the result with the twin baseline")
    layout = InductionLayout(T=st.T, offset=st.sources[0])
    keys = {"repeated": "repeated", "twin": "twin"} if control == "twin" else {"repeated": "repeated"}
    induction = {k: [] for k in _stripe_keys(control)}
    duplicate = {k: [] for k in _stripe_keys(control)}
    for key, kind in keys.items():
        base_key = "twin_control" if key == "twin" else "control"
        for chi in st.matrices[kind]:  # [n_read, T, N] per seed
            (i_s, i_b), (d_s, d_b) = stripe_entries(chi, layout, control)
            induction[key].append(i_s)
            induction[base_key].append(i_b)
            duplicate[key].append(d_s)
            duplicate[base_key].append(d_b)
    new = StripeData(T=st.T, layer=st.layer, eps=st.eps, seeds=st.seeds, read_layers=st.read_layers,
                     induction={k: np.stack(v) for k, v in induction.items()},
                     duplicate={k: np.stack(v) for k, v in duplicate.items()},
                     sources=st.sources, control_kind=control, matrices=st.matrices)
    out = scores_from_stripes(new, model=result.model, method=result.method, n_directions=result.n_directions,
                              n_boot=result.n_boot, confidence=result.confidence)
    out.n_layers = result.n_layers
    return out


def induction_scores(
    lm: LoadedModel,
    T: int = 20,
    seeds: Sequence[int] | int = 4,
    *,
    layer: int = 0,
    eps: float = 1e-2,
    n_directions: int = 1,
    method: str = "finite",
    control: str = "twin",
    n_boot: int = 1000,
    confidence: float = 0.95,
    keep_matrices: bool = False,
    progress: "bool | Progress" = False,
    **response_kwargs,
) -> InductionResult:
    """Induction score per read layer ``l0..L`` (with CI) and the emergence layer.

    Args:
        T: length of one copy (sequences have ``2T`` tokens plus BOS).
        seeds: an int ``K`` (seeds ``0..K-1``) or an explicit list.
        layer: perturbed stream ``l0``.
        eps: relative strength, inside the universal regime (1e-2 is inside it for float32
            models we tested; check with :func:`~residual_response.regime.universal_regime`).

    Returns:
        :class:`InductionResult`; the score at read layer ``l0`` is ``nan`` (chi is a delta there).
    """
    # every argument is checked before the first forward pass: a bad n_boot would otherwise
    # fail only after all seeds have run
    check_model(lm)
    seed_list = check_seeds(seeds)
    validate_layer(lm, layer)
    validate_length(lm, T)
    check_bootstrap(n_boot, confidence)
    if method == "finite":
        check_number(eps, "eps (one strength)", positive=True)
    stripes = collect_stripes(lm, T, seed_list, layer=layer, eps=eps, n_directions=n_directions, method=method,
                              control=control, keep_matrices=keep_matrices, progress=progress, **response_kwargs)
    res = scores_from_stripes(stripes, model=lm.name, method=method, n_directions=n_directions, n_boot=n_boot,
                              confidence=confidence)
    res.n_layers = lm.n_layers
    return res


@dataclass
class SectionMap:
    """``score(l0, l)``: induction score when perturbing stream ``l0`` and reading stream ``l``.

    ``score``/``ci_low``/``ci_high`` are ``[n_l0, L+1]`` with ``nan`` where ``l <= l0``.
    """

    model: str
    length: int
    seeds: list[int]
    perturb_layers: list[int]
    read_layers: list[int]
    score: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    duplicate_score: np.ndarray
    #: the relative strength of every response of the map (``nan`` for ``method="jvp"``)
    eps: float | None = None
    n_directions: int = 1
    #: how the result was made (see :mod:`.provenance`); ``None`` when not recorded
    provenance: dict | None = field(default=None, repr=False)

    #: the ``kind`` tag of the file the command line writes
    KIND = "section-map"

    def writing_blocks(self, threshold: float | None = None) -> list[int]:
        """The perturbed streams ``l0`` whose *first* read stream ``l0 + 1`` already scores clearly above 1.

        Why: stream ``l0 + 1`` differs from stream ``l0`` only by block ``l0``. If the stripe is
        there already, block ``l0`` itself moves the kicked source to the stripe target: it holds
        an induction mechanism that reads the source stream (the previous-token information it
        keys on is in the clean stream already). The rise of a row (:class:`Rise`) cannot see
        this block, because the row's largest score sits at its first stream.

        "Clearly": the interval's lower end lies above ``threshold`` (default :data:`MIN_RISE`, the
        same margin the emergence criterion asks of a rise), not merely above 1, because a network
        without induction can score a few percent off 1 with intervals narrower than that.

        Returns:
            the blocks ``b = l0`` that write a stripe, in increasing order.
        """
        threshold = MIN_RISE if threshold is None else float(threshold)
        out = []
        for i, l0 in enumerate(self.perturb_layers):
            if l0 + 1 < self.ci_low.shape[1] and np.isfinite(self.ci_low[i, l0 + 1]) and self.ci_low[i, l0 + 1] > threshold:
                out.append(int(l0))
        return out
    _MATRICES = ("score", "ci_low", "ci_high", "duplicate_score")

    def to_json_dict(self) -> dict:
        def clean(a):
            return [[None if not np.isfinite(v) else float(v) for v in row] for row in np.asarray(a)]

        eps = None if self.eps is None or not math.isfinite(self.eps) else float(self.eps)
        return {"kind": self.KIND, "model": self.model, "length": self.length, "seeds": self.seeds,
                "perturb_layers": self.perturb_layers,
                "read_layers": self.read_layers, "score": clean(self.score), "ci_low": clean(self.ci_low),
                "ci_high": clean(self.ci_high), "duplicate_score": clean(self.duplicate_score),
                "eps": eps, "n_directions": self.n_directions, "provenance": self.provenance}

    @classmethod
    def load(cls, path: str | os.PathLike, *, against=None) -> "SectionMap":
        """Read a file written by ``residual-response section-map --out`` (or :meth:`to_json_dict`).

        ``None`` cells (``l <= l0``) come back as ``nan``. Give ``against`` (a model, a result or
        a provenance dict) to be warned when the file was made with other weights, model or
        dtype. Raises ``ValueError`` for another kind of file.
        """
        from .provenance import warn_if_different
        from .resultfile import read

        d = read(path, cls.KIND)
        mats = {k: np.array([[np.nan if v is None else float(v) for v in row] for row in d[k]], dtype=np.float64)
                for k in cls._MATRICES}  # each [n_l0, L+1]
        res = cls(model=d["model"], length=int(d["length"]), seeds=[int(x) for x in d["seeds"]],
                  perturb_layers=[int(x) for x in d["perturb_layers"]], read_layers=[int(x) for x in d["read_layers"]],
                  eps=None if d.get("eps") is None else float(d["eps"]), n_directions=int(d.get("n_directions", 1)),
                  provenance=d.get("provenance"), **mats)
        if against is not None:
            warn_if_different(res, against, what=os.fspath(path))
        return res


def section_map(
    lm: LoadedModel,
    T: int = 20,
    seeds: Sequence[int] | int = 2,
    *,
    perturb_layers: Iterable[int] | None = None,
    eps: float = 1e-2,
    n_directions: int = 1,
    n_boot: int = 500,
    progress: "bool | Progress" = False,
    _with_rows: bool = False,
    **response_kwargs,
) -> SectionMap:
    """The map ``score(l0, l)`` over perturbed and read streams.

    The stripe shows up in ``score(l0, l)`` only when blocks ``l0..l-1`` contain both the
    block that moves previous-token information and the one that attends back: the map shows
    which span of blocks composes induction. ``progress`` (``True`` or a
    :class:`~residual_response.progress.Progress`) draws one bar for the whole map, its total
    planned before the first pass.
    """
    check_model(lm)
    validate_length(lm, T)
    seed_list = check_seeds(seeds)
    check_bootstrap(n_boot, 0.95)
    check_number(eps, "eps (one strength)", positive=True)
    L = lm.n_layers
    l0s = list(range(L)) if perturb_layers is None else sorted(set(
        validate_layer(lm, l, what="perturbed layer") for l in check_int_list(perturb_layers, "perturb_layers")))
    reads = list(range(L + 1))
    shape = (len(l0s), L + 1)
    score, lo, hi, dup = (np.full(shape, np.nan) for _ in range(4))
    layout = induction_layout(lm, T)
    sources = list(range(layout.offset, layout.offset + T))
    # every l0 runs the same passes: the default baseline's sequences per seed, sources of the first copy
    passes = len(l0s) * len(_sequence_runs("twin", False)) * len(seed_list) * _passes_per_sequence(lm, T, layout.offset, sources, n_directions,
                                                                  "finite", response_kwargs)
    rows = {}
    with as_progress(progress, f"{lm.name} section map") as bar, bar.expect(passes):
        for i, l0 in enumerate(l0s):
            res = induction_scores(lm, T, seed_list, layer=l0, eps=eps, n_directions=n_directions, n_boot=n_boot,
                                   progress=bar, **response_kwargs)
            cols = np.asarray(res.layers)
            score[i, cols] = res.score
            lo[i, cols] = res.ci_low
            hi[i, cols] = res.ci_high
            dup[i, cols] = res.duplicate_score
            score[i, l0] = lo[i, l0] = hi[i, l0] = dup[i, l0] = np.nan
            rows[l0] = res
    sm = SectionMap(lm.name, T, seed_list, l0s, reads, score, lo, hi, dup, eps=float(eps), n_directions=n_directions)
    return (sm, rows) if _with_rows else sm


# --------------------------------------------------------------------------------------
# The section map with the rise of each of its rows
# --------------------------------------------------------------------------------------


def section_results(
    lm: LoadedModel,
    T: int = 20,
    seeds: Sequence[int] | int = 2,
    *,
    perturb_layers: Iterable[int],
    eps: float = 1e-2,
    n_boot: int = 500,
) -> tuple[SectionMap, dict[int, InductionResult]]:
    """The section map of :func:`section_map` together with the result of each of its rows.

    Why: where a row's score rises is the rise of that row's :class:`InductionResult` (its
    :attr:`~InductionResult.rise`, with paired bootstrap intervals), the one definition of "where
    the score rises" the book uses; :class:`SectionMap` keeps only the scores. The rows are
    computed by :func:`section_map` itself, so the map is the same.

    Returns:
        ``(map, {l0: result})``; each result's ``n_layers`` is set.
    """
    if perturb_layers is None:
        raise TypeError("section_results: perturb_layers must be given (a list of perturbed streams)")
    return section_map(lm, T, seeds, perturb_layers=perturb_layers, eps=eps, n_boot=n_boot, _with_rows=True)


def half_rise_layer(layers: Sequence[int], score: Sequence[float]) -> int | None:
    """The layer where a score profile is half way up its rise, by the rule of :class:`Rise`.

    Why: the same "where the score rises" as the emergence layer, for a profile that has no
    bootstrap replicates (the duplicate-token score of a section map's row). No interval, and no
    test that the rise is larger than noise: read it beside the rise it names. ``None`` when
    fewer than two finite, positive scores remain.
    """
    layers = np.asarray(layers)
    score = np.asarray(score, dtype=float)
    keep = np.isfinite(score) & (score > 0)
    if keep.sum() < 2:
        return None
    _, _, (_, mid, _) = _rise_layers(layers[keep], score[keep])
    return mid
