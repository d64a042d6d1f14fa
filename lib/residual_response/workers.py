"""Independent units of one job side by side: forked workers of one intra-op thread each.

Why: the engine's operations at the book's sizes (a forward pass of a few hundred positions
through a 135M model) are too small for torch's intra-op threads to pay. Measured on a shared
2-core machine (load average 1.7-3.6), the canonical induction job (SmolLM2-135M, T = 20, 4
seeds) ran 1.47-1.58x faster on two intra-op threads than on one; its 8 sequences, which are
independent, shared out to two forked processes of one thread each, ran 1.84-1.85x faster in the
same repeats (measured when each sequence was a unit; a seed's sequence and its twin are now one
unit, :mod:`.induction_runs`, so 4 units of the same job). ``make bench`` records both ways (``thread_scaling``). Every sequence is then
computed exactly as a one-thread run computes it, so the numbers do not depend on the thread
count.

Why processes and not Python threads: a pass changes the model while it runs (hooks on its
blocks, blocks swapped for pass-throughs, the attention function of transformers' registry
replaced), which two threads on one model would see of each other. A forked child has its own
copy of all of that, and shares the weights with its parent page by page until it writes them
(it never does).

:func:`map_units` is the one entry point: ``fn(item)`` for every item, in order, in
:func:`unit_workers` processes. Workers are used only where they can be had safely: on Linux
(``fork``; elsewhere forking a process that has loaded torch is not safe), for a model on the
CPU, with more than one unit and more than one thread allowed (``torch.get_num_threads()``, which
``--threads`` sets, or the cores the book's build shares out, :func:`core_share`), with units big
enough to pay for the workers' start (:data:`MIN_UNIT_FLOPS`), and not inside a worker or a
daemonic process. Otherwise the units run one after the other in this process, their operations
on torch's intra-op threads. :func:`intra_op_only` switches the workers off for a ``with`` block
(the benchmark's comparison).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import multiprocessing
import os
import pickle
import signal
import sys
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

__all__ = ["CORE_SHARE_VARIABLE", "MIN_UNIT_FLOPS", "core_share", "in_worker", "intra_op_only", "last_workers",
           "map_units", "unit_workers", "workers_allowed"]

T = TypeVar("T")
R = TypeVar("R")

#: whether workers may be used in this context (:func:`intra_op_only` switches them off)
_ALLOWED: contextvars.ContextVar[bool] = contextvars.ContextVar("unit_workers_allowed", default=True)
#: set in a forked worker: its units run in it, one after the other
_IN_WORKER = False
#: the job of the pool being started (read by the forked workers, which inherit it)
_JOB: tuple[Callable, Sequence] | None = None
#: the processes the last :func:`map_units` of this process ran its units in (1: here)
_LAST = 0


def last_workers() -> int:
    """How many processes the last :func:`map_units` here used (1: this one; 0: none has run).

    Why: the benchmark records whether a job it timed ran in workers."""
    return _LAST


#: Environment variable naming a file that holds how many cores this process may use now. Why:
#: the book's build runs its pages side by side with one thread each, and once the last pages
#: run, a core would idle beside the long one; the build writes the share as pages end
#: (``book_build.parallel``), and the jobs that start after read it.
CORE_SHARE_VARIABLE = "RESIDUAL_RESPONSE_CORE_SHARE"

#: Work of one unit (floating-point operations) below which the units run here: starting two
#: workers and ending them cost 0.17-0.21 s of wall time (SmolLM2 loaded, a busy 2-core machine),
#: the time of about 1e10 operations on one core. A sequence of the canonical induction job on
#: SmolLM2-135M is 1.4e11 (2.5e10 at T = 8); on the random and toy models, 1e7-1e8.
MIN_UNIT_FLOPS = 1e10


def in_worker() -> bool:
    """Whether this process is a worker of :func:`map_units`."""
    return _IN_WORKER


@contextlib.contextmanager
def intra_op_only() -> Iterator[None]:
    """Inside the block every job runs in this process, its operations on torch's intra-op threads."""
    token = _ALLOWED.set(False)
    try:
        yield
    finally:
        _ALLOWED.reset(token)


