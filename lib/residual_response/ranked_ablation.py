"""Named heads ablated and ranked among random draws of as many heads: the causal cross-check.

Why a module of its own: the ablation test has its own vocabulary (named conditions, random
draws, a permutation p-value, a paired difference), which :mod:`.crosscheck` uses beside the
attention and null checks. Mean-ablating the heads the response names, or the heads the attention
patterns name (the positive control), should lower the score and raise the loss on the second copy
more than ablating as many random heads: each named set is ranked among random draws
(:func:`ablation_study`, :meth:`AblationStudy.rank_test`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from .ablation import head_means, random_heads, validate_heads
from .ablation_runs import ablated_losses, ablated_scores
from .behaviour import RepeatLoss, SecondCopyLoss
from .checks import InputError, check_bootstrap, check_int, check_model, check_seeds, keyword_alias
from .induction import InductionResult, InductionSetting, StripeData, rescore_seeds
from .models import LoadedModel
from .stats import BootstrapMean, bootstrap_mean, paired_margin, paired_ratio_change, percentile_interval

__all__ = ["AblationStudy", "NAMED_CONDITIONS", "RANK_TEST_LEVEL", "RankTest", "ablation_study", "distinct_random_sets",
           "draws_and_seeds_mean", "paired_score_change", "permutation_p_value"]


def paired_score_change(
    base: StripeData, others: Sequence[StripeData], *, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop of the induction score, ``score(base) - mean_j score(others[j])``, per read layer, with CI.

    Why paired: an ablated run uses the same sequences, sources and directions as the base run,
    so resampling the same seeds and positions in both cancels most of the sequence-to-sequence
    spread and leaves the effect of the ablation. Several ``others`` (random-head draws) are
    averaged inside each replicate.

    Returns:
        ``(drop, low, high)``, each ``[n_layers]`` (``nan`` where a score is undefined).
    """
    if not isinstance(base, StripeData):
        raise TypeError(f"base must be a StripeData (InductionResult.stripes), got {type(base).__name__}")
    if isinstance(others, StripeData):
        raise TypeError("others must be a list of StripeData; wrap the single one in a list")
    if not others:
        raise InputError("others is empty; give at least one StripeData to compare with")
    check_bootstrap(n_boot, confidence)
    shape = base.induction["repeated"].shape
    if any(o.control_kind != base.control_kind for o in others):
        raise InputError("base and others must use one baseline (control_kind)")
    for o in others:
        if o.induction["repeated"].shape != shape or o.read_streams != base.read_streams or o.seeds != base.seeds:
            raise InputError("all stripes must share seeds, read layers and T with the base")
    return paired_ratio_change(base.parts("induction"), [o.parts("induction") for o in others],
                               n_boot=n_boot, confidence=confidence, seed=seed)


#: the named conditions of an :class:`AblationStudy`, in the order pages list them
NAMED_CONDITIONS = ("top", "attention", "outside")


