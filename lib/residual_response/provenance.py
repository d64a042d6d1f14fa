"""Provenance: what made a result file, so that two files can be told apart and compared.

A result is only as useful as what is known about how it was made. Every file the command line
writes carries one ``provenance`` block (a JSON-ready dict):

* ``library``: this package's version, and the git commit (with a ``dirty`` flag) when it runs
  from a checkout; ``None`` where git or the checkout is absent (it never fails a run);
* ``python``, ``torch``, ``transformers``, ``numpy``: versions;
* ``model``: registry name or path, where the weights came from, and ``weights_sha256``, a hash
  of the loaded parameters (see :func:`weights_hash`);
* ``device``, ``dtype``, ``threads``, ``workers``: where and how it ran (``workers``: the
  processes the run's last induction job ran its sequences in, :mod:`.workers`; 1: in this one);
* ``parameters``: every parameter of the run (T, seeds, eps, layers, directions, method...);
* ``command``: the command line; ``date`` (UTC, ISO 8601); ``wall_seconds``, ``cpu_seconds``.

:func:`compare` lists the fields on which two blocks disagree in a way that changes the numbers
(weights, model, dtype); :func:`warn_if_different` turns that into one warning sentence. The
loaders (``ResponseResult.load``, ``InductionResult.load``...) call it when given ``against=``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .workers import last_workers

__all__ = [
    "ProvenanceWarning",
    "RunClock",
    "weights_hash",
    "library_info",
    "collect",
    "compare",
    "warn_if_different",
    "provenance_of",
    "COMPARED_FIELDS",
]

#: Fields that change the numbers of a result: files that differ here should not be compared
#: as if they measured the same thing. Dotted paths into the provenance block.
COMPARED_FIELDS = ("model.name", "model.weights_sha256", "dtype")


class ProvenanceWarning(UserWarning):
    """A result file was made with other weights, another model or another dtype than what it
    is compared against."""


def weights_hash(model) -> str:
    """sha256 of a model's parameters and buffers, in a canonical order: ``"sha256:<hex>"``.

    Why computed from the loaded tensors rather than read from a file: it identifies the numbers
    the run used whatever the source (registry, folder, hub id, random init, a model changed in
    place), and it does not depend on how the weights were cached. Each entry of the state dict,
    sorted by name, contributes its name, dtype, shape and raw bytes; tensors shared under two
    names (tied embeddings) count under each. The dtype is part of the identity: the same
    checkpoint loaded in float32 and bfloat16 hashes differently, as its results differ.

    Args:
        model: a ``torch.nn.Module`` or a :class:`~residual_response.models.LoadedModel`.
    """
    import torch

    module = getattr(model, "model", model)
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"weights_hash needs a torch module or a LoadedModel, got {type(model).__name__}")
    h = hashlib.sha256()
    state = module.state_dict()
    for name in sorted(state):
        t = state[name]
        if not isinstance(t, torch.Tensor) or t.is_meta:
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{str(t.dtype).replace('torch.', '')}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + h.hexdigest()


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def library_info() -> dict:
    """``{"version", "git_commit", "git_dirty"}``; the git fields are ``None`` outside a checkout.

    The checkout is the folder two levels above this package (``<repo>/lib/residual_response``);
    an installed copy (site-packages) has no ``.git`` there and records no commit.
    """
    from .version import __version__

    root = Path(__file__).resolve().parents[2]
    commit = dirty = None
    if (root / ".git").exists():
        commit = _git(root, "rev-parse", "HEAD")
        if commit is not None:
            status = _git(root, "status", "--porcelain", "--untracked-files=no")
            dirty = None if status is None else bool(status)
    return {"version": __version__, "git_commit": commit, "git_dirty": dirty}


@dataclass
class RunClock:
    """Wall and CPU time of a run, started when created.

    Why both: on a shared machine the wall time says how long a reader waits, the CPU time
    (this process, all threads, and its ended children: the forked workers of :mod:`.workers`)
    how much work the run was.
    """

    wall0: float = field(default_factory=time.perf_counter)
    cpu0: float = field(default_factory=lambda: _cpu_seconds())
    started: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    def elapsed(self) -> dict:
        return {"wall_seconds": round(time.perf_counter() - self.wall0, 3),
                "cpu_seconds": round(_cpu_seconds() - self.cpu0, 3)}


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have ended and been waited for."""
    try:
        import resource

        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + kids.ru_utime + kids.ru_stime
    except (ImportError, OSError):
        return time.process_time()


