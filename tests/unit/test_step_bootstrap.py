"""Intervals of scores through training and of the steps at which they move (residual_response.step_bootstrap)."""

import numpy as np
import pytest

from residual_response import dynamics
from residual_response.stats import bootstrap_ratio, ratio_of_means
from residual_response.step_bootstrap import (StepInterval, advantage_steps, level_step_interval,
                                              response_replicates, step_difference, step_interval, top_head_replicates)

STEPS = [0, 100, 200, 300, 400, 500]


def _curves(rise_at: int, n_seeds: int = 6, noise: float = 0.02, seed: int = 0) -> np.ndarray:
    """``[n_steps, S, H=2]`` per-seed scores: head 1 jumps from 0.1 to 0.6 at step index ``rise_at``; head 0 flat at 0.2."""
    rng = np.random.default_rng(seed)
    level = np.where(np.arange(len(STEPS)) >= rise_at, 0.6, 0.1)  # [n_steps]
    out = np.empty((len(STEPS), n_seeds, 2))
    out[:, :, 0] = 0.2 + noise * rng.standard_normal((len(STEPS), n_seeds))
    out[:, :, 1] = level[:, None] + noise * rng.standard_normal((len(STEPS), n_seeds))
    return out


def test_top_head_replicates_take_the_largest_head_again_in_every_replicate():
    a = _curves(3)
    point, boots = top_head_replicates(a, n_boot=200, seed=1)
    assert point.shape == (6,) and boots.shape == (200, 6)
    np.testing.assert_allclose(point, a.mean(axis=1).max(axis=-1), rtol=1e-12)
    # before the jump head 0 (0.2) is the largest, after it head 1 (0.6): the replicates follow
    assert np.all(np.abs(boots[:, :3] - 0.2) < 0.05) and np.all(np.abs(boots[:, 3:] - 0.6) < 0.05)
    # one seed resampled: every replicate is the curve itself
    _, one = top_head_replicates(a[:, :1], n_boot=20)
    np.testing.assert_allclose(one, np.broadcast_to(a[:, 0].max(axis=-1), (20, 6)), rtol=1e-12)
    with pytest.raises(ValueError, match=r"\[n_steps, n_seeds, n_heads\]"):
        top_head_replicates(a[0])
    with pytest.raises(ValueError, match="finite"):
        top_head_replicates(np.full((2, 2, 2), np.nan))
    with pytest.raises(ValueError, match="n_boot"):
        top_head_replicates(a, n_boot=0)


def test_step_interval_brackets_a_sharp_rise_and_opens_where_replicates_do_not_rise():
    a = _curves(3)
    point, boots = top_head_replicates(a, n_boot=300)
    si = step_interval(STEPS, point, boots)
    assert si == StepInterval(300, 300, 300, 0, 300)  # a clean jump: every replicate rises at the same step
    # a flat noisy curve: the measured curve may "rise" somewhere, but not in most replicates
    flat = np.full((6, 8, 1), 0.3) + 0.05 * np.random.default_rng(3).standard_normal((6, 8, 1))
    p, b = top_head_replicates(flat, n_boot=300)
    si = step_interval(STEPS, p, b)
    assert si.n_none > 0.025 * si.n_boot and si.hi is None  # the upper end stays open
    # log=True reads the rise in factors: 1 -> 2 -> 100 is half way (in factors) at the middle step
    curve = np.array([1.0, 2.0, 10.0, 100.0, 100.0, 100.0])
    assert step_interval(STEPS, curve, curve[None], log=True).step == 200
    assert step_interval(STEPS, curve, curve[None]).step == 300  # in units: half of 99 is reached at 100 only
    with pytest.raises(ValueError, match=r"point \[n_steps\] and boots \[n_boot, n_steps\]"):
        step_interval(STEPS, curve[:3], curve[None])
    with pytest.raises(ValueError, match="confidence"):
        step_interval(STEPS, curve, curve[None], confidence=1.5)


def test_step_difference_is_paired():
    att = _curves(2, seed=4)
    resp = _curves(4, seed=5)
    pa, ba = top_head_replicates(att, n_boot=200)
    pr, br = top_head_replicates(resp, n_boot=200)
    d, lo, hi, later, earlier = step_difference(STEPS, (pa, ba, False), (pr, br, False))
    assert (d, lo, hi, later, earlier) == (200, 200.0, 200.0, 1.0, 0.0)
    d, lo, hi, later, earlier = step_difference(STEPS, (pr, br, False), (pa, ba, False))
    assert d == -200 and hi == -200.0 and later == 0.0 and earlier == 1.0
    with pytest.raises(ValueError, match="of one shape"):
        step_difference(STEPS, (pa, ba, False), (pr, br[:10], False))


