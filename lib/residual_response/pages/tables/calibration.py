"""Tables and sentences of the null page: the calibration conditions under each baseline."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ...null import BASELINE_NAMES, CONDITIONS, DESIGNS, PRE_INDUCTION_BAND, REQUIRED_SHARE, Calibration, log_widths
from .text import setting_text

__all__ = ["slope_explains", "calibration_frame", "calibration_summary", "calibration_verdict", "full_size_frame",
           "neighbour_profile_frame", "per_model_coverage_frame", "per_model_coverage_sentence", "expected_below",
           "design_widths", "design_noise_frame", "tradeoff_sentence", "right_trend_frame", "width_ratios",
           "full_size_repair_sentence"]


def calibration_frame(cals: Sequence[Calibration]) -> pd.DataFrame:
    """One row per :class:`~residual_response.null.Calibration`: condition, model, baseline, passed, n, share, holds."""
    return pd.DataFrame([{"condition": c.condition, "model": c.model, "baseline": c.baseline, "passed": c.passed,
                          "n": len(c.units), "share": c.share, "holds": c.holds} for c in cals])


def calibration_summary(cals: Sequence[Calibration], *, setting: str) -> pd.DataFrame:
    """The book's verdict table: one row per condition, one column per baseline, each cell the
    pooled share of units that pass ("27 of 30 (90 %)") with a check mark where the condition holds
    for every model (its share at least the required one)."""
    d = calibration_frame(cals)
    rows = []
    for cond in CONDITIONS:
        sel = d[d.condition == cond]
        if sel.empty:
            continue
        row = {"condition": _condition_name(cond)}
        for b in [c for c in DESIGNS if c in set(sel.baseline)]:
            s = sel[sel.baseline == b]
            ok = bool(s.holds.all())
            row[BASELINE_NAMES[b]] = f"{'✓' if ok else '✗'} {int(s.passed.sum())} of {int(s.n.sum())} " \
                                     f"({100 * s.passed.sum() / max(s.n.sum(), 1):.0f} %)"
        rows.append(row)
    out = pd.DataFrame(rows)
    out["setting"] = setting
    return out


def _condition_name(cond: str) -> str:
    lo, hi = PRE_INDUCTION_BAND
    need = f"{100 * REQUIRED_SHARE:.0f} %"
    return {
        "random init": f"random-init models, small and large: intervals cover 1 (≥ {need} of streams)",
        "random init, full size": f"random-init models at a stand-in's full size: intervals cover 1 (≥ {need}, each)",
        "no repeat": f"trained models, no repeat: intervals cover 1 (≥ {need}, each)",
        "before the heads": f"trained models, streams before their first induction heads: score in [{lo}, {hi}] (≥ {need}, each)",
        "emergence": "emergence layer within one stream across T and of the first head block + 1 (every T)",
    }[cond]


def calibration_verdict(cals: Sequence[Calibration], baseline: str) -> str:
    """One sentence: which conditions ``baseline`` meets, and where it misses, with the numbers."""
    d = calibration_frame(cals)
    d = d[d.baseline == baseline]
    met = [c for c in CONDITIONS if c in set(d.condition) and d[d.condition == c].holds.all()]
    missed = d[~d.holds]
    name = BASELINE_NAMES[baseline]
    n_cond = len(set(d.condition))
    if missed.empty:
        return f"The {name} baseline meets every condition measured here ({n_cond})."
    misses = "; ".join(f"{cond}, in " + ", ".join(f"{r.model} ({r.passed} of {r.n} pass)" for r in grp.itertuples())
                       for cond, grp in missed.groupby("condition", sort=False))
    return f"The {name} baseline meets {len(met)} of the {n_cond} conditions. It misses {misses}."


def full_size_frame(results: dict) -> pd.DataFrame:
    """Random-init models at full size: ``{(model, baseline): InductionResult}`` to one row each
    (streams covering 1, median and range of the score, whether it passes the emergence criterion)."""
    rows = []
    for (model, baseline), r in results.items():
        s = np.array([x for l, x in zip(r.read_streams, r.score) if l > r.l0])
        lo = np.array([x for l, x in zip(r.read_streams, r.ci_low) if l > r.l0])
        hi = np.array([x for l, x in zip(r.read_streams, r.ci_high) if l > r.l0])
        rows.append({"model": model, "baseline": BASELINE_NAMES[baseline],
                     "intervals covering 1": f"{int(((lo <= 1) & (hi >= 1)).sum())} of {len(s)}",
                     "median score": f"{np.median(s):.3f}", "lowest": f"{s.min():.3f}", "highest": f"{s.max():.3f}",
                     "emerges": "yes" if r.emergence_layer is not None else "no",
                     "setting": setting_text(r.T, len(r.seeds), r.eps)})  # one setting: a caption line (styled)
    return pd.DataFrame(rows)


def neighbour_profile_frame(profile: dict, read_layers: Sequence[int], streams: Sequence[int]) -> pd.DataFrame:
    """:func:`~residual_response.null.neighbour_profile` as rows ``(offset, stream, ratio)`` for the given streams."""
    return pd.DataFrame([{"offset": o, "stream": f"stream {l}", "ratio": float(v[list(read_layers).index(l)])}
                         for o, v in profile.items() for l in streams])


def per_model_coverage_frame(cals: Sequence[Calibration], *, setting: str) -> pd.DataFrame:
    """One row per random model (:func:`~residual_response.null.coverage_by_model`): its streams
    covering 1, the share, whether it reaches the required share, and whether its misses are as
    few as 95 % intervals allow by chance; per baseline (in the order given), lowest share first."""
    need = f"≥ {100 * REQUIRED_SHARE:.0f} %"
    rows = [{"model": c.model, "baseline": BASELINE_NAMES[c.baseline], "streams covering 1": f"{c.passed} of {len(c.units)}",
             "share": f"{100 * c.share:.0f} %", need: "yes" if c.holds else "no",
             "misses within chance": "yes" if c.misses_plausible() else "no", "_share": c.share} for c in cals]
    order = {b: i for i, b in enumerate(dict.fromkeys(c.baseline for c in cals))}  # baselines in the order given
    out = pd.DataFrame(rows).assign(_b=[order[c.baseline] for c in cals])
    out = out.sort_values(["_b", "_share", "model"], kind="stable").drop(columns=["_b", "_share"]).reset_index(drop=True)
    out["setting"] = setting
    return out


def per_model_coverage_sentence(cals: Sequence[Calibration]) -> str:
    """One sentence on the random models one by one (:func:`~residual_response.null.coverage_by_model`):
    how many fall below the required share and by how much, with the pooled share beside it."""
    if not cals:
        raise ValueError("per_model_coverage_sentence needs at least one calibration")
    name = BASELINE_NAMES[cals[0].baseline]
    n, need = len(cals), f"{100 * REQUIRED_SHARE:.0f} %"
    below = sorted((c for c in cals if not c.holds), key=lambda c: c.share)
    passed, total = sum(c.passed for c in cals), sum(len(c.units) for c in cals)
    pooled = f"pooled over all {n}, {passed} of {total} streams ({100 * passed / total:.0f} %) are covered"
    if not below:
        return f"Under the {name} baseline, every one of the {n} random models covers 1 at {need} of its streams or more; {pooled}."
    listed = "; ".join(f"{c.model}, {c.passed} of {len(c.units)} ({100 * c.share:.0f} %)" for c in below)
    chance = sum(not c.misses_plausible() for c in below)
    expected = expected_below(cals)
    tail = ("each of them misses no more streams than 95 % intervals allow by chance (one-sided binomial test at 1 %)"
            if chance == 0 else f"{chance} of them miss more streams than 95 % intervals allow by chance (one-sided "
                                "binomial test at 1 %)")
    verb = "covers 1 at fewer than" if len(below) == 1 else "cover 1 at fewer than"
    return (f"Under the {name} baseline, {len(below)} of the {n} random models one by one {verb} {need} of their "
            f"streams (lowest first: {listed}); {tail}, and intervals that each cover 1 with probability 0.95, independently, "
            f"would leave about {expected:.1f} of these {n} models below {need} by chance; {pooled}.")


def expected_below(cals: Sequence[Calibration], confidence: float = 0.95) -> float:
    """How many of the models would fall below :data:`REQUIRED_SHARE` if each stream's interval
    covered 1 independently with probability ``confidence``: the sum over models of the binomial
    chance of more misses than the share allows."""
    from scipy.stats import binom

    return float(sum(binom.sf(int(np.floor((1 - REQUIRED_SHARE) * len(c.units) + 1e-9)), len(c.units), 1 - confidence)
                     for c in cals))


def design_widths(rows: Sequence, full: dict, trained: dict, designs: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """``{group: {design: [n] widths}}``: every scored stream's interval width in log units
    (:func:`~residual_response.null.log_widths`), per group of runs and design.

    Args:
        rows: :func:`~residual_response.null.null_study` rows (the small and large random models).
        full, trained: ``{(model, design): InductionResult}`` of the full-size random models and of
            the trained models on repeats.
        designs: the designs to read (each must be in all three).
    """
    def of(results, d):
        parts = [log_widths(r) for (m, b), r in results.items() if b == d]
        return np.concatenate(parts) if parts else np.array([])

    return {"random init, small and large": {d: np.array([r.log_width for r in rows if r.control == d]) for d in designs},
            "random init, full size": {d: of(full, d) for d in designs},
            "trained, on repeats": {d: of(trained, d) for d in designs}}


def design_noise_frame(widths: dict, *, setting: str, reference: str = "twin") -> pd.DataFrame:
    """The noise of each design: per group of runs, the median interval width in log units of
    each design, and each other design's median over ``reference``'s (``widths``: :func:`design_widths`)."""
    rows = []
    for group, by_design in widths.items():
        med = {d: float(np.median(w)) if len(w) else float("nan") for d, w in by_design.items()}
        row = {"runs": group, "streams": len(by_design[reference])}
        row.update({f"{BASELINE_NAMES[d]}: median width": f"{v:.3f}" for d, v in med.items()})
        row.update({f"{BASELINE_NAMES[d]} / {BASELINE_NAMES[reference]}": f"{v / med[reference]:.2f}"
                    for d, v in med.items() if d != reference})
        rows.append(row)
    out = pd.DataFrame(rows)
    out["setting"] = setting
    return out


def width_ratios(widths: dict, design: str, reference: str = "twin") -> dict[str, float]:
    """``{group: median width of design / median width of reference}`` (``widths``: :func:`design_widths`)."""
    return {g: float(np.median(w[design]) / np.median(w[reference])) for g, w in widths.items()
            if len(w[design]) and len(w[reference])}


def tradeoff_sentence(cals: Sequence[Calibration], widths: dict, design: str = "trend", reference: str = "twin") -> str:
    """What the measured trade-off between ``design`` and ``reference`` shows, and which the book
    uses and why: the conditions each meets that the other misses, and the width of ``design``'s
    intervals over ``reference``'s, per group of runs."""
    d = calibration_frame(cals)
    holds = {b: {c: bool(d[(d.baseline == b) & (d.condition == c)].holds.all())
                 for c in CONDITIONS if c in set(d[d.baseline == b].condition)} for b in (design, reference)}
    gains = [c for c in holds[design] if holds[design][c] and not holds[reference].get(c, True)]
    losses = [c for c in holds[design] if not holds[design][c] and holds[reference].get(c, False)]
    neither = [c for c in holds[design] if not holds[design][c] and not holds[reference].get(c, True)]

    def pooled(b, c):
        sel = d[(d.baseline == b) & (d.condition == c)]
        return f"{int(sel.passed.sum())} of {int(sel.n.sum())}"

    def share(b, c):
        sel = d[(d.baseline == b) & (d.condition == c)]
        return sel.passed.sum() / max(sel.n.sum(), 1)

    worse = [c for c in neither if share(design, c) < share(reference, c)]
    ratios = width_ratios(widths, design, reference)
    name, ref = BASELINE_NAMES[design], BASELINE_NAMES[reference]
    lo, hi = min(ratios.values()), max(ratios.values())
    wide = (f"its intervals are {lo:.2f} to {hi:.2f} times as wide as the {ref}'s (median width in log units: "
            + "; ".join(f"{g}, {r:.2f}" for g, r in ratios.items()) + ")")
    n_met = sum(holds[design].values())
    unmeasured = [c for c in CONDITIONS if c not in holds[design]]
    gained = (f"it meets {_names(gains)}, which the {ref} misses" if gains
              else f"it meets no condition that the {ref} misses")
    lost = f", and misses {_names(losses)}, which the {ref} meets" if losses else ""
    both = ("; both miss " + "; ".join(f"{_SHORT[c]} ({pooled(reference, c)} pass under the {ref}, "
                                       f"{pooled(design, c)} under the {name})" for c in neither)) if neither else ""
    head = (f"On the same runs the {name} baseline meets {n_met} of the {len(holds[design])} conditions measured here: "
            f"{gained}{lost}{both}; {wide}.")
    if unmeasured:
        head += f" Not measured on this page's models: {_names(unmeasured)}."
    if losses or worse:
        costs = ([f"gives up {_names(losses)}"] if losses else []) + ([f"does worse on {_names(worse)}"] if worse else [])
        why = f"The book's scores use the {ref}: the {name} {', '.join(costs)} and widens the intervals"
        why += f" to repair {_names(gains)}." if gains else "."
    elif gains:
        why = (f"The book's scores use the {ref}, whose intervals are narrower; the {name} meets every condition "
               f"the {ref} meets and also {_names(gains)}, which is the case for it.")
    else:
        why = f"The book's scores use the {ref}: the {name} meets no condition it misses and widens the intervals."
    return f"{head} {why}"


