"""One compute command, run one way: :func:`run_job`.

Why: ``response``, ``induction``, ``regime`` and ``section-map`` each repeated the same eight steps
(reserve the output, load the model, validate, estimate, progress bar, compute, provenance,
commit), and state was stashed on the argparse namespace. A :class:`Job` names only what differs;
:func:`run_job` does the rest, in one order, for every command.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

from ..checks import InputError
from .estimate import check_size
from .output import Output

__all__ = ["Run", "Job", "run_job"]


@dataclass(frozen=True)
class Run:
    """One invocation of the command line: its parsed arguments, its ``argv`` and the clock that
    started with it (the provenance block records both)."""

    args: argparse.Namespace
    argv: list[str]
    clock: Any  # provenance.RunClock


@dataclass(frozen=True)
class Job:
    """What one compute command does that the others do not.

    Attributes:
        label: the progress bar's label (after the model's name).
        prepare: ``(lm, args) -> setting``: the command's validated, frozen setting for this model
            (the library's own validation, once).
        cost: ``(lm, setting) -> (what, memory bytes, seconds, output bytes or None)``: the estimate
            (:mod:`residual_response.cost`) and, when known, the size to allocate for the output.
        compute: ``(lm, setting, bar) -> result``: the computation on the validated setting.
        resolved: ``result -> dict``: what the run resolved, added to the provenance's parameters.
        write: ``(result, output)``: commit the result (:meth:`.output.Output.commit`).
        done: ``result -> str``: the end of the status line after ``wrote OUT``.
        refuse: ``args -> None``: checks that need no model, before anything is reserved.
    """

    label: str
    prepare: Callable
    cost: Callable
    compute: Callable
    resolved: Callable
    write: Callable
    done: Callable = lambda result: ""
    refuse: Callable = lambda args: None


def run_job(run: Run, job: Job) -> int:
    """Refuse, reserve the output, load, validate, estimate, compute under one bar, record the
    provenance, commit; every failure of the user's input is one :class:`InputError`."""
    args = run.args
    job.refuse(args)
    with Output(args.out, args.command) as output:  # before any model loads; removed if anything fails
        lm = load(args)
        setting = job.prepare(lm, args)
        what, memory, seconds, size = job.cost(lm, setting)
        check_size(what, memory, seconds)
        if size:
            output.grow(size)
        with progress_bar(args, f"{lm.name} {job.label}") as bar:
            result = job.compute(lm, setting, bar)
        result.provenance = provenance(lm, run, **job.resolved(result))
        job.write(result, output)
    status(args, f"wrote {args.out}{job.done(result)}")
    return 0


def load(args):
    """The model of ``--model``, loaded with one status line (on a terminal) instead of a bar per tensor."""
    from ..models import ModelUnavailableError, load_model, validate_cache_dir
    from ..progress import quiet_model_loading
    from ..threads import set_threads

    validate_cache_dir()
    set_threads(getattr(args, "threads", 0))  # before the model loads; the provenance block records the count
    if not (args.quiet or args.no_progress) and sys.stderr.isatty():  # progress, like the bar: terminals only
        print(f"loading {args.model} ({args.dtype}, {args.device_map or args.device})", file=sys.stderr)
    try:  # one line, not a bar per tensor; nor a bar from a cache build with --quiet/--no-progress
        with quiet_model_loading(), _bars_off(args.quiet or args.no_progress):
            return load_model(args.model, device=args.device, dtype=args.dtype, device_map=args.device_map)
    except ModelUnavailableError as exc:  # the machine lacks the weights: the user's to fix, one line
        raise InputError(str(exc)) from None


@contextlib.contextmanager
def _bars_off(off: bool):
    """``TQDM_DISABLE=1`` for a ``with`` block when ``off``: no bar from a cache build either (the toy's
    training runs in a child process, which inherits it)."""
    if not off:
        yield
        return
    old = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = old


def progress_bar(args, desc: str):
    """The job's one progress bar: on a terminal's stderr only, none with --quiet/--no-progress."""
    from ..progress import Progress

    return Progress(desc, enabled=False if (args.quiet or args.no_progress) else None)


def provenance(lm, run: Run, **extra) -> dict:
    """The provenance block of this run: every argument, plus what the run resolved (``extra``)."""
    from ..provenance import collect

    params = {k: v for k, v in vars(run.args).items() if k not in ("command", "quiet", "no_progress")}
    params.update(extra)
    return collect(lm, params, command=["residual-response", *run.argv], clock=run.clock)


def status(args, message: str) -> None:
    """One status line on stderr, unless ``--quiet``."""
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr)
