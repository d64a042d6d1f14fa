"""Measurements across the toy model's training: when the phase change happens, and whether the views of induction move with it.

Why a module of its own: :mod:`.models.toy` makes the model (recipe, training, checkpoints, loading);
this module reads what training left behind. From the training log alone it finds the phase
change (:func:`phase_change_step`) and the stretch of the loss drop (:func:`loss_drop`), and
chooses the checkpoints worth measuring (:func:`measurement_steps`); at those checkpoints it
scores induction by attention patterns and by the response (:func:`induction_through_training`),
and says when each score moves (:func:`rise_step`, :func:`onset_step`).
:func:`follow_phase_change` does all of it for the toy-model page and :func:`phase_facts` gives
the numbers its prose quotes.

Every "step" is an optimiser step at which a checkpoint was saved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .attention import induction_attention_scores, previous_token_scores
from .induction import EMERGENCE_THRESHOLD, emergence_layer, induction_scores
from .models.toy import load_toy_model, toy_checkpoint_steps

__all__ = [
    "EMERGENCE_THRESHOLD",
    "PhaseChange",
    "checkpoint_subsample",
    "follow_phase_change",
    "induction_through_training",
    "loss_drop",
    "measurement_steps",
    "onset_step",
    "phase_change_step",
    "phase_facts",
    "rise_step",
    "stripe_contrasts",
    "training_facts",
]


def phase_change_step(log: dict, fraction: float = 0.5) -> int | None:
    """First checkpoint step at which the second-copy advantage reaches ``fraction`` of its final size.

    Why this definition: the advantage ``first - second`` (nats) is ~0 before induction and large
    after; the step where it crosses half its final value marks the middle of the drop and does not
    depend on the absolute loss level. ``None`` when the final advantage is below 0.5 nats (no
    phase change happened).

    Args:
        log: a training log (:func:`.models.toy.train_toy`, :func:`.models.toy.load_training_log`).
        fraction: in (0, 1).
    """
    if not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction!r}")
    c = log["checkpoints"]
    adv = [f - s for f, s in zip(c["first_copy_loss"], c["second_copy_loss"])]
    if not adv or adv[-1] < 0.5:
        return None
    for step, a in zip(c["step"], adv):
        if a >= fraction * adv[-1]:
            return int(step)
    return None



def checkpoint_subsample(steps, n: int, around: int | None = None, n_around: int = 2) -> list[int]:
    """About ``n`` of the checkpoint ``steps``: always the first, the last, and ``around`` with neighbours.

    Why: measuring every checkpoint costs too much for a quick build, but the interesting part of
    training is the phase change; a subsample must keep the steps around it so that a rise there
    is resolved, and spread the rest evenly so that the plateaus before and after are seen.

    The checkpoint nearest ``around`` and ``n_around`` checkpoints on each side of it are always
    kept, with the first and last; the remaining ``n`` minus those are the checkpoints nearest
    to evenly spaced steps between the first and the last. When the kept ones already number
    ``n`` or more, they are returned alone (the result may then exceed ``n``).

    Args:
        steps: available checkpoint steps (any order; duplicates ignored).
        n: wanted number of steps, ``>= 2``.
        around: the step to resolve (e.g. :func:`phase_change_step`); ``None`` for none.
        n_around: neighbours kept on each side of ``around``, ``>= 0``.

    Returns:
        the chosen steps, ascending.
    """
    steps = sorted({int(s) for s in steps})
    if not steps:
        raise ValueError("steps is empty")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    if isinstance(n_around, bool) or not isinstance(n_around, int) or n_around < 0:
        raise ValueError(f"n_around must be an int >= 0, got {n_around!r}")
    chosen = {0, len(steps) - 1}
    if around is not None:
        i0 = min(range(len(steps)), key=lambda i: abs(steps[i] - around))
        chosen.update(range(max(0, i0 - n_around), min(len(steps), i0 + n_around + 1)))
    extra = n - len(chosen)
    if extra > 0:
        targets = [steps[0] + (steps[-1] - steps[0]) * (j + 1) / (extra + 1) for j in range(extra)]
        for target in targets:
            free = [i for i in range(len(steps)) if i not in chosen]
            if not free:
                break
            chosen.add(min(free, key=lambda i: abs(steps[i] - target)))
    return [steps[i] for i in sorted(chosen)]


def loss_drop(log: dict, low: float = 0.1, high: float = 0.9) -> tuple[int, int]:
    """The checkpoint steps where the second-copy advantage passes ``low`` and ``high`` of its final size.

    Why: the phase change is not one step but a stretch of training; the toy page asks whether the
    other views of induction move *during* it, so it needs the stretch, measured from the training
    log alone (every saved checkpoint, whatever subsample the page measures).

    Raises:
        ValueError: the log shows no phase change (:func:`phase_change_step` is ``None``).
    """
    if not 0 < low < high < 1:
        raise ValueError(f"need 0 < low < high < 1, got low={low!r}, high={high!r}")
    if phase_change_step(log) is None:
        raise ValueError("the training log shows no phase change (final second-copy advantage below 0.5 nats)")
    c = log["checkpoints"]
    adv = [f - s for f, s in zip(c["first_copy_loss"], c["second_copy_loss"])]
    start = rise_step(c["step"], adv, fraction=low)
    end = rise_step(c["step"], adv, fraction=high)
    return int(start), int(end)


def measurement_steps(log: dict, n_outside: int) -> list[int]:
    """Checkpoints to measure: every one from just before to just after the loss drop, plus ``n_outside`` others.

    Why every checkpoint across the drop: the page's claims are about *when* the scores move
    relative to the drop; with a sparse subsample a rise between two far-apart checkpoints would be
    reported at the later one, so the answer would depend on how many checkpoints a build can
    afford. Inside the drop the resolution is therefore always the saving interval; only the
    plateaus before and after, where nothing moves, are subsampled (evenly, with the first and the
    last checkpoint always kept).

    Args:
        log: the training log (:func:`.models.toy.load_training_log`).
        n_outside: checkpoints outside the drop window, ``>= 2`` (the first and last included).

    Returns:
        ascending checkpoint steps.
    """
    if isinstance(n_outside, bool) or not isinstance(n_outside, int) or n_outside < 2:
        raise ValueError(f"n_outside must be an int >= 2, got {n_outside!r}")
    steps = sorted(int(s) for s in log["checkpoints"]["step"])
    start, end = loss_drop(log)
    i0, i1 = steps.index(start), steps.index(end)
    window = steps[max(0, i0 - 1) : i1 + 2]  # one checkpoint beyond each end of the drop
    outside = [s for s in steps if s not in window]
    kept = checkpoint_subsample(outside, n_outside) if len(outside) >= 2 else outside
    return sorted(set(window) | set(kept))


def onset_step(steps, ci_low, level: float = 1.0) -> int | None:
    """First step from which the lower CI bound stays above ``level`` (``None`` if it never does).

    Why "stays": a single bootstrap interval that happens to clear 1 is a noisy signal; the onset
    of induction is where the score leaves the null for good.
    """
    steps = [int(s) for s in steps]
    low = [float(v) for v in ci_low]
    if len(steps) != len(low) or not steps:
        raise ValueError(f"steps and ci_low must be non-empty and of equal length, got {len(steps)} and {len(low)}")
    onset = None
    for s, v in zip(steps, low):
        if v > level:
            onset = s if onset is None else onset
        else:
            onset = None
    return onset


def rise_step(steps, values, fraction: float = 0.5, min_rise: float = 0.0) -> int | None:
    """First step at which ``values`` have gone ``fraction`` of the way from their first to their last value.

    Why: the loss, the attention score and the response score of the toy model all change at
    the phase change, on different scales; the step where each has covered half of its total
    change is a scale-free way to compare *when* they move (the same rule as
    :func:`phase_change_step`, which applies it to the second-copy advantage). Pass the
    logarithm of a ratio-like score to measure its rise in factors rather than in units.

    Args:
        steps: ascending training steps.
        values: one finite value per step.
        fraction: in (0, 1).
        min_rise: the total rise ``values[-1] - values[0]`` must exceed this, else ``None``.

    Returns:
        the first step with ``values >= values[0] + fraction * (values[-1] - values[0])``, or
        ``None`` when the values do not rise by more than ``min_rise``.
    """
    steps = [int(s) for s in steps]
    values = [float(v) for v in values]
    if len(steps) != len(values) or not steps:
        raise ValueError(f"steps and values must be non-empty and of equal length, got {len(steps)} and {len(values)}")
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError("steps must be strictly ascending")
    if not all(math.isfinite(v) for v in values):
        raise ValueError("values must be finite")
    if not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction!r}")
    total = values[-1] - values[0]
    if total <= min_rise:
        return None
    level = values[0] + fraction * total
    return next(s for s, v in zip(steps, values) if v >= level)


def induction_through_training(
    steps,
    *,
    T: int = 20,
    seeds: int = 4,
    eps: float = 1e-2,
    layer: int = 0,
    matrices_at=(),
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float32",
    n_boot: int = 1000,
) -> dict:
    """Attention-pattern and response-based induction scores of the toy model at checkpoints.

    Why: the toy model's page checks that three independent views of induction (the copy loss
    of the training log, the attention of heads on the induction stripe, and the response
    stripe of :func:`.induction.induction_scores`) change at the same point of training.

    For every checkpoint step and every stream ``l = 1..L`` (row key ``layer``), with sequences
    ``[BOS, a, a]`` of copy length ``T`` and seeds ``0..seeds-1`` (the same sequences at every
    step), the block paired with stream ``l`` is the one that writes it, block ``l - 1``
    (:mod:`.streams`):

    * ``attention``: the largest, over the heads of block ``l - 1``, mean attention from target
      ``T+k-1`` to source ``k`` (:func:`.attention.induction_attention_scores`);
      ``attention_head`` is that head and ``attention_control`` its value on the controls;
    * ``previous_token``: the largest previous-token attention of a head of block ``l - 1``
      (:func:`.attention.previous_token_scores`, on random sequences);
    * ``response``, ``response_lo``, ``response_hi``: the induction score read at stream ``l``
      with its bootstrap CI, perturbing stream ``layer``; ``duplicate``: the duplicate-token
      (lag ``T``) score there.

    Args:
        steps: checkpoint steps (:func:`.models.toy.toy_checkpoint_steps`).
        T, seeds, eps, layer: as for :func:`.induction.induction_scores`.
        matrices_at: steps whose mean response matrices (over seeds) are kept.
        device, dtype: as for :func:`.models.toy.load_toy_model`.
        n_boot: bootstrap resamples of both CIs.

    Returns:
        ``{"rows": [...], "matrices": {step: {"repeated"|"control": [n_read, T, N]}},
        "read_layers": [...], "sources": [...], "T": T, "seeds": seeds}``; ``rows`` holds one dict
        per step and stream ``l = 1..L`` with the keys above plus ``step`` and ``layer`` (= ``l``).
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be an int >= 1, got {seeds!r}")
    steps = [int(s) for s in steps]
    wanted = {int(s) for s in matrices_at}
    missing = sorted(wanted - set(steps))
    if missing:
        raise ValueError(f"matrices_at steps {missing} are not among the measured steps")
    rows, matrices, reads, sources = [], {}, None, None
    for step in steps:
        lm = load_toy_model(device=device, dtype=dtype, step=step)
        att = induction_attention_scores(lm, T=T, seeds=range(seeds), n_boot=n_boot)
        prev = previous_token_scores(lm, T=T, seeds=range(seeds), n_boot=n_boot)["scores"]["mean"]  # [L, H]
        keep = step in wanted
        res = induction_scores(lm, T=T, seeds=seeds, layer=layer, eps=eps, n_boot=n_boot, keep_matrices=keep)
        reads, sources = list(res.layers), list(res.stripes.sources)
        if keep:
            matrices[step] = {kind: m.mean(axis=0) for kind, m in res.stripes.matrices.items()}
        rep, ctrl = att["repeated"]["mean"], att["baseline"]["mean"]  # [L, H]
        for l in range(1, lm.n_layers + 1):
            head = int(rep[l - 1].argmax())
            i = reads.index(l) if l in reads else None
            rows.append({
                "step": step, "layer": l,
                "attention": float(rep[l - 1, head]), "attention_head": head,
                "attention_control": float(ctrl[l - 1, head]),
                "previous_token": float(prev[l - 1].max()),
                "response": float("nan") if i is None else float(res.score[i]),
                "response_lo": float("nan") if i is None else float(res.ci_low[i]),
                "response_hi": float("nan") if i is None else float(res.ci_high[i]),
                "duplicate": float("nan") if i is None else float(res.duplicate_score[i]),
            })
    return {"rows": rows, "matrices": matrices, "read_layers": reads, "sources": sources, "T": T, "seeds": seeds}


