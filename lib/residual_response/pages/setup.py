"""What a book page runs in: offline charts, and no progress bars or library chatter in its cells.

Why a context manager and not a patch installed on import: the page's set-up used to replace
tqdm's ``__init__`` for the whole kernel, so every later bar of the process (a test of the
library's own progress bar, say) was silenced as well. :func:`quiet_progress` scopes the same
quiet to a ``with`` block and undoes it in ``finally``; :func:`page_setup` wraps each cell of a
page in it, through IPython's ``pre_run_cell`` and ``post_run_cell`` events.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import warnings
from typing import Any, Iterator

from .plots.render import enable_offline_charts

__all__ = ["GGUF_TQDM_MODULES", "page_setup", "quiet_progress", "short_warning"]

#: modules of transformers that draw their own GGUF de-quantisation bar (quiet_progress silences them)
GGUF_TQDM_MODULES = ("transformers.modeling_gguf_pytorch_utils", "transformers.integrations.ggml")
#: loggers whose download and conversion chatter a page does not show
_LOGGERS = ("transformers", "huggingface_hub", "accelerate")
#: warnings a page does not show: ipywidgets is absent on purpose, and panels of one figure share
#: their legend-selection and zoom parameters on purpose
_QUIET_WARNINGS = ("IProgress not found", "Automatically deduplicated selection parameter")


def _set_attr(stack: contextlib.ExitStack, obj: Any, name: str, value: Any) -> None:
    """``obj.name = value`` until ``stack`` closes."""
    old = getattr(obj, name)
    setattr(obj, name, value)
    stack.callback(setattr, obj, name, old)


def _quiet_tqdm(stack: contextlib.ExitStack) -> None:
    """Every tqdm bar disabled, whatever module made it: subclasses (tqdm.auto, tqdm.notebook) call
    ``tqdm.std.tqdm.__init__``, and the GGUF modules hold a ``tqdm`` of their own."""
    try:
        import tqdm.auto
        import tqdm.std
    except ImportError:
        return
    original_init = tqdm.std.tqdm.__init__

    @functools.wraps(original_init)
    def quiet_init(self, *args, **kwargs):
        kwargs["disable"] = True
        original_init(self, *args, **kwargs)

    _set_attr(stack, tqdm.std.tqdm, "__init__", quiet_init)
    quiet = functools.partial(tqdm.auto.tqdm, disable=True)
    for module_name in GGUF_TQDM_MODULES:
        try:
            module = __import__(module_name, fromlist=["tqdm"])
        except ImportError:
            continue
        if hasattr(module, "tqdm"):
            _set_attr(stack, module, "tqdm", quiet)


def _quiet_transformers(stack: contextlib.ExitStack) -> None:
    """transformers' own bars off and its logging at ERROR, as they were afterwards."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    bars_on, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    stack.callback(hf_logging.set_verbosity, verbosity)
    if bars_on:
        stack.callback(hf_logging.enable_progress_bar)


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
    """No progress bar and no library chatter inside the ``with`` block; everything restored after.

    Warnings still show, as one line each (:func:`short_warning`).

    Why each step: the GGUF stand-ins are de-quantised by ``transformers`` under a ``tqdm`` bar
    that would land in the page as a stream of carriage returns (and, without ipywidgets, as an
    "IProgress not found" warning and an empty output box); the toy model's training draws one
    too; ``transformers``/``huggingface_hub`` log download and conversion progress.
    """
    with contextlib.ExitStack() as stack:
        for var in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS"):
            stack.callback(_restore_env, var, os.environ.get(var))
            os.environ[var] = "1"
        stack.enter_context(warnings.catch_warnings())
        for message in _QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        _set_attr(stack, warnings, "formatwarning", short_warning)
        _quiet_tqdm(stack)
        _quiet_transformers(stack)
        for name in _LOGGERS:
            logger = logging.getLogger(name)
            stack.callback(logger.setLevel, logger.level)
            logger.setLevel(logging.ERROR)
        yield


def short_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as a page shows it: its kind and its sentence, without the file and line that raised it.

    Why: in a notebook the file is the kernel's temporary copy of the cell (``/tmp/ipykernel_.../3.py``),
    a path that says nothing to a reader and changes with every run.
    """
    return f"{category.__name__}: {message}\n"


def _restore_env(var: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(var, None)
    else:
        os.environ[var] = value


def page_setup(shell: Any = None) -> None:
    """Prepare a book page: offline charts on, and every cell run inside :func:`quiet_progress`.

    ``shell`` is the IPython shell (default: the running one; outside IPython only the charts are
    set up). The cell that calls this is quieted from here to its end; later cells from their
    start to their end. Calling it again changes nothing. Returns ``None`` on purpose, so that a
    set-up cell ending with this call prints nothing.
    """
    enable_offline_charts()
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return
        shell = get_ipython()
    if shell is None or getattr(shell, "_residual_response_quiet_cells", False):
        return
    open_blocks: list[contextlib.AbstractContextManager] = []

    def enter(*_event) -> None:
        block = quiet_progress()
        block.__enter__()
        open_blocks.append(block)

    def leave(*_event) -> None:
        while open_blocks:
            open_blocks.pop().__exit__(None, None, None)

    shell.events.register("pre_run_cell", enter)
    shell.events.register("post_run_cell", leave)
    shell._residual_response_quiet_cells = True
    enter()  # the rest of the cell that runs this set-up
