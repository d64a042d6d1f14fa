"""The null of the score (residual_response.null): the study's rows are the induction scores of the
random models it builds, its summaries are checked on rows whose answer is known, and the
calibration conditions on tiny random models (no stand-ins needed)."""

import math

import numpy as np
import pytest

from residual_response import null
from residual_response.induction import InductionResult, induction_scores
from residual_response.models import build_random_model
from residual_response.null import (REQUIRED_SHARE, before_heads_calibration, coverage, coverage_of_one,
                                    emergence_calibration, neighbour_lift, neighbour_profile, no_repeat_calibration, null_study,
                                    random_like, under_baselines)


def _row(control="neighbours", score=1.0, lo=0.9, hi=1.1, layer=1, emergence=None, family="llama", init_seed=0):
    return null.NullRow(family, "small", init_seed, control, layer, 4, score, lo, hi, emergence)


def test_the_study_scores_every_read_stream_of_the_models_it_builds():
    rows = null.null_study(families=("llama", "gpt2"), sizes=("small",), init_seeds=(1,), controls=("neighbours",),
                           T=4, seeds=2, n_boot=50)
    assert [(r.family, r.layer) for r in rows] == [(f, l) for f in ("llama", "gpt2") for l in (1, 2, 3, 4)]
    direct = induction_scores(build_random_model("gpt2", seed=1, **null.SIZES["small"]), T=4, seeds=2, n_boot=50,
                              control="neighbours")
    gpt2 = [r for r in rows if r.family == "gpt2"]
    assert [r.score for r in gpt2] == direct.score[1:] and [r.ci_low for r in gpt2] == direct.ci_low[1:]
    assert all(r.n_layers == 4 and r.emergence_layer == direct.emergence_layer for r in gpt2)


def test_the_study_refuses_unknown_names_in_one_sentence():
    for kwargs, word in ((dict(families=("bert",)), "families"), (dict(sizes=("huge",)), "sizes"),
                         (dict(controls=("none",)), "controls"), (dict(controls=()), "controls")):
        with pytest.raises(ValueError, match=word):
            null.null_study(**kwargs)


def test_coverage_counts_the_intervals_that_cover_one():
    rows = [_row(score=1.0, lo=0.9, hi=1.1), _row(score=2.0, lo=1.5, hi=2.5), _row(score=0.5, lo=0.4, hi=1.0),
            _row("random", score=0.8, lo=0.7, hi=0.9)]
    cov = null.coverage(rows)
    assert list(cov) == ["neighbours", "random"]
    n = cov["neighbours"]
    assert n.covered == pytest.approx(2 / 3) and n.n == 3 and n.min == 0.5 and n.max == 2.0
    assert n.mean_log_score == pytest.approx(math.log(1.0 * 2.0 * 0.5) / 3)  # log of the geometric mean
    assert cov["random"].covered == 0.0 and cov["random"].n == 1


def test_emerged_models_and_the_spread_of_the_emergence_layer():
    rows = [_row(emergence=None), _row(emergence=3, family="gpt2", init_seed=2), _row("random", emergence=1)]
    assert null.emerged_models(rows, "neighbours") == [("gpt2", "small", 2, 3)]
    stability = [{"model": "a", "T": 8, "seeds": 4, "emergence layer": 3},
                 {"model": "a", "T": 12, "seeds": 4, "emergence layer": 5},
                 {"model": "a", "T": 12, "seeds": 2, "emergence layer": 9},  # another number of seeds: not counted
                 {"model": "b", "T": 8, "seeds": 4, "emergence layer": None},
                 {"model": "b", "T": 12, "seeds": 4, "emergence layer": 2}]
    assert null.emergence_spread(stability, 4) == {"a": (3, 5), "b": (2, 2)}  # b: where it rises (T = 12)
    assert null.emergence_spread([{"model": "c", "T": 8, "seeds": 4, "emergence layer": None}], 4) == {"c": None}


def test_emergence_stability_rescores_subsets_of_one_run():
    lm = build_random_model("llama", seed=0)
    runs = null.stability_runs({"m": lm}, [4, 300], 4, eps=1e-2)  # T = 300 does not fit the context: skipped
    assert list(runs["m"]) == [4] and runs["m"][4].stripes.matrices is not None
    rows = null.emergence_stability(runs, 4)
    assert [(r["T"], r["seeds"]) for r in rows] == [(4, 2), (4, 4)]
    full = induction_scores(lm, T=4, seeds=4)
    assert rows[-1]["emergence layer"] == full.emergence_layer and rows[-1]["L"] == 4
    assert null.emergence_stability(runs, 4, baseline="neighbours")[-1]["rise"] > 0


def _result(score, lo, hi, layer=0, emergence=None):
    n = len(score)
    return InductionResult(model="m", T=6, seeds=[0], l0=layer, eps=1e-2, method="finite", read_streams=list(range(n)),
                           score=score, ci_low=lo, ci_high=hi, duplicate_score=score, duplicate_ci_low=lo,
                           duplicate_ci_high=hi, emergence_layer=emergence)


