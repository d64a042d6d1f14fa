"""Where an induction score rises over depth: :class:`Rise`, the book's one definition of the
emergence layer, and :func:`emergence_layer`, a fixed threshold for series of known scale.

Why a module of its own: the rise is read off any score profile with bootstrap replicates (the
induction score of :mod:`.induction`, each row of a section map, the toy model's checkpoints), and
the same rule must hold for all of them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from .checks import InputError
from .stats import KeyAccess, percentile_interval

__all__ = ["EMERGENCE_THRESHOLD", "MIN_RISE", "RISE_FRACTIONS", "STEP_SHARE", "Rise", "emergence_layer", "factor_interval",
           "fall_before_top", "half_rise_layer", "rise_ends", "rise_of", "shape_label", "step_shares"]


#: a fixed score threshold, for series of known scale (:func:`emergence_layer`); the emergence
#: layer of a model follows the score's own rise instead (:class:`Rise`)
EMERGENCE_THRESHOLD = 2.0


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
class Rise(KeyAccess):
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
        emerged: whether the rise is significant; the streams below are ``None`` when not.
        stream, stream_ci: the emergence layer (the read stream half way up) and its interval.
        start, end, width, width_ci: the 10 % and 90 % streams, and ``end - start`` with its interval.
        bottom, top: the streams of the smallest and the largest score.
        factor, factor_ci: ``R`` and its paired interval.
        from_one: the first stream whose score reaches half way from 1 to ``S(top)`` in log
            (``S >= sqrt(S(top))``): the rise measured from "no induction" rather than from the
            minimum; the same as ``stream`` when the score before the rise lies at 1.
        from_one_stream_ci: its interval: the same rule in every replicate (its own top) that rises above 1.
        from_one_factor, from_one_ci: the rise measured from 1 ("no induction") to the top stream,
            ``S(top) / 1``, and its interval over the same replicates: beside ``factor`` wherever a
            page shows the rise, since ``factor`` starts from a minimum that can lie below 1.
        step_block, step_share, step_share_ci: the block ``b`` (from stream ``b`` to ``b + 1``,
            between ``bottom`` and ``top``) that adds most to the log score, the share of the log
            rise ``log S(top) - log S(bottom)`` it adds, and that share's paired interval: the
            share of the *same* block, from the same ``bottom`` to the same ``top``, in each
            bootstrap replicate (:func:`step_shares`).
        top2_blocks, top2_share, top2_share_ci: the same for the two blocks that add most
            together (blocks that add nothing are no steps, so it can be one block). A share can
            lie above 1 when the score falls between the steps. ``None`` when the rise has not
            emerged: a share of a rise within noise says nothing.

    Read its fields by name; key access (``rise["factor"]``, the plain dict it once was, with the
    old keys ``layer`` and ``layer_ci``) still works and warns (:class:`~.stats.KeyAccess`).
    """

    emerged: bool
    stream: int | None
    stream_ci: tuple[int, int] | None
    start: int | None
    end: int | None
    width: int | None
    width_ci: tuple[int, int] | None
    bottom: int
    top: int
    factor: float
    factor_ci: tuple[float, float]
    from_one: int | None = None
    from_one_stream_ci: tuple[int, int] | None = None
    step_block: int | None = None
    step_share: float | None = None
    step_share_ci: tuple[float, float] | None = None
    top2_blocks: tuple[int, ...] | None = None
    top2_share: float | None = None
    top2_share_ci: tuple[float, float] | None = None
    from_one_factor: float | None = None
    from_one_ci: tuple[float, float] | None = None

    _OLD_KEYS = {"layer": "stream", "layer_ci": "stream_ci"}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Rise":
        """The inverse of :meth:`to_dict`, for a dict of any earlier format (``layer`` is the old
        ``stream``; a dict from before the step shares gives ``None`` for them)."""
        kw = {cls._OLD_KEYS.get(k, k): v for k, v in d.items()}
        for key in ("stream_ci", "width_ci", "factor_ci", "step_share_ci", "top2_blocks", "top2_share_ci", "from_one_ci",
                    "from_one_stream_ci"):
            if kw.get(key) is not None:
                kw[key] = tuple(kw[key])
        return cls(**kw)


#: fractions of the log rise that define the start, the middle (emergence) and the end of the rise
RISE_FRACTIONS = (0.1, 0.5, 0.9)

#: the smallest rise, ``S(top) / S(bottom)``, whose interval must lie above it for induction to
#: count as emerged (:class:`Rise`)
MIN_RISE = 1.5


