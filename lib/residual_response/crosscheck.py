"""Cross-checks of the response-based induction score against independent measurements.

The response score of :mod:`.induction` should agree with what the classic tools say:

- **attention patterns** (:mod:`.attention`): layers holding heads that attend from the second
  ``a_{k-1}`` to the first ``a_k`` should be the layers where the response score rises
  (:func:`layer_rank_agreement`), and the heads named by the response (:mod:`.heads`) should be
  those named by the patterns (:func:`head_rank_agreement`);
- **ablation** (:mod:`.ablation`): mean-ablating the heads the response names should lower the
  score and raise the loss on the second copy more than ablating as many random heads
  (:func:`ablation_study`);
- **negative controls**: sequences without a repeat, or with the second copy shuffled, score
  near 1 against the random control (:func:`kind_scores`, :func:`seed_null_scores`), and so do
  random-initialised models; :func:`control_envelope` summarises them against relative depth.

Layer alignment. The response score at read layer ``l`` is measured on the stream ``h[l]``
*entering* block ``l``, i.e. after blocks ``0..l-1``. An attention head of block ``b`` writes
into ``h[b+1]``. So block ``b`` of the attention scores is compared with stream ``l = b + 1``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .ablation import ablate_heads, head_means, random_heads, validate_heads
from .behaviour import bootstrap_mean, repeat_loss
from .checks import check_bootstrap, check_int, check_model, check_seeds
from .induction import InductionResult, StripeData, induction_scores, neighbour_baseline, scores_from_stripes
from .models import LoadedModel
from .response import response
from .sequences import SEQUENCE_KINDS, induction_layout, make_sequence

__all__ = [
    "AblationStudy",
    "CrossCheck",
    "NegativeControls",
    "cross_check",
    "is_random_init",
    "negative_controls",
    "ablation_study",
    "control_envelope",
    "head_rank_agreement",
    "kind_scores",
    "layer_rank_agreement",
    "paired_score_change",
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
        raise ValueError(f"spearman needs equal shapes with >= 2 entries on the last axis, got {rx.shape} and {ry.shape}")
    rx = rx - rx.mean(axis=-1, keepdims=True)
    ry = ry - ry.mean(axis=-1, keepdims=True)
    den = np.sqrt((rx ** 2).sum(-1) * (ry ** 2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):  # constant input: nan
        rho = (rx * ry).sum(-1) / den
    return float(rho) if np.ndim(rho) == 0 else rho


def layer_rank_agreement(
    attention: dict, stripes: StripeData, *, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict:
    """Spearman correlation, over layers, of the best head's attention score and the response score.

    Why: if both measure the same mechanism, the layers whose heads attend along the induction
    stripe are the layers where the response stripe is strong.

    Alignment: attention block ``b`` is paired with response stream ``l = b + 1`` (the stream the
    block writes into); streams at or below the perturbed layer ``l0`` have no score and are
    dropped.

    The confidence interval resamples the attention seeds and, independently, the response seeds
    and stripe positions (as :func:`.induction.bootstrap_ratio`), recomputing both per-layer
    profiles and their correlation each time.

    Args:
        attention: result of :func:`.attention.induction_attention_scores` (its ``repeated``
            ``per_seed`` ``[S, L, H]`` is used: mean attention on the stripe of repeated sequences).
        stripes: response stripe entries (``InductionResult.stripes``).

    Returns:
        dict with ``rho``, ``lo``, ``hi``, ``n_layers`` (pairs correlated), ``blocks`` (attention
        blocks used), ``streams`` (= blocks + 1), ``attention_max`` (per-block max over heads) and
        ``response`` (per-stream score).
    """
    if not isinstance(stripes, StripeData):
        raise TypeError(f"stripes must be a StripeData (InductionResult.stripes), got {type(stripes).__name__}")
    n_boot, confidence = check_bootstrap(n_boot, confidence)
    att = np.asarray(attention["repeated"]["per_seed"], dtype=float)  # [Sa, L, H]
    rep = np.asarray(stripes.induction["repeated"], dtype=float)  # [Sr, n_read, P]
    ctrl = np.asarray(stripes.induction["control"], dtype=float)
    reads = list(stripes.read_layers)
    L = att.shape[1]
    blocks = [b for b in range(L) if (b + 1) in reads and b + 1 > stripes.layer]
    if len(blocks) < 2:
        raise ValueError(f"need at least 2 blocks above l0={stripes.layer} to correlate, got {len(blocks)}")
    cols = [reads.index(b + 1) for b in blocks]
    rep, ctrl = rep[:, cols], ctrl[:, cols]
    att_max = att.mean(0).max(-1)[blocks]
    resp = rep.mean(axis=(0, 2)) / ctrl.mean(axis=(0, 2))
    rho = spearman(att_max, resp)
    rng = np.random.default_rng(seed)
    Sa, (Sr, _, P) = att.shape[0], rep.shape
    ai = rng.integers(0, Sa, size=(n_boot, Sa))
    boot_att = att[ai].mean(1).max(-1)[:, blocks]  # [n_boot, n_blocks]
    si = rng.integers(0, Sr, size=(n_boot, Sr))
    pi = rng.integers(0, P, size=(n_boot, Sr, P))
    r = rep.transpose(0, 2, 1)[si[:, :, None], pi].mean(axis=(1, 2))  # [n_boot, n_blocks]
    c = ctrl.transpose(0, 2, 1)[si[:, :, None], pi].mean(axis=(1, 2))
    boots = spearman(boot_att, r / c)
    alpha = (1 - confidence) / 2
    with warnings.catch_warnings():  # constant profiles in a replicate give nan
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanquantile(np.atleast_1d(boots), [alpha, 1 - alpha])
    return {"rho": rho, "lo": float(lo), "hi": float(hi), "n_layers": len(blocks), "blocks": blocks,
            "streams": [b + 1 for b in blocks], "attention_max": att_max, "response": resp}


def head_rank_agreement(a, b, k: int = 5) -> dict:
    """How far two ``[L, H]`` head rankings agree: overlap of their top ``k`` and Spearman over all heads.

    Why: the response ranks heads by how much their output moves at the stripe targets
    (:func:`.heads.head_attribution`), attention patterns rank them by where they look; a head
    that does induction should rank high in both. Heads with a non-finite score in either are left
    out of the correlation.

    Returns:
        dict with ``overlap`` (int), ``k``, ``common`` (heads in both top-``k`` lists), ``rho``,
        ``n_heads`` (heads correlated).
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"a and b must be [layers, heads] with equal shapes, got {a.shape} and {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    check_int(k, "k", minimum=1, maximum=int(ok.sum()))  # heads with finite scores

    def top(m):
        flat = np.where(ok, m, -np.inf).ravel()
        idx = np.argsort(-flat, kind="stable")[:k]
        return [(int(i) // a.shape[1], int(i) % a.shape[1]) for i in idx]

    common = sorted(set(top(a)) & set(top(b)))
    return {"overlap": len(common), "k": k, "common": common, "rho": spearman(a[ok], b[ok]), "n_heads": int(ok.sum())}


def _stripe_ratios(rep: np.ndarray, ctrl: np.ndarray, si: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """Bootstrap replicates ``[n_boot, n_layers]`` of the stripe ratio for given resample indices."""
    r = rep.transpose(0, 2, 1)[si[:, :, None], pi].mean(axis=(1, 2))
    c = ctrl.transpose(0, 2, 1)[si[:, :, None], pi].mean(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return r / c


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
        raise ValueError("others is empty; give at least one StripeData to compare with")
    n_boot, confidence = check_bootstrap(n_boot, confidence)
    shape = base.induction["repeated"].shape
    for o in others:
        if o.induction["repeated"].shape != shape or o.read_layers != base.read_layers or o.seeds != base.seeds:
            raise ValueError("all stripes must share seeds, read layers and T with the base")
    S, _, P = shape
    rng = np.random.default_rng(seed)
    si = rng.integers(0, S, size=(n_boot, S))
    pi = rng.integers(0, P, size=(n_boot, S, P))
    full_s, full_p = np.arange(S)[None], np.broadcast_to(np.arange(P), (1, S, P))

    def score(st, s_idx, p_idx):
        return _stripe_ratios(st.induction["repeated"], st.induction["control"], s_idx, p_idx)

    with np.errstate(invalid="ignore"):
        drop = score(base, full_s, full_p)[0] - np.mean([score(o, full_s, full_p)[0] for o in others], axis=0)
        boots = score(base, si, pi) - np.mean([score(o, si, pi) for o in others], axis=0)
        alpha = (1 - confidence) / 2
        with warnings.catch_warnings():  # l0 itself: every replicate is nan
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, hi = np.nanquantile(boots, [alpha, 1 - alpha], axis=0)
    bad = ~np.isfinite(drop)
    lo[bad] = hi[bad] = np.nan
    return drop, lo, hi


@dataclass
class AblationStudy:
    """Induction scores and second-copy losses without ablation, with the named heads ablated, and
    with ``n_random`` draws of as many random heads ablated.

    ``results``/``losses`` are keyed ``"none"``, ``"top"``, ``"random-0"``, ``"random-1"``...;
    ``heads`` holds the ablated heads of each condition.
    """

    model: str
    k: int
    heads: dict[str, list[tuple[int, int]]]
    results: dict[str, InductionResult]
    losses: dict[str, dict]
    random_keys: list[str] = field(default_factory=list)

    def score_drop(self, which: str = "top", **boot) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per read layer: unablated score minus the score under ``which`` (``"top"`` or ``"random"``,
        the mean over random draws), with a paired bootstrap CI (:func:`paired_score_change`)."""
        keys = self.random_keys if which == "random" else [which]
        return paired_score_change(self.results["none"].stripes, [self.results[k].stripes for k in keys], **boot)

    def loss_rise(self, which: str = "top", *, n_boot: int = 1000, confidence: float = 0.95) -> dict:
        """Second-copy loss under ``which`` minus without ablation, paired by seed
        (:func:`.behaviour.bootstrap_mean` dict; random draws are averaged per seed)."""
        keys = self.random_keys if which == "random" else [which]
        base = self.losses["none"]["second"]["per_seed"]
        ablated = torch.stack([self.losses[k]["second"]["per_seed"] for k in keys]).mean(0)
        return bootstrap_mean(ablated - base, n_boot=n_boot, confidence=confidence)


def ablation_study(
    lm: LoadedModel,
    heads: Sequence[tuple[int, int]],
    *,
    n_random: int = 3,
    T: int = 10,
    seeds: Sequence[int] | int = 2,
    loss_seeds: Sequence[int] = range(16),
    layer: int = 0,
    eps: float = 1e-2,
    mode: str = "mean",
    means: torch.Tensor | None = None,
    random_seed: int = 0,
    n_boot: int = 1000,
) -> AblationStudy:
    """Ablate the named heads, and ``n_random`` seeded draws of as many other heads, and measure
    the response induction score (:func:`.induction.induction_scores`) and the copy losses
    (:func:`.behaviour.repeat_loss`) under each.

    Why: if the named heads carry induction, removing them must lower the score and raise the
    second-copy loss more than removing random heads does. Random draws exclude the named heads
    and are drawn with seeds ``random_seed + j``.
    """
    check_model(lm)
    heads = validate_heads(lm, heads)
    if not heads:
        raise ValueError("heads is empty; name at least one head to ablate")
    check_int(n_random, "n_random", minimum=1)
    check_seeds(seeds)
    check_bootstrap(n_boot, 0.95)
    k = len(heads)
    if mode == "mean" and means is None:
        means = head_means(lm)
    conditions = {"none": [], "top": heads}
    random_keys = []
    for j in range(n_random):
        key = f"random-{j}"
        conditions[key] = random_heads(lm, k, seed=random_seed + j, exclude=heads)
        random_keys.append(key)
    results, losses = {}, {}
    for key, hs in conditions.items():
        with ablate_heads(lm, hs, mode=mode, means=means):
            results[key] = induction_scores(lm, T=T, seeds=seeds, layer=layer, eps=eps, n_boot=n_boot)
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
    computed (same seeds, sources, layer, eps and directions as ``reference``). With the
    ``"neighbours"`` baseline each sequence is its own baseline; with the ``"random"`` control the
    reference's controls are reused (and ``kind="random"`` is refused: random against random is
    :func:`seed_null_scores`).

    Args:
        kind: ``"shuffled"``, ``"random"`` (neighbours baseline only), or ``"repeated"``, which
            reproduces ``reference``.
        reference: a finite-eps :func:`.induction.induction_scores` result with its stripes and a
            ``"neighbours"`` or ``"random"`` control.
        seeds: a subset of the reference's seeds to use (default all): fewer seeds, less work.
    """
    check_model(lm)
    if not isinstance(reference, InductionResult):
        raise TypeError(f"reference must be an InductionResult (from induction_scores), got {type(reference).__name__}")
    check_bootstrap(n_boot, confidence)
    st = reference.stripes
    if st is None or reference.method != "finite" or st.control_kind not in ("neighbours", "random"):
        raise ValueError("reference must be a finite-eps induction_scores result with stripes and a neighbours or "
                         "random control")
    within = st.control_kind == "neighbours"
    if kind not in SEQUENCE_KINDS or (kind == "random" and not within):
        allowed = "'shuffled', 'random' or 'repeated'" if within else "'shuffled' or 'repeated' ('random' vs random: use seed_null_scores)"
        raise ValueError(f"kind must be {allowed}, got {kind!r}")
    use = list(st.seeds) if seeds is None else [int(x) for x in seeds]
    if not use or any(x not in st.seeds for x in use):
        raise ValueError(f"seeds must be a non-empty subset of the reference seeds {st.seeds}, got {seeds!r}")
    rows = [st.seeds.index(x) for x in use]
    layout = induction_layout(lm, st.T)
    ind_src = layout.induction_sources.numpy() - layout.offset
    dup_src = layout.duplicate_sources.numpy() - layout.offset
    ind, dup, ind_base, dup_base = [], [], [], []
    for seed in use:
        tokens = make_sequence(lm, kind, st.T, seed)
        res = response(lm, tokens, [st.eps], layer=st.layer, read_layers=st.read_layers, sources=st.sources,
                       n_directions=reference.n_directions, seed=seed)
        chi = res.chi[0]
        ind.append(chi[:, ind_src, layout.induction_targets.numpy()])
        dup.append(chi[:, dup_src, layout.duplicate_targets.numpy()])
        if within:
            ind_base.append(neighbour_baseline(chi, ind_src, layout.induction_targets.numpy(), other_stripe=-1))
            dup_base.append(neighbour_baseline(chi, dup_src, layout.duplicate_targets.numpy(), other_stripe=+1))
    ind_ctrl = np.stack(ind_base) if within else st.induction["control"][rows]
    dup_ctrl = np.stack(dup_base) if within else st.duplicate["control"][rows]
    new = StripeData(T=st.T, layer=st.layer, eps=st.eps, seeds=use, read_layers=st.read_layers,
                     induction={"repeated": np.stack(ind), "control": ind_ctrl},
                     duplicate={"repeated": np.stack(dup), "control": dup_ctrl},
                     sources=st.sources, control_kind=st.control_kind)
    return scores_from_stripes(new, model=f"{lm.name} ({kind})", n_directions=reference.n_directions,
                               n_boot=n_boot, confidence=confidence)


def seed_null_scores(reference: InductionResult, *, n_boot: int = 1000, confidence: float = 0.95) -> InductionResult:
    """Score of random sequences against *other* random sequences, from the controls of ``reference``.

    Why: the null of the estimator at no extra cost. The control stripes of the odd seeds play the
    repeated role against those of the even seeds (pairs ``(1, 0), (3, 2), ...``): both are
    independent random sequences, so the score measures only the sequence-to-sequence spread.
    (Splitting matters: a ratio of means over *all* seeds would be 1 by construction.) Needs >= 2
    seeds; an odd last seed is left out.
    """
    if not isinstance(reference, InductionResult):
        raise TypeError(f"reference must be an InductionResult (from induction_scores), got {type(reference).__name__}")
    check_bootstrap(n_boot, confidence)
    st = reference.stripes
    if st is None or len(st.seeds) < 2:
        raise ValueError("seed_null_scores needs a result with stripes from at least 2 seeds")
    if st.control_kind != "random":
        raise ValueError(f"seed_null_scores needs a result with random control sequences, got the {st.control_kind!r} "
                         "baseline; its null is kind_scores(lm, 'random', reference)")
    n = len(st.seeds) // 2
    odd = lambda a: a[1::2][:n]
    even = lambda a: a[0::2][:n]
    new = StripeData(T=st.T, layer=st.layer, eps=st.eps, seeds=st.seeds[1::2][:n], read_layers=st.read_layers,
                     induction={"repeated": odd(st.induction["control"]), "control": even(st.induction["control"])},
                     duplicate={"repeated": odd(st.duplicate["control"]), "control": even(st.duplicate["control"])},
                     sources=st.sources, control_kind="random")
    return scores_from_stripes(new, model=f"{reference.model} (random vs random)", n_directions=reference.n_directions,
                               n_boot=n_boot, confidence=confidence)


def control_envelope(df: pd.DataFrame, *, depth: str = "rel_depth", score: str = "score", bins: int = 10) -> pd.DataFrame:
    """Min-max envelope of negative-control scores against relative depth, for a shaded band.

    Why: controls of different depths (4-block random models, 30-block stand-ins) have their points
    at different relative depths; binning depth into ``bins`` equal bins and taking the min and max
    of all control scores in each gives one band to draw under the models' lines.

    Returns:
        DataFrame with ``rel_depth`` (bin centres, plus the ends 0 and 1 at the edge bins' values so
        the band spans the axis), ``band_lo``, ``band_hi`` and ``n`` (points per bin); empty bins are
        dropped.
    """
    check_int(bins, "bins", minimum=1)
    d = df[[depth, score]].replace([np.inf, -np.inf], np.nan).dropna()
    if d.empty:
        raise ValueError("control_envelope: no finite control scores")
    if ((d[depth] < 0) | (d[depth] > 1)).any():
        raise ValueError(f"control_envelope: column {depth!r} must lie in [0, 1]")
    idx = np.minimum((d[depth].to_numpy() * bins).astype(int), bins - 1)
    g = d.assign(bin=idx).groupby("bin")[score].agg(["min", "max", "size"])
    out = pd.DataFrame({"rel_depth": (g.index.to_numpy() + 0.5) / bins, "band_lo": g["min"].to_numpy(),
                        "band_hi": g["max"].to_numpy(), "n": g["size"].to_numpy()})
    first, last = out.iloc[[0]].assign(rel_depth=0.0), out.iloc[[-1]].assign(rel_depth=1.0)
    return pd.concat([first, out, last], ignore_index=True)


# --------------------------------------------------------------------------------------
# The book's cross-check and negative-control studies, one call per model
# --------------------------------------------------------------------------------------


def is_random_init(name: str) -> bool:
    """Whether the registry name ``name`` is a random-initialised control (``random-*``)."""
    return str(name).startswith("random-")


@dataclass
class NegativeControls:
    """The negative controls of a set of models, scored like the repeats.

    ``runs`` maps ``(model, control)`` to its :class:`.induction.InductionResult`, the controls
    being ``"shuffled copy"`` and ``"random sequence"`` for every model and ``"repeated, random
    init"`` for the random-initialised ones. ``frame`` has one row per run and read layer after
    ``l0`` (``model, control, rel_depth, score, in_band``). A run is *in the band* when it has
    nothing to find: every run but a trained model's shuffled copy, which a duplicate-token
    response can lift (the emergence page shows it).
    """

    runs: dict
    frame: pd.DataFrame

    @staticmethod
    def in_band(key: tuple[str, str]) -> bool:
        model, control = key
        return control != "shuffled copy" or is_random_init(model)

    @property
    def band_frame(self) -> pd.DataFrame:
        """The rows of the in-band runs."""
        return self.frame[self.frame.in_band]

    def band(self, bins: int = 5) -> pd.DataFrame:
        """:func:`control_envelope` of the in-band runs."""
        return control_envelope(self.band_frame, bins=bins)

    @property
    def n_in_band(self) -> int:
        return sum(self.in_band(key) for key in self.runs)

    def emerged(self) -> list[tuple[str, str]]:
        """In-band runs that pass the emergence criterion (none should)."""
        return [key for key, r in self.runs.items() if self.in_band(key) and r.emergence_layer is not None]

    def shuffled_range(self) -> pd.DataFrame:
        """Per trained model: min and max over layers of its shuffled-copy score (index: model)."""
        d = self.frame[~self.frame.in_band]
        return d.groupby("model").score.agg(["min", "max"])


def negative_controls(lms: dict, results: dict, *, control_seeds: int, n_boot: int = 1000) -> NegativeControls:
    """Score every model's negative controls with the baseline of its repeats (:func:`kind_scores`).

    Why here: a trained model's score means something only against what the same estimator gives
    where there is nothing to copy. Random-initialised models use all the seeds of their result
    (their repeats are a control too); trained ones the first ``control_seeds``.

    Args:
        lms: model name -> loaded model; results: model name -> its repeats'
            :func:`.induction.induction_scores` result (finite eps, with stripes).
    """
    check_int(control_seeds, "control_seeds", minimum=1)
    runs = {}
    for name, res in results.items():
        use = None if is_random_init(name) else res.seeds[:control_seeds]
        runs[(name, "shuffled copy")] = kind_scores(lms[name], "shuffled", res, seeds=use, n_boot=n_boot)
        runs[(name, "random sequence")] = kind_scores(lms[name], "random", res, seeds=use, n_boot=n_boot)
        if is_random_init(name):
            runs[(name, "repeated, random init")] = res
    frame = pd.DataFrame([
        {"model": name, "control": kind, "rel_depth": l / lms[name].n_layers, "score": s,
         "in_band": NegativeControls.in_band((name, kind))}
        for (name, kind), r in runs.items() for l, s in zip(r.layers, r.score) if l != r.layer
    ])
    return NegativeControls(runs=runs, frame=frame)


@dataclass
class CrossCheck:
    """Every cross-check of one model's response score (what :func:`cross_check` measures).

    Attributes:
        losses: :func:`.behaviour.repeat_loss` of the unablated model.
        attention: :func:`.attention.induction_attention_scores` (``repeated.mean`` ``[L, H]``).
        attribution: :func:`.heads.head_attribution` (``score`` ``[L, H]``).
        study: :func:`ablation_study` of the top-``k`` heads by attribution against random heads.
        null: :func:`kind_scores` of random sequences (nothing to copy) with the unablated baseline.
        agreement: :func:`layer_rank_agreement` of the attention and the unablated score.
        heads: :func:`head_rank_agreement` of the two head rankings over their top
            ``min(5, heads - 1)``, plus ``resp_top`` (the response's top heads with their scores),
            ``att_top`` (the attention's top five), ``resp_top_att`` (the attention of the
            response's top heads), ``resp_best`` and ``att_best``.
        seconds: wall time of the whole study.
    """

    model: str
    n_layers: int
    n_heads: int
    layer: int
    losses: dict
    attention: dict
    attribution: object
    study: AblationStudy
    null: InductionResult
    agreement: dict
    heads: dict
    seconds: float
    n_boot: int = 1000

    @property
    def base(self) -> InductionResult:
        """The unablated response scores."""
        return self.study.results["none"]

    def rise_blocks(self) -> dict:
        """Where the score rises, in blocks, beside the blocks of the top-5 attention heads.

        The rise of :attr:`.induction.InductionResult.rise` is read on streams; stream ``l`` is
        written by block ``l - 1``. Returns ``{"half", "blocks", "factor", "factor_ci",
        "att_blocks", "holds"}``: the block writing the half-way stream (``None``: no rise), the
        blocks from the 10 % to the 90 % stream, the rise factor and its interval, the blocks of
        the top-5 attention heads, and whether a block of the rise holds one of them.
        """
        rise = self.base.rise or {}
        att_blocks = sorted({l for l, _, _ in self.heads["att_top"]})
        if not rise.get("emerged"):
            blocks, half = [], None
        else:
            blocks, half = list(range(rise["start"] - 1, rise["end"])), rise["layer"] - 1
        return {"half": half, "blocks": blocks, "factor": rise.get("factor"), "factor_ci": rise.get("factor_ci"),
                "att_blocks": att_blocks, "holds": bool(set(blocks) & set(att_blocks))}

    def quoted(self) -> dict:
        """The numbers a page quotes about this model in its prose, by short name (``loss1``,
        ``half``, ``overlap``, ``drop_top``, ``rise_top``, ``nullmin`` ...), as plain values."""
        rb, h, e, c = self.rise_blocks(), self.heads, self.effects(), self.losses
        return {
            "loss1": float(c["first"]["mean"]), "loss2": float(c["second"]["mean"]),
            "half": "none" if rb["half"] is None else str(rb["half"]),
            "riseblocks": ", ".join(map(str, rb["blocks"])) or "none", "topblocks": ", ".join(map(str, rb["att_blocks"])),
            "rho": float(self.agreement["rho"]), "overlap": h["overlap"], "headrho": float(h["rho"]),
            "respbest": str(h["resp_best"]), "attbest": str(h["att_best"]),
            "respbestatt": h["resp_top_att"][0], "respminatt": min(h["resp_top_att"]),
            "SL": e["base"], "SLtop": e["top_score"], "drop_top": e["top"]["drop"], "drop_random": e["random"]["drop"],
            "rise_top": e["top"]["rise"], "rise_random": e["random"]["rise"],
            "nullmin": float(np.nanmin(self.null.score)), "nullmax": float(np.nanmax(self.null.score)),
        }

    def effects(self) -> dict:
        """Per ``"top"``/``"random"`` ablation: the drop of the score at the last stream and the rise
        of the second-copy loss, each with its paired 95 % interval; plus ``base`` (``S_L``
        unablated) and ``top_score`` (``S_L`` with the top heads ablated)."""
        out = {"base": float(self.base.score[-1]), "top_score": float(self.study.results["top"].score[-1])}
        for which in ("top", "random"):
            drop, lo, hi = self.study.score_drop(which, n_boot=self.n_boot)
            rise = self.study.loss_rise(which, n_boot=self.n_boot)
            out[which] = {"drop": float(drop[-1]), "lo": float(lo[-1]), "hi": float(hi[-1]),
                          "rise": float(rise["mean"]), "rise_lo": float(rise["lo"]), "rise_hi": float(rise["hi"])}
        return out


def cross_check(lm: LoadedModel, *, T: int, seeds: int, att_seeds: int, loss_seeds: int, eps: float, layer: int,
                k: int, n_random: int, n_boot: int = 1000) -> CrossCheck:
    """Run every cross-check of the response score on one model (see :class:`CrossCheck`).

    Why one call: the loss, the attention patterns, the head attribution, the ablation of its
    top-``k`` heads against ``n_random`` draws of random heads, and the null share the model, the
    sequences and the settings; a page shows their numbers side by side.
    """
    import time

    from .attention import induction_attention_scores, top_heads
    from .heads import head_attribution

    check_model(lm)
    check_int(k, "k", minimum=1, maximum=lm.n_layers * lm.n_heads // 2 - 1)
    start = time.perf_counter()
    losses = repeat_loss(lm, T, range(loss_seeds), n_boot=n_boot)
    attention = induction_attention_scores(lm, T=T, seeds=range(att_seeds), n_boot=n_boot)
    attribution = head_attribution(lm, T=T, seeds=seeds, layer=layer, eps=eps, n_boot=n_boot)
    top = [(l, h) for l, h, _ in attribution.ranking(k)]
    study = ablation_study(lm, top, n_random=n_random, T=T, seeds=seeds, loss_seeds=range(loss_seeds),
                           layer=layer, eps=eps, n_boot=n_boot)
    base = study.results["none"]
    null = kind_scores(lm, "random", base, n_boot=n_boot)  # no repeat: nothing to copy
    agreement = layer_rank_agreement(attention, base.stripes, n_boot=n_boot)
    n_all = lm.n_layers * lm.n_heads
    kk = min(5, n_all - 1)
    att_mean = attention["repeated"]["mean"].numpy()  # [L, H]
    heads = head_rank_agreement(attribution.score, att_mean, k=kk)
    heads["resp_top"] = attribution.ranking(kk)
    heads["att_top"] = top_heads(attention, min(5, n_all))
    heads["resp_best"], heads["att_best"] = heads["resp_top"][0][:2], heads["att_top"][0][:2]
    heads["resp_top_att"] = [float(att_mean[l, h]) for l, h, _ in heads["resp_top"]]
    return CrossCheck(model=lm.name, n_layers=lm.n_layers, n_heads=lm.n_heads, layer=layer, losses=losses,
                      attention=attention, attribution=attribution, study=study, null=null, agreement=agreement,
                      heads=heads, seconds=time.perf_counter() - start, n_boot=n_boot)
