"""Bootstrap confidence intervals: every resampling scheme of the package, in one place.

The measurements average a statistic over a few *seeds* (independent random sequences) and,
for the stripe scores, over the *positions* of a stripe within each sequence. Two sources of
spread, so two levels of resampling:

- **seeds** (the first level): the sequences are the random draw of the experiment; resampling
  them asks how much the result depends on which sequences were drawn. With one seed this level
  alone can say nothing.
- **positions within a seed** (the second level): the ``T-1`` stripe entries of one sequence are
  not replicas of each other (each pairs a different source token with its target); resampling
  them as well keeps the interval honest when there are few seeds.

A *paired* bootstrap draws one set of resample indices and applies it to everything compared
(two read layers, a base run and an ablated run on the same sequences): the shared
sequence-to-sequence spread cancels in the comparison, and what is left is the effect itself.

Intervals are percentile intervals: the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
quantiles of the replicates. Every function takes a ``seed`` (or a generator) so that an
interval is reproducible.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np
import torch

from .checks import InputError, check_bootstrap

__all__ = [
    "BootstrapMean",
    "KeyAccess",
    "bootstrap_mean",
    "bootstrap_ratio",
    "paired_margin",
    "paired_ratio_change",
    "percentile_interval",
    "ratio_of_means",
    "resampled_ratio",
    "tail",
    "two_level_indices",
]


class KeyAccess:
    """Deprecated: read access by key (``res["mean"]``) to the fields of a result dataclass.

    Why it exists: results that were plain dicts kept the key access their callers (pages, tests)
    used. Why deprecated: a field read by attribute (``res.mean``) is named, documented and
    checked where it is written; a key is a string nothing checks. Every key read warns
    (``DeprecationWarning``); ``_OLD_KEYS`` maps keys of a field since renamed to its name.
    :meth:`to_dict` stays: a plain dict of the fields, e.g. to add entries of one's own.
    """

    _OLD_KEYS: dict = {}

    def __getitem__(self, key: str):
        name = self._OLD_KEYS.get(key, key)
        if name not in self.keys():
            raise KeyError(key)
        warnings.warn(f"deprecated key access {type(self).__name__}[{key!r}]: read the attribute .{name}",
                      DeprecationWarning, stacklevel=2)
        return getattr(self, name)

    def __contains__(self, key) -> bool:
        return self._OLD_KEYS.get(key, key) in self.keys()

    def keys(self) -> list[str]:
        return [f.name for f in fields(self)]

    def get(self, key: str, default=None):
        return self[key] if key in self else default

    def to_dict(self) -> dict:
        """The fields as a plain (shallow) dict, e.g. to add entries of one's own."""
        return {k: getattr(self, k) for k in self.keys()}


@dataclass
class BootstrapMean(KeyAccess):
    """The mean over seeds of a statistic and its percentile-bootstrap interval.

    Attributes:
        mean, lo, hi: ``[...]`` float64 tensors: the mean over seeds and the interval's ends.
        per_seed: ``[S, ...]`` float64 tensor, the values the mean was taken over.
    """

    mean: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    per_seed: torch.Tensor


def tail(confidence: float) -> float:
    """The probability ``(1 - confidence) / 2`` left out at each end of a two-sided interval."""
    return (1 - confidence) / 2


