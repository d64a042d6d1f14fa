"""A picture of any result file: ``residual-response show FILE... --out chart.html [--png]``.

A researcher who ran the command line on their own model should see the result without writing
plotting code, and see it the way the book shows it. This module reads the files the command
line writes (:mod:`.resultfile` tells their kind) and draws them with the book's own chart
builders (:mod:`residual_response.pages.plots`):

* a response file: the response matrix ``log10 chi(s, t)`` with the book's layer slider (and,
  for an eps sweep, the mean response against eps);
* induction files: the score against relative depth with its confidence interval and the
  emergence layer marked; several files are overlaid, so models of different depth compare
  at a glance;
* a section-map file: the heatmap of ``log2 score(l0, l)``;
* a regime file: the eps sweep per read layer with the universal regime drawn thick.

The page is self-contained and works offline: the vega / vega-lite / vega-embed JavaScript is
inlined in it (the book ships the same bundle as a static file), each chart carries an SVG
rendering as a fallback, and no URL is loaded. ``png=True`` also writes a static image through
vl-convert.
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .show_checks import ShowError, check_drawable

__all__ = ["ShowError", "LoadedFile", "load_result", "charts_for", "page_html", "show"]

#: the strength whose matrix a response file with several is drawn at (the book's default)
PREFERRED_EPS = 1e-2
#: floor of chi before the log (exact zeros of causality and of the perturbed layer itself)
CHI_FLOOR = 1e-12


@dataclass
class LoadedFile:
    path: Path
    kind: str
    result: Any

    @property
    def provenance(self) -> dict | None:
        return getattr(self.result, "provenance", None)


def load_result(path: str | os.PathLike) -> LoadedFile:
    """Read a result file of any kind with its own loader (``ResponseResult.load``...)."""
    from ..induction import InductionResult, SectionMap
    from ..regime import RegimeResult
    from ..engine import ResponseResult
    from ..resultfile import sniff

    path = Path(path)
    loaders = {"response": ResponseResult, "induction": InductionResult, "regime": RegimeResult,
               "section-map": SectionMap}
    try:
        if not path.is_file():
            raise ShowError(f"{path}: no such file")
        kind = sniff(path)
        result = loaders[kind].load(path)
    except ShowError:
        raise
    except OSError as exc:
        raise ShowError(f"cannot read {path}: {exc.strerror or exc}") from None
    except RecursionError:
        raise ShowError(f"{path} is not a result file: it is nested too deeply") from None
    except ValueError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if str(path) not in message:  # a loader's float("abc") names no file
            message = f"{path} is a damaged result file ({message})"
        raise ShowError(message) from None
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ShowError(f"{path} is a damaged result file (missing or malformed field {exc})") from None
    return LoadedFile(path, kind, result)


# ------------------------------------------------------------------------------------------
# one chart builder per kind, each with the book's chart functions
# ------------------------------------------------------------------------------------------


def _n_layers(result) -> int:
    """Blocks ``L`` of the model: recorded in the file, else the last read layer."""
    n = getattr(result, "n_layers", None) or ((result.provenance or {}).get("model") or {}).get("n_layers")
    return int(n) if n else int(max(result.read_streams))


def _label(files: Sequence[LoadedFile]) -> dict[Path, str]:
    """A legend label per file: the model's name, with the file name where two share a model."""
    names = [f.result.model or f.path.stem for f in files]
    return {f.path: (n if names.count(n) == 1 else f"{n} ({f.path.name})") for f, n in zip(files, names)}


def _sub_layers(chart) -> list:
    """The layers of a layered chart, each with its data (altair hoists data shared by all
    layers to the parent, so a layer taken out alone would have none)."""
    import altair as alt

    parent = chart.data
    return [l if (l.data is not alt.Undefined or parent is alt.Undefined) else l.properties(data=parent)
            for l in chart.layer]


def _sweep_style():
    """The style of a chi-against-eps chart (a log y axis), one for the response and the regime files."""
    from ..pages.plots import ChartStyle

    return ChartStyle(log_y=True, x_title="perturbation strength eps", y_title="mean chi over t >= s")


