"""The words of the cross-checks page: how the ablation of named heads, ranked among random draws,
is said (:mod:`residual_response.ranked_ablation`), and what a setting leaves unresolved.

Why apart from :mod:`.text`: these sentences share one vocabulary (named sets, draws, p-values,
margins, verdicts) that no other page uses; they build on :mod:`.text`'s numbers and intervals.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from ...attention import top_heads
from .text import _heads_text, ci_text

__all__ = ["copy_loss_sentence", "loss_change_text", "NAMED_SETS", "control_power_text", "loss_verdict", "outside_set_text", "p_text", "rank_verdict", "ablation_sentence", "ablation_summary", "heads_before_text", "stream_rank_sentence", "unresolved_items"]


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


def loss_change_text(name: str, effects: dict) -> str:
    """How ablating a model's top heads by response changes its second-copy loss, beside the random
    draws: the change, the random draws' mean change, the difference with its interval (seeds and
    draws resampled), the rank among the draws both ways with its permutation p-values, and the
    verdict of :func:`loss_verdict`.

    Why the rank beside the difference: a mean over draws can be pulled by a few large draws, so a
    named set below the mean can still raise the loss more than most draws do.
    ``effects``: :meth:`.studies.CrossCheck.effects`.
    """
    w, r = effects["top"], effects["random"]
    d, lo, hi = w["vs_random"], w["vs_random_lo"], w["vs_random_hi"]
    way = "more" if d > 0 else "less"
    return (f"{name} {ci_text(w['rise'], w['rise_lo'], w['rise_hi'])} nats, {abs(d):.2f} nats {way} than the mean of "
            f"the random draws ({ci_text(r['rise'], r['rise_lo'], r['rise_hi'])}; difference "
            f"{ci_text(d, lo, hi, '+.2f')}, its interval resampling seeds and draws; {w['draws_above']} of "
            f"{w['n_draws']} draws raise it as much (p = {w['p_more']:.3f}) and {w['draws_below']} no more "
            f"(p = {w['p_less']:.3f}): {loss_verdict(w)})")


def loss_verdict(w: Mapping) -> str:
    """What a named set's loss change says against the random draws (``w``: one named set of
    :meth:`.studies.CrossCheck.effects`): ``"raises it more than random heads"`` when the
    difference's interval lies above 0 *and* the rank's p-value (more) is at most the test level,
    ``"raises it less than random heads"`` the same way round, ``"too few draws ..."`` where the
    draws cannot give a p-value at the test level, and otherwise ``"not distinguishable from random
    heads"``."""
    from ...crosscheck import RANK_TEST_LEVEL

    if 1 / (1 + w["n_draws"]) > RANK_TEST_LEVEL:
        return "too few draws to tell it from random heads"
    if w["vs_random_lo"] > 0 and w["p_more"] <= RANK_TEST_LEVEL:
        return "raises it more than random heads"
    if w["vs_random_hi"] < 0 and w["p_less"] <= RANK_TEST_LEVEL:
        return "raises it less than random heads"
    return "not distinguishable from random heads"


#: what each named set of heads is called in the book's sentences and tables
NAMED_SETS = {"top": "by response", "attention": "by attention pattern",
              "outside": "by response outside the attention set"}


def p_text(test) -> str:
    """A permutation p-value as the book writes it: three decimals, and ``" (smallest)"`` where it
    is the smallest the number of draws allows (``1 / (1 + n)``): the named drop exceeds every
    draw, and more draws would be needed to say how far beyond them it lies."""
    return f"{test.p_value:.3f}" + (" (smallest)" if np.isclose(test.p_value, test.smallest_p) else "")


def rank_verdict(test, level: float | None = None) -> str:
    """What a :class:`~residual_response.crosscheck.RankTest` says, in a few words:

    - ``"too few draws"``: the draws cannot give a p-value at or below ``level`` (``1 / (1 + n) > level``);
    - ``"distinguishable"``: p at most ``level`` and the difference's interval above 0
      (:attr:`~residual_response.crosscheck.RankTest.distinguishable`);
    - ``"below random"``: the difference's interval lies below 0 (the named heads remove less);
    - ``"above the mean draw only"``: the difference's interval lies above 0, but p is above
      ``level``: some draws remove as much (the draws' spread, not their mean, decides);
    - ``"not distinguishable"``: p above ``level`` and the difference's interval covers 0;
    - ``"unresolved"``: p at most ``level`` but the difference's interval reaches 0.

    ``level`` defaults to :data:`~residual_response.crosscheck.RANK_TEST_LEVEL`.
    """
    from ...crosscheck import RANK_TEST_LEVEL

    level = RANK_TEST_LEVEL if level is None else level
    if test.smallest_p > level:
        return "too few draws"
    if test.p_value <= level:
        return "distinguishable" if test.difference_low > 0 else "unresolved"
    if test.difference_low > 0:
        return "above the mean draw only"
    return "below random" if test.difference_high < 0 else "not distinguishable"