@dataclass
class AblationStudy:
    """Induction scores and second-copy losses without ablation, with named heads ablated, and with
    ``n_random`` draws of as many random heads ablated.

    ``results``/``losses`` are keyed ``"none"``, ``"top"`` (the heads the response names),
    ``"attention"`` (the top heads by attention pattern, the positive control, when given),
    ``"outside"`` (the top heads by response outside the attention set, when given),
    ``"random-0"``, ``"random-1"``...; ``heads`` holds the ablated heads ``(block, head)`` of each
    condition. ``losses["none"]`` is the unablated :class:`.behaviour.RepeatLoss`; an ablated
    condition's is its :class:`.behaviour.SecondCopyLoss` (the study compares second-copy losses only).
    """

    model: str
    k: int
    heads: dict[str, list[tuple[int, int]]]
    results: dict[str, InductionResult]
    losses: dict[str, RepeatLoss | SecondCopyLoss]
    random_keys: list[str] = field(default_factory=list)

    @property
    def named_keys(self) -> list[str]:
        """The conditions that ablate named heads: ``"top"``, and ``"attention"`` and ``"outside"``
        when they were run."""
        return [k for k in NAMED_CONDITIONS if k in self.results]

    def score_drop(self, which: str = "top", **boot) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per read layer: unablated score minus the score under ``which`` (a condition key, or
        ``"random"``: the mean over random draws), with a paired bootstrap CI (:func:`paired_score_change`)."""
        keys = self.random_keys if which == "random" else [which]
        return paired_score_change(self.results["none"].stripes, [self.results[k].stripes for k in keys], **boot)

    def drops(self, stream: int = -1) -> dict[str, float]:
        """The point drop of the score at one read stream (index into the read streams; default
        the last), unablated minus ablated, for every condition but ``"none"``."""
        base = self.results["none"].score[stream]
        return {k: float(base - r.score[stream]) for k, r in self.results.items() if k != "none"}

    def rank_test(self, which: str = "top", *, stream: int = -1, n_boot: int = 1000, confidence: float = 0.95,
                  seed: int = 0) -> "RankTest":
        """How the drop under the named heads ``which`` ranks among the random draws (:class:`RankTest`)."""
        if which not in self.named_keys:
            raise InputError(f"which must be one of {self.named_keys}, got {which!r}")
        if len(self.random_keys) < 1:
            raise InputError("the study has no random draws to rank against")
        d = self.drops(stream)
        rand = np.array([d[k] for k in self.random_keys])
        p = permutation_p_value(d[which], rand)
        diff, lo, hi = paired_ratio_change(
            self.results["none"].stripes.parts("induction"), [self.results[which].stripes.parts("induction")],
            n_boot=n_boot, confidence=confidence, seed=seed,
            against=[self.results[k].stripes.parts("induction") for k in self.random_keys])
        r_lo, r_hi = np.quantile(rand, [(1 - confidence) / 2, (1 + confidence) / 2])
        margin, m_lo, m_hi, first = paired_margin(
            self.results[which].stripes.parts("induction"),
            [self.results[k].stripes.parts("induction") for k in self.random_keys],
            stream=stream, n_boot=n_boot, confidence=confidence, seed=seed)
        return RankTest(which=which, drop=d[which], random_drops=rand.tolist(), p_value=p,
                        random_low=float(r_lo), random_high=float(r_hi),
                        difference=float(diff[stream]), difference_low=float(lo[stream]),
                        difference_high=float(hi[stream]), confidence=confidence,
                        margin=margin, margin_low=m_lo, margin_high=m_hi, first_share=first)

    def loss_rise(self, which: str = "top", *, n_boot: int = 1000, confidence: float = 0.95) -> BootstrapMean:
        """Second-copy loss under ``which`` minus without ablation, paired by seed
        (:func:`.stats.bootstrap_mean`). For ``"random"`` the mean over the draws, whose interval
        resamples the draws as well as the seeds (:func:`draws_and_seeds_mean`): the draws differ
        from each other far more than one draw's seeds say."""
        base = self.losses["none"].second.per_seed
        if which == "random":
            rises = torch.stack([self.losses[k].second.per_seed - base for k in self.random_keys])  # [n_draws, S]
            return draws_and_seeds_mean(torch.zeros_like(base), rises, n_boot=n_boot, confidence=confidence, sign=-1)
        return bootstrap_mean(self.losses[which].second.per_seed - base, n_boot=n_boot, confidence=confidence)

    def loss_difference(self, which: str = "top", *, n_boot: int = 1000, confidence: float = 0.95) -> BootstrapMean:
        """Second-copy loss under ``which`` minus its mean over the random draws, paired by seed. Why:
        two overlapping intervals (named, random) do not say whether the named heads raise the loss
        more or less than random ones; the difference's does. Each replicate resamples the seeds
        and the draws (:func:`draws_and_seeds_mean`), so the interval holds the spread between draws."""
        if which not in self.named_keys or not self.random_keys:
            raise InputError(f"which must be one of {self.named_keys} (with random draws), got {which!r}")
        named = self.losses[which].second.per_seed  # [S]
        rand = torch.stack([self.losses[k].second.per_seed for k in self.random_keys])  # [n_draws, S]
        return draws_and_seeds_mean(named, rand, n_boot=n_boot, confidence=confidence)

    def loss_rank(self, which: str = "top") -> dict:
        """How the named heads' rise of the second-copy loss (mean over seeds) ranks among the draws'.

        Returns ``{"above", "below", "n", "p_more", "p_less"}``: the draws that raise the loss at
        least as much / at most as much as the named heads, their number, and the permutation
        p-values (:func:`permutation_p_value`) of "the named heads raise it more" and "less".
        Why both: a named set can stand out either way, and a mean difference pulled by a few
        large draws says neither.
        """
        if which not in self.named_keys or not self.random_keys:
            raise InputError(f"which must be one of {self.named_keys} (with random draws), got {which!r}")
        base = self.losses["none"].second.per_seed
        named = float((self.losses[which].second.per_seed - base).mean())
        rand = np.array([float((self.losses[k].second.per_seed - base).mean()) for k in self.random_keys])
        return {"above": int(np.sum(rand >= named)), "below": int(np.sum(rand <= named)), "n": int(rand.size),
                "p_more": permutation_p_value(named, rand), "p_less": permutation_p_value(-named, -rand)}


