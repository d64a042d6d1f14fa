"""Independent units in forked workers (:mod:`residual_response.workers`): the same numbers at
every thread count, the units' order kept, errors raised in the parent, and the fallbacks."""

import os
import sys

import numpy as np
import pytest
import torch

from residual_response import workers
from residual_response.engine import reuse_clean_passes
from residual_response.errors import InputError
from residual_response.induction import induction_scores, section_map
from residual_response.models import build_random_model
from residual_response.threads import set_threads

forking = pytest.mark.skipif(not workers.workers_allowed(), reason="forked workers need Linux and a non-daemonic process")


@pytest.fixture(autouse=True)
def any_work(monkeypatch):
    """The tiny models' units are far below the work that pays for two workers: fork anyway."""
    monkeypatch.setattr(workers, "MIN_UNIT_FLOPS", 0.0)


@pytest.fixture
def threads():
    """Set torch's thread count inside a test; the count in force before comes back after."""
    before = torch.get_num_threads()
    yield lambda n: torch.set_num_threads(n)
    torch.set_num_threads(before)


def _pid(_item):
    return os.getpid()


@forking
def test_units_run_in_workers_in_order_and_come_back_in_order(threads):
    threads(2)
    assert workers.unit_workers(5) == 2 and workers.unit_workers(1) == 1
    done = []
    out = workers.map_units(lambda x: (x * x, os.getpid(), workers.in_worker(), torch.get_num_threads()),
                            range(5), done=lambda i, v: done.append(i))
    assert [v[0] for v in out] == [0, 1, 4, 9, 16] and sorted(done) == list(range(5))
    assert all(v[1] != os.getpid() and v[2] and v[3] == 1 for v in out)  # forked, one thread each
    assert not workers.in_worker() and torch.get_num_threads() == 2
    with workers.intra_op_only():  # switched off: every unit here
        assert workers.unit_workers(5) == 1
        assert set(workers.map_units(_pid, range(3))) == {os.getpid()}
    assert workers.unit_workers(5, device="cuda") == 1
    assert workers.unit_workers(5, unit_flops=1e12) == 2


def test_small_units_run_here(monkeypatch, threads):
    threads(2)
    monkeypatch.setattr(workers, "MIN_UNIT_FLOPS", 1e9)
    assert workers.unit_workers(4, unit_flops=1e8) == 1 and workers.unit_workers(4, unit_flops=1e10) == 2
    induction_scores(build_random_model("gpt2", seed=0), T=4, seeds=2, n_boot=10)
    assert workers.last_workers() == 1  # a tiny model's sequences: here, one after the other


def test_one_thread_runs_every_unit_in_this_process(threads):
    threads(1)
    assert workers.unit_workers(8) == 1
    assert set(workers.map_units(_pid, range(4))) == {os.getpid()}


@forking
def test_an_error_of_a_unit_is_raised_in_the_parent(threads):
    threads(2)

    def fn(x):
        if x == 3:
            raise InputError(f"unit {x} refused")
        return x

    with pytest.raises(InputError, match="unit 3 refused"):
        workers.map_units(fn, range(6))
    assert workers.map_units(lambda x: x + 1, range(3)) == [1, 2, 3]  # the next job starts afresh

    class Odd(Exception):
        def __init__(self, a, b):  # cannot be rebuilt from its args: not picklable as it stands
            super().__init__(f"{a} and {b}")

    def odd(x):
        raise Odd(x, "more")

    with pytest.raises(RuntimeError, match="Odd: 0 and more|Odd: 1 and more"):
        workers.map_units(odd, range(2))


