"""Attention patterns and the induction / previous-token scores computed from them."""

import pytest
import torch

from residual_response.attention import (
    attention_patterns,
    eager_attention,
    induction_attention_scores,
    induction_heads,
    previous_token_scores,
    top_heads,
)
from residual_response.sequences import induction_layout, make_sequence


def test_patterns_shape_rows_causal(random_lm):
    lm = random_lm
    toks = make_sequence(lm, "repeated", 8, 0)
    pat = attention_patterns(lm, toks)
    N = toks.shape[0]
    assert pat.shape == (lm.n_layers, lm.n_heads, N, N)
    assert torch.allclose(pat.sum(-1), torch.ones(lm.n_layers, lm.n_heads, N), atol=1e-5)
    upper = torch.triu(torch.ones(N, N, dtype=torch.bool), diagonal=1)
    assert (pat[..., upper] == 0).all()
    assert (pat >= 0).all()


def test_patterns_batch_and_restore(random_lm):
    lm = random_lm
    before = lm.model.config._attn_implementation
    toks = torch.stack([make_sequence(lm, "random", 6, s) for s in range(3)])
    pat = attention_patterns(lm, toks)
    assert pat.shape == (3, lm.n_layers, lm.n_heads, toks.shape[1], toks.shape[1])
    assert torch.allclose(pat[1], attention_patterns(lm, toks[1]), atol=1e-6)
    assert lm.model.config._attn_implementation == before


def test_implementation_restored_after_error(random_lm):
    lm = random_lm
    before = lm.model.config._attn_implementation
    with pytest.raises(RuntimeError, match="boom"):
        with eager_attention(lm):
            raise RuntimeError("boom")
    assert lm.model.config._attn_implementation == before


def test_pattern_input_validation(random_lm):
    lm = random_lm
    with pytest.raises(TypeError, match="integer"):
        attention_patterns(lm, torch.zeros(5))
    with pytest.raises(ValueError, match=r"0\.\.511"):
        attention_patterns(lm, torch.tensor([1, 2, 9999]))
    with pytest.raises(ValueError, match="shape"):
        attention_patterns(lm, torch.zeros(1, 1, 4, dtype=torch.long))


def test_scores_shapes_and_ci(random_lm):
    lm = random_lm
    res = induction_attention_scores(lm, T=6, seeds=range(3), n_boot=200)
    L, H = lm.n_layers, lm.n_heads
    for key in ("repeated", "baseline"):
        assert getattr(res, key).mean.shape == (L, H)
        assert getattr(res, key).per_seed.shape == (3, L, H)
        assert (getattr(res, key).lo <= getattr(res, key).mean + 1e-12).all()
        assert (getattr(res, key).hi >= getattr(res, key).mean - 1e-12).all()
    assert res.ratio.shape == (L, H)
    prev = previous_token_scores(lm, T=6, seeds=[0, 1], n_boot=50)
    assert prev.scores.mean.shape == (L, H)
    assert ((prev.scores.mean >= 0) & (prev.scores.mean <= 1)).all()


def test_score_validation(random_lm):
    lm = random_lm
    with pytest.raises(ValueError, match="stripe"):
        induction_attention_scores(lm, T=6, seeds=[0], stripe="diagonal")
    with pytest.raises(ValueError, match="seed"):
        induction_attention_scores(lm, T=6, seeds=[0, 0])
    with pytest.raises(ValueError, match="seeds"):
        induction_attention_scores(lm, T=6, seeds=0)
    with pytest.raises(TypeError, match="seeds"):
        induction_attention_scores(lm, T=6, seeds="3")
    with pytest.raises(ValueError, match="control"):
        induction_attention_scores(lm, T=6, seeds=[0], control="repeated")


