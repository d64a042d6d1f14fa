"""Intervals for the toy model's scores through training, and for the steps at which they move.

Why a module of its own: :mod:`.dynamics` measures the scores at each checkpoint and reads off
*when* each one moves (:func:`.dynamics.rise_step`, :func:`.dynamics.onset_step`); those steps are
statistics of the evaluation sequences as much as the scores are, and need intervals of their own.

Every checkpoint is scored on the *same* sequences (seeds ``0..S-1``), so one bootstrap replicate
resamples the same seeds (and, for the response score, the same stripe positions) at every step:
each replicate is a whole curve through training, and a step read off each replicate curve gives
the step's bootstrap distribution (:func:`step_interval`). Two steps read off the same replicates
(attention and response) give a paired interval of their difference (:func:`step_difference`).
A step at which a curve crosses a level (the response leaving 1) gets its interval the same way
(:func:`level_step_interval`); the step at which the curve's *interval* leaves the level has no
replicate of its own and is quoted beside it as the conservative step.

The intervals are over the evaluation sequences of one training run, not over training runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .checks import InputError, check_bootstrap
from .dynamics import onset_step, rise_step
from .stats import percentile_interval, resampled_ratio, two_level_indices

__all__ = [
    "StepInterval",
    "advantage_steps",
    "level_step_interval",
    "response_replicates",
    "step_difference",
    "step_interval",
    "top_head_replicates",
]


@dataclass(frozen=True)
class StepInterval:
    """A step read off a curve, with its percentile-bootstrap interval over the replicate curves.

    Attributes:
        step: the step of the measured curve (``None``: it does not rise).
        lo, hi: the interval's ends (each a measured step; ``None``: open, as more replicates
            than the interval's tail do not rise).
        n_none: replicates in which the curve does not rise; n_boot: replicates in all.
    """

    step: int | None
    lo: int | None
    hi: int | None
    n_none: int
    n_boot: int


def _per_seed(per_seed, name: str) -> np.ndarray:
    """``[n_steps, S, H]`` float array of per-seed scores, checked."""
    a = np.asarray(per_seed, dtype=float)
    if a.ndim != 3 or 0 in a.shape:
        raise InputError(f"{name} must be a non-empty [n_steps, n_seeds, n_heads] array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise InputError(f"{name} must be finite")
    return a


def _seed_indices(n_seeds: int, n_boot: int, seed: int) -> np.ndarray:
    """``[n_boot, n_seeds]`` resampled seed rows (the first draw of :func:`.stats.two_level_indices`)."""
    return two_level_indices(np.random.default_rng(seed), n_seeds, 1, n_boot)[0]


def top_head_replicates(per_seed, *, n_boot: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The largest mean over heads at every step, and its bootstrap replicates.

    Why the largest is taken again in each replicate: the statistic is "the head that attends
    most", and which head that is depends on the sequences too. Every replicate resamples the same
    seeds at every step (:func:`_seed_indices` with ``seed``; the same seed gives the same rows as
    :func:`response_replicates`, so the two curves are paired).

    Args:
        per_seed: ``[n_steps, S, H]`` one block's per-seed scores (attention on the stripe, or on the
            previous token) at each step.

    Returns:
        ``(point, boots)``: ``[n_steps]`` the largest mean over heads, ``[n_boot, n_steps]`` its replicates.
    """
    a = _per_seed(per_seed, "per_seed")
    n_boot, _ = check_bootstrap(n_boot, 0.95)
    si = _seed_indices(a.shape[1], n_boot, seed)  # [n_boot, S]
    boots = a[:, si].mean(axis=2).max(axis=-1).T  # [n_steps, n_boot, S, H] -> [n_boot, n_steps]
    return a.mean(axis=1).max(axis=-1), boots


