"""Checks of the values a caller hands to the public functions, and of the results before they leave.

Why one module: the same "an int >= 1" or "a finite number > 0" check was written out in many
modules with slightly different messages. Every check here raises ``TypeError`` (wrong kind of
value, a mistake in the calling code) or :class:`InputError` (right kind, not allowed: a
``ValueError``) with one sentence that names the argument, the value it got and what is allowed,
so that no bad input reaches torch or numpy, whose own errors say nothing about the call that
caused them. The command line reports an :class:`InputError` as one ``error:`` line with exit
status 2, and anything else as the library's own failure (exit 1, with its traceback).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import numbers
import warnings
from typing import Iterable, Iterator, Sequence

import numpy as np

from .errors import InputError

__all__ = [
    "MAX_SEED",
    "InputError",
    "NonFiniteResultError",
    "check_int",
    "check_number",
    "check_choice",
    "check_seed",
    "check_int_list",
    "check_model",
    "check_finite_result",
    "eps_floor",
    "check_eps_floor",
    "BelowFloorWarning",
    "allow_eps",
    "check_eps_policy",
    "check_seeds",
    "seed_sequence",
    "check_bootstrap",
    "check_eps",
    "validate_eps",
    "validate_layer",
    "validate_l0",
    "validate_read_streams",
    "validate_tokens",
    "keyword_alias",
]

#: Largest seed accepted anywhere. Why a bound: sequence seeds are combined as ``seed * 1000 + k``
#: into a 64-bit generator seed, and a larger value overflows deep inside torch.
MAX_SEED = 2**32 - 1


class NonFiniteResultError(InputError):
    """A result holds NaN or inf: a wrong answer that must not be written or returned as valid.

    An :class:`InputError` because what gets there is a setting (a dtype too narrow, a strength
    far outside the regime) or damaged weights, which the message names."""


def _describe(value) -> str:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(value).__name__} {text}" if not isinstance(value, (int, float, str)) or isinstance(value, bool) else text


def check_int(value, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an ``int`` (Python or NumPy integer, not bool) in ``minimum..maximum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an int, got {_describe(value)}")
    value = int(value)
    if minimum is not None and value < minimum or maximum is not None and value > maximum:
        if maximum is None:
            allowed = f">= {minimum}"
        elif minimum is None:
            allowed = f"<= {maximum}"
        else:
            allowed = f"in {minimum}..{maximum}"
        raise InputError(f"{name} must be an int {allowed}, got {value}")
    return value


def check_number(value, name: str, *, positive: bool = False, minimum: float | None = None,
                 maximum: float | None = None, below: float | None = None) -> float:
    """``value`` as a finite ``float``; ``positive`` asks ``> 0``, ``minimum``/``maximum`` inclusive
    bounds, ``below`` an exclusive upper bound."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {_describe(value)}")
    x = float(value)
    rules = []
    if positive:
        rules.append("> 0")
    if minimum is not None:
        rules.append(f">= {minimum:g}")
    if maximum is not None:
        rules.append(f"<= {maximum:g}")
    if below is not None:
        rules.append(f"< {below:g}")
    ok = (math.isfinite(x) and not (positive and x <= 0) and not (minimum is not None and x < minimum)
          and not (maximum is not None and x > maximum) and not (below is not None and x >= below))
    if not ok:
        raise InputError(f"{name} must be a finite number {' and '.join(rules)}".rstrip() + f", got {value!r}")
    return x


def check_choice(value, name: str, choices: Sequence[str]) -> str:
    """``value`` must be one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise InputError(f"unknown {name} {value!r}; allowed: {', '.join(choices)}")
    return value


def check_seed(value, name: str = "seed") -> int:
    """A seed: an int in ``0..MAX_SEED``."""
    return check_int(value, name, minimum=0, maximum=MAX_SEED)


def check_int_list(values, name: str, *, minimum: int | None = None, maximum: int | None = None,
                   allow_empty: bool = False) -> list[int]:
    """A flat iterable of ints (each as :func:`check_int`); a string or a nested list is refused."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable) and not isinstance(values, np.ndarray):
        raise TypeError(f"{name} must be a list of ints, got {_describe(values)}")
    arr = values
    if isinstance(values, np.ndarray) and values.ndim != 1:
        raise InputError(f"{name} must be a flat list of ints, got an array of shape {values.shape}")
    out = []
    for v in arr:
        if isinstance(v, np.ndarray) and v.ndim == 0:
            v = v.item()
        if isinstance(v, (list, tuple, np.ndarray)):
            raise TypeError(f"{name} must be a flat list of ints, got a nested entry {_describe(v)}")
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Integral, np.integer)):
            raise TypeError(f"{name} must hold ints, got {_describe(v)}")
        out.append(check_int(v, f"each of {name}", minimum=minimum, maximum=maximum))
    if not out and not allow_empty:
        raise InputError(f"{name} is empty; give at least one value")
    return out


