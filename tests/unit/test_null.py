"""The null of the score (residual_response.null): the study's rows are the induction scores of the
random models it builds, and its summaries are checked on rows whose answer is known."""

import math

import pytest

from residual_response import null
from residual_response.induction import induction_scores
from residual_response.models import build_random_model


def _row(control="neighbours", score=1.0, lo=0.9, hi=1.1, layer=1, emergence=None, family="llama", init_seed=0):
    return null.NullRow(family, "small", init_seed, control, layer, 4, score, lo, hi, emergence)


def test_the_study_scores_every_read_stream_of_the_models_it_builds():
    rows = null.null_study(families=("llama", "gpt2"), sizes=("small",), init_seeds=(1,), controls=("neighbours",),
                           T=4, seeds=2, n_boot=50)
    assert [(r.family, r.layer) for r in rows] == [(f, l) for f in ("llama", "gpt2") for l in (1, 2, 3, 4)]
    direct = induction_scores(build_random_model("gpt2", seed=1, **null.SIZES["small"]), T=4, seeds=2, n_boot=50)
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
    assert null.emergence_spread(stability, 4) == {"a": (3, 5), "b": None}  # b does not rise at T = 8


def test_emergence_stability_rescores_subsets_of_one_run():
    lm = build_random_model("llama", seed=0)
    rows = null.emergence_stability({"m": lm}, [4, 300], 4, eps=1e-2)  # T = 300 does not fit the context: skipped
    assert [(r["T"], r["seeds"]) for r in rows] == [(4, 2), (4, 4)]
    full = induction_scores(lm, T=4, seeds=4)
    assert rows[-1]["emergence layer"] == full.emergence_layer and rows[-1]["L"] == 4
