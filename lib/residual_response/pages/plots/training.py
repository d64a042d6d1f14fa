"""The toy model's training (notebooks/toy_model.md): the phase change three ways, and the response
matrix before and after it.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from ...induction import EMERGENCE_THRESHOLD
from ..tables.frames import matrix_frame
from .charts import _legend, matrix_heatmap
from .style import ChartStyle

__all__ = ["toy_phase_chart", "toy_matrix_pair"]


def toy_phase_chart(pc) -> alt.VConcatChart:
    """The phase change three ways against the training step, one panel each, shared x axis.

    ``pc`` is a :class:`.dynamics.PhaseChange`. Top: the copy losses of the training log at every
    checkpoint, with the loss of a uniform guess (dashed). Middle: the attention score of each
    block on repeated sequences (solid) and, for the same head, on the controls (dashed), each with
    its bootstrap interval over the sequences. Bottom:
    the response score of each read layer with its bootstrap interval (log scale; dotted: 1 and
    2, a reference line). A red rule marks the phase change step in every panel.
    """
    df = pc.rows
    x = alt.X("step:Q", title="training step", scale=alt.Scale(domain=[0, pc.last], nice=False))
    phase_rule = alt.Chart(pd.DataFrame({"step": [pc.phase]})).mark_rule(color="firebrick", strokeWidth=1.5).encode(
        x="step:Q", tooltip=[alt.Tooltip("step:Q", title="phase change step")])

    loss_long = pc.loss.melt("step", var_name="copy", value_name="loss")
    loss_panel = alt.layer(
        alt.Chart(loss_long).mark_line(point=alt.OverlayMarkDef(size=12)).encode(
            x=x, y=alt.Y("loss:Q", title="copy loss (nats)"),
            color=alt.Color("copy:N", scale=alt.Scale(range=["#7f7f7f", "#1f77b4"]), title="loss on"),
            tooltip=["copy", "step", alt.Tooltip("loss:Q", format=".3f")]),
        alt.Chart(pd.DataFrame({"loss": [pc.log["uniform_loss"]]})).mark_rule(strokeDash=[4, 4], color="gray")
        .encode(y="loss:Q"),
        phase_rule,
    ).properties(width=460, height=150, title="loss from the training log")

    att_long = pd.concat([
        df.assign(sequence="repeated", value=df.attention, lo=df.attention_lo, hi=df.attention_hi),
        df.assign(sequence="random", value=df.attention_control, lo=df.attention_control_lo, hi=df.attention_control_hi),
    ])[["step", "layer", "sequence", "value", "lo", "hi", "attention_head"]].assign(
        block=lambda d: "block " + (d.layer - 1).astype(str))
    # a row's `layer` is the stream l that block l - 1 writes: the colours name the block b = l - 1
    layer_colors = alt.Scale(domain=[f"block {b}" for b in range(pc.L)], scheme="set1")
    att_color = alt.Color("block:N", scale=layer_colors, title="block")
    dash_legend = alt.Legend(symbolType="stroke", symbolStrokeColor="black", symbolStrokeWidth=2, symbolOpacity=1)
    att_panel = alt.layer(
        alt.Chart(att_long).mark_line().encode(  # points in a layer of their own: they would hide the dash legend
            x=x, y=alt.Y("value:Q", title="attention on stripe"), color=att_color, detail="sequence:N",
            strokeDash=alt.StrokeDash("sequence:N", scale=alt.Scale(domain=["repeated", "random"], range=[[1, 0], [4, 3]]),
                                      title="sequence", legend=dash_legend)),
        alt.Chart(att_long).mark_errorbar().encode(x=x, y="lo:Q", y2="hi:Q", color=att_color),  # 95 % over the sequences
        alt.Chart(att_long).mark_point(filled=True, size=25).encode(
            x=x, y="value:Q", color=att_color,
            tooltip=["block", "sequence", "step", alt.Tooltip("value:Q", format=".3f"), alt.Tooltip("lo:Q", format=".3f"),
                     alt.Tooltip("hi:Q", format=".3f"), "attention_head"]),
        phase_rule,
    ).properties(width=460, height=150, title="attention-pattern induction score (max over heads)")

    resp = df.dropna(subset=["response"]).assign(block=lambda d: "block " + (d.layer - 1).astype(str))
    log_scale = alt.Scale(type="log", domain=[min(0.5, float(resp.response_lo.min())), 1.2 * float(resp.response_hi.max())],
                          nice=False)
    resp_panel = alt.layer(
        alt.Chart(pd.DataFrame({"score": [1.0, EMERGENCE_THRESHOLD]})).mark_rule(strokeDash=[1, 3], color="gray")
        .encode(y="score:Q"),
        alt.Chart(resp).mark_errorbar(ticks=True).encode(
            x=x, y=alt.Y("response_lo:Q", scale=log_scale, title="response score S"), y2="response_hi:Q",
            color=alt.Color("block:N", scale=layer_colors, title="block (read after it)", legend=_legend())),
        alt.Chart(resp).mark_line(point=True).encode(
            x=x, y=alt.Y("response:Q", scale=log_scale), color=alt.Color("block:N", scale=layer_colors),
            tooltip=["block", "step", alt.Tooltip("response:Q", format=".2f"), alt.Tooltip("response_lo:Q", format=".2f"),
                     alt.Tooltip("response_hi:Q", format=".2f")]),
        phase_rule,
    ).properties(width=460, height=170, title="response-based induction score (lag T − 1)")

    return alt.vconcat(loss_panel, att_panel, resp_panel).resolve_scale(color="independent", strokeDash="independent")


def toy_matrix_pair(pc) -> alt.HConcatChart:
    """The repeated sequence's response matrix log10 χ at the last read layer, before and after, one colour scale.

    ``pc`` is a :class:`.dynamics.PhaseChange`: its matrices at :attr:`before` (left) and
    :attr:`last` (right), mean over the seeds, sources of the first copy against all targets.
    """
    trace = pc.trace
    read_last = trace["read_layers"][-1]
    frames = {step: matrix_frame(trace["matrices"][step]["repeated"], trace["read_layers"], trace["sources"], [read_last])
              for step in (pc.before, pc.last)}
    domain = [min(f["log10 chi"].min() for f in frames.values()), max(f["log10 chi"].max() for f in frames.values())]

    def panel(step, label):
        return matrix_heatmap(frames[step], "target", "source", "log10 chi", style=ChartStyle(
            width=230, height=170, title=f"{label}: step {step}", color_title="log10 χ", color_domain=domain))

    return (panel(pc.before, "before") | panel(pc.last, "after")).configure_legend(orient="right")
