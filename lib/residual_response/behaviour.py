"""Behaviour behind induction: next-token loss on the first and the second copy of a repeat.

On ``x = [BOS, a_1 .. a_T, a_1 .. a_T]`` the first copy is unpredictable: every ``a_k`` is drawn
uniformly from the ordinary vocabulary, so the best loss there is ``ln(n_ordinary)``. The second
copy is predictable by copying: at index ``T+k-1`` (the second ``a_{k-1}``) a model that looks
back to what followed ``a_{k-1}`` last time predicts ``a_k``. A loss on the second copy far below
the first is the behavioural fact that the attention scores (:mod:`.attention`), the ablations
(:mod:`.ablation`) and the response stripe (:mod:`.induction`) explain.

We compare like with like: both copies are scored on the same tokens ``a_2 .. a_T``.

- first copy:  the logits at index ``k-1`` predicting ``a_k`` at index ``k``  (``k = 2..T``),
- second copy: the logits at index ``T+k-1`` predicting ``a_k`` at index ``T+k`` (``k = 2..T``).

``a_1`` is left out of both: after the first ``a_T`` nothing says that the copy restarts, so the
second ``a_1`` is as unpredictable as the first. (Indices as written assume BOS at index 0;
:func:`.sequences.induction_layout` shifts them for models without BOS.) The positions of the
second copy are exactly the induction targets of the layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .checks import InputError, check_bootstrap, check_int, check_seeds
from .models import LoadedModel
from .sequences import InductionLayout, induction_layout, make_sequence, validate_length
from .stats import BootstrapMean, KeyAccess, bootstrap_mean

__all__ = ["RepeatLoss", "SecondCopyLoss", "copy_losses", "repeat_loss", "second_copy_loss"]


@dataclass
class RepeatLoss(KeyAccess):
    """Loss on the first and the second copy of repeated random sequences (:func:`repeat_loss`).

    Attributes:
        model, T, seeds: the model's name, the copy length and the sequence seeds.
        uniform_loss: ``ln n_ordinary``, the loss of a uniform guess over the ordinary tokens.
        first, second: mean loss per copy over seeds (``per_seed`` ``[S]``), with bootstrap CIs.
        drop: ``first - second`` per seed, with its bootstrap CI.
        per_position: ``[S, N-1]`` loss predicting token ``t+1`` from position ``t``.
    """

    model: str
    T: int
    seeds: list[int]
    uniform_loss: float
    first: BootstrapMean
    second: BootstrapMean
    drop: BootstrapMean
    per_position: torch.Tensor


@dataclass
class SecondCopyLoss(KeyAccess):
    """The second-copy loss of :func:`repeat_loss` alone (:func:`second_copy_loss`).

    Attributes:
        model, T, seeds: as :class:`RepeatLoss`; second: mean loss on the second copy over seeds
            (``per_seed`` ``[S]``), with its bootstrap CI.
    """

    model: str
    T: int
    seeds: list[int]
    second: BootstrapMean


def copy_losses(logits: torch.Tensor, tokens: torch.Tensor, layout: InductionLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean next-token cross-entropy on the first and the second copy of repeated sequences.

    Why a separate function: the toy-model trainer scores its held-out repeats with exactly the
    same definition as :func:`repeat_loss`, so the training log and the book agree.

    Args:
        logits: ``[S, N, V]`` logits of ``S`` repeated sequences of length ``N = layout.length``.
        tokens: ``[S, N]`` the token ids those logits were computed from.
        layout: where the copies lie.

    Returns:
        ``(first, second)``, each ``[S]`` float32: mean loss predicting ``a_2..a_T`` in the first and
        in the second copy (see the module docstring for the exact indices).
    """
    if logits.ndim != 3 or tokens.ndim != 2 or logits.shape[:2] != tokens.shape:
        raise InputError(
            f"logits must be [S, N, V] and tokens [S, N] with the same S, N; got {tuple(logits.shape)} and {tuple(tokens.shape)}"
        )
    if tokens.shape[1] != layout.length:
        raise InputError(f"sequences have length {tokens.shape[1]} but the layout (T={layout.T}) needs {layout.length}")
    return _copy_nll(torch.log_softmax(logits.float(), dim=-1), tokens, layout)


