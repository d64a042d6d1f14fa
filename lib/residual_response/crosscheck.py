"""Cross-checks of the response-based induction score against independent measurements.

The response score of :mod:`.induction` should agree with what the classic tools say:

- **attention patterns** (:mod:`.attention`): blocks holding heads that attend from the second
  ``a_{k-1}`` to the first ``a_k`` should write into the streams where the response score rises
  (:func:`layer_rank_agreement`), and the heads named by the response (:mod:`.heads`) should be
  those named by the patterns (:func:`head_rank_agreement`);
- **ablation** (:mod:`.ablation`): mean-ablating the heads the response names, or the heads the
  attention patterns name (the positive control), should lower the score and raise the loss on
  the second copy more than ablating as many random heads: each named set is ranked among random
  draws (:func:`ablation_study`, :meth:`AblationStudy.rank_test`);
- **negative controls**: sequences without a repeat, scored with the baseline of the repeats,
  score near 1 (:func:`kind_scores`, :func:`seed_null_scores`), and so do random-initialised
  models; :func:`residual_response.pages.tables.control_envelope` summarises them against
  relative depth.

Layer alignment. The response score at read layer ``l`` is measured on the stream ``h[l]``
*entering* block ``l``, i.e. after blocks ``0..l-1``. An attention head of block ``b`` writes
into ``h[b+1]``. So block ``b`` of the attention scores is compared with stream ``l = b + 1``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from .ablation import ablate_heads, head_means, random_heads, validate_heads
from .behaviour import RepeatLoss, repeat_loss
from .checks import InputError, check_bootstrap, check_int, check_model, check_seeds, keyword_alias
from .induction import InductionResult, StripeData, induction_scores, rescore_seeds, scores_from_stripes, stripe_entries
from .models import LoadedModel
from .engine import response
from .sequences import induction_layout, make_sequence
from .stats import (BootstrapMean, KeyAccess, bootstrap_mean, paired_ratio_change, percentile_interval,
                    resampled_ratio, two_level_indices)

__all__ = [
    "AblationStudy",
    "HeadAgreement",
    "LayerAgreement",
    "NAMED_CONDITIONS",
    "ablation_study",
    "distinct_random_sets",
    "head_rank_agreement",
    "kind_scores",
    "layer_rank_agreement",
    "paired_score_change",
    "permutation_p_value",
    "seed_null_scores",
    "spearman",
]


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank) along the last axis."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, axis=-1, kind="mergesort")
    ranks = np.empty_like(x)
    np.put_along_axis(ranks, order, np.arange(x.shape[-1], dtype=float) * np.ones_like(x), axis=-1)
    # ties: replace by the mean rank of the tied group (rare for float scores, but exact)
    flat = ranks.reshape(-1, x.shape[-1])
    xf = x.reshape(-1, x.shape[-1])
    for i in range(flat.shape[0]):
        vals, inv = np.unique(xf[i], return_inverse=True)
        if len(vals) < xf.shape[1]:
            flat[i] = np.bincount(inv, weights=flat[i])[inv] / np.bincount(inv)[inv]
    return flat.reshape(x.shape)


def spearman(x, y) -> float | np.ndarray:
    """Spearman rank correlation of ``x`` and ``y`` along the last axis (``nan`` if one is constant).

    Why our own: it is vectorised over bootstrap replicates (leading axes), which a loop over
    ``scipy.stats.spearmanr`` would not be.
    """
    rx, ry = _ranks(x), _ranks(y)
    if rx.shape != ry.shape or rx.shape[-1] < 2:
        raise InputError(f"spearman needs equal shapes with >= 2 entries on the last axis, got {rx.shape} and {ry.shape}")
    rx = rx - rx.mean(axis=-1, keepdims=True)
    ry = ry - ry.mean(axis=-1, keepdims=True)
    den = np.sqrt((rx ** 2).sum(-1) * (ry ** 2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):  # constant input: nan
        rho = (rx * ry).sum(-1) / den
    return float(rho) if np.ndim(rho) == 0 else rho


@dataclass
class LayerAgreement(KeyAccess):
    """Rank agreement over depth of attention and response (:func:`layer_rank_agreement`).

    Attributes:
        rho, lo, hi: Spearman correlation and its bootstrap interval.
        n_layers: the number of (block, stream) pairs correlated.
        blocks: the attention blocks ``b`` used; streams: the response streams ``b + 1``.
        attention_max: ``[n_layers]`` per-block max over heads of the mean attention on the stripe.
        response: ``[n_layers]`` the response score of each stream.
    """

    rho: float
    lo: float
    hi: float
    n_layers: int
    blocks: list[int]
    streams: list[int]
    attention_max: np.ndarray
    response: np.ndarray


@dataclass
class HeadAgreement(KeyAccess):
    """How far two head rankings agree (:func:`head_rank_agreement`).

    Attributes:
        overlap: the number of heads in both top-``k`` lists; k; common: those heads ``(block, head)``.
        rho: Spearman correlation over all heads with finite scores; n_heads: their number.
        rho_ci: its 95 % bootstrap interval over heads (resampled with replacement): how much the
            correlation depends on which heads the model happens to have, treating them as
            exchangeable; it does not include the noise of the two scores themselves.
    """

    overlap: int
    k: int
    common: list[tuple[int, int]]
    rho: float
    n_heads: int
    rho_ci: tuple[float, float] | None = None


def layer_rank_agreement(
    attention, stripes: StripeData, *, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
) -> LayerAgreement:
    """Spearman correlation, over depth, of each block's best head's attention score and the response score.

    Why: if both measure the same mechanism, the blocks whose heads attend along the induction
    stripe write into the streams where the response stripe is strong.

    Alignment: attention block ``b`` is paired with response stream ``l = b + 1`` (the stream the
    block writes into); streams at or below the perturbed layer ``l0`` have no score and are
    dropped.

    The confidence interval resamples the attention seeds and, independently, the response seeds
    and stripe positions (as :func:`.stats.bootstrap_ratio`), recomputing both per-layer
    profiles and their correlation each time.

    Args:
        attention: result of :func:`.attention.induction_attention_scores` (its ``repeated``
            ``per_seed`` ``[S, L, H]`` is used: mean attention on the stripe of repeated sequences).
        stripes: response stripe entries (``InductionResult.stripes``).

    Returns:
        :class:`LayerAgreement` (its fields also read by key, ``res["rho"]``).
    """
    if not isinstance(stripes, StripeData):
        raise TypeError(f"stripes must be a StripeData (InductionResult.stripes), got {type(stripes).__name__}")
    n_boot, confidence = check_bootstrap(n_boot, confidence)
    att = np.asarray(attention.repeated.per_seed, dtype=float)  # [Sa, L, H]
    parts = [np.asarray(a, dtype=float) for a in stripes.parts("induction")]  # each [Sr, n_read, P]
    reads = list(stripes.read_streams)
    L = att.shape[1]
    blocks = [b for b in range(L) if (b + 1) in reads and b + 1 > stripes.l0]
    if len(blocks) < 2:
        raise InputError(f"need at least 2 blocks above l0={stripes.l0} to correlate, got {len(blocks)}")
    cols = [reads.index(b + 1) for b in blocks]
    parts = [a[:, cols] for a in parts]
    rep, ctrl, twin = parts[0], parts[1], (tuple(parts[2:]) or None)
    att_max = att.mean(0).max(-1)[blocks]
    Sa, (Sr, _, P) = att.shape[0], rep.shape
    resp = resampled_ratio(rep, ctrl, np.arange(Sr)[None], np.broadcast_to(np.arange(P), (1, Sr, P)), twin)[0]
    rho = spearman(att_max, resp)
    rng = np.random.default_rng(seed)
    ai = rng.integers(0, Sa, size=(n_boot, Sa))  # attention: one level, its seeds
    boot_att = att[ai].mean(1).max(-1)[:, blocks]  # [n_boot, n_blocks]
    si, pi = two_level_indices(rng, Sr, P, n_boot)  # response: seeds, then stripe positions
    with np.errstate(divide="ignore", invalid="ignore"):
        boots = spearman(boot_att, resampled_ratio(rep, ctrl, si, pi, twin))
    lo, hi = percentile_interval(np.atleast_1d(boots), confidence, axis=None, ignore_nan=True)
    return LayerAgreement(rho=rho, lo=float(lo), hi=float(hi), n_layers=len(blocks), blocks=blocks,
                          streams=[b + 1 for b in blocks], attention_max=att_max, response=resp)


def head_rank_agreement(a, b, k: int = 5, *, n_boot: int = 1000, confidence: float = 0.95) -> HeadAgreement:
    """How far two ``[L, H]`` head rankings agree: overlap of their top ``k`` and Spearman over all heads.

    Why: the response ranks heads by how much their output moves at the stripe targets
    (:func:`.heads.head_attribution`), attention patterns rank them by where they look; a head
    that does induction should rank high in both. Heads with a non-finite score in either are left
    out of the correlation.

    Args:
        a, b: ``[L, H]`` scores indexed ``[block, head]``.
        n_boot, confidence: the bootstrap over heads of the correlation's interval (seed 0).

    Returns:
        :class:`HeadAgreement` (its fields also read by key, ``res["overlap"]``).
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 2:
        raise InputError(f"a and b must be [blocks, heads] with equal shapes, got {a.shape} and {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    check_int(k, "k", minimum=1, maximum=int(ok.sum()))  # heads with finite scores
    n_boot, confidence = check_bootstrap(n_boot, confidence)

    def top(m):
        flat = np.where(ok, m, -np.inf).ravel()
        idx = np.argsort(-flat, kind="stable")[:k]
        return [(int(i) // a.shape[1], int(i) % a.shape[1]) for i in idx]

    common = sorted(set(top(a)) & set(top(b)))
    x, y = a[ok], b[ok]  # [n_heads]
    idx = np.random.default_rng(0).integers(0, x.size, size=(n_boot, x.size))  # [n_boot, n_heads]
    with np.errstate(invalid="ignore", divide="ignore"):
        lo, hi = percentile_interval(spearman(x[idx], y[idx]), confidence, ignore_nan=True)
    return HeadAgreement(overlap=len(common), k=k, common=common, rho=spearman(x, y), n_heads=int(ok.sum()),
                         rho_ci=(float(lo), float(hi)))


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
    condition.
    """

    model: str
    k: int
    heads: dict[str, list[tuple[int, int]]]
    results: dict[str, InductionResult]
    losses: dict[str, RepeatLoss]
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
        return RankTest(which=which, drop=d[which], random_drops=rand.tolist(), p_value=p,
                        random_low=float(r_lo), random_high=float(r_hi),
                        difference=float(diff[stream]), difference_low=float(lo[stream]),
                        difference_high=float(hi[stream]), confidence=confidence)

    def loss_rise(self, which: str = "top", *, n_boot: int = 1000, confidence: float = 0.95) -> BootstrapMean:
        """Second-copy loss under ``which`` minus without ablation, paired by seed
        (:func:`.stats.bootstrap_mean`; random draws are averaged per seed)."""
        keys = self.random_keys if which == "random" else [which]
        base = self.losses["none"].second.per_seed
        ablated = torch.stack([self.losses[k].second.per_seed for k in keys]).mean(0)
        return bootstrap_mean(ablated - base, n_boot=n_boot, confidence=confidence)


    def loss_difference(self, which: str = "top", *, n_boot: int = 1000, confidence: float = 0.95) -> BootstrapMean:
        """Second-copy loss under ``which`` minus its mean over the random draws, paired by seed. Why:
        two overlapping intervals (named, random) do not say whether the named heads raise the loss
        more or less than random ones; the difference's does. It resamples seeds, draws held fixed."""
        if which not in self.named_keys or not self.random_keys:
            raise InputError(f"which must be one of {self.named_keys} (with random draws), got {which!r}")
        named = self.losses[which].second.per_seed
        rand = torch.stack([self.losses[k].second.per_seed for k in self.random_keys]).mean(0)
        return bootstrap_mean(named - rand, n_boot=n_boot, confidence=confidence)

    def loss_draws_above(self, which: str = "top") -> int:
        """How many random draws raise the second-copy loss (mean over seeds) at least as much as
        the named heads ``which``: the rank of the named set among the draws, as for the score."""
        if which not in self.named_keys:
            raise InputError(f"which must be one of {self.named_keys}, got {which!r}")
        base = self.losses["none"].second.per_seed
        named = float((self.losses[which].second.per_seed - base).mean())
        return sum(float((self.losses[k].second.per_seed - base).mean()) >= named for k in self.random_keys)


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
    heads = validate_heads(lm, heads)
    if not heads:
        raise InputError("heads is empty; name at least one head to ablate")
    attention_heads = None if attention_heads is None else validate_heads(lm, attention_heads)
    if attention_heads is not None and len(attention_heads) != len(heads):
        raise InputError(f"attention_heads must name as many heads as heads ({len(heads)}), got {len(attention_heads)}")
    outside_heads = None if outside_heads is None else validate_heads(lm, outside_heads)
    if outside_heads is not None:
        if attention_heads is None:
            raise InputError("outside_heads needs attention_heads: it is the response's set outside them")
        if len(outside_heads) != len(heads):
            raise InputError(f"outside_heads must name as many heads as heads ({len(heads)}), got {len(outside_heads)}")
        shared = sorted(set(outside_heads) & set(attention_heads))
        if shared:
            raise InputError(f"outside_heads must hold no head of attention_heads; both hold {shared}")
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
    k = len(heads)
    if mode == "mean" and means is None:
        means = head_means(lm)
    conditions = {"none": [], "top": heads}
    if attention_heads is not None:
        conditions["attention"] = attention_heads
    if outside_heads is not None:
        conditions["outside"] = outside_heads
    named = set(heads) | set(attention_heads or []) | set(outside_heads or [])
    random_keys = []
    for j, hs in enumerate(distinct_random_sets(lm, k, n_random, exclude=sorted(named), random_seed=random_seed)):
        key = f"random-{j}"
        conditions[key] = hs
        random_keys.append(key)
    results, losses = {}, {}
    for key, hs in conditions.items():
        with ablate_heads(lm, hs, mode=mode, means=means):
            if key == "none" and base is not None:
                results[key] = rescore_seeds(base, seed_list)
            else:
                results[key] = induction_scores(lm, T=T, seeds=seed_list, l0=l0, eps=eps, n_boot=n_boot)
            losses[key] = repeat_loss(lm, T, loss_seeds, n_boot=n_boot)
    return AblationStudy(model=lm.name, k=k, heads=conditions, results=results, losses=losses, random_keys=random_keys)


def kind_scores(
    lm: LoadedModel, kind: str, reference: InductionResult, *, seeds: Sequence[int] | None = None,
    n_boot: int = 1000, confidence: float = 0.95,
) -> InductionResult:
    """Induction score of sequences of ``kind``, scored with the baseline of ``reference``.

    Why: a negative control for the score itself. ``"shuffled"`` sequences repeat the tokens of the
    first copy in a new order and ``"random"`` ones repeat nothing, so there is nothing to copy along
    lag ``T-1``; their score should stay near 1 in every model. Only the ``kind`` sequences are
    computed (same seeds, sources, layer, eps and directions as ``reference``); they take the
    repeated sequences' place in the score:

    - ``"twin"`` baseline: their stripe against their right neighbours, divided by the same ratio
      of the reference's twins (reused, not recomputed);
    - ``"neighbours"``: each sequence is its own baseline;
    - ``"random"`` control: the reference's controls are reused (and ``kind="random"`` is refused:
      random against random is :func:`seed_null_scores`).

    Args:
        kind: ``"shuffled"``, ``"random"`` (not with the random control), or ``"repeated"``, which
            reproduces ``reference``.
        reference: a finite-eps :func:`.induction.induction_scores` result with its stripes and a
            ``"twin"``, ``"neighbours"`` or ``"random"`` baseline.
        seeds: a subset of the reference's seeds to use (default all): fewer seeds, less work.
    """
    check_model(lm)
    if not isinstance(reference, InductionResult):
        raise TypeError(f"reference must be an InductionResult (from induction_scores), got {type(reference).__name__}")
    check_bootstrap(n_boot, confidence)
    st = reference.stripes
    if st is None or reference.method != "finite" or st.control_kind not in ("twin", "neighbours", "random"):
        raise InputError("reference must be a finite-eps induction_scores result with stripes and a twin, neighbours "
                         "or random baseline")
    own_baseline = st.control_kind in ("twin", "neighbours")
    if kind not in ("repeated", "random", "shuffled") or (kind == "random" and not own_baseline):
        allowed = ("'shuffled', 'random' or 'repeated'" if own_baseline
                   else "'shuffled' or 'repeated' ('random' vs random: use seed_null_scores)")
        raise InputError(f"kind must be {allowed}, got {kind!r}")
    use = list(st.seeds) if seeds is None else check_seeds(seeds)
    if any(x not in st.seeds for x in use):
        raise InputError(f"seeds must be a non-empty subset of the reference seeds {st.seeds}, got {seeds!r}")
    rows = [st.seeds.index(x) for x in use]
    layout = induction_layout(lm, st.T)
    ind, dup = {"repeated": [], "control": []}, {"repeated": [], "control": []}
    for seed in use:
        tokens = make_sequence(lm, kind, st.T, seed)
        res = response(lm, tokens, [st.eps], l0=st.l0, read_streams=st.read_streams, sources=st.sources,
                       n_directions=reference.n_directions, seed=seed)
        (i_s, i_b), (d_s, d_b) = stripe_entries(res.chi[0], layout, st.control_kind)
        ind["repeated"].append(i_s)
        dup["repeated"].append(d_s)
        if own_baseline:
            ind["control"].append(i_b)
            dup["control"].append(d_b)
    reused = ("control", "twin", "twin_control") if not own_baseline else ("twin", "twin_control")
    induction = {k: np.stack(v) for k, v in ind.items() if v}
    duplicate = {k: np.stack(v) for k, v in dup.items() if v}
    for key in reused:
        if key in st.induction:
            induction[key] = st.induction[key][rows]
            duplicate[key] = st.duplicate[key][rows]
    new = StripeData(T=st.T, l0=st.l0, eps=st.eps, seeds=use, read_streams=st.read_streams,
                     induction=induction, duplicate=duplicate, sources=st.sources, control_kind=st.control_kind)
    return scores_from_stripes(new, model=f"{lm.name} ({kind})", n_directions=reference.n_directions,
                               n_boot=n_boot, confidence=confidence)


def seed_null_scores(reference: InductionResult, *, n_boot: int = 1000, confidence: float = 0.95) -> InductionResult:
    """Score of sequences without a repeat against *other* such sequences, from what ``reference`` already ran.

    Why: the null of the estimator at no extra cost. With the ``"random"`` control the control
    stripes of the odd seeds play the repeated role against those of the even seeds (pairs
    ``(1, 0), (3, 2), ...``); with the ``"twin"`` baseline the twins do, each against its own right
    neighbours. Both are independent sequences without a repeat, so the score measures only the
    sequence-to-sequence spread. (Splitting matters: a ratio over *all* seeds would be 1 by
    construction.) Needs >= 2 seeds; an odd last seed is left out.
    """
    if not isinstance(reference, InductionResult):
        raise TypeError(f"reference must be an InductionResult (from induction_scores), got {type(reference).__name__}")
    check_bootstrap(n_boot, confidence)
    st = reference.stripes
    if st is None or len(st.seeds) < 2:
        raise InputError("seed_null_scores needs a result with stripes from at least 2 seeds")
    if st.control_kind not in ("random", "twin"):
        raise InputError(f"seed_null_scores needs a result with random control sequences or twins, got the "
                         f"{st.control_kind!r} baseline; its null is kind_scores(lm, 'random', reference)")
    n = len(st.seeds) // 2
    odd = lambda a: a[1::2][:n]
    even = lambda a: a[0::2][:n]

    def split(d: dict) -> dict:
        if st.control_kind == "random":
            return {"repeated": odd(d["control"]), "control": even(d["control"])}
        return {"repeated": odd(d["twin"]), "control": odd(d["twin_control"]),
                "twin": even(d["twin"]), "twin_control": even(d["twin_control"])}

    new = StripeData(T=st.T, l0=st.l0, eps=st.eps, seeds=st.seeds[1::2][:n], read_streams=st.read_streams,
                     induction=split(st.induction), duplicate=split(st.duplicate), sources=st.sources,
                     control_kind=st.control_kind)
    name = "random vs random" if st.control_kind == "random" else "twin vs twin"
    return scores_from_stripes(new, model=f"{reference.model} ({name})", n_directions=reference.n_directions,
                               n_boot=n_boot, confidence=confidence)