def test_coverage_and_band_count_the_streams_after_l0():
    res = _result([np.nan, 1.1, 0.7, 3.0, 1.0], [np.nan, 0.9, 0.5, 2.0, 1.01], [np.nan, 1.3, 0.95, 4.0, 1.2])
    cov = coverage_of_one(res, "random init")
    assert cov.units == (1, 2, 3, 4) and cov.passed == 1 and cov.share == 0.25 and not cov.holds
    assert cov.baseline == "twin" and cov.model == "m"
    band = before_heads_calibration(res, first_block=2)
    assert band.units == (1, 2) and band.passed == 1  # 1.1 inside [0.8, 1.25], 0.7 below
    assert before_heads_calibration(res, first_block=0).units == () and not before_heads_calibration(res, 0).holds


def test_emergence_calibration_needs_every_T_near_the_heads():
    def run(layer):
        return _result([np.nan, 1.0], [np.nan, 1.0], [np.nan, 1.0], emergence=layer)

    ok = emergence_calibration({8: run(6), 12: run(6), 20: run(7)}, first_block=5)
    assert ok.units == (8, 12, 20) and ok.passed == 3 and ok.holds
    far = emergence_calibration({8: run(6), 12: run(9)}, first_block=5)  # unstable: no T passes
    assert far.passed == 0 and not far.holds
    missing = emergence_calibration({8: run(None), 12: run(6)}, first_block=5)
    assert missing.passed == 1 and not missing.holds  # every T must pass


def test_random_like_keeps_the_configuration_and_tokens():
    lm = build_random_model("llama", seed=5, n_layers=3)
    rnd = random_like(lm, seed=1)
    assert rnd.config.to_dict() == lm.config.to_dict() and rnd.n_layers == 3
    assert rnd.ordinary_token_ids is lm.ordinary_token_ids and "random init 1" in rnd.name
    w0, w1 = (next(m.model.parameters()) for m in (lm, rnd))
    assert not np.allclose(w0.detach().numpy(), w1.detach().numpy())
    assert np.array_equal(next(random_like(lm, 1).model.parameters()).detach().numpy(), w1.detach().numpy())


@pytest.mark.parametrize("family", ["gpt2", "gemma3"])
def test_twin_score_is_calibrated_on_random_models(family):
    """The default baseline's intervals cover 1 on a random model, on repeats and without a repeat."""
    rows = null_study(families=[family], sizes=["small"], init_seeds=[0], T=8, seeds=2, n_boot=200)
    cov = coverage(rows)["twin"]
    assert cov.n == 4 and cov.covered >= REQUIRED_SHARE, cov
    lm = build_random_model(family, seed=0)
    ref = induction_scores(lm, T=8, seeds=2, n_boot=200, keep_matrices=True)
    no_rep = no_repeat_calibration(lm, ref)
    assert no_rep.condition == "no repeat" and no_rep.units == (1, 2, 3, 4) and no_rep.holds, no_rep
    both = under_baselines(ref)
    assert both["twin"] is ref and both["neighbours"].control == "neighbours"
    prof = neighbour_profile(ref, offsets=range(-3, 4))
    assert sorted(prof) == list(range(-3, 4)) and all(v.shape == (5,) for v in prof.values())
    # offset 0 is the stripe itself, k = 2..T: source row k - 1, target T + k - 1 (BOS first)
    m = ref.stripes.matrices
    rows, tgts = np.arange(1, 8), np.arange(9, 16)
    expect = m["repeated"][:, :, rows, tgts].mean(axis=(0, 2)) / m["twin"][:, :, rows, tgts].mean(axis=(0, 2))
    np.testing.assert_allclose(prof[0][1:], expect[1:], rtol=1e-12)
    # the lift of the left neighbours over the right ones, by hand: k = 4..T-2 has all four offsets
    ks = np.arange(4, 7)
    tg = 8 + ks - 2 + 1

    def mean(kind, offsets):
        return np.mean([m[kind][:, 2, ks - 1 + o, tg] for o in offsets])

    hand = (mean("repeated", (-3, -2)) / mean("twin", (-3, -2))) / (mean("repeated", (1, 2)) / mean("twin", (1, 2)))
    lift, lo, hi = neighbour_lift(ref, 2, n_boot=200)
    assert lift == pytest.approx(hand, rel=1e-12) and lo <= lift <= hi  # tolerance: float64 rounding of a mean
    with pytest.raises(ValueError, match="not a read stream"):
        neighbour_lift(ref, 99)


def test_pooled_calibration_and_chance_misses():
    from residual_response.null import Calibration, pooled

    a = Calibration("random init", "a", "twin", (1, 2, 3, 4), 3)
    b = Calibration("random init", "b", "twin", (1, 2, 3, 4), 4)
    p = pooled([a, b], "both")
    assert p.units == (1, 2, 3, 4, 1, 2, 3, 4) and p.passed == 7 and p.model == "both"
    assert not a.holds and a.misses_plausible()  # 1 miss in 4 is chance for 95 % intervals
    many = Calibration("random init", "m", "twin", tuple(range(100)), 80)  # 20 misses in 100: not chance
    assert not many.misses_plausible() and not many.holds
    with pytest.raises(ValueError, match="one condition"):
        pooled([a, Calibration("no repeat", "c", "twin", (1,), 1)], "x")