def _rank_clause(which: str, test, k: int, same: bool = False, heads: Mapping | None = None,
                 score: str = "$S_L$") -> str:
    """One named set's part of :func:`ablation_sentence` (``same``: the attention set holds the
    same heads as the response's, and the clause says so instead of repeating the numbers;
    ``heads``: the ablated heads per condition, with ``"random"`` the draws' keys in order)."""
    from ...crosscheck import RANK_TEST_LEVEL

    noun, verb = ("head", "lowers") if k == 1 else ("heads", "lower")
    label = f"the top-{k} {noun} {NAMED_SETS[which]}" + (" (the positive control)" if which == "attention" else "")
    if same:
        return f"{label} {'is' if k == 1 else 'are'} the same {noun}"
    n, drop = test.n_random, test.drop
    reach = sum(r >= drop for r in test.random_drops)
    moves = f"{verb} {score} by {drop:.2f}" if drop >= 0 else f"{verb.replace('lower', 'raise')} {score} by {-drop:.2f}"
    where = (f"more than every one of the {n} random draws" if reach == 0 else
             f"a drop that {reach} of the {n} random draws reach or exceed")
    numbers = (f"p = {test.p_value:.3f}" + (f", the smallest {n} draws allow" if np.isclose(test.p_value, test.smallest_p)
                                            else "")
               + f"; difference from the mean draw {ci_text(test.difference, test.difference_low, test.difference_high)}")
    if reach == 0 and test.margin is not None:  # first among the draws: by how much, under resampling
        numbers += (f"; beyond the largest draw by {ci_text(test.margin, test.margin_low, test.margin_high)}, "
                    f"first in {test.first_share:.0%} of resamples")
    if heads and 0 < reach <= (3 if k <= 2 else 1):  # name the heads of the few draws that reach it
        keys = [key for key, r in zip(heads.get("random", ()), test.random_drops) if r >= drop]
        numbers += f"; the draws that reach it ablate {'; '.join(_heads_text(heads[key]) for key in keys)}" if keys else ""
    it = "it" if k == 1 else "them"
    tail = {
        "distinguishable": "distinguishable from random heads",
        "not distinguishable": "not distinguishable from random heads",
        "below random": f"{'it removes' if k == 1 else 'they remove'} *less* than random heads do",
        "above the mean draw only": ("above the mean draw, but within the spread of the draws, so not "
                                     "distinguishable from random heads"),
        "unresolved": "unresolved at this setting: the p-value passes but the difference's interval reaches 0",
        "too few draws": (f"{n} draws cannot give p ≤ {RANK_TEST_LEVEL:g} (the smallest is {test.smallest_p:.2f}), "
                          f"so this setting cannot tell {it} from random heads"),
    }[rank_verdict(test)]
    return f"{label} {moves}, {where} ({numbers}): {tail}"


def ablation_sentence(name: str, tests: Mapping, k: int, setting: str, heads: Mapping | None = None,
                      score: str = "$S_L$") -> str:
    """One sentence per model: whether the heads it names are distinguishable from random ones.

    ``tests``: ``{"top": RankTest, "attention": RankTest}`` (either may be missing), from
    :meth:`~residual_response.pages.studies.CrossCheck.rank_tests`; ``k``: heads per set;
    ``setting``: the setting of the ablation runs; ``heads``: the ablated heads per set
    (``AblationStudy.heads``), to say so when both sets hold the same heads. The verdict of each
    set is :func:`rank_verdict` of its numbers, which the sentence quotes. ``score``: how the
    sentence names the score the drops are read on (the last stream's by default).
    """
    if not any(w in tests for w in NAMED_SETS):
        raise ValueError(f"tests must hold a rank test of {list(NAMED_SETS)}, got {list(tests)}")
    same = bool(heads) and "top" in tests and set(heads.get("top", ())) == set(heads.get("attention", ()) or [None])
    draws = None if not heads else {**heads, "random": [key for key in heads if key.startswith("random-")]}
    clauses = [_rank_clause(w, tests[w], k, same=same and w == "attention", heads=draws, score=score)
               for w in NAMED_SETS if w in tests]
    return f"In **{name}** ({setting}) " + "; ".join(clauses) + "."