def workers_allowed(device: str = "cpu") -> bool:
    """Whether :func:`map_units` may fork workers here (module docstring), whatever the thread count."""
    return (_ALLOWED.get() and not _IN_WORKER and str(device).split(":")[0] == "cpu" and sys.platform == "linux"
            and "fork" in multiprocessing.get_all_start_methods() and not multiprocessing.current_process().daemon)


def core_share() -> int | None:
    """The cores this process may use now, from the file :data:`CORE_SHARE_VARIABLE` names (``None``
    without one, or where it cannot be read)."""
    path = os.environ.get(CORE_SHARE_VARIABLE)
    if not path:
        return None
    try:
        return max(1, int(Path(path).read_text().strip()))
    except (OSError, ValueError):
        return None


def unit_workers(n_units: int, device: str = "cpu", *, unit_flops: float | None = None) -> int:
    """Workers for ``n_units`` independent units: torch's thread count, or the cores the book's
    build shares out now (:func:`core_share`) if more, at most ``n_units``; 1 where workers are not
    allowed (:func:`workers_allowed`), or where a unit's work (``unit_flops``, if given) is below
    :data:`MIN_UNIT_FLOPS`."""
    import torch

    if n_units < 2 or not workers_allowed(device) or (unit_flops is not None and unit_flops < MIN_UNIT_FLOPS):
        return 1
    return max(1, min(int(n_units), max(torch.get_num_threads(), core_share() or 1)))


def _worker_start() -> None:
    """A forked worker: one intra-op thread; signals left to the parent, which ends the workers."""
    global _IN_WORKER
    import torch

    _IN_WORKER = True
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent handles it
    for name in ("SIGTERM", "SIGHUP"):  # the package's handlers raise; a worker just ends
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)


def _run_unit(i: int):
    fn, items = _JOB
    try:
        # by value, with the plain pickler: the pool's own would hand torch tensors over in shared
        # memory, one open file per tensor in the parent for as long as it lives (a section map's
        # kept clean passes held thousands, past the usual limit of 1024 open files)
        return i, pickle.dumps(fn(items[i]), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # travels back pickled: one that cannot would leave the parent waiting
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:
            raise RuntimeError(f"{type(exc).__name__}: {exc}") from None
        raise


def map_units(fn: Callable[[T], R], items: Sequence[T], *, device: str = "cpu", unit_flops: float | None = None,
              done: Callable[[int, R], None] | None = None) -> list[R]:
    """``[fn(item) for item in items]``, the items shared out to :func:`unit_workers` forked workers.

    ``fn`` and the items need not be picklable (the workers inherit them); each result travels back
    pickled. ``done(i, result)`` is called in this process as each unit ends (a progress bar).
    An exception of ``fn`` is raised here; the other workers are ended.

    Args:
        fn: the work of one unit; it must not depend on the order of the units or on what an
            earlier unit left behind in the process (a worker runs several units).
        items: ``[n]`` the units.
        device: the device of the model the units run on (workers only for ``"cpu"``).
        unit_flops: the work of one unit, if known (:func:`unit_workers`).
    """
    global _JOB, _LAST
    items = list(items)
    n = _LAST = unit_workers(len(items), device, unit_flops=unit_flops)
    results: list = [None] * len(items)
    if n <= 1:
        for i, item in enumerate(items):
            results[i] = fn(item)
            if done is not None:
                done(i, results[i])
        return results
    if _JOB is not None:
        raise RuntimeError("map_units: another job is starting its workers in this process")
    # an executor, not a multiprocessing.Pool: a worker that dies (killed for memory) fails the
    # job with BrokenProcessPool instead of leaving it waiting for ever
    pool = concurrent.futures.ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork"),
                                                  initializer=_worker_start)
    try:
        _JOB = (fn, items)
        try:  # with fork, the first submit starts every worker: each inherits _JOB
            futures = {pool.submit(_run_unit, i): i for i in range(len(items))}
        finally:
            _JOB = None
        for future in concurrent.futures.as_completed(futures):
            i, data = future.result()
            results[i] = value = pickle.loads(data)
            if done is not None:
                done(i, value)
    except BaseException:
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()  # the units still running are of no use now
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return results