def rise_ends(score: np.ndarray) -> tuple[int, int]:
    """``(bottom, top)``: the index of the largest score and of the smallest at or before it.

    Why a function: the rise of a measured profile and of a simulated one (:mod:`.shape_check`)
    must be read between the same two streams.
    """
    top = int(np.argmax(score))
    return int(np.argmin(score[: top + 1])), top


def factor_interval(boots: np.ndarray, bottom: int, top: int, confidence: float = 0.95) -> tuple[float, float, bool]:
    """``(low, high, emerged)``: the paired interval of the rise ``S(top) / S(bottom)`` over the
    replicates ``boots`` ``[n_boot, n]``, and whether its low end lies above :data:`MIN_RISE`
    (the test of :class:`Rise`)."""
    factors = boots[:, top] / boots[:, bottom]  # paired: the same resample at both layers
    lo, hi = (float(q) for q in percentile_interval(factors, confidence))
    return lo, hi, bool(lo > MIN_RISE)


def _rise_layers(layers: np.ndarray, score: np.ndarray) -> tuple[int, int, tuple[int, ...]]:
    """``(bottom index, top index, layers reaching each of RISE_FRACTIONS)`` of one score profile."""
    bottom, top = rise_ends(score)
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
        raise InputError("rise_of needs finite, positive scores at two read layers at least")
    layers, score, boots = layers[keep], score[keep], boots[:, keep]
    bottom, top, (start, mid, end) = _rise_layers(layers, score)
    f_lo, f_hi, emerged = factor_interval(boots, bottom, top, confidence)
    stream_ci = width_ci = from_one_stream_ci = None
    if emerged:
        mids, widths, ones = [], [], []
        for b in boots:
            bb, bt, (s10, s50, s90) = _rise_layers(layers, b)
            if bt > bb:
                mids.append(s50)
                widths.append(s90 - s10)
            one = _half_from_one(layers, b, bt)
            if one is not None:
                ones.append(one)
        stream_ci = tuple(int(round(q)) for q in percentile_interval(mids, confidence))
        width_ci = tuple(int(round(q)) for q in percentile_interval(widths, confidence))
        if ones:
            from_one_stream_ci = tuple(int(round(q)) for q in percentile_interval(ones, confidence))
    steps = step_shares(layers, score, boots, bottom, top, confidence) if emerged else {}
    return Rise(
        emerged=emerged, stream=mid if emerged else None, stream_ci=stream_ci,
        start=start if emerged else None, end=end if emerged else None,
        width=(end - start) if emerged else None, width_ci=width_ci,
        bottom=int(layers[bottom]), top=int(layers[top]),
        factor=float(score[top] / score[bottom]), factor_ci=(f_lo, f_hi),
        from_one=_half_from_one(layers, score, top) if emerged else None,
        from_one_stream_ci=from_one_stream_ci,
        **steps,
        from_one_factor=float(score[top]),
        from_one_ci=tuple(float(q) for q in percentile_interval(boots[:, top], confidence)),
    )


def step_shares(layers: Sequence[int], score: Sequence[float], boots: np.ndarray, bottom: int, top: int,
                confidence: float = 0.95) -> dict:
    """How much of a rise the largest block, and the two largest, make, with paired intervals.

    Why: "in steps" or "gradual" is a claim about the shape of the rise, and a share computed from
    the point scores alone says nothing about how firm it is. Block ``b`` adds
    ``log S(b + 1) - log S(b)`` to the log score; its share is that over the log rise
    ``log S(top) - log S(bottom)``. Only blocks whose both streams are read and lie from ``bottom``
    to ``top`` count. The blocks are picked on the point scores; each bootstrap replicate then
    gives the share of the *same* blocks over the *same* two streams (paired: one resample for all
    streams), and the interval is the percentile interval of those shares. Picking the blocks on
    the point scores makes the point share the largest of several; the interval says how far it
    moves under resampling, not how likely another block would have been picked.

    Args:
        layers: ``[n]`` read streams; score: ``[n]`` positive scores; boots: ``[n_boot, n]``
            positive paired replicates; bottom, top: indices into ``layers`` with ``bottom < top``.

    Returns:
        the ``step_*`` and ``top2_*`` fields of :class:`Rise` (all ``None`` when no block lies
        between ``bottom`` and ``top``).
    """
    layers = [int(x) for x in layers]
    at = {l: i for i, l in enumerate(layers)}
    logs, blogs = np.log(np.asarray(score, dtype=float)), np.log(np.asarray(boots, dtype=float))  # [n], [n_boot, n]
    lo_l, hi_l = layers[bottom], layers[top]
    blocks = [b for b in range(lo_l, hi_l) if b in at and b + 1 in at]
    none = dict(step_block=None, step_share=None, step_share_ci=None, top2_blocks=None, top2_share=None, top2_share_ci=None)
    total = logs[top] - logs[bottom]
    if not blocks or total <= 0:
        return none
    adds = {b: logs[at[b + 1]] - logs[at[b]] for b in blocks}
    order = sorted(blocks, key=lambda b: adds[b], reverse=True)
    top2 = sorted(b for b in order[:2] if adds[b] > 0) or order[:1]  # a block that adds nothing is no step
    btotal = blogs[:, top] - blogs[:, bottom]  # [n_boot]

    def share(bs):
        point = sum(adds[b] for b in bs) / total
        adds_b = sum(blogs[:, at[b + 1]] - blogs[:, at[b]] for b in bs)  # [n_boot]
        rising = btotal > 0  # a replicate without a rise has no shares
        reps = np.divide(adds_b, btotal, out=np.full_like(btotal, np.nan), where=rising)
        lo, hi = percentile_interval(reps, confidence, ignore_nan=True)
        return float(point), (float(lo), float(hi))

    s1, ci1 = share(order[:1])
    s2, ci2 = share(top2)
    return dict(step_block=order[0], step_share=s1, step_share_ci=ci1, top2_blocks=tuple(top2), top2_share=s2,
                top2_share_ci=ci2)


