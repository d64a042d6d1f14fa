"""Every chart encodes columns of the frame it is given, and the right ones.

Why: a chart whose y encodes ``score`` where it should encode ``dup`` is a valid Vega-Lite spec and
draws without complaint; only its data say it is wrong. Two checks per chart: every field an
encoding names is a column of the data of its view (or made by one of its transforms), and the
values a chart draws on its main axis are the frame's own column, unchanged.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from residual_response.pages import plots
from residual_response.sequences import InductionLayout

_CHANNEL_KEYS = ("field",)


def _views(spec: dict, datasets: dict, inherited=None) -> list[tuple[list[dict], dict, list, str]]:
    """``(rows, encoding, transforms, mark)`` of every view of a spec that encodes something."""
    data = spec.get("data", inherited)
    out = []
    if "encoding" in spec:
        rows = datasets.get(data.get("name"), data.get("values", [])) if isinstance(data, dict) else []
        mark = spec.get("mark", {})
        out.append((rows, spec["encoding"], spec.get("transform", []), mark if isinstance(mark, str) else mark.get("type")))
    for key in ("layer", "hconcat", "vconcat", "concat"):
        for sub in spec.get(key, []):
            out += _views(sub, datasets, data)
    if "spec" in spec:  # a facet
        out += _views(spec["spec"], datasets, data)
    return out


def _fields(encoding: dict) -> list[tuple[str, str]]:
    found = []
    for channel, enc in encoding.items():
        for item in enc if isinstance(enc, list) else [enc]:
            if isinstance(item, dict) and "field" in item:
                found.append((channel, item["field"]))
    return found


def check_encodings(chart) -> list[tuple[list[dict], dict, list, str]]:
    """Assert every encoded field is a column of its view's data (or a transform's output); return the views."""
    spec = chart.to_dict()
    views = _views(spec, spec.get("datasets", {}))
    assert views, "no view encodes anything"
    for rows, encoding, transforms, mark in views:
        made = {t.get("as") for t in transforms if "as" in t}
        columns = set(rows[0]) if rows else set()
        for channel, field in _fields(encoding):
            assert field in columns | made, f"{mark}: {channel} encodes {field!r}, not a column of its data {sorted(columns)}"
    return views


def _drawn(views, mark: str, channel: str = "y") -> list:
    """The values the views with ``mark`` draw on ``channel``, in order."""
    out = []
    for rows, encoding, _, m in views:
        if m == mark and channel in encoding and "field" in encoding[channel]:
            out += [r[encoding[channel]["field"]] for r in rows]
    return out


@pytest.fixture
def depth_df() -> pd.DataFrame:
    d = np.linspace(0, 1, 4)
    return pd.DataFrame([(m, x, 1 + x + k, 0.9 + x + k, 1.1 + x + k, 5 + x, 4 + x, 6 + x)
                         for k, m in enumerate(["a", "b"]) for x in d],
                        columns=["model", "rel_depth", "score", "lo", "hi", "dup", "dup_lo", "dup_hi"])


def test_builders_encode_their_frames(depth_df):
    lines = pd.DataFrame({"eps": [1e-3, 1e-2] * 2, "chi": [1.0, 1.1, 2.0, 2.1], "layer": [1, 1, 2, 2]})
    views = check_encodings(plots.line_chart_log_x(lines, "eps", "chi", "layer"))
    assert _drawn(views, "line") == lines.chi.tolist()
    views = check_encodings(plots.score_vs_depth(depth_df))
    assert _drawn(views, "line") == depth_df.score.tolist() and _drawn(views, "errorbar") == depth_df.lo.tolist()
    grid = pd.DataFrame([(s, t, 10 * s + t) for s in range(3) for t in range(3)], columns=["source", "target", "v"])
    views = check_encodings(plots.matrix_heatmap(grid, "target", "source", "v"))
    assert _drawn(views, "rect", "color") == grid.v.tolist()
    layered = grid.assign(layer=0)
    views = check_encodings(plots.heatmap_with_selector(layered, "target", "source", "v", "layer"))
    assert _drawn(views, "rect", "color") == layered.v.tolist()


def test_the_emergence_figure_draws_the_duplicate_score_on_its_right(depth_df):
    band = pd.DataFrame({"rel_depth": [0.0, 1.0], "band_lo": [0.9, 0.9], "band_hi": [1.1, 1.1]})
    chart = plots.emergence_scores(depth_df, ["a", "b"], band, setting="T = 4")
    spec = chart.to_dict()
    left, right = (_views(panel, spec["datasets"]) for panel in spec["hconcat"])
    check_encodings(chart)
    assert _drawn(left, "line") == depth_df.score.tolist()  # induction on the left
    assert _drawn(right, "line") == depth_df.dup.tolist()  # the duplicate-token score on the right, not `score`
    assert _drawn(right, "errorbar") == depth_df.dup_lo.tolist()


def test_matrix_and_sweep_charts_encode_their_frames():
    from residual_response.pages.tables import matrix_frame

    lay = InductionLayout(T=3, offset=1)
    chi = np.abs(np.random.default_rng(0).normal(size=(2, 3, lay.length))) + 1e-3  # [n_read, n_src, N]
    frame = matrix_frame(chi, [2, 4], [1, 2, 3], [2, 4])
    views = check_encodings(plots.response_matrix_chart(frame, lay))
    assert _drawn(views, "rect", "color") == frame["log10 chi"].tolist()
    curves = pd.DataFrame({"layer": [1, 1, 2, 2], "eps": [1e-3, 1e-2] * 2, "chi": [1.0, 1.1, 2.0, 2.1]})
    jvp = pd.DataFrame({"layer": [1, 2], "chi_jvp": [1.05, 2.05]})
    views = check_encodings(plots.sweep_with_jvp(curves, jvp, "layer"))
    assert _drawn(views, "rule") == jvp.chi_jvp.tolist() and _drawn(views, "line") == curves.chi.tolist()


def test_null_stability_and_section_map_figures_encode_their_frames():
    null = pd.DataFrame({"rel_depth": [0.25, 0.5], "score": [1.0, 1.1], "ci_low": [0.9, 1.0], "ci_high": [1.1, 1.2],
                         "family": ["gpt2", "gpt2"], "size": ["small"] * 2, "model": ["m"] * 2, "layer": [1, 2],
                         "baseline": ["neighbours"] * 2})
    views = check_encodings(plots.null_scores(null, setting="T = 4"))
    assert _drawn(views, "point") == null.score.tolist() and _drawn(views, "errorbar") == null.ci_low.tolist()
    # one panel per baseline: the points and intervals take the facet's rows (a layer with data of its
    # own would draw every baseline's rows in every panel); only the dotted 1 carries its own
    two = pd.concat([null, null.assign(baseline="twin", score=[0.5, 0.6])])
    spec = plots.null_scores(two, setting="T = 4").to_dict()
    marks = {(lay["mark"]["type"] if isinstance(lay["mark"], dict) else lay["mark"]): lay for lay in spec["spec"]["layer"]}
    assert spec["facet"]["field"] == "baseline" and "data" in spec
    assert "data" not in marks["point"] and "data" not in marks["errorbar"] and "data" in marks["rule"]
    stability = [{"model": "m", "T": 8, "seeds": 2, "emergence layer": 3, "interval low": 2, "interval high": 4}]
    views = check_encodings(plots.emergence_stability(stability, eps_text="1e-2"))
    assert _drawn(views, "point") == [3] and _drawn(views, "rule") == [2]
    from residual_response.induction import SectionMap

    score = np.array([[np.nan, 2.0, 4.0], [np.nan, np.nan, 0.5]])
    sm = SectionMap("m", 4, [0], [0, 1], [0, 1, 2], score, score, score, score)
    views = check_encodings(plots.section_maps({"m": sm}, setting="T = 4"))
    assert _drawn(views, "rect", "color") == [1.0, 2.0, -1.0]  # log2 of the finite cells, row by row


def test_cross_check_figures_encode_their_results():
    res = SimpleNamespace(read_streams=[0, 1, 2], l0=0, score=[np.nan, 1.5, 3.0], ci_low=[np.nan, 1.2, 2.5],
                          ci_high=[np.nan, 1.8, 3.5])
    att = np.array([[0.1, 0.2], [0.3, 0.9]])  # [L, H]
    chart = plots.attention_beside_response(att, res, name="m", setting="T = 4")
    views = check_encodings(chart)
    assert _drawn(views, "rect", "color") == att.ravel().tolist()
    assert _drawn(views, "point", "x") == [1.5, 3.0]  # the score of the stream each block writes
    study = SimpleNamespace(k=1, random_keys=["random-0"], results={"none": res, "top": res, "random-0": res})
    views = check_encodings(plots.ablation_panel(study, 2, title="m"))
    assert _drawn(views, "line") == [1.5, 3.0] * 3
