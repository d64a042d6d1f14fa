"""Tidy tables and grids: arithmetic checked on arrays whose answer is known (exact comparisons)."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from residual_response.induction import Rise, SectionMap
from residual_response.pages.tables import distance_profile, matrix_frame, section_map_frame, stripe_mean
from residual_response.sequences import spread


def test_spread_includes_both_ends_and_never_repeats():
    assert spread(1, 30, 4) == [1, 11, 20, 30]
    assert spread(0, 2, 10) == [0, 1, 2]
    assert spread(5, 5, 3) == [5]
    with pytest.raises(ValueError, match="hi >= lo"):
        spread(3, 1, 2)
    with pytest.raises(TypeError, match="integers"):
        spread(0, 1.5, 2)


def _stack():
    # chi[l, j, t] = 100 * layer_index + 10 * j + t, zero below each source (sources 1, 2; N = 5)
    sources, reads, N = [1, 2], [3, 7], 5
    chi = np.zeros((2, 2, N))
    for i in range(2):
        for j, s in enumerate(sources):
            for t in range(s, N):
                chi[i, j, t] = 100 * i + 10 * j + t
    return chi, reads, sources


def test_matrix_frame_keeps_targets_from_the_source_on():
    chi, reads, sources = _stack()
    df = matrix_frame(chi, reads, sources, layers=[7])
    assert len(df) == (5 - 1) + (5 - 2)
    assert (df.target >= df.source).all() and set(df.layer) == {7}
    row = df[(df.source == 2) & (df.target == 4)].iloc[0]
    assert row["log10 chi"] == pytest.approx(np.log10(100 + 10 + 4), abs=1e-12)
    with pytest.raises(ValueError, match="not read"):
        matrix_frame(chi, reads, sources, layers=[4])
    with pytest.raises(ValueError, match="must be"):
        matrix_frame(chi[:, :1], reads, sources, layers=[3])


def test_distance_profile_averages_diagonals():
    chi, reads, sources = _stack()
    df = distance_profile(chi, reads, sources, layers=[3]).set_index("distance")
    # d = 1: (j=0, t=2) -> 2 and (j=1, t=3) -> 13; d = 3: only (j=0, t=4) -> 4
    assert df.loc[1, "mean chi"] == pytest.approx(7.5, abs=1e-12) and df.loc[1, "n"] == 2
    assert df.loc[3, "mean chi"] == pytest.approx(4.0, abs=1e-12) and df.loc[3, "n"] == 1
    assert list(df.index) == [1, 2, 3]


def test_stripe_mean_picks_the_entries():
    chi, reads, sources = _stack()
    assert stripe_mean(chi, reads, 7, [0, 1], [3, 4]) == pytest.approx((103 + 114) / 2, abs=1e-12)
    with pytest.raises(ValueError, match="one length"):
        stripe_mean(chi, reads, 7, [0, 1], [3])


def _map():
    nan = np.nan
    score = np.array([[nan, 1.1, 1.2, 4.0, 4.5],   # l0 = 0: largest step at block 2 (stream 2 -> 3)
                      [nan, nan, nan, 0.9, 1.0]])  # l0 = 2: step at block 2 is 1 -> 0.9, block 3: +0.1
    return SectionMap(model="m", T=4, seeds=[0], l0s=[0, 2], read_streams=[1, 2, 3, 4],
                      score=score, ci_low=score - 0.5, ci_high=score + 0.5, duplicate_score=score)


def test_section_map_frame_drops_the_empty_cells():
    df = section_map_frame(_map())
    assert len(df) == 4 + 2
    assert isinstance(df, pd.DataFrame) and (df["read layer l"] > df["perturbed layer l0"]).all()
    assert df["log2 score"].iloc[2] == pytest.approx(np.log2(4.0), abs=1e-12)


def test_log_eps_grid_per_decade():
    from residual_response.regime import log_eps_grid

    g = log_eps_grid(1e-6, 1.0, 2)
    assert len(g) == 13 and g[0] == pytest.approx(1e-6, rel=1e-12) and g[-1] == pytest.approx(1.0, rel=1e-12)
    assert np.allclose(np.diff(np.log10(g)), 0.5, atol=1e-12)
    with pytest.raises(ValueError, match="must be below"):
        log_eps_grid(1.0, 1e-3, 2)
    with pytest.raises(ValueError, match="eps_min must be a finite number > 0"):
        log_eps_grid(-1e-3, 1.0, 2)
    with pytest.raises(TypeError, match="points_per_decade must be a number"):
        log_eps_grid(1e-3, 1.0, "4")


def test_styled_marks_missing_values_alike_and_hides_the_index():
    import numpy as np
    import pandas as pd

    from residual_response.pages.tables import NA, styled

    df = pd.DataFrame({"a": [1.0, np.nan], "b": ["x", None], "n": [18, 3], "f": [0.18, 2.0]})
    html = styled(df, {"a": "{:.1f}"}, uuid="t").to_html()
    assert html.count(NA) == 2 and "nan" not in html and "None" not in html
    assert ">18<" in html and "18.0" not in html and "1.0" in html
    assert ">0.18<" in html and "0.180000" not in html and ">2.00<" in html
    assert "row_heading" not in html or "blank" not in html


def test_fmt_eps_writes_strengths_like_the_axis_labels():
    from residual_response.pages.tables import NA, fmt_eps

    assert fmt_eps(1e-8) == "1e-8" and fmt_eps(3.16e-6) == "3.2e-6" and fmt_eps(1.0) == "1e+0"
    assert fmt_eps(0.01) == "1e-2" and fmt_eps(None) == NA and fmt_eps(float("nan")) == NA
    assert fmt_eps(20.0) == "2e+1"


# ---- what the response-matrix and model pages quote ----

from residual_response.sequences import InductionLayout  # noqa: E402
from residual_response.pages.tables import (describe_frame, distance_ratio, first_source_ratio, headline_text,  # noqa: E402
                                      panel_layers, ratio_peak, reach_summary, rise_sentence, rise_text, setting_text, step_cost,
                                      stripe_contrasts, stripe_scores_frame, timed)


def test_panel_layers_are_evenly_spaced_and_end_at_the_last_stream():
    assert panel_layers(30, 6) == [5, 10, 15, 20, 25, 30]
    assert panel_layers(18, 4) == [6, 10, 14, 18]
    assert panel_layers(3, 6) == [1, 2, 3]


def test_timed_adds_up_the_seconds_of_a_step():
    store = {}
    with timed(store, "a"):
        pass
    first = store["a"]
    with timed(store, "a"):
        sum(range(10_000))
    assert 0 <= first < store["a"] and list(store) == ["a"]


def test_setting_text_names_T_seeds_and_eps():
    assert setting_text(10, 2, 0.01) == "T = 10, 2 seeds, ε = 1e-2"
    assert setting_text(8, 1, 0.001, layer=0) == "T = 8, 1 seed, ε = 1e-3, l0 = 0"


def test_stripe_contrasts_read_the_stripe_cells():
    lay = InductionLayout(T=3, offset=1)  # N = 7, sources 1..3
    rep = np.ones((2, 3, 7))
    ctrl = np.ones((2, 3, 7))
    rep[1, lay.induction_sources.numpy() - 1, lay.induction_targets.numpy()] = 6.0
    rep[1, lay.duplicate_sources.numpy() - 1, lay.duplicate_targets.numpy()] = 3.0
    out = stripe_contrasts({"repeated": rep, "twin": ctrl}, [2, 5], lay, top=5, first=2)
    assert out == {"ind_rep_top": 6.0, "ind_twin_top": 1.0, "ind_ratio_first": 1.0, "ind_ratio_top": 6.0,
                   "dup_ratio_top": 3.0}


def test_stripe_ratio_intervals_bracket_the_point_ratio():
    from residual_response.pages.tables import stripe_ratio_intervals

    lay = InductionLayout(T=6, offset=1)
    rng = np.random.default_rng(0)
    twin = rng.lognormal(0, 0.2, size=(3, 2, 6, 13))  # [n_seeds, n_read, T, N]
    rep = twin.copy()
    rows, tgts = lay.induction_sources.numpy() - 1, lay.induction_targets.numpy()
    rep[:, 1, rows, tgts] *= 4.0  # the induction stripe at stream 5 is exactly 4 times the twin's
    out = stripe_ratio_intervals({"repeated": rep, "twin": twin}, [2, 5], lay, {"ind_top": 5, "dup_top": 5, "ind_first": 2})
    assert out["ind_top_text"] == "4.00 [4.00, 4.00]"  # every resample keeps the pairing: no spread
    assert out["dup_top_text"] == "1.00 [1.00, 1.00]" and out["ind_first_text"] == "1.00 [1.00, 1.00]"
    noisy = rep.copy()
    noisy[:, 1, rows, tgts] *= rng.lognormal(0, 0.3, size=(3, len(rows)))
    lo, hi = (float(x) for x in stripe_ratio_intervals({"repeated": noisy, "twin": twin}, [2, 5], lay,
                                                        {"ind_top": 5})["ind_top_text"].split("[")[1].rstrip("]").split(","))
    assert lo < 4.0 * np.exp(0.3) and hi > 4.0 * np.exp(-0.3) and hi - lo > 0.1  # tolerance: one sigma of the noise


def test_shuffled_table_gives_each_end_of_the_range_its_interval_and_stream():
    import pandas as pd
    from residual_response.pages.tables import shuffled_table

    def res(score, lo, hi, **kw):
        return SimpleNamespace(read_streams=[0, 1, 2, 3], l0=0, score=score, ci_low=lo, ci_high=hi, T=10, eps=0.01,
                               seeds=[0, 1], **kw)

    nan = float("nan")
    shuf = res([nan, 0.9, 1.4, 1.1], [nan, 0.8, 1.2, 1.0], [nan, 1.0, 1.6, 1.2])
    rep = res([nan, 1, 2, 3], [nan] * 4, [nan] * 4, duplicate_score=[nan, 1.5, 3.0, 2.0],
              duplicate_ci_low=[nan, 1.0, 2.5, 1.5], duplicate_ci_high=[nan, 2.0, 3.5, 2.5])
    controls = SimpleNamespace(shuffled_range=lambda: pd.DataFrame({"min": [0.9], "max": [1.4]}, index=["m"]),
                               runs={("m", "shuffled copy"): shuf})
    row = shuffled_table(controls, {"m": rep}).iloc[0]
    assert row["lowest shuffled-copy score"] == "0.90 [0.80, 1.00] (stream 1)"
    assert row["highest"] == "1.40 [1.20, 1.60] (stream 2)"
    assert row["largest duplicate score D"] == "3.00 [2.50, 3.50] (stream 2)"
    assert row["setting"].startswith("T = 10, 2 seeds")
    from residual_response.pages.tables import shuffled_cover

    assert shuffled_cover(controls) == {"m": (2, 3)}  # stream 2's interval [1.2, 1.6] leaves 1 out


def test_reach_and_ratio_peak_of_known_profiles():
    # twin: chi = layer / d; repeated: the same, times 4 at d = T - 1 = 2
    T = 3
    ctrl = pd.DataFrame([(l, d, l / d, 1) for l in (1, 2) for d in range(1, 6)], columns=["layer", "distance", "mean chi", "n"])
    rep = ctrl.assign(**{"mean chi": ctrl["mean chi"] * np.where(ctrl.distance == 2, 4.0, 1.0)})
    reach = reach_summary(ctrl, T, first=1, last=2)
    assert reach["near_last"] == 2.0 and reach["near_gain"] == 2.0 and reach["far_gain"] == 2.0 and reach["far"] == 5
    assert reach["farhalf_last"] == pytest.approx(np.mean([2 / 3, 2 / 4, 2 / 5]), rel=1e-12)
    peak = ratio_peak(distance_ratio(rep, ctrl), layer=2, T=T)
    assert peak == {"peak_d": 2, "peak_val": 4.0, "off_median": 1.0, "peak_contrast": 4.0, "at_stripe": True}
    chi = np.array([[0, 4, 4, 4], [0, 0, 2, 2]], dtype=float)  # sources 0 and 1: 4 and 2 on the later tokens
    assert first_source_ratio(chi, [0, 1]) == pytest.approx(4 / 3, rel=1e-12)


def test_scores_rise_and_headline_in_words():
    class Res:  # the fields of an InductionResult the frame reads
        l0, n_layers, read_streams = 0, 4, [0, 2, 4]
        score, ci_low, ci_high = [np.nan, 1.5, 3.0], [np.nan, 1.2, 2.5], [np.nan, 1.8, 3.5]
        duplicate_score, duplicate_ci_low, duplicate_ci_high = [np.nan, 1.1, 1.2], [np.nan, 1.0, 1.1], [np.nan, 1.2, 1.3]

    df = stripe_scores_frame(Res())
    assert len(df) == 4 and set(df.layer) == {2, 4} and df.rel_depth.max() == 1.0
    rise = Rise(emerged=True, stream=3, stream_ci=(2, 4), start=2, end=4, width=2, width_ci=(1, 3), bottom=1, top=4,
                factor=2.0, factor_ci=(1.5, 2.5))
    # the factor is S(top) / S(bottom): the sentence names those two streams, not the half-way one
    assert rise_text(rise, 4) == ("layer 3 (interval 2 to 4, relative depth 0.75): the score rises by a factor "
                                  "2.00 [1.50, 2.50] from its lowest stream (1) to its highest (4), half way up at stream 3")
    flat = dataclasses.replace(rise, emerged=False, stream=None, stream_ci=None)
    assert rise_text(flat, 4).startswith("no layer: the rise from layer 1 to 4")
    h = SimpleNamespace(setting={"T": 20, "seeds": 4, "eps": 0.01}, emergence_layer=3, emergence_ci=[2, 4],
                        rise_factor=2.0, rise_factor_ci=[1.5, 2.5], peak_layer=4, read_streams=[1, 2, 3, 4],
                        score=[1.2, 1.0, 1.6, 2.0], rise_from_one_factor=2.0, rise_from_one_factor_ci=[1.6, 2.4])
    # lowest at stream 2, the top at 4; the rise from 1 is said beside the rise from the lowest stream
    assert headline_text(h) == {"h_setting": "T = 20, 4 seeds, ε = 1e-2",
                                "h_em": "layer 3 [2, 4], where the score rises by a factor 2.00 [1.50, 2.50] "
                                        "from its lowest stream (2) to its highest (4) (2.00 [1.60, 2.40] from 1)"}
    with_one = dataclasses.replace(rise, from_one_factor=1.9, from_one_ci=(1.4, 2.6))
    assert "to its highest (4) (1.90 [1.40, 2.60] from 1), half way up at stream 3" in rise_text(with_one, 4)
    res = SimpleNamespace(rise=rise, score=[1.0, 2.0], ci_low=[0.9, 1.5], ci_high=[1.1, 2.5], read_streams=[1, 4],
                          T=20, seeds=[0, 1], eps=0.01, emergence_layer=3)
    line = rise_sentence("m", res, 4)
    assert "from its lowest stream (1) to its highest (4), half way up at stream 3 (interval 2 to 4)" in line
    # stream l is written by block l - 1: the 10 % stream 2 and the 90 % stream 4 are made by blocks 1 to 3
    assert "made by blocks 1 to 3, which write streams 2 and 4, the first past 10 % and past 90 %" in line
    from residual_response.pages.tables import width_sentence
    hw = SimpleNamespace(model="m", emergence_layer=3, rise_width=2, rise_width_ci=[2, 3], rise_start=2, rise_end=4)
    assert width_sentence(hw).startswith("m makes most of its rise (10 % to 90 % of the log rise) in blocks 1 to 3, "
                                         "which write streams 2 (the first past 10 %) to 4 (the first past 90 %) "
                                         "(width 2 [2, 3]")


def test_step_cost_without_a_bench_record_says_so(monkeypatch):
    import residual_response.bench as bench

    monkeypatch.setattr(bench, "find_bench_json", lambda *a, **k: None)
    cost, text = step_cost({"a": 1.0, "b": 2.0}, [])
    assert list(cost.columns) == ["step", "measured here (s)"] and cost["measured here (s)"].tolist() == [1.0, 2.0]
    assert "No bench record" in text


def test_describe_frame_adds_the_extra_rows():
    class LM:
        def describe(self):
            return {"name": "x", "layers": 4}

    df = describe_frame(LM(), **{"block parameters": 12})
    assert df.property.tolist() == ["name", "layers", "block parameters"] and df.value.tolist() == ["x", "4", "12"]


# --- tables of the emergence, cross-check, null and section-map pages ---

from residual_response.induction import half_rise_layer, rise_of  # noqa: E402
from residual_response.pages.tables import ci_text, section_rise_table  # noqa: E402


def test_setting_text_and_ci_text_write_the_setting_and_the_interval():
    assert setting_text(10, 2, 1e-2) == "T = 10, 2 seeds, ε = 1e-2"
    assert setting_text(8, 1, 3e-3, layer=0) == "T = 8, 1 seed, ε = 3e-3, l0 = 0"
    assert ci_text(1.234, 1.0, 1.5) == "1.23 [1.00, 1.50]"
    assert ci_text(float("nan"), 0, 1) == "—"


def test_half_rise_layer_follows_the_rule_of_the_rise():
    layers = [1, 2, 3, 4, 5]
    score = [1.0, 1.0, 4.0, 16.0, 16.0]  # log rise 0 -> log 16; half way (4) first reached at layer 3
    assert half_rise_layer(layers, score) == 3
    boots = np.tile(score, (50, 1)) * np.linspace(0.95, 1.05, 50)[:, None]
    assert rise_of(layers, score, boots).stream == 3  # the same layer as the emergence rule
    assert half_rise_layer([1, 2], [float("nan"), 1.0]) is None


class _Res:
    """A stand-in InductionResult with a known rise."""

    def __init__(self, emerged):
        self.read_streams, self.score = [0, 1, 2, 3], [float("nan"), 1.0, 3.0, 9.0]
        self.ci_low, self.ci_high = [float("nan"), 0.8, 2.0, 7.0], [float("nan"), 1.2, 4.0, 11.0]
        self.rise = Rise(emerged=emerged, stream=2 if emerged else None, stream_ci=(2, 2) if emerged else None,
                         start=2 if emerged else None, end=3 if emerged else None, width=1 if emerged else None,
                         width_ci=None, bottom=1, top=3, factor=9.0, factor_ci=(6.0, 12.0) if emerged else (0.9, 12.0))


def test_section_rise_table_turns_streams_into_blocks():
    single = _Res(False)
    single.rise = None  # one stream read after l0: a score, no rise
    d = section_rise_table({0: _Res(True), 1: _Res(False), 2: single}, "m")
    first, second = d.iloc[0], d.iloc[1]
    assert len(d) == 3 and np.isnan(d.iloc[2]["rise"]) and d.iloc[2]["max score"] == 9.0
    assert first["half-way block"] == "1" and first["blocks of the rise"] == "1 to 2"  # stream l is written by block l-1
    assert first["max score"] == 9.0 and first["at layer"] == 3 and first["CI low"] == 7.0
    assert not second.emerged and second["half-way block"] == "—" and second["blocks of the rise"] == "—"


def test_eps_verdict_names_the_worst_model_and_its_numbers():
    from residual_response.pages.tables import eps_verdict

    def head(lin_max, change, em, em_small):
        return SimpleNamespace(emergence_layer=em, linearity={"eps": 1e-2, "T": 20, "seeds": 4, "max": lin_max,
                                                              "median": lin_max / 2},
                               eps_tenth={"max_change": change, "stream": 3, "emergence_layer": em_small})

    text = eps_verdict({"a": head(0.01, 0.008, 6, 6), "b": head(0.002, 0.001, 18, 18)})
    assert "at most 1 % (a;" in text and "by at most 0.8 % (a, stream 3)" in text and "no emergence layer" in text
    assert text.endswith("within the regime's 1 % tolerance, the book's numbers at this ε are those of the linear response.")
    above = eps_verdict({"a": head(0.0103, 0.0089, 6, 6)})
    assert "above the regime's 1 % tolerance in a" in above and "at most 0.89 % when ε shrinks tenfold" in above
    moved = eps_verdict({"a": head(0.01, 0.2, 6, 7)})
    assert "some emergence layer" in moved and "caveat" in moved


def _shape_headline(**kw):
    base = dict(n_layers=30, emergence_layer=18, rise_width=1, rise_width_ci=[1, 2], step_block=17, step_share=0.9,
                step_share_ci=[0.7, 1.05], top2_blocks=[12, 17], top2_share=1.0, top2_share_ci=[0.8, 1.2])
    return SimpleNamespace(**{**base, **kw})


def test_rise_steps_quotes_the_shares_with_their_intervals():
    from residual_response.pages.tables import rise_steps

    st = rise_steps(_shape_headline(top2_share=1.25, top2_share_ci=[1.1, 1.4]))
    assert st["largest_block"] == 17 and st["top2_blocks"] == [12, 17] and st["top2_ci"] == (1.1, 1.4)
    assert st["text"] == ("block 17 alone makes 90% [70%, 105%] of the log rise, blocks 12 and 17 together 125% "
                          "[110%, 140%] (over 100 %: the score falls between them)")
    assert rise_steps(_shape_headline(step_share=None, step_share_ci=None, top2_blocks=None))["text"] == "—"


def test_emergence_shape_follows_the_interval_of_the_top2_share():
    from residual_response.pages.tables import emergence_shape

    step = emergence_shape(_shape_headline())  # the interval lies above one half
    assert step["label"] == "steps" and "[80%, 120%]" in step["reason"] and "width 1 [1, 2] streams" in step["reason"]
    assert emergence_shape(_shape_headline(top2_share=0.55, top2_share_ci=[0.5, 0.7]))["label"] == "steps"  # at 0.5 counts
    assert emergence_shape(_shape_headline(top2_share=0.55, top2_share_ci=[0.45, 0.7]))["label"] == "unresolved"
    grad = emergence_shape(_shape_headline(top2_share=0.3, top2_share_ci=[0.2, 0.49], rise_width=20, rise_width_ci=[15, 24]))
    assert grad["label"] == "gradual" and "below one half" in grad["reason"]
    assert emergence_shape(_shape_headline(top2_share_ci=None))["label"] == "unresolved"  # an old headline
    assert emergence_shape(_shape_headline(n_layers=2))["label"] == "too shallow"
    assert emergence_shape(_shape_headline(emergence_layer=None))["label"] == "no rise"


def test_styled_says_a_common_setting_once_in_the_caption():
    import pandas as pd
    from residual_response.pages.tables import styled

    one = styled(pd.DataFrame({"x": [1.0, 2.0], "setting": ["T = 4, 1 seed, ε = 1e-2"] * 2}), uuid="t1")
    html = one.to_html()
    assert "Setting: T = 4, 1 seed, ε = 1e-2." in html and ">setting<" not in html
    two = styled(pd.DataFrame({"x": [1.0, 2.0], "setting": ["T = 4", "T = 8"]}), uuid="t2", caption="Two runs.")
    assert ">setting<" in two.to_html() and "Setting:" not in two.to_html()


def _rank_test(which, drop, random_drops, diff, lo, hi):
    from residual_response.crosscheck import RankTest

    rand = np.asarray(random_drops, dtype=float)
    p = (1 + int(np.sum(rand >= drop))) / (1 + len(rand))
    r_lo, r_hi = np.quantile(rand, [0.025, 0.975])
    return RankTest(which=which, drop=drop, random_drops=rand.tolist(), p_value=p, random_low=float(r_lo),
                    random_high=float(r_hi), difference=diff, difference_low=lo, difference_high=hi)


def test_ablation_sentence_says_whether_named_heads_stand_out_from_random_ones():
    from residual_response.pages.tables import ablation_sentence, ablation_summary, rank_verdict, unresolved_items

    spread = list(np.linspace(-0.2, 0.6, 19))
    strong = _rank_test("attention", 3.0, spread, 2.8, 2.1, 3.5)  # above all 19 draws: p = 1/20
    weak = _rank_test("top", 0.25, spread, 0.05, -0.3, 0.4)
    assert strong.p_value == pytest.approx(0.05) and rank_verdict(strong) == "distinguishable"
    assert rank_verdict(weak) == "not distinguishable"
    assert rank_verdict(_rank_test("top", -0.5, spread, -0.7, -0.9, -0.4)) == "below random"
    assert rank_verdict(_rank_test("top", 3.0, spread, 2.8, -0.1, 3.5)) == "unresolved"  # p passes, interval reaches 0
    assert rank_verdict(_rank_test("top", 0.5, spread, 0.3, 0.1, 0.5)) == "above the mean draw only"  # p = 0.15
    assert rank_verdict(_rank_test("top", 3.0, spread[:4], 2.8, 2.1, 3.5)) == "too few draws"  # p >= 1/5

    text = ablation_sentence("m", {"top": weak, "attention": strong}, 5, "T = 20, 2 seeds")
    assert text.startswith("In **m** (T = 20, 2 seeds) the top-5 heads by response lower $S_L$ by 0.25")
    assert "not distinguishable from random heads" in text and "p = 0.450" in text  # 8 of 19 draws reach 0.25
    assert "8 of the 19 random draws reach or exceed" in text and "difference from the mean draw 0.05 [-0.30, 0.40]" in text
    assert ("the top-5 heads by attention pattern (the positive control) lower $S_L$ by 3.00, more than every one of "
            "the 19 random draws (p = 0.050, the smallest 19 draws allow; difference from the mean draw 2.80 [2.10, 3.50]): "
            "distinguishable from random heads.") in text
    assert text.count(".") >= 1 and text.endswith(".")
    few = ablation_sentence("toy", {"top": _rank_test("top", 3.0, spread[:4], 2.8, 2.1, 3.5)}, 1, "S")
    assert "the top-1 head by response lowers" in few and "4 draws cannot give p ≤ 0.05" in few
    heads = {"none": [], "top": [(1, 3)], "attention": [(1, 3)], **{f"random-{j}": [(0, j % 4)] for j in range(19)}}
    same = ablation_sentence("toy", {"top": _rank_test("top", 0.55, spread, 0.3, 0.1, 0.5), "attention": weak}, 1, "S", heads)
    assert "the top-1 head by attention pattern (the positive control) is the same head." in same
    # the few draws that reach the named drop are named (draws 17, 18: drops 0.56, 0.6)
    assert ("a drop that 2 of the 19 random draws reach or exceed (p = 0.150; difference from the mean draw 0.30 "
            "[0.10, 0.50]; the draws that reach it ablate (0, 1); (0, 2)): above the mean draw") in same
    assert "above the mean draw, but within the spread of the draws, so not distinguishable" in same
    with pytest.raises(ValueError, match="rank test"):
        ablation_sentence("m", {}, 5, "S")

    summary = ablation_summary({"a": {"top": weak, "attention": strong}, "b": {"top": strong, "attention": strong}})
    assert summary == ("The heads the response names are not distinguishable from random heads in a; distinguishable "
                       "from random heads in b. The heads the attention patterns name (the positive control) are "
                       "distinguishable from random heads in a, b.")

    effects = {"top": {"drop": 0.25, "lo": -0.1, "hi": 0.6, "rise": 0.02, "rise_lo": -0.05, "rise_hi": 0.09},
               "attention": {"drop": 3.0, "lo": 2.0, "hi": 4.0, "rise": 0.5, "rise_lo": 0.3, "rise_hi": 0.7}}
    from residual_response.pages.tables import loss_change_text
    fx = {"top": {"rise": 0.68, "rise_lo": 0.5, "rise_hi": 0.86, "vs_random": -0.24, "vs_random_lo": -0.5,
                  "vs_random_hi": 0.02, "draws_above": 12, "draws_below": 8, "n_draws": 20, "p_more": 13 / 21,
                  "p_less": 9 / 21},
          "random": {"rise": 0.92, "rise_lo": 0.7, "rise_hi": 1.1}}
    assert loss_change_text("m", fx) == ("m 0.68 [0.50, 0.86] nats, 0.24 nats less than the mean of the random draws "
                                        "(0.92 [0.70, 1.10]; difference -0.24 [-0.50, +0.02], its interval resampling "
                                        "seeds and draws; 12 of 20 draws raise it as much (p = 0.619) and 8 no more "
                                        "(p = 0.429): not distinguishable from random heads)")
    # below the mean draw with an interval below 0, yet above most draws: the rank says "not distinguishable"
    fx["top"].update(vs_random_hi=-0.02, draws_above=7, draws_below=13, p_more=8 / 21, p_less=14 / 21)
    assert loss_change_text("m", fx).endswith("not distinguishable from random heads)")
    fx["top"].update(draws_above=20, draws_below=0, p_more=1.0, p_less=1 / 21)
    assert loss_change_text("m", fx).endswith("raises it less than random heads)")
    fx["top"].update(vs_random=0.46, vs_random_lo=0.3, vs_random_hi=0.62, draws_above=0, draws_below=20, p_more=1 / 21,
                     p_less=1.0)
    from residual_response.pages.tables import loss_verdict
    assert loss_verdict({**fx["top"], "n_draws": 6}) == "too few draws to tell it from random heads"
    text = loss_change_text("m", fx)
    assert "0.46 nats more than" in text and "0 of 20" in text and text.endswith("raises it more than random heads)")
    items = unresolved_items("m", {"top": weak, "attention": strong}, effects, {"rho": 0.4, "lo": -0.1, "hi": 0.8})
    assert items == [
        "m, top-k by response: the drop of $S_L$, 0.25 [-0.10, 0.60], covers 0",
        "m, top-k by response: the difference from the mean random draw, 0.05 [-0.30, 0.40], covers 0",
        "m, top-k by response: the change of the second-copy loss, 0.02 [-0.05, 0.09] nats, covers 0",
        "m, top-k by attention pattern: p = 0.050 is the smallest 19 draws allow (the named drop exceeds every "
        "draw), so how rare such a drop is among random heads beyond that is not resolved: a smaller p needs more draws",
        "m: the rank agreement of attention and response over depth, 0.40 [-0.10, 0.80], covers 0",
    ]


def test_outside_set_text_names_shared_heads_and_the_models_without_an_outside_set():
    from residual_response.pages.tables import outside_set_text

    with_outside = SimpleNamespace(k=2, heads={"top": [(3, 1), (4, 0)], "attention": [(3, 1), (5, 2)],
                                               "outside": [(4, 0), (6, 1)]})
    disjoint = SimpleNamespace(k=2, heads={"top": [(1, 1), (2, 0)], "attention": [(3, 1), (5, 2)]})
    crowded = SimpleNamespace(k=1, heads={"top": [(0, 0)], "attention": [(0, 0)]})
    text = outside_set_text({"a": with_outside, "b": disjoint, "c": crowded})
    assert "in a the top-2 sets share (3, 1), and the outside set is (4, 0), (6, 1)" in text
    assert "b (no shared head)" in text and "c (they share (0, 0), but too few heads" in text
    assert outside_set_text({"b": disjoint}) == "No outside set is ablated in b (no shared head)."


def test_section_sentence_names_writing_borderline_and_below_one_blocks():
    from residual_response.pages.tables import section_sentence

    rows = pd.DataFrame([
        {"l0": 0, "first": 1.0, "first low": 0.9, "first high": 1.1, "writes": False},
        {"l0": 3, "first": 1.9, "first low": 1.02, "first high": 3.4, "writes": False},
        {"l0": 5, "first": 6.0, "first low": 4.0, "first high": 8.0, "writes": True},
        {"l0": 7, "first": 0.57, "first low": 0.38, "first high": 0.99, "writes": False},
    ]).assign(**{"max score": lambda d: d["first"], "CI low": lambda d: d["first low"],
                 "CI high": lambda d: d["first high"], "at layer": lambda d: d.l0 + 1, "emerged": False,
                 "half-way block": "—"})
    text = section_sentence("m", rows, 8, [5])
    assert "right after the kick (the interval of stream $\\ell_0 + 1$ above 1.5): 5; its induction heads sit in blocks 5" in text
    assert "Above 1 but not above 1.5 right after the kick (not counted as writing): block 3, 1.90 [1.02, 3.40]." in text
    assert "Below 1 right after the kick" in text and "block 7, 0.57 [0.38, 0.99]" in text
    assert "block 0," not in text  # a cell whose interval covers 1 is named neither way
    # a head block whose first stream does not pass: its interval is given, not "no stripe"
    text = section_sentence("m", rows, 8, [0, 5])
    assert "At head block 0 the first stream does not pass the rule: block 0, 1.00 [0.90, 1.10]." in text
    assert "no stripe" not in text


def test_control_power_text_names_the_draws_that_match_a_control_that_does_not_stand_out():
    from residual_response.crosscheck import RankTest
    from residual_response.pages.tables import control_power_text

    def rank(drop, drops):
        return RankTest(which="attention", drop=drop, random_drops=drops, p_value=(1 + sum(d >= drop for d in drops)) / (1 + len(drops)),
                        random_low=min(drops), random_high=max(drops), difference=drop - float(np.mean(drops)),
                        difference_low=0.5, difference_high=2.0)
    att = np.array([[0.1, 0.9], [0.5, 0.2]])  # attention ranks: (0, 1) 1st, (1, 0) 2nd, (1, 1) 3rd, (0, 0) 4th
    check = SimpleNamespace(attention=SimpleNamespace(repeated=SimpleNamespace(mean=att)),
                            study=SimpleNamespace(random_keys=[f"random-{j}" for j in range(20)],
                                                  heads={f"random-{j}": [(1, 0)] if j == 3 else [(0, 0)] for j in range(20)}))
    weak = rank(5.0, [5.1 if j == 3 else 1.0 for j in range(20)])  # one draw reaches it: p = 2/21
    text = control_power_text({"g": check}, {"g": {"attention": weak}})
    assert text.startswith("In **g** the positive control itself is above the mean draw only (p = 0.095): 1 of the 20")
    assert "ablating (1, 0) (attention rank 2)" in text and "draws no conclusion" in text
    assert "too little power" in text
    import dataclasses

    beaten = dataclasses.replace(weak, margin=-0.43, margin_low=-0.74, margin_high=-0.15)  # a draw removes more, resolved
    text = control_power_text({"g": check}, {"g": {"attention": beaten}})
    assert "removes more than the control beyond resampling noise" in text and "-0.43 [-0.74, -0.15]" in text
    assert "too little power" not in text and "draws no conclusion" in text
    strong = rank(6.0, [1.0] * 20)
    assert control_power_text({"g": check}, {"g": {"attention": strong}}) == ""
    assert control_power_text({"g": check}, {"g": {"top": strong}}) == ""  # no control, nothing to say


def test_rise_heads_sentence_names_the_blocks_of_the_net_rise_without_calling_each_a_rise():
    from residual_response.pages.tables import rise_heads_sentence

    rb = {"half": 5, "blocks": list(range(5, 12)), "att_blocks": [5, 11, 13], "gap": 0, "outside": [13]}
    text = rise_heads_sentence("g", rb)
    assert text.startswith("* **g**: half way up after block 5, 10 % to 90 % of its log rise made in blocks 5 to 11 "
                           "(the net change: the score may fall in some of them); induction heads in blocks 5, 11, 13")
    assert "rising across" not in text and text.endswith("sit outside the blocks of the rise.")
    assert "made in block 4 (" in rise_heads_sentence("m", {**rb, "half": 4, "blocks": [4], "gap": 1, "outside": []})
    assert rise_heads_sentence("r", {**rb, "half": None}) == "* **r**: the score does not rise at this setting."


def test_from_one_text_says_a_fall_is_no_rise():
    from residual_response.pages.tables import from_one_text
    assert from_one_text(4.74, (3.10, 6.36)) == "4.74 [3.10, 6.36] from 1"
    # a highest score below 1 is no rise: the text says so, and whether the interval reaches 1
    assert from_one_text(0.89, (0.78, 1.00)) == ("no rise from 1 (the highest score, 0.89 [0.78, 1.00], lies below 1, "
                                                 "its interval reaching 1)")
    assert from_one_text(0.8, (0.7, 0.9)).endswith("lies below 1 beyond resampling noise)")
    assert from_one_text(0.89, (0.78, 0.9999)).endswith("its interval reaching 1)")  # prints as 1.00
    assert from_one_text(None, (0, 0)) == "—" and from_one_text(float("nan"), (0, 0)) == "—"


def test_full_size_frame_carries_its_setting_into_the_caption():
    from types import SimpleNamespace

    from residual_response.pages.tables import full_size_frame, styled
    r = SimpleNamespace(read_streams=[0, 1, 2, 3], score=[1.0, 0.9, 1.1, 1.0], ci_low=[1, 0.8, 1.05, 0.9],
                        ci_high=[1, 1.0, 1.2, 1.1], l0=0, emergence_layer=None, T=20, seeds=[0, 1, 2, 3], eps=0.01)
    df = full_size_frame({("m", "twin"): r})
    assert df.loc[0, "intervals covering 1"] == "2 of 3" and df.loc[0, "setting"] == "T = 20, 4 seeds, ε = 1e-2"
    html = styled(df, uuid="t").to_html()
    assert "Setting: T = 20, 4 seeds, ε = 1e-2." in html and ">setting<" not in html


def test_heads_before_text_counts_the_heads_that_can_move_the_stream():
    from residual_response.pages.tables import heads_before_text
    heads = {"none": [], "top": [(17, 1), (20, 3)], "attention": [(3, 0), (17, 2)], "random-0": [(0, 0), (1, 1)]}
    assert heads_before_text(heads, 18) == ("named heads in blocks 0 to 17, the blocks that can move $S_{18}$: "
                                            "by response 1 of 2, by attention pattern 2 of 2")
    assert heads_before_text(heads, 3).endswith("by response 0 of 2, by attention pattern 0 of 2")
    with pytest.raises(ValueError, match="named set"):
        heads_before_text({"none": []}, 3)


def test_stream_rank_sentence_leaves_out_sets_that_cannot_move_the_stream():
    from types import SimpleNamespace

    from residual_response.pages.tables import stream_rank_sentence
    t = SimpleNamespace(n_random=20, drop=1.0, random_drops=[0.0] * 20, p_value=1 / 21, smallest_p=1 / 21,
                        difference=1.0, difference_low=0.5, difference_high=1.5, margin=None)
    heads = {"none": [], "top": [(20, 1), (25, 0)], "attention": [(3, 0), (21, 2)], "random-0": [(0, 0), (1, 1)]}
    text, tested = stream_rank_sentence("m", 18, {"top": t, "attention": t}, heads, 2, "T = 20")
    assert list(tested) == ["attention"] and "$S_{18}$" in text
    assert "Not ranked: the top-2 by response, none of whose heads sits in blocks 0 to 17, so it cannot move $S_{18}$." in text
    assert text.endswith("by response 0 of 2, by attention pattern 1 of 2.)")
    same = {**heads, "top": [(3, 0), (20, 1)]}  # the same heads within reach: one test, said once
    text, tested = stream_rank_sentence("m", 18, {"top": t, "attention": t}, same, 2, "T = 20")
    assert set(tested) == {"top", "attention"} and "are the same heads" in text
    text, tested = stream_rank_sentence("m", 2, {"top": t}, heads, 2, "T = 20")
    assert not tested and "no named set has a head in blocks 0 to 1" in text