def _copy_nll(logp: torch.Tensor, tokens: torch.Tensor, layout: InductionLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`copy_losses` from the log-probabilities ``logp`` ``[S, N, V]`` (computed once by the caller)."""
    tokens = tokens.to(logp.device)
    src = layout.induction_sources.to(logp.device)  # first-copy a_k, k = 2..T
    tgt = layout.induction_targets.to(logp.device)  # second a_{k-1}: predicts a_k at tgt + 1

    def nll(pred_pos: torch.Tensor) -> torch.Tensor:
        lp = logp[:, pred_pos, :]  # [S, T-1, V]
        nxt = tokens[:, pred_pos + 1]  # [S, T-1]
        return -lp.gather(-1, nxt.unsqueeze(-1)).squeeze(-1).mean(dim=1)  # [S]

    return nll(src - 1).cpu(), nll(tgt).cpu()


@torch.no_grad()
def repeat_loss(
    lm: LoadedModel,
    T: int,
    seeds: Sequence[int] | int = 8,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    batch_size: int = 8,
) -> RepeatLoss:
    """Loss on the first vs the second copy of repeated random sequences.

    Why: the loss on the second copy falling far below the first is the plain behavioural evidence
    of in-context copying (induction). Its size says how much of the mechanism the other
    measurements should find, and a random-initialised model shows no drop.

    Args:
        lm: the model.
        T: length of one copy (``2T`` tokens plus BOS must fit the context).
        seeds: an int ``K`` (seeds ``0..K-1``) or a list of sequence seeds
            (:func:`.sequences.make_sequence`); statistics are over seeds.
        n_boot, confidence: bootstrap over seeds for the confidence intervals.
        batch_size: sequences per forward pass.

    Returns:
        :class:`RepeatLoss` (its fields also read by key, ``res["drop"]["mean"]``).
    """
    validate_length(lm, T)
    seeds = check_seeds(seeds)
    check_int(batch_size, "batch_size", minimum=1)
    check_bootstrap(n_boot, confidence)  # before the forward passes
    layout = induction_layout(lm, T)
    tokens = torch.stack([make_sequence(lm, "repeated", T, s) for s in seeds])  # [S, N]
    firsts, seconds, per_pos = [], [], []
    for i in range(0, len(seeds), batch_size):
        batch = tokens[i : i + batch_size].to(lm.device)
        logits = lm.model(input_ids=batch, use_cache=False).logits  # [B, N, V]
        logp = torch.log_softmax(logits.float(), dim=-1)  # [B, N, V], once for both copies and every position
        f, s = _copy_nll(logp, batch, layout)
        firsts.append(f)
        seconds.append(s)
        per_pos.append(-logp[:, :-1].gather(-1, batch[:, 1:].unsqueeze(-1)).squeeze(-1).cpu())  # [B, N-1]
    first = torch.cat(firsts)
    second = torch.cat(seconds)
    boot = dict(n_boot=n_boot, confidence=confidence)
    return RepeatLoss(
        model=lm.name,
        T=int(T),
        seeds=seeds,
        uniform_loss=float(np.log(len(lm.ordinary_token_ids))),
        first=bootstrap_mean(first, **boot),
        second=bootstrap_mean(second, **boot),
        drop=bootstrap_mean(first - second, **boot),
        per_position=torch.cat(per_pos),
    )


@torch.no_grad()
def second_copy_loss(lm: LoadedModel, T: int, seeds: Sequence[int] | int = 8, *, n_boot: int = 1000,
                     confidence: float = 0.95, batch_size: int = 8) -> SecondCopyLoss:
    """:func:`repeat_loss`'s second-copy loss, with the logits computed only where the second copy
    is predicted.

    Why: an ablation study reads only this of each of its ~25 ablated conditions, and the
    unembedding at every position is much of a small model's forward pass (Gemma 3's vocabulary has
    262k tokens). The values equal ``repeat_loss(...).second`` to float rounding; the batches are
    the same (``batch_size`` sequences in seed order), so a caller that replaces a block's input
    batch by batch (:func:`.ablation_runs.ablated_losses`) sees the same calls.
    """
    validate_length(lm, T)
    seeds = check_seeds(seeds)
    check_int(batch_size, "batch_size", minimum=1)
    check_bootstrap(n_boot, confidence)
    layout = induction_layout(lm, T)
    tokens = torch.stack([make_sequence(lm, "repeated", T, s) for s in seeds])  # [S, N]
    tgt = layout.induction_targets.to(lm.device)  # the second a_{k-1}: predicts a_k at tgt + 1
    seconds = []
    for i in range(0, len(seeds), batch_size):
        batch = tokens[i : i + batch_size].to(lm.device)
        logits = lm.model(input_ids=batch, use_cache=False, logits_to_keep=tgt).logits  # [B, T-1, V]
        logp = torch.log_softmax(logits.float(), dim=-1)
        seconds.append(-logp.gather(-1, batch[:, tgt + 1].unsqueeze(-1)).squeeze(-1).mean(dim=1).cpu())  # [B]
    return SecondCopyLoss(model=lm.name, T=int(T), seeds=seeds,
                          second=bootstrap_mean(torch.cat(seconds), n_boot=n_boot, confidence=confidence))
