"""A sequence and its twin run together (engine.shared_prefix) equal the two sequences run apart.

Tolerance: the shared pass does the operations of the two separate ones on longer packed
sequences (and, split into passes, on other batches), so matrix products may round differently:
float32 streams by ~1e-7 relative, which a finite difference divides by eps. chi entries are
compared with a relative 1e-5 and an absolute floor of ``1e-6 / eps`` (``1e-6`` for jvp) times the
largest value of the entry's row (measured: up to 2.3e-6 absolute at eps 1e-2 on rows of largest
value ~1, a quarter of the floor). Exact zeros (targets before a source) stay exact. The scores
(ratios of means of stripe entries) are compared with a relative 1e-4.
"""

import dataclasses

import numpy as np
import pytest
import torch

from residual_response.engine import run_response
from residual_response.engine.plan import planned_passes
from residual_response.engine.shared_prefix import SharedPrefixPass, run_response_pair, shared_prefix_length
from residual_response.induction import (InductionSetting, induction_scores, scores_from_stripes, sequence_units,
                                         stripes_from)
from residual_response.induction_runs import plan_units, unit_groups
from residual_response.progress import Progress
from residual_response.sequences import induction_layout

RTOL, FLOOR = 1e-5, 1e-6  # FLOOR: of the row's largest value, per unit of 1 / eps
SCORE_RTOL = 1e-4  # scores: ratios of means of stripe entries (measured: up to 6.6e-6 relative)
T = 5


def _pair(lm, seed, **kw):
    """The job of the repeated sequence of ``seed`` and its twin's tokens."""
    setting = InductionSetting.validated(lm, T=T, seeds=[seed], eps=1e-2, **kw)
    (_, k1, rep), (_, k2, twin) = sequence_units(lm, setting)
    assert (k1, k2) == ("repeated", "twin")
    layout = induction_layout(lm, T)
    sources = list(range(layout.offset, layout.offset + T))
    return setting, setting.response_job(lm, rep, sources, seed), twin


def _assert_chi_close(a, b, what):
    per_eps = 1.0 if b.method == "jvp" else 1.0 / np.asarray(b.eps)[:, None, None, None]  # [n_eps, 1, 1, 1]
    scale = per_eps * np.abs(b.chi).max(axis=-1, keepdims=True)  # [n_eps, n_read, n_src, 1] the row's largest value
    bad = np.abs(a.chi - b.chi) > RTOL * np.abs(b.chi) + FLOOR * scale
    assert not bad.any(), f"{what}: {int(bad.sum())} entries differ, largest {np.abs(a.chi - b.chi).max():.3g}"
    assert np.array_equal(a.chi == 0, b.chi == 0), f"{what}: exact zeros moved"
    assert a.sources == b.sources and a.read_streams == b.read_streams and list(a.tokens) == list(b.tokens)


@pytest.mark.parametrize("n_directions, batch_rows", [(1, None), (2, None), (1, 4), (2, 3)])
def test_pair_equals_the_two_runs(random_lm, n_directions, batch_rows):
    """Finite eps, several seeds, one pass or a split into several: each result equals its own run."""
    for seed in (0, 5):
        _, job, twin = _pair(random_lm, seed, n_directions=n_directions, batch_rows=batch_rows)
        rep_res, twin_res = run_response_pair(job, twin)
        _assert_chi_close(rep_res, run_response(job), f"repeated, seed {seed}")
        alone = run_response(dataclasses.replace(job, tokens=twin))
        _assert_chi_close(twin_res, alone, f"twin, seed {seed}")
        # the twin computed only the positions after the shared prefix: the work it saved
        P = shared_prefix_length(job.tokens, twin)
        assert rep_res.meta["shared_prefix"] == twin_res.meta["shared_prefix"] == P == induction_layout(
            random_lm, T).offset + T
        assert twin_res.meta["row_positions"] == n_directions * T * (job.N - P) < alone.meta["row_positions"]
        assert rep_res.meta["row_positions"] == alone.meta["row_positions"]
        assert rep_res.meta["n_batches"] == planned_passes(random_lm, job.N, job.sources, n_directions=n_directions,
                                                           batch_rows=batch_rows, twin_prefix=P)
        # the twin differs from the repeated sequence where it should (a wrong copy would make them equal)
        assert not np.allclose(rep_res.chi, twin_res.chi)


def test_pair_jvp_equals_the_two_runs(random_lm):
    """Forward-mode AD shares the prefix as well (tangents travel through the copied keys and values)."""
    _, job, twin = _pair(random_lm, 1, method="jvp", n_directions=2, batch_rows=4)
    rep_res, twin_res = run_response_pair(job, twin)
    _assert_chi_close(rep_res, run_response(job), "repeated, jvp")
    _assert_chi_close(twin_res, run_response(dataclasses.replace(job, tokens=twin)), "twin, jvp")
    assert "shared_prefix" in twin_res.meta