def response_replicates(parts_by_step: Sequence[tuple], stream_index: int, *, n_boot: int = 1000,
                        seed: int = 0) -> np.ndarray:
    """Bootstrap replicates of the response score at one read stream, at every step, paired across steps.

    Each replicate resamples the same seeds (the same rows as :func:`top_head_replicates` with the
    same ``seed``) and, within them, the same stripe positions at every step (:func:`.stats.resampled_ratio`).

    Args:
        parts_by_step: per step, the stripe arrays of :meth:`.induction_result.StripeData.parts`
            (``(rep, ctrl)`` or ``(rep, ctrl, twin, twin_ctrl)``, each ``[S, n_read, P]``, one shape at every step).
        stream_index: index of the read stream among the ``n_read``.

    Returns:
        ``[n_boot, n_steps]`` replicates of the score.
    """
    if not parts_by_step:
        raise InputError("parts_by_step is empty")
    shapes = {np.shape(a) for parts in parts_by_step for a in parts}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3 or any(len(p) not in (2, 4) for p in parts_by_step):
        raise InputError(f"every step needs 2 or 4 stripe arrays of one shape [S, n_read, P], got shapes {sorted(shapes)}")
    S, n_read, P = next(iter(shapes))
    if isinstance(stream_index, bool) or not isinstance(stream_index, int) or not -n_read <= stream_index < n_read:
        raise InputError(f"stream_index must be an int in [{-n_read}, {n_read - 1}], got {stream_index!r}")
    n_boot, _ = check_bootstrap(n_boot, 0.95)
    si, pi = two_level_indices(np.random.default_rng(seed), S, P, n_boot)  # seed rows as _seed_indices(S, n_boot, seed)
    out = [resampled_ratio(*(np.asarray(a, dtype=float) for a in p[:2]), si, pi,
                           None if len(p) == 2 else tuple(np.asarray(a, dtype=float) for a in p[2:]))[:, stream_index]
           for p in parts_by_step]
    return np.stack(out, axis=1)  # [n_boot, n_steps]


def _rise_steps(steps: list[int], boots: np.ndarray, fraction: float, log: bool) -> list[int | None]:
    """The rise step of every replicate curve (``None`` where it does not rise or is not positive)."""
    out = []
    for curve in boots:
        if not np.all(np.isfinite(curve)) or (log and not np.all(curve > 0)):
            out.append(None)
            continue
        out.append(rise_step(steps, np.log(curve) if log else curve, fraction=fraction))
    return out


def _check_curves(steps, point, boots) -> tuple[list[int], np.ndarray, np.ndarray]:
    steps = [int(s) for s in steps]
    point, boots = np.asarray(point, dtype=float), np.asarray(boots, dtype=float)
    if point.shape != (len(steps),) or boots.ndim != 2 or boots.shape[1] != len(steps) or not steps:
        raise InputError(f"need point [n_steps] and boots [n_boot, n_steps] for {len(steps)} steps, got shapes "
                         f"{point.shape} and {boots.shape}")
    return steps, point, boots


def step_interval(steps, point, boots, *, fraction: float = 0.5, log: bool = False,
                  confidence: float = 0.95) -> StepInterval:
    """The step at which a curve covers ``fraction`` of its rise (:func:`.dynamics.rise_step`), with an interval.

    Args:
        steps: ascending measured steps; point: ``[n_steps]`` the measured curve; boots:
            ``[n_boot, n_steps]`` its replicates (:func:`top_head_replicates`, :func:`response_replicates`).
        log: read the rise in factors (the logarithm of a ratio-like score), as the page does for the response.
    """
    steps, point, boots = _check_curves(steps, point, boots)
    _, confidence = check_bootstrap(1, confidence)
    step = _rise_steps(steps, point[None], fraction, log)[0]
    reps = _rise_steps(steps, boots, fraction, log)
    # a replicate that does not rise counts as later than every step: it can only open the upper end
    values = np.array([np.inf if r is None else r for r in reps], dtype=float)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha], method="inverted_cdf")
    return StepInterval(step, None if np.isinf(lo) else int(lo), None if np.isinf(hi) else int(hi),
                        int(np.isinf(values).sum()), len(reps))


def step_difference(steps, first: tuple, second: tuple, *, fraction: float = 0.5,
                    confidence: float = 0.95) -> tuple[int | None, float, float, float, float]:
    """``step(second) - step(first)`` of two paired curves, with its percentile interval.

    Why paired: both curves are replicated with the same resampled sequences (the same ``seed`` of
    :func:`top_head_replicates` and :func:`response_replicates`), so the difference of the two
    steps in one replicate says how far apart they are on the same data.

    Args:
        first, second: ``(point, boots, log)`` each: the measured curve ``[n_steps]``, its replicates
            ``[n_boot, n_steps]`` (the same ``n_boot``) and whether its rise is read in factors.

    Returns:
        ``(difference, low, high, share_later, share_earlier)``: the measured difference (``None``
        where a curve does not rise), its interval over the replicates in which both rise (``nan``
        if none), and the shares of those in which the second step is strictly later, and earlier.
    """
    (s1, p1, b1), (s2, p2, b2) = (_check_curves(steps, *c[:2]) for c in (first, second))
    if b1.shape != b2.shape:
        raise InputError(f"the two curves need replicates of one shape, got {b1.shape} and {b2.shape}")
    _, confidence = check_bootstrap(1, confidence)
    d1, d2 = (_rise_steps(s1, p[None], fraction, c[2])[0] for p, c in ((p1, first), (p2, second)))
    r1, r2 = _rise_steps(s1, b1, fraction, first[2]), _rise_steps(s1, b2, fraction, second[2])
    diffs = np.array([b - a for a, b in zip(r1, r2) if a is not None and b is not None], dtype=float)
    point = None if d1 is None or d2 is None else d2 - d1
    if diffs.size == 0:
        return point, float("nan"), float("nan"), float("nan"), float("nan")
    lo, hi = percentile_interval(diffs, confidence)
    return point, float(lo), float(hi), float(np.mean(diffs > 0)), float(np.mean(diffs < 0))


