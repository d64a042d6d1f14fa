"""CPU threads: how many the engine's operations use, and how an idle one waits.

Why a module: PyTorch's CPU build runs its parallel operations on GNU OpenMP threads, and an
OpenMP thread that has finished its share of an operation spins, by default, for a while
(``GOMP_SPINCOUNT``, 300,000 turns) before it sleeps. On an otherwise idle machine that saves the
wake-up of the next operation. On a machine with other work it steals the core from the thread
that still has work to do: measured on a 2-core machine with other jobs running, the canonical
induction job (SmolLM2-135M, T = 20, 4 seeds) took 88-102 s of wall time and 37-42 s of CPU time
with two spinning threads, against 24-26 s and 8-9 s with one thread, and 20-24 s and 8.4-8.6 s
with two threads that sleep at once (``OMP_WAIT_POLICY=PASSIVE``). So the package asks OpenMP for
passive waits (:func:`passive_waits`, called when the package is imported), unless the
environment already says otherwise. OpenMP reads the setting once, when torch loads it: it
takes effect where ``residual_response`` is imported before ``torch`` (the command line, the
book's pages, ``make``, which also exports it), and nowhere else.

:func:`set_threads` is the ``--threads`` option of the command line: ``0`` (the default) keeps
torch's own choice, one thread per core unless ``OMP_NUM_THREADS`` says otherwise (the book's
build and the tests give each of their side-by-side processes one thread that way). With more
than one thread, an induction job's sequences run side by side in forked processes of one
thread each (:mod:`.workers`), which scales better than splitting every operation, and gives
the numbers of a one-thread run.
"""

from __future__ import annotations

import os

__all__ = ["WAIT_SETTINGS", "passive_waits", "available_cores", "set_threads"]

#: environment of OpenMP's idle threads: sleep at once instead of spinning
WAIT_SETTINGS = {"OMP_WAIT_POLICY": "PASSIVE"}


def passive_waits() -> bool:
    """Ask OpenMP for passive waits unless the environment sets a policy or a spin count.

    Returns ``False`` when torch was loaded before (OpenMP has read its settings already).
    """
    import sys

    if "GOMP_SPINCOUNT" not in os.environ:
        for key, value in WAIT_SETTINGS.items():
            os.environ.setdefault(key, value)
    return "torch" not in sys.modules


def available_cores() -> int:
    """The number of cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def set_threads(threads: int | None = 0) -> int:
    """Set torch's intra-op threads; ``0``/``None`` keeps torch's default. Returns the count in force.

    Raises :class:`~.errors.InputError` for a negative count.
    """
    import torch

    from .errors import InputError

    if threads is not None and (isinstance(threads, bool) or int(threads) != threads or threads < 0):
        raise InputError(f"threads must be an integer >= 0 (0: torch's default, a thread per core), got {threads!r}")
    if threads and int(threads) != torch.get_num_threads():
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()
