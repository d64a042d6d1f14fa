"""The trend baseline (residual_response.trend) and what the null page measures with it: a line through the
right neighbours, extrapolated to the stripe, removes a linear trend the twin keeps; it rescores the
twin's runs; and the page's trade-off table and sentence read its numbers. Tiny random models only."""

import dataclasses

import numpy as np
import pytest

from residual_response import null
from residual_response.induction import induction_scores, right_neighbour_baseline, scores_from_stripes
from residual_response.induction_result import StripeData
from residual_response.models import build_random_model
from residual_response.sequences import InductionLayout
from residual_response.trend import no_repeat_trend, rescore_trend, trend_entries, trend_weights


@pytest.fixture(scope="module")
def run():
    """A twin run of a tiny random Llama with its matrices: T = 8, 2 seeds, streams 0..4."""
    lm = build_random_model("llama", seed=0)
    return lm, induction_scores(lm, T=8, seeds=2, n_boot=100, keep_matrices=True)


def test_trend_weights_extrapolate_a_line_to_offset_zero():
    np.testing.assert_allclose(trend_weights([1, 2]), [2, -1], atol=1e-12)
    np.testing.assert_allclose(trend_weights(range(1, 4)), [4 / 3, 1 / 3, -2 / 3], atol=1e-12)
    x = np.array([2, 3, 5])
    w = trend_weights(x)
    assert w.sum() == pytest.approx(1, abs=1e-12)  # a flat profile is unchanged
    assert w @ (0.7 - 0.3 * x) == pytest.approx(0.7, abs=1e-12)  # any line returns its intercept


@pytest.mark.parametrize("offsets, error, word", [([1], ValueError, "two or more"), ([1, 1], ValueError, "distinct"),
                                                  ([0, 1], ValueError, "offset"), ([1.0, 2.0], TypeError, "offset"),
                                                  ("12", TypeError, "offsets")])
def test_trend_weights_refuse_what_fits_no_line(offsets, error, word):
    with pytest.raises(error, match=word):
        trend_weights(offsets)


def test_a_linear_trend_over_sources_biases_the_twin_and_not_the_trend():
    """chi linear in the source row at each target: the line's value at the stripe is the stripe itself."""
    T, off = 10, 1
    layout = InductionLayout(T=T, offset=off)
    rows = np.arange(T)[None, :, None]
    target_scale = np.linspace(1, 2, 2 * T + off)[None, None, :]
    chi = np.repeat(target_scale * (1 + 0.1 * rows), 3, axis=0)  # [3 streams, T, N]
    (ind, base), (dup, dup_base) = trend_entries(chi, layout, reach=3)
    assert ind.shape == (3, T - 4) and dup.shape == (3, T - 4)  # k = 2..T-3 and k = 1..T-4
    np.testing.assert_allclose(base, ind, rtol=1e-12)
    np.testing.assert_allclose(dup_base, dup, rtol=1e-12)
    src = layout.induction_sources.numpy()[:-3] - off
    twin_base = right_neighbour_baseline(chi, src, layout.induction_targets.numpy()[:-3], first=1)
    assert np.all(twin_base > ind * 1.01)  # the mean of k+1, k+2 lies 1.5 rows up the trend
    with pytest.raises(ValueError, match="too short"):
        trend_entries(chi[:, :5], InductionLayout(T=5, offset=off), reach=3)
    with pytest.raises(ValueError, match="reach"):
        trend_entries(chi, layout, reach=1)


def test_rescore_trend_is_a_ratio_of_ratios_of_the_kept_matrices(run):
    lm, twin = run
    res = rescore_trend(twin)
    assert res.control == "trend" and res.n_layers == twin.n_layers and res.read_streams == twin.read_streams
    st = res.stripes
    assert st.induction["repeated"].shape == (2, 5, 4)  # seeds, streams 0..4, k = 2..T-3
    # the point score by hand at stream 2: rows k-1 = 1..4, targets T+k-1 (BOS first), offsets 1..3
    m, w = twin.stripes.matrices, trend_weights([1, 2, 3])
    r, t = np.arange(1, 5), np.arange(9, 13)

    def ratio(kind):
        chi = m[kind][:, 2]
        return chi[:, r, t].mean() / sum(wo * chi[:, r + o, t].mean() for wo, o in zip(w, (1, 2, 3)))

    assert res.score[2] == pytest.approx(ratio("repeated") / ratio("twin"), rel=1e-10)  # float64 rounding of means
    scored = np.isfinite(res.score)
    assert np.all(np.array(res.ci_low)[scored] <= np.array(res.score)[scored])
    assert np.all(np.array(res.score)[scored] <= np.array(res.ci_high)[scored])
    again = rescore_trend(twin)
    np.testing.assert_array_equal(again.ci_low, res.ci_low)  # the bootstrap is seeded (nan at stream 0 in both)


