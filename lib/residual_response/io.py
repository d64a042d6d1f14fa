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

An output path that exists and is not a regular file follows the rule of :mod:`.outputs` (the
rule of ``cp`` and ``dd``): a symlink is followed and the file it ends at replaced; a character
device or FIFO is written in place; anything else is refused. The node is never replaced.

Cache entries are built under a lock (:func:`entry_lock`); a process that finds it held says so
once, on stderr, and gives up after :func:`lock_timeout` seconds.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from .errors import InputError
from .outputs import OutputNodeError, output_node

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
    "OutputNodeError",
    "LockTimeoutError",
    "entry_lock",
    "lock_timeout",
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
    empty first, with the umask's mode. A symlink at ``path`` is followed (the file it ends at is
    replaced); a character device or FIFO is yielded itself, to be written in place (:mod:`.outputs`).
    """
    node = output_node(path)
    if node.in_place:
        yield node.path
        return
    path = node.target
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


def _write_in_place(path: Path, write: Callable[[object], None]) -> None:
    """Write a character device or FIFO where it is: opened as the shell's ``>`` opens it (a FIFO
    waits for its reader), never created, renamed or removed (:mod:`.outputs`)."""
    fd = os.open(path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
    with open(fd, "wb") as fh:
        _write_and_trim(fh, write)


def _write_and_trim(fh, write: Callable[[object], None]) -> None:
    """``write(fh)``, then flush; a regular file is cut where the writing ended and synced."""
    write(fh)
    fh.flush()
    if stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
        fh.truncate()
        os.fsync(fh.fileno())


def write_bytes_atomic(path: str | os.PathLike, write: Callable[[object], None]) -> Path:
    """Call ``write(fh)`` on a binary file handle of a temporary beside ``path``, then move it into place.

    A symlink is followed; a character device or FIFO is written in place (:mod:`.outputs`).
    """
    path = Path(path)
    node = output_node(path)
    if node.in_place:
        _write_in_place(node.path, write)
        return path
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

    A symlink at ``path`` is followed: the temporary goes beside the file it ends at, which the
    commit replaces. A character device or FIFO is opened for writing here (``in_place``; a FIFO
    waits for its reader, as the shell's ``>`` does) and written by the commit, with no
    temporary; the node is never replaced (:mod:`.outputs`).

    Raises ``OSError`` from the constructor when the file cannot be created or the space
    cannot be allocated, :class:`~.outputs.OutputNodeError` when ``path`` names something no
    output may be written to.
    """

    def __init__(self, path: str | os.PathLike, size_hint: int = 0):
        self.path = Path(path)
        self.tmp: Path | None = None
        self._fh = None
        node = output_node(self.path)
        self.in_place = node.in_place
        if node.in_place:
            fd = os.open(node.path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
            self._fh = open(fd, "wb")
            return
        self.target = node.target
        folder = _folder_of(self.target)
        remove_stale_temps(folder, self.target.name)
        fd, tmp = tempfile.mkstemp(prefix=temp_name_prefix(self.target.name), suffix=".tmp", dir=folder)
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
            if self.in_place:
                with self._fh as fh:
                    _write_and_trim(fh, write)
                self._fh = None
                return self.path
            with open(self.tmp, "r+b") as fh:
                write(fh)
                fh.truncate()
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(self.tmp, self.target)
        except BaseException:
            self.discard()
            raise
        return self.path

    def commit_json(self, data, *, default: Callable | None = None) -> Path:
        text = json.dumps(data, indent=1, allow_nan=False, default=default) + "\n"
        return self.commit(lambda fh: fh.write(text.encode()))

    def discard(self) -> None:
        """Remove the temporary (close a device or FIFO unwritten); nothing to do after a commit."""
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                os.remove(self.tmp)


#: Environment variable: seconds a process waits for a cache entry another process holds.
LOCK_TIMEOUT_ENV = "RESIDUAL_RESPONSE_LOCK_TIMEOUT"

#: Default of :data:`LOCK_TIMEOUT_ENV`: longer than the slowest build (training the toy model, or
#: de-quantising Gemma 3, on a busy machine), short enough that a hung holder is noticed.
DEFAULT_LOCK_TIMEOUT = 600.0


class LockTimeoutError(TimeoutError):
    """Another process held a cache entry's lock for longer than :func:`lock_timeout`."""

    def __str__(self) -> str:  # the message alone, without an errno prefix
        return self.args[0] if self.args else "timed out waiting for a lock"


def lock_timeout() -> float:
    """Seconds to wait for a held cache lock: ``$RESIDUAL_RESPONSE_LOCK_TIMEOUT``, default 600."""
    text = os.environ.get(LOCK_TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_LOCK_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:  # NaN, negative
        raise InputError(f"{LOCK_TIMEOUT_ENV}={text!r} must be a number of seconds >= 0")
    return value


def _holder(fd: int) -> str:
    """The pid the lock file records (its holder writes it), as words for a message."""
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 32, 0).decode().strip()
        if text.isdigit():
            return f"pid {int(text)}"
    return "another process"


@contextlib.contextmanager
def entry_lock(folder: str | os.PathLike, *, timeout: float | None = None, wait: bool = True):
    """Hold an exclusive ``fcntl`` lock on ``.<entry>.lock`` beside ``folder`` (builds and checks).

    Why: two processes that find an entry missing would otherwise build it at once, and one
    could rename its copy over the other while a third reads it.

    A lock held by another process is waited for with one line on stderr, printed once
    ("waiting for the cache entry ... held by pid N"); after ``timeout`` seconds (default
    :func:`lock_timeout`) :class:`LockTimeoutError` says who holds it and how to wait longer.
    The holder's pid is written into the lock file. ``wait=False`` raises :class:`LockTimeoutError`
    at once, silently, when the lock is held (for work that can be left to a later run).
    """
    folder = Path(folder)
    limit = lock_timeout() if timeout is None else float(timeout)
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock_path = folder.parent / f".{folder.name}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise LockTimeoutError(f"the cache entry {folder} is held by {_holder(fd)}") from None
            holder = _holder(fd)
            print(f"waiting for the cache entry {folder} held by {holder} (up to {limit:g} s; "
                  f"{LOCK_TIMEOUT_ENV} sets the bound)", file=sys.stderr, flush=True)
            deadline = time.monotonic() + limit
            while True:
                time.sleep(min(0.2, max(deadline - time.monotonic(), 0.0)))
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockTimeoutError(
                            f"gave up after {limit:g} s waiting for the cache entry {folder}, held by "
                            f"{_holder(fd)}; let that run finish, or set {LOCK_TIMEOUT_ENV} to wait longer "
                            f"(remove {lock_path} only if no such process runs)") from None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
