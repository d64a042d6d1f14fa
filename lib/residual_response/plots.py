"""Interactive charts that work offline, in the built book and in notebooks.

Two problems with altair's default output motivate this module:

* altair's default HTML renderer loads vega, vega-lite and vega-embed from a CDN, so a
  book read offline (or built on a machine without internet) shows blank charts;
* altair's inline-JavaScript template declares globals that clash with Sphinx's
  ``doctools.js`` (``const _``), which breaks the page.

The fix has two halves that must be used together:

1. :func:`write_vega_bundle` writes vl-convert's JavaScript bundle (vega, vega-lite,
   vega-embed) into the book's ``_static/`` folder, wrapped in a function scope, exposing
   only ``window.vegaEmbed``, ``window.vega`` and ``window.vegaLite``. Jupyter Book adds
   every ``_static/*.js`` file to every page (``scripts/build_book.py`` does this step).
2. :func:`enable_offline_charts` turns on an altair renderer whose HTML output is a
   ``<div>`` plus a short script that calls ``vegaEmbed``, and an SVG rendering of the
   same chart (made by vl-convert in the kernel) as a fallback. If ``vegaEmbed`` is not
   there (a plain notebook viewer, an untrusted notebook), the SVG stays and the chart is
   still readable, only not interactive. The output contains no URL at all.

Chart ids are derived from a hash of the spec (plus an occurrence count for identical
specs), not drawn at random, so re-executing a notebook gives the same output (nbval).

The chart builders at the end take tidy :class:`pandas.DataFrame` s (one row per mark) with
the columns named in each docstring, and return an :class:`altair.Chart` (or layer/concat
chart) with tooltips on every mark. Keep data small: altair refuses more than 5000 rows per
chart by default (``MaxRowsError``); aggregate before plotting.

Altair internals this module relies on (checked by :func:`_check_altair`, tested in
``tests/unit/test_plots.py``): altair 6.x, whose renderer plugins are called as
``renderer(spec: dict, **metadata) -> mimebundle`` with ``spec`` the fully
data-transformed Vega-Lite dict, and whose ``SCHEMA_VERSION`` names the Vega-Lite version
(``v6.4.1`` for altair 6.3) that vl-convert must also support.
"""

from __future__ import annotations

import collections
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import altair as alt
import pandas as pd

__all__ = [
    "RENDERER_NAME",
    "VEGA_BUNDLE_NAME",
    "OfflineRenderer",
    "enable_offline_charts",
    "page_setup",
    "EPS_FORMAT",
    "write_vega_bundle",
    "vegalite_version",
    "line_chart_log_x",
    "heatmap_with_selector",
    "score_vs_depth",
    "matrix_heatmap",
    "emergence_scores",
    "attention_beside_response",
    "ablation_panel",
    "in_rows",
    "null_scores",
    "emergence_stability",
    "section_maps",
]

#: Name under which the offline renderer is registered with ``alt.renderers``.
RENDERER_NAME = "residual_response_offline"
#: File name of the JavaScript bundle in the book's ``_static/`` folder.
VEGA_BUNDLE_NAME = "vega-bundle.js"
#: CSS class of every chart container (the browser test looks for it).
CHART_CLASS = "rr-chart"
#: d3 format of every perturbation-strength axis and label: ``1e-8``, ``3e-5``, ``1e+0``.
EPS_FORMAT = ".0e"

# altair major version whose renderer protocol and schema this module was written against.
_ALTAIR_MAJOR = 6
# Options passed to vegaEmbed. No "editor"/"source" actions: they open remote sites.
_DEFAULT_EMBED_OPTIONS: dict[str, Any] = {
    "mode": "vega-lite",
    "renderer": "svg",
    "actions": {"export": True, "source": False, "compiled": False, "editor": False},
}


# --------------------------------------------------------------------------------------
# Versions and the JavaScript bundle
# --------------------------------------------------------------------------------------


def _check_altair() -> None:
    """Fail loudly if altair is not the major version whose internals we rely on."""
    major = int(alt.__version__.split(".")[0])
    if major != _ALTAIR_MAJOR or not str(alt.SCHEMA_VERSION).startswith(f"v{_ALTAIR_MAJOR}."):
        raise RuntimeError(
            f"residual_response.plots was written for altair {_ALTAIR_MAJOR}.x "
            f"(Vega-Lite v{_ALTAIR_MAJOR}); found altair {alt.__version__} with Vega-Lite "
            f"{alt.SCHEMA_VERSION}. Pin altair (requirements.txt) or update this module."
        )


