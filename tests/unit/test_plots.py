"""Fast tests of residual_response.pages.plots (no browser): offline HTML, stable ids, valid specs."""

from __future__ import annotations

import json
import re

import altair as alt
import numpy as np
import pandas as pd
import pytest
import vl_convert as vlc

from residual_response.pages import plots

URL = re.compile(r"https?://", re.I)


@pytest.fixture
def line_df() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    eps = np.logspace(-3, 0, 5)
    rows = [(layer, e, (1 + layer) * e * (1 + 0.01 * rng.standard_normal())) for layer in range(3) for e in eps]
    df = pd.DataFrame(rows, columns=["layer", "eps", "chi"])
    return df.assign(lo=0.9 * df["chi"], hi=1.1 * df["chi"])


@pytest.fixture
def grid_df() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = [(layer, s, t, rng.standard_normal()) for layer in range(3) for s in range(4) for t in range(4)]
    return pd.DataFrame(rows, columns=["layer", "source", "target", "response"])


@pytest.fixture
def depth_df() -> pd.DataFrame:
    d = np.linspace(0, 1, 4)
    return pd.DataFrame(
        [(m, x, 1 + x + k, 0.9 + x + k, 1.1 + x + k) for k, m in enumerate(["a", "b"]) for x in d],
        columns=["model", "rel_depth", "score", "lo", "hi"],
    )


@pytest.fixture
def charts(line_df, grid_df, depth_df) -> dict[str, alt.TopLevelMixin]:
    return {
        "line": plots.line_chart_log_x(line_df, "eps", "chi", "layer"),
        "line_band_logy": plots.line_chart_log_x(line_df, "eps", "chi", "layer", lo="lo", hi="hi", log_y=True),
        "heat_slider": plots.heatmap_with_selector(grid_df, "source", "target", "response", "layer"),
        "heat_select": plots.heatmap_with_selector(
            grid_df, "source", "target", "response", "layer", widget="select", init=2, diverging=True
        ),
        "depth": plots.score_vs_depth(depth_df),
        "depth_no_ci": plots.score_vs_depth(depth_df, lo=None, hi=None, rules=()),
        "depth_band": plots.score_vs_depth(
            depth_df, band=pd.DataFrame({"rel_depth": [0.0, 0.5, 1.0], "band_lo": [0.9, 0.8, 0.9], "band_hi": [1.1, 1.2, 1.1]})
        ),
        "matrix": plots.matrix_heatmap(grid_df[grid_df.layer == 0], "target", "source", "response"),
        "matrix_div": plots.matrix_heatmap(grid_df[grid_df.layer == 0], "target", "source", "response", diverging=True),
    }


def _tooltips(spec: dict) -> list:
    """Every encoding.tooltip in a (possibly layered) spec."""
    found = []
    for view in [spec, *spec.get("layer", [])]:
        if "tooltip" in view.get("encoding", {}):
            found.append(view["encoding"]["tooltip"])
    return found


# --- versions the module relies on ------------------------------------------------------


def test_altair_pin_and_vegalite_version_match_vl_convert():
    assert alt.__version__.split(".")[0] == "6", "plots.py relies on altair 6's renderer protocol"
    version = plots.vegalite_version()
    assert str(alt.SCHEMA_VERSION).lstrip("v").startswith(version)
    assert version in vlc.get_vegalite_versions()


# --- chart builders -----------------------------------------------------------------------


def test_builders_return_valid_specs_with_tooltips(charts):
    for name, chart in charts.items():
        spec = chart.to_dict(validate=True)  # raises on an invalid Vega-Lite spec
        assert _tooltips(spec), f"{name}: no tooltip"
        text = json.dumps(spec)
        assert not re.search(r"\bparam_\d+\b", text), f"{name}: unnamed (counter) param"