#: the conditions as a sentence names them
_SHORT = {"random init": "the small and large random models", "random init, full size": "the full-size random models",
          "no repeat": "the trained models without a repeat", "before the heads": "the pre-head band",
          "emergence": "the emergence condition"}


def _names(conditions: Sequence[str]) -> str:
    """``"a, b and c"`` of the conditions' short names."""
    names = [_SHORT[c] for c in conditions]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def full_size_repair_sentence(results: dict, design: str = "trend", reference: str = "twin") -> str:
    """How ``design`` meets the full-size condition where ``reference`` misses it: per such model,
    whether its median score moves toward 1 or stays as far and is covered by wider intervals.

    ``results``: ``{(model, baseline): InductionResult}`` of the full-size random models.
    """
    def scored(r, field):
        return np.array([x for l, x in zip(r.read_streams, getattr(r, field)) if l > r.l0])

    def share(r):
        lo, hi = scored(r, "ci_low"), scored(r, "ci_high")
        return float(np.mean((lo <= 1) & (1 <= hi)))

    missed = [m for (m, b) in results if b == reference and share(results[(m, b)]) < REQUIRED_SHARE]
    if not missed:
        return f"The {BASELINE_NAMES[reference]} misses no full-size random model here."
    toward, wider, still = [], [], []
    within_noise = 0
    for m in missed:
        ref, new = (float(np.median(scored(results[(m, b)], "score"))) for b in (reference, design))
        r = results[(m, design)]
        half_width = float(np.median(np.log(scored(r, "ci_high")) - np.log(scored(r, "ci_low")))) / 2
        text = f"{m}, {ref:.3f} to {new:.3f}"
        if abs(np.log(new / ref)) < half_width and share(r) >= REQUIRED_SHARE and abs(np.log(new)) < abs(np.log(ref)):
            within_noise += 1
        if share(results[(m, design)]) < REQUIRED_SHARE:
            still.append(text)
        elif abs(np.log(new)) < abs(np.log(ref)):
            toward.append(text)
        else:
            wider.append(text)
    name, refname = BASELINE_NAMES[design], BASELINE_NAMES[reference]
    parts = []
    if toward:
        parts.append(f"moves the median score toward 1 in {len(toward)} ({'; '.join(toward)})")
    if wider:
        parts.append(f"reaches the coverage in {len(wider)} only through wider intervals, the median as far from 1 "
                     f"or further ({'; '.join(wider)})")
    if still:
        parts.append(f"still misses {len(still)} ({'; '.join(still)})")
    noise = (f" These are point medians; in {within_noise} of the {len(toward)} moved toward 1 the move is smaller "
             f"than half the median width of the {name}'s intervals (log units), so it is not shown to be more than "
             "resampling noise." if within_noise else "")
    return (f"Of the {len(missed)} full-size random models the {refname} misses, the {name} "
            + ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1] + "." + noise)