def check_model(lm, name: str = "lm"):
    """``lm`` must be a :class:`~residual_response.models.LoadedModel` (a name is not loaded for you)."""
    from .models import LoadedModel

    if not isinstance(lm, LoadedModel):
        hint = f"; load it first with load_model({lm!r})" if isinstance(lm, str) else ""
        raise TypeError(f"{name} must be a LoadedModel, got {_describe(lm)}{hint}")
    return lm


def check_finite_result(chi, *, read_streams: Sequence[int], sources: Sequence[int], eps=None,
                        dtype: str = "") -> None:
    """Raise :class:`NonFiniteResultError` if ``chi`` ``[n_eps, n_read, n_src, N]`` holds NaN or inf.

    Why: a NaN in ``chi`` becomes ``null`` or "no regime" downstream, which reads as a result. The
    message names the first bad read layer and source, so that the cause (overflowing activations,
    damaged weights, a strength far outside the regime) can be looked for where it starts.
    """
    arr = np.asarray(chi)
    bad = ~np.isfinite(arr)
    if not bad.any():
        return
    e, i, j, t = (int(v) for v in np.argwhere(bad)[0])
    where = f"read layer {read_streams[i]}, source {sources[j]}, target {t}"
    if eps is not None and np.size(eps) > 1:
        where += f", eps {float(np.asarray(eps).reshape(-1)[e]):.3g}"
    hint = "try --dtype float64 (or float32 for a 16-bit model) or an eps inside the universal regime"
    if dtype:
        hint += f"; the model ran in {dtype}"
    raise NonFiniteResultError(
        f"chi is not finite ({int(bad.sum())} of {arr.size} entries; first at {where}): the model's activations "
        f"overflow or its weights are damaged; {hint}")


def eps_floor(dtype) -> float:
    """The relative rounding floor of a dtype (``float32`` 1e-6, ``bfloat16`` 1e-2, ...)."""
    from .models import ROUNDING_FLOOR, resolve_dtype

    return ROUNDING_FLOOR[resolve_dtype(dtype)]


def check_eps_floor(eps, dtype, *, option: str = "eps", override: str = "allow_below_floor=True") -> None:
    """Refuse strengths below the dtype's rounding floor, where chi is rounding noise, not a response.

    Why refuse rather than warn: below the floor ``h~ - h`` is mostly zero or one rounding step, so
    chi comes out as zeros or as huge spikes, a wrong answer that looks like a result.
    """
    arr = np.atleast_1d(np.asarray(eps, dtype=np.float64))
    floor = eps_floor(dtype)
    low = arr[arr < floor]
    if low.size:
        name = str(dtype).replace("torch.", "")
        raise InputError(f"{option} {float(low.min()):g} lies below the rounding floor of {name} (~{floor:.0e}), "
                         f"where chi is rounding noise; use {option} >= {floor:.0e}, a wider dtype, or {override}")


# --- the eps policy: one rule for every command and every public function --------------------
#
# eps above 1: a kick larger than the stream itself, where no universal regime lies: refused
#   (the command line's --allow-eps-above-1, the library's ``allow_eps(above_1=True)``).
# eps below the dtype's rounding floor: chi is rounding noise: refused by the command line
#   (--allow-below-floor), a BelowFloorWarning in the library (``allow_eps(below_floor=True)``
#   silences it; a sweep that shows where the floor lies asks for that on purpose).


class BelowFloorWarning(UserWarning):
    """A strength below the dtype's rounding floor: chi there is mostly rounding noise."""


_EPS_ALLOWED: contextvars.ContextVar[tuple[bool, bool]] = contextvars.ContextVar("eps_allowed",
                                                                               default=(False, False))


