"""The null of the score: calibration conditions on tiny random models (no stand-ins needed)."""

import numpy as np
import pytest

from residual_response.induction import InductionResult, induction_scores
from residual_response.models import build_random_model
from residual_response.null import (REQUIRED_SHARE, before_heads_calibration, coverage, coverage_of_one,
                                    no_repeat_calibration, null_study, random_like)


def _result(score, lo, hi, layer=0):
    n = len(score)
    return InductionResult(model="m", length=6, seeds=[0], layer=layer, eps=1e-2, method="finite", layers=list(range(n)),
                           score=score, ci_low=lo, ci_high=hi, duplicate_score=score, duplicate_ci_low=lo,
                           duplicate_ci_high=hi, emergence_layer=None)


def test_coverage_and_band_count_the_streams_after_l0():
    res = _result([np.nan, 1.1, 0.7, 3.0, 1.0], [np.nan, 0.9, 0.5, 2.0, 1.01], [np.nan, 1.3, 0.95, 4.0, 1.2])
    cov = coverage_of_one(res, "random init")
    assert cov.streams == (1, 2, 3, 4) and cov.passed == 1 and cov.share == 0.25 and not cov.holds
    band = before_heads_calibration(res, first_block=2)
    assert band.streams == (1, 2) and band.passed == 1  # 1.1 inside [0.8, 1.25], 0.7 below
    assert before_heads_calibration(res, first_block=0).streams == () and not before_heads_calibration(res, 0).holds


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
    ref = induction_scores(lm, T=8, seeds=2, n_boot=200)
    no_rep = no_repeat_calibration(lm, ref)
    assert no_rep.condition == "no repeat" and no_rep.streams == (1, 2, 3, 4) and no_rep.holds, no_rep
