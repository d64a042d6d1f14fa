"""Result files: which kind a file holds, and reading it back with one clear error.

Each file the command line writes names its kind in a ``kind`` field (``response`` in an
``.npz``; ``induction``, ``regime``, ``section-map`` in a ``.json``), so that a loader can
refuse a file of another kind in one sentence instead of failing later on a missing key.
Files written before the tag existed are recognised by their keys (:func:`sniff`).

Format versions (the ``format`` field; a file without one is version 1): version 2 names every
field by the package's one vocabulary: ``l0`` the perturbed stream, ``read_streams`` the streams
read, ``T`` a copy's length, ``seeds`` always the list of seeds, ``stream`` the read stream of a
regime or a rise. :func:`read` hands the loaders every file in version 2's keys, so files of
version 1 stay readable (:data:`V1_KEYS`).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import warnings

from .checks import InputError

__all__ = ["FORMAT_VERSION", "KINDS", "LOADER_OF", "V1_KEYS", "sniff", "read", "read_json", "read_npz", "check_kind",
           "renamed"]

#: the version of the files written now (module docstring)
FORMAT_VERSION = 2
#: per kind, the top-level keys of version 1 and their names in version 2
V1_KEYS = {
    "response": {"layer": "l0", "read_layers": "read_streams"},
    "induction": {"layer": "l0", "length": "T", "layers": "read_streams"},
    "regime": {"layer": "l0", "length": "T", "curve_layers": "curve_streams"},
    "section-map": {"length": "T", "perturb_layers": "l0s", "read_layers": "read_streams"},
}

#: every kind, with the class whose ``load`` reads it
LOADER_OF = {
    "response": "ResponseResult",
    "induction": "InductionResult",
    "regime": "RegimeResult",
    "section-map": "SectionMap",
}
KINDS = tuple(LOADER_OF)

# keys that identify an untagged file of each kind (files written before the tag)
_JSON_SIGNATURES = (("section-map", "perturb_layers"), ("regime", "regimes"), ("induction", "emergence_layer"))


def _kind_from_json(data) -> str | None:
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("kind"), str):
        return data["kind"]
    for kind, key in _JSON_SIGNATURES:
        if key in data:
            return kind
    return None


def read_json(path: str | os.PathLike) -> tuple[dict, str | None]:
    """``(data, kind)`` of a JSON result; ``kind`` is ``None`` for a JSON that is no result.

    Raises :class:`InputError` (one sentence naming the file) when the file is not JSON, holds ``NaN``,
    ``Infinity`` or a number beyond float64 (results write a missing value as ``null``), or is
    nested too deeply to parse; ``OSError`` when it cannot be read.
    """
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise InputError(f"{os.fspath(path)} is not a JSON file ({exc.msg} at line {exc.lineno})") from None
    except _NotFinite as exc:
        raise InputError(f"{os.fspath(path)} is not a result file: it holds {exc}, which no result file "
                         f"holds (results write a missing value as null)") from None
    except RecursionError:
        raise InputError(f"{os.fspath(path)} is not a result file: its JSON is nested too deeply") from None
    return data, _kind_from_json(data)


class _NotFinite(Exception):
    """A number JSON has no word for (NaN, Infinity) or one beyond float64 (1e400)."""


def _no_constant(word: str):
    raise _NotFinite(word)


def _finite_float(text: str) -> float:
    import math

    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(f"the number {text}, beyond float64")
    return value


def read_npz(path: str | os.PathLike) -> tuple[dict, str | None]:
    """``(arrays, kind)`` of an ``.npz`` result, every array read into memory (no pickles)."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, zipfile.BadZipFile, EOFError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{os.fspath(path)} is not a readable .npz file ({why})") from None
    if "kind" in arrays:
        kind = str(arrays["kind"])
    else:
        kind = "response" if "chi" in arrays else None
    return arrays, kind


def _read_any(path: str | os.PathLike) -> tuple[dict, str | None]:
    """``(content, kind)`` of an ``.npz`` (zip magic) or JSON file, whatever its name says."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    return read_npz(path) if head.startswith(b"PK") else read_json(path)


def sniff(path: str | os.PathLike) -> str:
    """The kind of a result file, or ``ValueError`` saying it is none of :data:`KINDS`."""
    kind = _read_any(path)[1]
    if kind not in KINDS:
        raise InputError(f"{os.fspath(path)} is not a residual-response result (kinds: {', '.join(KINDS)})")
    return kind


def read(path: str | os.PathLike, expected: str) -> dict:
    """The content of a result file of kind ``expected``, in the keys of :data:`FORMAT_VERSION`
    (a version-1 file's keys renamed, :data:`V1_KEYS`); ``InputError`` for any other file."""
    data, kind = _read_any(path)
    check_kind(path, kind, expected)
    version = int(data["format"]) if "format" in data else 1
    if version > FORMAT_VERSION:
        raise InputError(f"{os.fspath(path)} is a format-{version} file, newer than this library reads "
                         f"(format {FORMAT_VERSION}); update residual-response")
    if version == 1:
        data = {V1_KEYS[expected].get(k, k): v for k, v in data.items()}
    return data


def renamed(new: str, old: str) -> property:
    """A read-only property under the ``old`` name of a field now called ``new``, for code written
    before the rename; it warns (``DeprecationWarning``) and reads the field."""

    def get(self):
        warnings.warn(f"deprecated name {type(self).__name__}.{old}: it is now called {new}", DeprecationWarning,
                      stacklevel=2)
        return getattr(self, new)

    return property(get, doc=f"Old name of :attr:`{new}` (deprecated).")


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def check_kind(path: str | os.PathLike, found: str | None, expected: str) -> None:
    """Refuse a file of another kind, naming the loader that reads it."""
    if found == expected:
        return
    if found in LOADER_OF:
        raise InputError(f"{os.fspath(path)} holds {_a(found)} result, not {_a(expected)} result; "
                         f"read it with {LOADER_OF[found]}.load")
    raise InputError(f"{os.fspath(path)} is not {_a(expected)} result file (it has no kind {expected!r})")