@contextlib.contextmanager
def allow_eps(*, above_1: bool = False, below_floor: bool = False) -> Iterator[None]:
    """Within the block, accept strengths above 1 (``above_1``) or below the rounding floor without a
    warning (``below_floor``), in every public function (the eps policy above).

    Example: ``with allow_eps(below_floor=True): response(lm, tokens, np.logspace(-9, 0, 19))``.
    """
    for name, value in (("above_1", above_1), ("below_floor", below_floor)):
        if not isinstance(value, (bool, np.bool_)):  # 0/1 or a string would hide a typo
            raise TypeError(f"{name} must be True or False, got {_describe(value)}")
    old_above, old_below = _EPS_ALLOWED.get()
    token = _EPS_ALLOWED.set((old_above or bool(above_1), old_below or bool(below_floor)))
    try:
        yield
    finally:
        _EPS_ALLOWED.reset(token)


def check_eps_policy(eps, dtype, *, stacklevel: int = 2) -> None:
    """Apply the eps policy of the library to validated strengths ``eps`` for a model in ``dtype``:
    :class:`InputError` above 1, :class:`BelowFloorWarning` below the rounding floor (see :func:`allow_eps`)."""
    arr = np.atleast_1d(np.asarray(eps, dtype=np.float64))
    arr = arr[np.isfinite(arr)]  # the nan of method="jvp"
    if not arr.size:
        return
    above_ok, below_ok = _EPS_ALLOWED.get()
    if not above_ok and float(arr.max()) > 1:
        raise InputError(f"eps {float(arr.max()):g} is above 1, a perturbation larger than the stream itself, where no "
                         f"universal regime lies; use eps <= 1, or call inside "
                         f"`with residual_response.checks.allow_eps(above_1=True):`")
    if not below_ok:
        try:
            check_eps_floor(arr, dtype, override="call inside `with residual_response.checks.allow_eps(below_floor=True):`")
        except InputError as exc:
            warnings.warn(str(exc), BelowFloorWarning, stacklevel=stacklevel + 1)


def check_seeds(seeds, name: str = "seeds") -> list[int]:
    """The seeds of a multi-seed run, as a list: an int ``K >= 1`` means seeds ``0..K-1``, a list
    (or range) names them; each is an int in ``0..MAX_SEED`` and appears once.

    Why one meaning everywhere: every statistic averages over seeds and bootstraps over them; a
    function that took a count where another took a list made the same call mean two things,
    and a repeated seed would count one sequence twice and shrink the interval for no reason.
    """
    return list(seed_sequence(seeds, name))


def seed_sequence(seeds, name: str = "seeds") -> Sequence[int]:
    """:func:`check_seeds` without making a list of a count: ``range(K)`` for a count ``K``, a tuple
    for a list. Why: a count is checked (and a run of a billion seeds refused by its estimate)
    before a billion seeds are held in memory."""
    if isinstance(seeds, (numbers.Integral, np.integer)) and not isinstance(seeds, (bool, np.bool_)):
        return range(check_int(seeds, f"{name} (a count)", minimum=1, maximum=MAX_SEED + 1))
    if isinstance(seeds, (str, bytes, float, bool)) or seeds is None:
        raise TypeError(f"{name} must be a count K >= 1 or a list of seeds, got {_describe(seeds)}")
    out = check_int_list(seeds, name, minimum=0, maximum=MAX_SEED)
    if len(set(out)) != len(out):
        raise InputError(f"{name} {out} contain repeats; each seed must appear once")
    return tuple(out)


def check_bootstrap(n_boot, confidence, name: str = "n_boot") -> tuple[int, float]:
    """Bootstrap settings: ``n_boot`` an int >= 1 and ``confidence`` a number in (0, 1).

    Why here and not left to numpy: ``n_boot=0`` makes quantiles of an empty array, which fail
    with an index error far from the call, after the whole computation has run.
    """
    n = check_int(n_boot, name, minimum=1)
    c = check_number(confidence, "confidence", positive=True, below=1.0)
    return n, c


def _bad_eps(value) -> InputError:
    """The one message of a strength that is not finite and > 0, whatever the entry point."""
    return InputError(f"eps must be finite and > 0, got {float(value)!r}")


def check_eps(eps) -> float:
    """One strength: a finite number > 0, as a ``float`` (the message of :func:`validate_eps`)."""
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, (numbers.Real, np.integer, np.floating)):
        raise TypeError(f"eps must be a number > 0, got {_describe(eps)}")
    if not (math.isfinite(float(eps)) and float(eps) > 0):
        raise _bad_eps(eps)
    return float(eps)