def test_ratio_of_means():
    rep, ctrl = np.array([0.5, 0.6, 0.55, 0.45]), np.array([0.05, 0.06, 0.05, 0.04])
    r, lo, hi = ratio_of_means(rep, ctrl, n_boot=500)
    assert r == pytest.approx(rep.mean() / ctrl.mean(), rel=1e-12) and lo <= r <= hi and lo > 5
    r, lo, hi = ratio_of_means(rep[:1], ctrl[:1])
    assert lo == pytest.approx(r, rel=1e-12) and hi == pytest.approx(r, rel=1e-12)  # one seed: no spread
    with pytest.raises(ValueError, match="one length"):
        ratio_of_means(rep, ctrl[:2])


def test_response_replicates_match_the_score_intervals():
    rng = np.random.default_rng(0)
    parts = [tuple(rng.uniform(0.5, 1.5, (3, 2, 5)) for _ in range(4)) for _ in range(3)]  # 3 steps, twin design
    boots = response_replicates(parts, 1, n_boot=400, seed=7)
    assert boots.shape == (400, 3)
    for j, p in enumerate(parts):  # the same replicates as the score's own interval (same seed, same draws)
        _, lo, hi, own = bootstrap_ratio(p[0], p[1], twin=p[2:], n_boot=400, seed=7, return_boots=True)
        np.testing.assert_allclose(boots[:, j], own[:, 1], rtol=1e-12)
    with pytest.raises(ValueError, match="one shape"):
        response_replicates([parts[0], tuple(a[:, :, :4] for a in parts[1])], 1)
    with pytest.raises(ValueError, match="stream_index"):
        response_replicates(parts, 2)
    with pytest.raises(ValueError, match="empty"):
        response_replicates([], 0)


def test_level_step_interval():
    curve = np.array([0.9, 1.1, 0.95, 1.2, 1.5, 2.5])
    si = level_step_interval(STEPS, curve, curve[None], 1.0)
    assert si == StepInterval(300, 300, 300, 0, 1)  # stays above 1 from 300 (100 dips back below)
    assert level_step_interval(STEPS, curve, curve[None], 1.0, stay=False).step == 100
    assert level_step_interval(STEPS, curve, curve[None], 2.0, stay=False).step == 500
    assert dynamics.onset_step(STEPS, curve) == si.step
    # replicates that never get above the level open the upper end
    boots = np.stack([curve] * 90 + [np.full(6, 0.5)] * 10)
    si = level_step_interval(STEPS, curve, boots, 1.0)
    assert si.lo == 300 and si.hi is None and si.n_none == 10
    with pytest.raises(ValueError, match="level"):
        level_step_interval(STEPS, curve, curve[None], float("nan"))
    with pytest.raises(ValueError, match=r"point \[n_steps\]"):
        level_step_interval(STEPS, curve[:2], curve[None], 1.0)


def test_advantage_steps_follow_the_log_rules():
    n = 30
    rng = np.random.default_rng(2)
    first = 4.0 + 0.05 * rng.standard_normal((6, n))
    second = np.array([4.0, 4.0, 3.0, 1.0, 0.5, 0.5])[:, None] + 0.05 * rng.standard_normal((6, n))
    out = advantage_steps(STEPS, first, second, n_boot=300)
    log = {"checkpoints": {"step": STEPS, "first_copy_loss": list(first.mean(axis=1)),
                           "second_copy_loss": list(second.mean(axis=1))}}
    assert out["phase"].step == dynamics.phase_change_step(log) == 300
    assert (out["loss_lo"].step, out["loss_hi"].step) == dynamics.loss_drop(log)
    for si in out.values():
        assert si.lo <= si.step <= si.hi and si.n_boot == 300
    with pytest.raises(ValueError, match=r"\[n_steps=6, n_sequences\]"):
        advantage_steps(STEPS, first, second[:, :3])
    with pytest.raises(ValueError, match="finite"):
        advantage_steps(STEPS, first, np.full_like(second, np.inf))
