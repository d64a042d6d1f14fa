"""Attention-pattern scores of induction and previous-token heads (Olsson et al. 2022).

The classic way to find induction heads, independent of the residual-stream response: on
``[BOS, a_1 .. a_T, a_1 .. a_T]`` an induction head at the second ``a_{k-1}`` (index ``T+k-1``)
attends to the first ``a_k`` (index ``k``), the token that followed ``a_{k-1}`` last time. Its
induction score is the mean attention weight on those ``T-1`` entries (``k = 2..T``). A
previous-token head attends from ``t`` to ``t-1``; induction heads in later blocks read what
previous-token heads in earlier blocks wrote (K-composition). Heads are named ``(block, head)``,
``block`` ``b`` in ``0..L-1``; score matrices are ``[L, H]`` indexed the same way.

The same entries of the control (``2T`` random tokens, no repeat) give the baseline: attention
that a head pays to a position ``T-1`` back for no reason but distance. A head is an induction
head when its score on repeats is high *and* well above the control.

Attention weights come from the models' eager attention (SDPA kernels do not return them); the
model's implementation is switched for the duration of one call and restored in ``finally``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from .checks import InputError, check_bootstrap, check_int, check_seeds
from .models import LoadedModel
from .sequences import SEQUENCE_KINDS, induction_layout, make_sequence, validate_length
from .stats import BootstrapMean, KeyAccess, bootstrap_mean

__all__ = [
    "STRIPES",
    "InductionAttention",
    "PreviousTokenAttention",
    "attention_patterns",
    "eager_attention",
    "induction_attention_scores",
    "INDUCTION_HEAD_MIN_RATIO",
    "induction_heads",
    "previous_token_scores",
    "top_heads",
]

#: which stripe of the attention pattern to score: lag ``T-1`` (induction) or lag ``T`` (duplicate token)
STRIPES = ("induction", "duplicate")


@dataclass
class InductionAttention(KeyAccess):
    """Mean attention on a stripe per block and head (:func:`induction_attention_scores`).

    Attributes:
        model, T, seeds, stripe, control: what was measured.
        repeated: scores on repeats over seeds (``mean``/``lo``/``hi`` ``[L, H]``, ``per_seed``
            ``[S, L, H]``); baseline: the same entries of sequences of kind ``control``.
        ratio: ``[L, H]`` repeated mean / baseline mean.
    """

    model: str
    T: int
    seeds: list[int]
    stripe: str
    control: str
    repeated: BootstrapMean
    baseline: BootstrapMean
    ratio: torch.Tensor


@dataclass
class PreviousTokenAttention(KeyAccess):
    """Mean attention to the previous token per block and head (:func:`previous_token_scores`).

    Attributes:
        model, T, seeds, kind: what was measured.
        scores: over seeds, ``mean``/``lo``/``hi`` ``[L, H]`` and ``per_seed`` ``[S, L, H]``.
    """

    model: str
    T: int
    seeds: list[int]
    kind: str
    scores: BootstrapMean


@contextlib.contextmanager
def eager_attention(lm: LoadedModel) -> Iterator[None]:
    """Run ``lm`` with an attention implementation that returns its weights, then restore it.

    Why: SDPA and flash kernels never materialise the attention matrix, so ``output_attentions``
    yields nothing under them. Eager-style implementations (``"eager"``, and the float64
    ``"rr_eager"`` of :mod:`.precision`) do; they are kept as they are.
    """
    original = getattr(lm.model.config, "_attn_implementation", None)
    switch = original is None or "eager" not in str(original)
    if switch:
        lm.model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if switch and original is not None:
            lm.model.set_attn_implementation(original)


@torch.no_grad()
def attention_patterns(lm: LoadedModel, tokens: torch.Tensor) -> torch.Tensor:
    """Attention weights of every head of every block.

    Why: the pattern is the direct evidence of what a head reads (induction, previous token,
    BOS sink), against which the response measurements are checked.

    Args:
        lm: the model.
        tokens: ``[N]`` token ids, or ``[B, N]`` a batch of equal-length sequences.

    Returns:
        ``[L, H, N, N]`` float32 on the CPU (``[B, L, H, N, N]`` for a batch): ``out[b, h, t, s]`` is
        the weight that head ``h`` of block ``b`` at query position ``t`` gives to key position ``s``.
        Rows sum to 1 and entries with ``s > t`` are 0 (causal; sliding windows also zero
        entries further back than the window).
    """
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"tokens must be a torch.Tensor of token ids, got {type(tokens).__name__}")
    if tokens.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"tokens must be an integer tensor, got dtype {tokens.dtype}")
    if tokens.ndim not in (1, 2) or tokens.shape[-1] == 0:
        raise InputError(f"tokens must have shape [N] or [B, N] with N >= 1, got {tuple(tokens.shape)}")
    if tokens.shape[-1] > lm.max_length:
        raise InputError(f"sequence length {tokens.shape[-1]} exceeds the context of {lm.name} ({lm.max_length})")
    if int(tokens.min()) < 0 or int(tokens.max()) >= lm.vocab_size:
        raise InputError(
            f"token ids must lie in 0..{lm.vocab_size - 1}, got min {int(tokens.min())} max {int(tokens.max())}"
        )
    batch = tokens.long().to(lm.device)
    single = batch.ndim == 1
    if single:
        batch = batch.unsqueeze(0)
    with eager_attention(lm):
        out = lm.base_model(input_ids=batch, output_attentions=True, use_cache=False)
    att = out.attentions
    if att is None or len(att) != lm.n_layers or any(a is None for a in att):
        raise RuntimeError(
            f"{lm.name} ({type(lm.model).__name__}) returned no attention weights for every layer; "
            "its attention implementation does not support output_attentions"
        )
    pat = torch.stack([a.detach().float().cpu() for a in att], dim=1)  # [B, L, H, N, N]
    return pat[0] if single else pat


def _stripe_pairs(lm: LoadedModel, T: int, stripe: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(queries, keys)`` index pairs of a stripe: lag ``T-1`` (induction) or ``T`` (duplicate)."""
    layout = induction_layout(lm, T)
    if stripe == "induction":
        return layout.induction_targets, layout.induction_sources
    if stripe == "duplicate":
        return layout.duplicate_targets, layout.duplicate_sources
    raise InputError(f"unknown stripe {stripe!r}; allowed: {', '.join(STRIPES)}")


