"""Induction read off the response: the lag ``T-1`` stripe, its baseline, the rise over depth, the section map.

On ``[BOS, a_1 .. a_T, a_1 .. a_T]`` an induction mechanism at the second ``a_{k-1}`` (index
``T+k-1``) attends back to the first ``a_k`` (index ``k``) to predict ``a_k``. Perturbing source
``k`` therefore moves target ``T+k-1``: a stripe at lag ``T-1`` of the response matrix.

The baseline of each stripe entry is the same target's mean response to nearby sources of the
same sequence (``k-3, k-2, k+1, k+2``; :func:`neighbour_baseline`): whatever the target does to
every source alike cancels, so a model without induction scores 1 (measured on random-init
models of every architecture, :mod:`.null`)::

    score(l) = mean_{seeds, k} chi[l, k, T+k-1] / mean_{seeds, k} mean_{o} chi[l, k+o, T+k-1]

The older baselines, the same entries of control sequences (``"random"``: 2T random tokens;
``"shuffled"``: second copy permuted), remain as options; against random tokens a random model
scores 0.6-0.8, because the repeated sequence holds duplicate tokens and the control does not.
The duplicate-token score uses lag ``T`` (source ``k``, target ``T+k``) the same way.
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
from .results_cache import memoize
from .engine import planned_passes, response, reuse_clean_passes
from .sequences import induction_layout, make_sequence, validate_length
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
    "rescore_seeds",
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
    control_kind: str = "neighbours"
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
    control: str = "neighbours"
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
    control: str = "neighbours",
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
            ``"neighbours"`` (the same target's response to nearby sources of the same repeated
            sequence; no control sequences are run), ``"random"`` (the same entries of ``2T``
            random tokens, no repeat) or ``"shuffled"`` (second copy permuted).
        progress: ``True`` or a :class:`~residual_response.progress.Progress`: one bar for all the
            sequences, its total the passes the batch planner gives them (on a terminal only).
    """
    check_model(lm)
    validate_length(lm, T)
    seeds = check_seeds(seeds)
    check_choice(control, "control", CONTROLS)
    if control == "neighbours" and T < 3:
        raise ValueError(f"T={T} is too short for the neighbours control: a stripe source needs a neighbour; use T >= 3")
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
    within = control == "neighbours"
    runs = _sequence_runs(control, keep_matrices)
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
                if within and key == "control":
                    continue  # run for its matrix only
                induction[key].append(chi[:, ind_src, ind_tgt])
                duplicate[key].append(chi[:, dup_src, dup_tgt])
                if within:  # the baselines come from the same matrix
                    induction["control"].append(neighbour_baseline(chi, ind_src, ind_tgt, other_stripe=-1))
                    duplicate["control"].append(neighbour_baseline(chi, dup_src, dup_tgt, other_stripe=+1))
    return StripeData(
        T=T, layer=layer, eps=eps_value, seeds=seeds, read_layers=reads,
        induction={k: np.stack(v) for k, v in induction.items()},
        duplicate={k: np.stack(v) for k, v in duplicate.items()},
        sources=sources, control_kind=control,
        matrices=None if matrices is None else {k: np.stack(v) for k, v in matrices.items()},
    )


#: The baselines of :func:`collect_stripes`. ``"neighbours"`` is the default: it is the one whose
#: score a model without induction puts at 1 (the null page of the book measures all three).
CONTROLS = ("neighbours", "random", "shuffled")

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


def _sequence_runs(control: str, keep_matrices: bool) -> tuple[tuple[str, str], ...]:
    """``(key, sequence kind)`` of the sequences :func:`collect_stripes` runs per seed.

    The neighbours baseline needs no control sequence; its matrices, when kept for a picture,
    are those of random tokens.
    """
    if control == "neighbours":
        return (("repeated", "repeated"), ("control", "random")) if keep_matrices else (("repeated", "repeated"),)
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
    interval of ``R`` lies above 1, i.e. the rise is not resampling noise. The emergence layer is
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

    def to_dict(self) -> dict:
        return asdict(self)


#: fractions of the log rise that define the start, the middle (emergence) and the end of the rise
RISE_FRACTIONS = (0.1, 0.5, 0.9)


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
    emerged = bool(f_lo > 1.0)
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
    )


def scores_from_stripes(stripes: StripeData, *, model: str = "", method: str = "finite", n_directions: int = 1,
                        n_boot: int = 1000, confidence: float = 0.95, boot_seed: int = 0) -> InductionResult:
    """Turn stripe entries into scores, CIs, the rise over depth and the emergence layer (:class:`Rise`)."""
    score, lo, hi, boots = bootstrap_ratio(stripes.induction["repeated"], stripes.induction["control"],
                                           n_boot=n_boot, confidence=confidence, seed=boot_seed, return_boots=True)
    after = np.asarray(stripes.read_layers) > stripes.layer  # the perturbed stream itself has no score
    rise = None
    if after.sum() >= 2:
        rise = rise_of(np.asarray(stripes.read_layers)[after], score[after], boots[:, after], confidence)
    dscore, dlo, dhi = bootstrap_ratio(stripes.duplicate["repeated"], stripes.duplicate["control"],
                                       n_boot=n_boot, confidence=confidence, seed=boot_seed + 1)
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
                     sources=st.sources, control_kind=st.control_kind)
    out = scores_from_stripes(sub, model=result.model, method=result.method, n_directions=result.n_directions,
                              n_boot=result.n_boot, confidence=result.confidence)
    out.n_layers = result.n_layers
    return out


@memoize("induction_scores", ignore=("progress",))
def induction_scores(
    lm: LoadedModel,
    T: int = 20,
    seeds: Sequence[int] | int = 4,
    *,
    layer: int = 0,
    eps: float = 1e-2,
    n_directions: int = 1,
    method: str = "finite",
    control: str = "neighbours",
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
    passes = len(l0s) * len(_sequence_runs("neighbours", False)) * len(seed_list) * _passes_per_sequence(lm, T, layout.offset, sources, n_directions,
                                                                  "finite", response_kwargs)
    rows = {}
    # every l0 perturbs the same sequences: one clean pass per sequence serves them all
    with reuse_clean_passes(), as_progress(progress, f"{lm.name} section map") as bar, bar.expect(passes):
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