# --------------------------------------------------------------------------------------------
# The phase change three ways (the toy-model page)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseChange:
    """The toy model's phase change seen by the loss, the attention patterns and the response.

    Attributes:
        log: the training log (:func:`.models.toy.load_training_log`).
        T, seeds, eps: the induction measurement (:func:`induction_through_training`).
        phase: the phase change step (:func:`phase_change_step`).
        loss_lo, loss_hi: the loss drop (:func:`loss_drop`).
        used: the measured checkpoint steps (:func:`measurement_steps`), ascending.
        before: the last measured step before the loss drop; ``last``: the last saved step.
        gap: steps between saved checkpoints (the recipe's ``checkpoint_every``).
        trace: the output of :func:`induction_through_training` (matrices at ``before`` and ``last``).
        rows: its rows as a frame, one per (step, stream ``layer`` = 1..L).
        top: the rows of stream ``L`` (the last block's), indexed by step.
        loss: ``step``, ``first copy``, ``second copy``: the copy losses of every saved checkpoint.
        att_rise, resp_rise: steps where the last block's attention score, and its response score
            in factors (log scale, the score is a ratio), cover half of their rise (:func:`rise_step`).
        resp_onset: step from which the response CI stays above 1 (:func:`onset_step`).
        resp_emerge: first step whose response CI lies above :data:`EMERGENCE_THRESHOLD`.
    """

    log: dict
    T: int
    seeds: int
    eps: float
    phase: int
    loss_lo: int
    loss_hi: int
    used: list
    before: int
    last: int
    gap: int
    trace: dict
    rows: pd.DataFrame
    top: pd.DataFrame
    loss: pd.DataFrame
    att_rise: int | None
    resp_rise: int | None
    resp_onset: int | None
    resp_emerge: int | None

    @property
    def L(self) -> int:
        """The last stream ``L``, the one the last block writes (:mod:`.streams`)."""
        return int(self.rows.layer.max())

    @property
    def advantage(self) -> pd.Series:
        """Second-copy advantage (first-copy minus second-copy loss, nats) at every saved checkpoint."""
        return self.loss["first copy"] - self.loss["second copy"]


