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

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .checks import InputError, check_bootstrap, check_int, check_model, check_seeds
from .engine import response
from .induction import InductionResult, StripeData, scores_from_stripes, stripe_entries
from .models import LoadedModel
# the ablation test lives in its own module; its names stay importable from here, where pages and
# users have always found them
from .ranked_ablation import (NAMED_CONDITIONS, RANK_TEST_LEVEL, AblationStudy, RankTest, ablation_study,
                              distinct_random_sets, paired_score_change, permutation_p_value)
from .sequences import induction_layout, make_sequence
from .stats import KeyAccess, percentile_interval, resampled_ratio, two_level_indices

__all__ = [
    "AblationStudy",
    "HeadAgreement",
    "LayerAgreement",
    "NAMED_CONDITIONS",
    "RANK_TEST_LEVEL",
    "RankTest",
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
        raise InputError(f"seed_null_scores needs a result with random sequences (no repeat) or twins, got the "
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