def validate_eps(eps) -> np.ndarray:
    """Strengths must be a number or a flat list of numbers, each finite and > 0; returns float64 ``[n_eps]``.

    Why strict about the shape: a nested list such as ``[[1e-2, 1e-3]]`` would otherwise be
    flattened or broadcast into a sweep the caller did not ask for.
    """
    import torch

    if isinstance(eps, torch.Tensor):
        eps = eps.detach().cpu().numpy()
    if isinstance(eps, (str, bytes)) or eps is None or isinstance(eps, (bool, np.bool_)):
        raise TypeError(f"eps must be a number or a list of numbers > 0, got {eps!r}")
    try:
        arr = np.asarray(eps)
    except (ValueError, TypeError):
        raise TypeError(f"eps must be a number or a flat list of numbers > 0, got {eps!r}") from None
    if arr.ndim > 1:
        raise InputError(f"eps must be a number or a flat list of numbers, got a nested list of shape {arr.shape}")
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"eps must hold numbers, got {eps!r}")
    arr = np.atleast_1d(arr.astype(np.float64))
    if arr.size == 0:
        raise InputError("eps is empty; give at least one strength > 0")
    bad = arr[~np.isfinite(arr) | (arr <= 0)]
    if bad.size:
        raise _bad_eps(bad[0])
    return arr


def validate_layer(lm, layer, *, allow_last: bool = False, what: str = "layer") -> int:
    """A stream index: an int in ``0..L-1`` (``0..L`` with ``allow_last``)."""
    check_int(layer, what)
    top = lm.n_layers if allow_last else lm.n_layers - 1
    if not 0 <= int(layer) <= top:
        raise InputError(f"{what} {layer} out of range for {lm.name}; allowed 0..{top}")
    return int(layer)


def validate_l0(lm, l0) -> int:
    """The perturbed stream ``l0``: an int in ``0..L-1``, with one message whatever the entry point
    (a keyword of the library, ``--layer`` of the command line, a row of a section map)."""
    return validate_layer(lm, l0, what="perturbed stream l0")


def validate_read_streams(lm, streams, l0: int) -> list[int]:
    """Read streams: ints in ``l0..L`` (a stream before the perturbed one has no response), sorted,
    without repeats."""
    reads = sorted(set(validate_layer(lm, l, allow_last=True, what="read stream")
                       for l in check_int_list(streams, "read_streams")))
    if reads[0] < l0:
        raise InputError(f"read stream {reads[0]} lies before the perturbed stream l0={l0}; "
                         f"allowed {l0}..{lm.n_layers}")
    return reads


def validate_tokens(lm, tokens):
    """Token ids as a 1-D int64 CPU tensor ``[N]``, within the model's vocabulary and context."""
    import torch

    if tokens is None or isinstance(tokens, (str, bytes, int, float)):
        raise TypeError(f"tokens must be a 1-D sequence of integer token ids, got {tokens!r}")
    try:
        tokens = torch.as_tensor(tokens)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"tokens must be a 1-D sequence of integer token ids, got {type(tokens).__name__}") from None
    if tokens.ndim != 1 or tokens.numel() < 2 or tokens.dtype not in (torch.int64, torch.int32):
        raise InputError(f"tokens must be a 1-D integer sequence of length >= 2, got shape {tuple(tokens.shape)} {tokens.dtype}")
    if tokens.numel() > lm.max_length:
        raise InputError(f"sequence of {tokens.numel()} tokens is beyond the context of {lm.name} ({lm.max_length})")
    if int(tokens.min()) < 0 or int(tokens.max()) >= lm.vocab_size:
        raise InputError(f"tokens: ids must lie in 0..{lm.vocab_size - 1} (the vocabulary of {lm.name}), "
                         f"got {int(tokens.min())}..{int(tokens.max())}")
    return tokens.long().cpu()


def keyword_alias(**aliases: str):
    """Accept ``old=`` keywords as aliases of renamed parameters: ``@keyword_alias(layer="block")``.

    Why: a parameter renamed so that a word means one thing everywhere (a *block* index is not a
    *layer*, i.e. a stream) keeps the calls that name it the old way working. Giving both names
    is a ``TypeError``, as for any keyword given twice.
    """
    def wrap(fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            for old, new in aliases.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{fn.__name__}() got {new}= and its alias {old}=; give one of them")
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)
        return call
    return wrap
