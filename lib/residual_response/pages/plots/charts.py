"""The book's chart builders: lines on a log axis, heatmaps (with a layer slider), scores over depth.

They take tidy :class:`pandas.DataFrame` s (one row per mark) with the columns named in each
docstring, and return an :class:`altair.Chart` (or layer/concat chart) with tooltips on every
mark; how it looks (size, titles, colours, log y) is one :class:`.style.ChartStyle` argument,
``style=``, whose fields are still accepted as keywords. Keep data small: altair refuses more
than 5000 rows per chart by default (``MaxRowsError``); aggregate before plotting. The figures of each page, built from these, are in
:mod:`.matrices`, :mod:`.training` and :mod:`.figures`; how a chart is drawn offline, in
:mod:`.render`.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

import altair as alt
import pandas as pd

from .style import ChartStyle, resolve_style

__all__ = ["EPS_FORMAT", "line_chart_log_x", "heatmap_with_selector", "log_y", "score_vs_depth", "matrix_heatmap"]


#: d3 format of every perturbation-strength axis and label: ``1e-8``, ``3e-5``, ``1e+0``.
EPS_FORMAT = ".0e"

#: the :class:`ChartStyle` fields each kind of chart draws (any other set is an error)
_SIZE_FIELDS = ("width", "height", "title", "x_title", "y_title", "color_title")
_LINE_FIELDS = (*_SIZE_FIELDS, "x_format", "log_y", "dashed", "scheme")
_DEPTH_FIELDS = (*_SIZE_FIELDS, "log_y", "scheme")
_HEAT_FIELDS = (*_SIZE_FIELDS, "scheme", "diverging", "color_domain")


def _require_columns(df: pd.DataFrame, columns: Iterable[str | None], what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{what}: expected a pandas DataFrame, got {type(df).__name__}")
    if df.empty:
        raise ValueError(f"{what}: the DataFrame is empty")
    missing = [c for c in columns if c is not None and c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; have {list(df.columns)}")


def _field_type(series: pd.Series) -> str:
    """Vega-Lite type for a color/category column: integers are ordered, strings are not."""
    if pd.api.types.is_integer_dtype(series) or pd.api.types.is_bool_dtype(series):
        return "ordinal"
    if pd.api.types.is_numeric_dtype(series):
        return "quantitative"
    return "nominal"


def _param_name(field: str, suffix: str) -> str:
    """A valid, deterministic Vega expression identifier (altair's own are counters)."""
    return re.sub(r"\W", "_", f"{field}_{suffix}")


def _legend(**kwargs: Any) -> alt.Legend:
    """A legend whose title and labels are never cut off (Vega's default limit is 160 px)."""
    return alt.Legend(symbolOpacity=1, titleLimit=0, labelLimit=0, **kwargs)


def _tooltip(df: pd.DataFrame, fields: Sequence[str | None]) -> list[alt.Tooltip]:
    out = []
    for f in dict.fromkeys(f for f in fields if f is not None):
        numeric = pd.api.types.is_float_dtype(df[f])
        out.append(alt.Tooltip(f, format=".4g") if numeric else alt.Tooltip(f))
    return out


def line_chart_log_x(
    df: pd.DataFrame,
    x: str,
    y: str,
    color: str,
    *,
    lo: str | None = None,
    hi: str | None = None,
    style: ChartStyle | None = None,
    **keywords: Any,
) -> alt.LayerChart:
    """Lines of ``y`` against ``x`` on a log ``x`` axis, one line per value of ``color``.

    Both axes end at the data (no rounding out to the next decade), the ``x`` labels use
    ``style.x_format`` (default :data:`EPS_FORMAT`, ``1e-8``, the book's one format for
    strengths), and the legend is titled ``style.color_title`` (default: the column name) without
    truncation. ``style.dashed`` maps values of ``color`` to a dash pattern (e.g.
    ``{"floor": [2, 2]}``), so that a line lying on top of another stays visible. ``style``
    (:class:`ChartStyle`, 420 × 300 px by default) also takes ``title``, ``x_title``,
    ``y_title``, ``log_y`` and ``scheme``; its fields may be given as keywords instead.

    Made for e.g. the response chi against the perturbation size eps, one line per layer.

    Columns: ``x`` (> 0), ``y`` (> 0 if ``log_y``), ``color`` (integers get an ordered
    colour scale, strings a categorical one); optionally ``lo`` and ``hi`` (both or neither),
    the ends of a confidence interval drawn as a shaded band. Click a legend entry to
    highlight its line (shift-click for several); scroll/drag to zoom on ``x``.
    """
    st = resolve_style(style, keywords, "line_chart_log_x", _LINE_FIELDS)
    _require_columns(df, [x, y, color, lo, hi], "line_chart_log_x")
    if (lo is None) != (hi is None):
        raise ValueError("line_chart_log_x: give both lo and hi, or neither")
    if (df[x] <= 0).any():
        raise ValueError(f"line_chart_log_x: column {x!r} must be > 0 on a log axis")
    if st.log_y and (df[y] <= 0).any():
        raise ValueError(f"line_chart_log_x: column {y!r} must be > 0 with log_y=True")

    pick = alt.selection_point(name=_param_name(color, "pick"), fields=[color], bind="legend")
    y_scale = alt.Scale(type="log", nice=False) if st.log_y else alt.Scale(zero=False, nice=False)
    x_enc = alt.X(x, type="quantitative", scale=alt.Scale(type="log", nice=False), title=st.x_title or x,
                  axis=alt.Axis(format=st.x_format or EPS_FORMAT, labelOverlap="greedy"))
    color_enc = _color_lines(df, color, st)
    opacity = alt.when(pick).then(alt.value(1.0)).otherwise(alt.value(0.15))

    base = alt.Chart(df)
    lines = base.mark_line(point=True).encode(
        x=x_enc,
        y=alt.Y(y, type="quantitative", scale=y_scale, title=st.y_title or y),
        color=color_enc,
        opacity=opacity,
        tooltip=_tooltip(df, [color, x, y, lo, hi]),
        **({"strokeDash": alt.StrokeDash(color, type="nominal", legend=None, scale=alt.Scale(
            domain=(values := sorted(df[color].unique().tolist())),
            range=[list(st.dashed.get(v, [1, 0])) for v in values]))} if st.dashed else {}),
    ).add_params(pick)
    layers: list[alt.Chart] = [lines]
    if lo is not None:
        band = base.mark_area(opacity=0.15).encode(
            x=x_enc,
            y=alt.Y(lo, type="quantitative", scale=y_scale, title=st.y_title or y),
            y2=alt.Y2(hi),
            color=color_enc,
            opacity=alt.when(pick).then(alt.value(0.2)).otherwise(alt.value(0.03)),
            tooltip=_tooltip(df, [color, x, lo, hi]),
        )
        layers.insert(0, band)
    zoom = alt.selection_interval(name=_param_name(x, "zoom"), bind="scales", encodings=["x"])
    layers[-1] = layers[-1].add_params(zoom)
    return alt.layer(*layers).properties(**st.size(420, 300))


def _color_lines(df: pd.DataFrame, color: str, st: ChartStyle) -> alt.Color:
    """The colour of lines, one per value of ``color``: viridis for ordered values (or
    ``st.scheme``), Vega's categories otherwise; a legend titled ``st.color_title``."""
    enc = alt.Color(color, type=_field_type(df[color]), title=st.color_title or color, legend=_legend())
    if st.scheme or _field_type(df[color]) == "ordinal":
        enc = enc.scale(scheme=st.scheme or "viridis")
    return enc


def _heat_scale(df: pd.DataFrame, value: str, st: ChartStyle, *, fixed: bool) -> alt.Scale:
    """The colour scale of a heatmap: red-blue centred on 0 if ``st.diverging``, else viridis
    (``st.scheme`` replaces either). ``st.color_domain`` fixes the range; else a diverging scale
    spans ±max|value|, and ``fixed`` pins a sequential one to the data's range (panels that are
    filtered one at a time would otherwise each get their own)."""
    domain = list(st.color_domain) if st.color_domain is not None else None
    if st.diverging:
        m = float(df[value].abs().max()) or 1.0
        return alt.Scale(scheme=st.scheme or "redblue", domain=domain or [-m, m], reverse=True)
    if not domain and fixed:
        domain = [float(df[value].min()), float(df[value].max())]
    return alt.Scale(scheme=st.scheme or "viridis", **({"domain": domain} if domain else {}))


def heatmap_with_selector(
    df: pd.DataFrame,
    x: str,
    y: str,
    value: str,
    selector_field: str,
    *,
    widget: str = "slider",
    init: Any = None,
    style: ChartStyle | None = None,
    **keywords: Any,
) -> alt.Chart:
    """Heatmap of ``value`` over (``x``, ``y``), one panel per ``selector_field`` value.

    Made for e.g. a source-position × target-position response map, with a slider over
    layers. Only one panel is shown at a time; a widget below the chart picks it.

    Columns: ``x`` and ``y`` (discrete, e.g. positions or tokens), ``value`` (numeric),
    ``selector_field`` (the panel, e.g. the layer). ``widget`` is ``"slider"`` (numeric,
    evenly spaced values) or ``"select"`` (a dropdown, any values). ``init`` is the panel
    shown first (default: the smallest). The colour scale is the same for all panels so
    they can be compared; ``style.diverging`` centres it on 0 with a red-blue scheme.
    ``style`` (:class:`ChartStyle`, 320 × 320 px by default) also takes ``title``, the axis
    and colour titles (default: the column names), ``scheme`` and ``color_domain``; its fields
    may be given as keywords instead.
    """
    st = resolve_style(style, keywords, "heatmap_with_selector", _HEAT_FIELDS)
    _require_columns(df, [x, y, value, selector_field], "heatmap_with_selector")
    options = sorted(df[selector_field].unique().tolist())
    init = options[0] if init is None else init
    if init not in options:
        raise ValueError(f"heatmap_with_selector: init={init!r} is not in {selector_field!r}")
    if widget == "slider":
        if not pd.api.types.is_numeric_dtype(df[selector_field]):
            raise ValueError("heatmap_with_selector: a slider needs a numeric selector_field")
        steps = {b - a for a, b in zip(options, options[1:])}
        if len(steps) > 1:
            raise ValueError(
                "heatmap_with_selector: slider values must be evenly spaced; use widget='select'"
            )
        step = steps.pop() if steps else 1
        binding = alt.binding_range(min=options[0], max=options[-1], step=step, name=f"{selector_field} ")
    elif widget == "select":
        binding = alt.binding_select(options=options, name=f"{selector_field} ")
    else:
        raise ValueError(f"heatmap_with_selector: widget must be 'slider' or 'select', not {widget!r}")

    sel = alt.param(name=_param_name(selector_field, "select"), value=init, bind=binding)
    return (
        alt.Chart(df)
        .mark_rect()
        .encode(
            x=alt.X(x, type="ordinal", title=st.x_title or x),
            y=alt.Y(y, type="ordinal", title=st.y_title or y),
            color=alt.Color(value, type="quantitative", scale=_heat_scale(df, value, st, fixed=True),
                            title=st.color_title or value),
            tooltip=_tooltip(df, [selector_field, x, y, value]),
        )
        .add_params(sel)
        .transform_filter(alt.datum[selector_field] == sel)
        .properties(**st.size(320, 320))
    )


def log_y(chart: alt.LayerChart) -> alt.LayerChart:
    """The same layered chart with a log y axis on every layer (scores span 0.5 to tens).

    Why a helper: a layered chart keeps one y encoding per layer, so the scale has to be set on
    each of them; setting it on the outer chart has no effect.
    """
    for layer in chart.layer:
        layer.encoding.y.scale = alt.Scale(type="log", nice=False)  # the axis ends at the data
    return chart


def score_vs_depth(
    df: pd.DataFrame,
    *,
    depth: str = "rel_depth",
    score: str = "score",
    lo: str | None = "lo",
    hi: str | None = "hi",
    model: str = "model",
    rules: Sequence[float] = (1.0, 2.0),
    band: pd.DataFrame | None = None,
    band_label: str = "negative controls",
    style: ChartStyle | None = None,
    **keywords: Any,
) -> alt.LayerChart:
    """A score with confidence-interval error bars against relative depth, one colour per model.

    Columns: ``depth`` (relative depth in [0, 1], layer / number of layers), ``score``,
    ``model`` (name), and optionally ``lo``/``hi`` (CI ends; pass ``lo=None, hi=None`` if
    there are none). Dashed horizontal rules mark the reference levels ``rules`` (1 and 2).
    ``band`` (optional, e.g. from :func:`..tables.control_envelope`): a grey shaded area
    under the lines, columns ``rel_depth``, ``band_lo``, ``band_hi`` (labelled ``band_label``
    in its tooltip). ``style`` (:class:`ChartStyle`, 420 × 300 px by default) takes ``title``,
    ``x_title`` (default "relative depth"), ``y_title`` (default: the ``score`` column's name),
    ``color_title`` (default: the ``model`` column's name; e.g. "condition" where the lines are
    ablation conditions rather than models), ``scheme`` and ``log_y`` (as :func:`log_y` does);
    its fields may be given as keywords instead.
    """
    st = resolve_style(style, keywords, "score_vs_depth", _DEPTH_FIELDS)
    _require_columns(df, [depth, score, model, lo, hi], "score_vs_depth")
    if (lo is None) != (hi is None):
        raise ValueError("score_vs_depth: give both lo and hi, or neither")
    if ((df[depth] < 0) | (df[depth] > 1)).any():
        raise ValueError(f"score_vs_depth: column {depth!r} must lie in [0, 1]")

    x_title, y_title = st.x_title or "relative depth", st.y_title or score
    x_enc = alt.X(depth, type="quantitative", scale=alt.Scale(domain=[0, 1]), title=x_title)
    color_enc = alt.Color(model, type="nominal", title=st.color_title or model, legend=_legend())
    if st.scheme:
        color_enc = color_enc.scale(scheme=st.scheme)
    tooltip = _tooltip(df, [model, depth, score, lo, hi])
    base = alt.Chart(df)
    layers: list[Any] = []
    if band is not None:
        _require_columns(band, ["rel_depth", "band_lo", "band_hi"], "score_vs_depth band")
        layers.append(
            alt.Chart(band.assign(band=band_label))
            .mark_area(color="gray", opacity=0.3, interpolate="monotone")
            .encode(
                x=alt.X("rel_depth", type="quantitative", scale=alt.Scale(domain=[0, 1]), title=x_title),
                y=alt.Y("band_lo", type="quantitative", title=y_title),
                y2=alt.Y2("band_hi"),
                tooltip=_tooltip(band.assign(band=band_label), ["band", "rel_depth", "band_lo", "band_hi"]),
            )
        )
    if rules:
        rule_df = pd.DataFrame({"reference": [float(r) for r in rules]})
        layers.append(
            alt.Chart(rule_df)
            .mark_rule(strokeDash=[4, 4], color="gray")
            .encode(y=alt.Y("reference", type="quantitative"), tooltip=["reference"])
        )
    if lo is not None:
        layers.append(
            base.mark_errorbar(ticks=True).encode(
                x=x_enc, y=alt.Y(lo, type="quantitative", title=y_title),
                y2=alt.Y2(hi), color=color_enc, tooltip=tooltip,
            )
        )
    layers.append(
        base.mark_line(point=True).encode(
            x=x_enc, y=alt.Y(score, type="quantitative", title=y_title),
            color=color_enc, tooltip=tooltip,
        )
    )
    chart = alt.layer(*layers).properties(**st.size(420, 300))
    return log_y(chart) if st.log_y else chart


def matrix_heatmap(
    df: pd.DataFrame,
    x: str,
    y: str,
    value: str,
    *,
    style: ChartStyle | None = None,
    **keywords: Any,
) -> alt.Chart:
    """Heatmap of ``value`` over a discrete (``x``, ``y``) grid.

    Made for e.g. the section map score(l0, l) (x = l, y = l0) or a layer × head map.
    Columns: ``x``, ``y`` (discrete), ``value`` (numeric). ``style.diverging`` centres the
    colours on 0 with a red-blue scheme; otherwise viridis over the data's range.
    ``style.color_domain`` (the old keyword: ``domain``) fixes the colour range (e.g. one range
    for several panels). ``style`` (:class:`ChartStyle`, 320 × 320 px by default) also takes
    ``title``, the axis and colour titles (default: the column names) and ``scheme``; its fields
    may be given as keywords instead. Tick labels stay upright and are thinned where they would
    overlap, so a 30-layer axis stays legible.
    """
    st = resolve_style(style, keywords, "matrix_heatmap", _HEAT_FIELDS, renames={"domain": "color_domain"})
    _require_columns(df, [x, y, value], "matrix_heatmap")
    axis = dict(labelAngle=0, labelOverlap="parity", labelFontSize=11)
    return (
        alt.Chart(df)
        .mark_rect()
        .encode(
            x=alt.X(x, type="ordinal", title=st.x_title or x, axis=alt.Axis(**axis)),
            y=alt.Y(y, type="ordinal", title=st.y_title or y, axis=alt.Axis(**axis)),
            color=alt.Color(value, type="quantitative", scale=_heat_scale(df, value, st, fixed=False),
                            title=st.color_title or value),
            tooltip=_tooltip(df, [y, x, value]),
        )
        .properties(**st.size(320, 320))
    )
