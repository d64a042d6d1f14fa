"""The method in one picture: the repeated sequence, the kicked source and the two stripes.

Why a module of its own: the schematic on the book's first pages must show exactly what the
code does, so it is drawn from the code's own objects, not by hand. The tokens come from
:func:`.sequences.make_sequence`, the positions of the two stripes from
:class:`.sequences.InductionLayout`, and the measured panel from :func:`.engine.response`.
If the convention of either ever changes (BOS or not, where the stripes lie), the picture
changes with it.

Tables (one row per mark, as altair wants them):

* :func:`sequence_frame`: one row per token position of ``[BOS, a_1 .. a_T, a_1 .. a_T]``;
* :func:`cell_frame`: one row per (source, target) cell of a response matrix, with the kind
  of the cell (causal zero, upper triangle, induction stripe, duplicate-token stripe).
"""

from __future__ import annotations

from typing import Sequence

import altair as alt
import numpy as np
import pandas as pd

from ..resultfile import renamed
from ..sequences import InductionLayout

__all__ = ["CELL_KINDS", "sequence_frame", "cell_frame", "sequence_chart", "cells_chart", "measured_chart",
           "method_schematic"]

#: Kinds of response-matrix cells, in legend order, with their colours.
CELL_KINDS = {
    "zero by causality (t < s)": "#f0f0f0",
    "other targets (t >= s)": "#c6dbef",
    "induction stripe (t - s = T - 1)": "#d62728",
    "duplicate-token stripe (t - s = T)": "#ff7f0e",
}
_ROLE_COLOURS = {"BOS": "#bdbdbd", "first copy": "#9ecae1", "second copy": "#a1d99b"}
_SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
_MARK_ROWS = ["token", "kick (source s)", "induction target", "duplicate-token target"]


def _check_layout(layout: InductionLayout, tokens: Sequence[int], k: int) -> None:
    tokens = list(tokens)
    if len(tokens) != layout.length:
        raise ValueError(f"tokens have length {len(tokens)}, the layout expects {layout.length}")
    first = tokens[layout.offset : layout.offset + layout.T]
    second = tokens[layout.offset + layout.T :]
    if first != second:
        raise ValueError("tokens are not [BOS, a, a]: the second copy differs from the first")
    if not (isinstance(k, (int, np.integer)) and 2 <= k <= layout.T):
        raise ValueError(f"k must be an int in 2..T ({layout.T}), so that a_k has an induction target; got {k!r}")


def sequence_frame(layout: InductionLayout, tokens: Sequence[int], k: int) -> pd.DataFrame:
    """One row per position: ``position``, ``label`` (BOS, a₁ .. a_T in subscripts), ``role``, ``token_id``, ``mark``.

    ``mark`` names what the position is for the kick of ``a_k`` (``k`` in 2..T): the kicked
    source (first ``a_k``), its induction target (second ``a_{k-1}``), its duplicate-token target
    (second ``a_k``), or empty.
    """
    _check_layout(layout, tokens, k)
    src = int(layout.induction_sources[k - 2])
    ind = int(layout.induction_targets[k - 2])
    dup = int(layout.duplicate_targets[k - 1])
    assert int(layout.duplicate_sources[k - 1]) == src  # one source, two stripes
    rows = []
    for pos, tok in enumerate(tokens):
        if pos < layout.offset:
            label, role = "BOS", "BOS"
        else:
            j = pos - layout.offset
            label, role = "a" + str(j % layout.T + 1).translate(_SUBSCRIPTS), "first copy" if j < layout.T else "second copy"
        mark = {src: "kick (source s)", ind: "induction target", dup: "duplicate-token target"}.get(pos, "")
        rows.append({"position": pos, "label": label, "role": role, "token_id": int(tok), "mark": mark})
    return pd.DataFrame(rows)


def cell_frame(layout: InductionLayout) -> pd.DataFrame:
    """One row per cell (``source``, ``target``) of an ``N x N`` response matrix, with its ``kind``."""
    ind = set(zip(layout.induction_sources.tolist(), layout.induction_targets.tolist()))
    dup = set(zip(layout.duplicate_sources.tolist(), layout.duplicate_targets.tolist()))
    kinds = list(CELL_KINDS)
    rows = []
    for s in range(layout.length):
        for t in range(layout.length):
            kind = kinds[0] if t < s else kinds[2] if (s, t) in ind else kinds[3] if (s, t) in dup else kinds[1]
            rows.append({"source": s, "target": t, "kind": kind})
    return pd.DataFrame(rows)


