"""Where an output goes when its path already exists and is not a regular file: the rule of ``cp`` and ``dd``.

Every writer of the package replaces its output atomically (:mod:`.io`): a temporary file in the
output's folder, then ``os.replace``. That is right for a regular file and wrong for anything
else at the path: ``os.replace`` onto ``/dev/null`` turns the device into a regular file, onto a
symlink replaces the link instead of the file it points at, onto a FIFO removes the pipe its
reader waits on. So an existing path is looked at first (:func:`output_node`):

- missing, or a regular file: written atomically at the path;
- a symlink (a chain of them): followed; the file it ends at is replaced atomically in *its*
  folder, and the link stays a link; a link that ends nowhere is refused, as ``cp`` refuses to
  write through a dangling link;
- a character device (``/dev/null``, a terminal) or a FIFO: written in place, opened for writing
  as the shell's ``>`` opens it (a FIFO waits for its reader), never truncated, removed or renamed;
- anything else (a folder, a block device, a socket): refused with one sentence.

The node itself is never replaced.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

__all__ = ["OutputNodeError", "OutputNode", "output_node"]


class OutputNodeError(InputError):
    """An output path that names something no output may be written to (one sentence naming it): the
    caller's to fix, so an :class:`~.errors.InputError` (the command line's one line, exit status 2)."""


@dataclass(frozen=True)
class OutputNode:
    """Where an output path leads.

    Attributes:
        path: the path as given.
        target: where the bytes go: ``path`` itself, or the file a symlink ends at.
        in_place: a character device or FIFO, written in place (no temporary, no rename).
        exists: ``target`` exists already.
    """

    path: Path
    target: Path
    in_place: bool
    exists: bool

    @property
    def folder(self) -> Path:
        """The folder a temporary of an atomic write goes into (the target's)."""
        return self.target.parent if str(self.target.parent) else Path(".")


def _what(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def output_node(path: str | os.PathLike, *, option: str = "output") -> OutputNode:
    """Classify ``path`` by the rule of the module docstring; :class:`OutputNodeError` when refused.

    ``option`` names the path in messages (``--out`` on the command line).
    """
    path = Path(path)
    try:
        lst = os.lstat(path)
    except FileNotFoundError:
        return OutputNode(path, path, in_place=False, exists=False)
    except NotADirectoryError:
        return OutputNode(path, path, in_place=False, exists=False)  # the folder check reports it
    try:
        st = os.stat(path)  # follows links, /proc/self/fd/N included
    except FileNotFoundError:
        raise OutputNodeError(f"{option} {path} is a symlink to {os.readlink(path)}, which does not exist; "
                              f"not writing through a dangling symlink") from None
    except OSError as exc:
        raise OutputNodeError(f"{option} {path}: {exc.strerror or exc}") from None
    if stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        return OutputNode(path, path, in_place=True, exists=True)
    if stat.S_ISREG(st.st_mode):
        if not stat.S_ISLNK(lst.st_mode):
            return OutputNode(path, path, in_place=False, exists=True)
        real = Path(os.path.realpath(path))
        try:
            same = os.path.samestat(os.stat(real), st)
        except OSError:
            same = False
        # a link the kernel resolves but no path reaches (a deleted file behind /proc/self/fd/N)
        return OutputNode(path, real, in_place=False, exists=True) if same else OutputNode(path, path, True, True)
    kind = _what(st.st_mode)
    via = f" (through the symlink {path})" if stat.S_ISLNK(lst.st_mode) else ""
    give = "give a file path" if stat.S_ISDIR(st.st_mode) else "give a regular file, a character device or a FIFO"
    raise OutputNodeError(f"{option} {path} is {kind}{via}; {give}")