def right_trend_frame(results: dict, trend: dict, n_boot: int = 200) -> pd.DataFrame:
    """Why a full-size random model misses under the twin: per model, the repeat's lift over the
    right offsets 1..6 split into a trend (slope per offset) and the scatter about it, medians
    over the scored streams in per cent with their intervals over sequences
    (:func:`~residual_response.null.right_trend_medians`, ``n_boot`` replicates), beside the
    median twin and trend scores. ``results``: ``{model: twin result with matrices}``;
    ``trend``: ``{model: trend result}`` of the same runs. Hidden columns ``_slope``, ``_scatter``
    (points) and ``_slope_ci``, ``_scatter_ci`` (intervals), in log units."""
    from ...null import right_trend_medians

    rows = []
    for model, r in results.items():
        med = right_trend_medians(r, n_boot=n_boot)
        keep = np.asarray(r.read_streams) > r.l0
        tw = np.array(r.score)[keep]
        tr = np.array(trend[model].score)[keep]
        (sl, sl_lo, sl_hi), (sc, sc_lo, sc_hi) = med["slope"], med["scatter"]
        rows.append({"model": model,
                     "slope (% per offset)": f"{100 * sl:+.2f} [{100 * sl_lo:+.2f}, {100 * sl_hi:+.2f}]",
                     "scatter (%)": f"{100 * sc:.2f} [{100 * sc_lo:.2f}, {100 * sc_hi:.2f}]",
                     "twin: median score": f"{np.median(tw):.3f}", "trend: median score": f"{np.median(tr):.3f}",
                     "_slope": sl, "_scatter": sc, "_slope_ci": (sl_lo, sl_hi), "_scatter_ci": (sc_lo, sc_hi)})
    return pd.DataFrame(rows)


def slope_explains(predicted: float, twin: float) -> bool:
    """Whether a right-neighbour slope's predicted twin score (``predicted``) lies on the same side
    of 1 as the measured median ``twin`` and accounts for half its log bias or more. Why: where it
    does not, the bias comes from the scatter between offsets, which no straight line removes."""
    return bool(np.sign(np.log(predicted)) == np.sign(np.log(twin))
                and abs(np.log(predicted)) >= 0.5 * abs(np.log(twin)))
