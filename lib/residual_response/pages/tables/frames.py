"""Tidy tables of results, the shape the book's charts and tables take.

Why a module of its own: every page turns the same arrays (response matrices, section maps) into
long-form tables for altair and into summaries it quotes in the text. Doing it here keeps the
notebooks free of analysis code and lets the tests check the arithmetic (the distance profile's
diagonal averages, the section map's one-block steps) on arrays whose answer is known.

Conventions: ``chi`` is a response matrix stack ``[n_read, n_src, N]`` (read layer, source row,
target position) as in :class:`~residual_response.induction.StripeData` (``matrices[kind]``)
averaged over seeds; ``read_layers`` names its first axis and ``sources`` its second (the source
*positions*). Words (a missing value, a number with its interval, a setting) come from :mod:`.text`.
"""

from __future__ import annotations

import contextlib
import re
import time
from typing import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from ...checks import check_int
from ...induction import SectionMap
from ...null import BASELINE_NAMES, NullRow
from .ablation_text import NAMED_SETS, loss_verdict, p_text, rank_verdict
from .heads_table import attention_head_table
from .text import NA, _heads_text, ci_text, from_one_text, peak_index, setting_text, width_text

__all__ = ["matrix_frame", "distance_profile", "stripe_mean", "section_map_frame", "styled",
           "panel_layers", "timed", "stripe_contrasts", "reach_summary", "first_source_ratio", "distance_ratio",
           "ratio_peak", "describe_frame", "stripe_scores_frame", "score_frame", "rise_table", "headline_table",
           "section_rise_table", "max_duplicate_text", "cross_check_tables", "ABLATION_LABELS", "ablation_frame", "with_intervals", "control_envelope",
           "null_frame", "coverage_table", "recipe_table", "step_cost", "extreme_text"]


def _check_stack(chi: np.ndarray, read_layers: Sequence[int], sources: Sequence[int]) -> np.ndarray:
    chi = np.asarray(chi)
    if chi.ndim != 3 or chi.shape[:2] != (len(read_layers), len(sources)):
        raise ValueError(f"chi must be [n_read={len(read_layers)}, n_src={len(sources)}, N], got shape {chi.shape}")
    return chi


def _layer_index(read_layers: Sequence[int], layer: int) -> int:
    layers = [int(l) for l in read_layers]
    if int(layer) not in layers:
        raise ValueError(f"layer {layer!r} was not read; read layers: {layers}")
    return layers.index(int(layer))


def matrix_frame(chi: np.ndarray, read_layers: Sequence[int], sources: Sequence[int], layers: Sequence[int],
                 floor: float = 1e-12) -> pd.DataFrame:
    """Rows ``(layer, source, target, log10 chi)`` for every target ``t >= s`` of the given layers.

    Entries before the source are exact zeros (causality) and left out, so a heatmap leaves them
    blank; values below ``floor`` are clipped to it before the log.
    """
    chi = _check_stack(chi, read_layers, sources)
    N = chi.shape[-1]
    rows = [
        (int(l), int(s), t, float(np.log10(max(chi[_layer_index(read_layers, l), j, t], floor))))
        for l in layers
        for j, s in enumerate(sources)
        for t in range(int(s), N)
    ]
    return pd.DataFrame(rows, columns=["layer", "source", "target", "log10 chi"])


def distance_profile(chi: np.ndarray, read_layers: Sequence[int], sources: Sequence[int],
                     layers: Sequence[int]) -> pd.DataFrame:
    """Mean response at each distance ``d = t - s >= 1`` over the sources, per layer.

    Rows ``(layer, distance, mean chi, n)``: the average of ``chi[l](s, s + d)`` over the sources
    whose target ``s + d`` lies inside the sequence (``n`` of them). This is how far, and how
    strongly, a perturbation has spread after ``l`` blocks.
    """
    chi = _check_stack(chi, read_layers, sources)
    N = chi.shape[-1]
    rows = []
    for l in layers:
        m = chi[_layer_index(read_layers, l)]  # [n_src, N]
        for d in range(1, N - min(int(s) for s in sources)):
            vals = [m[j, int(s) + d] for j, s in enumerate(sources) if int(s) + d < N]
            rows.append((int(l), d, float(np.mean(vals)), len(vals)))
    return pd.DataFrame(rows, columns=["layer", "distance", "mean chi", "n"])


