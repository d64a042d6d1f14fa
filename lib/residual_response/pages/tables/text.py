"""The words of the book's pages: numbers as the book writes them, and the sentences that quote them.

Why apart from the frames (:mod:`.frames`): a sentence is read, a frame is plotted or shown as a
table; the frames use these words (a missing value, a number with its interval, the setting it was
measured at), never the other way round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from ...regime import window_position

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["NA", "fmt_eps", "setting_text", "ci_text", "peak_index", "rise_text", "headline_text", "rise_sentence",
           "width_sentence", "regime_sentence", "controls_verdict", "section_sentence", "copy_loss_sentence"]


#: How every table of the book shows a missing value (no result, not applicable).
NA = "—"


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
    return f"{float(value):{fmt}} [{float(lo):{fmt}}, {float(hi):{fmt}}]"


def peak_index(res) -> int:
    """Index of the largest finite score of an :class:`~residual_response.induction.InductionResult`."""
    ok = [i for i, s in enumerate(res.score) if np.isfinite(s)]
    return max(ok, key=lambda i: res.score[i])


def rise_text(rise: Mapping, n_layers: int) -> str:
    """The emergence layer of an ``InductionResult.rise`` in words, with its intervals.

    Why the rise: it is the book's one definition of where the score jumps (see
    :class:`~residual_response.induction.Rise`); a page that quotes it says it this way.
    """
    f, (f_lo, f_hi), em = rise["factor"], rise["factor_ci"], rise["layer"]
    if em is None and rise["bottom"] == rise["top"]:
        return f"no layer: the score is largest at layer {rise['top']}, the first one read, and does not rise after it"
    if em is None:
        return (f"no layer: the rise from layer {rise['bottom']} to {rise['top']}, a factor {f:.2f} "
                f"[{f_lo:.2f}, {f_hi:.2f}], is within resampling noise")
    lo, hi = rise["layer_ci"]
    return (f"layer {em} (interval {lo} to {hi}, relative depth {em / n_layers:.2f}), "
            f"where the score is half way up a rise by a factor {f:.2f} [{f_lo:.2f}, {f_hi:.2f}] from layer "
            f"{rise['bottom']} to {rise['top']}")


def headline_text(h: Mapping) -> dict[str, str]:
    """A :func:`~residual_response.headline.headline` in words: ``{"h_setting", "h_em"}``."""
    s = h["setting"]
    return {"h_setting": f"T = {s['T']}, {s['seeds']} seeds, ε = {fmt_eps(s['eps'])}",
            "h_em": "none (no significant rise)" if h["emergence_layer"] is None else
            f"layer {h['emergence_layer']} [{h['emergence_ci'][0]}, {h['emergence_ci'][1]}]"}


def rise_sentence(name: str, res, n_layers: int) -> str:
    """One markdown bullet on where (and whether) the score of model ``name`` rises, from its result."""
    rise, L = res.rise, n_layers
    i = peak_index(res)
    top = f"{ci_text(res.score[i], res.ci_low[i], res.ci_high[i])} at layer {res.layers[i]}"
    head = f"* **{name}** ({L} layer{'s' if L != 1 else ''}, {setting_text(res.length, len(res.seeds), res.eps)})"
    factor = ci_text(rise["factor"], *rise["factor_ci"])
    if res.emergence_layer is None:
        return (f"{head}: no rise larger than resampling noise (factor {factor}: the interval reaches 1); "
                f"largest value {top}.")
    lo, hi = rise["layer_ci"]
    where = f"layer {res.emergence_layer}" + ("" if lo == hi else f" (interval {lo} to {hi})")
    shape = ("in one step" if rise["width"] == 0 else
             f"over {rise['width']} layers, from layer {rise['start']} to {rise['end']} (10 % to 90 % of the rise)")
    return (f"{head}: the score rises by a factor {factor} {shape}; it is half way up at {where}, relative depth "
            f"{res.emergence_layer / L:.2f}. Its largest value is {top}.")


def width_sentence(h: dict) -> str:
    """What the 10-90 % width of the rise says about one model (a :func:`.headline.headline` dict)."""
    name = h["model"]
    if h["emergence_layer"] is None:
        return f"{name} does not rise"
    lo, hi = h["rise_width_ci"]
    if hi == 0:
        return f"{name} rises in one block (at layer {h['emergence_layer']})"
    span = f"{name} rises over layers {h['rise_start']} to {h['rise_end']}"
    if lo >= 2:
        return f"{span} (width {h['rise_width']}, interval {lo} to {hi}): not in one block"
    return f"{span}, but the width's interval ({lo} to {hi}) does not exclude a rise within two layers"


def _window_position(eps: float, reg: dict) -> str:
    low, high = (float("nan") if v is None else v for v in (reg["eps_low"], reg["eps_high"]))
    return window_position(eps, low, high)


def regime_sentence(heads: dict, eps: float) -> str:
    """Where the canonical ``eps`` lies in each model's universal-regime window, in words.

    ``heads``: ``{model: headline}`` (:func:`.headline.headline`). Why not a yes/no: an ``eps``
    at the window's upper end is inside by the grid but is where the curve starts to bend, and a
    reader should know which models sit there.
    """
    where: dict[str, list[str]] = {}
    for name, h in heads.items():
        where.setdefault(_window_position(eps, h["regime"]), []).append(name)
    phrases = {"inside": "inside the window of {}", "at the upper end": "at the upper end of the window of {} "
               "(the last strength of the sweep within the tolerance)", "above": "above the window of {}",
               "below": "below the window of {}", "none": "in no window for {} (no flat run found)"}
    parts = [phrases[k].format(", ".join(v)) for k, v in where.items()]
    return f"ε = {fmt_eps(eps)} lies " + "; ".join(parts)


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
    verdict = ("None of these controls passes the emergence criterion (a rise whose interval lies above 1)"
               if not emerged else f"Controls that pass the criterion by chance: {emerged}")
    band_hi = float(controls.band_frame.score.max())
    above = [m for m in trained if results[m].emergence_layer is not None and np.nanmax(results[m].ci_low) > band_hi]
    if above:
        verdict += f"; the interval of {', '.join(above)} rises above the whole band."
    elif trained:
        verdict += "; no trained model's interval rises above the whole band at these parameters."
    else:
        verdict += "."
    return bullet, verdict


def section_sentence(name: str, rises: pd.DataFrame, n_layers: int) -> str:
    """One markdown bullet on where the rows of a model's section map rise (``rises``: that
    model's rows of :func:`section_rise_table`)."""
    d = rises
    top = d.loc[d["max score"].idxmax()]
    largest = (f"the largest score of the map is {ci_text(top['max score'], top['CI low'], top['CI high'])} at "
               f"$(\\ell_0, \\ell) = ({int(top.l0)}, {int(top['at layer'])})$")
    head = f"* **{name}** ({n_layers} layers, rows $\\ell_0$ = {', '.join(str(int(x)) for x in d.l0)})."
    risen = d[d.emerged]
    if risen.empty:
        text = f"{head} No row's score rises by more than resampling noise (the interval of every row's rise reaches 1); "
        if top["CI low"] > 2:
            return (text + f"yet {largest}, above 2 with confidence. The rise is measured from stream "
                    "$\\ell_0 + 1$ on, so a stripe written by block $\\ell_0$ itself, or a rise within the noise "
                    "of these few seeds, is not located: more seeds narrow the intervals.")
        return text + f"{largest}: no block writes a stripe that this map can resolve."
    half = risen["half-way block"].astype(int)
    mode = int(half.mode().min())  # the block most risen rows agree on
    text = (f"{head} In {int((half == mode).sum())} of the {len(risen)} rows whose score rises (interval of the rise "
            f"above 1), the rise is half way up after block {mode}.")
    row0 = d[d.l0 == 0]
    if len(row0) and bool(row0.emerged.iloc[0]):
        text += f" From $\\ell_0 = 0$ the score rises across blocks {row0['blocks of the rise'].iloc[0]}."
    last = int(risen.l0.max())
    text += f" The last sampled $\\ell_0$ whose row still rises is {last}; {largest}."
    after = d[d.l0 > last]
    if len(after):
        r = after.iloc[0]
        text += (f" Perturbing after it, at $\\ell_0 = {int(r.l0)}$, " + (
            f"the row rises by a factor {ci_text(r['rise'], r['rise low'], r['rise high'])} only, not above "
            "resampling noise." if np.isfinite(r["rise"]) else
            f"the row reads one stream, with a score of {ci_text(r['max score'], r['CI low'], r['CI high'])}."))
    else:
        text += " No sampled row lies after it."
    return text