def test_heatmap_selector_binds_a_widget(charts):
    slider = charts["heat_slider"].to_dict()["params"][0]
    assert slider["name"] == "layer_select" and slider["bind"]["input"] == "range"
    assert (slider["bind"]["min"], slider["bind"]["max"], slider["bind"]["step"], slider["value"]) == (0, 2, 1, 0)
    select = charts["heat_select"].to_dict()["params"][0]
    assert select["bind"]["input"] == "select" and select["value"] == 2


def test_builders_validate_input(line_df, grid_df, depth_df):
    with pytest.raises(ValueError, match="missing column"):
        plots.line_chart_log_x(line_df, "eps", "nope", "layer")
    with pytest.raises(ValueError, match="> 0"):
        plots.line_chart_log_x(line_df.assign(eps=line_df.eps - 1), "eps", "chi", "layer")
    with pytest.raises(ValueError, match="both lo and hi"):
        plots.line_chart_log_x(line_df, "eps", "chi", "layer", lo="lo")
    with pytest.raises(ValueError, match="empty"):
        plots.matrix_heatmap(grid_df.iloc[:0], "source", "target", "response")
    with pytest.raises(ValueError, match="evenly spaced"):
        plots.heatmap_with_selector(grid_df.assign(layer=grid_df.layer ** 2), "source", "target", "response", "layer")
    with pytest.raises(ValueError, match="widget"):
        plots.heatmap_with_selector(grid_df, "source", "target", "response", "layer", widget="knob")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        plots.score_vs_depth(depth_df.assign(rel_depth=depth_df.rel_depth * 2))


# --- the renderer ---------------------------------------------------------------------------


def test_renderer_html_is_offline_and_complete(charts):
    renderer = plots.OfflineRenderer()
    for name, chart in charts.items():
        html = renderer.html(chart.to_dict())
        assert not URL.search(html), f"{name}: URL in {URL.search(html)}"
        cid = re.match(r'<div id="(rr-chart-[0-9a-f]{12})" class="rr-chart">', html).group(1)
        assert f'class="{plots.CHART_CLASS}-vega"' in html
        assert f'<div class="{plots.CHART_CLASS}-fallback"><svg' in html  # readable without JS
        assert "window.vegaEmbed" in html and f'getElementById("{cid}")' in html
        assert html.count("<script>") == 1 and html.endswith("</script></div>")


def test_chart_ids_are_deterministic(charts):
    spec = charts["heat_slider"].to_dict()
    chart_id = re.compile(r'id="(rr-chart-[^"]+)"')
    first, second = plots.OfflineRenderer(), plots.OfflineRenderer()
    html_1, html_2 = first.html(spec), second.html(spec)
    assert html_1 == html_2  # a fresh kernel reproduces the output byte for byte
    again = chart_id.search(first.html(spec)).group(1)  # same chart twice on one page
    assert again == chart_id.search(html_1).group(1) + "-2"
    other = chart_id.search(plots.OfflineRenderer().html(charts["matrix"].to_dict())).group(1)
    assert other != chart_id.search(html_1).group(1)


def test_spec_cannot_close_the_script_early(grid_df):
    chart = plots.matrix_heatmap(grid_df, "source", "target", "response", title="</script><!-- x")
    html = plots.OfflineRenderer().html(chart.to_dict())
    script = html[html.index("<script>") + len("<script>"): html.rindex("</script>")]
    assert "</" not in script and "<!--" not in script


def test_svg_fallback_ids_are_scoped():
    svg = '<svg xmlns="http://www.w3.org/2000/svg"><clipPath id="clip7"/><g clip-path="url(#clip7)"/></svg>'
    out = plots.render._scope_svg(svg, "rr-chart-abc")
    assert 'id="rr-chart-abc-0"' in out and "url(#rr-chart-abc-0)" in out and "xmlns" not in out