def test_score_picks_induction_entries(monkeypatch):
    """A hand-built pattern: head (1, 2) attends exactly from T+k-1 to k, head (0, 1) to t-1."""
    import residual_response.attention as att
    from residual_response.models import build_random_model

    lm = build_random_model("gpt2", seed=0)
    T = 5
    lay = induction_layout(lm, T)
    N = lay.length
    base = torch.tril(torch.ones(N, N))
    base = base / base.sum(-1, keepdim=True)  # uniform causal attention
    pat = base.expand(lm.n_layers, lm.n_heads, N, N).clone()
    ind = torch.zeros(N, N)
    ind[torch.arange(N), 0] = 1.0  # rest on BOS
    ind[lay.induction_targets] = 0.0
    ind[lay.induction_targets, lay.induction_sources] = 1.0
    pat[1, 2] = ind
    prev = torch.zeros(N, N)
    prev[0, 0] = 1.0
    prev[torch.arange(1, N), torch.arange(0, N - 1)] = 1.0
    pat[0, 1] = prev

    def fake_patterns(lm_, tokens):
        return pat.expand(tokens.shape[0], *pat.shape).clone()

    monkeypatch.setattr(att, "attention_patterns", fake_patterns)
    res = att.induction_attention_scores(lm, T=T, seeds=range(2), n_boot=20)
    assert res.repeated.mean[1, 2] == pytest.approx(1.0)
    assert top_heads(res, 1)[0][:2] == (1, 2)
    # uniform heads score the mean of 1/(query index + 1) over the stripe
    expect = (1.0 / (lay.induction_targets.double() + 1)).mean().item()
    assert res.repeated.mean[0, 0] == pytest.approx(expect)
    dup = att.induction_attention_scores(lm, T=T, seeds=[0], stripe="duplicate", n_boot=10)
    assert dup.repeated.mean[1, 2] == pytest.approx(0.0)
    p = att.previous_token_scores(lm, T=T, seeds=[0], n_boot=10)
    assert top_heads(p, 1)[0][:2] == (0, 1)
    assert p.scores.mean[0, 1] == pytest.approx(1.0)


def test_induction_heads_need_more_attention_on_repeats_than_on_random_sequences(monkeypatch):
    """Head (1, 2) attends along the stripe only when the second half repeats the first; every
    other head attends uniformly whatever the sequence. Only (1, 2) counts as an induction head,
    although top_heads names five."""
    import residual_response.attention as att
    from residual_response.errors import InputError
    from residual_response.models import build_random_model

    lm = build_random_model("gpt2", seed=0)
    T = 5
    lay = induction_layout(lm, T)
    N = lay.length
    base = torch.tril(torch.ones(N, N))
    base = base / base.sum(-1, keepdim=True)
    ind = torch.zeros(N, N)
    ind[torch.arange(N), 0] = 1.0
    ind[lay.induction_targets] = 0.0
    ind[lay.induction_targets, lay.induction_sources] = 1.0

    def fake_patterns(lm_, tokens):
        out = base.expand(tokens.shape[0], lm.n_layers, lm.n_heads, N, N).clone()
        for i, t in enumerate(tokens):
            if torch.equal(t[lay.offset:lay.offset + T], t[lay.offset + T:]):  # a repeat
                out[i, 1, 2] = ind
        return out

    monkeypatch.setattr(att, "attention_patterns", fake_patterns)
    res = att.induction_attention_scores(lm, T=T, seeds=range(2), n_boot=20)
    assert len(top_heads(res, 5)) == 5
    found = induction_heads(res, 5)
    assert [(b, h) for b, h, _, _ in found] == [(1, 2)] and found[0][3] > 2
    assert induction_heads(res, 5, min_ratio=found[0][3] * 1.01) == []
    with pytest.raises(InputError, match="min_ratio"):
        induction_heads(res, 5, min_ratio=1)
    with pytest.raises(InputError, match="induction_attention_scores"):
        induction_heads(torch.ones(2, 2))


def test_top_heads():
    s = torch.tensor([[0.1, 0.9], [0.5, 0.3]])
    assert top_heads(s, 2) == [(0, 1, pytest.approx(0.9)), (1, 0, pytest.approx(0.5))]
    assert top_heads({"mean": s}, 1)[0][:2] == (0, 1)
    with pytest.raises(ValueError, match=r"1\.\.4"):
        top_heads(s, 5)
    with pytest.raises(ValueError, match="matrix"):
        top_heads(torch.ones(3), 1)
