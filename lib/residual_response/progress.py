"""One progress bar per job, with a total from the batch plan and an ETA.

A job (a section map, the induction scores of several seeds) runs many :func:`response` calls,
each cut into forward passes by the batch planner. A bar per call gives a wall of bars with no
total; one :class:`Progress` object passed down through the calls gives one bar whose total is
the number of planned passes of the whole job, so its ETA means something.

Totals nest: a job declares the passes it plans with :meth:`Progress.expect` (a ``with``
block); a call inside it declares its own, which are then already counted and only checked
(a call that plans more than the job foresaw adds the difference). The engine therefore always
declares its plan, and a lone call gets a correct total too.

The bar is drawn on stderr, and only when stderr is a terminal: a notebook page, a log file or
a result never receives it. ``enabled=False`` (the command line's ``--quiet``) silences it.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator, TextIO

from .checks import InputError

__all__ = ["Progress", "as_progress", "quiet_model_loading"]


class Progress:
    """A single bar over the forward passes of a job.

    Args:
        desc: label in front of the bar.
        enabled: draw the bar; ``None`` (default): only when ``stream`` is a terminal.
        stream: where to draw (default ``sys.stderr``).
    """

    def __init__(self, desc: str = "", *, enabled: bool | None = None, stream: TextIO | None = None):
        self.stream = sys.stderr if stream is None else stream
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = bool(enabled)
        self.desc = desc
        self.total = 0
        self.done = 0
        self._open: list[list[int]] = []  # remaining passes of each open expect() block, outermost first
        self._bar = None

    def _draw(self):
        if not self.enabled:
            return None
        if self._bar is None:
            from tqdm.std import tqdm  # the terminal bar; tqdm.auto would draw a widget in a notebook

            self._bar = tqdm(total=self.total, desc=self.desc or None, unit="pass", file=self.stream,
                             dynamic_ncols=True, leave=True)
        return self._bar

    @contextlib.contextmanager
    def expect(self, n: int) -> Iterator["Progress"]:
        """Declare ``n`` planned passes for the block (counted once, whatever the nesting)."""
        n = int(n)
        if n < 0:
            raise InputError(f"expected passes must be >= 0, got {n}")
        if self._open:
            parent = self._open[-1]
            covered = min(n, parent[0])
            parent[0] -= covered
            self.total += n - covered
        else:
            self.total += n
        bar = self._draw()
        if bar is not None and bar.total != self.total:
            bar.total = self.total
            bar.refresh()
        self._open.append([n])
        try:
            yield self
        finally:
            self._open.pop()

    def update(self, n: int = 1) -> None:
        """``n`` passes done."""
        self.done += n
        bar = self._draw()
        if bar is not None:
            bar.update(n)

    def set_description(self, desc: str) -> None:
        self.desc = desc
        if self._bar is not None:
            self._bar.set_description(desc, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def as_progress(progress: "bool | Progress | None", desc: str = "") -> Iterator[Progress]:
    """The :class:`Progress` of a call: the one passed in, or a new one closed at the end.

    ``progress`` is a :class:`Progress` (a job's bar, shared), ``True`` (a bar of this call, on
    a terminal only) or ``False``/``None`` (no bar; a silent object that still counts).
    """
    if isinstance(progress, Progress):
        yield progress
        return
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool or a Progress, got {type(progress).__name__}")
    bar = Progress(desc, enabled=None if progress else False)
    try:
        yield bar
    finally:
        bar.close()


@contextlib.contextmanager
def quiet_model_loading() -> Iterator[None]:
    """Silence the bars of model loading for a ``with`` block: transformers' own and the GGUF
    de-quantisation bar (which transformers draws without asking its progress switch).

    Why: loading is one step of a job; its per-tensor bars would bury the job's single bar. The
    patch is scoped to the block and undone in ``finally``.
    """
    import functools

    from .models import quiet_hf_progress

    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except Exception:  # gguf support absent: nothing to silence there
        gguf_utils = None
    original = getattr(gguf_utils, "tqdm", None)
    with quiet_hf_progress():
        if original is not None:
            gguf_utils.tqdm = functools.partial(original, disable=True)
        try:
            yield
        finally:
            if original is not None:
                gguf_utils.tqdm = original
