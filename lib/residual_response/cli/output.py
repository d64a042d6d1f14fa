"""The output file of a command: checked, reserved in its folder before the model loads, committed last."""

from __future__ import annotations

import os
from pathlib import Path

from ..checks import InputError
from ..memory import human_bytes as _human_bytes

__all__ = ["Output", "check_out", "out_in_place"]


#: What each command writes, by the extension its output should have.
_OUTPUT_KIND = {"response": (".npz", "a NumPy .npz archive"), "induction": (".json", "JSON"),
                "regime": (".json", "JSON"), "section-map": (".json", "JSON"), "show": (".html", "an HTML page")}


_KNOWN_EXTENSIONS = {".npz", ".npy", ".json", ".csv", ".txt", ".pt", ".pkl", ".png", ".svg", ".html"}


def check_out(path: str, command: str) -> Path:
    """The output path must name a file in an existing folder, with an extension that fits the command.

    An existing path that is no regular file follows the rule of ``cp`` (:mod:`..outputs`): a
    character device or FIFO is written in place (``--out /dev/null`` discards the output), a
    symlink is followed to the file it ends at, anything else is refused
    (:class:`~..outputs.OutputNodeError`, an :class:`InputError`).
    """
    from ..outputs import output_node

    if not path.strip():
        raise InputError(f"--out is empty; give a file path such as out{_OUTPUT_KIND[command][0]}")
    out = Path(path)
    if path.endswith(os.sep) and not out.is_dir():
        raise InputError(f"--out {path} ends in {os.sep}, a folder's name; give a file path")
    node = output_node(out, option="--out")
    if node.in_place:
        if not os.access(out, os.W_OK):
            raise InputError(f"cannot write --out {path}: permission denied")
        return out
    folder = node.folder
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise InputError(f"cannot write --out {path}: folder {folder} {what}")
    if not os.access(folder, os.W_OK):
        raise InputError(f"cannot write --out {path}: folder {folder} is not writable")
    ext, kind = _OUTPUT_KIND[command]
    suffix = out.suffix.lower()
    if suffix in _KNOWN_EXTENSIONS and suffix != ext:
        raise InputError(f"--out {path}: `{command}` writes {kind}, not {suffix}; give a path ending in {ext}")
    return out


def out_in_place(path) -> bool:
    """Whether ``path`` names a character device or FIFO (written in place, :mod:`..outputs`);
    ``False`` for a path :func:`check_out` refuses (it says why)."""
    from ..outputs import OutputNodeError, output_node

    if not path or not str(path).strip():
        return False
    try:
        return output_node(path).in_place
    except OutputNodeError:
        return False


class Output:
    """The output file of one command: its temporary file is created in its folder now, before any
    model is loaded (:class:`~residual_response.io.OutputReservation`), so that an output that
    cannot be written fails at once; :meth:`commit` moves the result into place. Use it in a
    ``with`` block: a run that fails leaves nothing behind.

    A character device or FIFO at the path is opened here and written in place by the commit (no
    temporary, nothing to allocate; a FIFO waits for its reader, as the shell's ``>`` does)."""

    def __init__(self, path: str, command: str, size_hint: int = 1 << 16):
        from ..io import OutputReservation

        self.path = path
        out = check_out(path, command)
        try:
            self._reservation = OutputReservation(out, size_hint)
        except InputError:  # outputs.OutputNodeError: the node changed since the check
            raise
        except OSError as exc:
            raise InputError(f"cannot write --out {path}: {exc.strerror or exc}") from None

    def __enter__(self) -> "Output":
        return self

    def __exit__(self, *exc) -> None:
        self._reservation.discard()  # after a commit there is nothing left to remove

    def grow(self, size: int) -> None:
        """Allocate the estimated output size, so that a full disk fails before the computation."""
        if self._reservation.in_place:  # a device or FIFO: nothing to allocate
            return
        try:
            with open(self._reservation.tmp, "r+b") as fh:
                os.posix_fallocate(fh.fileno(), 0, max(int(size), 1))
        except OSError as exc:
            import errno

            if exc.errno in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                return
            raise InputError(f"cannot write --out {self.path}: {exc.strerror or exc} "
                             f"(the output needs about {_human_bytes(size)})") from None

    def commit(self, write=None, data=None) -> None:
        """Write the result into the reserved file and move it into place; one error line if that fails."""
        try:
            if write is not None:
                self._reservation.commit(write)
            else:
                self._reservation.commit_json(data)
        except OSError as exc:
            raise InputError(f"cannot write --out {self.path}: {exc.strerror or exc}") from None
