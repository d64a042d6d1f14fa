"""The universal regime as the book's pages show it: tables of curves and windows, and one sweep.

:mod:`.regime` finds the regime of one result; this module shapes results into the tables the
pages plot and quote: each read stream's curve as rows, its regime beside its exact linear response
(JVP), where a strength lies in a window, the window common to a model's streams, and one sweep
over several models and number formats (:func:`sweep_models`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..engine import ResponseResult
from ..regime import RegimeInterval, layer_curves, universal_regime, window_position

__all__ = ["curve_frame", "jvp_by_layer", "regime_frame", "common_windows", "RegimeSweep", "sweep_models"]


def curve_frame(result: ResponseResult, layers=None) -> pd.DataFrame:
    """The summary curves (:func:`layer_curves`) of a sweep as rows ``(layer, eps, chi)``.

    ``layers``: the read layers to keep (default all), so a figure can show a few of many.
    """
    rows = [(l, e, c) for l, curve in zip(result.read_streams, layer_curves(result))
            if layers is None or l in layers for e, c in zip(result.eps, curve)]
    return pd.DataFrame(rows, columns=["layer", "eps", "chi"])


def jvp_by_layer(jvp: ResponseResult) -> dict[int, float]:
    """``{read layer: summary chi}`` of a ``method="jvp"`` result: the plateau the regime must reach."""
    if not isinstance(jvp, ResponseResult):
        raise TypeError(f"jvp must be a ResponseResult, got {type(jvp).__name__}")
    if jvp.method != "jvp":
        raise ValueError(f"jvp_by_layer takes a method='jvp' result, got method={jvp.method!r}")
    return {int(l): float(v) for l, v in zip(jvp.read_streams, layer_curves(jvp)[:, 0])}


def regime_frame(sweep: ResponseResult, jvp_chi: dict[int, float], tol: float = 0.01) -> pd.DataFrame:
    """The regime of every read layer after the perturbed one, beside its JVP.

    Columns ``layer, eps_low, eps_high, n_points, chi, max_dev, tol, decades, chi_jvp,
    rel_diff`` (``chi / chi_jvp - 1``; NaN where no regime was found). Why beside the JVP: the
    plateau *is* the linear response, and ``rel_diff`` is how the book checks it.
    """
    rows = [{"layer": iv.stream, **iv.to_dict()} for iv in universal_regime(sweep, tol=tol) if iv.stream > sweep.l0]
    df = pd.DataFrame(rows, columns=["layer", *(f for f in RegimeInterval.__dataclass_fields__ if f != "stream"), "decades"])
    df["chi_jvp"] = df.layer.map(jvp_chi)
    df["rel_diff"] = df.chi.astype(float) / df.chi_jvp - 1
    return df


def common_windows(table: pd.DataFrame, eps: float) -> pd.DataFrame:
    """Per model (and number format): the window common to its read layers, and where ``eps`` lies.

    ``table``: rows of :func:`regime_frame` with a ``model`` column (and optionally
    ``dtype``). Columns ``model[, dtype], low, high, position`` (:func:`window_position`).
    """
    keys = [k for k in ("model", "dtype") if k in table.columns]
    out = table.groupby(keys, sort=False).agg(low=("eps_low", "max"), high=("eps_high", "min")).reset_index()
    out["position"] = [window_position(eps, lo, hi) for lo, hi in zip(out.low, out.high)]
    return out


@dataclass
class RegimeSweep:
    """An eps sweep of several models at a few read layers each, with their JVPs.

    Attributes:
        curves: rows ``(model, dtype, layer, eps, chi, chi_over_jvp)`` with ``chi > 0`` (a log
            axis cannot show an exact zero; ``n_zero`` counts those left out).
        table: :func:`regime_frame` rows with ``model`` and ``dtype`` in front.
        jvp: ``{(model, layer): chi_jvp}``.
        n_layers: ``{model: L}``.
        seconds: ``{(model, dtype): wall seconds of the sweep}``.
    """

    curves: pd.DataFrame
    table: pd.DataFrame
    jvp: dict
    n_layers: dict
    seconds: dict
    n_zero: int


def sweep_models(lms: dict, *, T: int, eps_grid, n_sources: int, n_layers_shown: int, seed: int = 0,
                 tol: float = 0.01, float64_models=(), device: str = "cpu") -> RegimeSweep:
    """Sweep eps on one repeated sequence per model, at ``n_layers_shown`` layers spread over 1..L.

    ``lms``: ``{name: float32 LoadedModel}``; the models in ``float64_models`` are loaded again
    in float64 and swept on the same tokens, sources and directions, so the two formats differ
    only in their rounding. The JVP (float32) of each layer is the reference of both.
    """
    import time

    from ..checks import allow_eps
    from ..engine import response
    from ..models import load_model
    from ..sequences import make_sequence, spread

    curves, tables, jvp_chi, seconds = [], [], {}, {}
    for name, lm32 in lms.items():
        tokens = make_sequence(lm32, "repeated", T, seed)
        kw = dict(l0=0, read_streams=spread(1, lm32.n_layers, n_layers_shown),
                  sources=spread(1, len(tokens) - 2, n_sources), seed=seed)  # BOS and the last token excluded
        jvp = jvp_by_layer(response(lm32, tokens, method="jvp", **kw))
        jvp_chi.update({(name, l): v for l, v in jvp.items()})
        for dtype in ["float32", "float64"] if name in float64_models else ["float32"]:
            lm = lm32 if dtype == "float32" else load_model(name, device=device, dtype=dtype)
            start = time.perf_counter()
            with allow_eps(below_floor=True):  # a sweep shows where the rounding floor lies
                res = response(lm, tokens, eps_grid, **kw)
            seconds[name, dtype] = time.perf_counter() - start
            curves.append(curve_frame(res).assign(model=name, dtype=dtype))
            tables.append(regime_frame(res, jvp, tol).assign(model=name, dtype=dtype))
    curve_df = pd.concat(curves, ignore_index=True)[["model", "dtype", "layer", "eps", "chi"]]
    n_zero = int((curve_df.chi == 0).sum())
    curve_df = curve_df[curve_df.chi > 0].copy()
    curve_df["chi_over_jvp"] = [c / jvp_chi[m, l] for m, l, c in zip(curve_df.model, curve_df.layer, curve_df.chi)]
    table = pd.concat(tables, ignore_index=True)
    table = table[["model", "dtype", *[c for c in table.columns if c not in ("model", "dtype")]]]
    return RegimeSweep(curve_df, table, jvp_chi, {m: lm.n_layers for m, lm in lms.items()}, seconds, n_zero)
