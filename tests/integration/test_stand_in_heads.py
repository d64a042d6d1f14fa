"""Heads of the offline stand-ins: the attention patterns are causal distributions that show the
induction heads the book builds on, and ablating a head removes exactly that head's output and is
undone afterwards.

Measured at T = 10, seed 0: the best induction head (SmolLM2 block 18, Gemma 3 block 5, as
METHOD.md's pattern heads) puts 0.84 and 0.81 of its attention on the induction stripe of a
repeated sequence and under 0.001 on the same cells of random tokens; no head of either model
puts more than 0.1 there on random tokens. The thresholds below leave a factor of two.
"""

import pytest
import torch

from conftest import standin
from residual_response.ablation import ablate_heads, head_output_projection
from residual_response.attention import attention_patterns
from residual_response.sequences import induction_layout, make_sequence

#: the block of each stand-in's strongest attention-pattern induction head (METHOD.md)
INDUCTION_BLOCK = {"smollm2-135m": 18, "gemma3-270m": 5}


def _logits(lm, toks):
    with torch.no_grad():
        return lm.model(input_ids=toks.unsqueeze(0).to(lm.device)).logits[0]


@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m"])
def test_ablating_a_head_zeroes_exactly_its_slice_and_is_undone(name):
    lm = standin(name)
    toks = make_sequence(lm, "repeated", 8, 0)
    block, head = lm.n_layers // 2, 0
    proj = head_output_projection(lm, block)
    seen = []

    def capture(module, args, kwargs=None):
        seen.append(args[0].detach().clone())

    def run():
        hook = proj.register_forward_pre_hook(capture)  # registered last: it sees what the projection gets
        try:
            return _logits(lm, toks)
        finally:
            hook.remove()

    clean = run()
    with ablate_heads(lm, [(block, head)], mode="zero"):
        ablated = run()
    before, after = seen  # [1, N, H * head_dim] the projection's input, clean and ablated
    width = before.shape[-1] // lm.n_heads
    mine = slice(head * width, (head + 1) * width)
    assert torch.all(after[..., mine] == 0) and torch.any(before[..., mine] != 0)
    others = torch.ones(before.shape[-1], dtype=torch.bool)
    others[mine] = False
    assert torch.equal(after[..., others], before[..., others])  # the other heads' outputs are untouched
    assert not torch.allclose(ablated, clean)
    assert torch.equal(_logits(lm, toks), clean)  # undone on leaving the block


@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m"])
def test_patterns_are_causal_distributions_that_show_the_induction_heads(name):
    lm = standin(name)
    T = 10
    lay = induction_layout(lm, T)
    rep = attention_patterns(lm, make_sequence(lm, "repeated", T, 0))  # [L, H, N, N]
    rnd = attention_patterns(lm, make_sequence(lm, "random", T, 0))
    N = lay.length
    assert rep.shape == (lm.n_layers, lm.n_heads, N, N)
    assert torch.allclose(rep.sum(-1), torch.ones(rep.shape[:-1]), atol=1e-4)
    assert torch.all(rep[..., torch.triu(torch.ones(N, N, dtype=torch.bool), diagonal=1)] == 0)  # causal, exactly
    stripe_rep = rep[:, :, lay.induction_targets, lay.induction_sources].mean(-1)  # [L, H]
    stripe_rnd = rnd[:, :, lay.induction_targets, lay.induction_sources].mean(-1)
    block, head = divmod(int(stripe_rep.argmax()), lm.n_heads)
    assert block == INDUCTION_BLOCK[name] and stripe_rep[block, head] > 0.4
    assert stripe_rnd[block, head] < 0.01 and stripe_rnd.max() < 0.2  # nothing to copy: no head attends there