def response_charts(f: LoadedFile) -> list[tuple[str, str, Any]]:
    """The response matrix with a layer slider; for an eps sweep also chi against eps."""
    import altair as alt
    import pandas as pd

    from ..pages import plots
    from ..regime import layer_curves

    res = f.result
    jvp = res.method == "jvp" or not np.all(np.isfinite(res.eps))
    e = 0 if jvp else int(np.argmin(np.abs(np.log10(res.eps) - math.log10(PREFERRED_EPS))))
    shown = [l for l in res.read_streams if l != res.l0] or list(res.read_streams)
    chi = res.chi[e]  # [n_read, n_src, N]
    rows = [(l, s, t, float(np.log10(max(chi[res.read_streams.index(l), j, t], CHI_FLOOR))))
            for l in shown for j, s in enumerate(res.sources) for t in range(s, chi.shape[-1])]
    df = pd.DataFrame(rows, columns=["layer", "source", "target", "log10 chi"])
    steps = {b - a for a, b in zip(shown, shown[1:])}
    widget = "slider" if len(steps) <= 1 else "select"
    N = chi.shape[-1]
    side = int(min(520, max(160, 12 * N)))
    eps_text = "eps -> 0 (JVP)" if jvp else f"eps = {res.eps[e]:.3g}"
    title = f"{res.model}: response matrix, {eps_text}"
    caption = (f"log10 chi(s, t) of {res.model} perturbed at stream {res.l0}, {eps_text}, "
               f"{res.n_directions} direction(s), seed {res.seed}; rows: sources, columns: targets. "
               f"The widget below the chart picks the read layer.")
    out = [(title, caption, plots.heatmap_with_selector(df, "target", "source", "log10 chi", "layer", widget=widget,
                                                       init=shown[-1], style=plots.ChartStyle(width=side, height=side)))]
    if not jvp and len(res.eps) > 1:
        curves = layer_curves(res)  # [n_read, n_eps]
        cdf = pd.DataFrame([(l, float(eps), float(c)) for l, curve in zip(res.read_streams, curves) if l in shown
                            for eps, c in zip(res.eps, curve) if c > 0], columns=["layer", "eps", "chi"])
        if not cdf.empty:
            out.append((f"{res.model}: response against eps",
                        "Mean chi over pairs t >= s against the perturbation strength, one line per read layer.",
                        plots.line_chart_log_x(cdf, "eps", "chi", "layer", style=_sweep_style())))
    return out


def induction_chart(files: Sequence[LoadedFile]) -> tuple[str, str, Any]:
    """Score against relative depth with CIs, one colour per file, the emergence layers marked."""
    import altair as alt
    import pandas as pd

    from ..pages import plots

    labels = _label(files)
    rows, marks = [], []
    for f in files:
        r = f.result
        L = _n_layers(r)
        for l, s, lo, hi in zip(r.read_streams, r.score, r.ci_low, r.ci_high):
            if all(v is not None and math.isfinite(v) for v in (s, lo, hi)) and 0 <= l <= L:
                rows.append((labels[f.path], int(l), l / L, float(s), float(lo), float(hi)))
        if r.emergence_layer is not None:
            marks.append((labels[f.path], int(r.emergence_layer), r.emergence_layer / L))
    if not rows:
        raise ShowError(f"{files[0].path}: no finite induction score to draw")
    df = pd.DataFrame(rows, columns=["model", "layer", "rel_depth", "score", "lo", "hi"])
    positive = bool((df[["score", "lo", "hi"]] > 0).all().all())  # a log axis where it can be one
    chart = plots.score_vs_depth(df, style=plots.ChartStyle(y_title="induction score", width=480, height=320,
                                                            log_y=positive))
    if marks:
        mdf = pd.DataFrame(marks, columns=["model", "emergence layer", "rel_depth"])
        rule = alt.Chart(mdf).mark_rule(strokeDash=[2, 3], strokeWidth=2).encode(
            x=alt.X("rel_depth", type="quantitative", scale=alt.Scale(domain=[0, 1]), title="relative depth"),
            color=alt.Color("model", type="nominal"),
            tooltip=["model", "emergence layer", alt.Tooltip("rel_depth", format=".3f")],
        )
        chart = alt.layer(*_sub_layers(chart), rule).properties(width=480, height=320)
    names = sorted({labels[f.path] for f in files})
    title = "induction score against relative depth: " + ", ".join(names)
    em = "; ".join(f"{labels[f.path]}: " + ("none" if (e := f.result.emergence_layer) is None else f"layer {e}")
                   for f in files)
    caption = ("Induction score (lag T - 1) with its bootstrap interval against relative depth (layer / L). "
               f"Dashed grey: 1 (no induction) and 2 (a reference line); dotted verticals: the emergence layer, the "
               f"stream half way up a rise whose factor's interval lies above 1.5 ({em}).")
    return title, caption, chart


