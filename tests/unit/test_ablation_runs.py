"""Ablation conditions run from their first ablated block equal the same conditions run whole.

Tolerance: the shared and the whole runs do the same operations on the same inputs, so they agree
to float rounding; the comparisons allow a relative 1e-5 (float32 models) and an absolute 1e-9
where a value is near zero.
"""

import numpy as np
import pytest
import torch

from residual_response.ablation import ablate_heads, head_means
from residual_response.ablation_runs import ablated_losses, ablated_scores, first_block
from residual_response.behaviour import repeat_loss
from residual_response.engine.variants import run_response_variants
from residual_response.induction import InductionSetting, induction_scores, sequence_units
from residual_response.sequences import induction_layout

RTOL, ATOL = 1e-5, 1e-9
#: heads starting in block 0 (runs whole), 1, 2 and 3 (the last block), and no head at all
CONDITIONS = {"none": [], "zero": [(0, 1), (2, 0)], "one": [(1, 0)], "two": [(2, 1), (3, 0)], "last": [(3, 1)]}


def _whole_scores(lm, conditions, means, **kw):
    out = {}
    for key, hs in conditions.items():
        with ablate_heads(lm, hs, means=means):
            out[key] = induction_scores(lm, n_boot=50, **kw)
    return out


@pytest.mark.parametrize("l0, reuse_prefix", [(0, True), (1, True), (0, False)])
def test_ablated_scores_equal_whole_runs(random_lm, l0, reuse_prefix):
    """Every condition's stripes and scores equal the ablated model run whole (packed and padded passes)."""
    means = head_means(random_lm)
    kw = dict(T=5, seeds=[0, 3], l0=l0, eps=1e-2, reuse_prefix=reuse_prefix)
    setting = InductionSetting.validated(random_lm, n_boot=50, **kw)
    shared = ablated_scores(random_lm, setting, CONDITIONS, means=means)
    whole = _whole_scores(random_lm, CONDITIONS, means, **kw)
    assert list(shared) == list(CONDITIONS)
    for key in CONDITIONS:
        a, b = shared[key], whole[key]
        for part in ("induction", "duplicate"):
            for name, x in getattr(a.stripes, part).items():
                np.testing.assert_allclose(x, getattr(b.stripes, part)[name], rtol=RTOL, atol=ATOL, err_msg=f"{key} {name}")
        np.testing.assert_allclose(a.score, b.score, rtol=RTOL, equal_nan=True)
        assert a.read_streams == b.read_streams and a.seeds == b.seeds and a.model == b.model
    # the ablations differ from each other: a wrong hook would make them all equal
    assert not np.allclose(shared["one"].stripes.induction["repeated"], shared["none"].stripes.induction["repeated"])


def test_variants_skip_the_blocks_before_their_start(random_lm):
    """A variant starting at block 2 runs blocks 0 and 1 only in its clean pass; one starting at 0 in every pass."""
    setting = InductionSetting.validated(random_lm, T=5, seeds=[0], eps=1e-2)
    layout = induction_layout(random_lm, 5)
    seed, _key, tokens = sequence_units(random_lm, setting)[0]
    job = setting.response_job(random_lm, tokens, list(range(layout.offset, layout.offset + 5)), seed)
    calls = {"late": 0, "early": 0}

    def counting(key):
        def ctx():
            hook = lambda *a: calls.__setitem__(key, calls[key] + 1)  # noqa: E731
            handle = random_lm.blocks[0].register_forward_pre_hook(hook)
            return _Removing(handle)
        return ctx

    out = run_response_variants(job, {"late": (2, counting("late")), "early": (0, counting("early"))})
    n_batches = out["early"].meta["n_batches"]
    assert calls == {"late": 1, "early": 1 + n_batches}
    np.testing.assert_allclose(out["late"].chi, out["early"].chi, rtol=RTOL, atol=ATOL)  # nothing changed: equal


class _Removing:
    def __init__(self, handle):
        self.handle = handle

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_ablated_losses_equal_whole_runs(random_lm):
    """Each condition's copy losses equal repeat_loss of the ablated model run whole (batches of 8 and a rest)."""
    means = head_means(random_lm)
    seeds = range(10)
    shared = ablated_losses(random_lm, 4, seeds, CONDITIONS, means=means, n_boot=50)
    for key, hs in CONDITIONS.items():
        with ablate_heads(random_lm, hs, means=means):
            whole = repeat_loss(random_lm, 4, seeds, n_boot=50)
        if not hs:  # unablated: the whole repeat_loss
            torch.testing.assert_close(shared[key].per_position, whole.per_position, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(shared[key].second.per_seed, whole.second.per_seed, rtol=RTOL, atol=ATOL)
    assert not torch.allclose(shared["one"].second.per_seed, shared["none"].second.per_seed)


def test_second_copy_loss_is_repeat_losss_second_copy(random_lm):
    """The logits kept only where the second copy is predicted give repeat_loss's second-copy loss
    (batches of 8 and a rest), to float rounding (rtol 1e-5)."""
    from residual_response.behaviour import second_copy_loss

    seeds = range(10)
    alone = second_copy_loss(random_lm, 5, seeds, n_boot=30)
    whole = repeat_loss(random_lm, 5, seeds, n_boot=30)
    torch.testing.assert_close(alone.second.per_seed, whole.second.per_seed, rtol=1e-5, atol=1e-6)
    assert alone.seeds == whole.seeds and alone.T == 5


def test_first_block():
    assert first_block([(3, 0), (1, 2)]) == 1 and first_block([]) is None


def test_variants_refuse_jvp(random_lm):
    setting = InductionSetting.validated(random_lm, T=4, seeds=[0], method="jvp")
    seed, _key, tokens = sequence_units(random_lm, setting)[0]
    job = setting.response_job(random_lm, tokens, [1, 2], seed)
    with pytest.raises(ValueError, match="finite-eps"):
        run_response_variants(job, {})


def test_repeat_loss_is_copy_losses_of_the_logits(random_lm):
    """repeat_loss takes the log-softmax once for both copies and every position; its copy losses are
    copy_losses of the model's logits and its per-position losses the cross-entropy (rtol 1e-6)."""
    from residual_response.behaviour import copy_losses
    from residual_response.sequences import make_sequence

    seeds = [0, 1, 2]
    loss = repeat_loss(random_lm, 4, seeds, n_boot=20)
    tokens = torch.stack([make_sequence(random_lm, "repeated", 4, s) for s in seeds])
    with torch.no_grad():
        logits = random_lm.model(input_ids=tokens).logits
    first, second = copy_losses(logits, tokens, induction_layout(random_lm, 4))
    torch.testing.assert_close(loss.first.per_seed.float(), first, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(loss.second.per_seed.float(), second, rtol=1e-6, atol=1e-7)
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
    torch.testing.assert_close(loss.per_position, ce, rtol=1e-5, atol=1e-6)
