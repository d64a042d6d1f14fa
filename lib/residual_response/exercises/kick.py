"""Checks of the kick and its response: chi of one source at finite eps, and its exact limit (the JVP).

Build it yourself 1 (the schematic page): :func:`check_chi_one_source` calls the student's
``chi_one_source(lm, tokens, l0, source, eps, u)`` and compares it with
:func:`residual_response.response` for the same direction. Build it yourself 2 (the universal-response
page): :func:`check_chi_jvp` calls ``chi_jvp(lm, tokens, l0, source, u)``, compares it with
``response(..., method="jvp")``, then measures where the finite-eps response stays on the
student's JVP: the plateau of the universal regime.

The cases: tiny random-initialised models (4 blocks, width 64, float32) of three architectures,
a repeated sequence of ``T = 4`` (9 tokens with BOS), kicks at different streams and sources. The
direction ``u`` is the one the library draws for that source (:func:`~residual_response.perturbation.perturbation_directions`,
seed :data:`DIRECTION_SEED`), so that both sides kick the same way.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ..engine import response
from ..perturbation import perturbation_directions
from ..sequences import make_sequence
from .harness import Case, as_array, compare_arrays, run_check, tiny_model

__all__ = ["DIRECTION_SEED", "KICK_CASES", "KICK_TOLERANCE", "JVP_TOLERANCE", "PLATEAU_EPS", "check_chi_one_source",
           "check_chi_jvp"]

#: seed of the kick's direction in every case
DIRECTION_SEED = 7

#: ``(family, l0, source, eps)`` of each case: the embedding stream and deeper ones, a source in
#: each copy, two strengths
KICK_CASES = (("llama", 0, 3, 1e-2), ("gpt2", 1, 5, 1e-2), ("gemma2", 2, 1, 1e-3))

#: ``(rtol, atol)`` of build-it 1: float32 rounding of the kicked stream's change, divided by eps,
#: is about 1e-5 of chi; a missing ``/ eps`` or a wrong norm is off by far more
KICK_TOLERANCE = (1e-3, 1e-4)

#: ``(rtol, atol)`` of build-it 2: a JVP has no eps to divide a rounding error by, so both sides
#: agree to float32 precision; a finite kick of 1e-2 differs from it by about 1e-3
JVP_TOLERANCE = (1e-4, 1e-6)

#: strengths of the finite-eps sweep that build-it 2 lays against the student's JVP
PLATEAU_EPS = tuple(10.0 ** -k for k in range(0, 8))

#: how close to the JVP the finite-eps response must stay to count as on the plateau
PLATEAU_TOL = 0.01

_T = 4
_AXES = ("read stream l0 +", "target t")


def _setting(family: str, l0: int, source: int, eps: float | None = None) -> tuple[Any, torch.Tensor, torch.Tensor, str]:
    lm = tiny_model(family)
    tokens = make_sequence(lm, "repeated", _T, seed=0)  # [N]
    u = perturbation_directions(lm, tokens, torch.tensor([source]), 1, "gaussian", DIRECTION_SEED)[0, 0]  # [d] float64
    label = f"{lm.name}, l0={l0}, source={source}" + ("" if eps is None else f", eps={eps:g}")
    return lm, tokens, u, label


def _library_chi(lm, tokens, l0: int, source: int, eps: float | None) -> np.ndarray:
    """``[L + 1 - l0, N]`` the library's chi of one source (``eps=None``: the JVP)."""
    if eps is None:
        res = response(lm, tokens, l0=l0, sources=[source], seed=DIRECTION_SEED, method="jvp")
    else:
        res = response(lm, tokens, [eps], l0=l0, sources=[source], seed=DIRECTION_SEED)
    return res.chi[0, :, 0, :]


