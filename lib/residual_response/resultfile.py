"""Result files: which kind a file holds, and reading it back with one clear error.

Each file the command line writes names its kind in a ``kind`` field (``response`` in an
``.npz``; ``induction``, ``regime``, ``section-map`` in a ``.json``), so that a loader can
refuse a file of another kind in one sentence instead of failing later on a missing key.
Files written before the tag existed are recognised by their keys (:func:`sniff`).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

__all__ = ["KINDS", "LOADER_OF", "sniff", "read", "read_json", "read_npz", "check_kind"]

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

    Raises ``ValueError`` (one sentence naming the file) when the file is not JSON, holds ``NaN``,
    ``Infinity`` or a number beyond float64 (results write a missing value as ``null``), or is
    nested too deeply to parse; ``OSError`` when it cannot be read.
    """
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{os.fspath(path)} is not a JSON file ({exc.msg} at line {exc.lineno})") from None
    except _NotFinite as exc:
        raise ValueError(f"{os.fspath(path)} is not a result file: it holds {exc}, which no result file "
                         f"holds (results write a missing value as null)") from None
    except RecursionError:
        raise ValueError(f"{os.fspath(path)} is not a result file: its JSON is nested too deeply") from None
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
        raise ValueError(f"{os.fspath(path)} is not a readable .npz file ({why})") from None
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
        raise ValueError(f"{os.fspath(path)} is not a residual-response result (kinds: {', '.join(KINDS)})")
    return kind


def read(path: str | os.PathLike, expected: str) -> dict:
    """The content of a result file of kind ``expected``; ``ValueError`` for any other file."""
    data, kind = _read_any(path)
    check_kind(path, kind, expected)
    return data


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def check_kind(path: str | os.PathLike, found: str | None, expected: str) -> None:
    """Refuse a file of another kind, naming the loader that reads it."""
    if found == expected:
        return
    if found in LOADER_OF:
        raise ValueError(f"{os.fspath(path)} holds {_a(found)} result, not {_a(expected)} result; "
                         f"read it with {LOADER_OF[found]}.load")
    raise ValueError(f"{os.fspath(path)} is not {_a(expected)} result file (it has no kind {expected!r})")
