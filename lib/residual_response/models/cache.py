"""The model cache: its folder, and the record that says an entry is complete and undamaged.

Why cache: transformers de-quantises a GGUF file tensor by tensor, which takes tens of seconds
(over a minute for Gemma 3's 262k-token embedding), and the toy model is trained. Both are done
once and kept under :func:`cache_dir`; every entry records the size and sha256 of its files
(``MANIFEST.json``), so that a damaged entry is found and rebuilt instead of loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..errors import InputError
from ..io import write_json_atomic

__all__ = ["MANIFEST", "CacheRepairWarning", "cache_dir", "validate_cache_dir", "verify_cache_entry",
           "write_cache_manifest"]


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


def verify_cache_entry(folder: str | os.PathLike) -> str | None:
    """``None`` if every file of the entry matches its recorded size and sha256, else what is wrong.

    Hashes are computed once per process and file state (size, modification time, inode): a
    page that loads one model ten times pays for one hash.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return "the entry is missing"
    try:
        record = json.loads((folder / MANIFEST).read_text())
        files = record["files"]
        if not isinstance(files, dict) or not files:
            raise ValueError
    except FileNotFoundError:
        return f"{MANIFEST} is missing (an interrupted build, or a cache written by an older version)"
    except (OSError, ValueError, KeyError, TypeError):
        return f"{MANIFEST} is unreadable"
    state = []
    for rel, want in sorted(files.items()):
        path = folder / rel
        try:
            st = path.stat()
        except OSError:
            return f"{rel} is missing"
        if st.st_size != want.get("size"):
            return f"{rel} has {st.st_size} bytes, {want.get('size')} recorded"
        state.append((rel, st.st_size, st.st_mtime_ns, st.st_ino))
    key = (str(folder.resolve()), tuple(state))
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
