"""The simulated error rates of the shape rule (:mod:`residual_response.shape_check`) and the rule itself."""

import math

import numpy as np
import pytest

from residual_response.rise import STEP_SHARE, rise_of, shape_label
from residual_response.shape_check import (gradual_truth, label_rates, log_deviations, measured_noise,
                                           shape_error_rates, step_truth, summarize_rates, wilson_interval)

LAYERS = list(range(1, 14))  # streams 1..13: blocks 1..12


def _noise(sigma, n_boot=300, seed=1):
    """``[n_boot, 13]`` independent Gaussian log deviations of spread ``sigma``."""
    return np.random.default_rng(seed).normal(0.0, sigma, size=(n_boot, len(LAYERS)))


def test_shape_label_is_the_rule_of_the_interval():
    assert STEP_SHARE == 0.5
    assert shape_label((0.5, 0.7)) == "steps"  # at one half counts
    assert shape_label((0.2, 0.49)) == "gradual"
    assert shape_label((0.45, 0.7)) == "unresolved"
    assert shape_label((math.nan, math.nan)) == "unresolved"  # no replicate rose
    with pytest.raises(ValueError, match=r"low <= high.*0\.7"):
        shape_label((0.7, 0.5))
    with pytest.raises(ValueError, match="two numbers.*0.5"):
        shape_label(0.5)


def test_profiles_rise_by_the_total_where_they_are_told():
    even = gradual_truth(LAYERS, 6, 1.2, centre=7)
    adds = np.diff(even)
    assert np.isclose(even[-1] - even[0], 1.2, atol=1e-12) and np.sum(adds > 1e-12) == 6
    np.testing.assert_allclose(adds[adds > 1e-12], 0.2, atol=1e-12)
    sig = gradual_truth(LAYERS, 6, 1.2, centre=7, kind="sigmoid")
    assert np.isclose(sig[-1] - sig[0], 1.2, atol=1e-12) and np.all(np.diff(sig) > 0)
    step = step_truth(LAYERS, [6], 1.2)
    assert np.isclose(step[6] - step[5], 0.8 * 1.2, atol=1e-12)  # block 6: stream 6 -> 7 (indices 5 -> 6)
    assert np.isclose(step[-1] - step[0], 1.2, atol=1e-12)


def test_tiny_noise_labels_gradual_rises_gradual_and_steps_steps():
    dev = _noise(1e-3)
    for kind in ("even", "sigmoid"):
        r = label_rates(LAYERS, gradual_truth(LAYERS, 8, np.log(5), 7, kind), dev, n_draws=100)
        assert r["steps"] == 0 and r["gradual"] >= 0.95, (kind, r)
    r = label_rates(LAYERS, step_truth(LAYERS, [6], np.log(5)), dev, n_draws=100)
    assert r["steps"] >= 0.95 and math.isclose(sum(r[k] for k in ("steps", "gradual", "unresolved", "no rise")), 1.0)


def test_false_steps_rate_grows_with_noise():
    truth = gradual_truth(LAYERS, 6, np.log(5), 7)
    rates = [label_rates(LAYERS, truth, _noise(s), n_draws=200)["steps"] for s in (1e-3, 0.3, 1.0)]
    # measured 0, 0.045 and 0.155 at these seeds; the margins allow a few draws either way
    assert rates[0] <= 0.01 and rates[1] >= rates[0] and rates[2] >= rates[1] + 0.05 and rates[2] >= 0.08, rates
    # the selection bias: the observed top-2 share of a gradual rise climbs with the noise
    shares = [label_rates(LAYERS, truth, _noise(s), n_draws=100)["mean_top2"] for s in (1e-3, 0.3)]
    assert abs(shares[0] - 1 / 3) < 0.02 and shares[1] > shares[0] + 0.1, shares
    # a draw's error twice its replicates' spread: intervals too narrow for the error, far more false steps
    # (measured 0.08 and 0.64 at these seeds)
    once, twice = (label_rates(LAYERS, truth, _noise(0.5), n_draws=200, error_scale=x)["steps"] for x in (1.0, 2.0))
    assert twice >= once + 0.2, (once, twice)


