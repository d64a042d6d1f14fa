"""The checks of the build-it-yourself exercises (residual_response.exercises).

For every check: a correct solution passes (one ``✓`` line, ``True``), a solution with a typical
mistake fails with one sentence that names it (``✗`` line, ``False``), and the stub as handed out
reports "not implemented yet" in one line. The correct solutions here call the library itself; the
pages' own solutions are checked by the book build and by tests/book/test_student_notebooks.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from residual_response import exercises
from residual_response.ablation import head_output_projection
from residual_response.attention import attention_patterns
from residual_response.crosscheck import permutation_p_value
from residual_response.engine import response
from residual_response.exercises.harness import hook_count, tiny_model
from residual_response.exercises.kick import DIRECTION_SEED
from residual_response.exercises.score import twin_parts
from residual_response.induction import stripe_entries
from residual_response.regime import widest_flat_interval
from residual_response.rise import half_rise_layer
from residual_response.sequences import InductionLayout, induction_layout
from residual_response.stats import bootstrap_ratio, resampled_ratio, two_level_indices
from residual_response.streams import clean_streams
from solutions import head_induction_attention, mean_ablated_streams


def _run(capsys, check, fn) -> tuple[bool, str]:
    ok = check(fn)
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert len(lines) == 1, f"a check prints one line, got {lines!r}"
    return ok, lines[0]


def _stub(*args, **kwargs):
    raise NotImplementedError


# correct solutions, by the library ------------------------------------------------------------

def chi_one_source(lm, tokens, l0, source, eps, u):
    return response(lm, tokens, [eps], l0=l0, sources=[source], seed=DIRECTION_SEED).chi[0, :, 0, :]


def chi_jvp(lm, tokens, l0, source, u):
    return torch.as_tensor(response(lm, tokens, l0=l0, sources=[source], seed=DIRECTION_SEED,
                                    method="jvp").chi[0, :, 0, :])


def twin_score(chi_rep, chi_twin, T):
    rep, ctrl, trep, tctrl = twin_parts(chi_rep, chi_twin, T)
    return float(bootstrap_ratio(rep, ctrl, twin=(trep, tctrl), n_boot=1)[0][0])


def bootstrap_twin_score(rep, ctrl, twin_rep, twin_ctrl, n_boot=1000, confidence=0.95, seed=0):
    return bootstrap_ratio(rep, ctrl, twin=(twin_rep, twin_ctrl), n_boot=n_boot, confidence=confidence, seed=seed)


def induction_stripe(T, bos):
    layout = InductionLayout(T=T, offset=int(bos))
    return layout.induction_sources.numpy(), layout.induction_targets.numpy()


def regime_window(eps, curve, tol):
    iv = widest_flat_interval(eps, curve, tol)
    return None if iv is None else (eps[iv[0]], eps[iv[1]])


def stripe_ratio(chi_rep, chi_twin, T, bos):
    layout = InductionLayout(T=T, offset=int(bos))
    return stripe_entries(chi_rep, layout, "random")[0][0].mean(axis=1) / \
        stripe_entries(chi_twin, layout, "random")[0][0].mean(axis=1)


def half_rise_stream(streams, score):
    return half_rise_layer(streams, score)


def interval_coverage(streams, l0, score, ci_low, ci_high):
    keep = (np.asarray(streams) > l0) & np.isfinite(score)
    return float(np.mean((ci_low[keep] <= 1.0) & (1.0 <= ci_high[keep])))


def writing_blocks(l0s, ci_low, threshold=1.5):
    return [l0 for i, l0 in enumerate(l0s) if l0 + 1 < ci_low.shape[1] and ci_low[i, l0 + 1] > threshold]


def p_value(drop, random_drops):
    return permutation_p_value(drop, random_drops)


# solutions with a typical mistake ---------------------------------------------------------------

def chi_not_divided(lm, tokens, l0, source, eps, u):
    return chi_one_source(lm, tokens, l0, source, eps, u) * eps


def chi_without_l0(lm, tokens, l0, source, eps, u):
    return chi_one_source(lm, tokens, l0, source, eps, u)[1:]


def jvp_by_finite_kick(lm, tokens, l0, source, u):
    return chi_one_source(lm, tokens, l0, source, 1e-2, u)


def twin_mean_of_ratios(chi_rep, chi_twin, T):
    rep, ctrl, trep, tctrl = twin_parts(chi_rep, chi_twin, T)
    return float(np.mean(rep / ctrl) / np.mean(trep / tctrl))


def bootstrap_seeds_only(rep, ctrl, twin_rep, twin_ctrl, n_boot=1000, confidence=0.95, seed=0):
    S, _, P = rep.shape
    si, _ = two_level_indices(np.random.default_rng(seed), S, P, n_boot)
    full = np.broadcast_to(np.arange(P), (1, S, P))
    score = resampled_ratio(rep, ctrl, np.arange(S)[None], full, twin=(twin_rep, twin_ctrl))[0]
    boots = resampled_ratio(rep, ctrl, si, np.broadcast_to(np.arange(P), (n_boot, S, P)), twin=(twin_rep, twin_ctrl))
    low, high = np.quantile(boots, [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)
    return score, low, high


def attention_transposed(lm, tokens, block, head, T):
    layout = induction_layout(lm, T)
    return float(attention_patterns(lm, tokens)[block, head][layout.induction_sources, layout.induction_targets].mean())


def streams_not_ablated(lm, tokens, block, head, means):
    return clean_streams(lm, tokens)


def stripe_at_lag_T(T, bos):
    sources, _ = induction_stripe(T, bos)
    return sources, sources + T


# the mistake the check's hint looks for, as the check itself computes it
from residual_response.exercises.steps import _first_point_window as window_against_first_point  # noqa: E402


def stripe_ratio_of_the_duplicate_stripe(chi_rep, chi_twin, T, bos):
    rows = np.arange(1, T)  # sources a_2..a_T
    targets = rows + int(bos) + T  # lag T: the duplicate-token stripe
    return chi_rep[:, rows, targets].mean(axis=1) / chi_twin[:, rows, targets].mean(axis=1)


def half_rise_in_score(streams, score):
    keep = np.isfinite(score)
    streams, score = np.asarray(streams)[keep], np.asarray(score)[keep]
    top = int(np.argmax(score))
    bottom = int(np.argmin(score[:top + 1]))
    level = (score[bottom] + score[top]) / 2
    return int(next(streams[i] for i in range(bottom, top + 1) if score[i] >= level))


def coverage_with_l0(streams, l0, score, ci_low, ci_high):
    return float(np.mean((ci_low <= 1.0) & (1.0 <= ci_high)))  # NaN at l0 compares False


def writing_blocks_by_row_index(l0s, ci_low, threshold=1.5):
    return [l0 for i, l0 in enumerate(l0s) if ci_low[i, i + 1] > threshold]


def p_value_without_ones(drop, random_drops):
    return float(np.mean(np.asarray(random_drops) >= drop))


CHECKS = [
    # check, correct, wrong, words the wrong one's sentence must hold
    (exercises.check_chi_one_source, chi_one_source, chi_not_divided, "divided by eps"),
    (exercises.check_chi_jvp, chi_jvp, jvp_by_finite_kick, "forward-mode AD"),
    (exercises.check_twin_score, twin_score, twin_mean_of_ratios, "ratio of means"),
    (exercises.check_bootstrap_score, bootstrap_twin_score, bootstrap_seeds_only, "misses the position level"),
    (exercises.check_head_attention_score, head_induction_attention, attention_transposed, "queries"),
    (exercises.check_mean_ablation, mean_ablated_streams, streams_not_ablated, "not replaced"),
    (exercises.check_induction_stripe, induction_stripe, stripe_at_lag_T, "duplicate-token targets"),
    (exercises.check_regime_window, regime_window, window_against_first_point, "its own median"),
    (exercises.check_stripe_ratio, stripe_ratio, stripe_ratio_of_the_duplicate_stripe, "duplicate-token stripe"),
    (exercises.check_half_rise, half_rise_stream, half_rise_in_score, "half way in log score"),
    (exercises.check_coverage, interval_coverage, coverage_with_l0, "leave it out"),
    (exercises.check_writing_blocks, writing_blocks, writing_blocks_by_row_index, "read column l0s[i] + 1"),
    (exercises.check_permutation_p_value, p_value, p_value_without_ones, "one more draw"),
]
IDS = [c[0].__name__ for c in CHECKS]


@pytest.mark.parametrize("check, correct, wrong, words", CHECKS, ids=IDS)
def test_a_correct_solution_passes(capsys, check, correct, wrong, words):
    ok, line = _run(capsys, check, correct)
    assert ok is True and line.startswith("✓ "), line


@pytest.mark.parametrize("check, correct, wrong, words", CHECKS, ids=IDS)
def test_a_wrong_solution_fails_with_one_sentence_that_names_the_mistake(capsys, check, correct, wrong, words):
    ok, line = _run(capsys, check, wrong)
    assert ok is False and line.startswith("✗ ") and "expected" in line and words in line, line


@pytest.mark.parametrize("check", [c[0] for c in CHECKS], ids=IDS)
def test_the_stub_reports_not_implemented_in_one_line(capsys, check):
    ok, line = _run(capsys, check, _stub)
    assert ok is False and line.endswith(": not implemented yet") and not line.startswith(("✓", "✗")), line


def test_a_wrong_shape_says_expected_and_received_shapes(capsys):
    ok, line = _run(capsys, exercises.check_chi_one_source, chi_without_l0)
    assert not ok and "of shape (5, 9)" in line and "received shape (4, 9)" in line and "stream from l0" in line, line


def test_an_error_of_the_student_is_one_line_without_traceback(capsys):
    def broken(chi_rep, chi_twin, T):
        raise ValueError("operands could not be broadcast together\nsecond line")

    ok, line = _run(capsys, exercises.check_twin_score, broken)
    assert not ok and line.startswith("✗ twin_score (") and "raised ValueError at line 2 of your function: operands could not be broadcast" in line


def test_a_hook_left_on_the_model_is_named_and_the_model_rebuilt(capsys):
    def leaky(lm, tokens, block, head, means):
        head_output_projection(lm, block).register_forward_pre_hook(lambda module, args: None)
        return mean_ablated_streams(lm, tokens, block, head, means)

    ok, line = _run(capsys, exercises.check_mean_ablation, leaky)
    assert not ok and "left 1 hook(s) registered" in line and "finally" in line, line
    assert hook_count(tiny_model("llama").model) == 0  # the next check gets a clean model


def test_not_a_function(capsys):
    ok, line = _run(capsys, exercises.check_twin_score, 3.0)
    assert not ok and line.startswith("✗ twin_score: expected a function")


def test_a_not_implemented_error_inside_the_work_is_not_taken_for_the_stub(capsys):
    """PyTorch raises NotImplementedError for an operation it lacks (forward-mode AD through a fused
    attention kernel): that is the student's error, reported as one, not "not implemented yet"."""
    def inner():
        raise NotImplementedError("Trying to use forward AD with an op that does not support it")

    def deeper(*args, **kwargs):
        inner()

    ok, line = _run(capsys, exercises.check_twin_score, deeper)
    assert ok is False and line.startswith("✗ ") and "inside the work" in line and "forward AD" in line, line