def _shape_hints(n_streams: int, l0: int) -> list[Callable]:
    def rows(e, r):
        if r.shape == e.shape:
            return None
        if r.ndim == 2 and r.shape == e.shape[::-1]:
            return "rows are the read streams l0..L and columns the targets: transpose your result"
        if r.ndim == 2 and r.shape[0] == n_streams + l0:
            return "keep only the streams from l0 on (rows l0..L), the earlier ones are not read"
        if r.ndim == 2 and r.shape[0] < e.shape[0]:
            return ("the rows are every stream from l0 (the kicked stream itself, chi 1 at the source) to L "
                    "(the last block's output, before the final norm)")
        return None
    return [rows]


def _value_hints(eps: float | None, source: int) -> list[Callable]:
    def causal(e, r):
        if np.any(np.abs(r[:, :source]) > 1e-6):
            return ("a kick never moves a position before its source (causality): add it at position `source` "
                    "of the stream entering block l0 only")
        return None

    def divide(e, r):
        if eps is not None and np.allclose(r, e * eps, rtol=1e-2, atol=1e-6):
            return "your values are eps times too small: chi is the relative change divided by eps"
        return None

    def same_stream(e, r):
        if np.allclose(r[0], e[0], rtol=1e-2, atol=1e-4) and np.allclose(r[1:], 0, atol=1e-6):
            return "every stream after l0 is unchanged: read the streams of the kicked forward pass, not of a clean one"
        return None

    def constant_factor(e, r):
        if r.shape != e.shape:
            return None
        big = np.abs(e) > 1e-6
        if big.sum() < 2 or not np.all(np.isfinite(r[big])):
            return None
        ratio = r[big] / e[big]
        c = float(np.median(ratio))
        if abs(c - 1) > 0.05 and np.allclose(ratio, c, rtol=2e-2):
            return (f"every value is {c:.3g} times the expected one, a constant factor: check the kick's size "
                    "(eps times the source stream's norm times u, not eps times u) and the division (by eps and "
                    "by the norm of the clean stream at the target)")
        return None

    return [causal, divide, same_stream, constant_factor]


def _kick_cases() -> Any:
    rtol, atol = KICK_TOLERANCE
    for family, l0, source, eps in KICK_CASES:
        lm, tokens, u, label = _setting(family, l0, source, eps)
        n_read = lm.n_layers + 1 - l0

        def compare(expected, received, l0=l0, source=source, eps=eps, n_read=n_read, L=lm.n_layers):
            what = "chi [L + 1 - l0, N] (streams l0..L, every target)"
            return compare_arrays(expected, received, rtol=rtol, atol=atol, what=what, axes=_AXES,
                                  hints=_shape_hints(L + 1 - l0, l0) + _value_hints(eps, source))

        yield Case(label=label, args=(lm, tokens, l0, source, eps, u), model=lm, compare=compare,
                   expected=lambda lm=lm, tokens=tokens, l0=l0, source=source, eps=eps: _library_chi(lm, tokens, l0, source, eps))


def check_chi_one_source(chi_one_source: Callable) -> bool:
    """Build it yourself 1: the kick at stream ``l0`` with a forward hook, and chi of one source.

    Calls ``chi_one_source(lm, tokens, l0, source, eps, u)`` on the cases of :data:`KICK_CASES`
    (``tokens`` ``[N]``, ``u`` ``[d]`` a float64 unit vector) and compares the result,
    ``[L + 1 - l0, N]``, with the library's ``response(lm, tokens, [eps], l0=l0,
    sources=[source], seed=DIRECTION_SEED).chi[0, :, 0, :]`` to ``|r - e| <= 1e-4 + 1e-3 |e|``.

    Returns:
        ``True`` if every case agrees; prints one line either way (:mod:`.harness`).
    """
    rtol, atol = KICK_TOLERANCE
    return run_check("chi_one_source", chi_one_source, _kick_cases(),
                     f"matches the library's response on {len(KICK_CASES)} models (tolerance {atol:g} + {rtol:g} x |chi|)")