def outside_set_text(studies: Mapping) -> str:
    """Which models got the third named set (the response's top heads outside the attention set),
    with the heads the two top sets share and the heads ablated instead; ``studies``: model name ->
    :class:`~residual_response.crosscheck.AblationStudy`."""
    ran, skipped = [], []
    for name, st in studies.items():
        shared = sorted(set(st.heads["top"]) & set(st.heads.get("attention", ())))
        if "outside" in st.heads:
            ran.append(f"in {name} the top-{st.k} sets share {_heads_text(shared)}, and the outside set is "
                       f"{_heads_text(st.heads['outside'])}")
        elif shared:
            skipped.append(f"{name} (they share {_heads_text(shared)}, but too few heads would be left for the "
                           "random draws)")
        else:
            skipped.append(f"{name} (no shared head)")
    parts = ([("At this setting " + "; ".join(ran) + ".")] if ran else []) + \
        ([f"No outside set is ablated in {', '.join(skipped)}."] if skipped else [])
    return " ".join(parts)


def control_power_text(checks: Mapping, tests: Mapping) -> str:
    """Where the positive control itself does not stand out of the random draws: per model, the
    draws that remove as much, their heads with each head's rank by attention pattern, and what
    that means for the other named sets. Empty where every testable control stands out.

    Why: a test whose positive control fails has too little power in that model to judge any
    named set; a draw that removes as much often holds other heads that attend along the stripe.
    ``checks``: model -> :class:`.studies.CrossCheck`; ``tests``: model -> its ``rank_tests()``.
    """
    out = []
    for name, c in checks.items():
        t = tests[name].get("attention")
        if t is None or rank_verdict(t) in ("distinguishable", "too few draws"):
            continue
        att = torch.as_tensor(np.asarray(c.attention.repeated.mean, dtype=float))  # [L, H]
        rank = {(b, h): i + 1 for i, (b, h, _) in enumerate(top_heads(att, att.numel()))}
        keys = [k for k, r in zip(c.study.random_keys, t.random_drops) if r >= t.drop]
        shown = keys[:3]
        draws = "; ".join(", ".join(f"({b}, {h}) (attention rank {rank[(b, h)]})" for b, h in c.study.heads[k])
                          for k in shown) + (f"; and {len(keys) - len(shown)} more" if len(keys) > len(shown) else "")
        outranked = t.margin_high is not None and t.margin_high < 0
        why = (f"a random draw removes more than the control beyond resampling noise (the control's margin over the "
               f"largest draw is {ci_text(t.margin, t.margin_low, t.margin_high)}): in that model random sets can hold "
               "heads that matter more to the stripe than its top heads by attention pattern, so the control does not "
               "calibrate the test" if outranked else
               "this setting has too little power in that model to tell named heads from random ones")
        out.append(f"In **{name}** the positive control itself is {rank_verdict(t)} (p = {t.p_value:.3f}): "
                   f"{len(keys)} of the {t.n_random} draws remove as much, ablating {draws}. Here {why}, and the "
                   "page draws no conclusion from the response's rank there.")
    return " ".join(out)


def heads_before_text(heads: Mapping, stream: int) -> str:
    """How many heads of each named set sit in the blocks that write streams up to ``stream``
    (blocks ``0 .. stream - 1``): only those can move the score read there.

    Why: ranked at a stream before the last, a set whose heads all sit in later blocks removes
    exactly nothing, and a reader should see that this is where the heads are, not a measured
    absence of an effect. ``heads``: ``AblationStudy.heads`` (condition -> ``[(block, head)]``).
    """
    parts = [f"{NAMED_SETS[w]} {sum(b < stream for b, _ in heads[w])} of {len(heads[w])}"
             for w in NAMED_SETS if heads.get(w)]
    if not parts:
        raise ValueError(f"heads must hold a named set of {list(NAMED_SETS)}, got {list(heads)}")
    return f"named heads in blocks 0 to {stream - 1}, the blocks that can move $S_{{{stream}}}$: " + ", ".join(parts)