def test_enable_offline_charts_sets_the_renderer(charts):
    previous = alt.renderers.active
    try:
        assert plots.enable_offline_charts() == plots.RENDERER_NAME
        assert plots.enable_offline_charts() == plots.RENDERER_NAME  # idempotent
        bundle = charts["matrix"]._repr_mimebundle_()
        bundle = bundle[0] if isinstance(bundle, tuple) else bundle
        assert bundle["text/html"].startswith('<div id="rr-chart-')
        assert not URL.search(bundle["text/html"])
    finally:
        alt.renderers.enable(previous)


# --- the JavaScript bundle --------------------------------------------------------------------


def test_write_vega_bundle(tmp_path):
    path = plots.write_vega_bundle(tmp_path / "_static")
    assert path == tmp_path / "_static" / plots.VEGA_BUNDLE_NAME
    js = path.read_text()
    assert len(js) > 100_000
    body = js.split("*/\n", 1)[1]
    # Wrapped in one function scope, so its top-level `const _` cannot clash with doctools.js.
    assert body.startswith("(function () {\n") and body.rstrip().endswith("})();")
    assert "window.vegaEmbed" in body
    assert not re.search(r"^\s*(import|export)\s", body, re.M)


class _FakeShell:
    """Just enough of IPython's shell for page_setup: its events."""

    def __init__(self):
        self.hooks = {}
        self.events = self

    def register(self, event, fn):
        self.hooks.setdefault(event, []).append(fn)

    def run_cell(self, body):
        for fn in self.hooks.get("pre_run_cell", []):
            fn(None)
        try:
            body()
        finally:
            for fn in self.hooks.get("post_run_cell", []):
                fn(None)


def _bar(desc):
    import tqdm.auto

    for _ in tqdm.auto.tqdm(range(3), desc=desc):
        pass


def test_page_setup_returns_none_and_enables_the_offline_renderer():
    import altair as alt

    from residual_response.pages import plots, setup

    shell = _FakeShell()
    assert setup.page_setup(shell) is None  # a set-up cell ending with it prints nothing
    assert alt.renderers.active == plots.RENDERER_NAME
    shell.hooks["post_run_cell"][0](None)  # the end of the set-up cell
    setup.page_setup(shell)  # again: nothing more registered
    assert [len(v) for v in shell.hooks.values()] == [1, 1]


def test_eps_axis_has_one_format_and_untruncated_legend():
    import pandas as pd

    from residual_response.pages import plots

    df = pd.DataFrame({"eps": [1e-6, 1e-3, 1.0] * 2, "chi": [1.0, 1.1, 1.2] * 2,
                       "condition": ["a very long condition name for a legend"] * 3 + ["b"] * 3})
    spec = plots.line_chart_log_x(df, "eps", "chi", "condition", color_title="ablation").to_dict()
    enc = spec["layer"][-1]["encoding"]
    assert enc["x"]["axis"]["format"] == plots.EPS_FORMAT
    assert enc["x"]["scale"]["nice"] is False
    assert enc["color"]["title"] == "ablation" and enc["color"]["legend"]["labelLimit"] == 0


def test_quiet_progress_silences_every_tqdm_bar_inside_its_block_only(capsys):
    import tqdm.std

    from residual_response.pages.setup import quiet_progress

    init = tqdm.std.tqdm.__init__
    with quiet_progress():
        _bar("should not show")
    assert "should not show" not in capsys.readouterr().err
    assert tqdm.std.tqdm.__init__ is init  # restored: the rest of the process draws its bars
    _bar("shows again")
    assert "shows again" in capsys.readouterr().err


def test_page_setup_quiets_every_cell_of_a_page(capsys):
    import tqdm.std

    from residual_response.pages.setup import page_setup

    init, shell = tqdm.std.tqdm.__init__, _FakeShell()
    page_setup(shell)
    _bar("the set-up cell")  # the rest of the cell that ran the set-up is quiet too
    shell.hooks["post_run_cell"][0](None)
    shell.run_cell(lambda: _bar("a later cell"))
    err = capsys.readouterr().err
    assert "the set-up cell" not in err and "a later cell" not in err
    assert tqdm.std.tqdm.__init__ is init  # between cells, and after them, tqdm is as it was