def _jsonable(value: Any) -> Any:
    """Parameters as plain JSON types (numpy scalars and arrays, tuples, paths)."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and value != value:  # nan is not JSON
        return None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def collect(lm, parameters: Mapping[str, Any], *, command: Sequence[str] | None = None,
            clock: RunClock | None = None) -> dict:
    """The provenance block of a run of ``lm`` with ``parameters``.

    Args:
        lm: the :class:`~residual_response.models.LoadedModel` the run used.
        parameters: every parameter of the run (T, seeds, eps, layers, directions, method...).
        command: the command line (default ``sys.argv``).
        clock: started at the beginning of the run (default: now, so the times are ~0).
    """
    import numpy as np
    import torch
    import transformers

    clock = clock or RunClock()
    return {
        "library": library_info(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "model": {
            "name": lm.name,
            "source": getattr(lm, "source", "") or None,
            "family": lm.family,
            "n_layers": int(lm.n_layers),
            "weights_sha256": weights_hash(lm),
        },
        "device": str(lm.device),
        "dtype": str(lm.dtype).replace("torch.", ""),
        "threads": int(torch.get_num_threads()),
        "workers": max(1, last_workers()),
        "parameters": _jsonable(dict(parameters)),
        "command": list(sys.argv if command is None else command),
        "date": clock.started,
        **clock.elapsed(),
    }


def _get(block: Mapping | None, dotted: str):
    cur: Any = block
    for part in dotted.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def provenance_of(obj) -> dict | None:
    """A provenance block from a block, a result with ``.provenance``, or a loaded model.

    A :class:`~residual_response.models.LoadedModel` gives the fields that :func:`compare` uses
    (name, weights hash, dtype), computed from its parameters.
    """
    if obj is None or isinstance(obj, Mapping):
        return obj
    if hasattr(obj, "provenance"):
        return obj.provenance
    if hasattr(obj, "model") and hasattr(obj, "n_layers"):  # a LoadedModel
        return {"model": {"name": obj.name, "weights_sha256": weights_hash(obj)},
                "dtype": str(obj.dtype).replace("torch.", "")}
    raise TypeError(f"cannot read a provenance from {type(obj).__name__}; give a dict, a result or a LoadedModel")


def compare(a, b, fields: Sequence[str] = COMPARED_FIELDS) -> list[tuple[str, Any, Any]]:
    """``[(field, value in a, value in b)]`` for the ``fields`` on which ``a`` and ``b`` disagree.

    ``a`` and ``b`` are provenance blocks, results or loaded models (see :func:`provenance_of`).
    A field missing on either side (an older file) is not a disagreement: nothing is known.
    """
    pa, pb = provenance_of(a), provenance_of(b)
    if pa is None or pb is None:
        return []
    out = []
    for f in fields:
        va, vb = _get(pa, f), _get(pb, f)
        if va is not None and vb is not None and va != vb:
            out.append((f, va, vb))
    return out


def _short(value: Any) -> str:
    text = str(value)
    return text[:19] + "..." if text.startswith("sha256:") else text


def warn_if_different(a, b, *, what: str = "the file", against: str = "what it is compared with",
                      fields: Sequence[str] = COMPARED_FIELDS, stacklevel: int = 2) -> list[tuple[str, Any, Any]]:
    """Warn (:class:`ProvenanceWarning`, one sentence) when :func:`compare` finds a difference.

    Returns the differences, so a caller can act on them too.
    """
    diffs = compare(a, b, fields)
    if diffs:
        parts = "; ".join(f"{f} {_short(va)} vs {_short(vb)}" for f, va, vb in diffs)
        warnings.warn(f"{what} was made differently from {against} ({parts}): its numbers are not comparable.",
                      ProvenanceWarning, stacklevel=stacklevel + 1)
    return diffs
