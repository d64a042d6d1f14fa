"""Measurements across the toy model's training: when the phase change happens, and whether the views of induction move with it.

Why a module of its own: :mod:`.models.toy` makes the model (recipe, training, checkpoints, loading);
this module reads what training left behind. From the training log alone it finds the phase
change (:func:`phase_change_step`) and the stretch of the loss drop (:func:`loss_drop`), and
chooses the checkpoints worth measuring (:func:`measurement_steps`); at those checkpoints it
scores induction by attention patterns and by the response (:func:`induction_through_training`),
and says when each score moves (:func:`rise_step`, :func:`onset_step`).
:func:`residual_response.pages.studies.follow_phase_change` does all of it for the toy-model
page.

Every "step" is an optimiser step at which a checkpoint was saved.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .attention import induction_attention_scores, previous_token_scores
from .checks import InputError, keyword_alias
from .induction import EMERGENCE_THRESHOLD, induction_scores
from .models.toy import load_toy_model

__all__ = [
    "EMERGENCE_THRESHOLD",
    "checkpoint_subsample",
    "eval_copy_losses",
    "induction_through_training",
    "loss_drop",
    "measurement_steps",
    "onset_step",
    "phase_change_step",
    "rise_step",
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
        raise InputError(f"fraction must lie in (0, 1), got {fraction!r}")
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
        raise InputError("steps is empty")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise InputError(f"n must be an int >= 2, got {n!r}")
    if isinstance(n_around, bool) or not isinstance(n_around, int) or n_around < 0:
        raise InputError(f"n_around must be an int >= 0, got {n_around!r}")
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
        raise InputError(f"need 0 < low < high < 1, got low={low!r}, high={high!r}")
    if phase_change_step(log) is None:
        raise InputError("the training log shows no phase change (final second-copy advantage below 0.5 nats)")
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
        raise InputError(f"n_outside must be an int >= 2, got {n_outside!r}")
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
        raise InputError(f"steps and ci_low must be non-empty and of equal length, got {len(steps)} and {len(low)}")
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
        raise InputError(f"steps and values must be non-empty and of equal length, got {len(steps)} and {len(values)}")
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise InputError("steps must be strictly ascending")
    if not all(math.isfinite(v) for v in values):
        raise InputError("values must be finite")
    if not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise InputError(f"fraction must lie in (0, 1), got {fraction!r}")
    total = values[-1] - values[0]
    if total <= min_rise:
        return None
    level = values[0] + fraction * total
    return next(s for s, v in zip(steps, values) if v >= level)


@keyword_alias(layer="l0")
def induction_through_training(
    steps,
    *,
    T: int = 20,
    seeds: int = 4,
    eps: float = 1e-2,
    l0: int = 0,
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
      (:func:`.attention.previous_token_scores`, on random sequences), ``previous_token_head`` that head;
    * ``<score>_lo``, ``<score>_hi`` for those three: the named head's bootstrap interval over the seeds;
    * ``response``, ``response_lo``, ``response_hi``: the induction score read at stream ``l``
      with its bootstrap CI, perturbing stream ``l0``; ``duplicate``: the duplicate-token
      (lag ``T``) score there.

    Args:
        steps: checkpoint steps (:func:`.models.toy.toy_checkpoint_steps`).
        T, seeds, eps, l0: as for :func:`.induction.induction_scores` (``layer=`` is the old name of ``l0``).
        matrices_at: steps whose response matrices are kept: their mean over seeds, and each seed's
            (``seed_matrices``, for intervals over sequences).
        device, dtype: as for :func:`.models.toy.load_toy_model`.
        n_boot: bootstrap resamples of both CIs.

    Returns:
        ``{"rows": [...], "matrices": {step: {"repeated"|"control": [n_read, T, N]}}, "seed_matrices":
        {step: {kind: [n_seeds, n_read, T, N]}}, "per_seed": {step: {...}}, "read_layers": [...], "sources": [...],
        "T": T, "seeds": seeds}``; ``rows`` holds one dict per step and stream ``l = 1..L`` with the keys
        above plus ``step`` and ``layer`` (= ``l``). ``per_seed`` keeps, per step, what the intervals of
        :mod:`.step_bootstrap` resample: ``attention``, ``attention_control``, ``previous_token``
        (``[n_seeds, L, H]`` per-seed scores of every head) and ``stripes`` (the response's stripe arrays,
        :meth:`.induction_result.StripeData.parts`, each ``[n_seeds, n_read, P]``).
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise InputError(f"seeds must be an int >= 1, got {seeds!r}")
    steps = [int(s) for s in steps]
    wanted = {int(s) for s in matrices_at}
    missing = sorted(wanted - set(steps))
    if missing:
        raise InputError(f"matrices_at steps {missing} are not among the measured steps")
    rows, matrices, seed_matrices, per_seed, reads, sources = [], {}, {}, {}, None, None
    for step in steps:
        lm = load_toy_model(device=device, dtype=dtype, step=step)
        att = induction_attention_scores(lm, T=T, seeds=range(seeds), n_boot=n_boot)
        prev_all = previous_token_scores(lm, T=T, seeds=range(seeds), n_boot=n_boot).scores  # mean/lo/hi [L, H]
        keep = step in wanted
        res = induction_scores(lm, T=T, seeds=seeds, l0=l0, eps=eps, n_boot=n_boot, keep_matrices=keep)
        reads, sources = list(res.read_streams), list(res.stripes.sources)
        if keep:
            matrices[step] = {kind: m.mean(axis=0) for kind, m in res.stripes.matrices.items()}
            seed_matrices[step] = dict(res.stripes.matrices)
        per_seed[step] = {"attention": att.repeated.per_seed.numpy(), "attention_control": att.baseline.per_seed.numpy(),
                          "previous_token": prev_all.per_seed.numpy(), "stripes": res.stripes.parts("induction")}
        rows += _checkpoint_rows(step, lm.n_layers, att, prev_all, res)
    return {"rows": rows, "matrices": matrices, "seed_matrices": seed_matrices, "per_seed": per_seed, "read_layers": reads,
            "sources": sources, "T": T, "seeds": seeds}


def _checkpoint_rows(step: int, n_layers: int, att, prev, res) -> list[dict]:
    """The rows of :func:`induction_through_training` at one checkpoint, one per stream ``l = 1..L``.

    ``att``: :func:`.attention.induction_attention_scores`; ``prev``: the ``scores`` of
    :func:`.attention.previous_token_scores`; ``res``: :func:`.induction.induction_scores`.
    """
    rep, ctrl, reads, rows = att.repeated, att.baseline, list(res.read_streams), []
    for l in range(1, n_layers + 1):
        b = l - 1  # the block that writes stream l
        head, ph = int(rep.mean[b].argmax()), int(prev.mean[b].argmax())
        i = reads.index(l) if l in reads else None

        def at(values):
            return float("nan") if i is None else float(values[i])

        rows.append({
            "step": step, "layer": l,
            "attention": float(rep.mean[b, head]), "attention_head": head,
            "attention_lo": float(rep.lo[b, head]), "attention_hi": float(rep.hi[b, head]),
            "attention_control": float(ctrl.mean[b, head]),
            "attention_control_lo": float(ctrl.lo[b, head]), "attention_control_hi": float(ctrl.hi[b, head]),
            "previous_token": float(prev.mean[b, ph]), "previous_token_head": ph,
            "previous_token_lo": float(prev.lo[b, ph]), "previous_token_hi": float(prev.hi[b, ph]),
            "response": at(res.score), "response_lo": at(res.ci_low), "response_hi": at(res.ci_high),
            "duplicate": at(res.duplicate_score),
        })
    return rows


@torch.no_grad()
def eval_copy_losses(steps, log: dict, *, device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Per-sequence copy losses of the training log's held-out repeats, recomputed at checkpoints.

    Why: the training log keeps only the mean losses over its ``eval_n`` held-out sequences, so the
    phase change step read off them (:func:`phase_change_step`) has no interval; with the losses of
    every sequence it gets a bootstrap interval over the sequences
    (:func:`.step_bootstrap.advantage_steps`). The sequences are the log's own (the recipe's
    ``eval_T``, ``eval_n`` and token seed), scored with the loss definition of the log
    (:func:`.behaviour.copy_losses`).

    Args:
        steps: checkpoint steps (:func:`.models.toy.toy_checkpoint_steps`).
        log: the training log (:func:`.models.toy.load_training_log`).

    Returns:
        ``(first, second)``: ``[n_steps, eval_n]`` float64 mean losses on the first and second copy.
    """
    from .behaviour import copy_losses
    from .models.toy import ToyRecipe, _eval_tokens
    from .sequences import InductionLayout

    recipe = ToyRecipe(**log["recipe"])
    tokens = _eval_tokens(recipe)  # [eval_n, 2 eval_T + 1], the log's held-out sequences
    first, second = [], []
    for step in [int(s) for s in steps]:
        lm = load_toy_model(device=device, step=step)
        logits = lm.model(input_ids=tokens.to(lm.device), use_cache=False).logits  # [eval_n, N, V]
        f, s = copy_losses(logits.cpu(), tokens, InductionLayout(T=recipe.eval_T, offset=1))
        first.append(f.double().numpy())
        second.append(s.double().numpy())
    return np.stack(first), np.stack(second)


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