def vegalite_version() -> str:
    """The ``major.minor`` Vega-Lite version of altair's schema, as vl-convert names it.

    Raises a ``RuntimeError`` if vl-convert does not ship that version: SVG fallback and
    the JavaScript bundle would then render with a different Vega-Lite than altair targets.
    """
    import vl_convert as vlc

    _check_altair()
    major_minor = ".".join(str(alt.SCHEMA_VERSION).lstrip("v").split(".")[:2])
    available = vlc.get_vegalite_versions()
    if major_minor not in available:
        raise RuntimeError(
            f"vl-convert {vlc.__version__} does not ship Vega-Lite {major_minor} "
            f"(altair {alt.__version__}); it has {available}. Upgrade vl-convert-python."
        )
    return major_minor


# Snippet compiled into the bundle by vl-convert: expose exactly these globals.
_BUNDLE_SNIPPET = "window.vegaEmbed = vegaEmbed; window.vega = vega; window.vegaLite = vegaLite;"


def vega_bundle_js() -> str:
    """vl-convert's vega + vega-lite + vega-embed bundle, wrapped in a function scope.

    The wrapping keeps the bundle's top-level ``const`` declarations (one is ``const _``)
    out of the page's global lexical scope, where Sphinx's ``doctools.js`` already declares
    ``_``; only the ``window.*`` assignments of the snippet leak out.
    """
    import vl_convert as vlc

    bundle = vlc.javascript_bundle(snippet=_BUNDLE_SNIPPET, vl_version=vegalite_version())
    if re.search(r"^\s*(import|export)\s", bundle, re.M):
        raise RuntimeError("vl-convert returned an ES module; it cannot be wrapped in a function")
    if "window.vegaEmbed" not in bundle:
        raise RuntimeError("vl-convert's bundle does not assign window.vegaEmbed")
    header = (
        f"/* vega {vlc.get_vega_version()}, vega-lite {vegalite_version()}, "
        f"vega-embed {vlc.get_vega_embed_version()}: bundled by vl-convert-python "
        f"{vlc.__version__} for residual_response.plots. Generated; do not edit. */\n"
    )
    return header + "(function () {\n" + bundle + "\n})();\n"


