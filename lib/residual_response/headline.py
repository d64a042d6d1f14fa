"""The headline numbers of a model, computed once at the canonical setting and cached.

Why one source: the book quotes each model's emergence layer on several pages. Computed on each
page at that page's own sequence length and number of seeds, the "same" number differed from
page to page. Here it is computed once, at :data:`.canonical.CANONICAL`, written to one results
file per model in the cache (``cache_dir()/results/headline-<model>.json``), and every page that
quotes it reads that file. The file is keyed by the setting, the library version and the hash
of the model's weights: a key that no longer matches is recomputed, a damaged file too (each
file has its record of size and sha256 beside it, ``<file>.manifest``, verified on every read).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .canonical import CANONICAL, REGIME_SWEEP
from .stats import KeyAccess

__all__ = ["HEADLINE_N_BOOT", "HEADLINE_VERSION", "Headline", "headline", "headline_path", "regime_window"]

#: bootstrap resamples of the headline intervals
HEADLINE_N_BOOT = 1000

#: the layout of the results file; a file of another version is recomputed
HEADLINE_VERSION = 2


@dataclass
class Headline(KeyAccess):
    """The headline numbers of one model at the canonical setting (:func:`headline`).

    The layers are read streams and are ``None`` when the score does not rise (:class:`.induction.Rise`).

    Attributes:
        model, n_layers, setting: the model, its number of blocks ``L`` and :data:`.canonical.CANONICAL`.
        emergence_layer, emergence_ci: the middle of the rise and its interval.
        rise_factor, rise_factor_ci: ``S(top) / S(bottom)`` and its paired interval.
        rise_start, rise_end, rise_width, rise_width_ci: the 10 % and 90 % layers and the width between.
        peak_score, peak_ci, peak_layer: the largest score, its interval and its read stream.
        regime: the universal-regime window at the last stream (:func:`regime_window`).
        key: what the cached file is valid for; provenance: how it was made.
    """

    model: str
    n_layers: int
    setting: dict
    emergence_layer: int | None
    emergence_ci: list[int] | None
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
    key: dict
    provenance: dict | None = None

    def to_json_dict(self) -> dict:
        """The cached file's content (plain JSON types, in field order)."""
        return asdict(self)


def headline_path(model: str) -> Path:
    """The results file of ``model`` (a registry name)."""
    from .models import cache_dir

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
    return cache_dir() / "results" / f"headline-{safe}.json"


def _key(lm) -> dict:
    from . import __version__
    from .provenance import weights_hash

    return {"version": HEADLINE_VERSION, "setting": dict(CANONICAL), "regime_sweep": dict(REGIME_SWEEP),
            "n_boot": HEADLINE_N_BOOT, "library": __version__,
            "weights": weights_hash(lm), "dtype": str(lm.dtype).replace("torch.", "")}


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
    from .induction import induction_scores
    from .io import write_json_atomic
    from .models.cache import CacheRepairWarning, verify_cache_file, write_file_manifest
    from .provenance import RunClock, collect

    from .checks import check_model

    check_model(lm)
    path = headline_path(lm.name)
    key = _key(lm)
    problem = verify_cache_file(path)  # the file and its <file>.manifest (size, sha256)
    if problem is None:
        try:
            cached = json.loads(path.read_text())
            if cached.get("key") == key and set(cached) == {f.name for f in fields(Headline)}:
                return Headline(**cached)
        except (OSError, ValueError, AttributeError, RecursionError):
            pass  # unreadable although recorded: compute it
    elif path.exists():  # damaged (or written before files had a record): recomputed once, said once
        warnings.warn(f"cache entry {path} is damaged ({problem}); recomputing it", CacheRepairWarning, stacklevel=2)
    clock = RunClock()
    res = induction_scores(lm, T=CANONICAL["T"], seeds=CANONICAL["seeds"], eps=CANONICAL["eps"],
                           layer=CANONICAL["layer"], n_boot=HEADLINE_N_BOOT)
    rise = res.rise
    ok = [i for i, s in enumerate(res.score) if s is not None and math.isfinite(s)]
    best = max(ok, key=lambda i: res.score[i])
    out = Headline(
        model=lm.name, n_layers=lm.n_layers, setting=dict(CANONICAL),
        emergence_layer=res.emergence_layer,
        emergence_ci=list(rise["layer_ci"]) if rise["layer_ci"] else None,
        rise_factor=rise["factor"], rise_factor_ci=list(rise["factor_ci"]),
        rise_start=rise["start"], rise_end=rise["end"], rise_width=rise["width"],
        rise_width_ci=list(rise["width_ci"]) if rise["width_ci"] else None,
        peak_score=_finite(res.score[best]), peak_ci=[_finite(res.ci_low[best]), _finite(res.ci_high[best])],
        peak_layer=int(res.layers[best]),
        regime=regime_window(lm),
        key=key,
        provenance=collect(lm, {"T": CANONICAL["T"], "seeds": CANONICAL["seeds"], "eps": CANONICAL["eps"],
                                "layer": CANONICAL["layer"], "n_boot": HEADLINE_N_BOOT, "method": "finite",
                                "control": res.control}, clock=clock),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, out.to_json_dict())
    write_file_manifest(path)  # last: a file with its record is complete
    return out


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
        res = response(lm, tokens, grid, layer=0, read_layers=[lm.n_layers], sources=sources, seed=sw["seed"])
    iv = universal_regime(res, tol=sw["tol"])[-1]
    inside = iv.eps_low is not None and iv.eps_low <= CANONICAL["eps"] <= iv.eps_high
    return {"eps_low": iv.eps_low, "eps_high": iv.eps_high, "decades": iv.decades, "n_points": iv.n_points,
            "chi": _finite(iv.chi), "tol": iv.tol, "layer": int(iv.layer), "contains_canonical": bool(inside)}