def section_map_chart(f: LoadedFile) -> tuple[str, str, Any]:
    from ..pages import plots
    from ..pages.tables import section_map_frame

    sm = f.result
    df = section_map_frame(sm)
    if df.empty:
        raise ShowError(f"{f.path}: the section map has no finite positive score to draw")
    L = len(sm.read_streams) - 1
    eps = "" if sm.eps is None else f", eps = {sm.eps:.3g}"
    caption = (f"log2 of the induction score S(l0, l) of {sm.model} for the perturbation at stream l0 (rows) read at "
               f"stream l > l0 (columns); 0: no effect, 1: twice the baseline (T = {sm.T}, "
               f"{len(sm.seeds)} seed(s){eps}).")
    chart = plots.matrix_heatmap(df, "read layer l", "perturbed layer l0", "log2 score", style=plots.ChartStyle(
        diverging=True, width=int(min(520, max(160, 18 * (L + 1)))), height=int(max(60, 24 * len(sm.l0s)))))
    return f"{sm.model}: section map", caption, chart


def regime_chart(f: LoadedFile) -> tuple[str, str, Any]:
    import altair as alt
    import pandas as pd

    from ..pages import plots

    reg = f.result
    found = {r.stream: r for r in reg.regimes if r.eps_low is not None}
    tol = f"{100 * reg.tol:.3g} %"
    if reg.curves:
        cdf = pd.DataFrame([(int(l), float(e), float(c)) for l, curve in zip(reg.curve_streams, reg.curves)
                            for e, c in zip(reg.eps, curve) if c is not None and c > 0],
                           columns=["layer", "eps", "chi"])
        if cdf.empty:
            raise ShowError(f"{f.path}: the sweep has no positive response to draw")
        inside = cdf[[(l in found and found[l].eps_low <= e <= found[l].eps_high)
                      for l, e in zip(cdf.layer, cdf.eps)]]
        lines = plots.line_chart_log_x(cdf, "eps", "chi", "layer", style=_sweep_style())
        chart = lines
        if not inside.empty:  # nested, as the book layers rules on this chart (the legend's selection stays whole)
            chart = alt.layer(lines, alt.Chart(inside).mark_line(strokeWidth=9, opacity=0.35).encode(
                x=alt.X("eps", type="quantitative", scale=alt.Scale(type="log")),
                y=alt.Y("chi", type="quantitative", scale=alt.Scale(type="log")),
                color=alt.Color("layer", type="ordinal").scale(scheme="viridis"),
                detail=alt.Detail("layer", type="ordinal"),
            ))
        caption = (f"Mean response over pairs t >= s of {reg.model} ({reg.dtype}, perturbed at stream {reg.l0}) "
                   f"against the perturbation strength, one line per read layer; drawn thick: the universal regime, "
                   f"the widest interval where the curve stays within {tol} of its median.")
    else:  # a file written before the curves were kept: the intervals alone
        idf = pd.DataFrame([(r.stream, r.eps_low, r.eps_high, r.decades) for r in found.values()],
                           columns=["layer", "eps_low", "eps_high", "decades"])
        if idf.empty:
            raise ShowError(f"{f.path}: no layer has a universal regime to draw")
        chart = alt.Chart(idf).mark_rule(strokeWidth=6).encode(
            x=alt.X("eps_low", type="quantitative", scale=alt.Scale(type="log"), title="perturbation strength eps"),
            x2="eps_high", y=alt.Y("layer", type="ordinal"),
            tooltip=["layer", alt.Tooltip("eps_low", format=".2e"), alt.Tooltip("eps_high", format=".2e"),
                     alt.Tooltip("decades", format=".2f")],
        ).properties(width=480, height=max(60, 20 * len(idf)))
        caption = f"The universal regime of each read layer of {reg.model} (within {tol} of its median)."
    return f"{reg.model}: eps sweep and universal regime", caption, chart


def charts_for(files: Sequence[LoadedFile]) -> list[tuple[str, str, Any, list[LoadedFile]]]:
    """``[(title, caption, chart, files drawn)]``: induction files overlaid in one chart, others one each."""
    out = []
    ind = [f for f in files if f.kind == "induction"]
    for f in files:
        if f.kind == "response":
            out += [(t, c, ch, [f]) for t, c, ch in response_charts(f)]
        elif f.kind == "induction":
            if f is ind[0]:
                out.append((*induction_chart(ind), ind))
        elif f.kind == "section-map":
            out.append((*section_map_chart(f), [f]))
        elif f.kind == "regime":
            out.append((*regime_chart(f), [f]))
    return out


# ------------------------------------------------------------------------------------------
# the page
# ------------------------------------------------------------------------------------------

_STYLE = """body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:60em;
padding:0 1em;color:#222}h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em}p.caption{color:#444;max-width:48em}
details{margin:.5em 0 1.5em}pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:.8em}"""