def write_vega_bundle(static_dir: str | Path) -> Path:
    """Write :func:`vega_bundle_js` to ``static_dir / VEGA_BUNDLE_NAME`` and return the path.

    ``static_dir`` is the book's ``_static/`` folder (created if missing). Jupyter Book loads
    every ``_static/*.js`` in every page, which defines ``window.vegaEmbed`` for the charts.
    """
    static_dir = Path(static_dir)
    static_dir.mkdir(parents=True, exist_ok=True)
    path = static_dir / VEGA_BUNDLE_NAME
    path.write_text(vega_bundle_js(), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------
# The renderer
# --------------------------------------------------------------------------------------

_SVG_NAMESPACES = re.compile(r'\s+xmlns(:xlink)?="[^"]*"')
_SVG_ID = re.compile(r'\bid="([^"]+)"')
_SVG_REF = re.compile(r'(url\(#|href="#)([^)"]+)')

# The chart's script. Runs at once if vegaEmbed is loaded (the book puts the bundle in
# <head>), else once the page has loaded; leaves the SVG fallback in place on any failure.
_SCRIPT = """(function () {{
  var root = document.getElementById("{cid}");
  var spec = {spec};
  var opts = {opts};
  function embed() {{
    if (typeof window.vegaEmbed !== "function") {{ return false; }}
    window.vegaEmbed(root.querySelector(".{cls}-vega"), spec, opts).then(function () {{
      var fb = root.querySelector(".{cls}-fallback");
      if (fb) {{ fb.remove(); }}
    }}).catch(function (err) {{
      console.error("[{cls}] vegaEmbed failed for {cid}: " + err);
    }});
    return true;
  }}
  if (!embed()) {{ window.addEventListener("load", embed); }}
}})();"""


def _json_for_script(obj: Any) -> str:
    """JSON that is safe inside a ``<script>`` element (no ``</script>`` or ``<!--``)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def _scope_svg(svg: str, prefix: str) -> str:
    """Inline-ready SVG: no namespace URLs (HTML does not need them), ids made unique.

    vl-convert's ids (``gradient_5``, ``clip12``) come from counters in its long-lived
    JavaScript runtime, so they differ between two renderings of the same chart; they are
    renamed ``<prefix>-0``, ``<prefix>-1``... in order of appearance, which is both stable
    and unique on the page.
    """
    svg = _SVG_NAMESPACES.sub("", svg, count=2)
    names: dict[str, str] = {}
    for m in _SVG_ID.finditer(svg):
        names.setdefault(m.group(1), f"{prefix}-{len(names)}")
    svg = _SVG_ID.sub(lambda m: f'id="{names[m.group(1)]}"', svg)
    return _SVG_REF.sub(lambda m: m.group(1) + names.get(m.group(2), m.group(2)), svg)


class OfflineRenderer:
    """altair renderer: ``<div>`` + ``vegaEmbed`` script + SVG fallback, no URLs.

    The chart id is ``rr-chart-<12 hex of sha256(spec)>``, with ``-2``, ``-3``... appended
    when the same spec is rendered again by this renderer (so two identical charts on a page
    get distinct ids). Re-executing a notebook from a fresh kernel reproduces the ids.
    """

    def __init__(self) -> None:
        self._seen: collections.Counter[str] = collections.Counter()

    def chart_id(self, spec: dict[str, Any]) -> str:
        digest = hashlib.sha256(_json_for_script(spec).encode()).hexdigest()[:12]
        self._seen[digest] += 1
        n = self._seen[digest]
        return f"{CHART_CLASS}-{digest}" + (f"-{n}" if n > 1 else "")

    def html(self, spec: dict[str, Any], embed_options: dict[str, Any] | None = None) -> str:
        """The HTML for one chart (see class docstring)."""
        import vl_convert as vlc

        spec = {k: v for k, v in spec.items() if k != "$schema"}  # a URL; mode is explicit
        cid = self.chart_id(spec)
        svg = vlc.vegalite_to_svg(spec, vl_version=vegalite_version())
        opts = {**_DEFAULT_EMBED_OPTIONS, **(embed_options or {})}
        script = _SCRIPT.format(
            cid=cid, cls=CHART_CLASS, spec=_json_for_script(spec), opts=_json_for_script(opts)
        )
        return (
            f'<div id="{cid}" class="{CHART_CLASS}">'
            f'<div class="{CHART_CLASS}-vega"></div>'
            f'<div class="{CHART_CLASS}-fallback">{_scope_svg(svg, cid)}</div>'
            f"<script>{script}</script></div>"
        )

    def __call__(self, spec: dict[str, Any], **metadata: Any) -> dict[str, str]:
        # altair passes set_embed_options(...) as metadata["embed_options"].
        html_text = self.html(spec, metadata.get("embed_options"))
        return {"text/html": html_text, "text/plain": "<Vega-Lite chart: see the HTML output>"}


_RENDERER = OfflineRenderer()


def enable_offline_charts() -> str:
    """Register and enable the offline renderer for altair charts; return its name.

    Call once at the top of a page (idempotent). Charts then display as HTML that needs the
    bundle written by :func:`write_vega_bundle` to be interactive, and shows an SVG
    otherwise.
    """
    vegalite_version()  # fail early, with a clear message, on a version mismatch
    if RENDERER_NAME not in alt.renderers.names():
        alt.renderers.register(RENDERER_NAME, _RENDERER)
    alt.renderers.enable(RENDERER_NAME)
    return RENDERER_NAME


#: modules of transformers that draw their own GGUF de-quantisation bar (page_setup silences them)
GGUF_TQDM_MODULES = ("transformers.modeling_gguf_pytorch_utils", "transformers.integrations.ggml")


def page_setup() -> None:
    """Prepare a book page: offline charts on, progress bars and library chatter off.

    Returns ``None`` on purpose, so that a set-up cell ending with this call prints nothing.
    Why each step:

    * the GGUF stand-ins are de-quantised by ``transformers`` under a ``tqdm`` progress bar
      that would otherwise land in the page as a stream of carriage returns (and, without
      ipywidgets, as an "IProgress not found" warning and an empty output box);
    * ``transformers``/``huggingface_hub`` log download and conversion progress;
    * charts must render offline (:func:`enable_offline_charts`).
    """
    import functools
    import logging
    import os
    import warnings

    os.environ.setdefault("TQDM_DISABLE", "1")  # tqdm reads TQDM_* defaults where it is first imported
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", message="IProgress not found")
    # Panels of one figure share their legend-selection and zoom parameters on purpose.
    warnings.filterwarnings("ignore", message="Automatically deduplicated selection parameter")
    try:
        import tqdm
        import tqdm.auto
        import tqdm.std

        # Every tqdm bar, whatever module made it (GGUF de-quantisation, toy-model training), is
        # disabled: subclasses (tqdm.auto, tqdm.notebook) call this __init__.
        if not getattr(tqdm.std.tqdm.__init__, "_residual_response_quiet", False):
            original_init = tqdm.std.tqdm.__init__

            @functools.wraps(original_init)
            def quiet_init(self, *args, **kwargs):
                kwargs["disable"] = True
                original_init(self, *args, **kwargs)

            quiet_init._residual_response_quiet = True
            tqdm.std.tqdm.__init__ = quiet_init
        quiet = functools.partial(tqdm.auto.tqdm, disable=True)
        for module_name in GGUF_TQDM_MODULES:
            try:
                module = __import__(module_name, fromlist=["tqdm"])
            except ImportError:
                continue
            if hasattr(module, "tqdm"):
                module.tqdm = quiet
    except ImportError:
        pass
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass
    for name in ("transformers", "huggingface_hub", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)
    enable_offline_charts()


# --------------------------------------------------------------------------------------
# Chart builders
# --------------------------------------------------------------------------------------


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


def _props(width: int, height: int, title: str | None) -> dict[str, Any]:
    return {"width": width, "height": height, **({"title": title} if title else {})}


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
    log_y: bool = False,
    title: str | None = None,
    x_title: str | None = None,
    y_title: str | None = None,
    color_title: str | None = None,
    x_format: str = EPS_FORMAT,
    dashed: dict[Any, Sequence[int]] | None = None,
    width: int = 420,
    height: int = 300,
) -> alt.LayerChart:
    """Lines of ``y`` against ``x`` on a log ``x`` axis, one line per value of ``color``.

    Both axes end at the data (no rounding out to the next decade), the ``x`` labels use
    ``x_format`` (default :data:`EPS_FORMAT`, ``1e-8``, the book's one format for strengths),
    and the legend is titled ``color_title`` (default: the column name) without truncation.
    ``dashed`` maps values of ``color`` to a dash pattern (e.g. ``{"floor": [2, 2]}``), so that a
    line lying on top of another stays visible.

    Made for e.g. the response chi against the perturbation size eps, one line per layer.

    Columns: ``x`` (> 0), ``y`` (> 0 if ``log_y``), ``color`` (integers get an ordered
    colour scale, strings a categorical one); optionally ``lo`` and ``hi`` (both or neither),
    the ends of a confidence interval drawn as a shaded band. Click a legend entry to
    highlight its line (shift-click for several); scroll/drag to zoom on ``x``.
    """
    _require_columns(df, [x, y, color, lo, hi], "line_chart_log_x")
    if (lo is None) != (hi is None):
        raise ValueError("line_chart_log_x: give both lo and hi, or neither")
    if (df[x] <= 0).any():
        raise ValueError(f"line_chart_log_x: column {x!r} must be > 0 on a log axis")
    if log_y and (df[y] <= 0).any():
        raise ValueError(f"line_chart_log_x: column {y!r} must be > 0 with log_y=True")

    pick = alt.selection_point(name=_param_name(color, "pick"), fields=[color], bind="legend")
    y_scale = alt.Scale(type="log", nice=False) if log_y else alt.Scale(zero=False, nice=False)
    x_enc = alt.X(x, type="quantitative", scale=alt.Scale(type="log", nice=False), title=x_title or x,
                  axis=alt.Axis(format=x_format, labelOverlap="greedy"))
    color_enc = alt.Color(color, type=_field_type(df[color]), title=color_title or color,
                          legend=_legend())
    if _field_type(df[color]) == "ordinal":
        color_enc = color_enc.scale(scheme="viridis")
    opacity = alt.when(pick).then(alt.value(1.0)).otherwise(alt.value(0.15))

    base = alt.Chart(df)
    lines = base.mark_line(point=True).encode(
        x=x_enc,
        y=alt.Y(y, type="quantitative", scale=y_scale, title=y_title or y),
        color=color_enc,
        opacity=opacity,
        tooltip=_tooltip(df, [color, x, y, lo, hi]),
        **({"strokeDash": alt.StrokeDash(color, type="nominal", legend=None, scale=alt.Scale(
            domain=(values := sorted(df[color].unique().tolist())),
            range=[list(dashed.get(v, [1, 0])) for v in values]))} if dashed else {}),
    ).add_params(pick)
    layers: list[alt.Chart] = [lines]
    if lo is not None:
        band = base.mark_area(opacity=0.15).encode(
            x=x_enc,
            y=alt.Y(lo, type="quantitative", scale=y_scale, title=y_title or y),
            y2=alt.Y2(hi),
            color=color_enc,
            opacity=alt.when(pick).then(alt.value(0.2)).otherwise(alt.value(0.03)),
            tooltip=_tooltip(df, [color, x, lo, hi]),
        )
        layers.insert(0, band)
    zoom = alt.selection_interval(name=_param_name(x, "zoom"), bind="scales", encodings=["x"])
    layers[-1] = layers[-1].add_params(zoom)
    return alt.layer(*layers).properties(**_props(width, height, title))


def heatmap_with_selector(
    df: pd.DataFrame,
    x: str,
    y: str,
    value: str,
    selector_field: str,
    *,
    widget: str = "slider",
    init: Any = None,
    diverging: bool = False,
    scheme: str | None = None,
    title: str | None = None,
    width: int = 320,
    height: int = 320,
) -> alt.Chart:
    """Heatmap of ``value`` over (``x``, ``y``), one panel per ``selector_field`` value.

    Made for e.g. a source-position × target-position response map, with a slider over
    layers. Only one panel is shown at a time; a widget below the chart picks it.

    Columns: ``x`` and ``y`` (discrete, e.g. positions or tokens), ``value`` (numeric),
    ``selector_field`` (the panel, e.g. the layer). ``widget`` is ``"slider"`` (numeric,
    evenly spaced values) or ``"select"`` (a dropdown, any values). ``init`` is the panel
    shown first (default: the smallest). The colour scale is the same for all panels so
    they can be compared; ``diverging=True`` centres it on 0 with a red-blue scheme.
    """
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
    vmin, vmax = float(df[value].min()), float(df[value].max())
    if diverging:
        m = max(abs(vmin), abs(vmax)) or 1.0
        scale = alt.Scale(scheme=scheme or "redblue", domain=[-m, m], reverse=True)
    else:
        scale = alt.Scale(scheme=scheme or "viridis", domain=[vmin, vmax])
    return (
        alt.Chart(df)
        .mark_rect()
        .encode(
            x=alt.X(x, type="ordinal", title=x),
            y=alt.Y(y, type="ordinal", title=y),
            color=alt.Color(value, type="quantitative", scale=scale, title=value),
            tooltip=_tooltip(df, [selector_field, x, y, value]),
        )
        .add_params(sel)
        .transform_filter(alt.datum[selector_field] == sel)
        .properties(**_props(width, height, title))
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
    title: str | list[str] | None = None,
    y_title: str | None = None,
    width: int = 420,
    height: int = 300,
    band: pd.DataFrame | None = None,
    band_label: str = "negative controls",
    color_title: str | None = None,
) -> alt.LayerChart:
    """A score with confidence-interval error bars against relative depth, one colour per model.

    Columns: ``depth`` (relative depth in [0, 1], layer / number of layers), ``score``,
    ``model`` (name), and optionally ``lo``/``hi`` (CI ends; pass ``lo=None, hi=None`` if
    there are none). Dashed horizontal rules mark the reference levels ``rules`` (1 and 2).
    ``band`` (optional, e.g. from :func:`.tables.control_envelope`): a grey shaded area
    under the lines, columns ``rel_depth``, ``band_lo``, ``band_hi`` (labelled ``band_label``
    in its tooltip). ``color_title`` titles the legend (default: the ``model`` column's name),
    e.g. "condition" where the lines are ablation conditions rather than models.
    """
    _require_columns(df, [depth, score, model, lo, hi], "score_vs_depth")
    if (lo is None) != (hi is None):
        raise ValueError("score_vs_depth: give both lo and hi, or neither")
    if ((df[depth] < 0) | (df[depth] > 1)).any():
        raise ValueError(f"score_vs_depth: column {depth!r} must lie in [0, 1]")

    x_enc = alt.X(depth, type="quantitative", scale=alt.Scale(domain=[0, 1]), title="relative depth")
    color_enc = alt.Color(model, type="nominal", title=color_title or model, legend=_legend())
    tooltip = _tooltip(df, [model, depth, score, lo, hi])
    base = alt.Chart(df)
    layers: list[Any] = []
    if band is not None:
        _require_columns(band, ["rel_depth", "band_lo", "band_hi"], "score_vs_depth band")
        layers.append(
            alt.Chart(band.assign(band=band_label))
            .mark_area(color="gray", opacity=0.3, interpolate="monotone")
            .encode(
                x=alt.X("rel_depth", type="quantitative", scale=alt.Scale(domain=[0, 1]), title="relative depth"),
                y=alt.Y("band_lo", type="quantitative", title=y_title or score),
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
                x=x_enc, y=alt.Y(lo, type="quantitative", title=y_title or score),
                y2=alt.Y2(hi), color=color_enc, tooltip=tooltip,
            )
        )
    layers.append(
        base.mark_line(point=True).encode(
            x=x_enc, y=alt.Y(score, type="quantitative", title=y_title or score),
            color=color_enc, tooltip=tooltip,
        )
    )
    return alt.layer(*layers).properties(**_props(width, height, title))


def matrix_heatmap(
    df: pd.DataFrame,
    x: str,
    y: str,
    value: str,
    *,
    diverging: bool = False,
    scheme: str | None = None,
    title: str | None = None,
    width: int = 320,
    height: int = 320,
    domain: Sequence[float] | None = None,
) -> alt.Chart:
    """Heatmap of ``value`` over a discrete (``x``, ``y``) grid.

    Made for e.g. the section map score(l0, l) (x = l, y = l0) or a layer × head map.
    Columns: ``x``, ``y`` (discrete), ``value`` (numeric). ``diverging=True`` centres the
    colours on 0 with a red-blue scheme; otherwise viridis over the data's range. ``domain``
    fixes the colour range (e.g. one range for several panels). Tick labels stay upright and
    are thinned where they would overlap, so a 30-layer axis stays legible.
    """
    _require_columns(df, [x, y, value], "matrix_heatmap")
    if diverging:
        m = float(df[value].abs().max()) or 1.0
        scale = alt.Scale(scheme=scheme or "redblue", domain=list(domain) if domain else [-m, m], reverse=True)
    else:
        scale = alt.Scale(scheme=scheme or "viridis", **({"domain": list(domain)} if domain else {}))
    axis = dict(labelAngle=0, labelOverlap="parity", labelFontSize=11)
    return (
        alt.Chart(df)
        .mark_rect()
        .encode(
            x=alt.X(x, type="ordinal", title=x, axis=alt.Axis(**axis)),
            y=alt.Y(y, type="ordinal", title=y, axis=alt.Axis(**axis)),
            color=alt.Color(value, type="quantitative", scale=scale, title=value),
            tooltip=_tooltip(df, [y, x, value]),
        )
        .properties(**_props(width, height, title))
    )


# --------------------------------------------------------------------------------------------
# Response matrices with their stripes, and eps sweeps beside their exact linear response: the
# charts the response-matrix, universal-regime and model pages share.
# --------------------------------------------------------------------------------------------

__all__ += ["stripe_frame", "stripe_lines", "response_matrix_chart", "sweep_with_jvp"]

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

    ``frame``: rows of :func:`.tables.matrix_frame`. The widget is a slider when the layers are
    evenly spaced, a dropdown otherwise; ``init`` is the layer shown first (default the last).
    ``domain`` fixes the colour range, so that two matrices (repeated, control) compare cell by cell.
    """
    layers = sorted(frame["layer"].unique().tolist())
    widget = "slider" if len({b - a for a, b in zip(layers, layers[1:])}) <= 1 else "select"
    heat = heatmap_with_selector(frame, "target", "source", "log10 chi", "layer", widget=widget,
                                 init=layers[-1] if init is None else init, width=width, height=height)
    lo, hi = domain if domain is not None else (frame["log10 chi"].min(), frame["log10 chi"].max())
    heat = heat.encode(color=alt.Color("log10 chi:Q", scale=alt.Scale(scheme="viridis", domain=[float(lo), float(hi)]),
                                       title="log10 χ"))
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
    lines = line_chart_log_x(curves, "eps", "chi", series, log_y=True, title=title, color_title=color_title,
                             x_title="perturbation strength ε", y_title="mean χ over pairs t ≥ s",
                             width=width, height=height)
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


# --- the toy model's training (notebooks/toy_model.md) ------------------------------------------


def toy_phase_chart(pc) -> alt.VConcatChart:
    """The phase change three ways against the training step, one panel each, shared x axis.

    ``pc`` is a :class:`.dynamics.PhaseChange`. Top: the copy losses of the training log at every
    checkpoint, with the loss of a uniform guess (dashed). Middle: the attention score of each
    block on repeated sequences (solid) and, for the same head, on the controls (dashed). Bottom:
    the response score of each read layer with its bootstrap interval (log scale; dotted: 1 and
    the emergence threshold). A red rule marks the phase change step in every panel.
    """
    from .induction import EMERGENCE_THRESHOLD

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
        df.assign(sequence="repeated", value=df.attention),
        df.assign(sequence="control", value=df.attention_control),
    ])[["step", "layer", "sequence", "value", "attention_head"]].assign(block=lambda d: "block " + (d.layer - 1).astype(str))
    # a row's `layer` is the stream l that block l - 1 writes: the colours name the block b = l - 1
    layer_colors = alt.Scale(domain=[f"block {b}" for b in range(pc.L)], scheme="set1")
    att_color = alt.Color("block:N", scale=layer_colors, title="block")
    dash_legend = alt.Legend(symbolType="stroke", symbolStrokeColor="black", symbolStrokeWidth=2, symbolOpacity=1)
    att_panel = alt.layer(
        alt.Chart(att_long).mark_line().encode(  # points in a layer of their own: they would hide the dash legend
            x=x, y=alt.Y("value:Q", title="attention on stripe"), color=att_color, detail="sequence:N",
            strokeDash=alt.StrokeDash("sequence:N", scale=alt.Scale(domain=["repeated", "control"], range=[[1, 0], [4, 3]]),
                                      title="sequence", legend=dash_legend)),
        alt.Chart(att_long).mark_point(filled=True, size=25).encode(
            x=x, y="value:Q", color=att_color,
            tooltip=["block", "sequence", "step", alt.Tooltip("value:Q", format=".3f"), "attention_head"]),
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
            color=alt.Color("block:N", scale=layer_colors, title="read at the stream after")),
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
    from .tables import matrix_frame

    trace = pc.trace
    read_last = trace["read_layers"][-1]
    frames = {step: matrix_frame(trace["matrices"][step]["repeated"], trace["read_layers"], trace["sources"], [read_last])
              for step in (pc.before, pc.last)}
    domain = [min(f["log10 chi"].min() for f in frames.values()), max(f["log10 chi"].max() for f in frames.values())]

    def panel(step, label):
        heat = matrix_heatmap(frames[step], "target", "source", "log10 chi", width=230, height=170,
                              title=f"{label}: step {step}")
        return heat.encode(color=alt.Color("log10 chi:Q", scale=alt.Scale(scheme="viridis", domain=domain), title="log10 χ"))

    return (panel(pc.before, "before") | panel(pc.last, "after")).configure_legend(orient="right")


# --------------------------------------------------------------------------------------
# Figures of the emergence, cross-check, null and section-map pages
# --------------------------------------------------------------------------------------


def emergence_scores(scores: pd.DataFrame, trained: Sequence[str], band: pd.DataFrame, *,
                     setting: str) -> alt.HConcatChart:
    """Induction score of the trained models over the controls' band, beside every model's
    duplicate-token score, against relative depth (log y).

    ``scores``: :func:`.tables.score_frame` rows; ``band``: :func:`.crosscheck.control_envelope`;
    ``setting`` (:func:`.tables.setting_text`) is the second line of each title (one line would
    widen the panels beyond a page). With no trained model the
    left panel shows the controls themselves.
    """
    _require_columns(scores, ["model", "rel_depth", "score", "lo", "hi", "dup", "dup_lo", "dup_hi"], "emergence_scores")
    dup = scores.drop(columns=["score", "lo", "hi"]).rename(columns={"dup": "score", "dup_lo": "lo", "dup_hi": "hi"})
    left = scores[scores.model.isin(trained)] if len(trained) else scores
    return (
        log_y(score_vs_depth(left, title=["induction (lag T − 1)", setting], y_title="score S", width=250, band=band))
        | log_y(score_vs_depth(dup, title=["duplicate token (lag T)", setting], y_title="score D", width=250))
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
                            for l, s, lo, hi in zip(res.layers, res.score, res.ci_low, res.ci_high) if l > res.layer])
    height = max(120, min(14 * L, 360))
    heat = matrix_heatmap(att_df, "head", "block", "attention", title=f"{name}: attention on the stripe",
                          width=max(100, 12 * H), height=height)
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


