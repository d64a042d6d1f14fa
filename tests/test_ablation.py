"""Head ablation: hooks on the attention output projection, for every supported architecture."""

import pytest
import torch

from residual_response.ablation import (
    ablate_heads,
    default_reference_tokens,
    head_means,
    head_output_projection,
    random_heads,
    validate_heads,
)
from residual_response.sequences import make_sequence


def _logits(lm, toks):
    with torch.no_grad():
        return lm.model(input_ids=toks.unsqueeze(0).to(lm.device)).logits[0]


def _n_hooks(lm):
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in lm.model.modules())


@pytest.mark.parametrize("mode", ["mean", "zero"])
def test_ablation_changes_output_and_cleans_up(random_lm, mode):
    lm = random_lm
    toks = make_sequence(lm, "repeated", 8, 0)
    clean = _logits(lm, toks)
    hooks_before = _n_hooks(lm)
    with ablate_heads(lm, [(1, 2)], mode=mode) as info:
        assert info["heads"] == [(1, 2)]
        assert _n_hooks(lm) == hooks_before + 1
        ablated = _logits(lm, toks)
    assert _n_hooks(lm) == hooks_before
    assert not torch.allclose(ablated, clean)
    assert torch.equal(_logits(lm, toks), clean)


def test_no_heads_is_bit_identical(random_lm):
    lm = random_lm
    toks = make_sequence(lm, "random", 8, 1)
    clean = _logits(lm, toks)
    for mode in ("mean", "zero"):
        with ablate_heads(lm, [], mode=mode):
            assert torch.equal(_logits(lm, toks), clean)


def test_zero_ablation_zeroes_the_slice(random_lm):
    """The projection sees zeros exactly in the ablated head's slice and nothing else changes."""
    lm = random_lm
    toks = make_sequence(lm, "random", 6, 2)
    proj = head_output_projection(lm, 2)
    seen = {}

    def grab(module, args, output):  # forward hooks see the inputs as the pre-hooks left them
        seen.setdefault("z", []).append(args[0].detach().clone())

    handle = proj.register_forward_hook(grab)
    try:
        _logits(lm, toks)
        with ablate_heads(lm, [(2, 1)], mode="zero"):
            _logits(lm, toks)
    finally:
        handle.remove()
    clean, abl = seen["z"]
    dh = clean.shape[-1] // lm.n_heads
    assert (abl[..., dh : 2 * dh] == 0).all()
    assert torch.equal(abl[..., :dh], clean[..., :dh])  # layer-2 inputs unchanged upstream
    assert torch.equal(abl[..., 2 * dh :], clean[..., 2 * dh :])


def test_mean_ablation_uses_means(random_lm):
    lm = random_lm
    ref = default_reference_tokens(lm, T=5, n_seeds=2)
    means = head_means(lm, ref)
    assert means.shape[:2] == (lm.n_layers, lm.n_heads)
    toks = make_sequence(lm, "repeated", 5, 3)
    with ablate_heads(lm, [(0, 0), (3, 3)], mode="mean", means=means):
        a = _logits(lm, toks)
    with ablate_heads(lm, [(0, 0), (3, 3)], mode="mean", reference_tokens=ref):
        b = _logits(lm, toks)
    assert torch.allclose(a, b, atol=1e-5)
    # a list of 1-D sequences of any length works as reference
    with ablate_heads(lm, [(0, 0)], mode="mean", reference_tokens=[toks]):
        c = _logits(lm, toks)
    assert torch.isfinite(c).all()


def test_bad_heads(random_lm):
    lm = random_lm
    L, H = lm.n_layers, lm.n_heads
    # transformers keeps hooks of its own once attention weights were asked for (an earlier test
    # on the shared model may have): count ours against that
    hooks_before = _n_hooks(lm)
    with pytest.raises(ValueError, match=rf"head index {H} .*0\.\.{H - 1}"):
        with ablate_heads(lm, [(0, H)]):
            pass
    with pytest.raises(ValueError, match=rf"block index {L} .*0\.\.{L - 1}"):
        with ablate_heads(lm, [(L, 0)]):
            pass
    with pytest.raises(ValueError, match=r"block index -1 .*0\.\."):
        validate_heads(lm, [(-1, 0)])
    with pytest.raises(TypeError, match="pair"):
        validate_heads(lm, [(0, 1, 2)])
    with pytest.raises(TypeError, match="single pair"):
        validate_heads(lm, (0, 1))
    with pytest.raises(TypeError, match="int"):
        validate_heads(lm, [(0.0, 1)])
    with pytest.raises(ValueError, match="mode"):
        with ablate_heads(lm, [(0, 0)], mode="resample"):
            pass
    assert _n_hooks(lm) == hooks_before


def test_random_heads(random_lm):
    lm = random_lm
    a = random_heads(lm, 3, seed=5)
    assert a == random_heads(lm, 3, seed=5)
    assert len(set(a)) == 3
    ex = [(1, 0), (1, 1)]
    b = random_heads(lm, 2, seed=0, exclude=ex, layers=[1])
    assert all(l == 1 and (l, h) not in ex for l, h in b)
    with pytest.raises(ValueError, match=r"0\.\.2"):
        random_heads(lm, 3, seed=0, exclude=ex, layers=[1])
    with pytest.raises(ValueError, match="seed"):
        random_heads(lm, 1, seed=-1)


@pytest.mark.integration
@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m"])
def test_standin_ablation(name):
    from conftest import standin

    lm = standin(name)
    toks = make_sequence(lm, "repeated", 8, 0)
    clean = _logits(lm, toks)
    with ablate_heads(lm, [(lm.n_layers // 2, 0)], mode="zero"):
        abl = _logits(lm, toks)
    assert not torch.allclose(abl, clean)
    assert torch.equal(_logits(lm, toks), clean)
