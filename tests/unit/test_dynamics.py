"""Measurements across the toy model's training: the phase change, checkpoint choice, rise and onset steps, the sweep."""

import numpy as np
import pytest

from residual_response import dynamics
from residual_response.models import toy
from residual_response.dynamics import phase_change_step
from residual_response.models.toy import ToyRecipe, train_toy

TINY = ToyRecipe(vocab_size=16, n_positions=24, d_model=8, n_layers=2, n_heads=2, steps=6, checkpoint_every=3,
                 batch_size=4, train_len=16, t_min=2, t_max=6, eval_T=5, eval_n=4, warmup=2)


def test_phase_change_step():
    log = {"checkpoints": {"step": [0, 10, 20, 30], "first_copy_loss": [4.0, 4.0, 4.0, 4.0],
                           "second_copy_loss": [4.0, 3.8, 2.0, 0.5]}}
    assert phase_change_step(log) == 20
    log["checkpoints"]["second_copy_loss"] = [4.0, 4.0, 3.9, 3.8]
    assert phase_change_step(log) is None


def test_checkpoint_subsample():
    steps = list(range(0, 2001, 50))
    got = dynamics.checkpoint_subsample(steps, 6, around=800, n_around=1)
    assert got == [0, 750, 800, 850, 1000, 2000]  # ends, the window, one evenly spaced extra
    got = dynamics.checkpoint_subsample(reversed(steps), 10, around=810, n_around=2)
    assert len(got) == 10 and got == sorted(got) and {0, 700, 750, 800, 850, 900, 2000} <= set(got)
    assert dynamics.checkpoint_subsample(steps, 2) == [0, 2000]
    assert dynamics.checkpoint_subsample(steps, 3, around=800, n_around=3) == [0, 650, 700, 750, 800, 850, 900, 950, 2000]
    assert dynamics.checkpoint_subsample([0, 10], 50, around=0, n_around=5) == [0, 10]  # never more than there are
    with pytest.raises(ValueError, match="n must be an int >= 2"):
        dynamics.checkpoint_subsample(steps, 1)
    with pytest.raises(ValueError, match="n_around"):
        dynamics.checkpoint_subsample(steps, 4, around=5, n_around=-1)


def _log(adv, every=50):
    steps = [every * i for i in range(len(adv))]
    return {"checkpoints": {"step": steps, "first_copy_loss": [4.0] * len(adv),
                            "second_copy_loss": [4.0 - a for a in adv]}}


def test_loss_drop_and_measurement_steps():
    adv = [0.0] * 6 + [0.5, 1.0, 2.0, 3.0, 3.7, 4.0] + [4.0] * 10  # steps 0..1050, every 50
    log = _log(adv)
    assert dynamics.loss_drop(log) == (300, 500)  # 10 % (0.4) first passed at 300, 90 % (3.6) at 500
    steps = dynamics.measurement_steps(log, 4)
    assert set(range(250, 551, 50)) <= set(steps)  # every checkpoint across the drop, one beyond each end
    assert steps[0] == 0 and steps[-1] == 1050 and steps == sorted(steps)
    assert len(steps) == 7 + 4
    # more checkpoints outside change nothing inside the window
    wide = dynamics.measurement_steps(log, 10)
    assert [s for s in wide if 250 <= s <= 550] == [s for s in steps if 250 <= s <= 550]
    with pytest.raises(ValueError, match="n_outside"):
        dynamics.measurement_steps(log, 1)
    with pytest.raises(ValueError, match="no phase change"):
        dynamics.loss_drop(_log([0.0, 0.1, 0.2]))


def test_onset_step():
    steps = [0, 10, 20, 30, 40, 50]
    assert dynamics.onset_step(steps, [0.8, 1.2, 0.9, 1.1, 1.5, 2.0]) == 30  # 10 clears 1 once, then falls back
    assert dynamics.onset_step(steps, [0.8, 0.9, 0.9, 0.9, 0.95, 0.99]) is None
    assert dynamics.onset_step(steps, [1.1] * 6) == 0
    assert dynamics.onset_step(steps, [0.5, 1.5, 2.5, 2.0, 1.0, 3.0], level=2.0) == 50
    with pytest.raises(ValueError, match="equal length"):
        dynamics.onset_step(steps, [1.0])