def ablation_panel(study, n_layers: int, *, title: str | list[str]) -> alt.LayerChart:
    """Score against relative depth without ablation, with the top-k heads and with each draw of
    k random heads ablated (:class:`.crosscheck.AblationStudy`), log y. A ``title`` list is set in
    lines (a panel is as wide as its title)."""
    noun = "head" if study.k == 1 else "heads"
    labels = {"none": "no ablation", "top": f"top-{study.k} {noun} by response",
              **{key: f"{study.k} random {noun} (draw {i})" for i, key in enumerate(study.random_keys)}}
    df = pd.DataFrame([{"model": labels[key], "rel_depth": l / n_layers, "score": s, "lo": lo, "hi": hi}
                       for key, res in study.results.items()
                       for l, s, lo, hi in zip(res.layers, res.score, res.ci_low, res.ci_high) if l > res.layer])
    return log_y(score_vs_depth(df, title=title, y_title="score S", width=220, color_title="ablation"))


def in_rows(panels: Sequence[Any], per_row: int = 2) -> alt.VConcatChart:
    """Panels ``per_row`` to a row, each with its own colour legend."""
    rows = [alt.hconcat(*panels[i:i + per_row]).resolve_scale(color="independent")
            for i in range(0, len(panels), per_row)]
    return alt.vconcat(*rows).resolve_scale(color="independent")