def stripe_mean(chi: np.ndarray, read_layers: Sequence[int], layer: int, rows: Sequence[int],
                targets: Sequence[int]) -> float:
    """Mean of ``chi[layer]`` over the entries ``(rows[i], targets[i])`` (rows index the sources axis)."""
    rows, targets = np.asarray(rows, dtype=int), np.asarray(targets, dtype=int)
    if rows.shape != targets.shape or rows.size == 0:
        raise ValueError(f"rows and targets must be non-empty and of one length, got {rows.size} and {targets.size}")
    chi = np.asarray(chi)
    return float(chi[_layer_index(read_layers, layer), rows, targets].mean())


def section_map_frame(sm: SectionMap) -> pd.DataFrame:
    """Rows ``(perturbed layer l0, read layer l, log2 score, score)`` of the finite, positive cells."""
    return pd.DataFrame(
        [(int(l0), l, float(np.log2(v)), float(v)) for l0, row in zip(sm.l0s, sm.score)
         for l, v in enumerate(row) if np.isfinite(v) and v > 0],
        columns=["perturbed layer l0", "read layer l", "log2 score", "score"],
    )


def styled(df: pd.DataFrame, formats: dict | str | None = None, *, uuid: str, caption: str | None = None,
           precision: int = 2):
    """The book's table: no index, one mark for missing values, floats with ``precision`` digits.

    Why one helper: tables rendered straight from pandas show ``nan`` in one column and ``None``
    in the next, six decimals ("18.000000") and an index column; every page shows them this way
    instead. ``formats`` is a Styler format (a dict column -> format string or callable, or one
    string for all columns); columns not named keep ``precision`` decimals if float, integers
    stay integers, and a float column named like a count (a layer, a block, ``T``) whose values
    are whole numbers shows them as integers. ``uuid`` fixes the HTML ids (stable output for nbval). Returns a pandas
    ``Styler``; the missing mark is :data:`NA`. A ``setting`` column with one value for every
    row becomes a line of the caption.
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"styled: expected a DataFrame, got {type(df).__name__}")
    if "setting" in df.columns and len(df) and df["setting"].nunique(dropna=False) == 1:
        # one setting for every row: said once, in the table's caption, not in a column as wide as the page
        one = f"Setting: {df['setting'].iloc[0]}."
        caption = f"{caption} {one}" if caption else one
        df = df.drop(columns="setting")
    sty = df.style.format(precision=precision, na_rep=NA, thousands=None)
    counts = _count_columns(df, formats)
    if counts:  # layers, blocks, lengths: whole numbers, even in a float column that holds a missing value
        sty = sty.format({c: _whole for c in counts}, na_rep=NA, subset=counts)
    if isinstance(formats, dict):  # only the named columns: the others keep `precision`
        sty = sty.format(formats, na_rep=NA, subset=list(formats))
    elif formats is not None:
        sty = sty.format(formats, na_rep=NA)
    if caption:
        sty = sty.set_caption(caption)
    return sty.hide(axis="index").set_uuid(uuid).set_table_attributes('class="dataframe"')


#: column names that count something (a layer, a block, a copy length): shown as whole numbers
COUNT_COLUMN_RE = re.compile(r"layer|stream|block|\bl0\b|\bhead\b|\bT\b|\bk\b|seeds|start|end|width|bottom|top", re.I)


def _count_columns(df: pd.DataFrame, formats) -> list:
    """Float columns named like a count whose values are all whole numbers (pandas makes an int
    column float as soon as one value is missing, and the table would show "18.00")."""
    named = set(formats) if isinstance(formats, dict) else set() if formats is None else set(df.columns)
    out = []
    for col in df.columns:
        if col in named or not pd.api.types.is_float_dtype(df[col]) or not COUNT_COLUMN_RE.search(str(col)):
            continue
        values = df[col].dropna().to_numpy()
        if len(values) and np.all(np.isfinite(values)) and np.all(values == np.round(values)):
            out.append(col)
    return out


def _whole(value) -> str:
    return NA if pd.isna(value) else f"{int(value)}"


def panel_layers(n_layers: int, n: int) -> list[int]:
    """``n`` read layers evenly spaced by ``L // n``, ending at ``L``, all ``>= 1``.

    Why ending at ``L`` with one step: a slider over the panels needs evenly spaced values, and
    the last stream is the one every page quotes. Fewer than ``n`` when ``n > L``.
    """
    step = max(1, n_layers // n)
    return [n_layers - step * i for i in reversed(range(min(n, n_layers))) if n_layers - step * i >= 1]


@contextlib.contextmanager
def timed(store: dict, step: str) -> Iterator[None]:
    """Add the wall time of the ``with`` block, in seconds, to ``store[step]``.

    Why: a page reports what each of its steps cost; this keeps the clock out of the page. The
    block computes afresh (:func:`~residual_response.results_cache.fresh`): a stored result would
    make the time that of reading it.
    """
    from ...results_cache import fresh

    start = time.perf_counter()
    try:
        with fresh():
            yield
    finally:
        store[step] = store.get(step, 0.0) + time.perf_counter() - start


def stripe_contrasts(mats: Mapping[str, np.ndarray], read_layers: Sequence[int], layout, top: int,
                     first: int) -> dict[str, float]:
    """Mean chi on the stripes at layer ``top``, and repeated / twin ratios at ``top`` and ``first``.

    ``mats``: ``{"repeated"|"twin": [n_read, T, N]}`` (seed means); ``layout`` an
    :class:`~residual_response.sequences.InductionLayout`. Keys: ``ind_rep_top``,
    ``ind_twin_top`` (induction stripe), ``ind_ratio_top``, ``ind_ratio_first``, ``dup_ratio_top``.
    """
    offset = layout.offset  # row j of a matrix is the source at position offset + j
    ind = (layout.induction_sources.numpy() - offset, layout.induction_targets.numpy())
    dup = (layout.duplicate_sources.numpy() - offset, layout.duplicate_targets.numpy())

    def mean(kind, layer, cells):
        return stripe_mean(mats[kind], read_layers, layer, *cells)

    def ratio(layer, cells):
        return mean("repeated", layer, cells) / mean("twin", layer, cells)

    return {"ind_rep_top": mean("repeated", top, ind), "ind_twin_top": mean("twin", top, ind),
            "ind_ratio_first": ratio(first, ind), "ind_ratio_top": ratio(top, ind), "dup_ratio_top": ratio(top, dup)}


def reach_summary(profile: pd.DataFrame, T: int, first: int, last: int) -> dict[str, float]:
    """How far a perturbation reaches, from a :func:`distance_profile` (one sequence kind).

    Keys: ``near_last`` (chi at distance 1, layer ``last``), ``farhalf_last`` (mean over the
    distances ``d >= T``, layer ``last``), ``near_gain`` and ``far_gain`` (the same at ``last``
    over ``first``), ``far`` (the longest distance).
    """
    by = profile.pivot(index="distance", columns="layer", values="mean chi")
    farhalf = by[by.index >= T].mean()  # per layer
    return {"near_last": float(by.loc[1, last]), "farhalf_last": float(farhalf[last]),
            "near_gain": float(by.loc[1, last] / by.loc[1, first]), "far_gain": float(farhalf[last] / farhalf[first]),
            "far": int(by.index.max())}


def first_source_ratio(chi: np.ndarray, sources: Sequence[int]) -> float:
    """How much the first source moves the later tokens, over the mean source: ``chi [n_src, N]`` of one layer.

    Why: the longest distances of a :func:`distance_profile` average over the first sources
    alone, so this says whether its right end speaks for every source.
    """
    per_source = [chi[j, int(s) + 1:].mean() for j, s in enumerate(sources)]
    return float(per_source[0] / np.mean(per_source))


def distance_ratio(repeated: pd.DataFrame, control: pd.DataFrame) -> pd.DataFrame:
    """The repeated :func:`distance_profile` with a column ``ratio`` = its mean chi over the control's."""
    return repeated.assign(ratio=repeated["mean chi"] / control["mean chi"])


