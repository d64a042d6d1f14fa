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
    # a list of 1-D sequences of different lengths: the mean pools the positions of all of them
    other = make_sequence(lm, "random", 3, 4)
    skip = 0 if lm.bos_token_id is None else 1  # head_means leaves the BOS position out
    n1, n2 = len(toks) - skip, len(other) - skip
    pooled = (head_means(lm, toks) * n1 + head_means(lm, other) * n2) / (n1 + n2)
    # float32 sums of a few dozen positions in another order: ~1e-6 relative; 1e-5 leaves room
    torch.testing.assert_close(head_means(lm, [toks, other]), pooled, rtol=1e-5, atol=1e-6)
    with ablate_heads(lm, [(0, 0)], mode="mean", reference_tokens=[toks, other]):
        c = _logits(lm, toks)
    with ablate_heads(lm, [(0, 0)], mode="mean", means=pooled):
        d = _logits(lm, toks)
    torch.testing.assert_close(c, d, rtol=1e-4, atol=1e-5)


def _slice(proj, h, dh):
    """Head ``h``'s columns of the projection weight (``Linear``: ``[out, in]``; GPT-2 ``Conv1D``: ``[in, out]``)."""
    w = proj.weight
    return w[:, h * dh:(h + 1) * dh] if isinstance(proj, torch.nn.Linear) else w[h * dh:(h + 1) * dh, :]


def test_zero_ablation_equals_removing_the_heads_projection_slice(random_lm64):
    """Zeroing ``z_h`` before the projection is the same model as zeroing ``W_O``'s columns of head ``h``.

    Both forward passes form the same products (a zero factor on either side) and the same sums;
    only a kernel's summation order may differ, so the logits agree to float64 rounding: rtol
    1e-10 (relative rounding is ~1e-16 per operation; a few blocks amplify it by far less than 1e6).
    """
    lm = random_lm64
    toks = make_sequence(lm, "random", 6, 5)
    clean = _logits(lm, toks)
    block, head = 2, 1
    with ablate_heads(lm, [(block, head)], mode="zero"):
        hooked = _logits(lm, toks)
    proj = head_output_projection(lm, block)
    dh = (proj.weight.shape[1] if isinstance(proj, torch.nn.Linear) else proj.weight.shape[0]) // lm.n_heads
    saved = proj.weight.detach().clone()
    try:
        with torch.no_grad():
            _slice(proj, head, dh).zero_()
        edited = _logits(lm, toks)
    finally:
        with torch.no_grad():
            proj.weight.copy_(saved)
    assert torch.equal(_logits(lm, toks), clean)  # the weights are restored
    assert not torch.allclose(hooked, clean, rtol=1e-6)  # the head mattered, so the comparison below means something
    torch.testing.assert_close(hooked, edited, rtol=1e-10, atol=1e-10 * clean.abs().max().item())


def test_mean_ablation_over_the_batch_keeps_the_batch_mean(random_lm64):
    """With the mean taken over the same batch, the ablated head's output is that mean at every
    position, so the batch mean of the projection's input (and output: it is linear) is unchanged,
    while the sequence-specific part is gone and the logits change.

    Tolerance: float64 means over ~20 positions, rtol/atol 1e-10 of the output's scale.
    """
    lm = random_lm64
    batch = torch.stack([make_sequence(lm, "repeated", 5, 11), make_sequence(lm, "random", 5, 12)])  # [2, N]
    block, head = 1, 2
    proj = head_output_projection(lm, block)
    seen = {}

    def grab(module, args, output):  # forward hooks see the input as the ablation's pre-hook left it
        seen.setdefault("z", []).append(args[0].detach().clone())  # [B, N, H * d_head]
        seen.setdefault("out", []).append(output.detach().clone())  # [B, N, d]

    def logits():
        with torch.no_grad():
            return lm.model(input_ids=batch.to(lm.device)).logits

    handle = proj.register_forward_hook(grab)
    try:
        clean = logits()
        with ablate_heads(lm, [(block, head)], mode="mean", reference_tokens=batch):
            ablated = logits()
    finally:
        handle.remove()
    skip = 0 if lm.bos_token_id is None else 1  # the mean leaves BOS out
    # first call: the clean pass; last: the ablated one (head_means runs the batch in between)
    z_clean, z_abl = (seen["z"][i][:, skip:] for i in (0, -1))
    o_clean, o_abl = (seen["out"][i][:, skip:] for i in (0, -1))
    dh = z_clean.shape[-1] // lm.n_heads
    part = slice(head * dh, (head + 1) * dh)
    mean_h = z_clean[..., part].mean(dim=(0, 1))  # [d_head]
    tol = dict(rtol=1e-10, atol=1e-10 * z_clean.abs().max().item())
    torch.testing.assert_close(z_abl[..., part], mean_h.expand_as(z_abl[..., part]), **tol)
    torch.testing.assert_close(z_abl.mean(dim=(0, 1)), z_clean.mean(dim=(0, 1)), **tol)
    torch.testing.assert_close(o_abl.mean(dim=(0, 1)), o_clean.mean(dim=(0, 1)), rtol=1e-10,
                               atol=1e-10 * o_clean.abs().max().item())
    assert not torch.allclose(z_abl[..., part], z_clean[..., part])  # the head did vary along the batch
    assert not torch.allclose(ablated, clean)


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
