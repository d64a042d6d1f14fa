"""Head attribution from the response, on tiny random models."""

import numpy as np
import pytest
import torch

from residual_response.heads import head_attribution, head_stripe_response
from residual_response.sequences import induction_layout, make_sequence


def test_batched_head_response_equals_one_pair_at_a_time(random_lm):
    lay = induction_layout(random_lm, 5)
    tokens = make_sequence(random_lm, "repeated", 5, seed=0)
    src, tgt = lay.induction_sources, lay.induction_targets
    batched = head_stripe_response(random_lm, tokens, src, tgt, layer=1, eps=1e-2, seed=3)  # [P, L, H]
    assert batched.shape == (len(src), random_lm.n_layers, random_lm.n_heads)
    assert np.all(np.isnan(batched[:, 0])) and np.all(np.isfinite(batched[:, 1:]))
    # one pair at a time, with the same directions (seeded per source list, so compare the first)
    single = head_stripe_response(random_lm, tokens, src[:1], tgt[:1], layer=1, eps=1e-2, seed=3)
    np.testing.assert_allclose(batched[:1, 1:], single[:, 1:], rtol=1e-4)


def test_random_model_heads_show_no_induction(random_lm):
    res = head_attribution(random_lm, T=8, seeds=2, n_boot=100)
    assert res.score.shape == (random_lm.n_layers, random_lm.n_heads)
    assert np.nanmax(res.score) < 2.0, res.ranking(3)
    top = res.ranking(3)
    assert len(top) == 3 and top[0][2] >= top[1][2] >= top[2][2]


def test_head_attribution_rejects_bad_input(random_lm):
    with pytest.raises(ValueError, match="eps must be finite"):
        head_attribution(random_lm, T=4, seeds=1, eps=-1.0)
    with pytest.raises(ValueError, match="out of range"):
        head_attribution(random_lm, T=4, seeds=1, layer=99)