@pytest.mark.parametrize("case", ["no prefix reuse", "one row per pass", "source after the prefix"])
def test_pair_falls_back_to_two_runs(random_lm, case):
    """Where the passes cannot be shared the two sequences run apart: the same results, no shared prefix."""
    _, job, twin = _pair(random_lm, 2, reuse_prefix=case != "no prefix reuse",
                         batch_rows=1 if case == "one row per pass" else None)
    if case == "source after the prefix":
        job = dataclasses.replace(job, sources=job.sources + [job.N - 1])
    rep_res, twin_res = run_response_pair(job, twin)
    assert "shared_prefix" not in rep_res.meta and "shared_prefix" not in twin_res.meta
    _assert_chi_close(rep_res, run_response(job), case)
    _assert_chi_close(twin_res, run_response(dataclasses.replace(job, tokens=twin)), case)
    P = shared_prefix_length(job.tokens, twin)
    assert 2 * rep_res.meta["n_batches"] == planned_passes(random_lm, job.N, job.sources, batch_rows=job.B,
                                                           reuse_prefix=job.use_prefix, twin_prefix=P)


def test_shared_pass_refuses_a_source_after_the_prefix(random_lm):
    _, job, twin = _pair(random_lm, 0)
    P = shared_prefix_length(job.tokens, twin)
    with pytest.raises(ValueError, match="shared prefix"):
        SharedPrefixPass(random_lm, job.tokens, twin, None, 0, [1], torch.tensor([P]), torch.zeros(1, 8),
                         torch.ones(1), prefix=P)


def test_shared_prefix_length():
    a = torch.tensor([1, 2, 3, 4])
    assert shared_prefix_length(a, torch.tensor([1, 2, 5, 4])) == 2
    assert shared_prefix_length(a, a.clone()) == 4
    with pytest.raises(ValueError, match="length"):
        shared_prefix_length(a, a[:3])


@pytest.mark.parametrize("control, keep, expected", [
    ("twin", False, [(0, 1), (2, 3)]),
    ("neighbours", True, [(0, 1), (2, 3)]),  # the twin runs for its matrix
    ("neighbours", False, [(0,), (1,)]),
    ("random", False, [(0,), (1,), (2,), (3,)]),
])
def test_unit_groups(random_lm, control, keep, expected):
    """The twin joins its seed's repeated sequence; every other sequence runs alone."""
    setting = InductionSetting.validated(random_lm, T=T, seeds=[0, 1], control=control, keep_matrices=keep)
    units = sequence_units(random_lm, setting)
    groups = unit_groups(units)
    assert groups == expected
    for g in groups:
        assert len({units[i][0] for i in g}) == 1 and [units[i][1] for i in g][:1] == ["repeated" if len(g) == 2
                                                                                          else units[g[0]][1]]


@pytest.mark.parametrize("kw", [dict(), dict(n_directions=2, batch_rows=3)])
def test_induction_scores_equal_unshared_runs(random_lm, kw):
    """The induction score with each seed's pair in one call equals the score from separate runs."""
    setting = InductionSetting.validated(random_lm, T=T, seeds=[0, 3], eps=1e-2, n_boot=50, keep_matrices=True, **kw)
    bar = Progress(enabled=False)
    shared = induction_scores(random_lm, T=T, seeds=[0, 3], eps=1e-2, n_boot=50, keep_matrices=True, progress=bar,
                              **kw)
    layout = induction_layout(random_lm, T)
    sources = list(range(layout.offset, layout.offset + T))
    units = sequence_units(random_lm, setting)
    apart = [run_response(setting.response_job(random_lm, tokens, sources, seed)) for seed, _, tokens in units]
    alone = scores_from_stripes(stripes_from(setting, units, apart, layout), method=setting.method,
                                n_directions=setting.n_directions, n_boot=50)
    floor = FLOOR * (1.0 if setting.method == "jvp" else 1.0 / setting.eps)
    for part in ("induction", "duplicate"):
        for name, x in getattr(shared.stripes, part).items():
            y = getattr(alone.stripes, part)[name]  # [seeds, n_read, P]
            np.testing.assert_allclose(x, y, rtol=RTOL, atol=floor * np.abs(y).max(), err_msg=name)
    for key, x in shared.stripes.matrices.items():  # keep_matrices: [seeds, n_read, T, N]
        y = alone.stripes.matrices[key]
        np.testing.assert_allclose(x, y, rtol=RTOL, atol=floor * np.abs(y).max(), err_msg=key)
    np.testing.assert_allclose(shared.score, alone.score, rtol=SCORE_RTOL, equal_nan=True)
    np.testing.assert_allclose(shared.duplicate_score, alone.duplicate_score, rtol=SCORE_RTOL, equal_nan=True)

    # the job's bar: its planned total is the passes the calls ran (one call per seed)
    planned = plan_units(random_lm, setting, sources, units)
    assert [g for g, _ in planned] == [(0, 1), (2, 3)]
    assert bar.total == bar.done == sum(n for _, n in planned)


def test_pair_is_kept_in_the_results_cache(store):
    """A pair read back from the results cache is the pair computed (both results, bit for bit)."""
    from residual_response.models import build_random_model

    lm = build_random_model("llama", seed=0)
    _, job, twin = _pair(lm, 4)
    first = run_response_pair(job, twin)
    n_files = len(list(store.glob("*.pkl")))
    again = run_response_pair(job, twin)
    assert n_files >= 1 and len(list(store.glob("*.pkl"))) == n_files  # read back, nothing new computed
    for a, b in zip(first, again):
        assert np.array_equal(a.chi, b.chi) and a.meta == b.meta and list(a.tokens) == list(b.tokens)