def _patterns_for(lm: LoadedModel, kind: str, T: int, seeds: list[int], batch_size: int) -> Iterator[torch.Tensor]:
    """Yield ``[B, L, H, N, N]`` patterns of the sequences of one kind, ``batch_size`` seeds at a time."""
    for i in range(0, len(seeds), batch_size):
        toks = torch.stack([make_sequence(lm, kind, T, s) for s in seeds[i : i + batch_size]])  # [B, N]
        yield attention_patterns(lm, toks)


def _validate_common(lm: LoadedModel, T: int, seeds, batch_size: int) -> list[int]:
    validate_length(lm, T)
    seeds = check_seeds(seeds)
    check_int(batch_size, "batch_size", minimum=1)
    return seeds


def induction_attention_scores(
    lm: LoadedModel,
    T: int = 20,
    seeds: Sequence[int] | int = 4,
    *,
    stripe: str = "induction",
    control: str = "random",
    n_boot: int = 1000,
    confidence: float = 0.95,
    batch_size: int = 4,
) -> InductionAttention:
    """Mean attention on the induction stripe, per block and head, on repeats and on controls.

    Why: this is the standard, mechanism-level way to name induction heads; the response-based
    induction score of each stream should rise after the blocks these heads sit in, and ablating them should
    lower it.

    Args:
        lm: the model.
        T: length of one copy.
        seeds: an int ``K`` (seeds ``0..K-1``) or a list; the mean and its bootstrap CI are over seeds.
        stripe: ``"induction"`` (query ``T+k-1`` to key ``k``, ``k = 2..T``) or ``"duplicate"``
            (query ``T+k`` to key ``k``, ``k = 1..T``: duplicate-token heads).
        control: sequence kind of the baseline, ``"random"`` (default) or ``"shuffled"``.
        n_boot, confidence: bootstrap over seeds.
        batch_size: sequences per forward pass.

    Returns:
        :class:`InductionAttention` (its fields also read by key, ``res["repeated"]["mean"]``).
    """
    seeds = _validate_common(lm, T, seeds, batch_size)
    check_bootstrap(n_boot, confidence)  # before the forward passes, not after them
    if control not in SEQUENCE_KINDS or control == "repeated":
        raise InputError(f"control must be 'random' or 'shuffled', got {control!r}")
    q, k = _stripe_pairs(lm, T, stripe)
    per_kind = {}
    for kind in ("repeated", control):
        vals = [pat[:, :, :, q, k].mean(dim=-1) for pat in _patterns_for(lm, kind, T, seeds, batch_size)]  # [B, L, H]
        per_kind[kind] = torch.cat(vals)  # [S, L, H]
    boot = dict(n_boot=n_boot, confidence=confidence)
    rep = bootstrap_mean(per_kind["repeated"], **boot)
    base = bootstrap_mean(per_kind[control], **boot)
    return InductionAttention(model=lm.name, T=int(T), seeds=seeds, stripe=stripe, control=control,
                              repeated=rep, baseline=base, ratio=rep.mean / base.mean.clamp_min(1e-12))


