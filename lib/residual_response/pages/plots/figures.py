"""Figures of the emergence, cross-check, null and section-map pages."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import altair as alt
import numpy as np
import pandas as pd

from ..tables.frames import ABLATION_LABELS, ablation_frame, section_map_frame
from .charts import _legend, _require_columns, matrix_heatmap, score_vs_depth
from .style import ChartStyle

__all__ = ["emergence_scores", "attention_beside_response", "ABLATION_COLOURS", "ablation_panel", "in_rows", "null_scores",
           "emergence_stability", "section_maps"]


def emergence_scores(scores: pd.DataFrame, trained: Sequence[str], band: pd.DataFrame, *,
                     setting: str) -> alt.HConcatChart:
    """Induction score of the trained models over the controls' band, beside every model's
    duplicate-token score, against relative depth (log y).

    ``scores``: :func:`..tables.score_frame` rows; ``band``: :func:`..tables.control_envelope`;
    ``setting`` (:func:`..tables.setting_text`) is the second line of each title (one line would
    widen the panels beyond a page). With no trained model the
    left panel shows the controls themselves.
    """
    _require_columns(scores, ["model", "rel_depth", "score", "lo", "hi", "dup", "dup_lo", "dup_hi"], "emergence_scores")
    dup = scores.drop(columns=["score", "lo", "hi"]).rename(columns={"dup": "score", "dup_lo": "lo", "dup_hi": "hi"})
    left = scores[scores.model.isin(trained)] if len(trained) else scores
    panel = ChartStyle(width=250, log_y=True)
    return (
        score_vs_depth(left, band=band, style=replace(panel, title=["induction (lag T − 1)", setting], y_title="score S"))
        | score_vs_depth(dup, style=replace(panel, title=["duplicate token (lag T)", setting], y_title="score D"))
    ).configure_legend(orient="bottom", columns=3)


def attention_beside_response(att_mean, res, *, name: str, setting: str) -> alt.HConcatChart:
    """One model's attention on the induction stripe per block and head (heatmap), beside the
    response score of the stream each block writes into (``S`` at stream ``b + 1`` on row ``b``).

    ``att_mean``: ``[L, H]`` mean attention (:func:`.attention.induction_attention_scores`);
    ``res``: the model's :class:`.induction.InductionResult`.
    """
    L, H = att_mean.shape
    att_df = pd.DataFrame([{"block": b, "head": h, "attention": float(att_mean[b, h])}
                           for b in range(L) for h in range(H)])
    resp_df = pd.DataFrame([{"model": name, "block": l - 1, "score": s, "lo": lo, "hi": hi}
                            for l, s, lo, hi in zip(res.read_streams, res.score, res.ci_low, res.ci_high) if l > res.l0])
    height = max(120, min(14 * L, 360))
    heat = matrix_heatmap(att_df, "head", "block", "attention", style=ChartStyle(
        title=f"{name}: attention on the stripe", width=max(100, 12 * H), height=height))
    log_x = alt.Scale(type="log", nice=False)
    y_block = alt.Y("block:O", title="block b", axis=alt.Axis(labelOverlap="parity", labelAngle=0))
    resp = alt.Chart(resp_df)
    line = alt.layer(
        alt.Chart(pd.DataFrame({"reference": [1.0, 2.0]})).mark_rule(strokeDash=[4, 4], color="gray").encode(
            x=alt.X("reference:Q", scale=log_x)),
        resp.mark_rule().encode(x=alt.X("lo:Q", scale=log_x), x2="hi:Q", y=y_block),
        resp.mark_point(filled=True).encode(
            x=alt.X("score:Q", scale=log_x, title="response score S (stream b + 1)"), y=y_block,
            tooltip=["block", *(alt.Tooltip(f"{c}:Q", format=".3g") for c in ("score", "lo", "hi"))]),
    ).properties(width=180, height=height, title=[f"{name}: response score", setting])
    return alt.hconcat(heat, line).resolve_scale(y="shared")


#: the colours of the ablation chart: reserved ones for the named conditions, grey for the random draws
ABLATION_COLOURS = {"none": "#222222", "top": "#d95f02", "attention": "#1b9e77", "outside": "#7570b3",
                    "random": "#a6a6a6"}


def ablation_panel(study, n_layers: int, *, title: str | list[str]) -> alt.LayerChart:
    """Score against relative depth without ablation, with the top-k heads by response and by
    attention pattern ablated (reserved colours, with their intervals), and with each draw of k
    random heads ablated (thin grey lines, no intervals), log y (:class:`.crosscheck.AblationStudy`,
    rows of :func:`..tables.ablation_frame`). A ``title`` list is set in lines (a panel is as wide
    as its title); the colour scale is the same in every panel, so panels share one legend."""
    df = ablation_frame(study, n_layers)
    labels = [ABLATION_LABELS[k] for k in ABLATION_COLOURS]
    colour = alt.Color("condition:N", title="ablation", scale=alt.Scale(domain=labels, range=list(ABLATION_COLOURS.values())),
                       legend=_legend(labelFontSize=12, titleFontSize=12, symbolStrokeWidth=3, orient="bottom",
                                      direction="vertical"))
    x = alt.X("rel_depth:Q", title="relative depth", scale=alt.Scale(domain=[0, 1]))
    y = alt.Y("score:Q", title="score S", scale=alt.Scale(type="log", nice=False))
    tip = ["condition", "draw", *(alt.Tooltip(f"{c}:Q", format=".3g") for c in ("rel_depth", "score", "lo", "hi"))]
    named, rand = df[~df.random], df[df.random]
    return alt.layer(
        alt.Chart(pd.DataFrame({"score": [1.0, 2.0]})).mark_rule(strokeDash=[4, 4], color="gray").encode(y=y),
        alt.Chart(rand).mark_line(strokeWidth=1, opacity=0.6).encode(x=x, y=y, color=colour, detail="draw:N", tooltip=tip),
        alt.Chart(named).mark_errorbar(ticks=True).encode(
            x=x, y=alt.Y("lo:Q", title="score S", scale=alt.Scale(type="log", nice=False)), y2="hi:Q", color=colour,
            tooltip=tip),
        alt.Chart(named).mark_line(point=True, strokeWidth=2).encode(x=x, y=y, color=colour, tooltip=tip),
    ).properties(width=220, height=260, title=title)


def in_rows(panels: Sequence[Any], per_row: int = 2, *, colour: str = "independent") -> alt.VConcatChart:
    """Panels ``per_row`` to a row; ``colour``: ``"independent"`` (each panel its own colour
    legend) or ``"shared"`` (one legend, for panels with one colour scale)."""
    if colour not in ("independent", "shared"):
        raise ValueError(f"colour must be 'independent' or 'shared', got {colour!r}")
    rows = [alt.hconcat(*panels[i:i + per_row]).resolve_scale(color=colour)
            for i in range(0, len(panels), per_row)]
    return alt.vconcat(*rows).resolve_scale(color=colour)


def null_scores(null: pd.DataFrame, *, setting: str) -> alt.FacetChart:
    """Scores of random-initialised models per read layer, with intervals, one panel per baseline.

    ``null``: :func:`.null.null_frame` rows. The y axis (log) spans the intervals and 1, with a
    little room, and no more: a calibrated baseline scatters around the dotted 1, and a bias of a
    few percent (0.91 against 0.98) must show, which a fixed range of decades would flatten.
    """
    _require_columns(null, ["rel_depth", "score", "ci_low", "ci_high", "family", "size", "model", "layer", "baseline"],
                     "null_scores")
    # the points and intervals take their data from the facet (so each panel holds its own baseline's
    # rows); the dotted 1 carries its own and is drawn in every panel
    base = alt.Chart().encode(x=alt.X("rel_depth:Q", title="relative depth l/L", scale=alt.Scale(domain=[0, 1.02])))
    low = float(null.ci_low[null.ci_low > 0].min()) if (null.ci_low > 0).any() else 0.9
    high = float(null.ci_high[np.isfinite(null.ci_high)].max()) if np.isfinite(null.ci_high).any() else 1.1
    log_scale = alt.Scale(type="log", domain=[min(low, 0.95) / 1.03, max(high, 1.05) * 1.03], nice=False)
    y_title = f"induction score S ({setting})"
    panel = alt.layer(
        alt.Chart(pd.DataFrame({"score": [1.0]})).mark_rule(strokeDash=[2, 3], color="gray").encode(y="score:Q"),
        base.mark_errorbar(opacity=0.35).encode(y=alt.Y("ci_low:Q", scale=log_scale, title=y_title), y2="ci_high:Q",
                                                color=alt.Color("family:N", title="architecture")),
        base.mark_point(filled=True, size=30).encode(
            y=alt.Y("score:Q", title=y_title, scale=log_scale), color="family:N",
            shape=alt.Shape("size:N", title="size"),
            tooltip=["model", "layer", *(alt.Tooltip(f"{c}:Q", format=".3f") for c in ("score", "ci_low", "ci_high"))]),
    ).properties(width=150, height=220)
    # two panels to a row: three baselines side by side would not fit a page's text column
    return panel.facet(facet=alt.Facet("baseline:N", title=None), columns=2, data=null)


def emergence_stability(stability: pd.DataFrame, *, eps_text: str) -> alt.FacetChart:
    """Emergence layer and its interval against the copy length ``T``, one colour per number of
    seeds, one panel per model (:func:`~residual_response.null.emergence_stability` rows, or their
    frame; no point: no rise)."""
    d = pd.DataFrame(stability).dropna(subset=["emergence layer"]).assign(seeds=lambda x: x.seeds.astype(str))
    enc = dict(x=alt.X("T:O", title=f"copy length T (ε = {eps_text})"), xOffset=alt.XOffset("seeds:N"),
               color=alt.Color("seeds:N", title="seeds"))
    return alt.layer(
        alt.Chart(d).mark_rule().encode(y=alt.Y("interval low:Q", title="emergence layer (stream)"),
                                        y2="interval high:Q", **enc),
        alt.Chart(d).mark_point(filled=True, size=50).encode(
            y="emergence layer:Q", tooltip=["model", "T", "seeds", "emergence layer", "interval low", "interval high"],
            **enc),
    ).properties(width=220, height=200).facet(column=alt.Column("model:N", title=None)).resolve_scale(y="independent")


def section_maps(maps: dict, *, setting: str) -> alt.VConcatChart:
    """log2 of the section map ``S(l0, l)``, one panel per model (``maps``: name ->
    :class:`.induction.SectionMap`), one diverging colour scale for all."""
    frames = {name: section_map_frame(sm) for name, sm in maps.items()}
    m = max(float(f["log2 score"].abs().max()) for f in frames.values()) or 1.0
    return alt.vconcat(*[
        matrix_heatmap(frames[name], "read layer l", "perturbed layer l0", "log2 score", style=ChartStyle(
            diverging=True, color_domain=[-m, m], title=f"{name} ({setting})",
            width=min(480, max(200, 16 * (len(sm.read_streams)))), height=max(90, 24 * len(sm.l0s))))
        for name, sm in maps.items()
    ]).resolve_scale(color="shared")