def draws_and_seeds_mean(named: torch.Tensor, draws: torch.Tensor, *, n_boot: int = 1000, confidence: float = 0.95,
                         seed: int = 0, sign: int = 1) -> BootstrapMean:
    """``sign * (mean_s named[s] - mean_{d, s} draws[d, s])`` with an interval that resamples the
    seeds (paired: one seed index for the named run and every draw) and the draws.

    Why two levels: random draws of heads differ from each other far more than one draw differs
    from seed to seed; an interval over seeds alone, draws held fixed, is too narrow for a
    statement about "random heads".

    Args:
        named: ``[S]`` per-seed values; draws: ``[n_draws, S]`` per-seed values of the draws.
    """
    n_boot, confidence = check_bootstrap(n_boot, confidence)
    x = torch.as_tensor(named, dtype=torch.float64).numpy()
    y = torch.as_tensor(draws, dtype=torch.float64).numpy()
    if y.ndim != 2 or y.shape[1] != x.shape[0] or y.shape[0] < 1:
        raise InputError(f"draws must be [n_draws >= 1, S = {x.shape[0]}], got shape {tuple(y.shape)}")
    n, S = y.shape
    rng = np.random.default_rng(seed)
    si, di = rng.integers(0, S, size=(n_boot, S)), rng.integers(0, n, size=(n_boot, n))
    point = sign * (x.mean() - y.mean())
    boots = sign * (x[si].mean(axis=1) - y[di[:, :, None], si[:, None, :]].mean(axis=(1, 2)))  # [n_boot]
    lo, hi = percentile_interval(boots, confidence)
    t = lambda v: torch.tensor(float(v), dtype=torch.float64)  # noqa: E731
    return BootstrapMean(mean=t(point), lo=t(lo), hi=t(hi), per_seed=torch.as_tensor(sign * (x - y.mean(0))))


def permutation_p_value(drop: float, random_drops) -> float:
    """The permutation p-value of ``drop`` among ``random_drops``: ``(1 + #{random >= drop}) / (1 + n)``.

    Why the ones: the named set is one more draw of the same test, so it counts in both the
    numerator and the denominator; the smallest p-value ``n`` draws allow is then ``1 / (1 + n)``,
    never 0, and ties count against the named set (``>=``).

    Args:
        drop: the named heads' drop of the score; random_drops: ``[n]`` the drops of the random draws.
    """
    rand = np.asarray(random_drops, dtype=float).ravel()
    if rand.size < 1:
        raise InputError("permutation_p_value needs at least one random draw")
    return (1 + int(np.sum(rand >= float(drop)))) / (1 + rand.size)


#: the level at which a named set of heads counts as distinguishable from random ones
RANK_TEST_LEVEL = 0.05


