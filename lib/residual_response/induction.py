"""Induction read off the response: the lag ``T-1`` stripe, its control, and the section map.

On ``[BOS, a_1 .. a_T, a_1 .. a_T]`` an induction mechanism at the second ``a_{k-1}`` (index
``T+k-1``) attends back to the first ``a_k`` (index ``k``) to predict ``a_k``. Perturbing source
``k`` therefore moves target ``T+k-1``: a stripe at lag ``T-1`` of the response matrix. The same
entries of a control sequence (``2T`` random tokens, no repeat) give the baseline: how much a
token moves another ``T-1`` positions later for no reason but distance.

    score(l) = mean_{seeds, k} chi_rep[l, k, T+k-1] / mean_{seeds, k} chi_ctrl[l, k, T+k-1]

Near 1: no induction; well above 1: induction. The duplicate-token score uses lag ``T`` (source
``k``, target ``T+k``, the second copy of the same token). Confidence intervals come from a
bootstrap that resamples seeds and, within them, stripe positions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import numpy as np

from .checks import check_bootstrap, check_choice, check_int, check_int_list, check_model, check_number, check_seeds
from .models import LoadedModel
from .response import response, validate_eps, validate_layer
from .sequences import induction_layout, make_sequence, validate_length

__all__ = [
    "EMERGENCE_THRESHOLD",
    "InductionResult",
    "StripeData",
    "bootstrap_ratio",
    "collect_stripes",
    "emergence_layer",
    "induction_scores",
    "section_map",
]

#: a layer shows induction when the CI lower bound of its score exceeds this
EMERGENCE_THRESHOLD = 2.0


@dataclass
class StripeData:
    """Stripe entries of chi, per seed.

    Attributes:
        read_layers: ``[n_read]`` streams read.
        induction: ``{"repeated"|"control": [n_seeds, n_read, T-1]}`` chi at (k, T+k-1).
        duplicate: ``{"repeated"|"control": [n_seeds, n_read, T]}`` chi at (k, T+k).
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
    control_kind: str = "random"
    matrices: dict[str, np.ndarray] | None = None


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
    control: str = "random"
    confidence: float = 0.95
    n_boot: int = 1000
    stripes: StripeData | None = field(default=None, repr=False)

    def to_json_dict(self) -> dict:
        """Plain JSON types; ``nan`` (layer ``l0`` itself, where chi is a delta) becomes ``None``."""
        d = asdict(self)
        d.pop("stripes")
        for key, val in d.items():
            if isinstance(val, list):
                d[key] = [None if isinstance(v, float) and not math.isfinite(v) else v for v in val]
        return d


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
    control: str = "random",
    keep_matrices: bool = False,
    progress: bool = False,
    **response_kwargs,
) -> StripeData:
    """Run the response of repeated sequences and their controls and keep the stripe entries.

    Only sources of the first copy are perturbed (the stripes start there), which halves the
    work against perturbing every position.

    Args:
        T: length of one copy.
        seeds: sequence seeds; seed ``i`` also seeds the directions.
        control: ``"random"`` (2T tokens, no repeat) or ``"shuffled"`` (second copy permuted).
    """
    check_model(lm)
    validate_length(lm, T)
    seeds = check_seeds(seeds)
    check_choice(control, "control", ("random", "shuffled"))
    check_choice(method, "method", ("finite", "jvp"))
    validate_layer(lm, layer)
    n_directions = check_int(n_directions, "n_directions", minimum=1)
    layout = induction_layout(lm, T)
    sources = list(range(layout.offset, layout.offset + T))  # first copy a_1..a_T
    ind_src = layout.induction_sources.numpy() - layout.offset  # rows into `sources`
    dup_src = layout.duplicate_sources.numpy() - layout.offset
    ind_tgt = layout.induction_targets.numpy()
    dup_tgt = layout.duplicate_targets.numpy()
    eps_value = check_number(eps, "eps", positive=True) if method == "finite" else float("nan")

    induction = {"repeated": [], "control": []}
    duplicate = {"repeated": [], "control": []}
    matrices = {"repeated": [], "control": []} if keep_matrices else None
    reads = None
    for seed in seeds:
        for key, kind in (("repeated", "repeated"), ("control", control)):
            tokens = make_sequence(lm, kind, T, seed)
            res = response(lm, tokens, [eps_value] if method == "finite" else None, layer=layer,
                           read_layers=read_layers, sources=sources, n_directions=n_directions, seed=seed,
                           method=method, progress=progress, **response_kwargs)
            chi = res.chi[0]  # [n_read, T, N]
            reads = res.read_layers
            induction[key].append(chi[:, ind_src, ind_tgt])
            duplicate[key].append(chi[:, dup_src, dup_tgt])
            if matrices is not None:
                matrices[key].append(chi)
    return StripeData(
        T=T, layer=layer, eps=eps_value, seeds=seeds, read_layers=reads,
        induction={k: np.stack(v) for k, v in induction.items()},
        duplicate={k: np.stack(v) for k, v in duplicate.items()},
        sources=sources, control_kind=control,
        matrices=None if matrices is None else {k: np.stack(v) for k, v in matrices.items()},
    )


