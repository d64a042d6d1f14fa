"""The headline numbers of a model, computed once at the canonical setting and cached.

Why one source: the book quotes each model's emergence layer on several pages. Computed on each
page at that page's own sequence length and number of seeds, the "same" number differed from
page to page. Here it is computed once, at :data:`.canonical.CANONICAL`, written to one results
file per model in the cache (``cache_dir()/results/headline-<model>.json``, an entry of
:mod:`.results_cache`), and every page that quotes it reads that file. The file is keyed by the
setting, the hash of the model's weights, the library's source and the versions of torch,
transformers and numpy: a key that no longer matches is recomputed, a damaged file too (each entry
carries the sha256 and size of its payload, verified on every read).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .canonical import CANONICAL, REGIME_SWEEP
from .stats import KeyAccess

__all__ = ["HEADLINE_N_BOOT", "HEADLINE_VERSION", "Headline", "headline", "headline_path", "regime_window"]

#: bootstrap resamples of the headline intervals
HEADLINE_N_BOOT = 1000

#: the layout of the results file; a file of another version is recomputed
HEADLINE_VERSION = 6  # 6: the interval of the stream half way from 1; 5: the step shares of the rise, with their intervals


@dataclass
class Headline(KeyAccess):
    """The headline numbers of one model at the canonical setting (:func:`headline`).

    The layers are read streams and are ``None`` when the score does not rise (:class:`.induction.Rise`).

    Attributes:
        model, n_layers, setting: the model, its number of blocks ``L`` and :data:`.canonical.CANONICAL`.
        emergence_layer, emergence_ci: the middle of the rise and its interval.
        rise_from_one: the first stream half way from 1 to the peak (in log): the rise measured from
            "no induction" instead of from the lowest score; rise_from_one_ci its interval.
        rise_factor, rise_factor_ci: ``S(top) / S(bottom)`` and its paired interval.
        rise_from_one_factor, rise_from_one_factor_ci: the rise from 1 to the top stream, ``S(top) / 1``,
            and its interval (``from_one_factor`` of :class:`.induction.Rise`).
        rise_start, rise_end, rise_width, rise_width_ci: the 10 % and 90 % layers and the width between.
        peak_score, peak_ci, peak_layer: the largest score, its interval and its read stream.
        regime: the universal-regime window at the last stream (:func:`regime_window`).
        linearity: how far the response at ``CANONICAL["eps"]`` lies from the exact linear response
            (:func:`linearity_check`).
        eps_tenth: how much the scores move when eps is divided by 10 (:func:`eps_tenth_check`).
        read_streams, score, ci_low, ci_high: the whole canonical profile (``None`` at ``l0``), so that a
            page quoting it needs no second run.
        top_heads: the model's top-5 heads by attention along the stripe at the canonical ``T`` and
            seeds, ``[block, head, attention, ratio to random sequences]``, best first.
        head_blocks: the blocks of those of them that count as induction heads (ratio at least
            :data:`.attention.INDUCTION_HEAD_MIN_RATIO`, :func:`.attention.induction_heads`), best
            first; empty in a network without induction heads.
        key: what the cached file is valid for; provenance: how it was made.
        step_block, step_share, step_share_ci, top2_blocks, top2_share, top2_share_ci: the block
            that adds most to the log rise, its share of it and the share's paired interval, and the
            same for the two largest blocks together (:func:`.rise.step_shares`); ``None`` without a rise.
    """

    model: str
    n_layers: int
    setting: dict
    emergence_layer: int | None
    emergence_ci: list[int] | None
    rise_from_one: int | None
    rise_factor: float
    rise_factor_ci: list[float]
    rise_start: int | None
    rise_end: int | None
    rise_width: int | None
    rise_width_ci: list[int] | None
    peak_score: float | None
    peak_ci: list[float | None]
    peak_layer: int
    regime: dict
    linearity: dict
    eps_tenth: dict
    read_streams: list[int]
    score: list[float | None]
    ci_low: list[float | None]
    ci_high: list[float | None]
    top_heads: list[list]
    head_blocks: list[int]
    key: dict
    provenance: dict | None = None
    step_block: int | None = None
    step_share: float | None = None
    step_share_ci: list[float] | None = None
    top2_blocks: list[int] | None = None
    top2_share: float | None = None
    top2_share_ci: list[float] | None = None
    rise_from_one_factor: float | None = None
    rise_from_one_factor_ci: list[float] | None = None
    rise_from_one_ci: list[int] | None = None

    @property
    def first_head_block(self) -> int | None:
        """The lowest block among the top-5 attention-pattern heads that are induction heads
        (``None`` when there is none)."""
        return min(self.head_blocks) if self.head_blocks else None

    def to_json_dict(self) -> dict:
        """The cached file's content (plain JSON types, in field order)."""
        return asdict(self)


def headline_path(model: str) -> Path:
    """The results file of ``model`` (a registry name): an entry of :mod:`.results_cache`."""
    from .results_cache import results_dir

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
    return results_dir() / f"headline-{safe}.json"