def ratio_peak(ratio: pd.DataFrame, layer: int, T: int) -> dict:
    """Where the repeated / control ratio of :func:`distance_ratio` peaks at ``layer``.

    Keys: ``peak_d``, ``peak_val``, ``off_median`` (median over the distances other than
    ``T - 1`` and ``T``), ``peak_contrast`` (peak over that median), ``at_stripe`` (the peak
    lies at ``T - 1`` or ``T``).
    """
    peak = ratio[ratio.layer == layer].set_index("distance").ratio
    off_median = float(peak.drop([T - 1, T], errors="ignore").median())
    return {"peak_d": int(peak.idxmax()), "peak_val": float(peak.max()), "off_median": off_median,
            "peak_contrast": float(peak.max()) / off_median, "at_stripe": int(peak.idxmax()) in (T - 1, T)}


def describe_frame(lm, **extra) -> pd.DataFrame:
    """``lm.describe()`` and ``extra`` as rows ``(property, value)``, values as text."""
    described = {**lm.describe(), **extra}
    return pd.DataFrame({"property": list(described), "value": [str(v) for v in described.values()]})


def stripe_scores_frame(res) -> pd.DataFrame:
    """Both stripes' scores of an :class:`~residual_response.induction.InductionResult` per read layer.

    Rows ``(stripe, layer, rel_depth, score, lo, hi)`` after the perturbed stream, the shape
    :func:`..plots.score_vs_depth` draws (``model="stripe"``).
    """
    L = res.n_layers
    rows = []
    for i, l in enumerate(res.read_streams):
        if l == res.l0:  # the perturbed stream has no score
            continue
        rows.append(("induction (lag T−1)", l, l / L, res.score[i], res.ci_low[i], res.ci_high[i]))
        rows.append(("duplicate (lag T)", l, l / L, res.duplicate_score[i], res.duplicate_ci_low[i],
                     res.duplicate_ci_high[i]))
    return pd.DataFrame(rows, columns=["stripe", "layer", "rel_depth", "score", "lo", "hi"])


