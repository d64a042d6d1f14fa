"""The model cache: its folder, and the record that says an entry is complete and undamaged.

Why cache: transformers de-quantises a GGUF file tensor by tensor, which takes tens of seconds
(over a minute for Gemma 3's 262k-token embedding), and the toy model is trained. Both are done
once and kept under :func:`cache_dir`; every entry records the size and sha256 of its files
(``MANIFEST.json``), so that a damaged entry is found and rebuilt instead of loaded. A cache
entry that is one file (the assembled Gemma GGUF, a results file such as
``results/headline-<model>.json``) has its record beside it, ``<file>.manifest``.

A verified entry is read without a lock, so a shared cache on a read-only mount works; only a
build takes the entry's lock (:func:`building`), and a build that fails says why in words that
name the cause (:func:`build_failure`): a full disk, a folder that cannot be written, a damaged
source, never "free space" for everything.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Iterator

from ..errors import InputError
from ..io import entry_lock, remove_stale_temps, write_json_atomic

__all__ = ["MANIFEST", "CacheRepairWarning", "cache_dir", "validate_cache_dir", "verify_cache_entry",
           "write_cache_manifest", "verify_cache_file", "write_file_manifest", "file_manifest_path",
           "building", "build_failure", "tidy_entry"]


class CacheRepairWarning(UserWarning):
    """A damaged cache entry was found and is being rebuilt."""


def cache_dir() -> Path:
    """Folder for de-quantised weights and trained toy models.

    ``$RESIDUAL_RESPONSE_CACHE`` if set, else ``~/.cache/residual_response``.
    """
    root = os.environ.get("RESIDUAL_RESPONSE_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "residual_response"


def validate_cache_dir() -> Path:
    """:func:`cache_dir`, refused with one sentence if it (or a folder above it) is not a folder.

    Why up front: otherwise the first ``mkdir`` inside a model build fails with a bare
    ``NotADirectoryError`` after the work has started.
    """
    root = cache_dir()
    env = "RESIDUAL_RESPONSE_CACHE" if os.environ.get("RESIDUAL_RESPONSE_CACHE") else "the cache folder"
    for p in (root, *root.parents):
        if p.exists():
            if not p.is_dir():
                where = "" if p == root else f" ({p} is a file)"
                raise InputError(f"{env}={root} is not a folder{where}; point RESIDUAL_RESPONSE_CACHE at a folder "
                                 f"or unset it to use ~/.cache/residual_response")
            break
    return root


# --- cache integrity ----------------------------------------------------------------------------

#: Name of the record of an entry's files (size and sha256 of each), written last by a build.
MANIFEST = "MANIFEST.json"

_verified: set = set()  # (folder, (name, size, mtime_ns, inode)...) whose hashes matched in this process


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def write_cache_manifest(folder: str | os.PathLike) -> Path:
    """Record size and sha256 of every file in a cache entry (``MANIFEST.json``, written atomically).

    Why: before this record, a ``SOURCE.json`` alone marked an entry valid, and truncated or
    overwritten weights were loaded, giving tracebacks or NaN results with exit status 0.
    """
    folder = Path(folder)
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            files[path.relative_to(folder).as_posix()] = {"size": path.stat().st_size, "sha256": _digest(path)}
    return write_json_atomic(folder / MANIFEST, {"version": 1, "files": files})


def _check_files(folder: Path, record_path: Path) -> str | None:
    """``None`` if every file the record at ``record_path`` lists (relative to ``folder``) matches, else what is wrong."""
    record_name = record_path.name
    try:
        record = json.loads(record_path.read_text())
        files = record["files"]
        if not isinstance(files, dict) or not files:
            raise ValueError
    except FileNotFoundError:
        return f"{record_name} is missing (an interrupted build, or a cache written by an older version)"
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return f"{record_name} is unreadable"
    state = []
    for rel, want in sorted(files.items()):
        if not isinstance(want, dict):
            return f"{record_name} is unreadable"
        path = folder / rel
        try:
            st = path.stat()
        except OSError:
            return f"{rel} is missing"
        if st.st_size != want.get("size"):
            return f"{rel} has {st.st_size} bytes, {want.get('size')} recorded"
        state.append((rel, st.st_size, st.st_mtime_ns, st.st_ino))
    key = (str(folder.resolve()), record_name, tuple(state))
    if key in _verified:
        return None
    for rel, want in sorted(files.items()):
        try:
            if _digest(folder / rel) != want.get("sha256"):
                return f"{rel} does not match its recorded sha256"
        except OSError as exc:
            return f"{rel} cannot be read ({exc.strerror or exc})"
    _verified.add(key)
    return None


def verify_cache_entry(folder: str | os.PathLike) -> str | None:
    """``None`` if every file of the entry matches its recorded size and sha256, else what is wrong.

    Hashes are computed once per process and file state (size, modification time, inode): a
    page that loads one model ten times pays for one hash.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return "the entry is missing"
    return _check_files(folder, folder / MANIFEST)


