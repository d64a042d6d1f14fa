"""The response engine on tiny random models of every architecture."""

import numpy as np
import pytest
import torch

from residual_response.perturbation import perturbation_directions
from residual_response.engine import response
from residual_response.sequences import make_sequence
from residual_response.streams import clean_streams

from reference import rel_diff_from_naive


def test_causality_exact(random_lm):
    """chi[l, s, t] == 0 exactly for t < s, at every read layer and l0."""
    tokens = make_sequence(random_lm, "repeated", 6, seed=1)
    for l0 in (0, 2):
        res = response(random_lm, tokens, [1e-3, 1e-1], l0=l0, n_directions=2, seed=0)
        chi = res.chi  # [n_eps, n_read, N, N]
        lower = np.tril(np.ones(chi.shape[-2:], bool), k=-1)
        assert np.all(chi[..., lower] == 0.0)
        # and the response is not trivially zero on and above the diagonal
        assert np.all(chi[:, -1][..., np.diag_indices(chi.shape[-1])[0], np.diag_indices(chi.shape[-1])[1]] > 0)


def test_causality_exact_without_prefix_reuse(random_lm):
    """Causality holds in the model itself, not only because the engine skips positions < s."""
    tokens = make_sequence(random_lm, "random", 5, seed=2)
    res = response(random_lm, tokens, [1e-2], reuse_prefix=False, batch_rows=64)
    lower = np.tril(np.ones(res.chi.shape[-2:], bool), k=-1)
    assert np.all(res.chi[..., lower] == 0.0)


def test_batched_engine_equals_one_source_loop(random_lm):
    """The batched engine equals the naive loop (one full forward per source), rel. diff < 1e-4."""
    tokens = make_sequence(random_lm, "repeated", 5, seed=0)
    for l0 in (0, 1):
        rel = rel_diff_from_naive(random_lm, tokens, l0, seed=7)
        assert rel < 1e-4, f"l0={l0}: max rel diff {rel:.2e} (tolerance 1e-4)"


def test_prefix_reuse_and_batch_size_do_not_change_chi(random_lm):
    tokens = make_sequence(random_lm, "repeated", 6, seed=3)
    a = response(random_lm, tokens, [1e-2], n_directions=2, seed=1)
    b = response(random_lm, tokens, [1e-2], n_directions=2, seed=1, reuse_prefix=False, batch_rows=3)
    rel = np.abs(a.chi - b.chi).max() / np.abs(a.chi).max()
    assert rel < 1e-5, f"max rel diff {rel:.2e} (tolerance 1e-5)"


def test_deterministic_bit_identical(random_lm):
    tokens = make_sequence(random_lm, "repeated", 5, seed=4)
    a = response(random_lm, tokens, [1e-3], n_directions=3, seed=11)
    b = response(random_lm, tokens, [1e-3], n_directions=3, seed=11)
    assert np.array_equal(a.chi, b.chi)
    c = response(random_lm, tokens, [1e-3], n_directions=3, seed=12)
    assert not np.array_equal(a.chi, c.chi)


def test_jvp_equals_small_eps_limit(random_lm64):
    """In float64 the finite-eps response at eps=1e-6 equals the JVP within 1e-5 (relative)."""
    tokens = make_sequence(random_lm64, "repeated", 5, seed=5)
    attn_before = random_lm64.config._attn_implementation
    fin = response(random_lm64, tokens, [1e-6], l0=1, n_directions=2, seed=2)
    jvp = response(random_lm64, tokens, l0=1, n_directions=2, seed=2, method="jvp")
    rel = np.abs(fin.chi[0] - jvp.chi[0]).max() / np.abs(jvp.chi[0]).max()
    assert rel < 1e-5, f"max rel diff {rel:.2e} (tolerance 1e-5)"
    # the attention implementation is restored after the JVP
    assert random_lm64.config._attn_implementation == attn_before


def test_read_layer_l0_is_the_perturbation_itself(random_lm):
    tokens = make_sequence(random_lm, "random", 4, seed=0)
    res = response(random_lm, tokens, [1e-2], l0=1, read_streams=[1, 3])
    chi_l0 = res.chi[0, 0]
    np.testing.assert_allclose(np.diag(chi_l0), 1.0, rtol=1e-5)  # float32 rounding of h + delta
    assert np.all(chi_l0[~np.eye(len(tokens), dtype=bool)] == 0)


def test_embedding_directions_point_to_other_tokens(random_lm):
    tokens = make_sequence(random_lm, "random", 4, seed=0)
    res = response(random_lm, tokens, [1e-3], direction="embedding", n_directions=2, seed=3)
    assert np.isfinite(res.chi).all() and res.chi.max() > 0
    u = perturbation_directions(random_lm, tokens, torch.arange(len(tokens)), 2, "embedding", 3)
    np.testing.assert_allclose(u.norm(dim=-1).numpy(), 1.0, rtol=1e-12)


def test_last_stream_is_before_final_norm(random_lm):
    """h[L] is the raw output of the last block, not HF's normed last hidden state."""
    tokens = make_sequence(random_lm, "random", 4, seed=0)
    h = clean_streams(random_lm, tokens)  # [L+1, N, d]
    with torch.no_grad():
        out = random_lm.model(input_ids=tokens[None], output_hidden_states=True)
    L = random_lm.n_layers
    torch.testing.assert_close(h[:L], torch.stack([x[0] for x in out.hidden_states[:L]]), rtol=0, atol=0)
    normed = random_lm.base_model.norm if hasattr(random_lm.base_model, "norm") else random_lm.base_model.ln_f
    with torch.no_grad():
        torch.testing.assert_close(normed(h[L][None])[0], out.hidden_states[L][0], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(h[L], out.hidden_states[L][0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(eps=[0.0]), "eps must be finite and > 0"),
        (dict(eps=[-1e-3]), "eps must be finite and > 0"),
        (dict(eps=[float("nan")]), "eps must be finite and > 0"),
        (dict(eps=[]), "eps is empty"),
        (dict(l0=4), "out of range"),
        (dict(l0=-1), "out of range"),
        (dict(read_streams=[9]), "out of range"),
        (dict(l0=2, read_streams=[1]), "lies before the perturbed stream"),
        (dict(sources=[99]), "source 99 out of range"),
        (dict(method="magic"), "unknown method"),
        (dict(direction="up"), "unknown direction"),
        (dict(n_directions=0), "n_directions must be an int >= 1"),
    ],
)
def test_bad_input_raises_clear_error(kwargs, match):
    from residual_response.models import build_random_model

    lm = build_random_model("llama")
    tokens = make_sequence(lm, "random", 3, seed=0)
    with pytest.raises(ValueError, match=match):
        response(lm, tokens, **{"eps": [1e-3], **kwargs})


def test_bad_layer_type_raises_type_error():
    from residual_response.models import build_random_model

    lm = build_random_model("gpt2")
    with pytest.raises(TypeError, match="perturbed stream l0 must be an int"):
        response(lm, make_sequence(lm, "random", 3, seed=0), [1e-3], l0=1.5)


def test_npz_written_atomically(tmp_path, random_lm):
    tokens = make_sequence(random_lm, "repeated", 3, seed=0)
    res = response(random_lm, tokens, [1e-3, 1e-2])
    path = tmp_path / "chi.npz"
    res.save_npz(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chi.npz"]  # no temp file left
    data = np.load(path)
    N = len(tokens)
    assert data["chi"].shape == (2, random_lm.n_layers + 1, N, N)
    assert list(data["read_streams"]) == list(range(random_lm.n_layers + 1))
    assert np.array_equal(data["tokens"], tokens.numpy())