def test_rescore_trend_refuses_runs_it_cannot_rescore(run):
    lm, twin = run
    with pytest.raises(ValueError, match="keep_matrices"):
        rescore_trend(induction_scores(lm, T=8, seeds=2, n_boot=50))
    with pytest.raises(TypeError, match="InductionResult"):
        rescore_trend(twin.stripes)
    with pytest.raises(ValueError, match="reach"):
        rescore_trend(twin, reach=1)


def test_null_study_scores_the_trend_on_the_twins_runs(run):
    rows = null.null_study(families=["llama"], sizes=["small"], init_seeds=[0], controls=("twin", "trend"), T=8,
                           seeds=2, n_boot=100)
    lm, twin = run
    trend = rescore_trend(twin)
    by = {c: [r for r in rows if r.control == c] for c in ("twin", "trend")}
    assert [r.score for r in by["twin"]] == twin.score[1:] and [r.score for r in by["trend"]] == trend.score[1:]
    assert [r.ci_high for r in by["trend"]] == trend.ci_high[1:]
    both = null.under_baselines(twin, ("twin", "trend"))
    assert both["twin"] is twin
    np.testing.assert_array_equal(both["trend"].score, trend.score)
    with pytest.raises(ValueError, match="baselines must be"):
        null.under_baselines(twin, ("random",))


def test_no_repeat_trend_covers_one_on_a_random_model(run):
    lm, twin = run
    cal = null.no_repeat_calibration(lm, rescore_trend(twin))
    assert cal.condition == "no repeat" and cal.baseline == "trend" and cal.units == (1, 2, 3, 4) and cal.holds, cal
    res = no_repeat_trend(lm, rescore_trend(twin))
    assert res.stripes.induction["repeated"].shape == (2, 5, 4)
    np.testing.assert_array_equal(res.stripes.induction["twin"], rescore_trend(twin).stripes.induction["twin"])
    with pytest.raises(ValueError, match="rescore_trend"):
        no_repeat_trend(lm, twin)
    with pytest.raises(TypeError, match="InductionResult"):
        no_repeat_trend(lm, {"score": []})


def test_right_trend_splits_a_slope_from_its_scatter(run):
    """A lift exp(s * o) of the repeated over the twin at every offset o: slope s, scatter 0."""
    lm, twin = run
    st = twin.stripes
    T, off, s = st.T, st.sources[0], 0.02
    r = np.arange(T)[:, None]
    t = np.arange(st.matrices["twin"].shape[-1])[None, :]
    lift = np.exp(s * (r - t + T + off - 1))  # o = r - (k - 1) with target t = T + k - 2 + off
    fake = dataclasses.replace(st, matrices={"twin": np.ones_like(st.matrices["twin"]),
                                             "repeated": np.broadcast_to(lift, st.matrices["twin"].shape).copy()})
    slope, scatter = null.right_trend(dataclasses.replace(twin, stripes=fake), offsets=range(1, 5))
    np.testing.assert_allclose(slope, s, rtol=1e-9)  # float64 logs and sums
    np.testing.assert_allclose(scatter, 0, atol=1e-9)
    with pytest.raises(ValueError, match="three or more"):
        null.right_trend(twin, offsets=[1, 2])
    with pytest.raises(ValueError, match="offsets"):
        null.right_trend(twin, offsets=[0, 1, 2])


def test_a_baseline_that_crosses_zero_leaves_no_rise_instead_of_failing():
    rep = np.ones((2, 3, 4))
    ctrl = np.full((2, 3, 4), -1.0)  # every stream's score negative: no rise can be read
    st = StripeData(T=5, l0=0, eps=1e-2, seeds=[0, 1], read_streams=[0, 1, 2], induction={"repeated": rep, "control": ctrl},
                    duplicate={"repeated": rep, "control": ctrl}, sources=[1, 2, 3, 4, 5], control_kind="trend")
    res = scores_from_stripes(st, n_boot=50)
    assert res.rise is None and res.emergence_layer is None


def test_log_widths_and_the_trade_off_table_and_sentence():
    from residual_response.null import Calibration
    from residual_response.pages.tables import design_noise_frame, tradeoff_sentence, width_ratios

    row = null.NullRow("llama", "small", 0, "trend", 1, 4, 1.0, -0.1, 2.0)
    assert row.log_width == np.inf  # a low end at or below 0: unbounded in log units
    assert null.NullRow("llama", "small", 0, "twin", 1, 4, 1.0, 0.5, 2.0).log_width == pytest.approx(np.log(4))
    widths = {"a": {"twin": np.array([0.1, 0.2, 0.3]), "trend": np.array([0.2, 0.4, np.inf])},
              "b": {"twin": np.array([0.5]), "trend": np.array([0.75])}}
    assert width_ratios(widths, "trend") == pytest.approx({"a": 2.0, "b": 1.5})
    frame = design_noise_frame(widths, setting="T = 8")
    assert list(frame["trend / twin"]) == ["2.00", "1.50"] and list(frame["twin: median width"]) == ["0.200", "0.500"]
    cals = [Calibration("random init, full size", "m", "twin", (1, 2, 3), 1),
            Calibration("random init, full size", "m", "trend", (1, 2, 3), 3),
            Calibration("before the heads", "m", "twin", (1, 2), 2),
            Calibration("before the heads", "m", "trend", (1, 2), 1)]
    text = tradeoff_sentence(cals, widths)
    assert text.startswith("On the same runs the trend baseline meets 1 of the 2 conditions measured here: it meets "
                           "the full-size random models, which the twin misses, and misses the pre-head band")
    assert "1.50 to 2.00 times as wide as the twin's" in text and "Not measured on this page's models: the small and" in text
    assert "The book's scores use the twin: the trend gives up the pre-head band" in text
    better = tradeoff_sentence(cals[:2], widths)
    assert "meets every condition the twin meets and also the full-size random models" in better