def test_shape_error_rates_at_a_measured_noise():
    score = np.exp(step_truth(LAYERS, [6], np.log(5))) * 1.1  # a rise in one step
    boots = score * np.exp(_noise(0.02, n_boot=120))
    rows = shape_error_rates(LAYERS, score, boots, n_draws=40)
    ks = [r["k"] for r in rows if r["k"] is not None]
    assert ks == [4, 4, 6, 6, 8, 8, 10, 10, 12, 12]  # even and sigmoid, up to the 12 blocks read
    assert [r["profile"] for r in rows[-2:]] == ["1 step", "2 steps"]
    for r in rows:
        assert math.isclose(sum(r[k] for k in ("steps", "gradual", "unresolved", "no rise")), 1.0)
        assert r["steps_ci"][0] <= r["steps"] <= r["steps_ci"][1]
    s = summarize_rates(rows)
    assert s["gradual_ks"] == [6, 8, 10, 12] and s["false_steps"] == 0 and s["power"]["1 step"][0] >= 0.9
    assert s["threshold_at"].endswith("k = 4")  # 4 even blocks make exactly one half: no gradual truth
    # the selection bias comes with an interval over the draws that holds it
    lo, hi = s["bias_ci"]
    assert lo <= s["bias"] <= hi and hi - lo > 0
    assert all(len(r["top2"]) == 40 for r in rows)
    assert summarize_rates([{k: v for k, v in r.items() if k != "top2"} for r in rows])["bias_ci"] is None


def test_measured_noise_is_the_replicates_of_the_results_rise():
    from residual_response.induction import scores_from_stripes
    from residual_response.induction_result import StripeData

    rng = np.random.default_rng(0)
    n_seeds, n_read, P = 3, 6, 8  # streams 0..5, perturbed at 0; the entries rise over depth
    rising = np.linspace(1.0, 6.0, n_read)[None, :, None]
    parts = {k: rng.uniform(0.5, 1.5, size=(n_seeds, n_read, P)) * (rising if k == "repeated" else 1.0)
             for k in ("repeated", "control", "twin", "twin_control")}
    stripes = StripeData(T=8, l0=0, eps=1e-2, seeds=[0, 1, 2], read_streams=list(range(n_read)), induction=parts,
                         duplicate=parts, sources=[1])
    res = scores_from_stripes(stripes, n_boot=60)
    layers, score, boots = measured_noise(res)
    assert layers == [1, 2, 3, 4, 5] and boots.shape == (60, 5)
    np.testing.assert_allclose(score, np.asarray(res.score)[1:], rtol=1e-12)
    again = rise_of(layers, score, boots)
    assert again.emerged and again.factor_ci == pytest.approx(res.rise.factor_ci, rel=1e-12)
    assert again.top2_share_ci == pytest.approx(res.rise.top2_share_ci, rel=1e-12)
    res.stripes = None
    with pytest.raises(ValueError, match="no stripes"):
        measured_noise(res)


def test_wilson_interval():
    lo, hi = wilson_interval(0, 200)
    assert lo == 0 and 0.015 < hi < 0.025  # about 1.9 % for none of 200
    lo, hi = wilson_interval(100, 200)
    assert lo < 0.5 < hi and math.isclose(lo + hi, 1.0, abs_tol=1e-12)


@pytest.mark.parametrize("call, match", [
    (lambda: label_rates(LAYERS, np.zeros(13), _noise(0.1, n_boot=50), n_draws=50), "n_draws.*50"),
    (lambda: label_rates(LAYERS, np.zeros(13), _noise(0.1), n_draws=1.5), "n_draws.*1.5"),
    (lambda: label_rates(LAYERS, np.zeros(12), _noise(0.1)), r"truth.*\(12,\)"),
    (lambda: label_rates(LAYERS, np.zeros(13), _noise(0.1), error_scale=0.0), "error_scale.*0.0"),
    (lambda: label_rates(LAYERS, np.zeros(13), _noise(0.1), error_scale="2"), "error_scale.*'2'"),
    (lambda: gradual_truth(LAYERS, 6, 1.0, 7, kind="smooth"), "kind.*smooth"),
    (lambda: gradual_truth(LAYERS, 0, 1.0, 7), "k.*0"),
    (lambda: gradual_truth(LAYERS, 6, -1.0, 7), "total.*-1.0"),
    (lambda: step_truth(LAYERS, [2, 3, 4], 1.0), r"steps.*\[2, 3, 4\]"),
    (lambda: step_truth(LAYERS, [6], 1.0, share=1.5), "share.*1.5"),
    (lambda: log_deviations([1.0, -2.0], np.ones((5, 2))), "positive.*-2.0"),
    (lambda: log_deviations([1.0, 2.0], np.ones((5, 3))), r"boots.*\(5, 3\)"),
    (lambda: shape_error_rates(LAYERS, np.ones(13)[::-1].cumsum()[::-1], np.ones((20, 13))), "does not rise"),
    (lambda: summarize_rates([]), "rows"),
])
def test_bad_input_names_the_value(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
