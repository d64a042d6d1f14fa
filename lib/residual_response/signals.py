"""SIGTERM and SIGHUP end a run the way Ctrl-C does: cleanup, one line, exit status 128 + signal.

Python turns SIGINT into :class:`KeyboardInterrupt`, so every ``finally`` and ``except
BaseException`` of the package (reserved outputs, half-built cache folders, the toy's training
child) cleans up after Ctrl-C. SIGTERM, which ``timeout``, ``kill``, Slurm and ``docker stop``
send, and SIGHUP (a closed terminal) kill the process at once by default, leaving every
temporary behind. :func:`terminate_as_interrupt` installs handlers that raise
:class:`Terminated`, a :class:`KeyboardInterrupt` that remembers its signal, so the same cleanup
runs; the command line then prints one ``error:`` line and exits ``128 + signal``
(:func:`exit_status`, :func:`describe`).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

__all__ = ["HANDLED", "Terminated", "terminate_as_interrupt", "exit_status", "describe"]

#: The signals handled like SIGINT.
HANDLED = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)


class Terminated(KeyboardInterrupt):
    """The run received ``signum`` (SIGTERM or SIGHUP); raised where the main thread was."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = int(signum)

    def __str__(self) -> str:
        return f"terminated by {signal.Signals(self.signum).name}"


def _raise(signum, frame):
    raise Terminated(signum)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated`; the old handlers come back after.

    Only the main thread may install handlers; elsewhere the block changes nothing. A signal
    whose disposition is "ignore" (``nohup`` ignores SIGHUP) stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {}
    try:
        for sig in HANDLED:
            current = signal.getsignal(sig)
            if current is signal.SIG_IGN:
                continue
            old[sig] = signal.signal(sig, _raise)
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def signal_of(exc: BaseException) -> int:
    """The signal behind an interrupt: ``exc.signum`` of :class:`Terminated`, else SIGINT."""
    return getattr(exc, "signum", signal.SIGINT)


def exit_status(exc: BaseException) -> int:
    """``128 + signal``: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP."""
    return 128 + int(signal_of(exc))


def describe(exc: BaseException) -> str:
    """The words of the ``error:`` line: ``interrupted`` (SIGINT) or ``terminated by SIGTERM``."""
    sig = signal_of(exc)
    return "interrupted" if sig == signal.SIGINT else f"terminated by {signal.Signals(sig).name}"