def test_calibration_verdict_names_each_missed_condition_once_with_its_models():
    from residual_response.null import Calibration
    from residual_response.pages.tables import calibration_verdict

    cals = [Calibration("random init", "pooled", "twin", tuple(range(10)), 10),
            Calibration("random init, full size", "a (random init 0)", "twin", tuple(range(30)), 2),
            Calibration("random init, full size", "b (random init 0)", "twin", tuple(range(18)), 0),
            Calibration("emergence", "a", "twin", (8, 12, 20, 30), 3)]
    text = calibration_verdict(cals, "twin")
    assert text.startswith("The twin baseline meets 1 of the 3 conditions. It misses ")
    assert "random init, full size, in a (random init 0) (2 of 30 pass), b (random init 0) (0 of 18 pass)" in text
    assert text.count("random init, full size") == 1 and "emergence, in a (3 of 4 pass)" in text
    assert calibration_verdict(cals[:1], "twin") == "The twin baseline meets every condition measured here (1)."


def test_coverage_by_model_splits_the_pool_and_the_sentence_says_who_falls_below():
    from residual_response.pages.tables import per_model_coverage_frame, per_model_coverage_sentence

    rows = ([_row("twin", layer=l) for l in range(1, 5)]  # llama seed 0: 4 of 4
            + [_row("twin", layer=l, init_seed=1, **({"lo": 1.05} if l == 2 else {})) for l in range(1, 5)]  # 3 of 4
            + [_row("neighbours", layer=1, lo=1.2, hi=1.3)])
    cals = null.coverage_by_model(rows, "twin")
    assert [(c.model, c.passed, len(c.units)) for c in cals] == [("llama-small, init seed 0", 4, 4),
                                                                 ("llama-small, init seed 1", 3, 4)]
    text = per_model_coverage_sentence(cals)
    assert "1 of the 2 random models one by one covers 1 at fewer than 90 %" in text
    assert "llama-small, init seed 1, 3 of 4 (75 %)" in text and "pooled over all 2, 7 of 8 streams (88 %)" in text
    assert "no more streams than 95 % intervals allow by chance" in text  # 1 miss in 4 is chance
    assert "about 0.4 of these 2 models below 90 % by chance" in text  # 2 x (1 - 0.95^4) = 0.37
    frame = per_model_coverage_frame(cals, setting="T = 4")
    assert list(frame.model) == ["llama-small, init seed 1", "llama-small, init seed 0"]  # lowest share first
    assert list(frame["≥ 90 %"]) == ["no", "yes"] and list(frame["streams covering 1"]) == ["3 of 4", "4 of 4"]
    both = per_model_coverage_frame(cals + null.coverage_by_model(rows, "neighbours"), setting="T = 4")
    assert list(both.baseline) == ["twin", "twin", "neighbours"]  # baselines in the order given, then by share
    assert per_model_coverage_sentence(cals[:1]).startswith("Under the twin baseline, every one of the 1 random")
    with pytest.raises(ValueError, match="control must be one of"):
        null.coverage_by_model(rows, "random")


def test_pre_head_offset_is_the_geometric_mean_of_the_streams_before_the_heads():
    """The pooled offset averages the log scores of streams 1..first_block; its interval holds it and
    narrows nothing away: it is at least as wide as the replicates' spread of that mean allows."""
    lm = build_random_model("llama", seed=0, n_layers=4)
    res = induction_scores(lm, T=6, seeds=3, n_boot=200)
    o = null.pre_head_offset(res, first_block=3)
    assert o["streams"] == [1, 2, 3]
    hand = np.exp(np.mean(np.log(res.score[1:4])))
    assert o["offset"] == pytest.approx(hand, rel=1e-9)  # tolerance: float64 rounding of a mean of logs
    assert o["low"] < o["offset"] < o["high"] and o["distinct"] == (o["low"] > 1 or o["high"] < 1)
    # fewer streams pooled: another mean; no stream before the heads: nothing to pool
    assert null.pre_head_offset(res, first_block=1)["offset"] == pytest.approx(res.score[1], rel=1e-9)
    empty = null.pre_head_offset(res, first_block=0)
    assert empty["offset"] is None and empty["streams"] == [] and empty["distinct"] is None


def test_median_score_is_the_median_over_the_scored_streams_with_its_interval():
    """The median of the point scores over the streams after l0, and an interval from the same
    replicates at every stream that holds it; a result without stripes is refused."""
    lm = build_random_model("gpt2", seed=0, n_layers=4)
    res = induction_scores(lm, T=6, seeds=3, n_boot=200)
    m = null.median_score(res)
    assert m["streams"] == [1, 2, 3, 4]
    assert m["median"] == pytest.approx(float(np.median(res.score[1:])), rel=1e-9)  # tolerance: float64 rounding
    assert m["low"] <= m["median"] <= m["high"] and m["low"] < m["high"]
    res.stripes = None
    with pytest.raises(ValueError, match="stripes"):
        null.median_score(res)