def bootstrap_ratio(
    rep: np.ndarray, ctrl: np.ndarray, *, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ratio of means with a two-level bootstrap CI (seeds, then positions).

    Args:
        rep, ctrl: ``[n_seeds, n_layers, P]`` stripe entries of repeated and control sequences
            (paired by seed and position index).

    Returns:
        ``(ratio, low, high)``, each ``[n_layers]``; ``nan`` where the control mean is 0.
    """
    rep, ctrl = np.asarray(rep, dtype=float), np.asarray(ctrl, dtype=float)
    if rep.shape != ctrl.shape or rep.ndim != 3:
        raise ValueError(f"rep and ctrl must have equal shapes [n_seeds, n_layers, P], got {rep.shape} and {ctrl.shape}")
    if 0 in rep.shape:
        raise ValueError(f"rep and ctrl must be non-empty [n_seeds, n_layers, P], got shape {rep.shape}")
    n_boot, confidence = check_bootstrap(n_boot, confidence)
    n_seeds, n_layers, P = rep.shape
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = rep.mean(axis=(0, 2)) / ctrl.mean(axis=(0, 2))
        rng = np.random.default_rng(seed)
        si = rng.integers(0, n_seeds, size=(n_boot, n_seeds))  # [n_boot, n_seeds]
        pi = rng.integers(0, P, size=(n_boot, n_seeds, P))  # [n_boot, n_seeds, P]
        r = rep.transpose(0, 2, 1)[si[:, :, None], pi]  # [n_boot, n_seeds, P, n_layers]
        c = ctrl.transpose(0, 2, 1)[si[:, :, None], pi]
        boots = r.mean(axis=(1, 2)) / c.mean(axis=(1, 2))  # [n_boot, n_layers]
        alpha = (1 - confidence) / 2
        low = np.quantile(boots, alpha, axis=0)
        high = np.quantile(boots, 1 - alpha, axis=0)
    bad = ~np.isfinite(ratio)
    low[bad] = np.nan
    high[bad] = np.nan
    return ratio, low, high


def emergence_layer(layers: Sequence[int], ci_low: Sequence[float], threshold: float = EMERGENCE_THRESHOLD) -> int | None:
    """First layer whose CI lower bound exceeds ``threshold`` (``None`` if none does)."""
    for layer, low in zip(layers, ci_low):
        if low is not None and np.isfinite(low) and low > threshold:
            return int(layer)
    return None


def scores_from_stripes(stripes: StripeData, *, model: str = "", method: str = "finite", n_directions: int = 1,
                        n_boot: int = 1000, confidence: float = 0.95, boot_seed: int = 0) -> InductionResult:
    """Turn stripe entries into scores, CIs and the emergence layer."""
    score, lo, hi = bootstrap_ratio(stripes.induction["repeated"], stripes.induction["control"],
                                    n_boot=n_boot, confidence=confidence, seed=boot_seed)
    dscore, dlo, dhi = bootstrap_ratio(stripes.duplicate["repeated"], stripes.duplicate["control"],
                                       n_boot=n_boot, confidence=confidence, seed=boot_seed + 1)
    return InductionResult(
        model=model, length=stripes.T, seeds=stripes.seeds, layer=stripes.layer, eps=stripes.eps, method=method,
        layers=list(stripes.read_layers), score=score.tolist(), ci_low=lo.tolist(), ci_high=hi.tolist(),
        duplicate_score=dscore.tolist(), duplicate_ci_low=dlo.tolist(), duplicate_ci_high=dhi.tolist(),
        emergence_layer=emergence_layer(stripes.read_layers, lo), n_directions=n_directions,
        control=stripes.control_kind, confidence=confidence, n_boot=n_boot, stripes=stripes,
    )


def induction_scores(
    lm: LoadedModel,
    T: int = 20,
    seeds: Sequence[int] | int = 4,
    *,
    layer: int = 0,
    eps: float = 1e-2,
    n_directions: int = 1,
    method: str = "finite",
    control: str = "random",
    n_boot: int = 1000,
    confidence: float = 0.95,
    keep_matrices: bool = False,
    progress: bool = False,
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
    return scores_from_stripes(stripes, model=lm.name, method=method, n_directions=n_directions, n_boot=n_boot,
                               confidence=confidence)


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

    def to_json_dict(self) -> dict:
        def clean(a):
            return [[None if not np.isfinite(v) else float(v) for v in row] for row in np.asarray(a)]

        return {"model": self.model, "length": self.length, "seeds": self.seeds, "perturb_layers": self.perturb_layers,
                "read_layers": self.read_layers, "score": clean(self.score), "ci_low": clean(self.ci_low),
                "ci_high": clean(self.ci_high), "duplicate_score": clean(self.duplicate_score)}


def section_map(
    lm: LoadedModel,
    T: int = 20,
    seeds: Sequence[int] | int = 2,
    *,
    perturb_layers: Iterable[int] | None = None,
    eps: float = 1e-2,
    n_directions: int = 1,
    n_boot: int = 500,
    progress: bool = False,
    **response_kwargs,
) -> SectionMap:
    """The map ``score(l0, l)`` over perturbed and read streams.

    The stripe shows up in ``score(l0, l)`` only when blocks ``l0..l-1`` contain both the
    block that moves previous-token information and the one that attends back: the map shows
    which span of blocks composes induction.
    """
    check_model(lm)
    validate_length(lm, T)
    seeds = check_seeds(seeds)
    check_bootstrap(n_boot, 0.95)
    check_number(eps, "eps (one strength)", positive=True)
    L = lm.n_layers
    l0s = list(range(L)) if perturb_layers is None else sorted(set(
        validate_layer(lm, l, what="perturbed layer") for l in check_int_list(perturb_layers, "perturb_layers")))
    reads = list(range(L + 1))
    shape = (len(l0s), L + 1)
    score, lo, hi, dup = (np.full(shape, np.nan) for _ in range(4))
    for i, l0 in enumerate(l0s):
        res = induction_scores(lm, T, seeds, layer=l0, eps=eps, n_directions=n_directions, n_boot=n_boot,
                               progress=progress, **response_kwargs)
        cols = np.asarray(res.layers)
        score[i, cols] = res.score
        lo[i, cols] = res.ci_low
        hi[i, cols] = res.ci_high
        dup[i, cols] = res.duplicate_score
        score[i, l0] = lo[i, l0] = hi[i, l0] = dup[i, l0] = np.nan
    seed_list = list(seeds)
    return SectionMap(lm.name, T, seed_list, l0s, reads, score, lo, hi, dup)
