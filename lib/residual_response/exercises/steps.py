"""Checks of the small build-it-yourself steps: reading a number off arrays the library computes.

Each step is a few lines of arithmetic that a page otherwise leaves to a library call, written by
the student between the larger exercises (:mod:`.kick`, :mod:`.score`, :mod:`.heads`):

- ``1b`` (schematic page): where the induction stripe lies, :func:`check_induction_stripe`
  against :class:`~residual_response.sequences.InductionLayout`;
- ``2b`` (universal-response page): the regime window of one curve, :func:`check_regime_window`
  against :func:`~residual_response.regime.widest_flat_interval`;
- ``2c`` (response-matrices page): the stripe of the repeated sequences over their twins,
  :func:`check_stripe_ratio` against :func:`~residual_response.induction.stripe_entries`;
- ``3b`` (emergence page): the stream half way up the rise, :func:`check_half_rise`
  against :func:`~residual_response.rise.half_rise_layer`;
- ``4b`` (null-calibration page): the coverage of 1, :func:`check_coverage` against
  :func:`~residual_response.null.coverage_of_one`;
- ``4c`` (model-sections page): the blocks that write a stripe, :func:`check_writing_blocks`
  against :meth:`~residual_response.induction_result.SectionMap.writing_blocks`;
- ``6b`` (cross-checks page): the permutation p-value, :func:`check_permutation_p_value`
  against :func:`~residual_response.crosscheck.permutation_p_value`.

The cases are synthetic arrays, seeded, built so that each usual mistake changes the answer;
no model runs, so each check takes milliseconds. The answers are positions, counts and ratios of
counts, or values picked from the input: the tolerances are exact for integers and 1e-12
(relative) for floats.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

from ..crosscheck import permutation_p_value
from ..induction import stripe_entries
from ..induction_result import SectionMap
from ..null import coverage_of_one
from ..regime import widest_flat_interval
from ..rise import MIN_RISE, half_rise_layer
from ..sequences import InductionLayout
from .harness import Case, as_array, compare_arrays, compare_number, run_check

__all__ = ["STEP_RTOL", "check_induction_stripe", "check_regime_window", "check_stripe_ratio", "check_half_rise",
           "check_coverage", "check_writing_blocks", "check_permutation_p_value"]

#: relative tolerance of the floats these checks compare (a count over a count, a value picked
#: from the input): exact up to rounding
STEP_RTOL = 1e-12


def _hint_if(mistakes: list[tuple[Callable[[], Any], str]], same: Callable[[Any, Any], bool]) -> Callable:
    """A hint for :func:`compare_arrays` or :func:`compare_number`: the text of the first mistake
    whose result equals what the student returned."""
    def hint(e, r):
        for wrong, text in mistakes:
            try:
                if same(wrong(), r):
                    return text
            except Exception:  # a mistake that cannot be computed for this case says nothing
                continue
        return None

    return hint


def _same_array(a, b) -> bool:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=STEP_RTOL, atol=0.0, equal_nan=True))


# ------------------------------------------------------------------------------------------
# 1b: where the induction stripe lies
# ------------------------------------------------------------------------------------------


def _stripe_cases() -> Any:
    for T, bos in ((6, True), (9, False), (2, True)):
        layout = InductionLayout(T=T, offset=int(bos))
        src, tgt = layout.induction_sources.numpy(), layout.induction_targets.numpy()  # [T - 1] each
        off = int(bos)  # the position of a_1
        mistakes = [
            (lambda: (src, src + T), "those are the duplicate-token targets (lag T): the induction target of "
                                     "source a_k is the second a_(k-1), T - 1 positions later"),
            (lambda: (src - 1, tgt - 1) if bos else (src + 1, tgt + 1),
             "the first stripe source is a_2, at position 2 with BOS (a_k sits at position k, k = 2..T)" if bos
             else "without BOS, token a_k sits at position k - 1, not k"),
            (lambda: (np.arange(1, T) - 1 + off, np.arange(1, T) - 1 + off + T - 1),
             "the stripe runs over k = 2..T (a_1 has no earlier token in front of it to induce from)"),
        ]

        def compare(expected, received, mistakes=mistakes):
            if not isinstance(received, (tuple, list)) or len(received) != 2:
                return f"expected a tuple (sources, targets) of arrays [T - 1], received {type(received).__name__}"
            pair = tuple(as_array(x, "positions [T - 1]") for x in received)
            hint = _hint_if(mistakes, lambda w, r: all(_same_array(a, b) for a, b in zip(w, r)))
            for name, e, r in zip(("sources", "targets"), expected, pair):
                problem = compare_arrays(e, r, rtol=0.0, atol=0.0, what=f"the {name} [T - 1]", axes=("pair",))
                if problem:
                    extra = hint(None, pair)
                    return f"{name}: {problem}" + (f"; {extra}" if extra else "")
            return None

        yield Case(label=f"T={T}, {'with' if bos else 'without'} BOS", args=(T, bos),
                   expected=lambda s=src, t=tgt: (s, t), compare=compare)


def check_induction_stripe(induction_stripe: Callable) -> bool:
    """Build it yourself 1b: the (source, target) positions of the induction stripe.

    Calls ``induction_stripe(T, bos)`` for sequences ``[BOS?, a_1..a_T, a_1..a_T]`` and compares
    the ``(sources, targets)`` it returns, each ``[T - 1]`` integer positions, with
    :class:`~residual_response.sequences.InductionLayout`, exactly (they are positions).

    Returns:
        ``True`` if every case agrees; prints one line either way (:mod:`.harness`).
    """
    return run_check("induction_stripe", induction_stripe, _stripe_cases(),
                     "the stripe's sources and targets match the library's InductionLayout for T = 6, 9 and 2, "
                     "with and without BOS (exact)")


# ------------------------------------------------------------------------------------------
# 2b: the regime window of one curve
# ------------------------------------------------------------------------------------------


def _window_curves() -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    """``(label, eps [n], curve [n], tol)``: a float32-like sweep (rounding floor below, bending
    above), one with its widest flat run not at the start, and one with no window at all."""
    eps = np.logspace(-7, 0, 15)
    bend = 1 + 0.4 * eps  # the response bends above the plateau
    floor = 1 + 3e-8 / eps * np.cos(np.arange(15))  # rounding below it
    rng = np.random.default_rng(7)
    wobbly = 1 + 0.03 * rng.standard_normal(15)
    return [("a float32-like sweep, tol 0.01", eps, 0.37 * bend * floor, 0.01),
            ("the same sweep, tol 0.05", eps, 0.37 * bend * floor, 0.05),
            ("a wobbly curve without a window, tol 0.001", eps, wobbly, 0.001)]


def _first_point_window(eps, curve, tol):
    """The mistake: each run measured against its first point instead of its median."""
    best = None
    for i in range(len(eps)):
        for j in range(i + 1, len(eps)):
            if np.max(np.abs(curve[i:j + 1] / curve[i] - 1)) > tol:
                break
            if best is None or j - i > best[1] - best[0]:
                best = (i, j)
    return None if best is None else (eps[best[0]], eps[best[1]])


def _neighbour_window(eps, curve, tol):
    """The mistake: only neighbouring points compared, so a slow drift passes."""
    ok = np.abs(curve[1:] / curve[:-1] - 1) <= tol  # [n - 1]
    best, start = None, None
    for i, good in enumerate(list(ok) + [False]):
        if good and start is None:
            start = i
        if not good and start is not None:
            if best is None or i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    return None if best is None else (eps[best[0]], eps[best[1]])


def _window_cases() -> Any:
    for label, eps, curve, tol in _window_curves():
        iv = widest_flat_interval(eps, curve, tol)
        expected = None if iv is None else (float(eps[iv[0]]), float(eps[iv[1]]))
        mistakes = [(lambda e=eps, c=curve, t=tol: _first_point_window(e, c, t),
                     "each run is compared with its first point; compare it with its own median"),
                    (lambda e=eps, c=curve, t=tol: _neighbour_window(e, c, t),
                     "neighbouring points agree while the curve drifts: every point of the run must lie within "
                     "tol of the run's median"),
                    (lambda iv=iv: iv, "those are indices into eps; return the strengths eps[i], eps[j]")]

        def compare(expected, received, mistakes=mistakes):
            hint = _hint_if(mistakes, lambda w, r: (w is None and r is None) or (
                w is not None and r is not None and _same_array(w, r)))
            if expected is None:
                if received is None:
                    return None
                return "expected None (no two neighbouring strengths agree within tol), received " + \
                    f"{received!r:.60}" + (f"; {hint(None, received)}" if hint(None, received) else "")
            if received is None:
                return f"expected the window {expected}, received None" + \
                    (f"; {hint(None, received)}" if hint(None, received) else "")
            if not isinstance(received, (tuple, list)) or len(received) != 2:
                return f"expected a tuple (eps_low, eps_high), received {type(received).__name__}"
            problem = compare_arrays(np.array(expected), np.array([as_array(x, "eps") for x in received]),
                                     rtol=STEP_RTOL, atol=0.0, what="(eps_low, eps_high)", axes=("end",))
            if problem:
                extra = hint(None, received)
                return problem + (f"; {extra}" if extra else "")
            return None

        yield Case(label=label, args=(eps, curve, tol), expected=lambda x=expected: x, compare=compare)


def check_regime_window(regime_window: Callable) -> bool:
    """Build it yourself 2b: the widest run of strengths over which a response curve stays flat.

    Calls ``regime_window(eps, curve, tol)`` (``eps``, ``curve``: ``[n]``, ``eps`` increasing) and
    compares the ``(eps_low, eps_high)`` it returns, or ``None``, with
    :func:`~residual_response.regime.widest_flat_interval`, the rule of the page's regime, to a
    relative tolerance of 1e-12 (the ends are strengths of the grid).

    Returns:
        ``True`` if every case agrees; prints one line either way (:mod:`.harness`).
    """
    return run_check("regime_window", regime_window, _window_cases(),
                     "the window matches regime.widest_flat_interval on 3 curves, one without a window "
                     f"(relative tolerance {STEP_RTOL:g})")


# ------------------------------------------------------------------------------------------
# 2c: the stripe of the repeated sequences over their twins
# ------------------------------------------------------------------------------------------


def _stripe_mean(chi: np.ndarray, layout: InductionLayout, *, lag: int | None = None,
                 positions_as_rows: bool = False) -> np.ndarray:
    """``[n_read]`` the mean of a stripe of ``chi [n_read, T, N]``: with the defaults the library's
    induction stripe, else a usual mistake (the lag ``T``; source positions taken for rows)."""
    if lag is None and not positions_as_rows:
        return stripe_entries(chi, layout, "random")[0][0].mean(axis=1)
    src = layout.induction_sources.numpy()  # [T - 1] positions
    rows = src if positions_as_rows else src - layout.offset
    targets = src + (layout.T - 1 if lag is None else lag)
    keep = rows < layout.T
    return chi[:, rows[keep], targets[keep]].mean(axis=1)


def _no_offset_ratio(chi_rep: np.ndarray, chi_twin: np.ndarray, T: int) -> np.ndarray:
    """``[n_read]`` the mistake: the targets counted as if there were no BOS (the positions
    ``k - 1 + T - 1``), whatever the sequences start with."""
    k = np.arange(2, T + 1)
    rows, targets = k - 1, k - 1 + T - 1
    return chi_rep[:, rows, targets].mean(axis=1) / chi_twin[:, rows, targets].mean(axis=1)


def _ratio_cases() -> Any:
    rng = np.random.default_rng(17)
    for n_read, T, bos in ((5, 6, True), (3, 5, False)):
        layout = InductionLayout(T=T, offset=int(bos))
        N = 2 * T + int(bos)
        chi_rep, chi_twin = rng.lognormal(size=(n_read, T, N)), rng.lognormal(size=(n_read, T, N))
        ind = stripe_entries(chi_rep, layout, "random")[0][0], stripe_entries(chi_twin, layout, "random")[0][0]
        mistakes = [
            (lambda a=chi_rep, b=chi_twin, lay=layout: _stripe_mean(a, lay, lag=T) / _stripe_mean(b, lay, lag=T),
             "that is the duplicate-token stripe (target T + k); the induction stripe's target is T + k - 1"),
            (lambda a=chi_rep, b=chi_twin, lay=layout: _stripe_mean(a, lay, positions_as_rows=True)
             / _stripe_mean(b, lay, positions_as_rows=True),
             "row j of a matrix is the source a_(j+1): with BOS, the row of source position s is s - 1"),
            (lambda a=chi_rep, b=chi_twin: _no_offset_ratio(a, b, T),
             "the targets miss the BOS offset: a matrix's columns are positions, and with BOS the second a_(k-1) "
             "sits at position T + k - 1, one column further than without"),
            (lambda i=ind: np.mean(i[0] / i[1], axis=1), "that is the mean of the entries' ratios; the ratio is one "
                                                         "of means: mean stripe (repeated) over mean stripe (twin)"),
        ]
        hint = _hint_if(mistakes, _same_array)
        yield Case(label=f"random matrices, {n_read} streams, T={T}, {'with' if bos else 'without'} BOS",
                   args=(chi_rep, chi_twin, T, bos), expected=lambda i=ind: i[0].mean(axis=1) / i[1].mean(axis=1),
                   compare=lambda e, r, hint=hint: compare_arrays(e, r, rtol=STEP_RTOL, atol=0.0,
                                                                  what="the ratio [n_read]", axes=("read-stream index",),
                                                                  hints=[hint]))


def check_stripe_ratio(stripe_ratio: Callable) -> bool:
    """Build it yourself 2c: the induction stripe of repeated sequences over the same cells of their twins.

    Calls ``stripe_ratio(chi_rep, chi_twin, T, bos)`` (``[n_read, T, N]`` each, rows the first
    copy's sources) and compares the ``[n_read]`` ratios it returns with the mean stripe entries of
    :func:`~residual_response.induction.stripe_entries`, to a relative tolerance of 1e-12.

    Returns:
        ``True`` if every case agrees; prints one line either way (:mod:`.harness`).
    """
    return run_check("stripe_ratio", stripe_ratio, _ratio_cases(),
                     "the ratios match the stripe entries of induction.stripe_entries, with and without BOS "
                     f"(relative tolerance {STEP_RTOL:g})")


# ------------------------------------------------------------------------------------------
# 3b: the stream half way up the rise
# ------------------------------------------------------------------------------------------


def _rise_profiles() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(label, streams [n], score [n])``, the first score NaN (the kicked stream l0 has none)."""
    rng = np.random.default_rng(11)
    out = []
    # a rise by a factor 8 between streams 6 and 10 of 16, a dip before it, a fall after the top
    streams = np.arange(0, 17)
    log_s = np.log(8) / (1 + np.exp(-(streams - 8.0) * 1.3)) + 0.05 * rng.standard_normal(17)
    log_s[3] = -0.45  # the minimum before the top
    log_s[15:] = [0.6, 0.2]  # after the top the score falls below its middle
    out.append(("a rise by 8x over 16 streams", streams, np.exp(log_s)))
    # a second rise from a minimum that lies *after* the top
    streams = np.arange(2, 12)
    score = np.array([1.0, 0.9, 1.1, 2.5, 6.0, 7.5, 7.0, 3.0, 0.5, 0.6])
    out.append(("a score that falls below its start after the top, l0 = 2", streams, score))
    for _, _, s in out:
        s[0] = np.nan  # the kicked stream
    return out


def _linear_half(streams, score):
    """The mistake: half way in the score itself, not in its log."""
    keep = np.isfinite(score)
    l, s = streams[keep], score[keep]
    top = int(np.argmax(s))
    bottom = int(np.argmin(s[:top + 1]))
    level = (s[bottom] + s[top]) / 2
    return int(next(l[i] for i in range(bottom, top + 1) if s[i] >= level))


def _global_min_half(streams, score, from_start: bool = False):
    """The mistake: the bottom is the smallest score anywhere, not before the top; the stream is
    searched between bottom and top, or (``from_start``) from the first stream on."""
    keep = np.isfinite(score)
    l, s = streams[keep], np.log(score[keep])
    top, bottom = int(np.argmax(s)), int(np.argmin(s))
    level = (s[bottom] + s[top]) / 2
    lo, hi = (0, len(s) - 1) if from_start else sorted((bottom, top))
    return int(next(l[i] for i in range(lo, hi + 1) if s[i] >= level))


GLOBAL_MIN_HINT = ("the bottom is the smallest score at or before the top, not the smallest anywhere: here the score "
                   "falls below its start after the top, and a bottom there moves the half level")


def _no_stream_reached(exc: BaseException) -> str | None:
    """The usual cause of a ``StopIteration`` (or an empty ``argmax``) in this exercise."""
    if isinstance(exc, (StopIteration, ValueError, IndexError)):
        return ("no stream from your bottom on reaches the half level: is your bottom after the top? "
                + GLOBAL_MIN_HINT[0].upper() + GLOBAL_MIN_HINT[1:])
    return None


def _rise_cases() -> Any:
    for label, streams, score in _rise_profiles():
        expected = half_rise_layer(streams, score)
        keep = np.isfinite(score)
        mistakes = [
            (lambda a=streams, b=score: _linear_half(a, b),
             "that is half way in the score itself; the rise is measured in factors: half way in log score"),
            (lambda a=streams, b=score: _global_min_half(a, b), GLOBAL_MIN_HINT),
            (lambda a=streams, b=score: _global_min_half(a, b, from_start=True), GLOBAL_MIN_HINT),
            (lambda e=expected, a=streams[keep]: int(np.flatnonzero(a == e)[0]),
             "that is an index into the finite scores; return the stream itself, streams[i]"),
            (lambda e=expected, a=streams: int(np.flatnonzero(a == e)[0]),
             "that is an index into the arrays; return the stream itself, streams[i]"),
        ]
        hint = _hint_if(mistakes, lambda w, r: float(w) == float(r))

        def compare(expected, received, hint=hint):
            r = as_array(received, "a stream (one integer)")
            if r.shape not in ((), (1,)):
                return f"expected a stream (one integer), received an array of shape {r.shape}"
            if float(r.reshape(())) == float(expected):
                return None
            text = hint(expected, float(r.reshape(())))
            return f"expected stream {expected}, received {received}" + (f"; {text}" if text else "")

        yield Case(label=label, args=(streams, score), expected=lambda e=expected: e, compare=compare,
                   raised=_no_stream_reached)


def check_half_rise(half_rise_stream: Callable) -> bool:
    """Build it yourself 3b: the stream half way up a score profile's rise (the emergence layer's rule).

    Calls ``half_rise_stream(streams, score)`` (``[n]`` each; non-finite scores left out) and
    compares the stream it returns with :func:`~residual_response.rise.half_rise_layer`, the rule
    of :class:`~residual_response.rise.Rise`, exactly (it is a stream).

    Returns:
        ``True`` if every case agrees; prints one line either way (:mod:`.harness`).
    """
    return run_check("half_rise_stream", half_rise_stream, _rise_cases(),
                     "the stream matches rise.half_rise_layer on 2 profiles, a dip before the top and a fall after it "
                     "(exact)")


# ------------------------------------------------------------------------------------------
# 4b: the coverage of 1
# ------------------------------------------------------------------------------------------


def _coverage_cases() -> Any:
    rng = np.random.default_rng(5)
    for label, l0, n in (("12 streams, l0 = 0", 0, 13), ("6 streams, l0 = 3", 3, 10)):
        streams = np.arange(l0, n)
        score = np.exp(0.15 * rng.standard_normal(len(streams)))
        half = np.abs(0.2 * rng.standard_normal(len(streams))) + 0.02
        low, high = score * np.exp(-half), score * np.exp(half)
        score[0], low[0], high[0] = np.nan, np.nan, np.nan  # the kicked stream has no score
        res = SimpleNamespace(read_streams=list(streams), l0=l0, score=score, ci_low=low, ci_high=high,
                              control="twin", model="synthetic")
        scored = slice(1, None)
        covers = (low[scored] <= 1) & (1 <= high[scored])
        mistakes = [
            (lambda c=covers: float(np.sum(c)) / (len(c) + 1),
             "the kicked stream l0 has no score (NaN): leave it out of the count and of the total"),
            (lambda lo=low[scored]: float(np.mean(lo > 1)), "that is the share whose interval lies above 1; "
                                                            "an interval covers 1 when low <= 1 <= high"),
            (lambda lo=low[scored]: float(np.sum(lo > 1)) / (len(lo) + 1),
             "that is the share whose interval lies above 1, over every stream; an interval covers 1 when "
             "low <= 1 <= high, and the kicked stream l0 (NaN) counts in neither"),
            (lambda c=covers: float(np.sum(c)), "that is the number of streams; return the fraction"),
            (lambda c=covers: float(np.mean(~c)), "that is the share that misses 1"),
        ]
        hint = _hint_if(mistakes, lambda w, r: np.isclose(w, r, rtol=STEP_RTOL, atol=0.0))
        yield Case(label=label, args=(streams, l0, score, low, high),
                   expected=lambda res=res: coverage_of_one(res, "exercise").share,
                   compare=lambda e, r, hint=hint: compare_number(e, r, rtol=STEP_RTOL, what="coverage", hints=[hint]))


def check_coverage(interval_coverage: Callable) -> bool:
    """Build it yourself 4b: the share of scored streams whose interval covers 1.

    Calls ``interval_coverage(streams, l0, score, ci_low, ci_high)`` (``[n]`` each; the kicked
    stream ``l0`` has a NaN score) and compares the fraction it returns with the share of
    :func:`~residual_response.null.coverage_of_one`, to a relative tolerance of 1e-12.

    Returns:
        ``True`` if every case agrees; prints one line either way (:mod:`.harness`).
    """
    return run_check("interval_coverage", interval_coverage, _coverage_cases(),
                     f"the coverage matches null.coverage_of_one on 2 random profiles (relative tolerance {STEP_RTOL:g})")


# ------------------------------------------------------------------------------------------
# 4c: the blocks that write a stripe
# ------------------------------------------------------------------------------------------


def _section_maps() -> list[tuple[str, list[int], np.ndarray]]:
    """``(label, l0s, ci_low [n_l0, L + 1])``, NaN where ``l <= l0``: a sampled grid of ``l0`` (so
    that row ``i`` is not stream ``i``), lower ends between 1 and 1.5, between 1.5 and 2.5 and above,
    and a full grid."""
    rng = np.random.default_rng(13)
    out = []
    for label, L, l0s in (("L = 12, l0 in 0, 3, 5, 8, 10", 12, [0, 3, 5, 8, 10]), ("L = 6, every l0", 6, list(range(6)))):
        low = np.exp(rng.uniform(-0.2, 1.4, size=(len(l0s), L + 1)))  # [n_l0, L + 1] lower ends 0.8..4
        for i, l0 in enumerate(l0s):
            low[i, : l0 + 1] = np.nan  # no score at or before the kicked stream
        first = [low[i, l0 + 1] for i, l0 in enumerate(l0s)]
        if not any(1.0 < f <= MIN_RISE for f in first):  # a lower end above 1 but not clearly: the margin matters
            i = len(l0s) // 2
            low[i, l0s[i] + 1] = 1.2
        low[0, l0s[0] + 1] = 2.0  # above the threshold, below 1 + threshold: that mistake shows as itself
        out.append((label, l0s, low))
    return out


def _writing_cases() -> Any:
    for label, l0s, low in _section_maps():
        n_l0, width = low.shape
        sm = SectionMap(model="synthetic", T=8, seeds=[0], l0s=l0s, read_streams=list(range(width)), score=low * 1.3,
                        ci_low=low, ci_high=low * 1.7, duplicate_score=low)
        mistakes = [
            (lambda: sm.writing_blocks(threshold=1.0), "that is an interval above 1; a block writes a stripe when the "
                                                       f"lower end lies above {MIN_RISE:g} (rise.MIN_RISE), the margin "
                                                       "the emergence criterion asks of a rise"),
            (lambda: sm.writing_blocks(threshold=1.0 + MIN_RISE),
             f"that compares with 1 + threshold = {1 + MIN_RISE:g}; threshold is itself the level the lower end "
             f"must exceed ({MIN_RISE:g}), not a margin to add to 1"),
            (lambda: [l0 for i, l0 in enumerate(l0s) if i + 1 < width and low[i, i + 1] > MIN_RISE],
             "row i of the map is the kick at stream l0s[i], not at stream i: read column l0s[i] + 1"),
            (lambda: [l0 for i, l0 in enumerate(l0s) if np.nanmax(low[i]) > MIN_RISE],
             "that reads the whole row; a writing block shows at the first read stream l0 + 1, right after the kick"),
        ]
        hint = _hint_if(mistakes, lambda w, r: _same_array(w, r))

        def compare(expected, received, hint=hint):
            r = as_array(list(received) if isinstance(received, (tuple, list, np.ndarray)) else received,
                         "a list of blocks")
            if r.ndim != 1:
                return f"expected a list of blocks, received an array of shape {r.shape}"
            if _same_array(expected, r):
                return None
            text = hint(expected, r)
            return (f"expected the blocks {list(expected)}, received {[int(x) if float(x).is_integer() else x for x in r]}"
                    + (f"; {text}" if text else ""))

        yield Case(label=label, args=(l0s, low), kwargs={"threshold": MIN_RISE}, compare=compare,
                   expected=lambda sm=sm: sm.writing_blocks())


def check_writing_blocks(writing_blocks: Callable) -> bool:
    """Build it yourself 4c: the blocks ``l0`` whose first read stream ``l0 + 1`` scores clearly above 1.

    Calls ``writing_blocks(l0s, ci_low, threshold=rise.MIN_RISE)`` (``l0s``: ``[n_l0]``,
    ``ci_low``: ``[n_l0, L + 1]`` a section map's lower ends) and compares the blocks it returns
    with :meth:`~residual_response.induction_result.SectionMap.writing_blocks`, exactly (they are blocks).

    Returns:
        ``True`` if every case agrees; prints one line either way (:mod:`.harness`).
    """
    return run_check("writing_blocks", writing_blocks, _writing_cases(),
                     "the blocks match SectionMap.writing_blocks on a sampled grid of l0 and a full one (exact)")


# ------------------------------------------------------------------------------------------
# 6b: the permutation p-value
# ------------------------------------------------------------------------------------------


def _p_cases() -> Any:
    rng = np.random.default_rng(9)
    draws = np.round(rng.normal(0.2, 0.15, size=19), 2)  # [19], rounded so that ties occur
    cases = [("the named drop above every random one", 0.9, draws),
             ("a drop tied with random ones", float(np.sort(draws)[12]), draws),
             ("the named drop below every random one, 4 draws", -0.5, draws[:4])]
    for label, drop, rand in cases:
        mistakes = [
            (lambda d=drop, x=rand: float(np.mean(x >= d)), "without the ones: the named set counts as one more draw, "
                                                            "(1 + #{random >= drop}) / (1 + n)"),
            (lambda d=drop, x=rand: (1 + float(np.sum(x > d))) / (1 + len(x)),
             "ties count against the named heads: count the random drops >= the named one, not >"),
            (lambda d=drop, x=rand: (1 + float(np.sum(x <= d))) / (1 + len(x)),
             "count the random drops at least as large as the named one (>=), not those below it"),
        ]
        hint = _hint_if(mistakes, lambda w, r: np.isclose(w, r, rtol=STEP_RTOL, atol=0.0))
        yield Case(label=label, args=(drop, rand), expected=lambda d=drop, x=rand: permutation_p_value(d, x),
                   compare=lambda e, r, hint=hint: compare_number(e, r, rtol=STEP_RTOL, what="p-value", hints=[hint]))


def check_permutation_p_value(p_value_fn: Callable) -> bool:
    """Build it yourself 6b: the permutation p-value of the named heads' drop among random draws.

    Calls ``permutation_p_value(drop, random_drops)`` (a number and ``[n]``) and compares the
    p-value it returns with :func:`~residual_response.crosscheck.permutation_p_value`, the rule of
    the page's rank test, to a relative tolerance of 1e-12.

    Returns:
        ``True`` if every case agrees; prints one line either way (:mod:`.harness`).
    """
    return run_check("permutation_p_value", p_value_fn, _p_cases(),
                     "the p-value matches crosscheck.permutation_p_value with and without ties "
                     f"(relative tolerance {STEP_RTOL:g})")