def _key(lm) -> dict:
    from .induction import CONTROLS
    from .provenance import weights_hash
    from .results_cache import Unkeyable, model_identity
    from .version import __version__

    try:
        weights = model_identity(lm)["weights"]  # hashed once per model and state of its weights
    except Unkeyable:
        weights = weights_hash(lm)
    return {"version": HEADLINE_VERSION, "setting": dict(CANONICAL), "regime_sweep": dict(REGIME_SWEEP),
            "baseline": CONTROLS[0], "n_boot": HEADLINE_N_BOOT, "library": __version__,
            "weights": weights, "dtype": str(lm.dtype).replace("torch.", "")}


def _finite(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def headline(lm) -> Headline:
    """The headline numbers of a loaded model at the canonical setting (cached).

    Args:
        lm: a :class:`~residual_response.models.LoadedModel` (float32 or float64).

    Returns:
        :class:`Headline` (its fields also read by key, ``h["emergence_layer"]``); the layers are
        ``None`` when the score does not rise; ``regime`` is the universal-regime window at the
        last stream (:func:`regime_window`).
    """
    from .checks import check_model
    from .results_cache import cached

    check_model(lm)
    key = _key(lm)
    data = cached("headline", key, lambda: _compute(lm, key), codec="json", name=headline_path(lm.name).stem,
                  valid={"fields": [f.name for f in fields(Headline)]})
    return Headline(**data)


def _compute(lm, key: dict) -> dict:
    """The headline file's content: the canonical induction result and the regime window of ``lm``."""
    from .attention import induction_attention_scores, induction_heads, top_heads
    from .induction import induction_scores
    from .provenance import RunClock, collect

    clock = RunClock()
    res = induction_scores(lm, T=CANONICAL["T"], seeds=CANONICAL["seeds"], eps=CANONICAL["eps"],
                           l0=CANONICAL["layer"], n_boot=HEADLINE_N_BOOT)
    rise = res.rise
    ok = [i for i, s in enumerate(res.score) if s is not None and math.isfinite(s)]
    best = max(ok, key=lambda i: res.score[i])
    att = induction_attention_scores(lm, T=CANONICAL["T"], seeds=CANONICAL["seeds"])
    out = Headline(
        model=lm.name, n_layers=lm.n_layers, setting=dict(CANONICAL),
        emergence_layer=res.emergence_layer,
        emergence_ci=list(rise.stream_ci) if rise.stream_ci else None,
        rise_from_one=rise.from_one,
        rise_from_one_ci=list(rise.from_one_stream_ci) if rise.from_one_stream_ci else None,
        rise_factor=rise.factor, rise_factor_ci=list(rise.factor_ci),
        rise_from_one_factor=rise.from_one_factor, rise_from_one_factor_ci=list(rise.from_one_ci),
        rise_start=rise.start, rise_end=rise.end, rise_width=rise.width,
        rise_width_ci=list(rise.width_ci) if rise.width_ci else None,
        **_steps(rise),
        peak_score=_finite(res.score[best]), peak_ci=[_finite(res.ci_low[best]), _finite(res.ci_high[best])],
        peak_layer=int(res.read_streams[best]),
        regime=regime_window(lm),
        linearity=linearity_check(lm),
        eps_tenth=eps_tenth_check(lm, res),
        read_streams=[int(x) for x in res.read_streams], score=[_finite(x) for x in res.score],
        ci_low=[_finite(x) for x in res.ci_low], ci_high=[_finite(x) for x in res.ci_high],
        top_heads=[[b, h, s, float(att.ratio[b, h])] for b, h, s in top_heads(att, 5)],
        head_blocks=[b for b, _, _, _ in induction_heads(att, 5)],
        key=key,
        provenance=collect(lm, {"T": CANONICAL["T"], "seeds": CANONICAL["seeds"], "eps": CANONICAL["eps"],
                                "layer": CANONICAL["layer"], "n_boot": HEADLINE_N_BOOT, "method": "finite",
                                "control": res.control}, clock=clock),
    )
    return out.to_json_dict()


def _steps(rise) -> dict:
    """The step-share fields of a :class:`.rise.Rise` as the headline keeps them (lists, not tuples)."""
    listed = ("step_share_ci", "top2_blocks", "top2_share_ci")
    return {k: (list(v) if k in listed and v is not None else v) for k, v in
            ((k, getattr(rise, k)) for k in ("step_block", "step_share", "step_share_ci", "top2_blocks", "top2_share",
                                              "top2_share_ci"))}


#: the sequences and sources of :func:`linearity_check`
LINEARITY_CHECK = {"seeds": 4, "n_sources": 4}


def linearity_check(lm, *, T: int | None = None, seeds: int | None = None, eps: float | None = None,
                    n_sources: int | None = None) -> dict:
    """How far the response at ``eps`` lies from the exact linear response, at the last stream.

    Why this and not only the regime window: the window's ends come from one sequence and a 1 %
    tolerance, and move with the tokens drawn; what a measurement at one eps needs to know is how
    far *its* chi lies from the ``eps -> 0`` limit. The limit is computed exactly by forward-mode
    differentiation (``method="jvp"``). Over ``seeds`` repeated sequences of copy length ``T``
    (default: the canonical ones, :data:`LINEARITY_CHECK`) with ``n_sources`` sources each: the
    relative deviation of the mean chi over pairs ``t >= s`` at stream ``L`` (the regime's
    summary curve).

    Returns:
        ``{"eps", "T", "seeds", "n_sources", "deviations", "median", "max"}`` (deviations per sequence).
    """
    from .engine import response
    from .regime import layer_curves
    from .sequences import make_sequence, spread

    T = CANONICAL["T"] if T is None else T
    seeds = LINEARITY_CHECK["seeds"] if seeds is None else seeds
    eps = CANONICAL["eps"] if eps is None else eps
    n = LINEARITY_CHECK["n_sources"] if n_sources is None else n_sources
    devs = []
    for seed in range(seeds):
        tokens = make_sequence(lm, "repeated", T, seed)
        sources = spread(1, len(tokens) - 2, n)
        kw = dict(l0=0, read_streams=[lm.n_layers], sources=sources, seed=seed)
        finite = layer_curves(response(lm, tokens, [eps], **kw))[0, 0]
        linear = layer_curves(response(lm, tokens, None, method="jvp", **kw))[0, 0]
        devs.append(float(abs(finite / linear - 1.0)))
    return {"eps": eps, "T": T, "seeds": seeds, "n_sources": n, "deviations": devs,
            "median": float(statistics.median(devs)), "max": float(max(devs))}


def eps_tenth_check(lm, res) -> dict:
    """The largest relative change of the canonical scores when eps is divided by 10.

    Why: the practical question behind "is eps inside the regime" is whether the numbers the book
    quotes depend on it. Same sequences, sources and directions as ``res``; only eps changes.

    Returns:
        ``{"eps", "eps_small", "max_change", "stream", "emergence_layer"}``: the largest
        ``|S(eps/10) / S(eps) - 1|`` over the read streams after ``l0``, where it is, and the
        emergence layer at ``eps/10``.
    """
    from .induction import induction_scores

    small = induction_scores(lm, T=CANONICAL["T"], seeds=CANONICAL["seeds"], eps=CANONICAL["eps"] / 10,
                             l0=CANONICAL["layer"], n_boot=200)
    changes = [(abs(b / a - 1.0), l) for l, a, b in zip(res.read_streams, res.score, small.score)
               if l > res.l0 and math.isfinite(a) and math.isfinite(b)]
    worst, stream = max(changes)
    return {"eps": CANONICAL["eps"], "eps_small": CANONICAL["eps"] / 10, "max_change": float(worst),
            "stream": int(stream), "emergence_layer": small.emergence_layer}


def regime_window(lm) -> dict:
    """The universal-regime window of ``lm`` at its last stream, from the sweep :data:`.canonical.REGIME_SWEEP`.

    Why in the headline: every headline number is measured at one ``eps``, and it means the
    linear response only if that ``eps`` lies where the response does not depend on it. One
    repeated sequence, a few sources, read at stream ``L`` (where the unembedding reads) keep it
    cheap enough to run with every headline.

    Returns:
        ``{"eps_low", "eps_high", "decades", "n_points", "chi", "tol", "layer", "contains_canonical"}``:
        the widest run of the sweep within ``tol`` of its median (:func:`.regime.universal_regime`);
        ``eps_low``/``eps_high``/``chi`` are ``None`` when no two neighbouring strengths agree.
    """
    from .checks import allow_eps, check_model
    from .regime import log_eps_grid, universal_regime
    from .engine import response
    from .sequences import make_sequence, spread, validate_length

    check_model(lm)
    sw = REGIME_SWEEP
    validate_length(lm, sw["T"])
    tokens = make_sequence(lm, "repeated", sw["T"], sw["seed"])  # [2T + 1]
    grid = log_eps_grid(sw["eps_min"], sw["eps_max"], sw["points_per_decade"])  # [n_eps]
    sources = spread(1, len(tokens) - 2, sw["n_sources"])  # BOS and the last token excluded
    with allow_eps(below_floor=True):  # the sweep starts below the floor on purpose: it finds the regime's bottom
        res = response(lm, tokens, grid, l0=0, read_streams=[lm.n_layers], sources=sources, seed=sw["seed"])
    iv = universal_regime(res, tol=sw["tol"])[-1]
    inside = iv.eps_low is not None and iv.eps_low <= CANONICAL["eps"] <= iv.eps_high
    return {"eps_low": iv.eps_low, "eps_high": iv.eps_high, "decades": iv.decades, "n_points": iv.n_points,
            "chi": _finite(iv.chi), "tol": iv.tol, "layer": int(iv.stream), "contains_canonical": bool(inside)}