def test_matrix_with_stripes_and_sweep_with_jvp_are_valid_charts():
    from residual_response.sequences import InductionLayout
    from residual_response.pages.tables import matrix_frame

    lay = InductionLayout(T=3, offset=1)
    assert len(plots.stripe_frame(lay)) == (3 - 1) + 3
    chi = np.abs(np.random.default_rng(0).normal(size=(2, 3, lay.length))) + 1e-3  # [n_read, n_src, N]
    frame = matrix_frame(chi, [2, 4], [1, 2, 3], [2, 4])
    spec = plots.response_matrix_chart(frame, lay, domain=(-3, 1)).to_dict()
    assert spec["layer"][0]["encoding"]["color"]["scale"]["domain"] == [-3.0, 1.0]
    curves = pd.DataFrame({"layer": [1, 1, 2, 2], "eps": [1e-3, 1e-2] * 2, "chi": [1.0, 1.1, 2.0, 2.1]})
    jvp = pd.DataFrame({"layer": [1, 2], "chi_jvp": [1.0, 2.0]})
    plots.sweep_with_jvp(curves, jvp, "layer").to_dict()
    with pytest.raises(ValueError, match="chi_jvp"):
        plots.sweep_with_jvp(curves, jvp.rename(columns={"chi_jvp": "x"}), "layer")


# --- figures of the emergence, cross-check, null and section-map pages ---------------------


def _all_tooltips(spec) -> int:
    """Number of tooltip encodings anywhere in a (concatenated, faceted, layered) spec."""
    if isinstance(spec, dict):
        return int("tooltip" in spec.get("encoding", {})) + sum(_all_tooltips(v) for v in spec.values())
    if isinstance(spec, list):
        return sum(_all_tooltips(v) for v in spec)
    return 0


def test_page_figures_are_valid_and_carry_their_setting(depth_df):
    from residual_response.pages.tables import setting_text

    setting = setting_text(10, 2, 1e-2)
    scores = depth_df.assign(dup=depth_df.score, dup_lo=depth_df.lo, dup_hi=depth_df.hi)
    band = pd.DataFrame({"rel_depth": [0.0, 1.0], "band_lo": [0.8, 0.8], "band_hi": [1.2, 1.2]})
    null = pd.DataFrame([{"rel_depth": x, "score": 1.0, "ci_low": 0.9, "ci_high": 1.1, "family": f, "size": "small",
                          "model": f"{f} small seed 0", "layer": 1, "baseline": b}
                         for x in (0.25, 1.0) for f in ("gpt2", "llama") for b in ("neighbours", "random control sequences")])
    stability = pd.DataFrame([{"model": "m", "T": t, "seeds": s, "emergence layer": 3, "interval low": 2,
                               "interval high": 4} for t in (8, 12) for s in (2, 4)])

    class Res:  # an InductionResult with the fields the chart reads
        read_streams, score, ci_low, ci_high, l0 = [0, 1, 2], [float("nan"), 1.0, 3.0], [float("nan"), 0.8, 2.0], \
            [float("nan"), 1.2, 4.0], 0

    figures = {
        "emergence_scores": plots.emergence_scores(scores, ["a"], band, setting=setting),
        "attention_beside_response": plots.attention_beside_response(np.full((2, 3), 0.5), Res(), name="m",
                                                                      setting=setting),
        "null_scores": plots.null_scores(null, setting=setting),
        "emergence_stability": plots.emergence_stability(stability, eps_text="1e-2"),
    }
    for name, chart in figures.items():
        spec = chart.to_dict(validate=True)
        assert _all_tooltips(spec), f"{name}: no tooltip"
        if name != "emergence_stability":
            assert setting in json.dumps(spec, ensure_ascii=False), f"{name}: the setting is not shown"
    assert "ε = 1e-2" in json.dumps(figures["emergence_stability"].to_dict(), ensure_ascii=False)
    with pytest.raises(ValueError, match="missing column"):
        plots.emergence_scores(depth_df, ["a"], band, setting=setting)


