"""Results computed once and kept: a small, verified, keyed store for the library's expensive calls.

Why: the book quotes the same numbers on several pages (each model's induction result at the
canonical setting is computed by the emergence page, by the headline and by the null page), and a
page rebuilt with one parameter changed repeats most of its work. A call made through the store
is computed once; every later call with the same key reads the stored result, bit for bit the
same object.

What a result depends on is its key, in two parts:

* *what* was asked: the function and every argument (a model by its name, dtype, device,
  attention implementation and the sha256 of its loaded weights, :func:`model_identity`; tensors
  and arrays by their bytes; a validated setting, such as :class:`.induction.InductionSetting`
  or :class:`.engine.ResponseJob`, by every field). It names the entry's file,
  ``<kind>-<sha256 of what>.<ext>`` in :func:`results_dir`, so that one question has one file;
* what it was *valid* for: this package's source (every file, :func:`library_source`), the
  versions of Python, torch, transformers and numpy, and the entry's own version. An entry whose
  validity differs is recomputed and replaced.

Each file starts with a JSON header line (both parts of the key, the sha256 and size of the
payload, how long the computation took); the payload follows. A payload whose sha256 does not
match, or that cannot be read, is recomputed with one warning (:class:`ResultsCacheWarning`).
Payloads are JSON, or pickles read by an unpickler that builds nothing but this package's
classes, numpy arrays, pandas frames and plain Python values.

Two kinds of use:

* :func:`cached` keeps one result under an explicit key (:mod:`.headline` keeps its file so);
* inside :func:`fresh` every result is computed and stored, never read (a page's timed steps);
* :func:`memoize` wraps a library function (:func:`.engine.run_response` and
  :func:`.induction.run_induction`, where the validated job or setting is computed, so that
  :func:`.engine.response`, :func:`.induction.induction_scores` and every row of a section map
  go through it): while the store is switched on (``RESIDUAL_RESPONSE_RESULTS_CACHE=1``, which
  the book's build sets for every page it executes, or :func:`switched`), each call is looked up first. A call is computed without the store when
  an argument has no key (a callable, an open file) or when the model has hooks installed (an
  ablation changes what the model computes without changing its weights).

``RESIDUAL_RESPONSE_RECOMPUTE=1`` computes every result met again and replaces its entry;
``build_book.py --recompute`` sets it to the time the build started, so that each result is
computed again once per build (entries made since then are used).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import hashlib
import importlib.metadata
import inspect
import io
import json
import os
import pickle
import platform
import time
import warnings
import weakref
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from .models.cache import CacheRepairWarning

__all__ = ["ENV_SWITCH", "ENV_RECOMPUTE", "ResultsCacheWarning", "Unkeyable", "results_dir", "library_source",
           "model_identity", "key_of", "cached", "memoize", "switched", "fresh", "enabled", "read_entry"]

#: ``"1"`` switches the store on for :func:`memoize`-d calls (the book's build sets it for its pages)
ENV_SWITCH = "RESIDUAL_RESPONSE_RESULTS_CACHE"
#: ``"1"``: compute every result again and replace its entry
ENV_RECOMPUTE = "RESIDUAL_RESPONSE_RECOMPUTE"
#: the layout of an entry; another layout is recomputed
FORMAT = 1


class ResultsCacheWarning(CacheRepairWarning):
    """A damaged entry of the results cache was found and is being recomputed (a
    :class:`.models.cache.CacheRepairWarning`, like a healed model entry)."""


class Unkeyable(TypeError):
    """An argument that has no key: the call is computed without the store."""


_SWITCH: contextvars.ContextVar[bool | None] = contextvars.ContextVar("results_cache_switch", default=None)


def enabled() -> bool:
    """Whether :func:`memoize`-d calls use the store here (:func:`switched`, else ``$RESIDUAL_RESPONSE_RESULTS_CACHE``)."""
    on = _SWITCH.get()
    return os.environ.get(ENV_SWITCH, "") == "1" if on is None else on


@contextlib.contextmanager
def switched(on: bool) -> Iterator[None]:
    """Switch the store on or off for the calls inside the block (the benchmark times real work: off)."""
    token = _SWITCH.set(bool(on))
    try:
        yield
    finally:
        _SWITCH.reset(token)


_FRESH: contextvars.ContextVar[bool] = contextvars.ContextVar("results_cache_fresh", default=False)


@contextlib.contextmanager
def fresh() -> Iterator[None]:
    """Inside the block, results are computed and stored, never read: what a page times is real work.

    Why: a page that reports how long a step took (the model pages' cost tables, from which the
    paper models' times are estimated) would otherwise report the time of reading a file.
    """
    token = _FRESH.set(True)
    try:
        yield
    finally:
        _FRESH.reset(token)


def results_dir() -> Path:
    """``cache_dir()/results``: the folder of the entries (beside the model cache)."""
    from .models.cache import cache_dir

    return cache_dir() / "results"


@functools.lru_cache(maxsize=1)
def library_source() -> str:
    """sha256 of every file of this package (relative path, size and bytes), computed once per process."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
            h.update(f"{path.relative_to(root).as_posix()}\0{path.stat().st_size}\0".encode())
            h.update(path.read_bytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def _validity() -> dict:
    versions = {"python": platform.python_version()}
    for name in ("torch", "transformers", "numpy"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {"format": FORMAT, "library": library_source(), "versions": versions}


_identities: dict = {}  # id(model) -> (weak reference to the model, state of its parameters, identity)


# Hooks that only record what a module returns and never change it: transformers installs these
# the first time a model is asked for its attention patterns or hidden states, and leaves them on.
RECORDING_HOOK_MODULES = ("transformers.utils.output_capturing",)


def _has_hooks(module) -> bool:
    """Whether a hook that may change what ``module`` computes is installed (recording hooks aside).

    Why the exception: after one call for attention patterns every later call on the model would
    otherwise be unkeyable, and the page would compute silently without the store."""
    hooks = (h for m in module.modules() for d in (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks)
             for h in d.values())
    return any(getattr(h, "__module__", None) not in RECORDING_HOOK_MODULES for h in hooks)


def model_identity(lm) -> dict:
    """What identifies a loaded model's computation: name, dtype, device, attention implementation, weights.

    The weights' sha256 (:func:`.provenance.weights_hash`) is computed once per model and state
    of its parameters (replaced or changed in place: computed again). Raises :class:`Unkeyable`
    when a hook is installed on the model (it may change what the model computes).
    """
    from .provenance import weights_hash

    if _has_hooks(lm.model):
        raise Unkeyable(f"{lm.name} has hooks installed")
    state = tuple((p.data_ptr(), p._version) for p in lm.model.parameters())
    known = _identities.get(id(lm.model))
    # the weak reference tells a new model from a freed one that had the same id and memory
    if known is None or known[0]() is not lm.model or known[1] != state:
        for key in [k for k, v in _identities.items() if v[0]() is None]:
            del _identities[key]
        weights = weights_hash(lm)
        known = _identities[id(lm.model)] = (weakref.ref(lm.model), state, weights)
    return {"name": lm.name, "dtype": str(lm.dtype).replace("torch.", ""), "device": str(lm.device),
            "attention": getattr(lm.model.config, "_attn_implementation", None), "weights": known[2]}


def _bytes_key(kind: str, dtype: str, shape: tuple, data: bytes) -> dict:
    return {kind: {"dtype": dtype, "shape": list(shape), "sha256": hashlib.sha256(data).hexdigest()}}


def key_of(value: Any) -> Any:
    """``value`` as plain JSON types that say everything its result depends on (:class:`Unkeyable` if it cannot)."""
    import numpy as np
    import torch

    from .models import LoadedModel

    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else repr(value)
    if isinstance(value, LoadedModel):
        return {"model": model_identity(value)}
    if isinstance(value, torch.Tensor):
        t = value.detach().to("cpu").contiguous()
        return _bytes_key("tensor", str(t.dtype), tuple(t.shape), t.reshape(-1).view(torch.uint8).numpy().tobytes())
    if isinstance(value, np.ndarray):
        a = np.ascontiguousarray(value)
        return _bytes_key("array", str(a.dtype), a.shape, a.tobytes())
    if isinstance(value, np.generic):
        return key_of(value.item())
    if isinstance(value, (list, tuple, range)):
        return [key_of(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # a validated setting or job
        return {"dataclass": f"{type(value).__module__}.{type(value).__qualname__}",
                "fields": {f.name: key_of(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, Mapping):
        return {str(k): key_of(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    raise Unkeyable(f"no key for a {type(value).__name__}")


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class _Unpickler(pickle.Unpickler):
    """Builds this package's classes, numpy and pandas objects and plain values; nothing else."""

    MODULES = ("residual_response.", "numpy", "pandas", "collections", "copyreg", "datetime")
    BUILTINS = {"list", "dict", "tuple", "set", "frozenset", "int", "float", "complex", "str", "bytes", "bytearray",
                "bool", "slice", "range", "object"}

    def find_class(self, module: str, name: str):
        if (module == "builtins" and name in self.BUILTINS) or module.startswith(self.MODULES):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not a result type")


def _encode(value: Any, codec: str) -> bytes:
    if codec == "json":
        return json.dumps(value, indent=1, allow_nan=False).encode()
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _decode(payload: bytes, codec: str) -> Any:
    if codec == "json":
        return json.loads(payload)
    return _Unpickler(io.BytesIO(payload)).load()


def read_entry(path: str | os.PathLike) -> tuple[dict, Any]:
    """``(header, value)`` of an entry; ``ValueError`` saying what is wrong when it is damaged."""
    data = Path(path).read_bytes()
    line, _, payload = data.partition(b"\n")
    try:
        header = json.loads(line)
        codec, want = header["codec"], header["sha256"]
    except (ValueError, KeyError, TypeError):
        raise ValueError("its header is unreadable") from None
    if hashlib.sha256(payload).hexdigest() != want:
        raise ValueError("its payload does not match its recorded sha256")
    try:
        return header, _decode(payload, codec)
    except Exception as exc:
        raise ValueError(f"its payload cannot be read ({type(exc).__name__}: {exc})") from None


def _ours(path: Path) -> bool:
    """Whether ``path`` is an entry of this store (an older layout is replaced without a warning)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(10) == b'{"format":'
    except OSError:
        return False


def cached(kind: str, what: Mapping, compute: Callable[[], Any], *, valid: Mapping | None = None,
           codec: str = "pickle", name: str | None = None) -> Any:
    """The stored result of ``what`` when its entry is valid, else ``compute()``, stored.

    Args:
        kind: names the entry's file and the question (``"induction_scores"``, ``"headline"``).
        what: plain JSON types: every argument the result depends on.
        valid: more of what the entry must match besides the library source and the versions.
        codec: ``"pickle"`` or ``"json"`` (``compute()`` returns plain JSON types).
        name: the entry's file name without extension (default ``<kind>-<sha256 of what>``).
    """
    what = dict(what)
    valid = {**_validity(), **dict(valid or {})}
    path = results_dir() / f"{name or kind + '-' + _digest(what)[:24]}.{'json' if codec == 'json' else 'pkl'}"
    value = _read(path, what, valid)
    if value is not _MISSING:
        return value
    from .io import entry_lock

    # one computation per entry: a second process (another page of a build) waits, then reads it
    with entry_lock(results_dir() / ".locks" / path.name):
        value = _read(path, what, valid, warn=False)  # a damaged entry was said once, above
        if value is _MISSING:
            start = time.perf_counter()
            value = compute()
            _store(path, kind, what, valid, value, codec, time.perf_counter() - start)
    return value


_MISSING = object()


def _read(path: Path, what: dict, valid: dict, warn: bool = True) -> Any:
    """The value of a valid entry at ``path``, else ``_MISSING`` (a damaged one with a warning if ``warn``)."""
    if _FRESH.get() or not _ours(path):
        return _MISSING
    try:
        header, value = read_entry(path)
    except (OSError, ValueError) as exc:
        if warn:
            warnings.warn(f"results cache entry {path} is damaged ({exc}); recomputing it", ResultsCacheWarning,
                          stacklevel=4)
        return _MISSING
    if header.get("format") != FORMAT or header.get("what") != what or header.get("valid") != valid:
        return _MISSING
    return _MISSING if _FRESH.get() or _recompute(header) else value


def _recompute(header: dict) -> bool:
    """Whether ``$RESIDUAL_RESPONSE_RECOMPUTE`` asks for this entry again: ``"1"``, every entry; a
    time (seconds since the epoch, what ``build_book.py --recompute`` sets), the entries made before it."""
    flag = os.environ.get(ENV_RECOMPUTE, "")
    if flag == "1":
        return True
    try:
        return bool(flag) and float(header.get("created_epoch", 0)) < float(flag)
    except ValueError:
        return False


def _store(path: Path, kind: str, what: dict, valid: dict, value: Any, codec: str, seconds: float) -> None:
    from .io import write_bytes_atomic

    try:
        payload = _encode(value, codec)
    except (TypeError, ValueError, pickle.PicklingError, AttributeError):
        return  # a result that cannot be stored is returned all the same
    header = {"format": FORMAT, "kind": kind, "codec": codec, "sha256": hashlib.sha256(payload).hexdigest(),
              "size": len(payload), "seconds": round(seconds, 3), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "created_epoch": time.time(),
              "what": what, "valid": valid}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, lambda fh: fh.write(json.dumps(header).encode() + b"\n" + payload))
    except OSError as exc:  # a read-only or full cache costs the reuse, not the result
        warnings.warn(f"results cache entry {path} not written ({exc})", ResultsCacheWarning, stacklevel=3)


def memoize(kind: str | None = None, *, ignore: tuple[str, ...] = ("progress",)) -> Callable:
    """Decorator: look a call up in the store while it is switched on (:func:`enabled`).

    The key is the function's ``kind`` (default its name) and every bound argument, defaults
    applied and ``**kwargs`` flattened, except those named in ``ignore`` (progress bars, caches
    that change the time but not the result). The undecorated function is ``.uncached``.
    """

    def wrap(fn: Callable) -> Callable:
        sig = inspect.signature(fn)
        label = kind or fn.__name__

        @functools.wraps(fn)
        def inner(*args, **kwargs):
            if not enabled():
                return fn(*args, **kwargs)
            try:
                bound = sig.bind(*args, **kwargs)
                bound.apply_defaults()
                arguments = {}
                for pname, value in bound.arguments.items():
                    if sig.parameters[pname].kind is inspect.Parameter.VAR_KEYWORD:
                        arguments.update(value)
                    else:
                        arguments[pname] = value
                what = {"call": f"{fn.__module__}.{fn.__qualname__}",
                        "args": {k: key_of(v) for k, v in arguments.items() if k not in ignore}}
            except TypeError:  # a bad call or an argument without a key: the function itself decides
                return fn(*args, **kwargs)
            return cached(label, what, lambda: fn(*args, **kwargs))

        inner.uncached = fn
        return inner

    return wrap
