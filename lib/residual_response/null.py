"""The null of the induction score: what models *without* induction score.

Why a module of its own: "a score near 1 means no induction" is a claim about the estimator, and
it must be measured, not assumed. Random-initialised models have no induction mechanism, so the
score of every one of their layers should cover 1, whatever the architecture, the size or the
initialisation seed. :func:`null_study` measures exactly that for any of the baselines of
:func:`.induction.collect_stripes`, and :func:`coverage` summarises it; the book's null page
shows the result for each baseline, and a test keeps the default baseline calibrated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .checks import InputError, check_int_list, check_seeds
from .induction import CONTROLS, induction_scores
from .models import build_random_model
from .stats import KeyAccess

__all__ = ["FAMILIES", "SIZES", "Coverage", "NullRow", "coverage", "null_study", "BASELINE_NAMES",
           "emerged_models", "emergence_stability", "emergence_spread"]

#: the architectures of the random controls
FAMILIES = ("gpt2", "llama", "gemma2", "gemma3")
#: two sizes of each: blocks and width
SIZES = {"small": {"n_layers": 4, "d_model": 64}, "large": {"n_layers": 8, "d_model": 128}}


@dataclass(frozen=True)
class NullRow:
    """The score of one read layer ``layer`` (stream ``l``) of one random model."""

    family: str
    size: str
    init_seed: int
    control: str
    layer: int
    n_layers: int
    score: float
    ci_low: float
    ci_high: float
    #: the model's emergence layer under this baseline (the same on all its rows; ``None``: no rise)
    emergence_layer: int | None = None

    @property
    def covers_one(self) -> bool:
        return self.ci_low <= 1.0 <= self.ci_high


def null_study(
    *,
    families: Sequence[str] = FAMILIES,
    sizes: Sequence[str] = tuple(SIZES),
    init_seeds: Sequence[int] = (0, 1, 2),
    controls: Sequence[str] = ("neighbours",),
    T: int = 12,
    seeds: Sequence[int] | int = 4,
    eps: float = 1e-2,
    n_boot: int = 1000,
) -> list[NullRow]:
    """Induction scores of random-initialised models: every family, size, init seed and baseline.

    Args:
        families: architectures (:data:`FAMILIES`); sizes: keys of :data:`SIZES`.
        init_seeds: initialisation seeds of the models.
        seeds: the sequence seeds, an int ``K`` (seeds ``0..K-1``) or a list.
        controls: baselines (:data:`.induction.CONTROLS`).
        T, seeds, eps, n_boot: as for :func:`.induction.induction_scores` (perturbing stream 0).

    Returns:
        one :class:`NullRow` per model, baseline and read layer ``1..L``.
    """
    bad = [c for c in controls if c not in CONTROLS]
    if bad or not controls:
        raise InputError(f"controls must be a non-empty list of {', '.join(CONTROLS)}; got {list(controls)!r}")
    bad = [f for f in families if f not in FAMILIES]
    if bad or not families:
        raise InputError(f"families must be a non-empty list of {', '.join(FAMILIES)}; got {list(families)!r}")
    bad = [s for s in sizes if s not in SIZES]
    if bad or not sizes:
        raise InputError(f"sizes must be a non-empty list of {', '.join(SIZES)}; got {list(sizes)!r}")
    init_seeds = check_int_list(init_seeds, "init_seeds", minimum=0)
    seeds = check_seeds(seeds)
    rows = []
    for family in families:
        for size in sizes:
            for init_seed in init_seeds:
                lm = build_random_model(family, seed=int(init_seed), **SIZES[size])
                for control in controls:
                    res = induction_scores(lm, T=T, seeds=seeds, eps=eps, n_boot=n_boot, control=control)
                    for l, s, lo, hi in zip(res.read_streams, res.score, res.ci_low, res.ci_high):
                        if l == res.l0:
                            continue  # the perturbed stream itself has no score
                        rows.append(NullRow(family, size, int(init_seed), control, int(l), lm.n_layers,
                                            float(s), float(lo), float(hi), res.emergence_layer))
    return rows


@dataclass(frozen=True)
class Coverage(KeyAccess):
    """How well one baseline's null holds over the layers of the random models (:func:`coverage`).

    Attributes:
        covered: the fraction of layers whose CI covers 1; n: the number of layers.
        mean_log_score: the mean of ``log score`` (0 for a calibrated score); min, max: the range.
    """

    covered: float
    n: int
    mean_log_score: float
    min: float
    max: float


def coverage(rows: Sequence[NullRow]) -> dict[str, Coverage]:
    """Per baseline: the fraction of layers whose CI covers 1, the mean log score, and the range.

    Returns:
        ``{control: Coverage}`` (its fields also read by key, ``cov[control]["covered"]``).
    """
    out = {}
    for control in dict.fromkeys(r.control for r in rows):
        sel = [r for r in rows if r.control == control]
        scores = np.array([r.score for r in sel])
        out[control] = Coverage(
            covered=float(np.mean([r.covers_one for r in sel])),
            n=len(sel),
            mean_log_score=float(np.mean(np.log(scores))),
            min=float(scores.min()),
            max=float(scores.max()),
        )
    return out


# --------------------------------------------------------------------------------------
# The book's names of the baselines, and the stability of the emergence layer
# --------------------------------------------------------------------------------------

#: how the book names each baseline
BASELINE_NAMES = {"random": "random control sequences", "neighbours": "neighbours", "shuffled": "shuffled copies"}


def emerged_models(rows: Sequence[NullRow], control: str = "neighbours") -> list[tuple]:
    """The random models that pass the emergence criterion under ``control``: ``(family, size,
    init seed, emergence layer)``, sorted. None should."""
    return sorted({(r.family, r.size, r.init_seed, r.emergence_layer) for r in rows
                   if r.control == control and r.emergence_layer is not None})


def emergence_stability(lms: dict, Ts: Sequence[int], seeds: int, *, eps: float = 1e-2) -> list[dict]:
    """The emergence layer of each model at each copy length ``T`` and number of seeds.

    Why: a number worth quoting must not move with the setting. Each ``(model, T)`` is run once
    with ``seeds`` seeds; the smaller numbers (2 and ``seeds // 2``) are subsets of the same run
    (:func:`.induction.rescore_seeds`), so only the estimator changes between them. A ``T`` whose
    sequence does not fit a model's context is skipped.

    Returns:
        rows ``{model, T, seeds, emergence layer, interval low, interval high, L, rise}``.
    """
    from .induction import rescore_seeds

    rows = []
    for name, lm in lms.items():
        for T in Ts:
            if 2 * T + 1 > lm.max_length:
                continue
            res = induction_scores(lm, T=T, seeds=seeds, eps=eps)
            for k in sorted({2, seeds // 2, seeds} - {0, 1}):
                r = res if k == seeds else rescore_seeds(res, range(k))
                lo, hi = r.rise.stream_ci if r.rise and r.rise.stream_ci else (None, None)
                rows.append({"model": name, "T": T, "seeds": k, "emergence layer": r.emergence_layer,
                             "interval low": lo, "interval high": hi, "L": lm.n_layers,
                             "rise": r.rise.factor if r.rise else float("nan")})
    return rows


def emergence_spread(stability: Sequence[dict], seeds: int) -> dict:
    """Per model, at ``seeds`` seeds: ``(lowest, highest)`` emergence layer over ``T``, or ``None``
    when some ``T`` shows no rise (``stability``: :func:`emergence_stability` rows)."""
    layers: dict[str, list] = {}
    for row in stability:
        if row["seeds"] == seeds:
            layers.setdefault(row["model"], []).append(row["emergence layer"])
    return {m: None if any(v is None for v in vs) else (int(min(vs)), int(max(vs))) for m, vs in sorted(layers.items())}