def _provenance_summary(p: dict | None) -> str:
    if not p:
        return "no provenance recorded (a file written before provenance was kept)"
    lib = p.get("library") or {}
    commit = (lib.get("git_commit") or "")[:10]
    model = p.get("model") or {}
    bits = [f"residual-response {lib.get('version')}" + (f" @ {commit}" if commit else ""),
            f"torch {p.get('torch')}", f"transformers {p.get('transformers')}",
            f"{model.get('name')} {str(model.get('weights_sha256', ''))[:19]}",
            f"{p.get('dtype')} on {p.get('device')}, {p.get('threads')} thread(s)",
            f"{p.get('date')}", f"{p.get('wall_seconds')} s wall"]
    return "; ".join(str(b) for b in bits)


def page_html(sections: Sequence[tuple[str, str, Any, list[LoadedFile]]], *, title: str) -> str:
    """The self-contained HTML page: the vega bundle inlined, one offline chart per section."""
    import altair as alt

    from ..pages.plots import OfflineRenderer, vega_bundle_js

    renderer = OfflineRenderer()
    body = [f"<h1>{html.escape(title)}</h1>"]
    with alt.data_transformers.disable_max_rows():  # a response matrix has one row per (layer, s, t)
        for sec_title, caption, chart, files in sections:
            body.append(f"<h2>{html.escape(sec_title)}</h2>")
            body.append(renderer.html(chart.to_dict()))
            body.append(f'<p class="caption">{html.escape(caption)}</p>')
            for f in files:
                body.append(f"<details><summary>{html.escape(f.path.name)}: "
                            f"{html.escape(_provenance_summary(f.provenance))}</summary>"
                            f"<pre>{html.escape(json.dumps(f.provenance, indent=1))}</pre></details>")
    bundle = vega_bundle_js().replace("</script", "<\\/script")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
            f"<script>{bundle}</script></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")


def _write_atomic(path: Path, data: bytes) -> None:
    from ..io import write_bytes_atomic

    write_bytes_atomic(path, lambda fh: fh.write(data))


def _png(chart) -> bytes:
    import altair as alt

    from ..pages.plots import vegalite_version
    from ..pages.plots.convert import V8Unavailable, vegalite_to_png

    with alt.data_transformers.disable_max_rows():
        spec = chart.to_dict()
    try:
        return vegalite_to_png({k: v for k, v in spec.items() if k != "$schema"}, vegalite_version(), scale=2)
    except V8Unavailable as exc:
        raise ShowError(f"cannot draw the PNG: {exc}; or leave out --png") from None


def _warn_on_mixed_provenance(files: Sequence[LoadedFile]) -> None:
    """Warn when two files name the same model but were made with other weights or dtype."""
    from ..provenance import warn_if_different

    for i, a in enumerate(files):
        for b in files[i + 1:]:
            if (a.result.model or None) == (b.result.model or None):
                warn_if_different(a.provenance, b.provenance, what=a.path.name, against=b.path.name,
                                  fields=("model.weights_sha256", "dtype"), stacklevel=3)


def show(paths: Sequence[str | os.PathLike], out: str | os.PathLike, *, png: bool = False) -> list[Path]:
    """Draw result files into a self-contained HTML page ``out`` (and PNGs beside it with ``png``).

    Every file is read and every chart built before anything is written, so a bad file leaves
    nothing behind. With ``png``, one chart gives ``<out stem>.png``, several give
    ``<out stem>-1.png``, ``-2``... (charts with widgets show their first panel).

    Returns:
        the paths written. Raises :class:`ShowError` (one sentence) for a file that cannot be shown.
    """
    if not paths:
        raise ShowError("give at least one result file")
    if png:  # before any work: under an address-space limit the PNG cannot be drawn (pages.plots.convert)
        from ..pages.plots.convert import V8Unavailable, check_v8

        try:
            check_v8()
        except V8Unavailable as exc:
            raise ShowError(f"cannot draw the PNG: {exc}; or leave out --png") from None
    files = [load_result(p) for p in paths]
    check_drawable(files)  # finite values, matching lengths, layers within the model (each error names its file)
    _warn_on_mixed_provenance(files)
    sections = charts_for(files)
    title = "residual-response: " + ", ".join(f.path.name for f in files)
    page = page_html(sections, title=title).encode("utf-8")
    out = Path(out)
    images = []
    if png:
        for i, (sec_title, _, chart, _) in enumerate(sections):
            name = f"{out.stem}.png" if len(sections) == 1 else f"{out.stem}-{i + 1}.png"
            images.append((out.with_name(name), _png(chart.properties(title=sec_title))))
    _write_atomic(out, page)
    for path, data in images:
        _write_atomic(path, data)
    return [out] + [p for p, _ in images]
