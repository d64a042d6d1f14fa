"""The regime as the pages show it (residual_response.pages.regime_tables): checked on a tiny random model."""

import numpy as np
import pandas as pd
import pytest

from residual_response.regime import log_eps_grid, universal_regime, window_position
from residual_response.pages.regime_tables import common_windows, curve_frame, jvp_by_layer, regime_frame, sweep_models
from residual_response import response
from residual_response.sequences import make_sequence


@pytest.fixture(scope="module")
def gpt2():
    from residual_response.models import build_random_model

    return build_random_model("gpt2", seed=0)


def test_window_position_of_a_strength():
    assert window_position(1e-2, 1e-5, 1e-2) == "at the upper end"
    assert window_position(1e-3, 1e-5, 1e-2) == "inside"
    assert window_position(1e-1, 1e-5, 1e-2) == "above"
    assert window_position(1e-6, 1e-5, 1e-2) == "below"
    assert window_position(1e-3, float("nan"), float("nan")) == "none"


def test_regime_frame_sits_beside_the_jvp(gpt2):
    tokens = make_sequence(gpt2, "repeated", 4, 0)
    kw = dict(l0=0, sources=[1, 3], seed=0)
    sweep = response(gpt2, tokens, log_eps_grid(1e-4, 1.0, 1), **kw)
    jvp = jvp_by_layer(response(gpt2, tokens, method="jvp", **kw))
    df = regime_frame(sweep, jvp, tol=0.01)
    assert df.layer.tolist() == [l for l in sweep.read_streams if l > 0]
    ivs = {iv.stream: iv for iv in universal_regime(sweep, tol=0.01)}
    for row in df.itertuples():
        assert row.eps_low == ivs[row.layer].eps_low and row.chi_jvp == jvp[row.layer]
        assert row.rel_diff == pytest.approx(row.chi / row.chi_jvp - 1, abs=0)
    curves = curve_frame(sweep, [1, 2])
    assert set(curves.layer) == {1, 2} and len(curves) == 2 * len(sweep.eps)
    with pytest.raises(ValueError, match="jvp"):
        jvp_by_layer(sweep)


def test_common_windows_take_the_narrowest_ends():
    table = pd.DataFrame({"model": ["a", "a", "b"], "eps_low": [1e-5, 1e-4, 1e-6], "eps_high": [1e-1, 1e-2, 1e-3]})
    out = common_windows(table, 1e-2).set_index("model")
    assert out.low["a"] == 1e-4 and out.high["a"] == 1e-2 and out.position["a"] == "at the upper end"
    assert out.position["b"] == "above"


def test_sweep_models_tables_each_model_and_format(gpt2):
    sw = sweep_models({"tiny": gpt2}, T=4, eps_grid=log_eps_grid(1e-4, 1.0, 1), n_sources=2, n_layers_shown=2)
    assert set(sw.table.layer) == {1, gpt2.n_layers} and (sw.table.model == "tiny").all()
    assert (sw.curves.chi > 0).all() and sw.n_layers == {"tiny": gpt2.n_layers}
    row = sw.curves.iloc[0]
    assert row.chi_over_jvp == row.chi / sw.jvp["tiny", row.layer]
    assert np.isfinite(sw.table.rel_diff).all()
