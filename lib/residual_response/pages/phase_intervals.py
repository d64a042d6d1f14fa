"""The intervals of the toy-model page: of every score it quotes, and of every step at which a score moves.

Why apart from :func:`.studies.phase_facts`: those are the measured values; these are their 95 %
bootstrap intervals over the evaluation sequences (:mod:`~residual_response.step_bootstrap`), and
the sentences that compare two steps, which are written from those intervals rather than from the
points. All of it is over the sequences of one training run, not over training runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..dynamics import eval_copy_losses
from ..rise import EMERGENCE_THRESHOLD
from ..stats import percentile_interval, ratio_of_means
from ..step_bootstrap import (StepInterval, advantage_steps, level_step_interval, response_replicates, step_difference,
                              step_interval, top_head_replicates)
from .studies import PhaseChange
from .tables.text import ci_text

__all__ = ["layer_tables", "phase_intervals", "step_text"]


def step_text(si: StepInterval) -> str:
    """``"1200 [1100, 1300]"``: a step with its interval (an open end is written "open"; no rise: "none";
    an interval of one step says so in words)."""
    return "none" if si.step is None else _step_words(si.step, si.lo, si.hi)


def _step_words(step: int, lo: int | None, hi: int | None) -> str:
    if lo == hi == step:  # not "850 [850, 850]": every resample of these sequences gives the same step
        return f"{step} (every resample gives this step)"
    return f"{step} [{'open' if lo is None else lo}, {'open' if hi is None else hi}]"


def _stack(pc: PhaseChange, key: str, block: int) -> np.ndarray:
    """``[n_steps, S, H]`` per-seed scores of one block at every measured step (``key`` of ``trace["per_seed"]``)."""
    return np.stack([pc.trace["per_seed"][s][key][:, block] for s in pc.used])


def _scores(pc: PhaseChange, n_boot: int, seed: int) -> dict:
    """The quoted attention and previous-token scores with their intervals (the named head's, over the seeds)."""
    top, first = pc.top, pc.rows[pc.rows.layer == 1].set_index("step")
    L, out = pc.L, {}
    for name, step in [("0", pc.used[0]), ("before", pc.before), ("last", pc.last)]:
        out.update({f"att_{name}_lo": float(top.attention_lo[step]), f"att_{name}_hi": float(top.attention_hi[step]),
                    f"attc_{name}_lo": float(top.attention_control_lo[step]),
                    f"attc_{name}_hi": float(top.attention_control_hi[step]),
                    f"prev_{name}": float(first.previous_token[step]), f"prev_{name}_lo": float(first.previous_token_lo[step]),
                    f"prev_{name}_hi": float(first.previous_token_hi[step])})

    def ratio(step: int, layer: int, frame) -> tuple[float, float, float]:
        per = pc.trace["per_seed"][step]
        head = int(frame.attention_head[step])
        return ratio_of_means(per["attention"][:, layer - 1, head], per["attention_control"][:, layer - 1, head],
                                   n_boot=n_boot, seed=seed)

    out["att_ratio_last"], out["att_ratio_last_lo"], out["att_ratio_last_hi"] = ratio(pc.last, L, top)
    at_max = int(first.attention.idxmax())
    resp_max = int(first.response.idxmax())
    out.update(l1_att_max=float(first.attention[at_max]), l1_att_max_step=at_max,
               l1_att_max_lo=float(first.attention_lo[at_max]), l1_att_max_hi=float(first.attention_hi[at_max]),
               l1_att_last=float(first.attention[pc.last]), l1_att_last_lo=float(first.attention_lo[pc.last]),
               l1_att_last_hi=float(first.attention_hi[pc.last]),
               l1_resp_max=float(first.response[resp_max]), l1_resp_max_step=resp_max,
               l1_resp_max_lo=float(first.response_lo[resp_max]), l1_resp_max_hi=float(first.response_hi[resp_max]))
    out["l1_ratio_at_max"], out["l1_ratio_at_max_lo"], out["l1_ratio_at_max_hi"] = ratio(at_max, 1, first)
    return out


def _order_text(diff: tuple, first: str) -> str:
    """How much later a second curve moves than ``first``, as the interval of the paired difference allows."""
    d, lo, hi = diff[:3]
    span = (f"{d} steps (every resample gives this difference)" if lo == hi == d else
            f"{d} steps [{lo:.0f}, {hi:.0f}]")
    if lo > 0:
        return f"later than {first}: the difference, {span}, lies above 0"
    if lo == 0:
        return f"no earlier than {first}, though not resolved as later: the difference, {span}, reaches down to 0"
    if hi < 0:
        return f"earlier than {first}: the difference, {span}, lies below 0"
    if hi == 0:
        return f"no later than {first}, though not resolved as earlier: the difference, {span}, reaches up to 0"
    return f"not told apart from {first}: the difference, {span}, covers 0"


def _where(lo: int | None, hi: int | None, pc: PhaseChange) -> str:
    """Where a step interval lies against the loss drop (the training log's steps ``loss_lo`` to ``loss_hi``)."""
    if lo is None or hi is None:
        return "an interval open at one end"
    if pc.loss_lo <= lo and hi <= pc.loss_hi:
        return "all of it inside the loss drop"
    if lo < pc.loss_lo:
        return f"its lower end before the loss drop's start (step {pc.loss_lo})"
    return f"its upper end after the loss drop's end (step {pc.loss_hi})"


def _late_steps(pc: PhaseChange, att: np.ndarray, resp: np.ndarray, confidence: float) -> dict:
    """Where the attention settles and where the response peaks afterwards, each with its interval over the replicates."""
    steps = np.array(pc.used)
    after = steps >= pc.phase
    settled = [int(steps[after][np.argmax(a[after] >= 0.9 * a[after].max())]) for a in att]  # per replicate
    lo, hi = np.quantile(settled, [(1 - confidence) / 2, (1 + confidence) / 2], method="inverted_cdf")
    out = {"att_settled_lo": int(lo), "att_settled_hi": int(hi)}
    point_settled = int(steps[after][np.argmax(pc.top.attention.to_numpy()[after] >= 0.9 * pc.top.attention[after].max())])
    tail = steps >= point_settled
    peaks = steps[tail][np.argmax(np.where(np.isfinite(resp[:, tail]), resp[:, tail], -np.inf), axis=1)]
    lo, hi = np.quantile(peaks, [(1 - confidence) / 2, (1 + confidence) / 2], method="inverted_cdf")
    peak = int(steps[tail][np.argmax(pc.top.response.to_numpy()[tail])])
    i_peak, i_last = list(steps).index(peak), list(steps).index(pc.last)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = resp[:, i_peak] / resp[:, i_last]
    r_lo, r_hi = percentile_interval(ratio, confidence, ignore_nan=True)
    out.update(resp_peak_step_lo=int(lo), resp_peak_step_hi=int(hi),
               peak_over_last=float(pc.top.response[peak] / pc.top.response[pc.last]),
               peak_over_last_lo=float(r_lo), peak_over_last_hi=float(r_hi))
    span = f"{out['peak_over_last']:.2f} [{r_lo:.2f}, {r_hi:.2f}]"
    out["peak_fall_text"] = (
        "it ends at its peak" if peak == pc.last else
        f"the peak is {span} times the end (paired), so the fall after the peak is resolved" if r_lo > 1 else
        f"the peak is {span} times the end (paired): an interval that covers 1, so whether the score falls after "
        "its peak is not resolved by these sequences")
    peak_text = _step_words(peak, int(lo), int(hi))
    if peak == pc.last:
        out["resp_late_text"] = f"goes on rising to the last step, {pc.last}"
    elif lo > pc.loss_hi:
        out["resp_late_text"] = (f"goes on rising after the loss drop has ended, to its peak at step "
                                 f"{peak_text}, after the drop's end even at the interval's lower end")
    elif hi <= pc.loss_hi:
        out["resp_late_text"] = f"peaks at step {peak_text}, inside the loss drop"
    else:
        out["resp_late_text"] = (f"peaks at step {peak_text}: the interval reaches from inside the "
                                 f"loss drop (which ends at step {pc.loss_hi}) to after it")
    return out


def phase_intervals(pc: PhaseChange, *, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95,
                    losses: tuple | None = None) -> dict:
    """Intervals of the numbers :func:`.studies.phase_facts` quotes, by glue name (``<name>_lo``, ``<name>_hi``).

    Scores: the last block's attention score and its control at step 0, before the drop and at
    the end, its ratio repeated / random at the end (``att_ratio_last``), block 0's previous-token
    score (``prev_*``) and the values Exercise 1 quotes (``l1_*``). Steps (:mod:`~residual_response.step_bootstrap`,
    one set of resampled sequences for every curve): ``att_rise``, ``resp_rise``, ``prev_rise``
    (``*_text``: the step with its interval), ``resp_lag`` (the response's rise minus the loss's
    phase change step, which is read off the training log), ``rise_gap`` (response minus attention,
    paired, with ``rise_order_text``), ``prev_gap`` (previous-token minus attention, with
    ``prev_order_text``), ``att_settled`` and ``resp_peak_step``; and for the steps
    at which the response curve crosses a level (``resp_leaves``: stays above 1 from there, with
    ``resp_leaves_where`` against the loss drop; ``resp_above2``: first above 2), beside which the
    page quotes the conservative steps at which the score's *interval* does so (:class:`.studies.PhaseChange`);
    ``peak_over_last`` (the response's peak over its end, paired) with ``peak_fall_text``.
    The loss's ``phase``, ``loss_lo`` and ``loss_hi`` (``*_text``, ``*_lo``, ``*_hi``; ``n_eval``
    sequences) resample the training log's held-out sequences.

    Args:
        losses: ``(first, second)`` per-sequence copy losses ``[n_saved, n_eval]`` at every saved
            checkpoint (``pc.loss.step``); ``None``: recomputed (:func:`.dynamics.eval_copy_losses`).

    Raises:
        RuntimeError: the per-sequence losses do not give the training log's mean losses or steps.
    """
    steps, L = list(pc.used), pc.L
    out = _scores(pc, n_boot, seed)
    att_point, att = top_head_replicates(_stack(pc, "attention", L - 1), n_boot=n_boot, seed=seed)
    prev_point, prev = top_head_replicates(_stack(pc, "previous_token", 0), n_boot=n_boot, seed=seed)
    resp_point = pc.top.response.to_numpy()
    resp = response_replicates([pc.trace["per_seed"][s]["stripes"] for s in steps],
                               pc.trace["read_layers"].index(L), n_boot=n_boot, seed=seed)
    rises = {"att_rise": step_interval(steps, att_point, att, confidence=confidence),
             "resp_rise": step_interval(steps, resp_point, resp, log=True, confidence=confidence),
             "prev_rise": step_interval(steps, prev_point, prev, confidence=confidence)}
    for name, si in rises.items():
        out.update({name: si.step, f"{name}_lo": si.lo, f"{name}_hi": si.hi, f"{name}_text": step_text(si),
                    f"{name}_none": si.n_none})
    r = rises["resp_rise"]
    out.update(resp_lag_lo=None if r.lo is None else r.lo - pc.phase, resp_lag_hi=None if r.hi is None else r.hi - pc.phase)
    gap = step_difference(steps, (att_point, att, False), (resp_point, resp, True), confidence=confidence)
    out.update(rise_gap=gap[0], rise_gap_lo=gap[1], rise_gap_hi=gap[2], rise_gap_later=gap[3], rise_gap_earlier=gap[4],
               rise_order_text=_order_text(gap, "the attention score"))
    prev_gap = step_difference(steps, (att_point, att, False), (prev_point, prev, False), confidence=confidence)
    out.update(prev_gap=prev_gap[0], prev_gap_lo=prev_gap[1], prev_gap_hi=prev_gap[2],
               prev_order_text=_order_text(prev_gap, "the block-1 attention score"))
    for name, level, stay in (("resp_leaves", 1.0, True), ("resp_above2", EMERGENCE_THRESHOLD, False)):
        si = level_step_interval(steps, resp_point, resp, level, stay=stay, confidence=confidence)
        out.update({name: si.step, f"{name}_lo": si.lo, f"{name}_hi": si.hi, f"{name}_text": step_text(si)})
    out["resp_leaves_where"] = _where(out["resp_leaves_lo"], out["resp_leaves_hi"], pc)
    early = pc.top[pc.top.index < pc.loss_lo]  # every measured checkpoint before the drop
    covers = int(((early.response_lo < 1) & (early.response_hi > 1)).sum())
    out.update(n_early=len(early), n_early_cover=covers, early_hi_max=float(early.response_hi.max()),
               early_cover_text=(f"every one of its {len(early)} intervals before the drop covers 1" if covers == len(early)
                                 else f"{covers} of its {len(early)} intervals before the drop cover 1"))
    out.update(_late_steps(pc, att, resp, confidence))
    out.update(_loss_steps(pc, n_boot, seed, confidence, losses))
    out["n_boot"] = n_boot
    return out


def _loss_steps(pc: PhaseChange, n_boot: int, seed: int, confidence: float, losses: tuple | None) -> dict:
    """The loss's phase change step and the drop's ends with intervals over the log's held-out sequences,
    whose losses are recomputed at every saved checkpoint (:func:`.dynamics.eval_copy_losses`)."""
    steps = list(pc.loss.step)
    first, second = eval_copy_losses(steps, pc.log) if losses is None else (np.asarray(x, dtype=float) for x in losses)
    # the recomputed means are the log's (float32 rounding apart): the intervals belong to the page's steps
    for got, key in ((first, "first copy"), (second, "second copy")):
        worst = float(np.max(np.abs(got.mean(axis=1) - pc.loss[key].to_numpy())))
        if worst > 1e-3:
            raise RuntimeError(f"recomputed {key} losses differ from the training log's by {worst:.2g} nats")
    out = {"n_eval": first.shape[1]}
    for name, si in advantage_steps(steps, first, second, n_boot=n_boot, seed=seed, confidence=confidence).items():
        if si.step != getattr(pc, name):
            raise RuntimeError(f"the recomputed losses give {name} = {si.step}, the training log {getattr(pc, name)}")
        out.update({f"{name}_lo": si.lo, f"{name}_hi": si.hi, f"{name}_text": step_text(si)})
    return out


def layer_tables(pc: PhaseChange, *, n_boot: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Exercise 1's two tables, one row per measured step, every value with its 95 % interval over the sequences.

    ``(response, attention)``: the response score at every stream ``l = 1..L`` (its bootstrap
    interval, :func:`.induction.induction_scores`); and per block the attention score of its top
    head on the stripe and that head's ratio over random sequences (:func:`.stats.ratio_of_means`).
    Why two tables: with every value's interval one table would not fit the page.
    """
    resp, att = [], []
    for step, group in pc.rows.groupby("step"):
        per = pc.trace["per_seed"][step]
        r_row, a_row = {"step": int(step)}, {"step": int(step)}
        for row in group.itertuples():
            b, h = row.layer - 1, row.attention_head
            r_row[f"S, stream {row.layer}"] = ci_text(row.response, row.response_lo, row.response_hi)
            a_row[f"attention, block {b}"] = ci_text(row.attention, row.attention_lo, row.attention_hi, ".3f")
            ratio = ratio_of_means(per["attention"][:, b, h], per["attention_control"][:, b, h], n_boot=n_boot, seed=seed)
            a_row[f"÷ random, block {b}"] = ci_text(*ratio)
        resp.append(r_row)
        att.append(a_row)
    return pd.DataFrame(resp), pd.DataFrame(att)