def score_frame(results: dict, n_layers: dict) -> pd.DataFrame:
    """Long-form induction and duplicate-token scores of several models, for :func:`..plots.score_vs_depth`.

    Rows ``(model, layer, rel_depth, score, lo, hi, dup, dup_lo, dup_hi)``, one per model and read
    layer after ``l0`` (chi is a delta at ``l0``: no score there). ``results`` maps a model name to
    its :class:`.induction.InductionResult`, ``n_layers`` to its number of blocks ``L``.
    """
    return pd.DataFrame([
        {"model": name, "layer": l, "rel_depth": l / n_layers[name], "score": r.score[i], "lo": r.ci_low[i],
         "hi": r.ci_high[i], "dup": r.duplicate_score[i], "dup_lo": r.duplicate_ci_low[i],
         "dup_hi": r.duplicate_ci_high[i]}
        for name, r in results.items() for i, l in enumerate(r.read_streams) if l != r.l0
    ])


def max_duplicate_text(res) -> str:
    """The largest duplicate-token score of an induction result with its interval and stream."""
    d = np.asarray(res.duplicate_score, dtype=float)
    i = int(np.nanargmax(d))
    return f"{ci_text(d[i], res.duplicate_ci_low[i], res.duplicate_ci_high[i])} (stream {res.read_streams[i]})"


def rise_table(results: dict, n_layers: dict) -> pd.DataFrame:
    """Per model: the emergence layer and its interval, the rise from the lowest stream, its 10 % and 90 %
    streams and width, the largest induction score (which is also the rise from 1, ``S(top) / 1``) and the
    largest duplicate-token score with their intervals, the setting."""
    rows = []
    for name, res in results.items():
        L, rise, em = n_layers[name], res.rise, res.emergence_layer
        best = peak_index(res)
        rows.append({
            "model": name, "layers L": L,
            "emergence layer": "none" if em is None else f"{em} [{rise.stream_ci[0]}, {rise.stream_ci[1]}]",
            "relative depth": NA if em is None else f"{em / L:.2f}",
            "rise": ci_text(rise.factor, *rise.factor_ci),
            "10 % to 90 %": NA if em is None else f"{rise.start} to {rise.end} ({width_text(rise.width, rise.width_ci)})",
            "max score = rise from 1": ci_text(res.score[best], res.ci_low[best], res.ci_high[best]),
            "max duplicate score": max_duplicate_text(res),
            "setting": setting_text(res.T, len(res.seeds), res.eps, res.l0),
        })
    return pd.DataFrame(rows)


