"""The paper page's "model sections" row: what the section map and the ablation say, per model, and
the verdict generated from them.

Why apart: the row summarises two other pages (model-sections, cross-checks) from the very results
they show (:mod:`residual_response.pages.evidence`); its words build on :mod:`.ablation_text`'s
verdicts and :mod:`.text`'s intervals.
"""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from .ablation_text import NAMED_SETS, p_text, rank_verdict
from .text import ci_text, setting_text

__all__ = ["map_evidence", "ablation_evidence_text", "sections_verdict"]


def map_evidence(rows: pd.DataFrame, head_blocks, setting: str) -> dict:
    """What one model's section map says about its writing blocks (``rows``: its rows of
    :func:`.frames.section_rise_table`; ``head_blocks``: the blocks of its attention-pattern
    induction heads). Returns ``{"writes", "match", "heads", "text"}``: the blocks whose first
    stream's interval lies above the threshold, those of them that hold a head, the head blocks,
    and one clause with each writing block's score and interval, and ``setting``."""
    writes = rows[rows.writes]
    heads = sorted({int(b) for b in head_blocks})
    match = [int(b) for b in writes.l0 if int(b) in heads]
    if len(writes):
        text = ("section map: block " + ", ".join(f"{int(r.l0)} writes a stripe right after the kick "
                                                  f"({ci_text(r.first, r['first low'], r['first high'])})"
                                                  for _, r in writes.iterrows()))
    else:
        text = f"section map: no sampled block writes a stripe right after the kick (rows {', '.join(str(int(x)) for x in rows.l0)})"
    text += (f"; attention-pattern heads in block{'s' if len(heads) > 1 else ''} {', '.join(map(str, heads))}"
             + (f", {len(match)} of the {len(writes)} writing blocks hold one" if len(writes) else "")
             if heads else "; no attention-pattern induction head")
    return {"writes": [int(b) for b in writes.l0], "match": match, "heads": heads, "text": f"{text} ({setting})"}


def ablation_evidence_text(ev) -> dict:
    """What one model's ablation says (``ev``: :class:`.evidence.AblationEvidence`). Returns
    ``{"response", "control", "outside", "text"}``: the :func:`.ablation_text.rank_verdict` of the
    response's top-k, of the positive control and of the response's top-k outside the attention set
    (``None`` where that set was not ablated), and one clause
    with each set's p-value and difference from the mean draw, and the setting."""
    s = ev.setting
    verdicts, parts = {}, []
    for which in ("top", "attention", "outside"):
        t = ev.tests.get(which)
        if t is None:
            verdicts[which] = None
            continue
        verdicts[which] = rank_verdict(t)
        if which == "attention" and set(ev.heads["attention"]) == set(ev.heads["top"]):
            parts.append(f"top-{ev.k} {NAMED_SETS[which]} (positive control): the same heads")
            continue
        parts.append(f"top-{ev.k} {NAMED_SETS[which]}{' (positive control)' if which == 'attention' else ''}: "
                     f"{verdicts[which]} (p = {p_text(t)}, drop of the last stream's score minus the mean draw's "
                     f"{ci_text(t.difference, t.difference_low, t.difference_high)})")
    setting = f"{setting_text(s['T'], s['seeds'], s['eps'], s['l0'])}, {s['n_random']} random draws"
    return {"response": verdicts["top"], "control": verdicts["attention"], "outside": verdicts["outside"],
            "text": "ablation against random heads: " + "; ".join(parts) + f" ({setting})"}


def sections_verdict(maps: Mapping[str, dict], ablations: Mapping[str, dict]) -> str:
    """The verdict on "the method identifies the model sections composing the behaviour", from the
    models' :func:`map_evidence` and :func:`ablation_evidence_text`.

    The section map agrees with the attention patterns in a model when a writing block holds an
    attention-pattern head; the response's heads are shown causal where their ablation is
    distinguishable from random heads *and* the positive control passes (a test whose control
    fails cannot tell). "agrees" needs both in every model; "partly" one of them somewhere.
    """
    if not maps and not ablations:
        return "cannot say: no model here has a section map or an ablation"
    located = [m for m, e in maps.items() if e["match"]]
    tested = [m for m, e in ablations.items() if e["control"] == "distinguishable"]
    causal = [m for m in tested if ablations[m]["response"] == "distinguishable"]
    failed = [m for m, e in ablations.items() if e["control"] not in (None, "distinguishable", "too few draws")]
    few = [m for m, e in ablations.items() if "too few draws" in (e["control"], e["response"])]

    def names(ms):
        return ", ".join(ms) or "no model"

    parts = [f"the section map finds writing blocks that hold attention-pattern heads in {names(located)} "
             f"(of {len(maps)})" if maps else "the model-sections page maps none of these models"]
    if ablations:
        testable = [m for m in ablations if m not in few]
        parts.append(f"ablating the response's top heads is distinguishable from random heads in {names(causal)} "
                     f"(of {len(testable)} with enough draws)")
        outside = [m for m, e in ablations.items() if e.get("outside") not in (None, "too few draws")]
        if outside:
            apart = [m for m in outside if ablations[m]["outside"] == "distinguishable"]
            parts.append(f"outside the attention set, the response's top heads are distinguishable from random heads "
                         f"in {names(apart)} (of {len(outside)})")
        if failed:
            parts.append(f"the positive control does not pass on the last stream's score in {names(failed)}, so there "
                         "that ablation does not tell the response's heads from random ones (the cross-checks page ranks "
                         "the copy loss too)")
        if few:
            parts.append(f"{names(few)} {'has' if len(few) == 1 else 'have'} too few random draws at this setting "
                         "for a p-value at the test level")
    full = (len(located) == len(maps) > 0) and (len(causal) == len(ablations) > 0)
    word = "agrees" if full else "partly" if located or causal else "not shown here"
    return f"{word}: " + "; ".join(parts)
