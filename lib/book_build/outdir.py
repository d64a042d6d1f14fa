"""The build's ``--out`` folder: checked before anything runs, and left as it was found when the build
is refused (exit 2) or interrupted.

A build writes ``src/`` (the converted notebooks), ``stage/`` (the executed pages and the HTML),
``student-filled/`` (the student notebooks with their stubs filled, for the tests), ``timings.json``
and ``jupyter-book.log`` into ``--out``. A rerun that a page refuses (a
``--param`` value out of range) is only known to be refused once that page's first cell has run,
after ``src/`` and ``stage/`` exist; without care it would leave them behind, and would have
deleted the ``stage/`` of the previous build. So the previous build's entries are moved aside
(into a temporary folder inside ``--out``, one rename each) when the build starts; a refused or
interrupted build removes what it wrote and moves them back, any other end discards them
(a failed build keeps its executed notebooks for reading, as before).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from .config import UsageError
from .student import FILLED_DIR

__all__ = ["OutDir", "OWNED"]

#: What a build writes into ``--out``.
OWNED = ("src", "stage", FILLED_DIR, "timings.json", "jupyter-book.log")


def _first_missing(path: Path) -> Path | None:
    """The highest folder of ``path`` (itself included) that does not exist yet, or ``None``."""
    missing = None
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            break
        missing = p
    return missing


class OutDir:
    """``--out``, checked (:meth:`open`), its earlier build moved aside, restorable (:meth:`restore`)."""

    def __init__(self, out: Path):
        self.out = out
        self.created: Path | None = None  # the folder this build created (out or an ancestor)
        self.aside: Path | None = None
        self.moved: list[str] = []

    def open(self) -> "OutDir":
        """Check ``--out`` and create it; move an earlier build's entries aside. ``UsageError`` (one
        sentence) when ``--out`` cannot be a folder this process writes."""
        out = self.out
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out} is not a folder; give a folder for the build")
        for p in out.parents:
            if p.exists():
                if not p.is_dir():
                    raise UsageError(f"cannot use --out {out}: {p} is not a folder")
                break
        self.created = _first_missing(out)
        try:
            out.mkdir(parents=True, exist_ok=True)
            from residual_response.io import remove_stale_temps

            remove_stale_temps(out, "build")  # what a killed build moved aside
            probe = tempfile.mkdtemp(prefix=f".build.{os.getpid()}-", suffix=".tmp", dir=out)
        except OSError as exc:
            self._remove_created()
            raise UsageError(f"cannot use --out {out}: {exc.strerror or exc}") from None
        self.aside = Path(probe)  # also the proof that the folder is writable
        for name in OWNED:
            if (out / name).exists() or (out / name).is_symlink():
                os.replace(out / name, self.aside / name)
                self.moved.append(name)
        return self

    def _remove_created(self) -> None:
        if self.created is not None:
            shutil.rmtree(self.created, ignore_errors=True)
            self.created = None

    def restore(self) -> None:
        """Put ``--out`` back as :meth:`open` found it: what this build wrote removed, the earlier
        build's entries back in place, a folder this build created removed."""
        for name in OWNED:
            target = self.out / name
            with contextlib.suppress(FileNotFoundError):
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                else:
                    target.unlink()
        if self.aside is not None:
            for name in self.moved:
                os.replace(self.aside / name, self.out / name)
            shutil.rmtree(self.aside, ignore_errors=True)
            self.aside = None
        self._remove_created()

    def discard(self) -> None:
        """The build ran (done or failed): the earlier build's entries go."""
        if self.aside is not None:
            shutil.rmtree(self.aside, ignore_errors=True)
            self.aside = None
