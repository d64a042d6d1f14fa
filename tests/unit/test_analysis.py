"""Regime detection, bootstrap scores and sequences on synthetic inputs and random models."""

import numpy as np
import pytest
import torch

from residual_response.induction import emergence_layer, induction_scores, neighbour_baseline, rise_of
from residual_response.stats import bootstrap_ratio
from residual_response.models import build_random_model
from residual_response.regime import universal_regime, widest_flat_interval
from residual_response.engine import response
from residual_response.sequences import induction_layout, make_sequence


def test_widest_flat_interval_finds_the_plateau():
    eps = np.logspace(-8, 0, 17)  # every half decade
    # The regions are cut half way between grid points (10**-5.25, 10**-1.75), never at a grid
    # point: logspace's 1e-5 is 9.999999999999999e-06 on some CPUs and 1e-05 on others.
    curve = np.where(eps < 10**-5.25, 1.0 + 1e-6 / eps, 1.0)  # rounding floor below 1e-5 (>= 31 % off)
    curve = np.where(eps > 10**-1.75, 1.0 + 10 * (eps - 1e-2), curve)  # non-linear bend above 1e-2 (>= 21 % off)
    i, j = widest_flat_interval(eps, curve, 0.01)
    assert (i, j) == (6, 12)
    assert eps[i] == pytest.approx(1e-5, rel=1e-9) and eps[j] == pytest.approx(1e-2, rel=1e-9)


