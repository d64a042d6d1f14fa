"""Tidy tables of results, the shape the book's charts and tables take.

Why a module of its own: every page turns the same arrays (response matrices, section maps) into
long-form tables for altair and into summaries it quotes in the text. Doing it here keeps the
notebooks free of analysis code and lets the tests check the arithmetic (the distance profile's
diagonal averages, the section map's one-block steps) on arrays whose answer is known.

Conventions: ``chi`` is a response matrix stack ``[n_read, n_src, N]`` (read layer, source row,
target position) as in :class:`.induction.StripeData` (``matrices[kind]``) averaged over seeds; ``read_layers``
names its first axis and ``sources`` its second (the source *positions*).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .induction import SectionMap

__all__ = ["spread", "matrix_frame", "distance_profile", "stripe_mean", "section_map_frame", "section_steps",
           "NA", "styled", "fmt_eps"]

#: How every table of the book shows a missing value (no result, not applicable).
NA = "—"


def spread(lo: int, hi: int, n: int) -> list[int]:
    """``n`` integers evenly spread over ``lo..hi`` (both ends included), without repeats.

    Why: pages show "a few layers spread over the depth" or "a few sources spread over the
    sequence"; rounding ``linspace`` can repeat a value when ``n`` exceeds the range, so the
    result may be shorter than ``n``.
    """
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (lo, hi, n)):
        raise TypeError(f"spread takes integers, got lo={lo!r}, hi={hi!r}, n={n!r}")
    if n < 1 or hi < lo:
        raise ValueError(f"spread needs n >= 1 and hi >= lo, got lo={lo}, hi={hi}, n={n}")
    return sorted({int(x) for x in np.linspace(lo, hi, n).round()})


def _check_stack(chi: np.ndarray, read_layers: Sequence[int], sources: Sequence[int]) -> np.ndarray:
    chi = np.asarray(chi)
    if chi.ndim != 3 or chi.shape[:2] != (len(read_layers), len(sources)):
        raise ValueError(f"chi must be [n_read={len(read_layers)}, n_src={len(sources)}, N], got shape {chi.shape}")
    return chi


def _layer_index(read_layers: Sequence[int], layer: int) -> int:
    layers = [int(l) for l in read_layers]
    if int(layer) not in layers:
        raise ValueError(f"layer {layer!r} was not read; read layers: {layers}")
    return layers.index(int(layer))


def matrix_frame(chi: np.ndarray, read_layers: Sequence[int], sources: Sequence[int], layers: Sequence[int],
                 floor: float = 1e-12) -> pd.DataFrame:
    """Rows ``(layer, source, target, log10 chi)`` for every target ``t >= s`` of the given layers.

    Entries before the source are exact zeros (causality) and left out, so a heatmap leaves them
    blank; values below ``floor`` are clipped to it before the log.
    """
    chi = _check_stack(chi, read_layers, sources)
    N = chi.shape[-1]
    rows = [
        (int(l), int(s), t, float(np.log10(max(chi[_layer_index(read_layers, l), j, t], floor))))
        for l in layers
        for j, s in enumerate(sources)
        for t in range(int(s), N)
    ]
    return pd.DataFrame(rows, columns=["layer", "source", "target", "log10 chi"])


def distance_profile(chi: np.ndarray, read_layers: Sequence[int], sources: Sequence[int],
                     layers: Sequence[int]) -> pd.DataFrame:
    """Mean response at each distance ``d = t - s >= 1`` over the sources, per layer.

    Rows ``(layer, distance, mean chi, n)``: the average of ``chi[l](s, s + d)`` over the sources
    whose target ``s + d`` lies inside the sequence (``n`` of them). This is how far, and how
    strongly, a perturbation has spread after ``l`` blocks.
    """
    chi = _check_stack(chi, read_layers, sources)
    N = chi.shape[-1]
    rows = []
    for l in layers:
        m = chi[_layer_index(read_layers, l)]  # [n_src, N]
        for d in range(1, N - min(int(s) for s in sources)):
            vals = [m[j, int(s) + d] for j, s in enumerate(sources) if int(s) + d < N]
            rows.append((int(l), d, float(np.mean(vals)), len(vals)))
    return pd.DataFrame(rows, columns=["layer", "distance", "mean chi", "n"])


def stripe_mean(chi: np.ndarray, read_layers: Sequence[int], layer: int, rows: Sequence[int],
                targets: Sequence[int]) -> float:
    """Mean of ``chi[layer]`` over the entries ``(rows[i], targets[i])`` (rows index the sources axis)."""
    rows, targets = np.asarray(rows, dtype=int), np.asarray(targets, dtype=int)
    if rows.shape != targets.shape or rows.size == 0:
        raise ValueError(f"rows and targets must be non-empty and of one length, got {rows.size} and {targets.size}")
    chi = np.asarray(chi)
    return float(chi[_layer_index(read_layers, layer), rows, targets].mean())


def section_map_frame(sm: SectionMap) -> pd.DataFrame:
    """Rows ``(perturbed layer l0, read layer l, log2 score, score)`` of the finite, positive cells."""
    return pd.DataFrame(
        [(int(l0), l, float(np.log2(v)), float(v)) for l0, row in zip(sm.perturb_layers, sm.score)
         for l, v in enumerate(row) if np.isfinite(v) and v > 0],
        columns=["perturbed layer l0", "read layer l", "log2 score", "score"],
    )


def section_steps(sm: SectionMap, model: str | None = None) -> pd.DataFrame:
    """Per perturbed layer ``l0``: the block whose one-block increase of the score is largest.

    Block ``b`` turns stream ``b`` into stream ``b + 1``; the score at ``l0`` itself counts as 1
    (no stripe before any block has run). Columns: ``model, l0, largest step at block, step,
    max score, CI low, CI high, at layer`` (the row's largest score with its interval). Rows with
    no read layer after ``l0`` are left out.
    """
    rows = []
    for i, l0 in enumerate(sm.perturb_layers):
        row = np.array(sm.score[i], dtype=float)  # [L+1]
        row[l0] = 1.0
        reads = np.arange(l0 + 1, len(row))
        if len(reads) == 0 or not np.isfinite(row[reads]).any():
            continue
        steps = row[reads] - row[reads - 1]
        k = int(np.nanargmax(steps))
        top = int(reads[np.nanargmax(row[reads])])
        rows.append({
            "model": model if model is not None else sm.model, "l0": int(l0),
            "largest step at block": int(reads[k] - 1), "step": float(steps[k]),
            "max score": float(sm.score[i, top]), "CI low": float(sm.ci_low[i, top]),
            "CI high": float(sm.ci_high[i, top]), "at layer": top,
        })
    return pd.DataFrame(rows, columns=["model", "l0", "largest step at block", "step", "max score", "CI low",
                                       "CI high", "at layer"])


def fmt_eps(x: float | None, digits: int = 2) -> str:
    """A perturbation strength as the book writes it everywhere: ``1e-8``, ``3.2e-6``, ``1e+0``.

    The same form as the charts' axis labels (d3 ``~e``), so a value in the text, a table and
    a tick reads alike; ``None``/NaN give :data:`NA`.
    """
    if x is None or not np.isfinite(x):
        return NA
    mantissa, exponent = f"{float(x):.{digits - 1}e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
    sign = "-" if exponent.startswith("-") else "+"
    return f"{mantissa}e{sign if sign == '-' else '+'}{int(exponent[1:])}" if int(exponent) else f"{mantissa}e+0"


def styled(df: pd.DataFrame, formats: dict | str | None = None, *, uuid: str, caption: str | None = None,
           precision: int = 2):
    """The book's table: no index, one mark for missing values, floats with ``precision`` digits.

    Why one helper: tables rendered straight from pandas show ``nan`` in one column and ``None``
    in the next, six decimals ("18.000000") and an index column; every page shows them this way
    instead. ``formats`` is a Styler format (a dict column -> format string or callable, or one
    string for all columns); columns not named keep ``precision`` decimals if float, integers
    stay integers. ``uuid`` fixes the HTML ids (stable output for nbval). Returns a pandas
    ``Styler``; the missing mark is :data:`NA`.
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"styled: expected a DataFrame, got {type(df).__name__}")
    sty = df.style.format(precision=precision, na_rep=NA, thousands=None)
    if isinstance(formats, dict):  # only the named columns: the others keep `precision`
        sty = sty.format(formats, na_rep=NA, subset=list(formats))
    elif formats is not None:
        sty = sty.format(formats, na_rep=NA)
    if caption:
        sty = sty.set_caption(caption)
    return sty.hide(axis="index").set_uuid(uuid).set_table_attributes('class="dataframe"')


# --- tables of the cross-checks and analysis modules (stats worker) ---

from .checks import check_int  # noqa: E402

__all__ += ["control_envelope"]


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