def _fake_study(k: int = 2, n_random: int = 3):
    """An AblationStudy with the fields the ablation chart reads: three streams after l0 = 0."""
    class Res:
        def __init__(self, top):
            self.read_streams, self.l0 = [0, 1, 2, 3], 0
            self.score = [float("nan"), 1.0, top / 2, top]
            self.ci_low = [float("nan"), 0.9, 0.8 * top / 2, 0.8 * top]
            self.ci_high = [float("nan"), 1.1, 1.2 * top / 2, 1.2 * top]

    class Study:
        pass

    study = Study()
    study.k, study.random_keys = k, [f"random-{j}" for j in range(n_random)]
    study.results = {"none": Res(8.0), "top": Res(4.0), "attention": Res(1.5), "outside": Res(6.0),
                     **{key: Res(7.0 - j) for j, key in enumerate(study.random_keys)}}
    return study


def test_ablation_chart_draws_random_draws_grey_and_named_sets_in_reserved_colours():
    from residual_response.pages.tables import ABLATION_LABELS, ablation_frame

    study = _fake_study()
    frame = ablation_frame(study, 3)
    assert len(frame) == 7 * 3 and set(frame.condition) == set(ABLATION_LABELS.values())
    assert (frame.draw[frame.random] >= 0).all() and (frame.draw[~frame.random] == -1).all()
    assert sorted(frame.draw[frame.random].unique()) == [0, 1, 2]
    assert frame[frame.condition == ABLATION_LABELS["top"]].score.tolist() == [1.0, 2.0, 4.0]

    chart = plots.ablation_panel(study, 3, title=["m (k = 2)", "T = 4, 2 seeds"])
    spec = chart.to_dict(validate=True)
    assert _all_tooltips(spec)
    # every data layer shows exactly its part of the frame: the draws apart from the named sets
    for layer, part in zip(chart.layer[1:], (frame[frame.random], frame[~frame.random], frame[~frame.random])):
        pd.testing.assert_frame_equal(layer.data.reset_index(drop=True), part.reset_index(drop=True))
    rand, bars, lines = (view["encoding"] for view in spec["layer"][1:])
    marks = [view["mark"] for view in spec["layer"][1:]]
    for enc in (rand, bars, lines):
        assert (enc["color"]["field"], enc["x"]["field"]) == ("condition", "rel_depth")
    assert rand["y"]["field"] == "score" and rand["detail"]["field"] == "draw"  # one line per draw
    assert (bars["y"]["field"], bars["y2"]["field"]) == ("lo", "hi")  # intervals of the named sets only
    assert marks[0]["strokeWidth"] <= 1 and marks[2]["strokeWidth"] >= 2 and marks[2]["point"]
    # one colour scale: the random draws' entry is grey, the named sets have reserved colours
    scale = lines["color"]["scale"]
    assert rand["color"]["scale"] == scale == bars["color"]["scale"]
    colour = dict(zip(scale["domain"], scale["range"]))
    grey = colour[ABLATION_LABELS["random"]]
    rgb = lambda c: tuple(int(c[i:i + 2], 16) for i in (1, 3, 5))
    assert len(set(rgb(grey))) == 1 and rgb(grey)[0] > 128  # a light grey
    named = [colour[ABLATION_LABELS[key]] for key in ("none", "top", "attention", "outside")]
    assert len(set(named)) == 4 and grey not in named
    for key in ("top", "attention", "outside"):  # the named sets are in colour, not grey
        assert len(set(rgb(colour[ABLATION_LABELS[key]]))) == 3
    assert rgb(colour[ABLATION_LABELS["none"]])[0] < 64  # no ablation: near black
    legend = lines["color"]["legend"]
    assert legend["labelFontSize"] >= 12 and legend["labelLimit"] == 0  # readable, never cut off
    # panels share one legend when asked to
    both = plots.in_rows([chart, plots.ablation_panel(_fake_study(k=1), 3, title="toy")], colour="shared")
    assert both.to_dict()["resolve"]["scale"]["color"] == "shared"
    with pytest.raises(ValueError, match="colour must be"):
        plots.in_rows([chart], colour="mixed")


