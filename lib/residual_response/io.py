"""Writing files and folders so that a reader never sees half of one, and a killed run leaves nothing.

Every output of the package (the command line's ``.npz``/``.json``, the bench record, the model
cache) is written the same way: into a temporary name in the target folder, then moved into place
with ``os.replace``, which is atomic on one filesystem. Why in the target folder: a rename across
filesystems is a copy, and a copy can be cut in half.

Temporary names carry the writer's process id (``.<name>.<pid>-<random>.tmp``), so that a later
run can tell the leftovers of a killed process (whose id is gone) from the work of a live one and
remove them (:func:`remove_stale_temps`).

Modes honour the umask: ``tempfile`` creates files ``0600`` and folders ``0700`` whatever the
umask, which would make a shared cache or an output unreadable to the rest of a group.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator

__all__ = [
    "current_umask",
    "apply_umask",
    "temp_name_prefix",
    "atomic_path",
    "write_bytes_atomic",
    "write_json_atomic",
    "make_temp_dir",
    "install_dir",
    "remove_stale_temps",
    "OutputReservation",
]

_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask (read by setting and restoring it; no other portable way exists)."""
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def apply_umask(path: str | os.PathLike, *, folder: bool = False) -> None:
    """Give ``path`` the mode a plain ``open``/``mkdir`` would have given it (``0666``/``0777`` less the umask)."""
    os.chmod(path, (0o777 if folder else 0o666) & ~current_umask())


def temp_name_prefix(name: str) -> str:
    """Prefix of this process's temporary names for ``name``: ``.<name>.<pid>-``."""
    return f".{name}.{os.getpid()}-"


_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[^/]*\.tmp$")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def remove_stale_temps(folder: str | os.PathLike, name: str | None = None, *, any_pid: bool = False) -> list[Path]:
    """Remove the temporary files and folders that killed writers left in ``folder``.

    Args:
        name: only leftovers of this target name (default: of any name).
        any_pid: remove them even if their process still runs (the caller holds a lock that
            every writer of ``folder`` takes, so no live writer can own them).

    Returns:
        the paths removed.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if m is None or (name is not None and m["name"] != name):
            continue
        if not any_pid and _pid_alive(int(m["pid"])):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.remove(entry.path)
            removed.append(Path(entry.path))
    return removed


def _folder_of(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit move it onto ``path``, else remove it.

    The caller writes the temporary path (any writer that takes a path). The file is created
    empty first, with the umask's mode.
    """
    path = Path(path)
    remove_stale_temps(_folder_of(path), path.name)
    fd, tmp = tempfile.mkstemp(prefix=temp_name_prefix(path.name), suffix=".tmp", dir=_folder_of(path))
    os.close(fd)
    try:
        apply_umask(tmp)
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_bytes_atomic(path: str | os.PathLike, write: Callable[[object], None]) -> Path:
    """Call ``write(fh)`` on a binary file handle of a temporary beside ``path``, then move it into place."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
    return path


def write_json_atomic(path: str | os.PathLike, data, *, default: Callable | None = None) -> Path:
    """Write ``data`` as indented JSON (NaN refused: JSON has none) atomically to ``path``."""
    # serialise first: a value JSON cannot hold fails before any file is touched
    text = json.dumps(data, indent=1, allow_nan=False, default=default) + "\n"
    return write_bytes_atomic(path, lambda fh: fh.write(text.encode()))


def make_temp_dir(parent: str | os.PathLike, name: str) -> Path:
    """A new temporary folder in ``parent`` for building ``name`` (umask's mode; see module doc)."""
    tmp = Path(tempfile.mkdtemp(prefix=temp_name_prefix(name), suffix=".tmp", dir=parent))
    apply_umask(tmp, folder=True)
    return tmp


def install_dir(tmp: str | os.PathLike, final: str | os.PathLike) -> Path:
    """Put the finished folder ``tmp`` at ``final``, replacing any folder there; returns ``final``.

    Why this order: the old folder is first renamed aside (one atomic rename), then ``tmp`` takes
    its place (another), and only then is the old one deleted, so a reader never sees a
    half-deleted folder and a kill at any point leaves either the old or the new folder in place
    (the aside folder is a temporary that :func:`remove_stale_temps` clears later).
    """
    tmp, final = Path(tmp), Path(final)
    if final.exists():
        old = make_temp_dir(final.parent, final.name)
        os.replace(final, old / final.name)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    return final


class OutputReservation:
    """An output file claimed before the computation, written after it.

    Why: a run that computes for an hour and then finds that it cannot write its output (a
    missing folder, a read-only or pseudo filesystem, a full disk) has wasted the hour. The
    reservation creates the temporary file in the target folder at once and allocates
    ``size_hint`` bytes on disk, so that these faults show up before any work; :meth:`commit`
    writes into the allocated space and renames, :meth:`discard` removes the temporary.

    Raises ``OSError`` from the constructor when the file cannot be created or the space
    cannot be allocated.
    """

    def __init__(self, path: str | os.PathLike, size_hint: int = 0):
        self.path = Path(path)
        folder = _folder_of(self.path)
        remove_stale_temps(folder, self.path.name)
        fd, tmp = tempfile.mkstemp(prefix=temp_name_prefix(self.path.name), suffix=".tmp", dir=folder)
        self.tmp = Path(tmp)
        try:
            apply_umask(tmp)
            if size_hint > 0:
                try:
                    os.posix_fallocate(fd, 0, int(size_hint))
                except OSError as exc:
                    if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                        raise
        except BaseException:
            os.close(fd)
            self.discard()
            raise
        os.close(fd)

    def commit(self, write: Callable[[object], None]) -> Path:
        """Call ``write(fh)`` on the reserved file (from its start), cut it to what was written, rename."""
        try:
            with open(self.tmp, "r+b") as fh:
                write(fh)
                fh.truncate()
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(self.tmp, self.path)
        except BaseException:
            self.discard()
            raise
        return self.path

    def commit_json(self, data, *, default: Callable | None = None) -> Path:
        text = json.dumps(data, indent=1, allow_nan=False, default=default) + "\n"
        return self.commit(lambda fh: fh.write(text.encode()))

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            os.remove(self.tmp)


@contextlib.contextmanager
def entry_lock(folder: str | os.PathLike):
    """Hold an exclusive ``fcntl`` lock on ``.<entry>.lock`` beside ``folder`` (builds and checks).

    Why: two processes that find an entry missing would otherwise build it at once, and one
    could rename its copy over the other while a third reads it.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock_path = folder.parent / f".{folder.name}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