def _advantage_steps_of(steps: list[int], adv: np.ndarray, fraction: float, low: float, high: float) -> list:
    """``(phase, drop start, drop end)`` of one advantage curve ``[n_steps]``, by the rules of
    :func:`.dynamics.phase_change_step` and :func:`.dynamics.loss_drop` (``None`` where it does not rise)."""
    final = adv[-1]
    phase = next((s for s, a in zip(steps, adv) if a >= fraction * final), None) if final >= 0.5 else None
    return [phase] + [rise_step(steps, adv, fraction=f) for f in (low, high)]


def advantage_steps(steps, first, second, *, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0,
                    fraction: float = 0.5, low: float = 0.1, high: float = 0.9) -> dict[str, StepInterval]:
    """The loss's phase change step and the loss drop's ends, with bootstrap intervals over the held-out sequences.

    The second-copy advantage ``first - second`` is averaged over resampled sequences (the same
    sequences at every step) and each replicate curve is read as the training log is read:
    ``"phase"`` as :func:`.dynamics.phase_change_step` (``fraction`` of the final advantage),
    ``"loss_lo"`` and ``"loss_hi"`` as :func:`.dynamics.loss_drop` (``low`` and ``high`` of the rise).

    Args:
        steps: ascending checkpoint steps, the first and the last of the run included (the rules
            read the first and final advantage); first, second: ``[n_steps, n_sequences]`` losses
            (:func:`.dynamics.eval_copy_losses`).
    """
    steps = [int(s) for s in steps]
    f, s = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if f.shape != s.shape or f.ndim != 2 or f.shape[0] != len(steps) or 0 in f.shape:
        raise InputError(f"first and second must both be [n_steps={len(steps)}, n_sequences], got {f.shape} and {s.shape}")
    if not np.all(np.isfinite(f)) or not np.all(np.isfinite(s)):
        raise InputError("the losses must be finite")
    n_boot, confidence = check_bootstrap(n_boot, confidence)
    adv = f - s  # [n_steps, n]
    si = _seed_indices(adv.shape[1], n_boot, seed)
    boots = adv[:, si].mean(axis=2).T  # [n_boot, n_steps]
    point = _advantage_steps_of(steps, adv.mean(axis=1), fraction, low, high)
    reps = [_advantage_steps_of(steps, b, fraction, low, high) for b in boots]
    alpha = (1 - confidence) / 2
    out = {}
    for j, name in enumerate(("phase", "loss_lo", "loss_hi")):
        values = np.array([np.inf if r[j] is None else r[j] for r in reps], dtype=float)
        lo, hi = np.quantile(values, [alpha, 1 - alpha], method="inverted_cdf")
        out[name] = StepInterval(point[j], None if np.isinf(lo) else int(lo), None if np.isinf(hi) else int(hi),
                                 int(np.isinf(values).sum()), n_boot)
    return out


def level_step_interval(steps, point, boots, level: float, *, stay: bool = True,
                        confidence: float = 0.95) -> StepInterval:
    """The step at which a curve rises above ``level`` (for good with ``stay``, else first), with an interval.

    Why: "the interval leaves 1 for good" (:func:`.dynamics.onset_step` of the lower end) is a
    conservative step, the first the sequences resolve; where the curve itself crosses the level is
    a statistic of the sequences like any other, and its replicate curves give its interval. A
    replicate that never gets above ``level`` counts as later than every step (an open upper end).

    Args:
        steps: ascending measured steps; point: ``[n_steps]`` the measured curve; boots: ``[n_boot, n_steps]``.
        level: a finite number; stay: the first step from which every later value is above ``level``
            (:func:`.dynamics.onset_step`), else the first step above it.
    """
    steps, point, boots = _check_curves(steps, point, boots)
    if not isinstance(level, (int, float)) or isinstance(level, bool) or not np.isfinite(level):
        raise InputError(f"level must be a finite number, got {level!r}")
    _, confidence = check_bootstrap(1, confidence)

    def at(curve):
        if stay:
            return onset_step(steps, curve, level)
        return next((s for s, v in zip(steps, curve) if v > level), None)

    values = np.array([np.inf if (r := at(c)) is None else r for c in boots], dtype=float)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha], method="inverted_cdf")
    return StepInterval(at(point), None if np.isinf(lo) else int(lo), None if np.isinf(hi) else int(hi),
                        int(np.isinf(values).sum()), len(boots))
