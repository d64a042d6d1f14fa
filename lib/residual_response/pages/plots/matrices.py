"""Response matrices with their stripes, and eps sweeps beside their exact linear response: the
charts the response-matrix, universal-regime and model pages share.
"""

from __future__ import annotations

from typing import Sequence

import altair as alt
import pandas as pd

from .charts import _field_type, _require_columns, _tooltip, heatmap_with_selector, line_chart_log_x
from .style import ChartStyle

__all__ = ["STRIPE_NAMES", "stripe_frame", "stripe_lines", "response_matrix_chart", "sweep_with_jvp"]


#: the two stripes of a response matrix, as the legends name them
STRIPE_NAMES = ("lag T-1 (induction)", "lag T (duplicate)")


def stripe_frame(layout) -> pd.DataFrame:
    """Rows ``(source, target, stripe)`` of both stripes of an :class:`~residual_response.sequences.InductionLayout`."""
    pairs = [(layout.induction_sources, layout.induction_targets), (layout.duplicate_sources, layout.duplicate_targets)]
    return pd.DataFrame([(int(s), int(t), name) for name, (src, tgt) in zip(STRIPE_NAMES, pairs)
                         for s, t in zip(src, tgt)], columns=["source", "target", "stripe"])


def stripe_lines(layout) -> alt.Chart:
    """White lines over a (target, source) heatmap: solid at lag T-1, dashed at lag T.

    Why lines and not outlines: over a heatmap with a slider they mark where the stripes must
    appear at every layer, so the eye compares the cells under them with their neighbours.
    """
    return alt.Chart(stripe_frame(layout)).mark_line(color="white", strokeWidth=1, opacity=0.8).encode(
        x=alt.X("target:O"), y=alt.Y("source:O"), detail="stripe:N",
        strokeDash=alt.StrokeDash("stripe:N", scale=alt.Scale(range=[[5, 3], [1, 0]]), title="stripe",
                                  legend=alt.Legend(symbolStrokeColor="black", symbolType="stroke")),
    )


def response_matrix_chart(frame: pd.DataFrame, layout, *, init: int | None = None,
                          domain: Sequence[float] | None = None, width: int = 460, height: int = 200) -> alt.LayerChart:
    """A response matrix ``log10 chi`` over (target, source), a widget over the read layers, the stripes on top.

    ``frame``: rows of :func:`..tables.matrix_frame`. The widget is a slider when the layers are
    evenly spaced, a dropdown otherwise; ``init`` is the layer shown first (default the last).
    ``domain`` fixes the colour range, so that two matrices (repeated, control) compare cell by cell.
    """
    layers = sorted(frame["layer"].unique().tolist())
    widget = "slider" if len({b - a for a, b in zip(layers, layers[1:])}) <= 1 else "select"
    lo, hi = domain if domain is not None else (frame["log10 chi"].min(), frame["log10 chi"].max())
    style = ChartStyle(width=width, height=height, color_title="log10 χ", color_domain=[float(lo), float(hi)])
    heat = heatmap_with_selector(frame, "target", "source", "log10 chi", "layer", widget=widget,
                                 init=layers[-1] if init is None else init, style=style)
    return alt.layer(heat, stripe_lines(layout))


def sweep_with_jvp(curves: pd.DataFrame, jvp: pd.DataFrame, series: str, *, paired: bool = False,
                   title: str | None = None, color_title: str | None = None, width: int = 420,
                   height: int = 300) -> alt.LayerChart:
    """Mean chi against eps, one line per ``series``, each with its JVP as a dashed horizontal rule.

    ``curves``: columns ``eps``, ``chi`` (> 0), ``series``; ``jvp``: columns ``series``,
    ``chi_jvp``. The plateau of a curve lying on its rule is the universal regime. ``paired``:
    a paired palette (tableau20), so that e.g. float32 and float64 of one layer share a hue.
    """
    _require_columns(jvp, [series, "chi_jvp"], "sweep_with_jvp")
    lines = line_chart_log_x(curves, "eps", "chi", series, style=ChartStyle(
        log_y=True, title=title, color_title=color_title, x_title="perturbation strength ε",
        y_title="mean χ over pairs t ≥ s", width=width, height=height))
    color = alt.Color(series, type=_field_type(jvp[series]))
    if _field_type(jvp[series]) == "ordinal":
        color = color.scale(scheme="viridis")
    rules = alt.Chart(jvp).mark_rule(strokeDash=[6, 3], strokeWidth=1.5).encode(
        y=alt.Y("chi_jvp:Q"), color=color, tooltip=_tooltip(jvp, [*jvp.columns[:-1], "chi_jvp"]),
    )
    if paired:
        for layer in [*lines.layer, rules]:
            layer.encoding.color.scale = alt.Scale(scheme="tableau20")
    return alt.layer(lines, rules)
