"""What ``show`` checks in a result file before it draws it: finite values, matching lengths, layers
that exist in the model.

Why: a file edited by hand, cut short or written by another program reads back as a result of the
right kind, and the charts would draw it anyway (a NaN as a gap, an emergence layer of 99 in a
4-block model off the axis, a score list shorter than its layers silently cut). Each check raises
:class:`ShowError` (re-exported by :mod:`.show`) with one sentence that names the file and the field.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..checks import InputError

__all__ = ["ShowError", "check_drawable"]


class ShowError(InputError):
    """A result file that ``show`` cannot read or draw (one sentence naming the file)."""


def _fail(path: Path, message: str):
    raise ShowError(f"{path} cannot be drawn: {message}")


def _is_int(v) -> bool:
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


def _ints(path: Path, values, name: str, low: int, high: int) -> list[int]:
    if not isinstance(values, (list, tuple)) or not all(_is_int(v) for v in values):
        _fail(path, f"{name} must be a list of integers")
    bad = [int(v) for v in values if not low <= int(v) <= high]
    if bad:
        _fail(path, f"{name} holds {bad[0]}, outside the model's streams {low}..{high}")
    return [int(v) for v in values]


def _numbers(path: Path, values, name: str, length: int, *, of: str = "read streams", gaps: bool = True) -> None:
    """``values``: ``length`` numbers (one for each of ``of``), each finite (``nan`` only where the
    file had ``null``, with ``gaps``)."""
    if not isinstance(values, (list, tuple, np.ndarray)):
        _fail(path, f"{name} must be a list of numbers")
    if len(values) != length:
        _fail(path, f"{name} has {len(values)} values for {length} {of}")
    for v in values:
        if v is None:
            continue
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Real, np.floating, np.integer)):
            _fail(path, f"{name} holds {v!r}, not a number")
        if math.isinf(float(v)) or (math.isnan(float(v)) and not gaps):
            _fail(path, f"{name} holds {float(v)}, not a finite number")


def _blocks(f, fallback: int) -> int:
    """Blocks ``L`` of the model: recorded in the file or its provenance, else ``fallback``."""
    n = getattr(f.result, "n_layers", None)
    if n is None:
        n = ((f.result.provenance or {}).get("model") or {}).get("n_layers")
    if n is None:
        return fallback
    if not _is_int(n) or int(n) < 1:
        _fail(f.path, f"n_layers {n!r} is not a number of blocks >= 1")
    return int(n)


def _check_induction(f) -> None:
    r, path = f.result, f.path
    reads = r.read_streams
    if not isinstance(reads, list) or not reads:
        _fail(path, "it has no read streams")
    L = _blocks(f, max(int(v) for v in reads if _is_int(v)) if any(_is_int(v) for v in reads) else 1)
    _ints(path, reads, "read_streams", 0, L)
    for name in ("score", "ci_low", "ci_high", "duplicate_score", "duplicate_ci_low", "duplicate_ci_high"):
        _numbers(path, getattr(r, name), name, len(reads))
    if r.emergence_layer is not None:
        if not _is_int(r.emergence_layer) or not 0 <= int(r.emergence_layer) <= L:
            _fail(path, f"emergence layer {r.emergence_layer!r} lies outside the model's streams 0..{L}")


def _check_section_map(f) -> None:
    sm, path = f.result, f.path
    reads = sm.read_streams
    L = _blocks(f, max(reads) if reads and all(_is_int(v) for v in reads) else 1)
    _ints(path, reads, "read_streams", 0, L)
    _ints(path, sm.l0s, "l0s", 0, max(L - 1, 0))
    want = (len(sm.l0s), len(reads))
    for name in ("score", "ci_low", "ci_high", "duplicate_score"):
        arr = np.asarray(getattr(sm, name))
        if arr.shape != want:
            _fail(path, f"{name} has shape {arr.shape}, not {want} (perturbed streams x read streams)")
        if np.isinf(arr).any():
            _fail(path, f"{name} holds inf, not a finite number")


def _check_regime(f) -> None:
    reg, path = f.result, f.path
    eps = np.asarray(reg.eps, dtype=np.float64)
    if eps.ndim != 1 or not eps.size or not np.isfinite(eps).all() or (eps <= 0).any():
        _fail(path, "eps must be a list of finite strengths > 0")
    if (np.diff(eps) <= 0).any():
        _fail(path, "eps must increase")
    if len(reg.curves) != len(reg.curve_streams):
        _fail(path, f"it has {len(reg.curves)} curves for {len(reg.curve_streams)} curve streams")
    L = _blocks(f, max([reg.l0, *reg.curve_streams, *(r.stream for r in reg.regimes)]) if _is_int(reg.l0) else 1)
    _ints(path, [reg.l0], "l0", 0, L)
    _ints(path, list(reg.curve_streams), "curve_streams", 0, L)
    for l, curve in zip(reg.curve_streams, reg.curves):
        _numbers(path, curve, f"the curve of stream {l}", len(eps), of="strengths")
    for r in reg.regimes:
        for name in ("eps_low", "eps_high"):
            v = getattr(r, name)
            if v is not None and not (isinstance(v, (numbers.Real, np.floating)) and math.isfinite(float(v))):
                _fail(path, f"the regime of stream {r.stream} has {name} {v!r}, not a finite number")


def _check_response(f) -> None:
    res, path = f.result, f.path
    chi = np.asarray(res.chi)
    N = len(res.tokens)
    L = _blocks(f, max(res.read_streams) if res.read_streams else 1)
    _ints(path, list(res.read_streams), "read_streams", 0, L)
    _ints(path, list(res.sources), "sources", 0, max(N - 1, 0))
    want = (len(res.eps), len(res.read_streams), len(res.sources), N)
    if chi.shape != want:
        _fail(path, f"chi has shape {chi.shape}, not {want} (eps x read streams x sources x tokens)")
    if not np.isfinite(chi).all():
        _fail(path, "chi holds NaN or inf")
    eps = np.asarray(res.eps, dtype=np.float64)
    if res.method != "jvp" and (not np.isfinite(eps).all() or (eps <= 0).any()):
        _fail(path, "eps must hold finite strengths > 0")


_CHECKS = {"induction": _check_induction, "section-map": _check_section_map, "regime": _check_regime,
           "response": _check_response}


def check_drawable(files: Sequence[Any]) -> None:
    """Check every loaded file (``show.LoadedFile``) before anything is drawn; one sentence naming the first bad one."""
    for f in files:
        prov = f.result.provenance
        if prov is not None and not isinstance(prov, dict):
            _fail(f.path, f"its provenance is a {type(prov).__name__}, not a mapping")
        name = getattr(f.result, "model", None)
        if name is not None and not isinstance(name, str):
            _fail(f.path, f"its model is a {type(name).__name__}, not a name")
        model = (prov or {}).get("model")
        if model is not None and not isinstance(model, dict):
            _fail(f.path, f"its provenance's model is a {type(model).__name__}, not a mapping")
        try:
            _CHECKS[f.kind](f)
        except (TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, ShowError):
                raise
            _fail(f.path, f"a malformed field ({exc})")
