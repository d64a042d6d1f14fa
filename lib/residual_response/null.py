"""The null of the induction score: what models *without* induction score.

Why a module of its own: "a score near 1 means no induction" is a claim about the estimator, and
it must be measured, not assumed. Random-initialised models have no induction mechanism, so the
score of every one of their layers should cover 1, whatever the architecture, the size or the
initialisation seed. :func:`null_study` measures exactly that for any of the baselines of
:func:`.induction.collect_stripes` and for the trend baseline (:mod:`.trend`), and :func:`coverage`
summarises it; the book's null page shows the result for each baseline, and a test keeps the
default baseline calibrated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .checks import InputError, check_int, check_int_list, check_seeds
from .induction import CONTROLS, induction_scores
from .trend import no_repeat_trend, rescore_trend
from .models import build_random_model
from .stats import KeyAccess

__all__ = ["FAMILIES", "SIZES", "Coverage", "NullRow", "coverage", "null_study", "BASELINE_NAMES",
           "emerged_models", "stability_runs", "emergence_stability", "emergence_spread", "CONDITIONS",
           "PRE_INDUCTION_BAND", "REQUIRED_SHARE", "Calibration", "pooled", "coverage_of_one", "no_repeat_calibration",
           "before_heads_calibration", "pre_head_offset", "median_score", "neighbour_lift", "emergence_calibration", "random_like", "under_baselines",
           "neighbour_profile", "coverage_by_model", "DESIGNS", "log_widths", "right_trend", "right_trend_medians"]

#: the architectures of the random controls
FAMILIES = ("gpt2", "llama", "gemma2", "gemma3")
#: two sizes of each: blocks and width
SIZES = {"small": {"n_layers": 4, "d_model": 64}, "large": {"n_layers": 8, "d_model": 128}}
#: every design of the score this module calibrates: the baselines of a run, and the trend
#: baseline, which rescores a twin run (:func:`.trend.rescore_trend`)
DESIGNS = (*CONTROLS, "trend")


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

    @property
    def log_width(self) -> float:
        """``ln(ci_high / ci_low)``, the interval's width in log units (``inf`` if its low end is not positive)."""
        return float(_log_width(self.ci_low, self.ci_high))


def _log_width(low, high):
    """``ln(high / low)`` elementwise; ``inf`` where ``low <= 0`` (a ratio's interval open at 0)."""
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(low > 0, np.log(np.maximum(high, low) / np.where(low > 0, low, 1.0)), np.inf)[()]


def log_widths(res) -> np.ndarray:
    """``[n]``: the interval widths ``ln(ci_high / ci_low)`` of the scored streams (after ``l0``) of a result.

    Why log units: the score is a ratio, and a baseline that doubles the noise doubles this width
    whatever the score's level. A low end at or below 0 (an extrapolated baseline can make a
    replicate's ratio negative) counts as an unbounded width, ``inf``.
    """
    idx = _scored(res)
    return np.atleast_1d(_log_width([res.ci_low[i] for i in idx], [res.ci_high[i] for i in idx]))