def sequence_chart(seq: pd.DataFrame, width: int = 520) -> alt.LayerChart:
    """The token strip and, below it, where the kick goes: one row per role of a position."""
    n = len(seq)
    x = alt.X("position:O", title="token position", axis=alt.Axis(labelAngle=0))
    strip = alt.Chart(seq).encode(x=x, y=alt.Y("row:N", title=None, sort=_MARK_ROWS))
    tokens = strip.transform_calculate(row="'token'")
    boxes = tokens.mark_rect(stroke="white").encode(
        color=alt.Color("role:N", scale=alt.Scale(domain=list(_ROLE_COLOURS), range=list(_ROLE_COLOURS.values())),
                        legend=alt.Legend(title="token", orient="bottom")),
        tooltip=["position", "label", "role", "token_id"],
    )
    labels = tokens.mark_text(fontSize=12).encode(text="label:N")
    marked = seq[seq["mark"] != ""].assign(row=lambda d: d["mark"])
    dots = (
        alt.Chart(marked)
        .mark_point(filled=True, size=160, shape="triangle-up")
        .encode(
            x=x, y=alt.Y("row:N", sort=_MARK_ROWS),
            color=alt.Color("row:N", scale=alt.Scale(domain=_MARK_ROWS[1:],
                                                     range=["#1f77b4", CELL_KINDS[list(CELL_KINDS)[2]],
                                                            CELL_KINDS[list(CELL_KINDS)[3]]]),
                            legend=None),
            tooltip=["position", "label", "mark"],
        )
    )
    return alt.layer(boxes, labels, dots).resolve_scale(color="independent").properties(
        width=min(width, 40 * n), height=4 * 24, title="the sequence [BOS, a, a] and one kick"
    )


def cells_chart(cells: pd.DataFrame, source: int, size: int = 195) -> alt.LayerChart:
    """The response-matrix cells coloured by kind, the kicked source's row outlined."""
    x = alt.X("target:O", title="target t", axis=alt.Axis(labelAngle=0, labelOverlap="parity"))
    y = alt.Y("source:O", title="source s", axis=alt.Axis(labelOverlap="parity"))
    base = alt.Chart(cells).mark_rect(stroke="white", strokeWidth=0.5).encode(
        x=x, y=y,
        color=alt.Color("kind:N", scale=alt.Scale(domain=list(CELL_KINDS), range=list(CELL_KINDS.values())),
                        legend=alt.Legend(title="cell", orient="bottom", columns=1, labelLimit=0)),
        tooltip=["source", "target", "kind"],
    )
    row = alt.Chart(cells[cells["source"] == source]).mark_rect(fill=None, stroke="black", strokeWidth=1.5).encode(
        x=x, y=y, tooltip=["source", "target", "kind"]
    )
    return alt.layer(base, row).properties(width=size, height=size, title="where the stripes lie")


def measured_chart(chi: np.ndarray, layout: InductionLayout, model: str, stream: int, size: int = 195) -> alt.LayerChart:
    """A measured response matrix ``chi [N, N]`` (log colour), the two stripes outlined."""
    chi = np.asarray(chi, dtype=float)
    if chi.shape != (layout.length, layout.length):
        raise ValueError(f"chi has shape {chi.shape}, expected {(layout.length, layout.length)}")
    cells = cell_frame(layout)
    cells["chi"] = chi[cells["source"], cells["target"]]
    upper = cells[(cells["target"] >= cells["source"]) & (cells["chi"] > 0)]
    x = alt.X("target:O", title="target t", axis=alt.Axis(labelAngle=0, labelOverlap="parity"))
    y = alt.Y("source:O", title="source s", axis=alt.Axis(labelOverlap="parity"))
    heat = alt.Chart(upper).mark_rect().encode(
        x=x, y=y,
        color=alt.Color("chi:Q", scale=alt.Scale(type="log", scheme="greys"),
                        legend=alt.Legend(title="chi", orient="bottom", format=".0e")),
        tooltip=["source", "target", alt.Tooltip("chi:Q", format=".3g"), "kind"],
    )
    stripes = cells[cells["kind"].isin(list(CELL_KINDS)[2:])]
    outline = alt.Chart(stripes).mark_rect(fill=None, strokeWidth=2).encode(
        x=x, y=y,
        stroke=alt.Stroke("kind:N", scale=alt.Scale(domain=list(CELL_KINDS)[2:], range=list(CELL_KINDS.values())[2:]),
                          legend=None),
        tooltip=["source", "target", "kind"],
    )
    return alt.layer(heat, outline).properties(width=size, height=size, title=["measured on " + model, f"at layer {stream}"])