def follow_phase_change(log: dict, *, T: int, seeds: int, eps: float, n_outside: int,
                        device: str | torch.device = "cpu") -> PhaseChange:
    """Measure both induction scores across the loss drop of the cached toy model (:class:`PhaseChange`).

    Every checkpoint across the drop is measured (:func:`measurement_steps`), so *when* a score
    moves is resolved to one checkpoint whatever ``n_outside`` a build affords; the response
    matrices are kept at the last measured step before the drop and at the last checkpoint.

    Raises:
        RuntimeError: the training log shows no phase change.
    """
    phase = phase_change_step(log)
    if phase is None:
        raise RuntimeError("the toy model shows no phase change in its training log")
    loss_lo, loss_hi = loss_drop(log)  # the advantage passes 10 % and 90 % of its final size
    used = measurement_steps(log, n_outside)
    before = max(s for s in used if s < loss_lo)
    last = toy_checkpoint_steps()[-1]
    trace = induction_through_training(used, T=T, seeds=seeds, eps=eps, matrices_at=[before, last], device=device)
    rows = pd.DataFrame(trace["rows"])
    top = rows[rows.layer == int(rows.layer.max())].set_index("step")
    ck = log["checkpoints"]
    loss = pd.DataFrame({"step": ck["step"], "first copy": ck["first_copy_loss"], "second copy": ck["second_copy_loss"]})
    return PhaseChange(
        log=log, T=T, seeds=seeds, eps=eps, phase=phase, loss_lo=loss_lo, loss_hi=loss_hi, used=used,
        before=before, last=last, gap=log["recipe"]["checkpoint_every"], trace=trace, rows=rows, top=top, loss=loss,
        att_rise=rise_step(top.index, top.attention),
        resp_rise=rise_step(top.index, np.log(top.response)),
        resp_onset=onset_step(top.index, top.response_lo),
        resp_emerge=emergence_layer(list(top.index), list(top.response_lo)),
    )