def headline_table(headlines: dict) -> pd.DataFrame:
    """The book's headline numbers per model (:class:`~residual_response.headline.Headline` s), with the setting
    they were measured at and how close to linear the response at that ``eps`` is."""
    rows = []
    for name, h in headlines.items():
        em, s, lin, ten = h.emergence_layer, h.setting, h.linearity, h.eps_tenth
        rows.append({
            "model": name, "layers L": h.n_layers,
            "emergence layer": "none" if em is None else f"{em} [{h.emergence_ci[0]}, {h.emergence_ci[1]}]",
            "half way from 1": NA if h.rise_from_one is None else str(h.rise_from_one) + (
                f" [{h.rise_from_one_ci[0]}, {h.rise_from_one_ci[1]}]" if h.rise_from_one_ci else ""),
            "rise": ci_text(h.rise_factor, *h.rise_factor_ci),
            "10 % to 90 % (width)": NA if em is None else
                f"{h.rise_start} to {h.rise_end} ({width_text(h.rise_width, h.rise_width_ci)})",
            "peak score = rise from 1": f"{ci_text(h.peak_score, *h.peak_ci)} at {h.peak_layer}",  # S(top) / 1
            "setting": setting_text(s["T"], s["seeds"], s["eps"], s["layer"]),
            "χ(ε) vs linear at stream L": f"{100 * lin['max']:.3g} % (median {100 * lin['median']:.3g} %)",
            "scores at ε/10": f"≤ {100 * ten['max_change']:.3g} %",
        })
    return pd.DataFrame(rows)


def section_rise_table(rises: dict, model: str, threshold: float | None = None) -> pd.DataFrame:
    """Per perturbed layer ``l0`` of a section map: the score right after the kick, and where the row rises.

    ``rises`` maps ``l0`` to the :class:`.induction.InductionResult` of that row
    (:func:`.induction.section_results`). ``first``/``first low``/``first high`` are the score at
    stream ``l0 + 1`` and its interval, and ``writes`` whether that interval lies above
    ``threshold`` (default :data:`.induction.MIN_RISE`): block ``l0`` itself writes a stripe
    (:meth:`.induction.SectionMap.writing_blocks`). The rise is that of the result (:attr:`rise`):
    the block writing the half-way stream is ``layer - 1``, the blocks of the rise run from
    ``start - 1`` to ``end - 1`` (text, :data:`NA` when the rise is not clear; a row that reads a
    single stream has no rise, its factor is ``nan``). Columns: ``model, l0, first, first low,
    first high, writes, rise, rise low, rise high, emerged, half-way block, blocks of the rise,
    max score, CI low, CI high, at layer``.
    """
    from ...induction import MIN_RISE

    threshold = MIN_RISE if threshold is None else threshold
    rows = []
    nan = float("nan")
    for l0, res in rises.items():
        if not np.isfinite(res.score).any():
            continue  # no stream read after l0
        best = peak_index(res)
        i1 = list(res.read_streams).index(l0 + 1)
        r = res.rise  # None: one stream read, no rise
        emerged = r is not None and r.emerged
        factor, (f_lo, f_hi) = (nan, (nan, nan)) if r is None else (r.factor, r.factor_ci)
        rows.append({
            "model": model, "l0": int(l0), "first": float(res.score[i1]), "first low": float(res.ci_low[i1]),
            "first high": float(res.ci_high[i1]), "writes": bool(res.ci_low[i1] > threshold),
            "rise": factor, "rise low": f_lo, "rise high": f_hi, "emerged": bool(emerged),
            "half-way block": str(r.stream - 1) if emerged else NA,
            "blocks of the rise": f"{r.start - 1} to {r.end - 1}" if emerged else NA,
            "max score": float(res.score[best]), "CI low": float(res.ci_low[best]),
            "CI high": float(res.ci_high[best]), "at layer": int(res.read_streams[best]),
        })
    return pd.DataFrame(rows)


#: the legend entries of the ablation chart, one per kind of condition (the panel's title gives k)
ABLATION_LABELS = {"none": "no ablation", "top": "top-k by response", "attention": "top-k by attention (positive control)",
                   "outside": "top-k by response outside the attention set",
                   "random": "k random heads (one line per draw)"}


def ablation_frame(study, n_layers: int) -> pd.DataFrame:
    """The rows of the ablation chart: one per condition of an :class:`.crosscheck.AblationStudy`
    and read stream after ``l0`` (``condition``: the legend entry of :data:`ABLATION_LABELS`;
    ``draw``: the random draw's index, -1 for a named condition; ``random``; ``rel_depth``,
    ``score``, ``lo``, ``hi``)."""
    rows = []
    for key, res in study.results.items():
        draw = study.random_keys.index(key) if key in study.random_keys else -1
        kind = "random" if draw >= 0 else key
        rows += [{"condition": ABLATION_LABELS[kind], "draw": draw, "random": draw >= 0, "rel_depth": l / n_layers,
                  "score": float(sc), "lo": float(lo), "hi": float(hi)}
                 for l, sc, lo, hi in zip(res.read_streams, res.score, res.ci_low, res.ci_high) if l > res.l0]
    return pd.DataFrame(rows, columns=["condition", "draw", "random", "rel_depth", "score", "lo", "hi"])


