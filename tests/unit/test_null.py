"""The null of the score: calibration conditions on tiny random models (no stand-ins needed)."""

import numpy as np
import pytest

from residual_response.induction import InductionResult, induction_scores
from residual_response.models import build_random_model
from residual_response.null import (REQUIRED_SHARE, before_heads_calibration, coverage, coverage_of_one,
                                    emergence_calibration, neighbour_profile, no_repeat_calibration, null_study,
                                    random_like, under_baselines)


def _result(score, lo, hi, layer=0, emergence=None):
    n = len(score)
    return InductionResult(model="m", length=6, seeds=[0], layer=layer, eps=1e-2, method="finite", layers=list(range(n)),
                           score=score, ci_low=lo, ci_high=hi, duplicate_score=score, duplicate_ci_low=lo,
                           duplicate_ci_high=hi, emergence_layer=emergence)


def test_coverage_and_band_count_the_streams_after_l0():
    res = _result([np.nan, 1.1, 0.7, 3.0, 1.0], [np.nan, 0.9, 0.5, 2.0, 1.01], [np.nan, 1.3, 0.95, 4.0, 1.2])
    cov = coverage_of_one(res, "random init")
    assert cov.units == (1, 2, 3, 4) and cov.passed == 1 and cov.share == 0.25 and not cov.holds
    assert cov.baseline == "twin" and cov.model == "m"
    band = before_heads_calibration(res, first_block=2)
    assert band.units == (1, 2) and band.passed == 1  # 1.1 inside [0.8, 1.25], 0.7 below
    assert before_heads_calibration(res, first_block=0).units == () and not before_heads_calibration(res, 0).holds


def test_emergence_calibration_needs_every_T_near_the_heads():
    def run(layer):
        return _result([np.nan, 1.0], [np.nan, 1.0], [np.nan, 1.0], emergence=layer)

    ok = emergence_calibration({8: run(6), 12: run(6), 20: run(7)}, first_block=5)
    assert ok.units == (8, 12, 20) and ok.passed == 3 and ok.holds
    far = emergence_calibration({8: run(6), 12: run(9)}, first_block=5)  # unstable: no T passes
    assert far.passed == 0 and not far.holds
    missing = emergence_calibration({8: run(None), 12: run(6)}, first_block=5)
    assert missing.passed == 1 and not missing.holds  # every T must pass


def test_random_like_keeps_the_configuration_and_tokens():
    lm = build_random_model("llama", seed=5, n_layers=3)
    rnd = random_like(lm, seed=1)
    assert rnd.config.to_dict() == lm.config.to_dict() and rnd.n_layers == 3
    assert rnd.ordinary_token_ids is lm.ordinary_token_ids and "random init 1" in rnd.name
    w0, w1 = (next(m.model.parameters()) for m in (lm, rnd))
    assert not np.allclose(w0.detach().numpy(), w1.detach().numpy())
    assert np.array_equal(next(random_like(lm, 1).model.parameters()).detach().numpy(), w1.detach().numpy())


@pytest.mark.parametrize("family", ["gpt2", "gemma3"])
def test_twin_score_is_calibrated_on_random_models(family):
    """The default baseline's intervals cover 1 on a random model, on repeats and without a repeat."""
    rows = null_study(families=[family], sizes=["small"], init_seeds=[0], T=8, seeds=2, n_boot=200)
    cov = coverage(rows)["twin"]
    assert cov.n == 4 and cov.covered >= REQUIRED_SHARE, cov
    lm = build_random_model(family, seed=0)
    ref = induction_scores(lm, T=8, seeds=2, n_boot=200, keep_matrices=True)
    no_rep = no_repeat_calibration(lm, ref)
    assert no_rep.condition == "no repeat" and no_rep.units == (1, 2, 3, 4) and no_rep.holds, no_rep
    both = under_baselines(ref)
    assert both["twin"] is ref and both["neighbours"].control == "neighbours"
    prof = neighbour_profile(ref, offsets=range(-3, 4))
    assert sorted(prof) == list(range(-3, 4)) and all(v.shape == (5,) for v in prof.values())
    # offset 0 is the stripe itself, k = 2..T: source row k - 1, target T + k - 1 (BOS first)
    m = ref.stripes.matrices
    rows, tgts = np.arange(1, 8), np.arange(9, 16)
    expect = m["repeated"][:, :, rows, tgts].mean(axis=(0, 2)) / m["twin"][:, :, rows, tgts].mean(axis=(0, 2))
    np.testing.assert_allclose(prof[0][1:], expect[1:], rtol=1e-12)


def test_pooled_calibration_and_chance_misses():
    from residual_response.null import Calibration, pooled

    a = Calibration("random init", "a", "twin", (1, 2, 3, 4), 3)
    b = Calibration("random init", "b", "twin", (1, 2, 3, 4), 4)
    p = pooled([a, b], "both")
    assert p.units == (1, 2, 3, 4, 1, 2, 3, 4) and p.passed == 7 and p.model == "both"
    assert not a.holds and a.misses_plausible()  # 1 miss in 4 is chance for 95 % intervals
    many = Calibration("random init", "m", "twin", tuple(range(100)), 80)  # 20 misses in 100: not chance
    assert not many.misses_plausible() and not many.holds
    with pytest.raises(ValueError, match="one condition"):
        pooled([a, Calibration("no repeat", "c", "twin", (1,), 1)], "x")
