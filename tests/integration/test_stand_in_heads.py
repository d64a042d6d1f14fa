"""Heads of the offline stand-ins: attention patterns are distributions, and ablating a head changes
the logits and is undone afterwards."""

import pytest
import torch

from conftest import standin
from residual_response.ablation import ablate_heads
from residual_response.attention import attention_patterns
from residual_response.sequences import make_sequence


def _logits(lm, toks):
    with torch.no_grad():
        return lm.model(input_ids=toks.unsqueeze(0).to(lm.device)).logits[0]


@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m"])
def test_standin_ablation(name):
    lm = standin(name)
    toks = make_sequence(lm, "repeated", 8, 0)
    clean = _logits(lm, toks)
    with ablate_heads(lm, [(lm.n_layers // 2, 0)], mode="zero"):
        abl = _logits(lm, toks)
    assert not torch.allclose(abl, clean)
    assert torch.equal(_logits(lm, toks), clean)


@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m"])
def test_standin_patterns(name):
    lm = standin(name)
    toks = make_sequence(lm, "repeated", 10, 0)
    pat = attention_patterns(lm, toks)
    assert pat.shape == (lm.n_layers, lm.n_heads, 21, 21)
    assert torch.allclose(pat.sum(-1), torch.ones(pat.shape[:-1]), atol=1e-4)