def file_manifest_path(path: str | os.PathLike) -> Path:
    """The record of a one-file cache entry: ``<file>.manifest`` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".manifest")


def write_file_manifest(path: str | os.PathLike) -> Path:
    """Record size and sha256 of a one-file cache entry in ``<file>.manifest`` (written atomically, after the file)."""
    path = Path(path)
    files = {path.name: {"size": path.stat().st_size, "sha256": _digest(path)}}
    return write_json_atomic(file_manifest_path(path), {"version": 1, "files": files})


def verify_cache_file(path: str | os.PathLike) -> str | None:
    """:func:`verify_cache_entry` for a one-file entry and its ``<file>.manifest``."""
    path = Path(path)
    if not path.is_file():
        return "the entry is missing" if not path.exists() else f"{path.name} is not a file"
    record = file_manifest_path(path)
    problem = _check_files(path.parent, record)
    if problem is None:
        try:  # the record must name this file, not another one copied beside it
            if set(json.loads(record.read_text())["files"]) != {path.name}:
                return f"{record.name} does not describe {path.name}"
        except (OSError, ValueError, KeyError, TypeError):
            return f"{record.name} is unreadable"
    return problem


def tidy_entry(path: str | os.PathLike) -> None:
    """Remove the temporaries that killed builders of ``path`` left beside it, where the cache is
    writable and no build of it runs (its lock is free; with the lock held by someone, or not to be
    had on a read-only cache, the next run does it)."""
    path = Path(path)
    if not os.access(path.parent, os.W_OK):
        return
    with contextlib.suppress(OSError):
        with entry_lock(path, wait=False):
            remove_stale_temps(path.parent, path.name, any_pid=True)


@contextlib.contextmanager
def building(path: str | os.PathLike, problem: str) -> Iterator[None]:
    """Hold the build lock of the cache entry ``path``, which is missing or damaged (``problem``).

    Where the lock cannot even be created (a read-only cache, a folder of someone else's), the
    entry cannot be built here: one sentence says so, with ``problem`` and what to do; a lock held
    past its bound (:func:`..io.lock_timeout`) is one sentence too. Both are
    :class:`~.loaded.ModelUnavailableError`: the machine's state, the user's to fix.
    """
    from .loaded import ModelUnavailableError

    path = Path(path)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(entry_lock(path))
        except TimeoutError as exc:  # io.LockTimeoutError: held past the bound; the message says by whom, what to do
            raise ModelUnavailableError(str(exc)) from None
        except OSError as exc:
            what = "is damaged" if path.exists() else "is missing"
            raise ModelUnavailableError(
                f"cache entry {path} {what} ({problem}) and cannot be built here: {exc.strerror or exc} "
                f"({exc.filename or path.parent}); build it where the cache is writable, or point "
                f"RESIDUAL_RESPONSE_CACHE at a writable folder") from None
        yield


#: errnos of a disk with no room left, and of a folder this process may not write
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}


def build_failure(path: str | os.PathLike, exc: BaseException, *, source: str = "") -> Exception:
    """The one-sentence error of a cache build that failed with ``exc``, its advice naming the cause.

    A full disk: free space; a folder that cannot be written: a writable cache; anything else
    (the source cannot be read or converted): ``source`` names what to check. A failed
    allocation is returned unchanged (the command line words it, with the memory bound).
    """
    from ..memory import allocation_failure
    from .loaded import ModelUnavailableError, _first_line

    if allocation_failure(exc):
        return exc
    code = getattr(exc, "errno", None)
    text = _first_line(exc)
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    lowered = text.lower()
    if code in _NO_SPACE or "no space left" in lowered or "os error 28" in lowered or "disk quota" in lowered:
        advice = "free space on that disk, or point RESIDUAL_RESPONSE_CACHE at a folder with room"
    elif code in _NOT_WRITABLE or "read-only file system" in lowered or "permission denied" in lowered:
        advice = "point RESIDUAL_RESPONSE_CACHE at a writable folder"
    else:
        advice = source or "check the disk, then run again"
    return ModelUnavailableError(f"cannot build the cache entry {path} ({text}); {advice}")