def test_a_constant_factor_is_named_as_one(capsys):
    """A kick of the wrong size (eps u instead of eps |h_s| u) scales every chi by the same factor
    in the linear regime: the check says so instead of only "expected X, received Y"."""
    def chi_scaled(lm, tokens, l0, source, eps, u):
        return chi_one_source(lm, tokens, l0, source, eps, u) * 0.37

    ok, line = _run(capsys, exercises.check_chi_one_source, chi_scaled)
    assert not ok and "0.37 times the expected one" in line and "kick's size" in line, line


def test_a_not_implemented_error_with_a_message_in_the_students_own_frame_is_the_students(capsys):
    """A PyTorch C function adds no Python frame: its NotImplementedError looks raised by the
    student's function itself, but it carries a message and the stubs raise it bare."""
    def direct(*args, **kwargs):
        raise NotImplementedError("Trying to use forward AD with _scaled_dot_product_flash_attention_for_cpu")

    ok, line = _run(capsys, exercises.check_twin_score, direct)
    assert ok is False and line.startswith("✗ ") and "forward AD" in line, line


def test_a_window_returned_as_indices_is_named(capsys):
    def indices(eps, curve, tol):
        return widest_flat_interval(eps, curve, tol)

    ok, line = _run(capsys, exercises.check_regime_window, indices)
    assert not ok and "indices into eps" in line, line