#: what the summary says of a named set a model's study did not ablate
_NOT_RUN = {"outside": "not run: the two top sets share no head"}


def cross_check_tables(checks: dict, effects: dict, tests: dict, *, setting: str, loss_setting: str,
                       att_setting: str, ablation_setting: str) -> dict[str, pd.DataFrame]:
    """The tables of the cross-checks page, one row per model (the ablation: one per model and
    named set of heads), each with the setting it was measured at.

    Args:
        checks: model name -> :class:`.studies.CrossCheck`; effects: name -> its ``effects()``;
            tests: name -> its ``rank_tests()``.
        setting, loss_setting, att_setting, ablation_setting: :func:`setting_text` of the response
            runs, and the settings of the losses, of the attention patterns and of the ablation runs.

    Returns:
        ``{"loss", "attention", "rise", "heads", "ablation", "ablation_loss", "null", "summary"}`` DataFrames
        (``attention``: one row per top head, :func:`.heads_table.attention_head_table`; ``ablation``: the
        drop of the score and its rank among random draws; ``ablation_loss``: the heads, the unablated
        score and the rise of the second-copy loss).
    """
    def bm(d):
        return ci_text(d.mean, d.lo, d.hi)

    out = {k: [] for k in ("loss", "attention", "rise", "heads", "ablation", "ablation_loss", "null", "summary")}
    for name, c in checks.items():
        e, a, h, rb, base = effects[name], c.agreement, c.heads, c.rise_blocks(), c.base
        r = c.losses
        out["loss"].append({"model": name, "uniform guess ln n": f"{r.uniform_loss:.2f}", "first copy": bm(r.first),
                            "second copy": bm(r.second), "drop": bm(r.drop), "setting": loss_setting})
        out["rise"].append({
            "model": name, "rise of S [95 % CI]": NA if rb["factor"] is None else ci_text(rb["factor"], *rb["factor_ci"]) + (f"; {from_one_text(*rb['from_one'])}" if rb.get("from_one") else ""),
            "half way after block": NA if rb["half"] is None else rb["half"],
            "blocks of the rise (10 % to 90 %)": ", ".join(map(str, rb["blocks"])) or NA,
            "blocks of the induction heads": ", ".join(map(str, rb["att_blocks"])) or "none", "setting": setting})
        out["heads"].append({
            "model": name, "top by response (block, head): score [95 % CI]": "; ".join(
                f"({b}, {hh}): {ci_text(v, *ci, '.1f')}" for (b, hh, v), ci in zip(h["resp_top"], h["resp_top_ci"])),
            "their attention on the stripe [95 % CI]": "; ".join(ci_text(v, *ci) for v, ci in zip(h["resp_top_att"], h["resp_top_att_ci"])),
            "shared top heads": f"{h['overlap']} of {h['k']}", "Spearman over all heads": f"{ci_text(h['rho'], *h['rho_ci'])} (n = {h['n_heads']})",
            "setting": setting})
        for which, t in tests[name].items():
            w = e[which]
            out["ablation"].append({
                "model": name, "ablated": f"top-{c.study.k} {NAMED_SETS[which]}",
                "drop of S_L [95 % CI]": ci_text(w["drop"], w["lo"], w["hi"]),
                "draws": t.n_random,
                "draws: mean drop (central 95 %)": f"{np.mean(t.random_drops):.2f} ({t.random_low:.2f} to "
                                                   f"{t.random_high:.2f})",
                "p-value": p_text(t),
                "− mean draw [95 % CI]": ci_text(t.difference, t.difference_low, t.difference_high),
                "− largest draw [95 % CI]": NA if t.margin is None else ci_text(t.margin, t.margin_low, t.margin_high),
                "verdict": rank_verdict(t), "setting": ablation_setting})
            out["ablation_loss"].append({
                "model": name, "ablated": f"top-{c.study.k} {NAMED_SETS[which]}", "heads": _heads_text(c.study.heads[which]),
                "S_L unablated [95 % CI]": ci_text(e["base"], e["base_lo"], e["base_hi"]),
                "loss rise, named [95 % CI]": ci_text(w["rise"], w["rise_lo"], w["rise_hi"]),
                "loss rise, random": ci_text(e["random"]["rise"], e["random"]["rise_lo"], e["random"]["rise_hi"]),
                "draws raising it as much; no more (p)": (f"{w['draws_above']} ({w['p_more']:.3f}); "
                                                          f"{w['draws_below']} ({w['p_less']:.3f}) of {w['n_draws']}"),
                "verdict": loss_verdict(w),
                "setting": f"{ablation_setting}; loss {loss_setting}"})
        out["null"].append({"model": name, "lowest null score [95 % CI]": extreme_text(c.null, np.nanargmin),
                            "highest null score [95 % CI]": extreme_text(c.null, np.nanargmax),
                            "highest score on repeats [95 % CI]": extreme_text(base, np.nanargmax), "setting": setting})
        out["summary"].append({
            "model": name, "emergence layer": "none" if base.emergence_layer is None else str(base.emergence_layer),
            "induction-head blocks": ", ".join(map(str, rb["att_blocks"])) or "none",
            "rank agreement over depth (blocks)": _rank_text(a),
            "shared top heads": f"{h['overlap']} of {h['k']}",
            # one column for the named sets: a header per set would not fit the page
            "ablation of the top-k, against random draws": "; ".join(
                f"{NAMED_SETS[w]}: " + (f"{rank_verdict(tests[name][w])} (p = {tests[name][w].p_value:.3f})"
                                        if w in tests[name] else _NOT_RUN.get(w, NA)) for w in NAMED_SETS),
            "setting": f"{setting}; ablation {ablation_setting}"})
    out["attention"] = attention_head_table(checks, setting=setting, att_setting=att_setting)
    return {k: pd.DataFrame(v) for k, v in out.items()}