@forking
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_induction_scores_are_the_same_at_one_and_two_threads(arch, threads):
    """Each sequence is computed in a one-thread worker exactly as the one-thread run computes it:
    the stripes agree to the last bit (same machine, same code path), and so do the scores."""
    lm = build_random_model(arch, seed=0)
    kw = dict(T=5, seeds=3, n_boot=50, keep_matrices=True)
    threads(1)
    one = induction_scores(lm, **kw)
    threads(2)
    two = induction_scores(lm, **kw)
    assert workers.last_workers() == 2
    for key in one.stripes.induction:
        np.testing.assert_array_equal(one.stripes.induction[key], two.stripes.induction[key])
        np.testing.assert_array_equal(one.stripes.duplicate[key], two.stripes.duplicate[key])
    for key in one.stripes.matrices:
        np.testing.assert_array_equal(one.stripes.matrices[key], two.stripes.matrices[key])
    np.testing.assert_array_equal(one.score, two.score)
    assert one.emergence_layer == two.emergence_layer


@forking
def test_section_map_with_workers_keeps_the_clean_passes_and_the_numbers(threads):
    lm = build_random_model("llama", seed=1)
    threads(1)
    ref = section_map(lm, T=4, seeds=2, n_boot=20)
    threads(2)
    fds = len(os.listdir("/proc/self/fd"))
    with reuse_clean_passes() as cache:
        got = section_map(lm, T=4, seeds=2, n_boot=20)
        assert len(cache) == 4  # 2 seeds x (repeated, twin): the workers' clean passes came back
        # by value: no file held open per tensor (the pool's own pickler shares them through files)
        assert len(os.listdir("/proc/self/fd")) <= fds + 2
        again = section_map(lm, T=4, seeds=2, n_boot=20)  # the parent's clean passes, inherited by the workers
    np.testing.assert_array_equal(again.score, got.score)
    np.testing.assert_array_equal(ref.score, got.score)


def test_thread_count_is_validated():
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises((InputError, TypeError), match="threads"):
            set_threads(bad)
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and set_threads(0) == 1  # 0 keeps the count in force
    finally:
        torch.set_num_threads(before)


def test_workers_are_not_used_off_linux(monkeypatch, threads):
    threads(2)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert not workers.workers_allowed() and workers.unit_workers(4) == 1


@forking
def test_the_builds_core_share_raises_the_workers_of_a_one_thread_process(tmp_path, monkeypatch, threads):
    from book_build.parallel import cores_per_page

    assert [cores_per_page(2, running) for running in (2, 1, 0)] == [1, 2, 2] and cores_per_page(4, 2) == 2
    threads(1)
    share = tmp_path / "share"
    monkeypatch.setenv(workers.CORE_SHARE_VARIABLE, str(share))
    assert workers.unit_workers(4) == 1  # no file yet: the thread count
    share.write_text("2\n")
    assert workers.core_share() == 2 and workers.unit_workers(4) == 2
    share.write_text("garbled")
    assert workers.core_share() is None and workers.unit_workers(4) == 1


@forking
def test_ablated_heads_reach_the_workers(threads):
    """The workers are forked inside the ablation: they run the ablated model, as a one-thread run does."""
    from residual_response.crosscheck import ablation_study

    lm = build_random_model("llama", seed=0)
    kw = dict(n_random=2, T=5, seeds=2, loss_seeds=[0], n_boot=20)
    threads(1)
    one = ablation_study(lm, [(1, 0)], **kw)
    threads(2)
    two = ablation_study(lm, [(1, 0)], **kw)
    assert workers.last_workers() == 2
    for key in one.results:
        np.testing.assert_array_equal(one.results[key].score, two.results[key].score)
    assert not np.array_equal(one.results["none"].score, one.results["top"].score, equal_nan=True)


@forking
def test_a_worker_that_dies_fails_the_job_instead_of_hanging(threads):
    from concurrent.futures.process import BrokenProcessPool

    threads(2)

    def fn(x):
        if x == 1:
            os._exit(9)  # as if killed for memory
        return x

    with pytest.raises(BrokenProcessPool):
        workers.map_units(fn, range(4))
    assert workers.map_units(lambda x: -x, range(3)) == [0, -1, -2]