def test_a_window_where_there_is_none_says_none_was_expected(capsys):
    def always(eps, curve, tol):
        return regime_window(eps, curve, tol) or (eps[0], eps[1])

    ok, line = _run(capsys, exercises.check_regime_window, always)
    assert not ok and "expected None" in line and "wobbly" in line, line


def test_a_half_rise_from_the_global_minimum_is_named(capsys):
    def global_min(streams, score):
        keep = np.isfinite(score)
        streams, logs = np.asarray(streams)[keep], np.log(np.asarray(score)[keep])
        top, bottom = int(np.argmax(logs)), int(np.argmin(logs))
        lo, hi = sorted((bottom, top))
        level = (logs[bottom] + logs[top]) / 2
        return int(next(streams[i] for i in range(lo, hi + 1) if logs[i] >= level))

    ok, line = _run(capsys, exercises.check_half_rise, global_min)
    assert not ok and "at or before the top" in line, line


def test_a_p_value_that_lets_ties_pass_is_named(capsys):
    def strict(drop, random_drops):
        return (1 + float(np.sum(np.asarray(random_drops) > drop))) / (1 + len(random_drops))

    ok, line = _run(capsys, exercises.check_permutation_p_value, strict)
    assert not ok and "ties count against" in line and "expected p-value" in line, line


