"""The output file of a command: checked, reserved in its folder before the model loads, committed last."""

from __future__ import annotations

import os
from pathlib import Path

from ..memory import human_bytes as _human_bytes
from .parser import CLIError

__all__: list[str] = []


#: What each command writes, by the extension its output should have.
_OUTPUT_KIND = {"response": (".npz", "a NumPy .npz archive"), "induction": (".json", "JSON"),
                "regime": (".json", "JSON"), "section-map": (".json", "JSON"), "show": (".html", "an HTML page")}


_KNOWN_EXTENSIONS = {".npz", ".npy", ".json", ".csv", ".txt", ".pt", ".pkl", ".png", ".svg", ".html"}


def _check_out(path: str, command: str) -> Path:
    """The output path must name a file in an existing folder, with an extension that fits the command.

    An existing path that is no regular file follows the rule of ``cp`` (:mod:`..outputs`): a
    character device or FIFO is written in place (``--out /dev/null`` discards the output), a
    symlink is followed to the file it ends at, anything else is refused.
    """
    from ..outputs import OutputNodeError, output_node

    if not path.strip():
        raise CLIError(f"--out is empty; give a file path such as out{_OUTPUT_KIND[command][0]}")
    out = Path(path)
    if path.endswith(os.sep) and not out.is_dir():
        raise CLIError(f"--out {path} ends in {os.sep}, a folder's name; give a file path")
    try:
        node = output_node(out, option="--out")
    except OutputNodeError as exc:
        raise CLIError(str(exc)) from None
    if node.in_place:
        if not os.access(out, os.W_OK):
            raise CLIError(f"cannot write --out {path}: permission denied")
        return out
    folder = node.folder
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise CLIError(f"cannot write --out {path}: folder {folder} {what}")
    if not os.access(folder, os.W_OK):
        raise CLIError(f"cannot write --out {path}: folder {folder} is not writable")
    ext, kind = _OUTPUT_KIND[command]
    suffix = out.suffix.lower()
    if suffix in _KNOWN_EXTENSIONS and suffix != ext:
        raise CLIError(f"--out {path}: `{command}` writes {kind}, not {suffix}; give a path ending in {ext}")
    return out


def _reserve(args, size_hint: int = 1 << 16):
    """Create the output's temporary file in its folder now, before any model is loaded (see io.OutputReservation)."""
    from ..io import OutputReservation
    from ..outputs import OutputNodeError

    out = _check_out(args.out, args.command)
    try:
        res = OutputReservation(out, size_hint)
    except OutputNodeError as exc:
        raise CLIError(str(exc)) from None
    except OSError as exc:
        raise CLIError(f"cannot write --out {args.out}: {exc.strerror or exc}") from None
    args._reservation = res
    return res


def _grow(args, res, size: int) -> None:
    """Allocate the estimated output size, so that a full disk fails before the computation."""
    if res.in_place:  # a device or FIFO: nothing to allocate
        return
    try:
        with open(res.tmp, "r+b") as fh:
            os.posix_fallocate(fh.fileno(), 0, max(int(size), 1))
    except OSError as exc:
        import errno

        if exc.errno in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return
        raise CLIError(f"cannot write --out {args.out}: {exc.strerror or exc} "
                       f"(the output needs about {_human_bytes(size)})") from None


def _commit(args, res, write=None, data=None) -> None:
    """Write the result into the reserved file and move it into place; one error line if that fails."""
    try:
        if write is not None:
            res.commit(write)
        else:
            res.commit_json(data)
    except OSError as exc:
        raise CLIError(f"cannot write --out {args.out}: {exc.strerror or exc}") from None