def extreme_text(res, pick) -> str:
    """The score of ``res`` at the stream ``pick`` (``np.nanargmin`` / ``np.nanargmax``) chooses, with
    its interval and the stream: ``"1.31 [1.02, 1.70] (stream 3)"``."""
    score = np.array([np.nan if s is None else s for s in res.score], dtype=float)
    i = int(pick(score))
    return f"{ci_text(score[i], res.ci_low[i], res.ci_high[i])} (stream {int(res.read_streams[i])})"


def _rank_text(a) -> str:
    """A rank correlation over layers with its interval; over fewer than 3 layers it is +-1 whatever the
    data (two points are always in order or reversed), so it is not shown."""
    return f"n/a (n = {a.n_layers})" if a.n_layers < 3 else ci_text(a.rho, a.lo, a.hi)


def with_intervals(df: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """``df`` with each ``value`` column and its ``(low, high)`` columns merged into one text column
    ``"value [95 % CI]"`` (:func:`ci_text`), for display.

    Why: a table with a value and its two ends in three numeric columns is too wide for a page;
    the numeric columns stay in the frame the page asserts on, this is only what it shows.
    """
    out = df.copy()
    for value, (low, high) in spec.items():
        out[value] = [ci_text(v, lo, hi) for v, lo, hi in zip(df[value], df[low], df[high])]
        out = out.drop(columns=[low, high]).rename(columns={value: f"{value} [95 % CI]"})
    return out


def control_envelope(df: pd.DataFrame, *, depth: str = "rel_depth", score: str = "score", bins: int = 10) -> pd.DataFrame:
    """Min-max envelope of negative-control scores against relative depth, for a shaded band.

    Why: controls of different depths (4-block random models, 30-block stand-ins) have their points
    at different relative depths; binning depth into ``bins`` equal bins and taking the min and max
    of all control scores in each gives one band to draw under the models' lines.

    Returns:
        DataFrame with ``rel_depth`` (bin centres, plus the ends 0 and 1 at the edge bins' values so
        the band spans the axis), ``band_lo``, ``band_hi`` and ``n`` (points per bin); empty bins are
        dropped.
    """
    check_int(bins, "bins", minimum=1)
    d = df[[depth, score]].replace([np.inf, -np.inf], np.nan).dropna()
    if d.empty:
        raise ValueError("control_envelope: no finite control scores")
    if ((d[depth] < 0) | (d[depth] > 1)).any():
        raise ValueError(f"control_envelope: column {depth!r} must lie in [0, 1]")
    idx = np.minimum((d[depth].to_numpy() * bins).astype(int), bins - 1)
    g = d.assign(bin=idx).groupby("bin")[score].agg(["min", "max", "size"])
    out = pd.DataFrame({"rel_depth": (g.index.to_numpy() + 0.5) / bins, "band_lo": g["min"].to_numpy(),
                        "band_hi": g["max"].to_numpy(), "n": g["size"].to_numpy()})
    first, last = out.iloc[[0]].assign(rel_depth=0.0), out.iloc[[-1]].assign(rel_depth=1.0)
    return pd.concat([first, out, last], ignore_index=True)


def null_frame(rows: Sequence[NullRow]) -> pd.DataFrame:
    """One row per :class:`NullRow`, with ``covers 1``, ``baseline`` (its book name), ``rel_depth``
    and ``model`` (``"<family> <size> seed <init seed>"``) added: the shape the null page draws."""
    d = pd.DataFrame([{**r.__dict__, "covers 1": r.covers_one} for r in rows])
    return d.assign(baseline=d.control.map(BASELINE_NAMES), rel_depth=d.layer / d.n_layers,
                    model=d.family + " " + d["size"] + " seed " + d.init_seed.astype(str))


def coverage_table(cov: dict, *, setting: str) -> pd.DataFrame:
    """:func:`coverage` as the book's table: one row per baseline, with the setting it was measured at."""
    return pd.DataFrame([{"baseline": BASELINE_NAMES.get(c, c), "layers": v.n,
                          "intervals covering 1": f"{100 * v.covered:.0f} %",
                          "geometric mean score": f"{np.exp(v.mean_log_score):.2f}",
                          "lowest score": f"{v.min:.2f}", "highest score": f"{v.max:.2f}", "setting": setting}
                         for c, v in cov.items()])


def recipe_table(recipe: dict, uuid: str = "toy-recipe"):
    """A training recipe as a two-column table (``field``, ``value`` as written), no index.

    Values are shown as text so that ``3e-3`` and ``0.1`` read as they were set, not reformatted.
    """
    df = pd.DataFrame({"field": list(recipe), "value": [str(v) for v in recipe.values()]})
    return df.style.hide(axis="index").set_uuid(uuid).set_table_attributes('class="dataframe"')


def step_cost(timings: Mapping[str, float], workloads: Sequence[dict]) -> tuple[pd.DataFrame, str]:
    """The measured time of each step, and the same work estimated for the paper's models.

    Why here: the model page reports both side by side from the book's one cost model
    (:func:`~residual_response.bench.paper_cost`, at the engine's rate in the repository's
    ``bench.json``, read through :func:`~residual_response.bench.load_record`). ``workloads`` are
    :func:`~residual_response.bench.paper_cost` entries whose ``work`` names a key of ``timings``.
    Returns the table (``step``, ``measured here (s)``, ``<model>, CPU (min)``) and a Markdown
    sentence with the totals, or the reason there is no estimate.
    """
    from ... import bench

    cost = pd.DataFrame({"step": list(timings), "measured here (s)": list(timings.values())})
    bench_path = bench.find_bench_json()
    if bench_path is None:
        return cost, ("No bench record (`bench.json`, written by `make bench`) is present, so no throughput "
                      "was measured and the page gives no estimate for the paper's models.")
    record = bench.load_record(bench_path)
    rate = bench.engine_rate_gflops(record)
    est = bench.paper_cost(workloads, rate)
    for name, grp in est.groupby("model", sort=False):
        cost[f"{name}, CPU (min)"] = cost.step.map(dict(zip(grp.work, grp.cpu_s / 60)))
    per_model = est.groupby("model", sort=False)[["cpu_s", "float32_s_low", "float32_s_high"]].sum()
    text = (f"At the rate the engine reached on {record.model or 'a stand-in'} in the bench "
            f"({rate:.1f} GFLOP/s, {bench_path.name}), the four steps with this page's parameters would take "
            + ", ".join(f"{r.cpu_s / 60:.1f} min for {m}" for m, r in per_model.iterrows())
            + " on that CPU, and " + ", ".join(f"{r.float32_s_low:.2g}-{r.float32_s_high:.2g} s for {m}"
                                               for m, r in per_model.iterrows())
            + " on one H100 in float32 (the throughputs assumed on the {doc}`performance page <performance>`; float32 "
              "because the universal regime closes in bfloat16). The section map's perturbed layers sit at this "
              "page's relative depths, which depend on the stand-in's number of blocks, so the estimate differs "
              "slightly from one model page to another.")
    return cost, text
