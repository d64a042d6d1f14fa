"""Regime detection, bootstrap scores and sequences on synthetic inputs and random models."""

import numpy as np
import pytest
import torch

from residual_response.induction import bootstrap_ratio, emergence_layer, induction_scores
from residual_response.models import build_random_model
from residual_response.regime import universal_regime, widest_flat_interval
from residual_response.response import response
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
    with pytest.raises(ValueError, match="tol must be > 0"):
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
        res = response(lm, tokens, eps, read_layers=[lm.n_layers])
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