def null_scores(null: pd.DataFrame, *, setting: str) -> alt.FacetChart:
    """Scores of random-initialised models per read layer, with intervals, one panel per baseline.

    ``null``: :func:`.null.null_frame` rows. The y axis is clamped to 0.5-2 (log): a calibrated
    baseline scatters around the dotted 1.
    """
    _require_columns(null, ["rel_depth", "score", "ci_low", "ci_high", "family", "size", "model", "layer", "baseline"],
                     "null_scores")
    base = alt.Chart(null).encode(x=alt.X("rel_depth:Q", title="relative depth l/L", scale=alt.Scale(domain=[0, 1.02])))
    log_scale = alt.Scale(type="log", domain=[0.5, 2.0], clamp=True)
    y_title = f"induction score S ({setting})"
    panel = alt.layer(
        alt.Chart(pd.DataFrame({"score": [1.0]})).mark_rule(strokeDash=[2, 3], color="gray").encode(y="score:Q"),
        base.mark_errorbar(opacity=0.35).encode(y=alt.Y("ci_low:Q", scale=log_scale, title=y_title), y2="ci_high:Q",
                                                color=alt.Color("family:N", title="architecture")),
        base.mark_point(filled=True, size=30).encode(
            y=alt.Y("score:Q", title=y_title, scale=log_scale), color="family:N",
            shape=alt.Shape("size:N", title="size"),
            tooltip=["model", "layer", *(alt.Tooltip(f"{c}:Q", format=".3f") for c in ("score", "ci_low", "ci_high"))]),
    ).properties(width=250, height=220)
    return panel.facet(column=alt.Column("baseline:N", title=None), data=null)


def emergence_stability(stability: pd.DataFrame, *, eps_text: str) -> alt.FacetChart:
    """Emergence layer and its interval against the copy length ``T``, one colour per number of
    seeds, one panel per model (:func:`.null.emergence_stability` rows; no point: no rise)."""
    d = stability.dropna(subset=["emergence layer"]).assign(seeds=lambda x: x.seeds.astype(str))
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
    from .tables import section_map_frame

    frames = {name: section_map_frame(sm) for name, sm in maps.items()}
    m = max(float(f["log2 score"].abs().max()) for f in frames.values()) or 1.0
    return alt.vconcat(*[
        matrix_heatmap(frames[name], "read layer l", "perturbed layer l0", "log2 score", diverging=True,
                       domain=[-m, m], title=f"{name} ({setting})",
                       width=min(480, max(200, 16 * (len(sm.read_layers)))), height=max(90, 24 * len(sm.perturb_layers)))
        for name, sm in maps.items()
    ]).resolve_scale(color="shared")
