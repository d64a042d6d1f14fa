"""Tables and sentences of the null page: the calibration conditions under each baseline."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ...induction import CONTROLS
from ...null import BASELINE_NAMES, CONDITIONS, PRE_INDUCTION_BAND, REQUIRED_SHARE, Calibration

__all__ = ["calibration_frame", "calibration_summary", "calibration_verdict", "full_size_frame",
           "neighbour_profile_frame", "per_model_coverage_frame", "per_model_coverage_sentence", "expected_below"]


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
        for b in [c for c in CONTROLS if c in set(sel.baseline)]:
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
                     "emerges": "yes" if r.emergence_layer is not None else "no"})
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