def test_the_permutation_p_value_of_the_library():
    """The rank test's rule: the named set counts as one more draw, ties count against it."""
    assert permutation_p_value(1.0, [0.1, 0.2, 0.3]) == pytest.approx(0.25, rel=1e-12)
    assert permutation_p_value(0.2, [0.1, 0.2, 0.3]) == pytest.approx(0.75, rel=1e-12)
    with pytest.raises(ValueError, match="at least one random draw"):
        permutation_p_value(0.2, [])


def test_writing_blocks_at_a_threshold_of_one_are_named(capsys):
    def above_one(l0s, ci_low, threshold=1.5):
        return writing_blocks(l0s, ci_low, threshold=1.0)

    ok, line = _run(capsys, exercises.check_writing_blocks, above_one)
    assert not ok and "lower end lies above 1.5" in line and "expected the blocks" in line, line


def test_writing_blocks_above_one_plus_the_threshold_are_named(capsys):
    def one_plus(l0s, ci_low, threshold=1.5):
        return [int(l0) for i, l0 in enumerate(l0s) if ci_low[i, l0 + 1] > 1 + threshold]

    ok, line = _run(capsys, exercises.check_writing_blocks, one_plus)
    assert not ok and "1 + threshold" in line and "row i" not in line, line


def test_a_twin_score_as_a_mean_of_ratios_with_one_neighbour_names_both_mistakes(capsys):
    def mean_of_ratios_first_neighbour(chi_rep, chi_twin, T):
        def ratio(chi):
            k = np.arange(2, T)
            return np.mean(chi[:, k - 1, T + k - 1] / chi[:, k, T + k - 1])

        return float(ratio(chi_rep) / ratio(chi_twin))

    ok, line = _run(capsys, exercises.check_twin_score, mean_of_ratios_first_neighbour)
    assert not ok and "ratio of means" in line and "both right neighbours" in line, line


def test_a_half_rise_from_the_global_minimum_searched_from_the_start_is_named(capsys):
    def global_min_first(streams, score):
        keep = np.isfinite(score)
        streams, logs = np.asarray(streams)[keep], np.log(np.asarray(score)[keep])
        level = (logs.min() + logs.max()) / 2
        return int(streams[np.argmax(logs >= level)])

    ok, line = _run(capsys, exercises.check_half_rise, global_min_first)
    assert not ok and "at or before the top" in line and "expected stream" in line, line


def test_a_half_rise_that_finds_no_stream_after_a_global_minimum_is_named(capsys):
    def global_min_onwards(streams, score):
        keep = np.isfinite(score)
        streams, logs = np.asarray(streams)[keep], np.log(np.asarray(score)[keep])
        bottom = int(np.argmin(logs))
        level = (logs[bottom] + logs.max()) / 2
        return int(next(streams[i] for i in range(bottom, len(logs)) if logs[i] >= level))

    ok, line = _run(capsys, exercises.check_half_rise, global_min_onwards)
    assert not ok and "raised StopIteration at line 6 of your function;" in line and "at or before the top" in line, line


def test_a_stripe_ratio_without_the_bos_offset_is_named(capsys):
    def no_offset(chi_rep, chi_twin, T, bos):
        k = np.arange(2, T + 1)
        rows, targets = k - 1, k - 1 + T - 1
        return chi_rep[:, rows, targets].mean(axis=1) / chi_twin[:, rows, targets].mean(axis=1)

    ok, line = _run(capsys, exercises.check_stripe_ratio, no_offset)
    assert not ok and "BOS offset" in line and "with BOS" in line, line


# the bootstrap: properties, not the library's draws --------------------------------------------

