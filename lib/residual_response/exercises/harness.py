"""What every check of :mod:`residual_response.exercises` shares: run a student's function on small
cases, compare with the library, and say in one line what differs.

A check prints exactly one line and returns a bool:

- ``✓ name: ...`` and ``True`` when every case agrees within the stated tolerance;
- ``name: not implemented yet`` and ``False`` when the function raises ``NotImplementedError``
  (the stub as handed out), so that a notebook with empty stubs still runs to its end;
- ``✗ name (case): what differs, expected ..., received ...`` and ``False`` on the first case that
  disagrees, raises another exception, returns the wrong kind of value, or leaves a hook on the model.

Why one line and no traceback: the check is read by a student in the middle of a notebook; a
traceback through the library would point at the library, not at the student's mistake.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

__all__ = ["Case", "CheckFailed", "run_check", "apply_student", "NOT_IMPLEMENTED", "as_array", "compare_arrays", "compare_number", "tiny_model",
           "hook_count"]

#: the mark of a passed and of a failed check, the first character of the line
PASS, FAIL = "✓", "✗"

#: the end of the one line a check or a "Use it" cell prints for a stub still empty
NOT_IMPLEMENTED = "not implemented yet"


class CheckFailed(Exception):
    """A case disagrees with the library; its message is the one sentence the check prints."""


@dataclass
class Case:
    """One call of the student's function and what the library returns for it.

    Attributes:
        label: the case in a few words (model and arguments), printed with a mismatch.
        args, kwargs: what the student's function is called with.
        expected: a function of no arguments that returns the library's answer (computed only when
            the student's function has returned, so a stub costs nothing).
        compare: ``compare(expected, received)`` returns ``None`` when they agree, else the sentence
            that says what differs (without the case's label).
        model: the model the case runs on, if any (checked for hooks left behind).
        raised: ``raised(exc)`` gives the usual mistake behind an exception the student's function
            raised in this case (``None``: no guess), added to the one line.
    """

    label: str
    args: tuple
    expected: Callable[[], Any]
    compare: Callable[[Any, Any], str | None]
    kwargs: dict = field(default_factory=dict)
    model: Any = None
    raised: Callable[[BaseException], str | None] | None = None


def hook_count(module: torch.nn.Module) -> int:
    """Forward hooks and pre-hooks registered on ``module`` and everything inside it, but Hugging Face's own.

    Why not Hugging Face's: transformers installs hooks of its own the first time a model is asked
    for its attention weights, and keeps them; they are not the student's to remove.
    """
    def ours(hooks) -> int:
        return sum(not str(getattr(fn, "__module__", "") or "").startswith("transformers") for fn in hooks.values())

    return sum(ours(m._forward_pre_hooks) + ours(m._forward_hooks) for m in module.modules())


_MODELS: dict[tuple[str, int], Any] = {}


def tiny_model(family: str, seed: int = 0):
    """A seeded random-initialised model of ``family`` (4 blocks, width 64, float32), built once.

    A model that a student's function left a hook on is built again, so that one mistake does not
    spoil the cases after it.
    """
    from ..models import build_random_model

    lm = _MODELS.get((family, seed))
    if lm is None or hook_count(lm.model):
        lm = _MODELS[(family, seed)] = build_random_model(family, seed=seed)
    return lm


def _is_stub(exc: NotImplementedError, fn) -> bool:
    """Whether ``exc`` is the stub's own bare ``raise NotImplementedError``: without a message, and
    raised in ``fn``'s own frame, not deeper. PyTorch raises NotImplementedError, with a message,
    for an operation it lacks (forward-mode differentiation through a fused attention kernel), and
    a C function called from the student's code adds no frame of its own."""
    if str(exc).strip():  # the stubs raise it bare; PyTorch always says what it lacks
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    code = getattr(fn, "__code__", None)
    return tb is None or code is None or tb.tb_frame.f_code is code


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else ""


def run_check(name: str, fn: Any, cases: Iterable[Case], success: str | Callable[[list], str]) -> bool:
    """Run ``fn`` on each case, print one line, return whether every case agreed.

    Args:
        name: the function's name as the exercise gives it (the line starts with it).
        fn: the student's function.
        cases: the cases, in order; built lazily, so a stub stops before any reference is computed.
        success: the rest of the ``✓`` line (what was compared, at which tolerance), or a function
            of the list of what ``fn`` returned, case by case, that gives it.
    """
    if not callable(fn):
        print(f"{FAIL} {name}: expected a function, received {type(fn).__name__} {fn!r:.60}")
        return False
    results: list = []
    for case in cases:
        before = hook_count(case.model.model) if case.model is not None else 0
        try:
            received = fn(*case.args, **case.kwargs)
        except Exception as exc:  # the stub, or the student's own error: one line
            print(_raised_line(name, fn, exc, f" ({case.label})", case.raised(exc) if case.raised is not None else None))
            return False
        if case.model is not None and hook_count(case.model.model) > before:
            left = hook_count(case.model.model) - before
            print(f"{FAIL} {name} ({case.label}) left {left} hook(s) registered on the model: remove every "
                  "hook it adds (handle.remove()) in a finally block, or the next forward pass still runs it")
            return False
        try:
            problem = case.compare(case.expected(), received)
        except CheckFailed as exc:
            problem = str(exc)
        if problem:
            print(f"{FAIL} {name} ({case.label}): {problem}")
            return False
        results.append(received)
    text = success(results) if callable(success) else success
    print(f"{PASS} {name}: {text}")
    return True


def _raised_line(name: str, fn: Any, exc: Exception, where: str = "", guess: str | None = None) -> str:
    """The one line for an exception ``fn`` raised: "not implemented yet" for the stub's own bare
    ``raise NotImplementedError``, else what was raised (``where``: the case, ``guess``: the likely mistake)."""
    if isinstance(exc, NotImplementedError) and _is_stub(exc, fn):
        return f"{name}: {NOT_IMPLEMENTED}"
    if isinstance(exc, NotImplementedError):  # PyTorch's "not implemented for ...", inside the student's work
        return (f"{FAIL} {name}{where} raised NotImplementedError inside the work, not the stub's own "
                f"`raise`: {_first_line(exc)}")
    message = _first_line(exc)
    return (f"{FAIL} {name}{where} raised {type(exc).__name__}{_student_line(fn, exc)}"
            + (f": {message}" if message else "") + (f"; {guess}" if guess else ""))


def _student_line(fn: Any, exc: BaseException) -> str:
    """``" at line N of your function"``: the last line of ``fn``'s own code in the traceback (the
    line numbers of the cell it was written in), or ``""`` where ``fn`` is not in it. Why: one
    line and no traceback, but the student still learns where in their code it failed."""
    code = getattr(fn, "__code__", None)
    tb, line = exc.__traceback__, None
    while tb is not None:
        if code is not None and tb.tb_frame.f_code is code:
            line = tb.tb_lineno
        tb = tb.tb_next
    return "" if line is None else f" at line {line - code.co_firstlineno + 1} of your function"


def apply_student(name: str, fn: Any, use: Callable[[Callable], Any]) -> Any:
    """``use(fn)``: the student's function put to work after its check (a page's "Use it" cell), or ``None``.

    Why here: a "Use it" cell runs in the student notebook with the stub still empty, and must
    then end the notebook's run as the check does, in one line (``name: not implemented yet``),
    not with a traceback through the library. Any other exception of the student's function
    gives one ``✗`` line as well, pointing back to the check; a function that is not callable too.

    Args:
        name: the function's name as the exercise gives it.
        fn: the student's function.
        use: runs the application with ``fn`` and returns what the cell shows.

    Returns:
        what ``use`` returns, or ``None`` after printing the one line.
    """
    if not callable(fn):
        print(f"{FAIL} {name}: expected a function, received {type(fn).__name__} {fn!r:.60}")
        return None
    try:
        return use(fn)
    except CheckFailed as exc:  # what the function returned cannot be used (a shape, a type)
        print(f"{FAIL} {name}: {exc}; run its check above: it says what differs")
        return None
    except Exception as exc:
        if not _raised_by(exc, fn):
            raise  # the library's own error, not the student's: show it whole
        print(_raised_line(name, fn, exc, guess="run its check above: it says what differs"))
        return None


def _raised_by(exc: BaseException, fn: Any) -> bool:
    """Whether ``fn``'s own frame is on the traceback of ``exc`` (the student's code raised it, or
    something it called)."""
    code = getattr(fn, "__code__", None)
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code is code:
            return True
        tb = tb.tb_next
    return code is None


def as_array(value: Any, what: str) -> np.ndarray:
    """``value`` (a tensor, an array, a list or a number) as a float64 array, or :class:`CheckFailed`."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float64).numpy()
    try:
        out = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CheckFailed(f"expected {what}, received a {type(value).__name__} that is not numbers") from None
    if out.dtype == object:
        raise CheckFailed(f"expected {what}, received a {type(value).__name__} that is not numbers")
    return out


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def compare_arrays(expected: Any, received: Any, *, rtol: float, atol: float, what: str,
                   axes: Sequence[str], hints: Sequence[Callable[[np.ndarray, np.ndarray], str | None]] = ()) -> str | None:
    """``None`` when ``received`` equals ``expected`` within ``|r - e| <= atol + rtol |e|``, else one sentence.

    Args:
        what: the expected value in words with its shape, e.g. ``"chi [L + 1 - l0, N]"``.
        axes: a name per axis, to say where the worst entry is (``"stream l"``, ``"target t"``).
        hints: functions ``(expected, received) -> str | None`` that recognise a common mistake; the
            first that answers is added to the sentence.
    """
    e = as_array(expected, what)
    r = as_array(received, what)
    if r.shape != e.shape:
        return f"expected {what} of shape {e.shape}, received shape {r.shape}" + _hint(hints, e, r)
    both_nan = np.isnan(e) & np.isnan(r)
    if np.any(~np.isfinite(r) & ~both_nan):
        i = np.unravel_index(int(np.argmax(~np.isfinite(r) & ~both_nan)), r.shape)
        return f"received {r[i]} at {_where(i, axes)} where {_fmt(e[i])} was expected"
    excess = np.where(both_nan, -np.inf, np.abs(r - e) - (atol + rtol * np.abs(e)))
    if not np.any(excess > 0):
        return None
    i = np.unravel_index(int(np.argmax(excess)), e.shape)
    n_bad = int(np.sum(excess > 0))
    return (f"{n_bad} of {e.size} entries differ, the most at {_where(i, axes)}: expected {_fmt(e[i])}, "
            f"received {_fmt(r[i])} (tolerance {atol:g} + {rtol:g} x |expected|)" + _hint(hints, e, r))


def compare_number(expected: Any, received: Any, *, rtol: float, what: str,
                   hints: Sequence[Callable[[float, float], str | None]] = ()) -> str | None:
    """``None`` when the number ``received`` equals ``expected`` to ``rtol``, else one sentence."""
    r = as_array(received, what)
    if r.shape not in ((), (1,)):
        return f"expected {what} (one number), received an array of shape {r.shape}"
    r, e = float(r.reshape(())), float(expected)
    if np.isfinite(r) and abs(r - e) <= rtol * abs(e):
        return None
    return f"expected {what} {_fmt(e)}, received {_fmt(r)} (relative tolerance {rtol:g})" + _hint(hints, e, r)


def _where(index: tuple, axes: Sequence[str]) -> str:
    return ", ".join(f"{name} {int(i)}" for name, i in zip(axes, index))


def _hint(hints, e, r) -> str:
    for hint in hints:
        try:
            text = hint(e, r)
        except Exception:  # a hint that does not apply to these values says nothing
            text = None
        if text:
            return f"; {text}"
    return ""