def test_widest_flat_interval_none_when_nothing_is_flat():
    eps = np.logspace(-3, 0, 4)
    assert widest_flat_interval(eps, np.array([1.0, 2.0, 4.0, 8.0]), 0.01) is None
    with pytest.raises(ValueError, match="tol must be a finite number > 0"):
        widest_flat_interval(eps, np.ones(4), 0.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        widest_flat_interval(eps[::-1], np.ones(4), 0.01)


def test_regime_of_a_random_model_float32_vs_float64():
    """A random model has a universal regime; float64 pushes its lower end far below float32's."""
    eps = np.logspace(-10, 0, 21)
    lows = {}
    for dtype in ("float32", "float64"):
        lm = build_random_model("llama", dtype=dtype)
        tokens = make_sequence(lm, "random", 4, seed=0)
        res = response(lm, tokens, eps, read_streams=[lm.n_layers])
        (iv,) = universal_regime(res, tol=0.01)
        assert iv.decades >= 2, f"{dtype}: regime spans only {iv.decades} decades"
        lows[dtype] = iv.eps_low
    assert lows["float64"] <= lows["float32"] * 1e-3, lows


def test_bootstrap_ratio_recovers_a_known_ratio():
    rng = np.random.default_rng(0)
    ctrl = rng.lognormal(0, 0.3, size=(6, 2, 30))
    rep = ctrl * np.array([1.0, 3.0])[None, :, None]
    ratio, lo, hi = bootstrap_ratio(rep, ctrl, n_boot=500)
    np.testing.assert_allclose(ratio, [1.0, 3.0], rtol=1e-12)
    assert lo[1] < 3.0 < hi[1] and hi[0] - lo[0] < 0.2


def test_bootstrap_ratio_ci_covers_truth_for_independent_noise():
    rng = np.random.default_rng(1)
    rep = 2.0 * rng.lognormal(0, 0.5, size=(8, 1, 40))
    ctrl = rng.lognormal(0, 0.5, size=(8, 1, 40))
    ratio, lo, hi = bootstrap_ratio(rep, ctrl, n_boot=1000)
    assert lo[0] < 2.0 < hi[0]
    with pytest.raises(ValueError, match="equal shapes"):
        bootstrap_ratio(rep, ctrl[:, :, :5])


def _profile(levels, n_seeds=6, P=12, noise=0.1, seed=0):
    """Stripe entries whose ratio to the baseline follows ``levels`` over layers, with noise."""
    rng = np.random.default_rng(seed)
    base = rng.lognormal(0, noise, size=(n_seeds, len(levels), P))
    rep = base * np.asarray(levels)[None, :, None] * rng.lognormal(0, noise, size=base.shape)
    return rep, base


def test_rise_of_finds_the_middle_of_a_step_and_refuses_noise():
    levels = [1.0, 1.0, 1.0, 1.0, 3.0, 3.0, 3.0]  # a step of x3 between layers 4 and 5 (1-based)
    rep, base = _profile(levels)
    s, lo, hi, boots = bootstrap_ratio(rep, base, return_boots=True, n_boot=500)
    r = rise_of(range(1, 8), s, boots)
    assert r.emerged and r.stream == 5 and r.top >= 5 and r.bottom <= 4
    assert r.stream_ci == (5, 5)  # a x3 step against 10 % noise is never misplaced
    assert r.start == r.end == 5 and r.width == 0  # a sudden rise
    assert 2.0 < r.factor < 4.5 and r.factor_ci[0] > 1.5
    # a gradual rise: x3 spread over four layers
    rep, base = _profile([1.0, 1.0, 1.3, 1.7, 2.3, 3.0, 3.0])
    s, _, _, boots = bootstrap_ratio(rep, base, return_boots=True, n_boot=500)
    g = rise_of(range(1, 8), s, boots)
    assert g.emerged and 3 <= g.stream <= 5 and g.width >= 2
    # no rise: the same level everywhere; the paired interval of the factor reaches 1
    rep, base = _profile([1.0] * 7)
    s, _, _, boots = bootstrap_ratio(rep, base, return_boots=True, n_boot=500)
    flat = rise_of(range(1, 8), s, boots)
    assert not flat.emerged and flat.stream is None and flat.width is None and flat.factor_ci[0] <= 1.0
    with pytest.raises(ValueError, match="two read layers"):
        rise_of([1], [2.0], np.ones((5, 1)))


def test_the_rise_from_one_is_the_top_score_and_exceeds_the_rise_where_the_minimum_lies_above_1():
    """From 1 the rise is S(top) / 1, with the interval of S(top) over the same replicates; it is smaller
    than the rise from the minimum where the minimum lies below 1, larger where it lies above."""
    for levels in ([0.5, 0.5, 0.5, 3.0, 3.0], [1.5, 1.5, 1.5, 6.0, 6.0]):
        rep, base = _profile(levels)
        s, lo, hi, boots = bootstrap_ratio(rep, base, return_boots=True, n_boot=500)
        r = rise_of(range(1, 6), s, boots)
        i = r.top - 1
        assert r.from_one_factor == pytest.approx(s[i], rel=1e-12)  # tolerance: float64 rounding only
        assert r.from_one_ci == pytest.approx((lo[i], hi[i]), rel=1e-9)  # the same replicates, the same quantiles
        assert (r.from_one_factor < r.factor) == (levels[0] < 1)
        # half way from 1 (sqrt(S(top)), 1.73 or 2.45) is first reached at stream 4, in every replicate of a clean step
        assert r.from_one == 4 and r.from_one_stream_ci == (4, 4)
    assert type(r).from_dict(r.to_dict()) == r


def test_rise_of_step_shares_tell_a_step_from_a_ramp_with_intervals():
    """A clean step: one block makes the whole log rise, and its interval excludes one half; a ramp
    over six blocks: the two largest make about a third (tolerance: the 95 % interval, 10 % noise)."""
    rep, base = _profile([1.0, 1.0, 1.0, 1.0, 4.0, 4.0, 4.0])  # block 4 (stream 4 -> 5) makes the rise
    s, _, _, boots = bootstrap_ratio(rep, base, return_boots=True, n_boot=500)
    step = rise_of(range(1, 8), s, boots)
    assert step.step_block == 4 and step.top2_blocks[0] <= 4 <= step.top2_blocks[-1]
    assert step.step_share > 0.8 and step.step_share_ci[0] > 0.5 and step.top2_share_ci[0] >= 0.5
    assert step.step_share_ci[0] <= step.step_share <= step.step_share_ci[1]
    ramp = [2.0 ** (i / 2) for i in range(8)]  # x2 every two streams: each block adds 1/7 of the log rise
    rep, base = _profile(ramp, noise=0.05)
    s, _, _, boots = bootstrap_ratio(rep, base, return_boots=True, n_boot=500)
    g = rise_of(range(1, 9), s, boots)
    assert g.emerged and len(g.top2_blocks) == 2 and g.top2_share_ci[1] < 0.5 and 2 / 7 < g.top2_share_ci[1]
    # noise: no rise, so no shares
    rep, base = _profile([1.0] * 7)
    s, _, _, boots = bootstrap_ratio(rep, base, return_boots=True, n_boot=500)
    flat = rise_of(range(1, 8), s, boots)
    assert not flat.emerged and flat.step_share is None and flat.top2_share_ci is None
    # a dict from before the step shares still reads, with None for them
    old = {k: v for k, v in step.to_dict().items() if not k.startswith(("step_", "top2_"))}
    assert type(step).from_dict(old).top2_share is None and type(step).from_dict(step.to_dict()) == step


def test_step_shares_are_paired_and_left_undefined_without_a_rise():
    from residual_response.rise import step_shares

    score = np.array([1.0, 2.0, 8.0])  # log rise 3 log 2: block 1 adds 1/3, block 2 adds 2/3
    boots = np.array([[1.0, 2.0, 8.0], [1.0, 4.0, 8.0], [1.0, 1.0, 1.0]])  # the last replicate has no rise
    got = step_shares([1, 2, 3], score, boots, 0, 2, confidence=0.5)
    assert got["step_block"] == 2 and got["top2_blocks"] == (1, 2)
    assert got["step_share"] == pytest.approx(2 / 3, rel=1e-12) and got["top2_share"] == pytest.approx(1.0, rel=1e-12)
    # the same block in each replicate: 2/3 and 1/3 (the flat replicate left out)
    assert got["step_share_ci"][0] == pytest.approx(1 / 3 + 0.25 / 3, rel=1e-9)
    assert got["top2_share_ci"] == pytest.approx((1.0, 1.0), rel=1e-12)


def test_neighbour_baseline_offsets():
    """chi[., r, t] = 10 r + t: each baseline is the mean over the rows named in the docstring."""
    T, N = 6, 13
    chi = (10.0 * np.arange(T)[:, None] + np.arange(N)[None, :])[None]  # [1, T, N]
    rows, targets = np.array([1, 2, 3]), np.array([7, 8, 9])
    got = neighbour_baseline(chi, rows, targets, other_stripe=-1)[0]
    # row 1: offsets -3,-2 fall off, +1,+2 -> rows 2, 3; row 2: rows 0, 3, 4; row 3: rows 0, 1, 4, 5
    expect = [np.mean([20, 30]) + 7, np.mean([0, 30, 40]) + 8, np.mean([0, 10, 40, 50]) + 9]
    np.testing.assert_allclose(got, expect, rtol=1e-12)
    dup = neighbour_baseline(chi, np.array([2]), np.array([8]), other_stripe=+1)[0]
    np.testing.assert_allclose(dup, [np.mean([0, 10, 40, 50]) + 8], rtol=1e-12)  # offsets -2, -1, +2, +3
    with pytest.raises(ValueError, match="no neighbour"):
        neighbour_baseline(chi[:, :1], np.array([0]), np.array([7]), other_stripe=-1)


def test_right_neighbour_baseline_offsets():
    """chi[., r, t] = 10 r + t: the baseline averages the next sources to the right inside the first copy."""
    from residual_response.induction import right_neighbour_baseline

    T, N = 6, 13
    chi = (10.0 * np.arange(T)[:, None] + np.arange(N)[None, :])[None]  # [1, T, N]
    got = right_neighbour_baseline(chi, np.array([1, 4]), np.array([7, 10]), first=1)[0]
    np.testing.assert_allclose(got, [np.mean([20, 30]) + 7, 50 + 10], rtol=1e-12)  # row 4: only row 5 is inside
    dup = right_neighbour_baseline(chi, np.array([1]), np.array([8]), first=2)[0]
    np.testing.assert_allclose(dup, [np.mean([30, 40]) + 8], rtol=1e-12)  # beyond the induction source
    with pytest.raises(ValueError, match="no neighbour"):
        right_neighbour_baseline(chi, np.array([5]), np.array([11]), first=1)
    with pytest.raises(ValueError, match="first must be"):
        right_neighbour_baseline(chi, np.array([1]), np.array([7]), first=0)


def test_twin_shares_the_first_copy_and_repeats_nothing():
    lm = build_random_model("llama")
    for seed in range(3):
        rep, twin = make_sequence(lm, "repeated", 9, seed), make_sequence(lm, "twin", 9, seed)
        assert torch.equal(rep[:10], twin[:10]) and not torch.equal(rep[10:], twin[10:])
        assert torch.equal(twin[10:], make_sequence(lm, "random", 9, seed)[10:])


def test_bootstrap_ratio_of_ratios():
    """With a twin pair the statistic is (rep/ctrl)/(twin/twin_ctrl); a twin equal to the repeats gives 1."""
    from residual_response.stats import bootstrap_ratio

    rng = np.random.default_rng(0)
    rep, ctrl, twin, tctrl = (rng.uniform(1, 2, (4, 3, 7)) for _ in range(4))
    s, lo, hi = bootstrap_ratio(rep, ctrl, twin=(twin, tctrl), n_boot=200)
    m = [a.mean(axis=(0, 2)) for a in (rep, ctrl, twin, tctrl)]
    np.testing.assert_allclose(s, (m[0] / m[1]) / (m[2] / m[3]), rtol=1e-12)
    assert np.all(lo <= s) and np.all(s <= hi)
    s1, lo1, hi1 = bootstrap_ratio(rep, ctrl, twin=(rep, ctrl), n_boot=200)
    np.testing.assert_allclose([s1, lo1, hi1], 1.0, rtol=1e-12)
    with pytest.raises(ValueError, match="equal shapes"):
        bootstrap_ratio(rep, ctrl, twin=(twin, tctrl[:, :, :3]))


def test_emergence_layer():
    assert emergence_layer([0, 1, 2, 3], [np.nan, 1.5, 2.5, 3.0]) == 2
    assert emergence_layer([0, 1], [np.nan, 1.9]) is None


def test_sequences_layout_and_vocabulary():
    lm = build_random_model("gemma3")
    x = make_sequence(lm, "repeated", 7, seed=3)
    lay = induction_layout(lm, 7)
    assert len(x) == lay.length == 15 and x[0] == lm.bos_token_id
    assert torch.equal(x[1:8], x[8:15])
    # lag T-1: the token after the source's first occurrence is ... the target predicts the source token
    assert torch.equal(x[lay.induction_targets + 1], x[lay.induction_sources])
    assert torch.equal(x[lay.duplicate_targets], x[lay.duplicate_sources])
    assert torch.isin(x[1:], lm.ordinary_token_ids).all()
    assert torch.equal(make_sequence(lm, "repeated", 7, seed=3), x)
    ctrl = make_sequence(lm, "random", 7, seed=3)
    assert len(ctrl) == 15 and not torch.equal(ctrl[1:8], ctrl[8:15])
    shuf = make_sequence(lm, "shuffled", 7, seed=3)
    assert sorted(shuf[1:8].tolist()) == sorted(shuf[8:15].tolist())
    with pytest.raises(ValueError, match="unknown sequence kind"):
        make_sequence(lm, "sorted", 7)
    with pytest.raises(ValueError, match="beyond the context"):
        make_sequence(lm, "repeated", 10_000)
    with pytest.raises(ValueError, match="too short"):
        make_sequence(lm, "repeated", 1)


def test_random_models_show_no_induction(random_lm):
    """Negative control: a random-init model of every architecture scores below 1.5 on every layer."""
    res = induction_scores(random_lm, T=10, seeds=3, eps=1e-2, n_boot=200)
    scores = np.array(res.score[1:])
    assert np.all(scores < 1.5), scores
    assert res.emergence_layer is None


def test_seeds_mean_a_count_or_a_list_everywhere():
    """``seeds`` is an int K (seeds 0..K-1) or an explicit list, parsed by one function."""
    from residual_response.checks import check_seeds

    assert check_seeds(3) == [0, 1, 2] and check_seeds(range(2)) == [0, 1] and check_seeds([5, 2]) == [5, 2]
    with pytest.raises(ValueError, match=r"seeds \[1, 1\] contain repeats"):
        check_seeds([1, 1])
    with pytest.raises(ValueError, match=r"seeds \(a count\) must be an int in 1\.\.\d+, got 0"):
        check_seeds(0)
    with pytest.raises(TypeError, match="seeds must be a count K >= 1 or a list of seeds, got '3'"):
        check_seeds("3")


def test_two_level_bootstrap_draws_seeds_then_positions():
    """The paired and the plain two-level bootstrap use one draw order, so their replicates agree."""
    from residual_response.stats import paired_ratio_change, resampled_ratio, two_level_indices

    rng = np.random.default_rng(0)
    rep, ctrl = rng.gamma(2.0, size=(4, 3, 5)), rng.gamma(2.0, size=(4, 3, 5))
    si, pi = two_level_indices(np.random.default_rng(7), 4, 5, 50)
    assert si.shape == (50, 4) and pi.shape == (50, 4, 5) and si.max() < 4 and pi.max() < 5
    _, _, _, boots = bootstrap_ratio(rep, ctrl, n_boot=50, seed=7, return_boots=True)
    np.testing.assert_array_equal(boots, resampled_ratio(rep, ctrl, si, pi))
    change, lo, hi = paired_ratio_change((rep, ctrl), [(rep, ctrl)], n_boot=50, seed=7)
    assert np.all(change == 0) and np.all(lo == 0) and np.all(hi == 0)  # identical runs: no change in any replicate


def test_keyword_alias_and_regime_stream():
    from residual_response.checks import keyword_alias
    from residual_response.regime import RegimeInterval

    @keyword_alias(layer="block")
    def f(block):
        return block

    assert f(block=2) == f(layer=2) == 2
    with pytest.raises(TypeError, match="alias layer="):
        f(block=1, layer=2)
    iv = RegimeInterval(3, 1e-3, 1e-2, 4, 1.0, 1e-3, 0.01)
    assert iv.stream == 3 and iv.to_dict()["stream"] == 3 and "layer" not in iv.to_dict()
    with pytest.warns(DeprecationWarning, match="now called stream"):
        assert iv.layer == 3  # the old name still reads, and says so
    assert RegimeInterval.from_dict(iv.to_dict()) == iv


def test_section_map_writing_blocks():
    """A row whose first read stream already has an interval above 1: block l0 writes the stripe."""
    from residual_response.induction import SectionMap

    nan = np.nan
    lo = np.array([[nan, 0.9, 3.0, 3.0], [nan, nan, 2.5, 2.0], [nan, nan, nan, 1.2]])
    sm = SectionMap("m", 6, [0], [0, 1, 2], [0, 1, 2, 3], score=lo + 0.5, ci_low=lo, ci_high=lo + 1,
                    duplicate_score=lo)
    assert sm.writing_blocks() == [1]  # 1.2 is above 1 but not clearly (MIN_RISE = 1.5)
    assert sm.writing_blocks(threshold=1.0) == [1, 2]


def test_rescore_baseline_reproduces_a_run_with_that_baseline():
    """Scoring kept matrices against another baseline equals running with that baseline (same directions)."""
    from residual_response.induction import rescore_baseline

    lm = build_random_model("gpt2", seed=0)
    twin = induction_scores(lm, T=6, seeds=2, n_boot=50, keep_matrices=True)
    assert set(twin.stripes.matrices) == {"repeated", "twin"}
    for control in ("neighbours", "twin"):
        direct = induction_scores(lm, T=6, seeds=2, n_boot=50, control=control)
        again = rescore_baseline(twin, control)
        assert again.control == control
        np.testing.assert_allclose(again.score[1:], direct.score[1:], rtol=1e-10)
        np.testing.assert_allclose(again.ci_low[1:], direct.ci_low[1:], rtol=1e-10)
    with pytest.raises(ValueError, match="keep_matrices"):
        rescore_baseline(induction_scores(lm, T=6, seeds=2, n_boot=50), "neighbours")


def test_fall_before_top_finds_a_fall_back_on_the_way_up_with_a_paired_interval():
    """A profile that climbs to 4, falls to 2 and climbs to 16 falls by a factor of 2 from stream 2 to 3,
    resolved at this noise; a steady climb has no fall; a fall after the top is not "on the way up"."""
    from residual_response.rise import fall_before_top

    rep, base = _profile([1.0, 4.0, 2.0, 16.0, 16.0])
    s, _lo, _hi, boots = bootstrap_ratio(rep, base, return_boots=True, n_boot=500)
    f = fall_before_top(range(1, 6), s, boots)
    assert (f["from"], f["to"]) == (2, 3) and f["factor"] == pytest.approx(s[1] / s[2], rel=1e-12)
    assert f["low"] <= f["factor"] <= f["high"] and f["resolved"]
    rep, base = _profile([1.0, 2.0, 4.0, 8.0, 16.0])
    s, _lo, _hi, boots = bootstrap_ratio(rep, base, return_boots=True, n_boot=500)
    assert fall_before_top(range(1, 6), s, boots) is None
    rep, base = _profile([1.0, 2.0, 16.0, 4.0, 2.0])
    s, _lo, _hi, boots = bootstrap_ratio(rep, base, return_boots=True, n_boot=500)
    assert fall_before_top(range(1, 6), s, boots) is None