# --- ChartStyle: one value for the presentational options, the old keywords as shorthands ------


def test_a_chart_style_and_the_equivalent_keywords_give_the_same_spec(line_df, grid_df, depth_df):
    from dataclasses import replace

    def same(with_style, with_keywords):
        assert with_style.to_dict() == with_keywords.to_dict()

    style = plots.ChartStyle(title=["a", "b"], x_title="X", y_title="Y", color_title="C", width=210, height=120)
    same(plots.line_chart_log_x(line_df, "eps", "chi", "layer", lo="lo", hi="hi",
                                style=replace(style, log_y=True, x_format="d", dashed={1: [2, 2]})),
         plots.line_chart_log_x(line_df, "eps", "chi", "layer", lo="lo", hi="hi", log_y=True, x_format="d",
                                dashed={1: [2, 2]}, title=["a", "b"], x_title="X", y_title="Y", color_title="C",
                                width=210, height=120))
    same(plots.score_vs_depth(depth_df, style=plots.ChartStyle(y_title="S", color_title="c", width=250, log_y=True)),
         plots.log_y(plots.score_vs_depth(depth_df, y_title="S", color_title="c", width=250)))
    same(plots.heatmap_with_selector(grid_df, "source", "target", "response", "layer", widget="select",
                                     style=plots.ChartStyle(diverging=True, scheme="blueorange", title="t")),
         plots.heatmap_with_selector(grid_df, "source", "target", "response", "layer", widget="select",
                                     diverging=True, scheme="blueorange", title="t"))
    g0 = grid_df[grid_df.layer == 0]
    same(plots.matrix_heatmap(g0, "target", "source", "response",
                              style=plots.ChartStyle(diverging=True, color_domain=[-3, 3], width=50, height=60)),
         plots.matrix_heatmap(g0, "target", "source", "response", diverging=True, domain=[-3, 3], width=50, height=60))
    # a keyword overrides the style's field; the defaults are the builder's own
    same(plots.matrix_heatmap(g0, "target", "source", "response", style=plots.ChartStyle(title="old"), title="new"),
         plots.matrix_heatmap(g0, "target", "source", "response", title="new"))
    assert plots.line_chart_log_x(line_df, "eps", "chi", "layer", style=plots.ChartStyle()).to_dict()["width"] == 420
    assert plots.matrix_heatmap(g0, "target", "source", "response", style=plots.ChartStyle()).to_dict()["width"] == 320


def test_a_chart_style_is_frozen_and_checked():
    import dataclasses

    style = plots.ChartStyle(width=100)
    with pytest.raises(dataclasses.FrozenInstanceError):
        style.width = 200  # type: ignore[misc]
    df = pd.DataFrame({"x": [0, 1], "y": [0, 1], "v": [1.0, 2.0]})
    with pytest.raises(TypeError, match="widht"):
        plots.matrix_heatmap(df, "x", "y", "v", widht=100)  # a typo is an error, as before
    with pytest.raises(ValueError, match="dashed"):
        plots.matrix_heatmap(df, "x", "y", "v", style=plots.ChartStyle(dashed={0: [2, 2]}))  # not silently dropped
    with pytest.raises(TypeError, match="ChartStyle"):
        plots.matrix_heatmap(df, "x", "y", "v", style={"width": 100})