def test_the_repair_sentence_tells_a_moved_median_from_a_wider_interval():
    from types import SimpleNamespace

    from residual_response.pages.tables import full_size_repair_sentence, tradeoff_sentence
    from residual_response.null import Calibration

    def res(score, lo, hi):
        return SimpleNamespace(read_streams=[0, 1, 2], l0=0, score=[np.nan, score, score],
                               ci_low=[np.nan, lo, lo], ci_high=[np.nan, hi, hi])

    results = {("a", "twin"): res(1.02, 1.01, 1.03), ("a", "trend"): res(1.005, 0.99, 1.02),  # moved toward 1
               ("b", "twin"): res(0.88, 0.80, 0.95), ("b", "trend"): res(0.85, 0.70, 1.01),  # covered by width
               ("c", "twin"): res(1.0, 0.9, 1.1), ("c", "trend"): res(1.0, 0.9, 1.1)}  # the twin covers it
    text = full_size_repair_sentence(results)
    assert text == ("Of the 2 full-size random models the twin misses, the trend moves the median score toward 1 in 1 "
                    "(a, 1.020 to 1.005) and reaches the coverage in 1 only through wider intervals, the median as "
                    "far from 1 or further (b, 0.880 to 0.850). These are point medians; in 1 of the 1 moved toward 1 "
                    "the move is smaller than half the median width of the trend's intervals (log units), so it is not "
                    "shown to be more than resampling noise.")
    far = {**results, ("a", "trend"): res(1.0, 0.995, 1.005)}  # a move of 2 % against an interval 1 % wide
    assert "point medians" not in full_size_repair_sentence(far)
    assert full_size_repair_sentence({k: v for k, v in results.items() if k[0] == "c"}) == \
        "The twin misses no full-size random model here."
    cals = [Calibration("emergence", "m", "twin", (8, 12), 1), Calibration("emergence", "m", "trend", (8, 12), 0)]
    widths = {"a": {"twin": np.array([1.0]), "trend": np.array([1.2])}}
    text = tradeoff_sentence(cals, widths)
    assert "both miss the emergence condition (1 of 2 pass under the twin, 0 of 2 under the trend)" in text
    assert text.endswith("The book's scores use the twin: the trend does worse on the emergence condition and widens "
                         "the intervals.")


def test_slope_explains_only_a_bias_on_its_side_of_one_and_half_its_size():
    from residual_response.pages.tables import slope_explains

    assert slope_explains(0.95, 0.93) and slope_explains(1.02, 1.03)
    assert not slope_explains(1.029, 0.885)  # the other side of 1
    assert not slope_explains(0.99, 0.90)  # a tenth of the bias


def test_right_trend_medians_resample_sequences_around_the_medians(run):
    """The point is the median over streams of right_trend; the replicates resample the sequences of
    repeats and twins together, so an exact slope that every sequence shares has a zero-width interval."""
    lm, twin = run
    out = null.right_trend_medians(twin, offsets=range(1, 5), n_boot=50)
    slope, scatter = null.right_trend(twin, offsets=range(1, 5))
    keep = np.asarray(twin.read_streams) > twin.l0
    assert out["slope"][0] == pytest.approx(np.nanmedian(slope[keep]), rel=1e-12)  # the same computation
    assert out["scatter"][0] == pytest.approx(np.nanmedian(scatter[keep]), rel=1e-12)
    for v, lo, hi in out.values():
        assert lo <= hi and np.isfinite([lo, hi]).all()
    st, s = twin.stripes, 0.02
    T, off = st.T, st.sources[0]
    r, t = np.arange(T)[:, None], np.arange(st.matrices["twin"].shape[-1])[None, :]
    lift = np.exp(s * (r - t + T + off - 1))
    fake = dataclasses.replace(st, matrices={"twin": np.ones_like(st.matrices["twin"]),
                                             "repeated": np.broadcast_to(lift, st.matrices["twin"].shape).copy()})
    exact = null.right_trend_medians(dataclasses.replace(twin, stripes=fake), offsets=range(1, 5), n_boot=20)
    np.testing.assert_allclose(exact["slope"], [s] * 3, rtol=1e-9)  # float64 logs and sums
    with pytest.raises(ValueError, match="n_boot"):
        null.right_trend_medians(twin, n_boot=1)
