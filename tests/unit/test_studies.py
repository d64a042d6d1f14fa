"""What the pages run per model (residual_response.pages.studies), on tiny random models and on
stand-in results whose answer is known."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from residual_response.induction import Rise, induction_scores
from residual_response.models import build_random_model
from residual_response.pages import studies
from residual_response.pages.tables import ci_text as tables_ci


def test_random_init_names():
    assert studies.is_random_init("random-llama") and not studies.is_random_init("smollm2-135m")


def test_negative_controls_score_every_model_with_the_baseline_of_its_repeats():
    lm = build_random_model("llama", seed=0)
    res = induction_scores(lm, 4, 2, n_boot=50)
    controls = studies.negative_controls({"random-llama": lm}, {"random-llama": res}, control_seeds=1, n_boot=50)
    assert set(controls.runs) == {("random-llama", "shuffled copy"), ("random-llama", "random sequence"),
                                  ("random-llama", "repeated, random init")}
    assert controls.runs[("random-llama", "repeated, random init")] is res
    assert controls.n_in_band == 3 and len(controls.frame) == 3 * 4  # three runs, four read streams after l0
    assert controls.frame.in_band.all()  # a random model's shuffled copy is in the band too
    band = controls.band(bins=2)
    assert band.band_lo.min() == pytest.approx(controls.frame.score.min())
    assert controls.emerged() == [k for k, r in controls.runs.items() if r.emergence_layer is not None]


def test_a_trained_models_shuffled_copy_is_out_of_the_band():
    frame = pd.DataFrame({"model": ["t", "t", "r"], "control": ["shuffled copy", "random sequence", "shuffled copy"],
                          "rel_depth": [0.5, 0.5, 0.5], "score": [3.0, 1.0, 1.1],
                          "in_band": [studies.NegativeControls.in_band(k) for k in
                                      [("t", "shuffled copy"), ("t", "random sequence"), ("random-r", "shuffled copy")]]})
    controls = studies.NegativeControls(runs={}, frame=frame)
    assert frame.in_band.tolist() == [False, True, True]
    assert controls.shuffled_range().loc["t"].tolist() == [3.0, 3.0]


def _attention():
    """Attention on the stripe of a 4-block, 2-head model: on repeats (2, 0) 0.9, (3, 1) 0.5, (1, 1) 0.4
    and 0.1 elsewhere; on random sequences 0.1 everywhere but (1, 1), 0.3. Induction heads (ratio
    at least 2): (2, 0) and (3, 1), not (1, 1) (ratio 1.33)."""
    from residual_response.attention import InductionAttention
    from residual_response.stats import BootstrapMean

    rep, base = torch.full((4, 2), 0.1, dtype=torch.float64), torch.full((4, 2), 0.1, dtype=torch.float64)
    rep[2, 0], rep[3, 1], rep[1, 1], base[1, 1] = 0.9, 0.5, 0.4, 0.3

    def bm(x):
        return BootstrapMean(mean=x, lo=x, hi=x, per_seed=x[None])

    return InductionAttention(model="m", T=4, seeds=[0], stripe="induction", control="random", repeated=bm(rep),
                              baseline=bm(base), ratio=rep / base)


def _check(rise):
    base = SimpleNamespace(rise=rise)
    return studies.CrossCheck(model="m", n_layers=4, n_heads=2, l0=0, losses=None, attention=_attention(),
                              attribution=None, base=base, study=SimpleNamespace(results={"none": base}), null=None,
                              agreement=None, heads={"att_top": [(2, 0, 0.9), (3, 1, 0.5)]}, seconds=0.0)


def test_rise_blocks_turn_streams_into_blocks():
    rise = Rise(emerged=True, stream=3, stream_ci=(3, 3), start=2, end=4, width=2, width_ci=(2, 2), bottom=1, top=4,
                factor=5.0, factor_ci=(3.0, 7.0))
    rb = _check(rise).rise_blocks()
    # streams 2..4 are written by blocks 1..3; the half-way stream 3 by block 2
    assert rb == {"half": 2, "blocks": [1, 2, 3], "factor": 5.0, "factor_ci": (3.0, 7.0), "att_blocks": [2, 3],
                  "holds": True, "gap": 0, "outside": [], "from_one": None}  # a Rise made without the rise from 1
    rb = _check(dataclasses.replace(rise, from_one_factor=4.0, from_one_ci=(2.5, 6.0))).rise_blocks()
    assert rb["from_one"] == (4.0, (2.5, 6.0))
    late = Rise(emerged=True, stream=2, stream_ci=(2, 2), start=1, end=2, width=1, width_ci=(1, 1), bottom=0, top=2,
                factor=5.0, factor_ci=(3.0, 7.0))
    rb = _check(late).rise_blocks()  # the rise is written by blocks 0..1; the heads sit in 2 and 3
    assert rb["half"] == 1 and rb["gap"] == 1 and rb["outside"] == [2, 3] and not rb["holds"]
    flat = Rise(emerged=False, stream=None, stream_ci=None, start=None, end=None, width=None, width_ci=None, bottom=1,
                top=2, factor=1.1, factor_ci=(0.9, 1.3))
    assert _check(flat).rise_blocks()["blocks"] == [] and _check(None).rise_blocks()["half"] is None


def test_cross_check_runs_every_measurement_of_one_model():
    lm = build_random_model("gpt2", seed=0)
    c = studies.cross_check(lm, T=4, seeds=2, att_seeds=2, loss_seeds=2, eps=1e-2, l0=0, k=1, n_random=1, n_boot=30)
    shared = set(c.study.heads["top"]) & set(c.study.heads["attention"])
    assert c.model == "random-gpt2" and c.l0 == 0
    assert set(c.study.results) == {"none", "top", "attention", "random-0"} | ({"outside"} if shared else set())
    assert c.study.heads["top"] == [c.attribution.ranking(1)[0][:2]]  # the top head by response is the one ablated
    assert c.heads["resp_top"][0][:2] == c.heads["resp_best"] and len(c.heads["att_top"]) == 5
    q = c.quoted()
    assert q["SL"] == c.base.score[-1] and q["loss1"] == float(c.losses.first.mean)
    e = c.effects()
    assert set(e) - {"outside"} == {"base", "base_lo", "base_hi", "top_score", "top_score_lo", "top_score_hi", "top",
                                    "attention", "random"} and np.isfinite(e["top"]["drop"])
    assert e["base_lo"] <= e["base"] <= e["base_hi"] and e["top_score_lo"] <= e["top_score"] <= e["top_score_hi"]
    assert q["SL_text"] == tables_ci(e["base"], e["base_lo"], e["base_hi"])
    # the tables the page shows: one row per top attention head, each with its intervals; S_L with its own
    from residual_response.pages.tables import cross_check_tables
    tbl = cross_check_tables({"m": c}, {"m": e}, {"m": c.rank_tests()}, setting="s", loss_setting="l", att_setting="a",
                             ablation_setting="b")
    att = tbl["attention"]
    assert len(att) == 5 and list(att["head (block, head)"])[0] == f"({c.heads['att_top'][0][0]}, {c.heads['att_top'][0][1]})"
    assert all("[" in v for v in att["attention [95 % CI]"]) and att["setting"].tolist()[1:] == [""] * 4
    assert att["Spearman over layers [95 % CI]"][0].startswith(("n/a", "-", "0", "1"))
    assert tbl["ablation_loss"]["S_L unablated [95 % CI]"][0] == q["SL_text"]
    # a named set's loss change beside the draws': the difference lies inside its own interval
    t = e["top"]
    assert t["vs_random_lo"] <= t["vs_random"] <= t["vs_random_hi"] and t["n_draws"] == 1 and t["draws_above"] in (0, 1)
    assert "vs_random" not in e["random"]
    # a positive control that a draw matches: the sentence reads the real attention result and heads
    from residual_response.crosscheck import RankTest
    from residual_response.pages import tables
    key = c.study.random_keys[0]
    weak = RankTest(which="attention", drop=0.1, random_drops=[0.2], p_value=1.0, random_low=0.2, random_high=0.2,
                    difference=-0.1, difference_low=-0.2, difference_high=0.0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tables.ablation_text, "rank_verdict", lambda t: "not distinguishable")
        text = tables.control_power_text({"m": c}, {"m": {"attention": weak}})
    b, h = c.study.heads[key][0]
    assert text.startswith("In **m** the positive control itself is not distinguishable") and f"({b}, {h}) (attention rank" in text


class _Ranked:
    """A head attribution with given scores ``[L, H]`` (what :func:`studies.outside_set` reads)."""

    def __init__(self, score):
        self.score = np.asarray(score, dtype=float)

    def ranking(self, k=None):
        flat = sorted(((b, h, float(self.score[b, h])) for b in range(self.score.shape[0])
                       for h in range(self.score.shape[1])), key=lambda x: -x[2])
        return flat if k is None else flat[:k]


def test_outside_set_is_the_response_ranking_without_the_attention_set():
    attribution = _Ranked([[9, 8, 1], [7, 2, 3], [0, 0.5, 0.1]])  # ranking: (0,0), (0,1), (1,0), (1,2), (1,1) ...
    top = [(0, 0), (0, 1)]
    assert studies.outside_set(attribution, top, [(0, 1), (2, 2)]) == [(0, 0), (1, 0)]
    assert studies.outside_set(attribution, top, [(2, 0), (2, 2)]) is None  # no shared head: top is its own outside
    # 3 heads, 1 shared: the sets leave too few heads for a random draw of as many
    assert studies.outside_set(_Ranked([[3, 2, 1]]), [(0, 0)], [(0, 0)]) is None


def test_first_stream_null_reads_the_stream_after_each_kick_of_a_same_size_random_network():
    lm = build_random_model("llama", seed=1)
    rows = studies.first_stream_null(lm, [0, 2, lm.n_layers], T=4, seeds=2, eps=1e-2)
    assert sorted(rows) == [0, 2]  # l0 = L has no stream after it
    for l0, r in rows.items():
        assert list(r.read_streams) == [l0 + 1] and r.l0 == l0 and "random init" in r.model
        score, lo, hi = (np.asarray(x, dtype=float) for x in (r.score, r.ci_low, r.ci_high))
        assert np.isfinite(score).all() and (lo <= score).all() and (score <= hi).all()


def test_phase_contrasts_divide_the_lags_and_resample_the_sequences():
    """The point is the ratio of the seed-mean responses at lags T-1 (and T) and T-2, the interval
    resamples the seeds: equal seeds give a zero-width interval, unequal ones an interval that holds it."""
    T, N, reads, sources = 5, 11, [0, 1, 2], list(range(1, 6))
    rng = np.random.default_rng(0)

    def matrices(scales):
        out = []
        for c in scales:
            m = np.zeros((len(reads), T, N))
            for j, s in enumerate(sources):
                for t in range(s + 1, N):
                    m[:, j, t] = {T - 2: 1.0, T - 1: 4.0 * c, T: 2.0}.get(t - s, 0.1 + rng.random() * 0.01)
            out.append(m)
        return np.stack(out)

    def pc(seed_mats):
        trace = {"read_layers": reads, "sources": sources, "seed_matrices": {1: {"repeated": seed_mats}, 2: {"repeated": seed_mats}},
                 "matrices": {1: {"repeated": seed_mats.mean(axis=0)}}}
        return SimpleNamespace(trace=trace, T=T, before=1, last=2)

    same = studies.phase_contrasts(pc(matrices([1.0, 1.0, 1.0])), n_boot=200)
    assert same["contrast_last"] == pytest.approx(4.0, rel=1e-12) and same["dup_contrast_before"] == pytest.approx(2.0)
    assert same["contrast_last_lo"] == pytest.approx(4.0) and same["contrast_last_hi"] == pytest.approx(4.0)
    varied = studies.phase_contrasts(pc(matrices([0.5, 1.0, 1.5])), n_boot=200)
    assert varied["contrast_last"] == pytest.approx(4.0, rel=1e-12)  # the mean of 2, 4 and 6 over the lag T-2's 1
    assert 2.0 <= varied["contrast_last_lo"] < 4.0 < varied["contrast_last_hi"] <= 6.0
    assert varied["read_last"] == 2


def test_phase_intervals_bracket_the_quoted_scores_and_steps(tmp_path, monkeypatch):
    """On a tiny toy run: every quoted score and step gets an interval that holds it, the loss's steps
    come from per-sequence losses that must give the log's means, and a mismatch stops the page."""
    from residual_response import dynamics
    from residual_response.models import toy
    from residual_response.pages.phase_intervals import phase_intervals, step_text
    from residual_response.step_bootstrap import StepInterval

    recipe = toy.ToyRecipe(vocab_size=16, n_positions=24, d_model=8, n_layers=2, n_heads=2, steps=6, checkpoint_every=3,
                           batch_size=4, train_len=16, t_min=2, t_max=6, eval_T=5, eval_n=4, warmup=2)
    monkeypatch.setenv("RESIDUAL_RESPONSE_CACHE", str(tmp_path))
    monkeypatch.setattr(toy, "DEFAULT_RECIPE", recipe)
    log = toy.train_toy(toy.toy_dir(), seed=0, recipe=recipe, progress=False)
    steps = [0, 3, 6]
    trace = dynamics.induction_through_training(steps, T=4, seeds=3, n_boot=50)
    # per-sequence losses with a clear drop at step 3 (the tiny run has none), and a log that agrees with them
    first = np.full((3, 8), 2.7) + np.linspace(0, 0.1, 8)
    second = np.array([2.7, 1.0, 0.2])[:, None] + np.linspace(0, 0.1, 8)
    log = {**log, "checkpoints": {"step": steps, "first_copy_loss": list(first.mean(axis=1)),
                                  "second_copy_loss": list(second.mean(axis=1))}}
    rows = pd.DataFrame(trace["rows"])
    top = rows[rows.layer == 2].set_index("step")
    loss = pd.DataFrame({"step": steps, "first copy": first.mean(axis=1), "second copy": second.mean(axis=1)})
    pc = studies.PhaseChange(log=log, T=4, seeds=3, eps=0.01, phase=3, loss_lo=3, loss_hi=6, used=steps, before=0, last=6,
                             gap=3, trace=trace, rows=rows, top=top, loss=loss, att_rise=None, resp_rise=None,
                             resp_onset=None, resp_emerge=None)
    out = phase_intervals(pc, n_boot=200, losses=(first, second))
    for name in ("0", "before", "last"):
        assert out[f"att_{name}_lo"] <= top.attention[pc.used[0] if name == "0" else getattr(pc, name)] + 1e-12
    assert out["att_ratio_last_lo"] <= out["att_ratio_last"] <= out["att_ratio_last_hi"]
    assert out["phase_text"] == "3 (every resample gives this step)" and out["n_eval"] == 8  # every sequence drops at the same step
    for name in ("att_rise", "resp_rise", "prev_rise"):
        si = StepInterval(out[name], out[f"{name}_lo"], out[f"{name}_hi"], out[f"{name}_none"], 200)
        assert out[f"{name}_text"] == step_text(si)
        if si.step is not None and si.lo is not None and si.hi is not None:
            assert si.lo <= si.step <= si.hi and {si.lo, si.hi} <= set(steps)
    assert out["att_settled_lo"] <= out["att_settled_hi"] and out["resp_peak_step_lo"] <= out["resp_peak_step_hi"]
    assert ("steps [" in out["rise_order_text"] or "every resample gives this difference" in out["rise_order_text"]
            or out["rise_gap"] is None)
    with pytest.raises(RuntimeError, match="differ from the training log"):
        phase_intervals(pc, n_boot=50, losses=(first + 0.5, second))
    with pytest.raises(RuntimeError, match="give phase = 3, the training log 6"):
        phase_intervals(dataclasses.replace(pc, phase=6), n_boot=50, losses=(first, second))
    assert step_text(StepInterval(None, None, None, 200, 200)) == "none"
    assert step_text(StepInterval(300, 200, None, 10, 200)) == "300 [200, open]"
    assert step_text(StepInterval(850, 850, 850, 0, 200)) == "850 (every resample gives this step)"


