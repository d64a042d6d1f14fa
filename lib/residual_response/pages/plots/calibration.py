"""Figures of the null page: how a repeat moves the response to each source near the stripe."""

from __future__ import annotations

import altair as alt
import pandas as pd

from .charts import _require_columns

__all__ = ["neighbour_profile_chart"]


def neighbour_profile_chart(frame: pd.DataFrame, *, title: str) -> alt.LayerChart:
    """Repeat / twin ratio of the response against the source offset from the stripe source, one
    line per read stream (:func:`~residual_response.pages.tables.neighbour_profile_frame`); offset 0
    (the stripe) and -1 (the duplicate stripe) marked by vertical rules."""
    _require_columns(frame, ["offset", "stream", "ratio"], "neighbour_profile_chart")
    rules = pd.DataFrame({"offset": [0, -1], "what": ["induction stripe", "duplicate stripe"]})
    return alt.layer(
        alt.Chart(rules).mark_rule(color="gray", strokeDash=[3, 3]).encode(x="offset:Q"),
        alt.Chart(frame).mark_line(point=True).encode(
            x=alt.X("offset:Q", title="source offset o from the stripe source k"),
            y=alt.Y("ratio:Q", title="mean χ repeated / twin", scale=alt.Scale(type="log")),
            color=alt.Color("stream:N", title=None, sort=None, legend=alt.Legend(orient="bottom")),
            tooltip=["offset", "stream", alt.Tooltip("ratio:Q", format=".3f")]),
    ).properties(width=460, height=220, title=title)
