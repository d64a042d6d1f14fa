"""Tidy tables of results, the shape the book's charts and tables take.

Why a module of its own: every page turns the same arrays (response matrices, section maps) into
long-form tables for altair and into summaries it quotes in the text. Doing it here keeps the
notebooks free of analysis code and lets the tests check the arithmetic (the distance profile's
diagonal averages, the section map's one-block steps) on arrays whose answer is known.

Conventions: ``chi`` is a response matrix stack ``[n_read, n_src, N]`` (read layer, source row,
target position) as in :class:`.induction.StripeData` (``matrices[kind]``) averaged over seeds; ``read_layers``
names its first axis and ``sources`` its second (the source *positions*).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .induction import SectionMap

__all__ = ["spread", "matrix_frame", "distance_profile", "stripe_mean", "section_map_frame", "section_steps",
           "NA", "styled", "fmt_eps"]

#: How every table of the book shows a missing value (no result, not applicable).
NA = "—"


def spread(lo: int, hi: int, n: int) -> list[int]:
    """``n`` integers evenly spread over ``lo..hi`` (both ends included), without repeats.

    Why: pages show "a few layers spread over the depth" or "a few sources spread over the
    sequence"; rounding ``linspace`` can repeat a value when ``n`` exceeds the range, so the
    result may be shorter than ``n``.
    """
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (lo, hi, n)):
        raise TypeError(f"spread takes integers, got lo={lo!r}, hi={hi!r}, n={n!r}")
    if n < 1 or hi < lo:
        raise ValueError(f"spread needs n >= 1 and hi >= lo, got lo={lo}, hi={hi}, n={n}")
    return sorted({int(x) for x in np.linspace(lo, hi, n).round()})


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
        [(int(l0), l, float(np.log2(v)), float(v)) for l0, row in zip(sm.perturb_layers, sm.score)
         for l, v in enumerate(row) if np.isfinite(v) and v > 0],
        columns=["perturbed layer l0", "read layer l", "log2 score", "score"],
    )


def section_steps(sm: SectionMap, model: str | None = None) -> pd.DataFrame:
    """Per perturbed layer ``l0``: the block whose one-block increase of the score is largest.

    Block ``b`` turns stream ``b`` into stream ``b + 1``; the score at ``l0`` itself counts as 1
    (no stripe before any block has run). Columns: ``model, l0, largest step at block, step,
    max score, CI low, CI high, at layer`` (the row's largest score with its interval). Rows with
    no read layer after ``l0`` are left out.
    """
    rows = []
    for i, l0 in enumerate(sm.perturb_layers):
        row = np.array(sm.score[i], dtype=float)  # [L+1]
        row[l0] = 1.0
        reads = np.arange(l0 + 1, len(row))
        if len(reads) == 0 or not np.isfinite(row[reads]).any():
            continue
        steps = row[reads] - row[reads - 1]
        k = int(np.nanargmax(steps))
        top = int(reads[np.nanargmax(row[reads])])
        rows.append({
            "model": model if model is not None else sm.model, "l0": int(l0),
            "largest step at block": int(reads[k] - 1), "step": float(steps[k]),
            "max score": float(sm.score[i, top]), "CI low": float(sm.ci_low[i, top]),
            "CI high": float(sm.ci_high[i, top]), "at layer": top,
        })
    return pd.DataFrame(rows, columns=["model", "l0", "largest step at block", "step", "max score", "CI low",
                                       "CI high", "at layer"])


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


def styled(df: pd.DataFrame, formats: dict | str | None = None, *, uuid: str, caption: str | None = None,
           precision: int = 2):
    """The book's table: no index, one mark for missing values, floats with ``precision`` digits.

    Why one helper: tables rendered straight from pandas show ``nan`` in one column and ``None``
    in the next, six decimals ("18.000000") and an index column; every page shows them this way
    instead. ``formats`` is a Styler format (a dict column -> format string or callable, or one
    string for all columns); columns not named keep ``precision`` decimals if float, integers
    stay integers. ``uuid`` fixes the HTML ids (stable output for nbval). Returns a pandas
    ``Styler``; the missing mark is :data:`NA`.
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"styled: expected a DataFrame, got {type(df).__name__}")
    sty = df.style.format(precision=precision, na_rep=NA, thousands=None)
    if isinstance(formats, dict):  # only the named columns: the others keep `precision`
        sty = sty.format(formats, na_rep=NA, subset=list(formats))
    elif formats is not None:
        sty = sty.format(formats, na_rep=NA)
    if caption:
        sty = sty.set_caption(caption)
    return sty.hide(axis="index").set_uuid(uuid).set_table_attributes('class="dataframe"')


# --------------------------------------------------------------------------------------------
# What the response-matrix, universal-regime and model pages quote: the panels they show, the
# setting beside each number, the stripe contrasts, the reach of a perturbation, the scores of
# both stripes, the rise in words, and the cost of each timed step.
# --------------------------------------------------------------------------------------------

import contextlib  # noqa: E402
import time  # noqa: E402
from typing import Iterator, Mapping  # noqa: E402