def percentile_interval(boots: np.ndarray, confidence: float, *, axis: int | None = 0,
                        ignore_nan: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)``: the two-sided percentile interval of bootstrap replicates along ``axis``.

    Why ``ignore_nan``: a replicate can be undefined (a constant profile has no rank correlation;
    the perturbed layer has no score); those replicates are left out instead of making the whole
    interval ``nan``, and an all-``nan`` column stays ``nan`` without a warning.
    """
    alpha = tail(confidence)
    if not ignore_nan:
        low, high = np.quantile(boots, [alpha, 1 - alpha], axis=axis)
        return low, high
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanquantile(boots, [alpha, 1 - alpha], axis=axis)
    return low, high


def bootstrap_mean(
    values: torch.Tensor | np.ndarray, *, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
) -> BootstrapMean:
    """Mean over the first axis with a percentile-bootstrap confidence interval.

    One level, seeds only. Why: the losses and attention scores are one number per sequence
    (already averaged over its positions), so the seeds are the only random draw left to
    resample. With one seed the interval collapses to the value itself (no spread can be
    estimated).

    Args:
        values: ``[S, ...]`` one entry per seed.
        n_boot: bootstrap resamples (seeded by ``seed``, so the interval is reproducible).
        confidence: two-sided level in (0, 1).

    Returns:
        :class:`BootstrapMean` (``mean``/``lo``/``hi`` ``[...]``, ``per_seed`` ``[S, ...]``).
    """
    n_boot, confidence = check_bootstrap(n_boot, confidence)
    v = torch.as_tensor(values).detach().to("cpu", torch.float64)
    if v.ndim == 0 or v.shape[0] == 0:
        raise InputError(f"values must have a non-empty first (seed) axis, got shape {tuple(v.shape)}")
    S = v.shape[0]
    gen = torch.Generator().manual_seed(int(seed))
    idx = torch.randint(S, (n_boot, S), generator=gen)  # [n_boot, S]
    boots = v[idx].mean(dim=1)  # [n_boot, ...]
    alpha = tail(confidence)
    q = torch.tensor([alpha, 1.0 - alpha], dtype=torch.float64)
    lo, hi = torch.quantile(boots, q, dim=0)
    return BootstrapMean(mean=v.mean(dim=0), lo=lo, hi=hi, per_seed=v)


def two_level_indices(rng: np.random.Generator, n_seeds: int, n_positions: int,
                      n_boot: int) -> tuple[np.ndarray, np.ndarray]:
    """Resample indices of the two-level bootstrap: seeds, then positions within each drawn seed.

    Why both levels: see the module docstring. The seed indices are drawn first and the
    position indices second, from the one generator ``rng``.

    Returns:
        ``(si, pi)``: ``si`` ``[n_boot, n_seeds]`` seed rows, ``pi`` ``[n_boot, n_seeds, n_positions]``
        position columns (an independent draw for every drawn seed).
    """
    si = rng.integers(0, n_seeds, size=(n_boot, n_seeds))  # [n_boot, n_seeds]
    pi = rng.integers(0, n_positions, size=(n_boot, n_seeds, n_positions))  # [n_boot, n_seeds, P]
    return si, pi


def _resampled_mean(x: np.ndarray, si: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """``[n_boot, n_layers]`` means of ``x`` (``[n_seeds, n_layers, P]``) under two-level resample indices."""
    return x.transpose(0, 2, 1)[si[:, :, None], pi].mean(axis=(1, 2))


def resampled_ratio(rep: np.ndarray, ctrl: np.ndarray, si: np.ndarray, pi: np.ndarray,
                    twin: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Ratio of means of ``rep`` and ``ctrl`` under given two-level resample indices.

    ``rep`` and ``ctrl`` (``[n_seeds, n_layers, P]``) are resampled with the *same* indices, so
    that each replicate's ratio compares the same sequences and positions (the control is the
    baseline of those very entries). With ``twin = (twin_rep, twin_ctrl)`` (same shape, paired by
    seed and position) the statistic is the ratio of the two ratios,
    ``(rep / ctrl) / (twin_rep / twin_ctrl)``, all four resampled with the same indices.

    Returns:
        ``[n_boot, n_layers]`` replicates (``nan``/``inf`` where a denominator mean is 0).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        out = _resampled_mean(rep, si, pi) / _resampled_mean(ctrl, si, pi)
        if twin is not None:
            out = out / (_resampled_mean(twin[0], si, pi) / _resampled_mean(twin[1], si, pi))
    return out


def _check_stripes(rep, ctrl, twin=None) -> tuple:
    """The stripe arrays as float arrays of one shape ``[n_seeds, n_layers, P]`` (``twin``: a pair or ``None``)."""
    arrays = [rep, ctrl] + ([] if twin is None else list(twin))
    if twin is not None and len(twin) != 2:
        raise InputError(f"twin must be a pair (twin_rep, twin_ctrl), got {len(twin)} arrays")
    arrays = [np.asarray(a, dtype=float) for a in arrays]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or arrays[0].ndim != 3:
        raise InputError(f"stripe arrays must have equal shapes [n_seeds, n_layers, P], got {[a.shape for a in arrays]}")
    if 0 in arrays[0].shape:
        raise InputError(f"stripe arrays must be non-empty [n_seeds, n_layers, P], got shape {arrays[0].shape}")
    return tuple(arrays)


def bootstrap_ratio(
    rep: np.ndarray, ctrl: np.ndarray, *, twin: tuple[np.ndarray, np.ndarray] | None = None, n_boot: int = 1000,
    confidence: float = 0.95, seed: int = 0, return_boots: bool = False,
):
    """Ratio of means with a two-level bootstrap CI (seeds, then positions).

    Why two levels: a stripe score averages over seeds and over the stripe positions of each
    seed, and both vary (:func:`two_level_indices`).

    Args:
        rep, ctrl: ``[n_seeds, n_layers, P]`` stripe entries and their baselines (paired by seed
            and position index).
        twin: optional ``(twin_rep, twin_ctrl)`` of the same shape: the same entries of a matched
            sequence (paired by seed and position). The statistic is then the ratio of ratios
            ``(rep / ctrl) / (twin_rep / twin_ctrl)``, and every replicate resamples all four
            arrays with the same indices.
        return_boots: also return the bootstrap replicates ``[n_boot, n_layers]``. Every replicate
            resamples the same seeds and positions at every layer, so a statistic of several
            layers (the rise of :func:`.induction.rise_of`) gets a paired interval from them.

    Returns:
        ``(ratio, low, high)``, each ``[n_layers]``; ``nan`` where a denominator mean is 0
        (``(ratio, low, high, boots)`` with ``return_boots``).
    """
    arrays = _check_stripes(rep, ctrl, twin)
    rep, ctrl = arrays[:2]
    twin = None if twin is None else arrays[2:]
    n_boot, confidence = check_bootstrap(n_boot, confidence)
    n_seeds, n_layers, P = rep.shape
    full_s, full_p = np.arange(n_seeds)[None], np.broadcast_to(np.arange(P), (1, n_seeds, P))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = resampled_ratio(rep, ctrl, full_s, full_p, twin)[0]
        si, pi = two_level_indices(np.random.default_rng(seed), n_seeds, P, n_boot)
        boots = resampled_ratio(rep, ctrl, si, pi, twin)  # [n_boot, n_layers]
        low, high = percentile_interval(boots, confidence)
    bad = ~np.isfinite(ratio)
    low[bad] = np.nan
    high[bad] = np.nan
    if return_boots:
        return ratio, low, high, boots
    return ratio, low, high


def paired_ratio_change(
    base: tuple[np.ndarray, ...], others: Sequence[tuple[np.ndarray, ...]], *,
    n_boot: int = 1000, confidence: float = 0.95, seed: int = 0,
    against: Sequence[tuple[np.ndarray, ...]] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``ratio(base) - mean_j ratio(others[j])`` per layer, with a paired two-level bootstrap CI.

    Why paired: the runs compared (a model and the same model with heads ablated) score the same
    sequences and positions, so one set of resample indices serves all of them and the
    sequence-to-sequence spread they share cancels. Several ``others`` (random-head draws) are
    averaged inside each replicate.

    With ``against`` (a list of runs, e.g. random-head draws) the result is instead the drop from
    ``base`` under ``others`` minus the mean drop under ``against``, which is
    ``mean_i ratio(against[i]) - mean_j ratio(others[j])`` (``base`` cancels). Each replicate then
    also resamples the runs of ``against`` with replacement, so the interval holds the spread
    *between* them, not only the resampling within each.

    Args:
        base, others, against: ``(rep, ctrl)`` pairs, or ``(rep, ctrl, twin_rep, twin_ctrl)``
            quadruples (the ratio of ratios of :func:`bootstrap_ratio`), of ``[n_seeds, n_layers,
            P]`` stripe entries, all of one shape.

    Returns:
        ``(change, low, high)``, each ``[n_layers]`` (``nan`` where a ratio is undefined).
    """
    n_boot, confidence = check_bootstrap(n_boot, confidence)
    S, _, P = np.shape(base[0])
    rng = np.random.default_rng(seed)
    si, pi = two_level_indices(rng, S, P, n_boot)
    full_s, full_p = np.arange(S)[None], np.broadcast_to(np.arange(P), (1, S, P))

    def ratio(parts, s_idx, p_idx):
        return resampled_ratio(parts[0], parts[1], s_idx, p_idx, tuple(parts[2:4]) if len(parts) == 4 else None)

    with np.errstate(invalid="ignore"):
        if against is None:
            change = ratio(base, full_s, full_p)[0] - np.mean([ratio(o, full_s, full_p)[0] for o in others], axis=0)
            boots = ratio(base, si, pi) - np.mean([ratio(o, si, pi) for o in others], axis=0)
        else:
            if not against:
                raise ValueError("against is empty; give the runs to compare the drop with")
            pick = rng.integers(0, len(against), size=(n_boot, len(against)))  # runs of `against`, resampled
            named = np.mean([ratio(o, full_s, full_p)[0] for o in others], axis=0)
            change = np.mean([ratio(a, full_s, full_p)[0] for a in against], axis=0) - named
            per_run = np.stack([ratio(a, si, pi) for a in against])  # [n_against, n_boot, n_layers]
            boots = (per_run[pick, np.arange(n_boot)[:, None]].mean(axis=1)
                     - np.mean([ratio(o, si, pi) for o in others], axis=0))
        lo, hi = percentile_interval(boots, confidence, ignore_nan=True)  # the perturbed layer: all nan
    bad = ~np.isfinite(change)
    lo[bad] = hi[bad] = np.nan
    return change, lo, hi