def test_rise_step():
    steps = [0, 10, 20, 30, 40]
    assert dynamics.rise_step(steps, [1.0, 1.0, 2.0, 3.0, 3.0]) == 20  # half of the rise 1 -> 3 is 2
    assert dynamics.rise_step(steps, [1.0, 1.0, 2.0, 3.0, 3.0], fraction=0.9) == 30
    assert dynamics.rise_step(steps, [3.0, 2.0, 1.0, 1.0, 1.0]) is None  # falls: no rise
    assert dynamics.rise_step(steps, [1.0, 1.1, 1.0, 1.1, 1.1], min_rise=0.5) is None
    with pytest.raises(ValueError, match="ascending"):
        dynamics.rise_step([0, 0, 1], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="finite"):
        dynamics.rise_step([0, 1], [1.0, float("nan")])
    with pytest.raises(ValueError, match="equal length"):
        dynamics.rise_step([0, 1], [1.0])
    # the phase change step is the rise step of the second-copy advantage
    log = {"checkpoints": {"step": [0, 10, 20, 30], "first_copy_loss": [4.0, 4.0, 4.0, 4.0],
                           "second_copy_loss": [4.0, 3.8, 2.0, 0.5]}}
    adv = [f - s for f, s in zip(log["checkpoints"]["first_copy_loss"], log["checkpoints"]["second_copy_loss"])]
    assert dynamics.rise_step(log["checkpoints"]["step"], adv) == phase_change_step(log)


def test_induction_through_training(tmp_path, monkeypatch):
    monkeypatch.setenv("RESIDUAL_RESPONSE_CACHE", str(tmp_path))
    monkeypatch.setattr(toy, "DEFAULT_RECIPE", TINY)
    train_toy(toy.toy_dir(), seed=0, recipe=TINY, progress=False)
    out = dynamics.induction_through_training([0, 6], T=4, seeds=2, matrices_at=[6], n_boot=50)
    assert out["read_layers"] == [0, 1, 2] and out["sources"] == [1, 2, 3, 4]
    assert [(r["step"], r["layer"]) for r in out["rows"]] == [(0, 1), (0, 2), (6, 1), (6, 2)]
    for r in out["rows"]:
        assert 0 <= r["attention_control"] <= 1 and 0 < r["attention"] <= 1 and 0 <= r["previous_token"] <= 1
        assert r["response_lo"] <= r["response"] <= r["response_hi"] and r["response"] > 0
        assert r["attention_head"] in range(2) and r["previous_token_head"] in range(2)
        for key in ("attention", "attention_control", "previous_token"):  # the named head's interval over the seeds
            assert r[f"{key}_lo"] <= r[key] + 1e-12 and r[key] <= r[f"{key}_hi"] + 1e-12, (key, r)
    assert sorted(out["per_seed"]) == [0, 6]
    for per in out["per_seed"].values():  # what the intervals through training resample
        assert per["attention"].shape == per["attention_control"].shape == per["previous_token"].shape == (2, 2, 2)
        assert len(per["stripes"]) == 4 and all(a.shape[:2] == (2, 3) for a in per["stripes"])
    np.testing.assert_allclose(out["per_seed"][6]["attention"].mean(axis=0)[1].max(), out["rows"][3]["attention"],
                               rtol=1e-6)
    assert list(out["matrices"]) == [6]
    assert out["matrices"][6]["repeated"].shape == (3, 4, 9) == out["matrices"][6]["twin"].shape
    # the rows agree with the scores they are made of
    from residual_response.attention import induction_attention_scores
    from residual_response.induction import induction_scores

    lm = toy.load_toy_model(step=6)
    att = induction_attention_scores(lm, T=4, seeds=range(2), n_boot=50).repeated.mean
    res = induction_scores(lm, T=4, seeds=2, n_boot=50)
    row = out["rows"][3]
    assert row["attention"] == pytest.approx(float(att[1].max()))
    assert row["response"] == pytest.approx(res.score[2])
    with pytest.raises(ValueError, match="not among the measured steps"):
        dynamics.induction_through_training([0], T=4, seeds=1, matrices_at=[6])
    with pytest.raises(ValueError, match="seeds must be an int >= 1"):
        dynamics.induction_through_training([0], T=4, seeds=0)


def test_eval_copy_losses_recompute_the_log(tmp_path, monkeypatch):
    monkeypatch.setenv("RESIDUAL_RESPONSE_CACHE", str(tmp_path))
    monkeypatch.setattr(toy, "DEFAULT_RECIPE", TINY)
    log = train_toy(toy.toy_dir(), seed=0, recipe=TINY, progress=False)
    steps = log["checkpoints"]["step"]
    first, second = dynamics.eval_copy_losses(steps, log)
    assert first.shape == second.shape == (len(steps), TINY.eval_n)
    # the log's losses are the means over the same held-out sequences (float32 rounding apart)
    np.testing.assert_allclose(first.mean(axis=1), log["checkpoints"]["first_copy_loss"], rtol=1e-4)
    np.testing.assert_allclose(second.mean(axis=1), log["checkpoints"]["second_copy_loss"], rtol=1e-4)
    with pytest.raises(ValueError, match="no toy checkpoint at step"):
        dynamics.eval_copy_losses([1], log)