@dataclass(frozen=True)
class RankTest:
    """The drop of the score when named heads are ablated, ranked among random draws of as many heads.

    Why a rank: the random draws differ far more from each other than the resampling of one draw
    says; a named set means something only if its drop stands out from the *spread* of the draws.

    Attributes:
        which: the named condition (one of :data:`NAMED_CONDITIONS`); drop: its point drop at the stream.
        random_drops: the drop of every random draw; random_low/high: their central ``confidence`` range.
        p_value: the permutation p-value ``(1 + #{random drops >= drop}) / (1 + n_random)``.
        difference, difference_low/high: drop minus the mean random drop, with a bootstrap interval
            that resamples the random draws as well as seeds and stripe positions.
        margin, margin_low/high: drop minus the *largest* random drop, with a paired interval over
            seeds and stripe positions (draws held fixed, :func:`.stats.paired_margin`); first_share:
            the share of those replicates in which the named drop exceeds every draw's. Why: the
            p-value ranks point drops; a margin whose interval reaches below 0 says the first rank
            could go to a draw under resampling.
    """

    which: str
    drop: float
    random_drops: list[float]
    p_value: float
    random_low: float
    random_high: float
    difference: float
    difference_low: float
    difference_high: float
    confidence: float = 0.95
    margin: float | None = None
    margin_low: float | None = None
    margin_high: float | None = None
    first_share: float | None = None

    @property
    def n_random(self) -> int:
        return len(self.random_drops)

    @property
    def distinguishable(self) -> bool:
        """Whether the named heads' drop stands out: p at most :data:`RANK_TEST_LEVEL` and the
        difference's interval above 0."""
        return self.p_value <= RANK_TEST_LEVEL and self.difference_low > 0

    @property
    def smallest_p(self) -> float:
        """The smallest p-value the number of draws allows, ``1 / (1 + n_random)``."""
        return 1 / (1 + self.n_random)


def distinct_random_sets(lm: LoadedModel, k: int, n: int, *, exclude=(), random_seed: int = 0) -> list[list[tuple[int, int]]]:
    """``n`` distinct sets of ``k`` heads outside ``exclude``, drawn with seeds ``random_seed, random_seed + 1, ...``.

    Why distinct: a permutation test ranks the named heads among the draws as if each were a new
    sample of the null; a set drawn twice counts its drop twice. Where the candidates allow at
    most ``n`` sets (``C(n_candidates, k) <= n``, e.g. one head out of a 2-block toy's 7 others),
    every set is returned once, in order: the test is then exact and has fewer than ``n`` draws.
    """
    excluded = set(exclude)
    pool = [(b, h) for b in range(lm.n_layers) for h in range(lm.n_heads) if (b, h) not in excluded]
    if math.comb(len(pool), k) <= n:
        return [list(c) for c in itertools.combinations(pool, k)]
    out, seen, seed = [], set(), random_seed
    while len(out) < n:
        hs = random_heads(lm, k, seed=seed, exclude=sorted(excluded))
        seed += 1
        if tuple(hs) not in seen:
            seen.add(tuple(hs))
            out.append(hs)
    return out


def _named_conditions(lm: LoadedModel, heads, attention_heads, outside_heads) -> dict[str, list[tuple[int, int]]]:
    """The named sets of :func:`ablation_study`, validated: ``{"top": ..., "attention": ...,
    "outside": ...}`` (the last two only when given), each as many heads as ``heads``, and the
    outside set sharing no head with the attention set."""
    heads = validate_heads(lm, heads)
    if not heads:
        raise InputError("heads is empty; name at least one head to ablate")
    named = {"top": heads}
    if attention_heads is not None:
        named["attention"] = validate_heads(lm, attention_heads)
    if outside_heads is not None:
        if attention_heads is None:
            raise InputError("outside_heads needs attention_heads: it is the response's set outside them")
        named["outside"] = validate_heads(lm, outside_heads)
        shared = sorted(set(named["outside"]) & set(named["attention"]))
        if shared:
            raise InputError(f"outside_heads must hold no head of attention_heads; both hold {shared}")
    for key in ("attention", "outside"):
        if key in named and len(named[key]) != len(heads):
            raise InputError(f"{key}_heads must name as many heads as heads ({len(heads)}), got {len(named[key])}")
    return named