def test_layer_tables_give_every_value_its_interval(tmp_path, monkeypatch):
    from residual_response import dynamics
    from residual_response.models import toy
    from residual_response.pages.phase_intervals import layer_tables

    recipe = toy.ToyRecipe(vocab_size=16, n_positions=24, d_model=8, n_layers=2, n_heads=2, steps=3, checkpoint_every=3,
                           batch_size=4, train_len=16, t_min=2, t_max=6, eval_T=5, eval_n=4, warmup=2)
    monkeypatch.setenv("RESIDUAL_RESPONSE_CACHE", str(tmp_path))
    monkeypatch.setattr(toy, "DEFAULT_RECIPE", recipe)
    toy.train_toy(toy.toy_dir(), seed=0, recipe=recipe, progress=False)
    trace = dynamics.induction_through_training([0, 3], T=4, seeds=2, n_boot=50)
    pc = SimpleNamespace(rows=pd.DataFrame(trace["rows"]), trace=trace)
    resp, att = layer_tables(pc, n_boot=50)
    assert list(resp.columns) == ["step", "S, stream 1", "S, stream 2"] and resp.step.tolist() == [0, 3]
    assert list(att.columns) == ["step", "attention, block 0", "÷ random, block 0", "attention, block 1", "÷ random, block 1"]
    row = pc.rows.iloc[1]  # step 0, stream 2
    assert resp["S, stream 2"][0] == tables_ci(row.response, row.response_lo, row.response_hi)
    assert all(v.count("[") == 1 for v in att.drop(columns="step").to_numpy().ravel())