def stream_rank_sentence(name: str, stream: int, tests: Mapping, heads: Mapping, k: int, setting: str) -> tuple[str, dict]:
    """The ranking of the named sets at one read stream (e.g. the emergence stream), in words, and the
    rank tests that are tests there.

    Why: a set none of whose heads sits in blocks ``0 .. stream - 1`` removes exactly nothing at that
    stream, and so does every draw like it: its p-value measures where the heads are, not an
    effect, so such a set is said to be out of reach instead of ranked. Two sets that hold the same
    heads within reach are one test there, said once (:func:`ablation_sentence`'s ``same``).
    ``tests``: ``{set: RankTest}`` at that stream; ``heads``: ``AblationStudy.heads``.

    Returns:
        ``(sentence, tested)``: the markdown sentence and the tests of the sets within reach.
    """
    reach = {w: [h for h in heads.get(w, ()) if h[0] < stream] for w in tests}
    tested = {w: t for w, t in tests.items() if reach[w]}
    score = f"$S_{{{stream}}}$"
    label = f"{name} at stream {stream}"
    if tested:
        text = ablation_sentence(label, tested, k, setting, {**heads, **reach}, score=score)
    else:
        text = f"In **{label}** ({setting}) no named set has a head in blocks 0 to {stream - 1}."
    out = [f"the top-{k} {NAMED_SETS[w]}" for w in tests if not reach[w]]
    if out:
        text += (f" Not ranked: {' and '.join(out)}, none of whose heads sits in blocks 0 to {stream - 1}, so "
                 f"{'it' if len(out) == 1 else 'they'} cannot move {score}.")
    return f"{text} ({heads_before_text(heads, stream)}.)", tested


def ablation_summary(tests: Mapping[str, Mapping]) -> str:
    """The page's summary of :func:`ablation_sentence` over models: per named set, one sentence
    that groups the models by :func:`rank_verdict` (``tests``: model -> ``{"top": RankTest,
    "attention": RankTest}``)."""
    words = {"distinguishable": "distinguishable from random heads in {}",
             "not distinguishable": "not distinguishable from random heads in {}",
             "above the mean draw only": "above the mean random draw but not beyond the draws' spread in {}",
             "below random": "removing less than random heads in {}", "unresolved": "unresolved in {}",
             "too few draws": "not testable with so few random draws in {}"}
    sentences = []
    for which, label in (("top", "The heads the response names are"),
                         ("attention", "The heads the attention patterns name (the positive control) are"),
                         ("outside", "The heads the response names outside the attention set are")):
        by: dict[str, list[str]] = {}
        for model, t in tests.items():
            if which in t:
                by.setdefault(rank_verdict(t[which]), []).append(model)
        if by:
            sentences.append(f"{label} " + "; ".join(words[v].format(", ".join(m)) for v, m in by.items()) + ".")
    if not sentences:
        raise ValueError("tests holds no rank test")
    return " ".join(sentences)


def unresolved_items(name: str, tests: Mapping, effects: Mapping, agreement: Mapping | None = None) -> list[str]:
    """What this setting leaves unresolved about one model, each as a short phrase with its numbers:
    an ablation drop or a difference from the random draws whose interval covers 0, a p-value at
    the smallest the draws allow, a second-copy loss change whose interval covers 0, and a rank
    agreement whose interval covers 0. ``tests``: :meth:`~.studies.CrossCheck.rank_tests`;
    ``effects``: :meth:`~.studies.CrossCheck.effects`; ``agreement``: its ``agreement``."""
    out = []
    for which, t in tests.items():
        e, label = effects[which], f"top-k {NAMED_SETS[which]}"
        if e["lo"] <= 0 <= e["hi"]:
            out.append(f"{name}, {label}: the drop of $S_L$, {ci_text(e['drop'], e['lo'], e['hi'])}, covers 0")
        if t.difference_low <= 0 <= t.difference_high:
            out.append(f"{name}, {label}: the difference from the mean random draw, "
                       f"{ci_text(t.difference, t.difference_low, t.difference_high)}, covers 0")
        if np.isclose(t.p_value, t.smallest_p):
            out.append(f"{name}, {label}: p = {t.p_value:.3f} is the smallest {t.n_random} draws allow (the named drop "
                       "exceeds every draw), so how rare such a drop is among random heads beyond that is not resolved: "
                       "a smaller p needs more draws")
            if t.margin_low is not None and t.margin_low <= 0:
                out.append(f"{name}, {label}: its margin over the largest draw, "
                           f"{ci_text(t.margin, t.margin_low, t.margin_high)}, reaches 0, so its first rank "
                           f"holds in {t.first_share:.0%} of resamples only")
        if e["rise_lo"] <= 0 <= e["rise_hi"]:
            out.append(f"{name}, {label}: the change of the second-copy loss, "
                       f"{ci_text(e['rise'], e['rise_lo'], e['rise_hi'])} nats, covers 0")
    if agreement is not None and agreement["lo"] <= 0 <= agreement["hi"]:
        out.append(f"{name}: the rank agreement of attention and response over depth, "
                   f"{ci_text(agreement['rho'], agreement['lo'], agreement['hi'])}, covers 0")
    return out
