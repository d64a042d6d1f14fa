"""How a chart is drawn so that it works offline, in the built book and in notebooks.

Two problems with altair's default output motivate this module:

* altair's default HTML renderer loads vega, vega-lite and vega-embed from a CDN, so a
  book read offline (or built on a machine without internet) shows blank charts;
* altair's inline-JavaScript template declares globals that clash with Sphinx's
  ``doctools.js`` (``const _``), which breaks the page.

The fix has two halves that must be used together:

1. :func:`write_vega_bundle` writes vl-convert's JavaScript bundle (vega, vega-lite,
   vega-embed) into the book's ``_static/`` folder, wrapped in a function scope, exposing
   only ``window.vegaEmbed``, ``window.vega`` and ``window.vegaLite``. Jupyter Book adds
   every ``_static/*.js`` file to every page (the book build, :mod:`book_build`, does this step).
2. :func:`enable_offline_charts` turns on an altair renderer whose HTML output is a
   ``<div>`` plus a short script that calls ``vegaEmbed``, and an SVG rendering of the
   same chart (made by vl-convert in the kernel) as a fallback. If ``vegaEmbed`` is not
   there (a plain notebook viewer, an untrusted notebook), the SVG stays and the chart is
   still readable, only not interactive. The output contains no URL at all. Under an
   address-space limit, where vl-convert's V8 cannot start (:mod:`.convert`), the fallback is
   left out with one :class:`ChartFallbackWarning`.

Chart ids are derived from a hash of the spec (plus an occurrence count for identical
specs), not drawn at random, so re-executing a notebook gives the same output (nbval).

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
from typing import Any

import altair as alt

__all__ = ["RENDERER_NAME", "VEGA_BUNDLE_NAME", "CHART_CLASS", "ChartFallbackWarning", "OfflineRenderer",
           "enable_offline_charts", "vega_bundle_js", "vegalite_version", "write_vega_bundle"]


#: Name under which the offline renderer is registered with ``alt.renderers``.
RENDERER_NAME = "residual_response_offline"


#: File name of the JavaScript bundle in the book's ``_static/`` folder.
VEGA_BUNDLE_NAME = "vega-bundle.js"


#: CSS class of every chart container (the browser test looks for it).
CHART_CLASS = "rr-chart"


# altair major version whose renderer protocol and schema this module was written against.
_ALTAIR_MAJOR = 6


# Options passed to vegaEmbed. No "editor"/"source" actions: they open remote sites.
_DEFAULT_EMBED_OPTIONS: dict[str, Any] = {
    "mode": "vega-lite",
    "renderer": "svg",
    "actions": {"export": True, "source": False, "compiled": False, "editor": False},
}


def _check_altair() -> None:
    """Fail loudly if altair is not the major version whose internals we rely on."""
    major = int(alt.__version__.split(".")[0])
    if major != _ALTAIR_MAJOR or not str(alt.SCHEMA_VERSION).startswith(f"v{_ALTAIR_MAJOR}."):
        raise RuntimeError(
            f"residual_response.pages.plots was written for altair {_ALTAIR_MAJOR}.x "
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
        f"{vlc.__version__} for residual_response.pages.plots. Generated; do not edit. */\n"
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
        from .convert import V8Unavailable, vegalite_to_svg

        spec = {k: v for k, v in spec.items() if k != "$schema"}  # a URL; mode is explicit
        cid = self.chart_id(spec)
        try:
            svg = _scope_svg(vegalite_to_svg(spec, vegalite_version()), cid)
            fallback = f'<div class="{CHART_CLASS}-fallback">{svg}</div>'
        except V8Unavailable as exc:  # an address-space limit: the chart draws with JavaScript only
            _warn_no_fallback(exc)
            fallback = ""
        opts = {**_DEFAULT_EMBED_OPTIONS, **(embed_options or {})}
        script = _SCRIPT.format(
            cid=cid, cls=CHART_CLASS, spec=_json_for_script(spec), opts=_json_for_script(opts)
        )
        return (
            f'<div id="{cid}" class="{CHART_CLASS}">'
            f'<div class="{CHART_CLASS}-vega"></div>'
            f"{fallback}"
            f"<script>{script}</script></div>"
        )

    def __call__(self, spec: dict[str, Any], **metadata: Any) -> dict[str, str]:
        # altair passes set_embed_options(...) as metadata["embed_options"].
        html_text = self.html(spec, metadata.get("embed_options"))
        return {"text/html": html_text, "text/plain": "<Vega-Lite chart: see the HTML output>"}


class ChartFallbackWarning(UserWarning):
    """Charts are drawn without their static SVG fallback (vl-convert cannot run here)."""


_warned_no_fallback = False


def _warn_no_fallback(exc: Exception) -> None:
    """One warning per process: the charts keep their interactive drawing, not their SVG fallback."""
    global _warned_no_fallback
    if not _warned_no_fallback:
        _warned_no_fallback = True
        import warnings

        warnings.warn(f"charts are written without their static SVG fallback (they draw with JavaScript only): "
                      f"{exc}", ChartFallbackWarning, stacklevel=4)


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