def paired_margin(named: tuple[np.ndarray, ...], draws: Sequence[tuple[np.ndarray, ...]], *, stream: int = -1,
                  n_boot: int = 1000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float, float]:
    """How far a named ablation's drop lies beyond the *largest* random draw's, at one read stream.

    Why: a permutation p-value ranks the point drops, while each drop has a paired interval; a
    named drop that beats the largest draw by less than that interval's width ranks first by
    chance as easily as by cause. The margin is ``min_j ratio(draws[j]) - ratio(named)`` (the
    unablated score cancels from the drops), and every replicate resamples the same seeds and
    positions in all runs (paired, :func:`two_level_indices`), the draws held fixed.

    Args:
        named, draws: ``(rep, ctrl)`` pairs or ``(rep, ctrl, twin_rep, twin_ctrl)`` quadruples of
            ``[n_seeds, n_layers, P]`` stripe entries, all of one shape; stream: index of the read stream.

    Returns:
        ``(margin, low, high, first)``: the point margin, its percentile interval, and the share of
        replicates in which the named drop exceeds every draw's.
    """
    n_boot, confidence = check_bootstrap(n_boot, confidence)
    if not draws:
        raise ValueError("draws is empty; give the random draws to compare the named drop with")
    S, _, P = np.shape(named[0])
    rng = np.random.default_rng(seed)
    si, pi = two_level_indices(rng, S, P, n_boot)
    full_s, full_p = np.arange(S)[None], np.broadcast_to(np.arange(P), (1, S, P))

    def ratio(parts, s_idx, p_idx):  # [n, n_layers] -> the one stream, [n]
        return resampled_ratio(parts[0], parts[1], s_idx, p_idx, tuple(parts[2:4]) if len(parts) == 4 else None)[:, stream]

    with np.errstate(invalid="ignore"):
        margin = float(np.min([ratio(d, full_s, full_p)[0] for d in draws]) - ratio(named, full_s, full_p)[0])
        boots = np.min([ratio(d, si, pi) for d in draws], axis=0) - ratio(named, si, pi)  # [n_boot]
    lo, hi = percentile_interval(boots, confidence, ignore_nan=True)
    ok = np.isfinite(boots)
    return margin, float(lo), float(hi), float(np.mean(boots[ok] > 0)) if ok.any() else float("nan")


