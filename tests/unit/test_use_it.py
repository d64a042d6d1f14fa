"""The "Use it" cells (residual_response.pages.use_it) and the harness line they share with the checks.

A correct function, here the library's own, gives a table whose "your" columns equal the
library's beside them; the stub as handed out gives one line, "name: not implemented yet", and
no table; an error of the student's function gives one ``✗`` line; an error of the library's own
code is not hidden. The model is a tiny random-initialised GPT-2 (the pages pass the trained toy).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from residual_response.engine import response
from residual_response.exercises.harness import apply_student, tiny_model
from residual_response.exercises.score import twin_parts
from residual_response.pages import use_it
from residual_response.stats import bootstrap_ratio
from solutions import head_induction_attention, mean_ablated_streams


def _stub(*args, **kwargs):
    raise NotImplementedError


def chi_one_source(lm, tokens, l0, source, eps, u):
    from residual_response.perturbation import perturbation_directions
    # the library's response for the direction u: draw the same one (the use-it passes its seed's own)
    dirs = perturbation_directions(lm, tokens, torch.arange(len(tokens)), 1, "gaussian", 0)[:, 0]
    assert torch.allclose(dirs[source], u)
    return response(lm, tokens, [eps], l0=l0, sources=list(range(len(tokens))), seed=0).chi[0, :, source, :]


def twin_score(chi_rep, chi_twin, T):
    rep, ctrl, trep, tctrl = twin_parts(chi_rep, chi_twin, T)
    return float(bootstrap_ratio(rep, ctrl, twin=(trep, tctrl), n_boot=1)[0][0])


@pytest.fixture(scope="module")
def lm():
    return tiny_model("gpt2")


def _uses(lm):
    return [
        (use_it.use_chi_one_source, chi_one_source, dict(T=4, seed=0, eps=1e-2),
         ("stripe contrast, your chi", "stripe contrast, library's response")),
        (use_it.use_twin_score, twin_score, dict(T=4, seeds=2), ("your score", "library's score")),
        (use_it.use_head_attention, head_induction_attention, dict(T=4, seeds=2, top=3),
         ("your score", "library's score")),
        (use_it.use_mean_ablation, mean_ablated_streams, dict(T=4, seeds=2),
         ("second-copy loss, your streams", "second-copy loss, library")),
    ]


IDS = ["chi", "twin", "heads", "ablation"]


@pytest.mark.parametrize("i", range(4), ids=IDS)
def test_the_librarys_own_function_gives_a_table_whose_columns_agree(lm, i, capsys):
    use, fn, kw, (yours, library) = _uses(lm)[i]
    table = use(fn, lm, **kw)
    assert capsys.readouterr().out == ""
    frame = table.data
    # float32 models: chi's rounding is about 1e-5 relative (exercises.kick.KICK_TOLERANCE), the rest agrees to 1e-6
    np.testing.assert_allclose(frame[yours].astype(float), frame[library].astype(float), rtol=1e-3)
    assert "Setting:" in table.caption and lm.name in table.caption


@pytest.mark.parametrize("i", range(4), ids=IDS)
def test_the_stub_gives_one_line_and_no_table(lm, i, capsys):
    use, fn, kw, _ = _uses(lm)[i]
    assert use(_stub, lm, **kw) is None
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(": not implemented yet") and not lines[0].startswith("✗"), lines


def test_a_wrong_shape_gives_one_line_with_expected_and_received(lm, capsys):
    assert use_it.use_twin_score(lambda chi_rep, chi_twin, T: np.zeros(3), lm, T=4, seeds=1) is None
    line, = capsys.readouterr().out.strip().splitlines()
    assert line.startswith("✗ twin_score: expected the score (one number)") and "(3,)" in line, line


def test_an_error_of_the_students_function_is_one_line(capsys):
    def broken(x):
        return x[5]

    assert apply_student("broken", broken, lambda fn: fn([1, 2])) is None
    line, = capsys.readouterr().out.strip().splitlines()
    assert line.startswith("✗ broken raised IndexError at line 2 of your function") and "check above" in line, line


def test_an_error_outside_the_students_function_is_not_hidden():
    def fine(x):
        return x

    with pytest.raises(KeyError):
        apply_student("fine", fine, lambda fn: {}[fn(1)])


def test_the_half_rise_and_the_p_value_use_the_pages_own_results(capsys):
    from types import SimpleNamespace

    from residual_response.crosscheck import permutation_p_value
    from residual_response.rise import half_rise_layer

    results = {"m": SimpleNamespace(read_streams=[0, 1, 2, 3], score=[np.nan, 1.0, 4.0, 16.0], emergence_layer=2)}
    table = use_it.use_half_rise(lambda streams, score: half_rise_layer(streams, score), results, "T = 4")
    assert table.data["your stream"].tolist() == [2] and table.data["library's half_rise_layer"].tolist() == [2]
    tests = {"m": {"top": SimpleNamespace(drop=0.5, random_drops=[0.1, 0.6, 0.2], p_value=0.5)}}
    table = use_it.use_permutation_p_value(permutation_p_value, tests, "T = 4")
    assert table.data["your p-value"].tolist() == table.data["library's p-value"].tolist() == [0.5]
    assert use_it.use_permutation_p_value(_stub, tests, "T = 4") is None
    assert capsys.readouterr().out.strip() == "permutation_p_value: not implemented yet"


def test_the_bootstrap_of_the_library_gives_its_own_interval(lm, capsys):
    def bootstrap_twin_score(rep, ctrl, twin_rep, twin_ctrl, n_boot=1000, confidence=0.95, seed=0):
        return bootstrap_ratio(rep, ctrl, twin=(twin_rep, twin_ctrl), n_boot=n_boot, confidence=confidence, seed=seed)

    frame = use_it.use_bootstrap_twin_score(bootstrap_twin_score, lm, T=4, seeds=2).data
    assert frame["your interval"].tolist() == frame["library's interval"].tolist()  # the same draws (seed 0)
    np.testing.assert_allclose(frame["your score"], frame["library's score"], rtol=1e-9)
    assert use_it.use_bootstrap_twin_score(_stub, lm, T=4, seeds=2) is None
    assert capsys.readouterr().out.strip() == "bootstrap_twin_score: not implemented yet"


def test_the_stripe_ratio_and_the_writing_blocks_agree_with_the_library(lm, capsys):
    from types import SimpleNamespace

    def stripe_ratio(chi_rep, chi_twin, T, bos):
        k = np.arange(2, T + 1)
        rows, targets = k - 1, k - 1 + int(bos) + T - 1
        return chi_rep[:, rows, targets].mean(axis=1) / chi_twin[:, rows, targets].mean(axis=1)

    frame = use_it.use_stripe_ratio(stripe_ratio, lm, T=4, seeds=2).data
    np.testing.assert_allclose(frame["your ratio"], frame["library's stripe cells"], rtol=1e-12)
    low = np.array([[np.nan, 2.0, 1.0, 1.0], [np.nan, np.nan, 1.2, 1.0]])
    sm = SimpleNamespace(l0s=[0, 1], ci_low=low, writing_blocks=lambda: [0])
    frame = use_it.use_writing_blocks(lambda l0s, ci_low: [0], {"m": sm}, "T = 4").data
    assert frame["your writing blocks"].tolist() == frame["library's"].tolist() == ["0"]
    assert use_it.use_writing_blocks(_stub, {"m": sm}, "T = 4") is None
    assert capsys.readouterr().out.strip() == "writing_blocks: not implemented yet"