__all__ += ["panel_layers", "timed", "setting_text", "stripe_contrasts", "reach_summary", "first_source_ratio",
            "distance_ratio", "ratio_peak", "describe_frame", "stripe_scores_frame", "rise_text", "headline_text",
            "step_cost"]


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

    Why: a page reports what each of its steps cost; this keeps the clock out of the page.
    """
    start = time.perf_counter()
    try:
        yield
    finally:
        store[step] = store.get(step, 0.0) + time.perf_counter() - start


def setting_text(T: int, seeds: int, eps: float, layer: int | None = None) -> str:
    """The setting a number was measured at, as the book writes it beside the number.

    ``"T = 10, 2 seeds, ε = 1e-2"`` (and ``", l0 = 0"`` when ``layer`` is given). Why one helper:
    every figure, table and sentence that shows a score carries its setting, written alike.
    """
    text = f"T = {T}, {seeds} seed{'s' if seeds != 1 else ''}, ε = {fmt_eps(eps)}"
    return text if layer is None else f"{text}, l0 = {layer}"


def stripe_contrasts(mats: Mapping[str, np.ndarray], read_layers: Sequence[int], layout, top: int,
                     first: int) -> dict[str, float]:
    """Mean chi on the stripes at layer ``top``, and repeated / control ratios at ``top`` and ``first``.

    ``mats``: ``{"repeated"|"control": [n_read, T, N]}`` (seed means); ``layout`` an
    :class:`~residual_response.sequences.InductionLayout`. Keys: ``ind_rep_top``,
    ``ind_ctrl_top`` (induction stripe), ``ind_ratio_top``, ``ind_ratio_first``, ``dup_ratio_top``.
    """
    offset = layout.offset  # row j of a matrix is the source at position offset + j
    ind = (layout.induction_sources.numpy() - offset, layout.induction_targets.numpy())
    dup = (layout.duplicate_sources.numpy() - offset, layout.duplicate_targets.numpy())

    def mean(kind, layer, cells):
        return stripe_mean(mats[kind], read_layers, layer, *cells)

    def ratio(layer, cells):
        return mean("repeated", layer, cells) / mean("control", layer, cells)

    return {"ind_rep_top": mean("repeated", top, ind), "ind_ctrl_top": mean("control", top, ind),
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
    :func:`.plots.score_vs_depth` draws (``model="stripe"``).
    """
    L = res.n_layers
    rows = []
    for i, l in enumerate(res.layers):
        if l == res.layer:  # the perturbed stream has no score
            continue
        rows.append(("induction (lag T−1)", l, l / L, res.score[i], res.ci_low[i], res.ci_high[i]))
        rows.append(("duplicate (lag T)", l, l / L, res.duplicate_score[i], res.duplicate_ci_low[i],
                     res.duplicate_ci_high[i]))
    return pd.DataFrame(rows, columns=["stripe", "layer", "rel_depth", "score", "lo", "hi"])


def rise_text(rise: Mapping, n_layers: int) -> str:
    """The emergence layer of an ``InductionResult.rise`` in words, with its intervals.

    Why the rise: it is the book's one definition of where the score jumps (see
    :class:`~residual_response.induction.Rise`); a page that quotes it says it this way.
    """
    f, (f_lo, f_hi), em = rise["factor"], rise["factor_ci"], rise["layer"]
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


def step_cost(timings: Mapping[str, float], workloads: Sequence[dict]) -> tuple[pd.DataFrame, str]:
    """The measured time of each step, and the same work estimated for the paper's models.

    Why here: the model page reports both side by side from the book's one cost model
    (:func:`.bench.paper_cost`, at the engine's rate in the repository's ``bench.json``).
    ``workloads`` are :func:`.bench.paper_cost` entries whose ``work`` names a key of
    ``timings``. Returns the table (``step``, ``measured here (s)``, ``<model>, CPU (min)``) and
    a Markdown sentence with the totals, or the reason there is no estimate.
    """
    import json

    from .bench import engine_rate_gflops, find_bench_json, paper_cost

    cost = pd.DataFrame({"step": list(timings), "measured here (s)": list(timings.values())})
    bench_path = find_bench_json()
    if bench_path is None:
        return cost, ("No bench record (`bench.json`, written by `make bench`) is present, so no throughput "
                      "was measured and the page gives no estimate for the paper's models.")
    record = json.loads(bench_path.read_text())
    rate = engine_rate_gflops(record)
    est = paper_cost(workloads, rate)
    for name, grp in est.groupby("model", sort=False):
        cost[f"{name}, CPU (min)"] = cost.step.map(dict(zip(grp.work, grp.cpu_s / 60)))
    per_model = est.groupby("model", sort=False)[["cpu_s", "bfloat16_s_low", "bfloat16_s_high"]].sum()
    text = (f"At the rate the engine reached on {record.get('model', 'a stand-in')} in the bench "
            f"({rate:.1f} GFLOP/s, {bench_path.name}), the four steps with this page's parameters would take "
            + ", ".join(f"{r.cpu_s / 60:.1f} min for {m}" for m, r in per_model.iterrows())
            + " on that CPU, and " + ", ".join(f"{r.bfloat16_s_low:.2g}-{r.bfloat16_s_high:.2g} s for {m}"
                                               for m, r in per_model.iterrows())
            + " on one H100 in bfloat16 (the throughputs assumed on the {doc}`performance page <performance>`).")
    return cost, text


# --- the toy model's training (notebooks/toy_model.md) ------------------------------------------


def recipe_table(recipe: dict, uuid: str = "toy-recipe"):
    """A training recipe as a two-column table (``field``, ``value`` as written), no index.

    Values are shown as text so that ``3e-3`` and ``0.1`` read as they were set, not reformatted.
    """
    df = pd.DataFrame({"field": list(recipe), "value": [str(v) for v in recipe.values()]})
    return df.style.hide(axis="index").set_uuid(uuid).set_table_attributes('class="dataframe"')


# --- tables of the cross-checks: the band of the negative controls ---

from .checks import check_int  # noqa: E402

__all__ += ["control_envelope"]


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