def ratio_of_means(repeated, control, *, n_boot: int = 1000, confidence: float = 0.95,
                   seed: int = 0) -> tuple[float, float, float]:
    """The ratio of two means over seeds, with a percentile-bootstrap interval that resamples the seeds of both.

    Why: a head's attention on the stripe of repeated sequences over its attention on the same
    entries of random sequences is the number that tells an induction head from a head that
    prefers a distance (:data:`.attention.INDUCTION_HEAD_MIN_RATIO`); the two means come from the
    same seed numbers, so one replicate resamples both with the same seeds.

    Args:
        repeated, control: ``[S]`` per-seed values (a head's score on the two kinds, paired by seed).

    Returns:
        ``(ratio, low, high)``; ``nan`` where a replicate's control mean is 0.
    """
    rep, ctrl = (np.asarray(x, dtype=float).ravel() for x in (repeated, control))
    if rep.shape != ctrl.shape or rep.size == 0:
        raise InputError(f"repeated and control must be non-empty and of one length, got {rep.size} and {ctrl.size}")
    n_boot, confidence = check_bootstrap(n_boot, confidence)
    si = np.random.default_rng(seed).integers(0, rep.size, size=(n_boot, rep.size))  # [n_boot, S]
    with np.errstate(divide="ignore", invalid="ignore"):
        boots = rep[si].mean(axis=1) / ctrl[si].mean(axis=1)
        ratio = float(rep.mean() / ctrl.mean())
    lo, hi = percentile_interval(boots, confidence, ignore_nan=True)
    return ratio, float(lo), float(hi)