def _jvp_cases() -> Any:
    rtol, atol = JVP_TOLERANCE
    for family, l0, source, _ in KICK_CASES:
        lm, tokens, u, label = _setting(family, l0, source)

        def finite_kick(e, r, lm=lm, tokens=tokens, l0=l0, source=source):
            if np.allclose(r, _library_chi(lm, tokens, l0, source, 1e-2), rtol=1e-4, atol=1e-6) or \
                    np.allclose(r, _library_chi(lm, tokens, l0, source, 1e-3), rtol=1e-3, atol=1e-5):
                return ("those are the values of a finite kick; the JVP is its exact eps -> 0 limit: carry a tangent "
                        "with forward-mode AD (torch.autograd.forward_ad) instead of adding a kick")
            return None

        def no_tangent(e, r):
            if np.allclose(r[1:], 0, atol=1e-9):
                return ("nothing reaches the streams after l0: make the stream entering block l0 a dual tensor "
                        "(fwAD.make_dual) inside fwAD.dual_level() and read fwAD.unpack_dual(h).tangent")
            return None

        def compare(expected, received, l0=l0, source=source, L=lm.n_layers, hints=(finite_kick, no_tangent)):
            return compare_arrays(expected, received, rtol=rtol, atol=atol, what="chi [L + 1 - l0, N] (the JVP)",
                                  axes=_AXES, hints=_shape_hints(L + 1 - l0, l0) + _value_hints(None, source) + list(hints))

        yield Case(label=label, args=(lm, tokens, l0, source, u), model=lm, compare=compare,
                   expected=lambda lm=lm, tokens=tokens, l0=l0, source=source: _library_chi(lm, tokens, l0, source, None))


def plateau_against(jvp: np.ndarray, lm, tokens, l0: int, source: int, eps_grid=PLATEAU_EPS) -> np.ndarray:
    """``[n_eps]``: the largest relative distance of the finite-eps chi from ``jvp`` at each strength.

    Over the streams after ``l0`` and the targets from ``source`` on (where the kick arrives), for
    the kick of :data:`DIRECTION_SEED`; ``jvp`` is ``[L + 1 - l0, N]``.
    """
    from ..checks import allow_eps

    with allow_eps(below_floor=True):  # the grid reaches below the rounding floor on purpose: the plateau's lower end
        finite = response(lm, tokens, list(eps_grid), l0=l0, sources=[source], seed=DIRECTION_SEED).chi[:, :, 0, :]
    ref = as_array(jvp, "chi [L + 1 - l0, N]")[1:, source:]  # [n_read - 1, N - source]
    return np.max(np.abs(finite[:, 1:, source:] - ref) / ref, axis=(1, 2))


def check_chi_jvp(chi_jvp: Callable) -> bool:
    """Build it yourself 2: the exact linear response (JVP) of one source, and the finite-eps plateau against it.

    Calls ``chi_jvp(lm, tokens, l0, source, u)`` on the cases of :data:`KICK_CASES` and compares
    the result, ``[L + 1 - l0, N]``, with the library's ``response(..., method="jvp")`` to
    ``|r - e| <= 1e-6 + 1e-4 |e|``. When every case agrees, the line it prints also says over
    which strengths of :data:`PLATEAU_EPS` the library's finite-eps chi of the first case stays
    within 1 % of the student's JVP (:func:`plateau_against`): the plateau of the universal regime.

    Returns:
        ``True`` if every case agrees; prints one line either way (:mod:`.harness`).
    """
    rtol, atol = JVP_TOLERANCE

    def success(received: list) -> str:
        family, l0, source, _ = KICK_CASES[0]
        lm, tokens, _, _ = _setting(family, l0, source)
        dev = plateau_against(received[0], lm, tokens, l0, source)  # against the student's own JVP
        on = [e for e, d in zip(PLATEAU_EPS, dev) if d <= PLATEAU_TOL]
        where = (f"for eps from {min(on):.0e} to {max(on):.0e}" if on else "at no strength of the sweep")
        return (f"matches the library's JVP on {len(KICK_CASES)} models (tolerance {atol:g} + {rtol:g} x |chi|); "
                f"on {lm.name} the finite-eps chi stays within {PLATEAU_TOL:.0%} of it {where}: that is the plateau")

    return run_check("chi_jvp", chi_jvp, _jvp_cases(), success)