#: Recipe fields the toy-model page quotes (as ``r_<field>``).
RECIPE_FACTS = ("vocab_size", "n_positions", "d_model", "n_layers", "n_heads", "steps", "checkpoint_every",
                "batch_size", "train_len", "lr", "warmup", "emb_std", "init_std", "t_min", "t_max", "other_weight",
                "eval_T", "eval_n")


def training_facts(log: dict, n_saved: int) -> dict:
    """What the training log says about the run, by the names the toy-model page quotes.

    ``r_<field>`` for the recipe fields of :data:`RECIPE_FACTS`, ``r_seed``, ``r_wall`` (seconds),
    ``r_threads``, ``uniform_loss`` (``ln(vocab_size - 1)``) and ``n_saved`` (checkpoints saved).
    """
    facts = {f"r_{key}": log["recipe"][key] for key in RECIPE_FACTS}
    facts.update(r_seed=log["seed"], r_wall=log["wall_time_s"], r_threads=log["torch_threads"],
                 uniform_loss=log["uniform_loss"], n_saved=n_saved)
    return facts


def phase_facts(pc: PhaseChange) -> dict:
    """The numbers the toy-model page quotes about :class:`PhaseChange` ``pc``, by name.

    Steps and scores of the three views (loss, attention, response) at step 0 (``_0``), just
    before the drop (``_before``) and at the end (``_last``); the two-stage drop (how much of the
    advantage context statistics give before the phase change, against the bound
    ``ln((vocab_size - 1) / eval_T)`` of betting evenly on the first copy's tokens); and where
    the attention pattern settles (90 % of its top after the phase change) against the loss and
    the response at that step.
    """
    top, loss, adv, recipe = pc.top, pc.loss, pc.advantage, pc.log["recipe"]
    at_before = loss.step == pc.before
    plateau_adv = float(adv[at_before].iloc[0])
    facts = {
        "resp_onset": str(pc.resp_onset), "gap": pc.gap, "phase": pc.phase, "before": pc.before, "last": pc.last,
        "n_used": len(pc.used), "used_list": ", ".join(str(s) for s in pc.used),
        "T_len": pc.T, "n_seeds": pc.seeds, "eps": pc.eps, "L": pc.L,
        "att_rise": pc.att_rise, "resp_rise": pc.resp_rise, "resp_emerge": str(pc.resp_emerge),
        "resp_lag": pc.resp_rise - pc.phase, "loss_lo": pc.loss_lo, "loss_hi": pc.loss_hi,
        "adv_final": float(adv.iloc[-1]), "second_final": float(loss["second copy"].iloc[-1]),
        "first_final": float(loss["first copy"].iloc[-1]), "first_peak": float(loss["first copy"].max()),
        "adv_before": plateau_adv, "adv_before_frac": plateau_adv / float(adv.iloc[-1]),
        "in_context_bound": float(np.log((recipe["vocab_size"] - 1) / recipe["eval_T"])),
        "gain_before": float(pc.log["uniform_loss"] - loss["second copy"][at_before].iloc[0]),
        "first_before": float(loss["first copy"][at_before].iloc[0]),
    }
    for name, step in [("0", pc.used[0]), ("before", pc.before), ("last", pc.last)]:
        facts[f"att_{name}"] = float(top.attention[step])
        facts[f"attc_{name}"] = float(top.attention_control[step])
        facts[f"resp_{name}"] = float(top.response[step])
        facts[f"resp_lo_{name}"] = float(top.response_lo[step])
        facts[f"resp_hi_{name}"] = float(top.response_hi[step])
    facts["att_head_last"] = int(top.attention_head[pc.last])
    att_level = float(top.attention[top.index >= pc.phase].max())
    settled = next(s for s in top.index if s >= pc.phase and top.attention[s] >= 0.9 * att_level)
    facts.update(att_settled=settled, resp_settled=float(top.response[settled]),
                 second_settled=float(loss["second copy"][loss.step == settled].iloc[0]))
    return facts


def stripe_contrasts(pc: PhaseChange) -> dict:
    """How the induction stripe stands out of the last read layer's response matrix, before and after.

    The mean response on the lag ``T-1`` stripe (``contrast_<when>``) and on the duplicate-token
    lag ``T`` (``dup_contrast_<when>``), each divided by the mean on the lag ``T-2`` diagonal:
    one position closer, so favoured by the decay with distance. ``<when>`` is ``before``
    (:attr:`PhaseChange.before`) or ``last``; ``read_last`` is the read layer.
    """
    from .tables import distance_profile

    trace, T = pc.trace, pc.T
    read_last = trace["read_layers"][-1]
    facts = {"read_last": read_last}
    for name, step in [("before", pc.before), ("last", pc.last)]:
        profile = distance_profile(trace["matrices"][step]["repeated"], trace["read_layers"], trace["sources"],
                                   [read_last]).set_index("distance")["mean chi"]  # mean chi at each lag t - s
        facts[f"contrast_{name}"] = float(profile[T - 1] / profile[T - 2])
        facts[f"dup_contrast_{name}"] = float(profile[T] / profile[T - 2])
    return facts