def copy_loss_sentence(name: str, check, effects: dict, loss_setting: str) -> str:
    """The negative result of one model: ablating its top heads *lowers* the second-copy loss.

    ``check``: its :class:`.crosscheck.CrossCheck`; ``effects``: ``check.effects()``. States the
    measured change with its interval beside that of the random heads.
    """
    top, rnd = effects["top"], effects["random"]
    return (f"In **{name}** ablating its top-{check.study.k} heads *lowers* the second-copy loss by {-top['rise']:.2f} "
            f"nats (change {ci_text(top['rise'], top['rise_lo'], top['rise_hi'])}, {loss_setting}), while "
            f"{len(check.study.random_keys)} draws of as many random heads change it by "
            f"{ci_text(rnd['rise'], rnd['rise_lo'], rnd['rise_hi'])}: a negative result"
            + (", though its interval includes no change." if top["rise_hi"] >= 0 else
               ", though the interval's upper end lies close to no change." if top["rise_hi"] > -0.1 else "."))


def _heads_text(heads, fmt: str = "") -> str:
    """``"(block, head): score, ..."``, or ``"(block, head), ..."`` for pairs."""
    return ", ".join(f"({h[0]}, {h[1]})" + (f": {h[2]:{fmt}}" if fmt else "") for h in heads)
