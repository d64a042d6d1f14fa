"""The output file of a command: checked, reserved in its folder before the model loads, committed last."""

from __future__ import annotations

import os
from pathlib import Path

from ..checks import InputError

__all__ = ["Output", "check_out"]


#: What each command writes, by the extension its output should have.
_OUTPUT_KIND = {"response": (".npz", "a NumPy .npz archive"), "induction": (".json", "JSON"),
                "regime": (".json", "JSON"), "section-map": (".json", "JSON"), "show": (".html", "an HTML page")}


_KNOWN_EXTENSIONS = {".npz", ".npy", ".json", ".csv", ".txt", ".pt", ".pkl", ".png", ".svg", ".html"}


def check_out(path: str, command: str) -> Path:
    """The output path must name a file in an existing folder, with an extension that fits the command."""
    if not path.strip():
        raise InputError(f"--out is empty; give a file path such as out{_OUTPUT_KIND[command][0]}")
    out = Path(path)
    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir() or path.endswith(os.sep):
        raise InputError(f"--out {path} is a directory; give a file path")
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


class Output:
    """The output file of one command: its temporary file is created in its folder now, before any
    model is loaded (:class:`~residual_response.io.OutputReservation`), so that an output that
    cannot be written fails at once; :meth:`commit` moves the result into place. Use it in a
    ``with`` block: a run that fails leaves nothing behind."""

    def __init__(self, path: str, command: str, size_hint: int = 1 << 16):
        from ..io import OutputReservation

        self.path = path
        out = check_out(path, command)
        try:
            self._reservation = OutputReservation(out, size_hint)
        except OSError as exc:
            raise InputError(f"cannot write --out {path}: {exc.strerror or exc}") from None

    def __enter__(self) -> "Output":
        return self

    def __exit__(self, *exc) -> None:
        self._reservation.discard()  # after a commit there is nothing left to remove

    def grow(self, size: int) -> None:
        """Allocate the estimated output size, so that a full disk fails before the computation."""
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


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"