def null_study(
    *,
    families: Sequence[str] = FAMILIES,
    sizes: Sequence[str] = tuple(SIZES),
    init_seeds: Sequence[int] = (0, 1, 2),
    controls: Sequence[str] = ("twin",),
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
        controls: baselines (:data:`DESIGNS`); ``"trend"`` rescores the twin run of the same
            sequences (:func:`.trend.rescore_trend`).
        T, seeds, eps, n_boot: as for :func:`.induction.induction_scores` (perturbing stream 0).

    Returns:
        one :class:`NullRow` per model, baseline and read layer ``1..L``.
    """
    bad = [c for c in controls if c not in DESIGNS]
    if bad or not controls:
        raise InputError(f"controls must be a non-empty list of {', '.join(DESIGNS)}; got {list(controls)!r}")
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
                twin = None  # with the trend: one twin run, its matrices kept, serves both
                for control in controls:
                    if control in ("twin", "trend") and "trend" in controls:
                        if twin is None:
                            twin = induction_scores(lm, T=T, seeds=seeds, eps=eps, n_boot=n_boot, control="twin",
                                                    keep_matrices=True)
                        res = twin if control == "twin" else rescore_trend(twin)
                    else:
                        res = induction_scores(lm, T=T, seeds=seeds, eps=eps, n_boot=n_boot, control=control)
                    for l, s, lo, hi in zip(res.read_streams, res.score, res.ci_low, res.ci_high):
                        if l == res.l0:
                            continue  # the perturbed stream itself has no score
                        rows.append(NullRow(family, size, int(init_seed), control, int(l), lm.n_layers,
                                            float(s), float(lo), float(hi), res.emergence_layer))
    return rows


def coverage_by_model(rows: Sequence[NullRow], control: str) -> list[Calibration]:
    """The coverage of 1 under ``control``, one :class:`Calibration` per random model of ``rows``.

    Why beside the pooled coverage (:func:`pooled`): pooling says how the estimator does over
    many models, and hides a model that misses more than its share. Per model, a model of 4
    streams that misses one covers 75 % by chance, so each model's count comes with
    :meth:`Calibration.misses_plausible`, the test of whether its misses are as few as 95 %
    intervals allow. The model is named ``"<family>-<size>, init seed <k>"``; its units are
    its read streams.
    """
    if control not in {r.control for r in rows}:
        raise InputError(f"control must be one of the baselines of the rows ({sorted({r.control for r in rows})}); "
                         f"got {control!r}")
    models: dict[tuple, list[NullRow]] = {}
    for r in rows:
        if r.control == control:
            models.setdefault((r.family, r.size, r.init_seed), []).append(r)
    return [Calibration("random init", f"{f}-{size}, init seed {k}", control, tuple(r.layer for r in sel),
                        sum(r.covers_one for r in sel)) for (f, size, k), sel in models.items()]


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
BASELINE_NAMES = {"twin": "twin", "neighbours": "neighbours", "random": "random sequences", "shuffled": "shuffled copies",
                  "trend": "trend"}


def emerged_models(rows: Sequence[NullRow], control: str = "twin") -> list[tuple]:
    """The random models that pass the emergence criterion under ``control``: ``(family, size,
    init seed, emergence layer)``, sorted. None should."""
    return sorted({(r.family, r.size, r.init_seed, r.emergence_layer) for r in rows
                   if r.control == control and r.emergence_layer is not None})


def stability_runs(lms: dict, Ts: Sequence[int], seeds: int, *, eps: float = 1e-2) -> dict:
    """``{model: {T: result}}``: each model at each copy length ``T`` that fits its context.

    The runs keep their response matrices (``keep_matrices=True``), so that every baseline can
    score the same sequences (:func:`under_baselines`) and smaller numbers of seeds are subsets of
    them (:func:`.induction.rescore_seeds`).
    """
    return {name: {T: induction_scores(lm, T=T, seeds=seeds, eps=eps, keep_matrices=True)
                   for T in Ts if 2 * T + 1 <= lm.max_length}
            for name, lm in lms.items()}


def emergence_stability(runs: dict, seeds: int, *, baseline: str = "twin") -> list[dict]:
    """The emergence layer of each model at each copy length ``T`` and number of seeds.

    Why: a number worth quoting must not move with the setting. ``runs`` are
    :func:`stability_runs`; the smaller numbers of seeds (2 and ``seeds // 2``) are subsets of the
    same runs, so only the estimator changes between them; ``baseline`` rescores them.

    Returns:
        rows ``{model, T, seeds, emergence layer, interval low, interval high, L, rise}``.
    """
    from .induction import rescore_seeds

    rows = []
    for name, by_T in runs.items():
        for T, full in by_T.items():
            res = under_baselines(full, [baseline])[baseline]
            for k in sorted({2, seeds // 2, seeds} - {0, 1}):
                r = res if k == seeds else rescore_seeds(res, range(k))
                lo, hi = r.rise.stream_ci if r.rise and r.rise.stream_ci else (None, None)
                rows.append({"model": name, "T": T, "seeds": k, "emergence layer": r.emergence_layer,
                             "interval low": lo, "interval high": hi, "L": r.n_layers,
                             "rise": r.rise.factor if r.rise else float("nan")})
    return rows


def emergence_spread(stability: Sequence[dict], seeds: int) -> dict:
    """Per model, at ``seeds`` seeds: ``(lowest, highest)`` emergence layer over the ``T`` where the
    rise is resolved, or ``None`` when it is resolved at none (``stability``: :func:`emergence_stability` rows)."""
    layers: dict[str, list] = {}
    for row in stability:
        if row["seeds"] == seeds:
            layers.setdefault(row["model"], []).append(row["emergence layer"])
    found = {m: [v for v in vs if v is not None] for m, vs in sorted(layers.items())}
    return {m: (int(min(vs)), int(max(vs))) if vs else None for m, vs in found.items()}


# --------------------------------------------------------------------------------------
# Calibration on the kind of model the score is used for: trained models too
# --------------------------------------------------------------------------------------

#: where a score "near 1" must lie on the streams of a trained model before its first induction heads
PRE_INDUCTION_BAND = (0.8, 1.25)
#: the share of streams (or layers) each calibration condition must reach
REQUIRED_SHARE = 0.9
#: the conditions a null must meet, in the order the book lists them
CONDITIONS = ("random init", "random init, full size", "no repeat", "before the heads", "emergence")


@dataclass(frozen=True)
class Calibration:
    """One calibration condition of the score, measured on one model under one baseline.

    Attributes:
        condition: one of :data:`CONDITIONS`: ``"random init"`` / ``"random init, full size"``
            (intervals of a random-init model's score cover 1: small models of every family, or
            models with a stand-in's whole configuration), ``"no repeat"`` (intervals of a trained
            model's score on sequences without a repeat cover 1), ``"before the heads"`` (scores of
            the streams up to the block of the model's first induction head by attention pattern lie in
            :data:`PRE_INDUCTION_BAND`), ``"emergence"`` (the emergence layer at every ``T`` lies
            within one stream of the others and of the first head block + 1; one unit per ``T``).
        model: the model's name; baseline: the score's baseline (:data:`.induction.CONTROLS`).
        units: what was counted (read streams, or copy lengths for ``"emergence"``).
        passed: how many of them meet the condition.
    """

    condition: str
    model: str
    baseline: str
    units: tuple[int, ...]
    passed: int

    @property
    def share(self) -> float:
        return self.passed / len(self.units) if self.units else float("nan")

    @property
    def holds(self) -> bool:
        required = 1.0 if self.condition == "emergence" else REQUIRED_SHARE
        return bool(self.units) and self.share >= required

    def misses_plausible(self, confidence: float = 0.95, alpha: float = 0.01) -> bool:
        """Whether the misses are as few as ``confidence`` intervals allow by chance.

        Why: a 95 % interval misses the truth one time in 20, so a handful of streams can fall
        short of :data:`REQUIRED_SHARE` by chance alone. This is the one-sided binomial test that
        the misses are not more than ``1 - confidence`` of the units would give, at level ``alpha``
        (only for the coverage conditions).
        """
        from scipy.stats import binom

        n, misses = len(self.units), len(self.units) - self.passed
        return bool(n) and float(binom.sf(misses - 1, n, 1 - confidence)) > alpha


def _scored(res) -> list[int]:
    return [i for i, l in enumerate(res.read_streams) if l > res.l0 and np.isfinite(res.score[i])]


def pooled(cals: Sequence[Calibration], model: str) -> Calibration:
    """Several calibrations of one condition and baseline as one, their units and passes added.

    Why: the coverage of small random models is a property of the estimator over many models,
    not of each one: a model of four streams that misses one has 75 % coverage by chance.
    """
    if len({(c.condition, c.baseline) for c in cals}) != 1:
        raise ValueError("pooled needs calibrations of one condition and baseline")
    return Calibration(cals[0].condition, model, cals[0].baseline,
                       tuple(u for c in cals for u in c.units), sum(c.passed for c in cals))


def coverage_of_one(res, condition: str, model: str | None = None) -> Calibration:
    """The read streams after ``l0`` whose interval covers 1, as a :class:`Calibration`."""
    idx = _scored(res)
    ok = sum(res.ci_low[i] <= 1.0 <= res.ci_high[i] for i in idx)
    return Calibration(condition, model or res.model, res.control, tuple(int(res.read_streams[i]) for i in idx), int(ok))


def no_repeat_calibration(lm, reference) -> Calibration:
    """Coverage of 1 by a trained model's score on sequences without a repeat.

    The repeated sequences of ``reference`` (an :func:`.induction.induction_scores` result with
    stripes) are replaced by random ones of the same length and seeds; everything else of the
    score stays (:func:`.crosscheck.kind_scores`; :func:`.trend.no_repeat_trend` for the trend
    baseline). A trained model has nothing to copy there.
    """
    from .crosscheck import kind_scores

    res = no_repeat_trend(lm, reference) if reference.control == "trend" else kind_scores(lm, "random", reference)
    return coverage_of_one(res, "no repeat", model=lm.name)


def before_heads_calibration(res, first_block: int, band: tuple[float, float] = PRE_INDUCTION_BAND,
                             model: str | None = None) -> Calibration:
    """Share of the scored streams ``l0+1 .. first_block`` whose score lies in ``band``.

    Why up to ``first_block``: stream ``b`` enters block ``b``, so the streams ``1..b`` of the
    first block ``b`` that holds a top-5 induction head carry no output of such a head yet.
    """
    idx = [i for i in _scored(res) if res.read_streams[i] <= first_block]
    ok = sum(band[0] <= res.score[i] <= band[1] for i in idx)
    return Calibration("before the heads", model or res.model, res.control, tuple(int(res.read_streams[i]) for i in idx),
                       int(ok))


def pre_head_offset(res, first_block: int) -> dict:
    """The pooled offset from 1 of a trained model's scores before its heads: the geometric mean of
    the scores at the streams ``l0+1 .. first_block`` (those of :func:`before_heads_calibration`), with
    the percentile interval of the same mean over the two-level bootstrap of the result's sequences
    and stripe positions (:func:`.shape_check.measured_noise`, the replicates of its own rise).

    Why pooled: each stream's interval covers 1 or not on its own; the streams before the heads share
    one baseline, so a small common offset (a score of 1.06 at every stream) shows in their mean
    long before it shows at any one stream. The replicates keep the correlation between streams.

    Returns:
        ``{"offset", "low", "high", "streams", "confidence", "distinct"}``: the geometric mean, its
        interval, the streams pooled, and whether the interval excludes 1 (``None`` values where no
        scored stream lies before ``first_block + 1``).
    """
    from .shape_check import measured_noise
    from .stats import percentile_interval

    streams, score, boots = measured_noise(res)
    keep = [i for i, l in enumerate(streams) if l <= first_block]
    if not keep:
        return {"offset": None, "low": None, "high": None, "streams": [], "confidence": res.confidence, "distinct": None}
    logs = np.log(boots[:, keep]).mean(axis=1)  # [n_boot]
    low, high = percentile_interval(logs, res.confidence)
    offset, low, high = float(np.exp(np.log(score[keep]).mean())), float(np.exp(low)), float(np.exp(high))
    return {"offset": offset, "low": low, "high": high, "streams": [streams[i] for i in keep],
            "confidence": res.confidence, "distinct": bool(low > 1 or high < 1)}


def median_score(res) -> dict:
    """``{"median", "low", "high", "streams"}``: the median over the scored streams of a result's score, and
    the percentile interval of the same median over the two-level bootstrap of its sequences and stripe
    positions (:func:`.shape_check.measured_noise`; ``None`` values where no stream is scored).

    Why: a random network's median over depth is its bias at a glance ("0.93"), and a bias is a
    statistic; the replicates resample the same sequences at every stream, keeping their correlation.
    """
    from .shape_check import measured_noise
    from .stats import percentile_interval

    streams, score, boots = measured_noise(res)
    if not streams:
        return {"median": None, "low": None, "high": None, "streams": []}
    low, high = percentile_interval(np.median(boots, axis=1), res.confidence)
    return {"median": float(np.median(score)), "low": float(low), "high": float(high), "streams": streams}


def emergence_calibration(results_by_T: dict, first_block: int, model: str | None = None) -> Calibration:
    """Whether the emergence layer at each copy length lies within one stream of the others and of
    ``first_block + 1`` (the stream the first top-5 attention-pattern head writes).

    One unit per ``T``; a ``T`` passes when its emergence layer exists, lies within one stream of
    ``first_block + 1``, and the layers over all ``T`` span at most two streams.
    """
    layers = {T: r.emergence_layer for T, r in sorted(results_by_T.items())}
    found = [l for l in layers.values() if l is not None]
    stable = bool(found) and max(found) - min(found) <= 1
    ok = sum(l is not None and abs(l - (first_block + 1)) <= 1 and stable for l in layers.values())
    first = next(iter(results_by_T.values()))
    return Calibration("emergence", model or first.model, first.control, tuple(layers), int(ok))


def random_like(lm, seed: int = 0):
    """A random-initialised model with ``lm``'s full configuration and tokens, named ``<name> (random init s)``.

    Why: the null of the score at the size the book uses it. Small random models calibrate the
    estimator cheaply, but a bias small enough to hide in their intervals can show at full size,
    where intervals are narrow. The random model draws its sequences from the same ordinary
    tokens as ``lm``.
    """
    import dataclasses

    from .models import build_random_model

    rnd = build_random_model(lm.family, seed=int(seed), config=lm.config, dtype=lm.dtype)
    return dataclasses.replace(lm, model=rnd.model, name=f"{lm.name} (random init {seed})",
                               source=f"random init of {lm.name}'s configuration, seed {seed}")


def under_baselines(res, baselines: Sequence[str] = ("neighbours", "twin")) -> dict:
    """``{baseline: result}``: one run scored under several baselines (:func:`.induction.rescore_baseline`;
    ``"trend"``: :func:`.trend.rescore_trend`, from a twin run)."""
    from .induction import rescore_baseline

    bad = [b for b in baselines if b not in ("neighbours", "twin", "trend")]
    if bad:
        raise InputError(f"baselines must be of neighbours, twin and trend (the ones a run's matrices rescore); got {bad!r}")
    return {b: res if b == res.control else rescore_trend(res) if b == "trend" else rescore_baseline(res, b)
            for b in baselines}


def neighbour_profile(res, offsets: Sequence[int] = range(-6, 7)) -> dict[int, np.ndarray]:
    """How a repeat moves the response to each source near the stripe: ``{o: [n_read]}``.

    For source offset ``o`` from the stripe source ``k``, the mean over seeds and stripe entries of
    ``chi(k + o, T + k - 1)`` on the repeated sequences over the same mean on their twins. Without
    induction or any other path that the repeat opens, every offset is near the same value; in a
    trained model the left offsets (``o < 0``) rise, through the second copy, before induction does.
    Needs a twin run with its matrices (``keep_matrices=True``).
    """
    st = res.stripes
    if st is None or st.matrices is None or "twin" not in st.matrices:
        raise ValueError("neighbour_profile needs a twin run with its matrices (keep_matrices=True)")
    T, off = st.T, st.sources[0]
    out = {}
    for o in offsets:
        ks = [k for k in range(2, T + 1) if 0 <= k - 1 + o < T]
        if not ks:
            continue
        rows, tgts = np.array([k - 1 + o for k in ks]), np.array([T + k - 2 + off for k in ks])
        rep = st.matrices["repeated"][:, :, rows, tgts].mean(axis=(0, 2))  # [n_read]
        twin = st.matrices["twin"][:, :, rows, tgts].mean(axis=(0, 2))
        with np.errstate(divide="ignore", invalid="ignore"):
            out[int(o)] = rep / twin
    return out


def neighbour_lift(res, stream: int, left: Sequence[int] = (-3, -2), right: Sequence[int] = (1, 2), *,
                   n_boot: int = 1000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """How much a repeat lifts the left neighbours of the stripe over the right ones at one stream.

    Why an interval: the lift is the argument against the neighbours baseline (its left offsets
    are inflated in trained models before any induction), so it is quoted with the uncertainty of
    every other statistic of the book. The lift is ``(L_rep / L_twin) / (R_rep / R_twin)``, where
    ``L`` and ``R`` are the mean responses to the ``left`` and ``right`` source offsets at the stripe
    targets of the stream, on the repeated sequences and on their twins; the interval resamples
    seeds and stripe positions (:func:`.stats.two_level_indices`). Needs a twin run with its
    matrices (``keep_matrices=True``).

    Returns:
        ``(lift, low, high)``.
    """
    from .stats import percentile_interval, two_level_indices

    st = res.stripes
    if st is None or st.matrices is None or "twin" not in st.matrices:
        raise ValueError("neighbour_lift needs a twin run with its matrices (keep_matrices=True)")
    if stream not in list(res.read_streams):
        raise ValueError(f"stream {stream!r} is not a read stream of this result ({list(res.read_streams)})")
    i = list(res.read_streams).index(stream)
    T, off = st.T, st.sources[0]
    ks = [k for k in range(2, T + 1) if all(0 <= k - 1 + o < T for o in (*left, *right))]
    tgts = np.array([T + k - 2 + off for k in ks])

    def side(offsets, kind):  # [S, P]: the mean over the offsets, per seed and stripe position
        return np.mean([st.matrices[kind][:, i, np.array([k - 1 + o for k in ks]), tgts] for o in offsets], axis=0)

    parts = [side(left, "repeated"), side(left, "twin"), side(right, "repeated"), side(right, "twin")]

    def lift(means):
        return (means[0] / means[1]) / (means[2] / means[3])

    point = float(lift([p.mean() for p in parts]))
    si, pi = two_level_indices(np.random.default_rng(seed), parts[0].shape[0], parts[0].shape[1], n_boot)
    with np.errstate(divide="ignore", invalid="ignore"):
        boots = lift([p[si[:, :, None], pi].mean(axis=(1, 2)) for p in parts])
    low, high = percentile_interval(boots, confidence, ignore_nan=True)
    return point, float(low), float(high)


def right_trend(res, offsets: Sequence[int] = range(1, 7)) -> tuple[np.ndarray, np.ndarray]:
    """How the repeat's effect changes to the right of the stripe: slope and scatter of the profile, per stream.

    Why: the twin baseline assumes that the repeat moves the stripe source and its right
    neighbours alike. Fitting a line to the log of :func:`neighbour_profile` over the right
    ``offsets`` splits a departure into a *trend* (the line's slope, per offset, in log units:
    the stripe, one offset left of its neighbours, is biased by about minus the slope) and a
    *scatter* from one offset to the next (the root-mean-square residual about the line), which
    no extrapolation removes.

    Args:
        res: a twin run with its matrices (``keep_matrices=True``).
        offsets: three or more right offsets (positive).

    Returns:
        ``(slope, scatter)``, each ``[n_read]`` (``nan`` at streams whose profile is not positive).
    """
    offsets = check_int_list(offsets, "offsets", minimum=1)
    if len(set(offsets)) < 3:
        raise InputError(f"offsets must hold three or more distinct right offsets to split a trend from its scatter; "
                         f"got {offsets!r}")
    prof = neighbour_profile(res, offsets=sorted(set(offsets)))
    x = np.array(sorted(prof), dtype=float)
    if len(x) < 3:
        raise InputError(f"only offsets {x.astype(int).tolist()} fit inside a copy of T = {res.T}; need three")
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.log(np.stack([prof[int(o)] for o in x]))  # [n_off, n_read]
    dx = x - x.mean()
    slope = (dx[:, None] * (y - y.mean(axis=0))).sum(axis=0) / (dx ** 2).sum()
    resid = y - y.mean(axis=0) - slope * dx[:, None]
    scatter = np.sqrt((resid ** 2).sum(axis=0) / (len(x) - 2))
    return slope, scatter


def right_trend_medians(res, offsets: Sequence[int] = range(1, 7), *, n_boot: int = 200, confidence: float = 0.95,
                        seed: int = 0) -> dict:
    """The medians over the scored streams of :func:`right_trend`'s slope and scatter, each with a
    percentile interval over sequences: every replicate resamples the run's sequences (the first
    axis of its matrices, repeats and twins together) and takes both medians again.

    Why: a median over streams of one run is a point value; the sequences are the run's unit of
    resampling, as in every interval of the score. With few sequences the interval is coarse (4
    sequences allow 35 distinct resamples).

    Returns:
        ``{"slope": (median, low, high), "scatter": (median, low, high)}`` in log units per offset.
    """
    import dataclasses

    from .stats import percentile_interval

    check_int(n_boot, "n_boot", minimum=2)
    keep = np.asarray(res.read_streams) > res.l0

    def medians(r) -> np.ndarray:
        slope, scatter = right_trend(r, offsets)
        return np.array([np.nanmedian(slope[keep]), np.nanmedian(scatter[keep])])

    point = medians(res)
    st = res.stripes
    n = next(iter(st.matrices.values())).shape[0]
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        mats = {k: v[idx] for k, v in st.matrices.items()}
        boots.append(medians(dataclasses.replace(res, stripes=dataclasses.replace(st, matrices=mats))))
    low, high = percentile_interval(np.array(boots), confidence, ignore_nan=True)
    return {"slope": (float(point[0]), float(low[0]), float(high[0])),
            "scatter": (float(point[1]), float(low[1]), float(high[1]))}
