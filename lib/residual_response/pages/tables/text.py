"""The words of the book's pages: numbers as the book writes them, and the sentences that quote them.

Why apart from the frames (:mod:`.frames`): a sentence is read, a frame is plotted or shown as a
table; the frames use these words (a missing value, a number with its interval, the setting it was
measured at), never the other way round.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from ...rise import MIN_RISE, STEP_SHARE, shape_label

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["NA", "fmt_eps", "signed_pct", "setting_text", "ci_text", "peak_index", "from_one_text", "rise_span_text", "rise_text", "headline_text", "rise_sentence", "fall_text",
           "width_sentence", "eps_verdict", "rise_steps", "controls_verdict", "section_sentence",
           "rise_heads_sentence", "emergence_shape", "STEP_SHARE", "WIDTH_DEFINITION", "width_text"]


#: How every table of the book shows a missing value (no result, not applicable).
NA = "—"


def signed_pct(x: float, digits: int = 2) -> str:
    """A signed relative difference in per cent, ``"+0.12%"``; one that rounds to zero at ``digits``
    is ``"0.00%"``, never ``"-0.00%"``."""
    text = f"{x:+.{digits}%}"
    return f"{0:.{digits}%}" if float(text.rstrip("%")) == 0 else text


def fmt_eps(x: float | None, digits: int = 2) -> str:
    """A perturbation strength as the book writes it everywhere: ``1e-8``, ``3.2e-6``, ``1e+0``.

    The same form as the charts' axis labels (d3 ``~e``), so a value in the text, a table and
    a tick reads alike; ``None``/NaN give :data:`NA`.
    """
    if x is None or not np.isfinite(x):
        return NA
    mantissa, exponent = f"{float(x):.{digits - 1}e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
    sign = "-" if exponent.startswith("-") else "+"
    return f"{mantissa}e{sign if sign == '-' else '+'}{int(exponent[1:])}" if int(exponent) else f"{mantissa}e+0"


def setting_text(T: int, seeds: int, eps: float, layer: int | None = None) -> str:
    """The setting a number was measured at, as the book writes it beside the number.

    ``"T = 10, 2 seeds, ε = 1e-2"`` (and ``", l0 = 0"`` when ``layer`` is given). Why one helper:
    every figure, table and sentence that shows a score carries its setting, written alike.
    """
    text = f"T = {T}, {seeds} seed{'s' if seeds != 1 else ''}, ε = {fmt_eps(eps)}"
    return text if layer is None else f"{text}, l0 = {layer}"


def ci_text(value, lo, hi, fmt: str = ".2f") -> str:
    """``"value [lo, hi]"``: a number with its interval; :data:`NA` when the value is missing."""
    if value is None or not np.isfinite(float(value)):
        return NA
    return f"{_digits(value, fmt)} [{_digits(lo, fmt)}, {_digits(hi, fmt)}]"


def _digits(x, fmt: str) -> str:
    """``x`` in ``fmt``, or with two significant digits where ``fmt`` would round a non-zero value to
    zero ("-0.00" says neither its sign's weight nor that it is not 0)."""
    text = f"{float(x):{fmt}}"
    rounded_away = text.lstrip("-+").strip("0.") == "" and float(x) != 0 and np.isfinite(float(x))
    return f"{float(x):.2g}" if rounded_away else text


def peak_index(res) -> int:
    """Index of the largest finite score of an :class:`~residual_response.induction.InductionResult`."""
    ok = [i for i, s in enumerate(res.score) if np.isfinite(s)]
    return max(ok, key=lambda i: res.score[i])


def from_one_text(factor, factor_ci, fmt: str = ".2f") -> str:
    """The rise from 1 to a highest score, ``S(top) / 1``, in words: ``"F [lo, hi] from 1"``.

    Why: "a rise of 0.89 from 1" is a fall. Where the highest score lies below 1 the text says that
    there is no rise from 1, and whether the interval of that score still reaches 1.
    """
    if factor is None or not np.isfinite(float(factor)):
        return NA
    value = ci_text(factor, *factor_ci, fmt=fmt)
    if factor >= 1:
        return f"{value} from 1"
    # judged on the interval as printed: an upper end that prints as 1.00 reaches 1 for the reader
    beyond = float(f"{float(factor_ci[1]):{fmt}}") < 1
    where = "below 1 beyond resampling noise" if beyond else "below 1, its interval reaching 1"
    return f"no rise from 1 (the highest score, {value}, lies {where})"


def rise_span_text(factor: float, factor_ci, bottom: int, top: int, half: int | None, from_one=None) -> str:
    """``"rises by a factor F [lo, hi] from its lowest stream (b) to its highest (t), half way up at
    stream s"``: the book's one way of saying how far and between which streams a score rises.

    Why one helper: the factor is ``S(top) / S(bottom)`` (:class:`~residual_response.rise.Rise`), so the
    sentence names those two streams; a page that named the half-way or the 10 %/90 % streams
    beside the factor read as if the factor were measured between them. ``from_one``: ``(factor,
    (lo, hi))`` of the rise from 1 to the same highest stream (:attr:`~residual_response.rise.Rise.from_one_factor`),
    said beside it, since the lowest stream can lie below 1.
    """
    text = (f"rises by a factor {ci_text(factor, *factor_ci)} from its lowest stream ({bottom}) "
            f"to its highest ({top})")
    if from_one is not None and from_one[0] is not None:
        text += f" ({from_one_text(*from_one)})"
    return text if half is None else f"{text}, half way up at stream {half}"


def rise_text(rise, n_layers: int) -> str:
    """The emergence layer of an ``InductionResult.rise`` (a :class:`~residual_response.rise.Rise`) in
    words, with its intervals.

    Why the rise: it is the book's one definition of where the score jumps (see
    :class:`~residual_response.induction.Rise`); a page that quotes it says it this way.
    """
    f, (f_lo, f_hi), em = rise.factor, rise.factor_ci, rise.stream
    if em is None and rise.bottom == rise.top:
        return f"no layer: the score is largest at layer {rise.top}, the first one read, and does not rise after it"
    if em is None:
        return (f"no layer: the rise from layer {rise.bottom} to {rise.top}, a factor {f:.2f} "
                f"[{f_lo:.2f}, {f_hi:.2f}], is within resampling noise")
    lo, hi = rise.stream_ci
    return (f"layer {em} (interval {lo} to {hi}, relative depth {em / n_layers:.2f}): the score "
            + rise_span_text(f, (f_lo, f_hi), rise.bottom, rise.top, em, (rise.from_one_factor, rise.from_one_ci)))


def headline_text(h) -> dict[str, str]:
    """A :class:`~residual_response.headline.Headline` in words: ``{"h_setting", "h_em"}``.

    ``h_em`` names the rise with its factor and its lowest and highest streams
    (:func:`rise_span_text`), so that a page at another setting can be set beside it.
    """
    s = h.setting
    if h.emergence_layer is None:
        em = "none (no significant rise)"
    else:
        ok = [i for i, x in enumerate(h.score) if x is not None and math.isfinite(x) and h.read_streams[i] <= h.peak_layer]
        bottom = h.read_streams[min(ok, key=lambda i: h.score[i])]
        em = (f"layer {h.emergence_layer} [{h.emergence_ci[0]}, {h.emergence_ci[1]}], where the score "
              + rise_span_text(h.rise_factor, h.rise_factor_ci, bottom, h.peak_layer, None,
                               (h.rise_from_one_factor, h.rise_from_one_factor_ci)))
    return {"h_setting": f"T = {s['T']}, {s['seeds']} seeds, ε = {fmt_eps(s['eps'])}", "h_em": em}


def rise_sentence(name: str, res, n_layers: int) -> str:
    """One markdown bullet on where (and whether) the score of model ``name`` rises, from its result."""
    rise, L = res.rise, n_layers
    i = peak_index(res)
    top = f"{ci_text(res.score[i], res.ci_low[i], res.ci_high[i])} at layer {res.read_streams[i]}"
    head = f"* **{name}** ({L} layer{'s' if L != 1 else ''}, {setting_text(res.T, len(res.seeds), res.eps)})"
    factor = ci_text(rise.factor, *rise.factor_ci)
    if res.emergence_layer is None:
        return (f"{head}: no rise larger than resampling noise (factor {factor}: the interval reaches 1); "
                f"largest value {top}.")
    lo, hi = rise.stream_ci
    where = "" if lo == hi else f" (interval {lo} to {hi})"
    shape = (f"all of it in one block ({width_text(rise.width, rise.width_ci)})" if rise.width == 0 else
             f"most of it (10 % to 90 % of the way up the log rise) made by blocks {rise.start - 1} to {rise.end - 1}, "
             f"which write streams {rise.start} and {rise.end}, the first past 10 % and past 90 % "
             f"({width_text(rise.width, rise.width_ci)})")
    span = rise_span_text(rise.factor, rise.factor_ci, rise.bottom, rise.top, res.emergence_layer,
                          (rise.from_one_factor, rise.from_one_ci))
    return (f"{head}: the score {span}{where}, relative depth {res.emergence_layer / L:.2f}; {shape}. "
            f"Its largest value is {top}.{fall_text(res)}")


def fall_text(res) -> str:
    """A sentence on the deepest fall of a result's score before its top (:func:`.rise.fall_before_top`),
    or "" where it has none: a profile that falls back on its way up is not a steady climb."""
    from ...rise import fall_before_top
    from ...shape_check import measured_noise

    try:
        fall = fall_before_top(*measured_noise(res))
    except ValueError:  # a result without stripes (read from a file): no replicates to judge a fall
        return ""
    if fall is None:
        return ""
    ratio = ci_text(fall["factor"], fall["low"], fall["high"])
    i, j = (list(res.read_streams).index(fall[k]) for k in ("from", "to"))
    return (f" On its way up it falls from {ci_text(res.score[i], res.ci_low[i], res.ci_high[i])} at stream "
            f"{fall['from']} to {ci_text(res.score[j], res.ci_low[j], res.ci_high[j])} at stream {fall['to']}, a factor "
            f"of {ratio} (paired): " + ("a fall larger than resampling noise, so the climb is not steady."
                                         if fall["resolved"] else "within resampling noise."))


def width_sentence(h) -> str:
    """What the width of the rise (:data:`WIDTH_DEFINITION`) says about one model (a
    :class:`~residual_response.headline.Headline`), with its interval."""
    name = h.model
    if h.emergence_layer is None:
        return f"{name} does not rise"
    lo, hi = h.rise_width_ci
    width = width_text(h.rise_width, h.rise_width_ci)
    if hi == 0:
        return f"{name} rises in one block (half way up at stream {h.emergence_layer}; {width})"
    # the 10 % and 90 % streams, not the lowest and highest ones the factor is measured between
    span = (f"{name} makes most of its rise (10 % to 90 % of the log rise) in blocks {h.rise_start - 1} to "
            f"{h.rise_end - 1}, which write streams {h.rise_start} (the first past 10 %) to {h.rise_end} (the first "
            f"past 90 %) ({width})")
    if lo >= 2:
        return f"{span}: not in one block"
    if hi <= 1:
        return f"{span}: within two streams"
    return f"{span}: the interval leaves open both a rise within two streams and one over up to {hi}"


def eps_verdict(heads: Mapping) -> str:
    """The book's one sentence on the canonical eps, from every model's headline (:func:`.headline.headline`).

    Why one sentence: a window read off one sequence at a 1 % tolerance moves with the tokens
    drawn, so pages with other sequences gave other verdicts. What matters for a number measured
    at ``eps`` is how far it is from the linear response, which the headline measures directly:
    the departure of chi from the exact linear response (JVP) at the last stream over several
    sequences, and the change of every score when ``eps`` is divided by 10.
    """
    lin = {m: h.linearity for m, h in heads.items()}
    ten = {m: h.eps_tenth for m, h in heads.items()}
    eps = next(iter(lin.values()))["eps"]
    worst_lin = max(lin, key=lambda m: lin[m]["max"])
    worst_ten = max(ten, key=lambda m: ten[m]["max_change"])
    same = all(h.eps_tenth["emergence_layer"] == h.emergence_layer for h in heads.values())
    first = next(iter(lin.values()))
    return (f"In the canonical runs (T = {first['T']}, {first['seeds']} sequences per model), at ε = {fmt_eps(eps)} the "
            f"response at the last stream departs from the exact linear response (JVP) by at most "
            f"{100 * lin[worst_lin]['max']:.3g} % ({worst_lin}; median over its sequences "
            f"{100 * lin[worst_lin]['median']:.3g} %), and dividing ε by 10 moves every induction "
            f"score by at most {100 * ten[worst_ten]['max_change']:.3g} % ({worst_ten}, stream "
            f"{ten[worst_ten]['stream']}) and " + ("no" if same else "some") + " emergence layer" + _eps_tail(
                lin[worst_lin]["max"], ten[worst_ten]["max_change"], worst_lin, same))


def _eps_tail(lin_max: float, change: float, worst: str, same: bool) -> str:
    """The end of :func:`eps_verdict`: what the departure and the change mean, set against the
    regime's tolerance (:data:`residual_response.canonical.REGIME_SWEEP`)."""
    from ...canonical import REGIME_SWEEP

    tol = REGIME_SWEEP["tol"]
    if not same or change >= 0.05:
        return ": read the numbers with that caveat."
    if lin_max <= tol:
        return (f": within the regime's {100 * tol:g} % tolerance, the book's numbers at this ε are those of the "
                "linear response.")
    return (f": the departure is above the regime's {100 * tol:g} % tolerance in {worst}, while the scores the book "
            f"reports move by at most {100 * change:.3g} % when ε shrinks tenfold; they are those of the linear "
            "response to within that change.")


def controls_verdict(results: dict, controls, trained: Sequence[str], randoms: Sequence[str]) -> tuple[str, str]:
    """``(bullet, verdict)``: a markdown bullet on the random-initialised models' scores (empty
    without them), and one sentence on whether any control passes the emergence criterion and
    which trained models' intervals rise above the whole band of the controls.

    ``controls``: a :class:`.crosscheck.NegativeControls` of the same results.
    """
    bullet = ""
    if randoms:
        rand_max = max(float(np.nanmax(results[m].score)) for m in randoms)
        rises = any(results[m].emergence_layer is not None for m in randoms)
        bullet = (f"* **The random-initialised controls** ({', '.join(randoms)}) reach at most {rand_max:.2f} and "
                  + ("one of them rises, by chance at this number of seeds." if rises else
                     "none of them rises: a repeated sequence gives a random network no reason to send the response "
                     "down the stripe."))
    emerged = controls.emerged()
    verdict = (f"None of these controls passes the emergence criterion (a rise whose interval lies above {MIN_RISE:g})"
               if not emerged else f"Controls that pass the criterion by chance: {emerged}")
    band_hi = float(controls.band_frame.score.max())
    above = [m for m in trained if results[m].emergence_layer is not None and np.nanmax(results[m].ci_low) > band_hi]
    if above:
        verdict += (f"; the interval of {above[0]} rises above the whole band." if len(above) == 1 else
                    f"; the intervals of {', '.join(above[:-1])} and {above[-1]} rise above the whole band.")
    elif trained:
        verdict += "; no trained model's interval rises above the whole band at these parameters."
    else:
        verdict += "."
    return bullet, verdict


def section_sentence(name: str, rows: pd.DataFrame, n_layers: int, head_blocks: Sequence[int]) -> str:
    """One markdown bullet on what a model's section map shows (``rows``: that model's rows of
    :func:`.frames.section_rise_table`; ``head_blocks``: the blocks of its induction heads, those of
    the top-5 attention heads that pass :func:`.attention.induction_heads`; empty where none does).

    Two readings of each row: a block ``l0`` that writes a stripe right after the kick (its first
    stream's interval above :data:`.rise.MIN_RISE`), and a rise of the row over the later streams (blocks after
    ``l0`` that write it). The writing blocks are then set beside the attention heads' blocks.
    """
    d = rows
    top = d.loc[d["max score"].idxmax()]
    largest = (f"the largest score of the map is {ci_text(top['max score'], top['CI low'], top['CI high'])} at "
               f"$(\\ell_0, \\ell) = ({int(top.l0)}, {int(top['at layer'])})$"
               + (f", its interval above {MIN_RISE:g}" if top["CI low"] > MIN_RISE else
                  f"; its interval reaches below {MIN_RISE:g}, and as the largest of all the map's cells it is the "
                  f"one noise favours most: not a stripe on its own"))
    head = f"* **{name}** ({n_layers} blocks, rows $\\ell_0$ = {', '.join(str(int(x)) for x in d.l0)})."
    writes = [int(x) for x in d[d.writes].l0]
    heads = sorted(set(int(b) for b in head_blocks))
    sampled_heads = [b for b in heads if b in set(int(x) for x in d.l0)]
    where = (f"its induction heads sit in blocks {', '.join(map(str, heads))}" if heads else
             "none of its top-5 attention heads attends along the stripe twice as much on repeats as on random "
             "sequences (it has no induction head)")
    if writes:
        match = [b for b in writes if b in heads]
        text = (f"{head} Blocks that write a stripe right after the kick (the interval of stream $\\ell_0 + 1$ above "
                f"{MIN_RISE:g}): {', '.join(map(str, writes))}; {where}"
                + (f"; {len(match)} of the {len(writes)} writing blocks hold one." if heads else "."))
    else:
        text = (f"{head} No sampled block writes a stripe right after the kick; {where}"
                + (f" (sampled: {', '.join(map(str, sampled_heads)) or 'none'})." if heads else "."))
    missed = [b for b in sampled_heads if b not in writes]
    if missed:  # not "no stripe": an interval that reaches below the threshold may still cover a stripe
        text += (" At head block" + ("s " if len(missed) > 1 else " ") + ", ".join(map(str, missed))
                 + " the first stream does not pass the rule: " + ", ".join(
                     f"block {b}, {ci_text(r.first, r['first low'], r['first high'])}"
                     for b in missed for _, r in d[d.l0 == b].iterrows()) + ".")
    between = d[(d["first low"] > 1) & ~d.writes]  # above 1, not clearly: named, not counted
    if len(between):
        text += (f" Above 1 but not above {MIN_RISE:g} right after the kick (not counted as writing): "
                 + ", ".join(f"block {int(r.l0)}, {ci_text(r.first, r['first low'], r['first high'])}"
                             for _, r in between.iterrows()) + ".")
    below = d[d["first high"] < 1]
    if len(below):
        text += (" Below 1 right after the kick (the stripe gets *less* of the kick than the baseline there): "
                 + ", ".join(f"block {int(r.l0)}, {ci_text(r.first, r['first low'], r['first high'])}"
                             for _, r in below.iterrows()) + ".")
    risen = d[d.emerged]
    if len(risen):
        text += (f" The score of {len(risen)} of the {len(d)} rows rises over later streams, half way up after "
                 f"block{'s' if risen['half-way block'].nunique() > 1 else ''} "
                 f"{', '.join(sorted(set(risen['half-way block']), key=int))}.")
    return text + f" {largest[0].upper()}{largest[1:]}."


def _heads_text(heads, fmt: str = "") -> str:
    """``"(block, head): score, ..."``, or ``"(block, head), ..."`` for pairs."""
    return ", ".join(f"({h[0]}, {h[1]})" + (f": {h[2]:{fmt}}" if fmt else "") for h in heads)


def rise_steps(h) -> dict:
    """How the score of a headline (:class:`.headline.Headline`) climbs, block by block, with intervals.

    The headline's step shares (:func:`residual_response.rise.step_shares`): block ``b`` adds
    ``log S(b + 1) - log S(b)``; its share is that over the log rise from the lowest to the
    highest score. Returns ``{"largest_block", "largest_share", "largest_ci", "top2_blocks",
    "top2_share", "top2_ci", "text"}``; ``text`` says them with their intervals, as every page
    quotes them. ``None`` values (and ``text`` :data:`NA`) for a headline without a rise.
    """
    ci1, ci2 = getattr(h, "step_share_ci", None), getattr(h, "top2_share_ci", None)
    out = {"largest_block": getattr(h, "step_block", None), "largest_share": getattr(h, "step_share", None),
           "largest_ci": tuple(ci1) if ci1 else None, "top2_blocks": list(getattr(h, "top2_blocks", None) or []),
           "top2_share": getattr(h, "top2_share", None), "top2_ci": tuple(ci2) if ci2 else None, "text": NA}
    if out["largest_share"] is None:
        return out
    b = out["largest_block"]
    text = f"block {b} alone makes {_share_ci(out['largest_share'], ci1)} of the log rise"
    if len(out["top2_blocks"]) == 2:
        text += (f", blocks {' and '.join(map(str, out['top2_blocks']))} together {_share_ci(out['top2_share'], ci2)}"
                 + (" (over 100 %: the score falls between them)" if out["top2_share"] > 1 else ""))
    out["text"] = text
    return out


def _share_ci(x: float, ci) -> str:
    """``"62% [48%, 75%]"``: a share with its interval (``"62%"`` without one)."""
    return f"{x:.0%}" if ci is None else f"{x:.0%} [{ci[0]:.0%}, {ci[1]:.0%}]"


#: the book's one definition of the width of a rise (:class:`residual_response.rise.Rise`), as every page says it
WIDTH_DEFINITION = ("end − start, where start and end are the first streams 10 % and 90 % of the way up the log "
                    "score's rise from its lowest to its highest stream; 0 means the whole rise happens in one block")


def width_text(width, ci, unit: str = "stream") -> str:
    """``"width 3 [1, 5] streams"``: the width of a rise (:data:`WIDTH_DEFINITION`) with its interval."""
    if width is None:
        return NA
    plural = "" if width == 1 and (ci is None or ci[1] == 1) else "s"
    return f"width {width} [{ci[0]}, {ci[1]}] {unit}{plural}" if ci else f"width {width} {unit}{plural}"


def rise_heads_sentence(name: str, rb: Mapping) -> str:
    """One markdown bullet: where a model's score rises, in blocks, beside its induction heads'
    blocks (``rb``: :meth:`.studies.CrossCheck.rise_blocks`), naming the heads outside the rise."""
    if rb["half"] is None:
        return f"* **{name}**: the score does not rise at this setting."
    heads = ", ".join(map(str, rb["att_blocks"])) or "none"
    blocks = rb["blocks"]
    across = f"block {blocks[0]}" if len(blocks) == 1 else f"blocks {blocks[0]} to {blocks[-1]}"
    text = (f"* **{name}**: half way up after block {rb['half']}, 10 % to 90 % of its log rise made in {across} "
            f"(the net change: the score may fall in some of them); induction heads in "
            f"block{'s' if len(rb['att_blocks']) != 1 else ''} {heads}")
    if rb["gap"] == 0:
        text += ", one of them in the half-way block itself"
    elif rb["gap"] is not None:
        text += f", the nearest {rb['gap']} block{'' if rb['gap'] == 1 else 's'} from the half-way block"
    if rb["outside"]:
        text += (f"; the heads of block{'s' if len(rb['outside']) > 1 else ''} {', '.join(map(str, rb['outside']))} "
                 f"sit outside the blocks of the rise")
    return text + "."


def emergence_shape(h) -> dict:
    """Whether a headline's rise (:class:`.headline.Headline`) is in steps, gradual, or not resolved at its setting.

    Returns ``{"label", "reason"}`` with ``label`` one of ``"no rise"``, ``"too shallow"`` (2 blocks
    or fewer: no "intermediate" and no "gradual" to tell), ``"unresolved"``, ``"steps"`` or
    ``"gradual"``. The label follows the paired 95 % interval of the share of the log rise that
    the two largest blocks make (:func:`rise_steps`), by the book's one rule
    (:func:`residual_response.rise.shape_label`, whose error rates :mod:`residual_response.shape_check`
    simulates):

    - ``"steps"`` when the interval's lower end is at least :data:`STEP_SHARE` (one half);
    - ``"gradual"`` when its upper end is below it;
    - ``"unresolved"`` when the interval contains one half.

    Why the share and not the width: a score that jumps at one block, falls back and jumps again
    has a large width while each rise is sudden; the width (:data:`WIDTH_DEFINITION`) is quoted
    beside the share.
    """
    L = h.n_layers
    if h.emergence_layer is None:
        return {"label": "no rise", "reason": "no rise"}
    if L <= 2:
        return {"label": "too shallow", "reason": f"{L} blocks, left out"}
    st = rise_steps(h)
    width = width_text(h.rise_width, h.rise_width_ci)
    if st["top2_ci"] is None:
        return {"label": "unresolved", "reason": f"{width}; no step shares in this headline"}
    n = len(st["top2_blocks"])
    which = "the largest block" if n == 1 else "the two largest blocks"
    label = shape_label(st["top2_ci"])
    where = {"steps": "lies at or above one half", "gradual": "lies below one half", "unresolved": "contains one half"}
    return {"label": label, "reason": f"{width}; {st['text']}: the interval of {which} {where[label]}"}
