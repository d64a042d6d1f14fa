"""Integration tests on the offline stand-ins (SmolLM2-135M, Gemma 3 270M)."""

import numpy as np
import pytest
import torch

from residual_response.induction import induction_scores
from residual_response.perturbation import perturbation_directions
from residual_response.engine import response
from residual_response.sequences import make_sequence

from reference import naive_chi

pytestmark = pytest.mark.integration


def test_smollm2_scale_invariance_and_jvp(smollm2):
    """chi deviates < 1% from its median over eps 1e-4..3e-2 at every tested layer (float32), and
    over the full 1e-4..1e-1 at layer 1; the JVP agrees with the plateau within 1%.

    Measured: at eps = 1e-1 the mid-depth layer 15 bends by ~1.3% (the non-linear end of the
    regime), so the upper end of the regime is layer-dependent, between 3e-2 and 1e-1.
    """
    tokens = make_sequence(smollm2, "repeated", 5, seed=0)
    eps = np.logspace(-4, -1, 7)  # 1e-4 .. 1e-1, two points per decade
    layers = [1, 15, 30]
    fin = response(smollm2, tokens, eps, read_streams=layers, n_directions=2, seed=0)
    jvp = response(smollm2, tokens, read_streams=layers, n_directions=2, seed=0, method="jvp")
    src = np.asarray(fin.sources)
    upper = np.arange(len(tokens))[None, :] >= src[:, None]
    for i, layer in enumerate(layers):
        curve = fin.chi[:, i][:, upper].mean(axis=-1)  # [n_eps] mean over pairs t >= s
        top = len(eps) if layer == 1 else len(eps) - 1  # 1e-1 for layer 1, else up to ~3e-2
        plateau = np.median(curve[:top])
        spread = np.abs(curve[:top] / plateau - 1).max()  # METHOD.md: within a tolerance of its median
        assert spread < 0.01, f"layer {layer}: chi deviates {spread:.2%} from its median up to eps {eps[top - 1]:.0e} (tolerance 1%)"
        limit = jvp.chi[0, i][upper].mean()
        assert abs(limit / plateau - 1) < 0.01, f"layer {layer}: JVP {limit:.4g} vs plateau {plateau:.4g} (tolerance 1%)"


def test_smollm2_engine_equals_naive_loop(smollm2):
    tokens = make_sequence(smollm2, "repeated", 4, seed=2)
    N = len(tokens)
    res = response(smollm2, tokens, [1e-2], l0=3, n_directions=1, seed=5)
    dirs = perturbation_directions(smollm2, tokens, torch.arange(N), 1, "gaussian", 5)
    ref = naive_chi(smollm2, tokens, 1e-2, 3, dirs)
    rel = np.abs(res.chi[0] - ref).max() / np.abs(ref).max()
    assert rel < 1e-4, f"max rel diff {rel:.2e} (tolerance 1e-4)"


@pytest.mark.parametrize("fixture", ["smollm2", "gemma3"])
def test_standin_emergence_agrees_with_the_attention_heads(fixture, request):
    """At the canonical setting induction emerges, at the stream after the earliest block among
    the five strongest attention-pattern induction heads (within one layer), and the early
    layers do not show it."""
    from residual_response.attention import induction_attention_scores, top_heads
    from residual_response.canonical import CANONICAL

    lm = request.getfixturevalue(fixture)
    res = induction_scores(lm, T=CANONICAL["T"], seeds=CANONICAL["seeds"], eps=CANONICAL["eps"], n_boot=500)
    assert res.emergence_layer is not None and res.rise.emerged, res.rise
    assert res.rise.factor_ci[0] > 2, f"{lm.name}: the rise is only {res.rise.factor_ci}"
    att = induction_attention_scores(lm, T=CANONICAL["T"], seeds=range(CANONICAL["seeds"]), n_boot=50)
    first_block = min(b for b, _, _ in top_heads(att["repeated"]["mean"], 5))
    assert abs(res.emergence_layer - (first_block + 1)) <= 1, \
        f"{lm.name}: emergence at stream {res.emergence_layer}, earliest top-5 head in block {first_block}"
    scores = np.array(res.score[1:])
    assert scores[0] < 1.5  # stream 1: nothing to copy from yet
    # calibrated on the trained model itself: before its first induction heads the score lies near 1
    from residual_response.null import before_heads_calibration

    band = before_heads_calibration(res, first_block)
    assert len(band.units) >= 3 and band.holds, band


def test_gemma3_is_causal_and_deterministic(gemma3):
    tokens = make_sequence(gemma3, "random", 4, seed=1)
    a = response(gemma3, tokens, [1e-2], read_streams=[9, 18], seed=3)
    b = response(gemma3, tokens, [1e-2], read_streams=[9, 18], seed=3)
    assert np.array_equal(a.chi, b.chi)
    lower = np.tril(np.ones(a.chi.shape[-2:], bool), k=-1)
    assert np.all(a.chi[..., lower] == 0) and np.all(a.chi[..., ~lower] > 0)
