"""How a chart looks, apart from what it shows: :class:`ChartStyle`.

Why a class: the chart builders of :mod:`.charts` shared a dozen presentational keywords each
(size, titles, colour scheme, log scale, ...), repeated in every signature with slightly different
defaults. One frozen value carries them instead: a figure can build one style and reuse or vary it
(``dataclasses.replace``), and each builder's signature is left with the data it draws. The old
keywords still work, as shorthands that override the style's fields (:func:`resolve_style`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Mapping, Sequence

__all__ = ["ChartStyle"]


@dataclass(frozen=True)
class ChartStyle:
    """The presentational options of a chart built by :mod:`.charts`; every field is optional.

    ``None`` (and ``False``) mean "the builder's default", so that one style can serve builders
    whose defaults differ (a line chart is 420 × 300 px, a heatmap 320 × 320). A builder given a
    field it cannot draw (``dashed`` on a heatmap, say) raises ``ValueError`` rather than drop it.

    Frozen, so that a style shared by several figures cannot be changed by one of them; vary it
    with ``dataclasses.replace(style, title=...)``.
    """

    #: the chart's size in pixels (default: the builder's)
    width: int | None = None
    height: int | None = None
    #: the chart's title; a list is one line per item (a long title would widen the chart)
    title: str | Sequence[str] | None = None
    #: the axis and legend titles (default: the column names; "relative depth" for a depth axis)
    x_title: str | None = None
    y_title: str | None = None
    color_title: str | None = None
    #: d3 format of the x labels of a log-x line chart (default :data:`.charts.EPS_FORMAT`, ``1e-8``)
    x_format: str | None = None
    #: a log y axis (its values must be > 0); the axis ends at the data
    log_y: bool = False
    #: a dash pattern per colour value (e.g. ``{"floor": [2, 2]}``), so a line lying on another shows
    dashed: Mapping[Any, Sequence[int]] | None = None
    #: the Vega colour scheme (default: viridis for ordered colours, redblue when diverging)
    scheme: str | None = None
    #: a colour scale centred on 0 (a red-blue scheme), for signed values
    diverging: bool = False
    #: fixes the colour range, e.g. one range for several panels that are to be compared
    color_domain: Sequence[float] | None = None

    def size(self, width: int, height: int) -> dict[str, Any]:
        """The chart properties width, height and (where there is one) title; ``width`` and
        ``height`` are the builder's defaults."""
        return {"width": width if self.width is None else self.width,
                "height": height if self.height is None else self.height,
                **({"title": self.title} if self.title else {})}


_FIELDS = {f.name: f.default for f in fields(ChartStyle)}


def _unset(value: Any) -> bool:
    """Whether a field holds its default (``None`` or ``False``; not ``==``, which an array breaks)."""
    return value is None or (isinstance(value, bool) and not value)


def resolve_style(style: ChartStyle | None, keywords: Mapping[str, Any], what: str, uses: Sequence[str],
                  renames: Mapping[str, str] | None = None) -> ChartStyle:
    """``style`` (default: all defaults) with the builder ``what``'s old keyword arguments applied.

    Why: callers written before :class:`ChartStyle` pass e.g. ``width=250, y_title="score"``;
    those keywords override the style's fields (``renames`` maps an old name to its field, e.g.
    ``domain`` to ``color_domain``). A keyword that is no field is a ``TypeError``, as it was; a
    field set but not among ``uses`` (what the builder draws) is a ``ValueError``.
    """
    renames = renames or {}
    named = {renames.get(k, k): v for k, v in keywords.items()}
    unknown = [k for k in keywords if renames.get(k, k) not in _FIELDS]
    if unknown:
        raise TypeError(f"{what}() got unexpected keyword argument(s) {unknown}")
    if style is not None and not isinstance(style, ChartStyle):
        raise TypeError(f"{what}: style must be a ChartStyle, not {type(style).__name__}")
    out = replace(style or ChartStyle(), **named)
    unused = [name for name in _FIELDS if name not in uses and not _unset(getattr(out, name))]
    if unused:
        raise ValueError(f"{what}: this chart does not draw the style field(s) {unused}")
    return out