def method_schematic(seq: pd.DataFrame, cells: pd.DataFrame, source: int, measured: alt.LayerChart | None = None,
                     size: int = 195) -> alt.VConcatChart:
    """The sequence strip above the matrix of cell kinds (and, beside it, a measured matrix)."""
    lower = cells_chart(cells, source, size)
    if measured is not None:
        lower = alt.hconcat(lower, measured).resolve_scale(color="independent", stroke="independent")
    return alt.vconcat(sequence_chart(seq, width=2 * size + 40), lower).resolve_scale(color="independent")


# --------------------------------------------------------------------------------------------
# The schematic measured: one kick per source of a repeated sequence, read at the last layer,
# and the figure with the numbers its page quotes.
# --------------------------------------------------------------------------------------------

from dataclasses import dataclass  # noqa: E402

__all__ += ["stripe_contrast", "stripe_contrast_over_seeds", "Schematic", "measure_schematic"]


def stripe_contrast(chi: np.ndarray, layout: InductionLayout) -> float:
    """Mean chi on the induction stripe over the mean of the other cells above the diagonal.

    ``chi [N, N]`` (source row, target column). The diagonal and the duplicate-token stripe are
    left out of the reference, so the ratio says how much the induction stripe stands out of the
    plain decay with distance: far above 1 with induction heads, near 1 without.
    """
    chi = np.asarray(chi, dtype=float)
    if chi.shape != (layout.length, layout.length):
        raise ValueError(f"chi has shape {chi.shape}, expected {(layout.length, layout.length)}")
    upper = np.triu(np.ones_like(chi, dtype=bool))
    stripe = np.zeros_like(upper)
    stripe[layout.induction_sources, layout.induction_targets] = True
    others = upper & ~stripe & ~np.eye(len(chi), dtype=bool)
    others[layout.duplicate_sources, layout.duplicate_targets] = False
    return float(chi[stripe].mean() / chi[others].mean())


@dataclass
class Schematic:
    """The method's figure for one model and the numbers its page quotes.

    Attributes:
        chart: the sequence strip, the cell kinds and the measured matrix (:func:`method_schematic`).
        layout: where the stripes lie; tokens: ``[N]`` the sequence.
        source, ind_target, dup_target: the kicked position and its two targets.
        chi: ``[N, N]`` the measured matrix at the last stream ``stream`` (``L``).
        ratio: :func:`stripe_contrast` of ``chi``.
    """

    chart: alt.VConcatChart
    layout: InductionLayout
    tokens: list[int]
    source: int
    ind_target: int
    dup_target: int
    stream: int
    chi: np.ndarray
    ratio: float

    layer = renamed("stream", "layer")


def measure_schematic(lm, T: int, k: int, eps: float, seed: int = 0) -> Schematic:
    """Draw the schematic of ``[BOS, a, a]`` (``|a| = T``, kick on the first ``a_k``) and measure it on ``lm``.

    Every source is kicked with strength ``eps`` at stream 0 and read at the last stream ``L``;
    ``seed`` draws the tokens and the directions.
    """
    from ..engine import response
    from ..sequences import induction_layout, make_sequence

    tokens = make_sequence(lm, "repeated", T, seed=seed)
    layout = induction_layout(lm, T)
    seq = sequence_frame(layout, tokens.tolist(), k)
    marked = dict(zip(seq["mark"], seq["position"]))
    L = lm.n_layers
    chi = response(lm, tokens, [eps], l0=0, read_streams=[L], seed=seed).chi[0, 0]  # [N, N]
    source = int(marked["kick (source s)"])
    chart = method_schematic(seq, cell_frame(layout), source, measured_chart(chi, layout, lm.name, L))
    return Schematic(chart, layout, tokens.tolist(), source, int(marked["induction target"]),
                     int(marked["duplicate-token target"]), L, chi, stripe_contrast(chi, layout))


def stripe_contrast_over_seeds(lm, T: int, eps: float, seeds: int, *, n_boot: int = 1000):
    """:func:`stripe_contrast` at the last stream on ``seeds`` repeated sequences (seeds
    ``0 .. seeds - 1``), as a mean over sequences with a 95 % bootstrap interval
    (:func:`..stats.bootstrap_mean`; ``per_seed`` holds each sequence's ratio).

    Why: the schematic's picture is one sequence, and one sequence's ratio says nothing about
    how much another would differ; the interval over sequences does.
    """
    from ..checks import check_int
    from ..engine import response
    from ..sequences import induction_layout, make_sequence
    from ..stats import bootstrap_mean

    check_int(seeds, "seeds", minimum=2)
    layout, L = induction_layout(lm, T), lm.n_layers
    ratios = [stripe_contrast(response(lm, make_sequence(lm, "repeated", T, seed=s), [eps], l0=0, read_streams=[L],
                                       seed=s).chi[0, 0], layout) for s in range(seeds)]  # [seeds]
    return bootstrap_mean(np.asarray(ratios), n_boot=n_boot)