@keyword_alias(layer="l0")
def ablation_study(
    lm: LoadedModel,
    heads: Sequence[tuple[int, int]],
    *,
    attention_heads: Sequence[tuple[int, int]] | None = None,
    outside_heads: Sequence[tuple[int, int]] | None = None,
    n_random: int = 3,
    T: int = 10,
    seeds: Sequence[int] | int = 2,
    loss_seeds: Sequence[int] | int = 16,
    l0: int = 0,
    eps: float = 1e-2,
    mode: str = "mean",
    means: torch.Tensor | None = None,
    random_seed: int = 0,
    n_boot: int = 1000,
    base: InductionResult | None = None,
) -> AblationStudy:
    """Ablate the named heads, and ``n_random`` seeded draws of as many other heads, and measure
    the response induction score (:func:`.induction.induction_scores`) and the copy losses
    (:func:`.behaviour.repeat_loss`) under each.

    Why: if the named heads carry induction, removing them must lower the score and raise the
    second-copy loss more than removing random heads does (:meth:`AblationStudy.rank_test`).
    ``attention_heads`` (as many heads, the top ones by attention pattern) is the positive control:
    a set known to hold induction heads, ablated the same way. ``outside_heads`` (as many heads,
    none of them in ``attention_heads``): the top heads by response once the attention set is left
    out. Why: where the response's set shares heads with the positive control, its drop may be the
    shared heads' alone; this set tells whether the response names induction heads of its own.
    The random draws are distinct sets of heads outside every named set (:func:`distinct_random_sets`): where those heads allow no more
    than ``n_random`` sets, every set is ablated once (an exact permutation test, with fewer draws). ``l0``: the perturbed
    stream (``layer=`` is its old name).

    ``base``: an unablated :func:`.induction.induction_scores` result of the same model, ``T``,
    ``l0`` and ``eps`` whose seeds include ``seeds`` (e.g. a run with more seeds); the
    unablated condition is then read off its stripes (:func:`.induction.rescore_seeds`) instead of
    being run again. The response of a sequence depends only on its own seed, so the pairing with
    the ablated runs is the same.
    """
    check_model(lm)
    named = _named_conditions(lm, heads, attention_heads, outside_heads)
    check_int(n_random, "n_random", minimum=1)
    seed_list = check_seeds(seeds)
    check_bootstrap(n_boot, 0.95)
    if base is not None:
        st = base.stripes if isinstance(base, InductionResult) else None
        if st is None or base.method != "finite":
            raise InputError("base must be a finite-eps induction_scores result with its stripes")
        if (st.T, st.l0, st.eps) != (T, l0, float(eps)) or not set(seed_list) <= set(st.seeds):
            raise InputError(f"base was run at T={st.T}, l0={st.l0}, eps={st.eps}, seeds {st.seeds}; the study "
                             f"needs T={T}, l0={l0}, eps={eps} and seeds {seed_list} among them")
    k = len(named["top"])
    if mode == "mean" and means is None:
        means = head_means(lm)
    conditions = {"none": [], **named}
    every_named = {h for hs in named.values() for h in hs}
    random_keys = []
    for j, hs in enumerate(distinct_random_sets(lm, k, n_random, exclude=sorted(every_named), random_seed=random_seed)):
        key = f"random-{j}"
        conditions[key] = hs
        random_keys.append(key)
    # every condition runs from its first ablated block on (:mod:`.ablation_runs`), as if run whole
    setting = InductionSetting.validated(lm, T, seed_list, l0=l0, eps=eps, n_boot=n_boot)
    ablated = {key: hs for key, hs in conditions.items() if key != "none" or base is None}
    results = ablated_scores(lm, setting, ablated, mode=mode, means=means)
    if base is not None:
        results = {"none": rescore_seeds(base, seed_list), **results}
    losses = ablated_losses(lm, T, loss_seeds, conditions, mode=mode, means=means, n_boot=n_boot)
    return AblationStudy(model=lm.name, k=k, heads=conditions, results=results, losses=losses, random_keys=random_keys)