def previous_token_scores(
    lm: LoadedModel,
    T: int = 20,
    seeds: Sequence[int] | int = 4,
    *,
    kind: str = "random",
    n_boot: int = 1000,
    confidence: float = 0.95,
    batch_size: int = 4,
) -> PreviousTokenAttention:
    """Mean attention from each position to the one before, per block and head.

    Why: induction needs a previous-token head in an earlier layer (it writes "the token before
    me was ``a_{k-1}``" into position ``k``, which the induction head's key reads). Finding one
    in a block below the induction heads is part of the mechanistic check.

    Only query positions whose previous token is an ordinary token count (with BOS: queries
    ``2..N-1``), so attention to BOS, which many heads use as a resting place, does not inflate
    the score of the first query.

    Args:
        kind: sequence kind (``"random"`` by default: previous-token behaviour needs no repeat).

    Returns:
        :class:`PreviousTokenAttention` (its fields also read by key, ``res["scores"]["mean"]``).
    """
    seeds = _validate_common(lm, T, seeds, batch_size)
    check_bootstrap(n_boot, confidence)
    if kind not in SEQUENCE_KINDS:
        raise InputError(f"unknown sequence kind {kind!r}; allowed: {', '.join(SEQUENCE_KINDS)}")
    layout = induction_layout(lm, T)
    queries = torch.arange(layout.offset + 1, layout.length)  # previous token is ordinary
    vals = [pat[:, :, :, queries, queries - 1].mean(dim=-1) for pat in _patterns_for(lm, kind, T, seeds, batch_size)]
    return PreviousTokenAttention(model=lm.name, T=int(T), seeds=seeds, kind=kind,
                                  scores=bootstrap_mean(torch.cat(vals), n_boot=n_boot, confidence=confidence))


def top_heads(scores, k: int = 5) -> list[tuple[int, int, float]]:
    """The ``k`` heads with the highest score, best first.

    Why: ablation experiments and the book need a short list of named heads, ``(block, head)``.

    Args:
        scores: ``[L, H]`` tensor (block, head), or a result of :func:`induction_attention_scores`
            (its ``repeated`` mean is ranked) or of :func:`previous_token_scores` (its ``scores``
            mean), or a :class:`.stats.BootstrapMean` or any dict with a ``mean`` ``[L, H]`` entry.
        k: how many heads (at most ``L * H``).

    Returns:
        ``[(block, head, score), ...]`` of length ``k``.
    """
    if isinstance(scores, InductionAttention):
        scores = scores.repeated
    elif isinstance(scores, PreviousTokenAttention):
        scores = scores.scores
    if isinstance(scores, dict):
        for key in ("repeated", "scores"):
            if key in scores and isinstance(scores[key], (dict, BootstrapMean)):
                scores = scores[key]
                break
        if "mean" not in scores:
            raise InputError(f"dict scores need a 'mean', 'repeated' or 'scores' entry, got keys {sorted(scores)}")
    if isinstance(scores, BootstrapMean):
        scores = scores.mean
    elif isinstance(scores, dict):
        scores = scores["mean"]
    s = torch.as_tensor(scores)
    if s.ndim != 2:
        raise InputError(f"scores must be a [blocks, heads] matrix, got shape {tuple(s.shape)}")
    check_int(k, "k (heads to name, at most blocks x heads)", minimum=1, maximum=s.numel())
    vals, idx = torch.topk(s.flatten().double(), k)
    H = s.shape[1]
    return [(int(i) // H, int(i) % H, float(v)) for v, i in zip(vals, idx)]


#: a head counts as an induction head when it attends along the stripe at least this many times as
#: much on repeated sequences as on their controls (trained induction heads: 5x to several 100x;
#: heads of random-initialised networks and non-induction heads of trained ones: 0.9x to 1.1x)
INDUCTION_HEAD_MIN_RATIO = 2.0


def induction_heads(att: InductionAttention, k: int = 5,
                    min_ratio: float = INDUCTION_HEAD_MIN_RATIO) -> list[tuple[int, int, float, float]]:
    """The induction heads among the ``k`` heads that attend most along the stripe, best first.

    Why a ratio: the top ``k`` heads of a model always exist, induction or not. In a random
    network or a 2-block toy the top 5 include heads whose attention on the stripe is what any
    position gets (about ``1 / position``); counting them as "the induction heads" names blocks
    that do no induction. A head counts only where its attention on the stripe of repeated
    sequences is at least ``min_ratio`` times that on the random sequences (no repeat) of the same result.

    Args:
        att: a result of :func:`induction_attention_scores`.
        k: how many of the top heads by attention on repeats to consider.
        min_ratio: the least ratio of repeated to control attention (> 1).

    Returns:
        ``[(block, head, attention, ratio), ...]``, at most ``k``; empty when no head passes.
    """
    if not isinstance(att, InductionAttention):
        raise InputError(f"att must be a result of induction_attention_scores, got {type(att).__name__}")
    if not (isinstance(min_ratio, (int, float)) and min_ratio > 1):
        raise InputError(f"min_ratio must be a number above 1, got {min_ratio!r}")
    return [(b, h, s, float(att.ratio[b, h])) for b, h, s in top_heads(att, k) if float(att.ratio[b, h]) >= min_ratio]