def _bootstrap_levels(levels: str, order: str = "seeds first", offset: int = 0):
    """A bootstrap of the score drawn in its own way: ``levels`` "both", "seeds" or "positions";
    ``order`` of the draws; ``offset`` added to the seed (another stream of draws)."""
    def fn(rep, ctrl, twin_rep, twin_ctrl, n_boot=1000, confidence=0.95, seed=0):
        S, _, P = rep.shape
        rng = np.random.default_rng(seed + offset)
        if order == "seeds first":
            si, pi = rng.integers(0, S, (n_boot, S)), rng.integers(0, P, (n_boot, S, P))
        else:
            pi, si = rng.integers(0, P, (n_boot, S, P)), rng.integers(0, S, (n_boot, S))
        if levels == "seeds":
            pi = np.broadcast_to(np.arange(P), (n_boot, S, P))
        elif levels == "positions":
            si = np.broadcast_to(np.arange(S), (n_boot, S))
        twin = (twin_rep, twin_ctrl)
        score = resampled_ratio(rep, ctrl, np.arange(S)[None], np.broadcast_to(np.arange(P), (1, S, P)), twin=twin)[0]
        boots = resampled_ratio(rep, ctrl, si, pi, twin=twin)
        low, high = np.quantile(boots, [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)
        return score, low, high
    return fn


def test_a_bootstrap_drawn_in_another_order_passes(capsys):
    ok, line = _run(capsys, exercises.check_bootstrap_score, _bootstrap_levels("both", "positions first", offset=5))
    assert ok is True and line.startswith("✓ "), line


def test_a_bootstrap_over_the_positions_only_is_named(capsys):
    ok, line = _run(capsys, exercises.check_bootstrap_score, _bootstrap_levels("positions"))
    assert ok is False and "misses the seed level" in line and "expected" in line, line


def test_a_bootstrap_that_ignores_its_seed_is_named(capsys):
    def unseeded(rep, ctrl, twin_rep, twin_ctrl, n_boot=1000, confidence=0.95, seed=0):
        return bootstrap_ratio(rep, ctrl, twin=(twin_rep, twin_ctrl), n_boot=n_boot, confidence=confidence,
                               seed=int(np.random.default_rng().integers(1 << 30)))
    ok, line = _run(capsys, exercises.check_bootstrap_score, unseeded)
    assert ok is False and "same seed gave different intervals" in line, line


def test_the_bootstrap_tolerance_passes_other_draws_and_tells_one_level_bootstraps_apart():
    """The margins behind BOOT_END_TOL: correct bootstraps with 12 other streams of draws lie
    within two thirds of it from the reference on every case; on the case with several seeds, a
    bootstrap over one level lies at least 1.5 times it away."""
    from residual_response.exercises import score

    def off(fn, parts, conf):
        _, low, high = fn(*parts, n_boot=score.BOOT_N, confidence=conf, seed=0)
        ref = score.reference_interval(parts, score.BOOT_N, conf)
        return float(np.max(np.abs(np.stack([low, high]) - ref) / (ref[1] - ref[0])))

    cases = score._bootstrap_cases()
    worst = max(off(_bootstrap_levels("both", order, offset=k), parts, conf)
                for _, parts, conf in cases for k, order in enumerate(["seeds first", "positions first"] * 6, start=1))
    assert worst <= score.BOOT_END_TOL / 1.5, worst
    _, several, conf = cases[0]
    for levels in ("seeds", "positions"):
        assert off(_bootstrap_levels(levels), several, conf) >= 1.5 * score.BOOT_END_TOL, levels


def test_the_diagnosis_cases_tell_a_missing_level_by_its_width_with_a_margin():
    """One seed: a bootstrap over the seeds only has width 0, a two-level one about the library's.
    Seeds far apart: a bootstrap over the positions only is far narrower than the library's.
    Each stays 1.5 times away from the threshold the diagnosis uses."""
    from residual_response.exercises import score

    one_seed, far_seeds = score._stripes(1, 2, 10, 2, 0.0), score._stripes(6, 2, 8, 3, 1.0, position_sd=0.1)
    for k in range(1, 6):
        assert np.all(score._width_ratio(_bootstrap_levels("both", offset=k), one_seed) >= 1.5 * score._MISSING_WIDTH)
        assert np.all(score._width_ratio(_bootstrap_levels("both", offset=k), far_seeds) >= 1.5 * score._MISSING_WIDTH)
        assert np.all(score._width_ratio(_bootstrap_levels("seeds", offset=k), one_seed) <= score._MISSING_WIDTH / 1.5)
        assert np.all(score._width_ratio(_bootstrap_levels("positions", offset=k), far_seeds)
                      <= score._MISSING_WIDTH / 1.5)