#: the share of the log rise that one or two blocks must make for a rise to be "in steps" (:func:`shape_label`)
STEP_SHARE = 0.5


def shape_label(top2_share_ci: Sequence[float]) -> str:
    """``"steps"``, ``"gradual"`` or ``"unresolved"``: the book's one rule for the shape of a rise.

    From the paired interval ``(low, high)`` of the share of the log rise that the two largest
    blocks make (:func:`step_shares`): ``"steps"`` when ``low`` is at least :data:`STEP_SHARE`,
    ``"gradual"`` when ``high`` is below it, ``"unresolved"`` when the interval contains it. Why
    a function of the interval alone: the pages label a measured rise with it, and the
    simulation of its error rates (:mod:`.shape_check`) labels simulated ones with the same rule.
    An interval with a ``nan`` end (no replicate showed a rise) is ``"unresolved"``.
    """
    try:
        lo, hi = (float(x) for x in top2_share_ci)
    except (TypeError, ValueError):
        raise InputError(f"top2_share_ci must be two numbers (low, high), got {top2_share_ci!r}") from None
    if lo > hi:
        raise InputError(f"top2_share_ci must have low <= high, got {(lo, hi)!r}")
    if lo >= STEP_SHARE:
        return "steps"
    if hi < STEP_SHARE:
        return "gradual"
    return "unresolved"


def _half_from_one(layers: np.ndarray, score: np.ndarray, top: int) -> int | None:
    """The first stream up to ``top`` whose score reaches ``sqrt(S(top))`` (half way from 1 in log)."""
    if score[top] <= 1.0:
        return None
    level = math.sqrt(score[top])
    return int(next(layers[i] for i in range(top + 1) if score[i] >= level))


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


def fall_before_top(layers: Sequence[int], score: Sequence[float], boots: np.ndarray,
                    confidence: float = 0.95) -> dict | None:
    """The deepest fall of a score profile on its way up to its top, with a paired interval.

    Why: the rise is read from the lowest stream to the highest, and a profile that climbs, falls
    back and climbs again (a score of 7.8 that falls to 3.0 before the jump to 30) shows the same
    rise as one that climbs steadily. The fall is the largest ``S(a) / S(b)`` over read streams
    ``a < b`` up to the top; its interval is that ratio in every replicate (the same resample at
    both streams), so whether the fall is larger than noise is read off its lower end.

    Args:
        layers: ``[n]`` read streams; score: ``[n]`` scores; boots: ``[n_boot, n]`` paired replicates
            (:func:`.shape_check.measured_noise` gives all three, positive and finite).

    Returns:
        ``{"from", "to", "factor", "low", "high", "resolved"}`` (streams, ``S(a) / S(b)`` and its
        interval, and whether the interval lies above 1), or ``None`` where the score never falls
        before its top.
    """
    layers, score, boots = np.asarray(layers), np.asarray(score, dtype=float), np.asarray(boots, dtype=float)
    top = int(np.argmax(score))
    best = None
    for b in range(1, top + 1):
        a = int(np.argmax(score[:b]))  # the highest stream before b
        if score[a] > score[b] and (best is None or score[a] / score[b] > best[2]):
            best = (a, b, float(score[a] / score[b]))
    if best is None:
        return None
    a, b, factor = best
    low, high = (float(q) for q in percentile_interval(boots[:, a] / boots[:, b], confidence))
    return {"from": int(layers[a]), "to": int(layers[b]), "factor": factor, "low": low, "high": high,
            "resolved": bool(low > 1)}
