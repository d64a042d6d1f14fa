"""Checks of the head-level cross-checks: the attention-pattern induction score of one head, and the
mean ablation of one head (both on the cross-checks page).

Build it yourself 5: :func:`check_head_attention_score` calls the student's
``head_induction_attention(lm, tokens, block, head, T)`` and compares it with the library's
:func:`~residual_response.attention.induction_attention_scores` of the same sequence. Build it yourself 6:
:func:`check_mean_ablation` calls ``mean_ablated_streams(lm, tokens, block, head, means)`` and
compares it with the streams the library reads (:func:`~residual_response.streams.clean_streams`)
inside :func:`~residual_response.ablation.ablate_heads` with the same means
(:func:`~residual_response.ablation.head_means`).

The cases: tiny random-initialised models (4 blocks of 4 heads, width 64, float32) of three
architectures, repeated sequences with BOS.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ..ablation import ablate_heads, head_means
from ..attention import attention_patterns, induction_attention_scores
from ..sequences import make_sequence
from ..streams import clean_streams
from .harness import Case, compare_arrays, compare_number, run_check, tiny_model

__all__ = ["ATTENTION_CASES", "ABLATION_CASES", "ATTENTION_RTOL", "ABLATION_TOLERANCE", "check_head_attention_score",
           "check_mean_ablation"]

#: ``(family, T, seed, block, head)`` of build-it 5
ATTENTION_CASES = (("llama", 5, 0, 1, 2), ("llama", 5, 0, 3, 0), ("gpt2", 6, 1, 0, 3), ("gemma3", 4, 2, 2, 1))

#: relative tolerance of build-it 5: a mean of float32 attention weights, summed in another order
ATTENTION_RTOL = 1e-5

#: ``(family, T, seed, block, head)`` of build-it 6
ABLATION_CASES = (("llama", 5, 0, 1, 2), ("gpt2", 5, 1, 2, 0), ("gemma2", 4, 2, 3, 3))

#: ``(rtol, atol relative to the largest stream entry)`` of build-it 6: the same float32 forward pass
ABLATION_TOLERANCE = (1e-5, 1e-5)


def _attention_hints(lm, tokens: torch.Tensor, block: int, head: int, T: int) -> list[Callable]:
    p = attention_patterns(lm, tokens)[block, head].double()  # [N, N] queries x keys
    k = torch.arange(2, T + 1)
    mistakes = [
        (p[k, T + k - 1], "rows of the pattern are queries (the position that attends) and columns keys: "
                          "read pattern[T+k-1, k]"),
        (p[T + k, k], "that is lag T (from T+k to k, the duplicate-token stripe); induction attends from T+k-1 to k"),
        (p[T + k - 2, k - 1], "a_k sits at position k, since BOS is at 0: the query is T+k-1 and the key k"),
        (p[T + torch.arange(1, T + 1) - 1, torch.arange(1, T + 1)], "the stripe runs over k = 2..T (a_1 has no previous token)"),
    ]

    def hint(e, r):
        for values, text in mistakes:
            if np.isclose(r, float(values.mean()), rtol=ATTENTION_RTOL):
                return text
        return None

    return [hint]


def _attention_cases() -> Any:
    for family, T, seed, block, head in ATTENTION_CASES:
        lm = tiny_model(family)
        tokens = make_sequence(lm, "repeated", T, seed=seed)  # [2T + 1]

        def expected(lm=lm, T=T, seed=seed, block=block, head=head):
            return float(induction_attention_scores(lm, T, [seed], n_boot=1).repeated.per_seed[0, block, head])

        def compare(e, r, lm=lm, tokens=tokens, block=block, head=head, T=T):
            return compare_number(e, r, rtol=ATTENTION_RTOL, what="mean attention on the induction stripe",
                                  hints=_attention_hints(lm, tokens, block, head, T))

        yield Case(label=f"{lm.name}, T={T}, seed={seed}, head ({block}, {head})", args=(lm, tokens, block, head, T),
                   model=lm, expected=expected, compare=compare)


def check_head_attention_score(head_induction_attention: Callable) -> bool:
    """Build it yourself 5: the attention-pattern induction score of one head (Olsson et al.).

    Calls ``head_induction_attention(lm, tokens, block, head, T)`` (``tokens`` ``[2T + 1]``, a
    repeated sequence with BOS) on the cases of :data:`ATTENTION_CASES` and compares the number
    with ``induction_attention_scores(lm, T, [seed]).repeated.per_seed[0, block, head]`` to a
    relative tolerance of 1e-5.

    Returns:
        ``True`` if every case agrees; prints one line either way (:mod:`.harness`).
    """
    return run_check("head_induction_attention", head_induction_attention, _attention_cases(),
                     f"matches attention.induction_attention_scores on {len(ATTENTION_CASES)} heads of 3 models "
                     f"(relative tolerance {ATTENTION_RTOL:g})")


def _library_streams(lm, tokens, heads, means, mode: str = "mean") -> np.ndarray:
    with ablate_heads(lm, heads, mode=mode, means=means if mode == "mean" else None):
        return clean_streams(lm, tokens).double().numpy()  # [L + 1, N, d]


def _ablation_hints(lm, tokens, block: int, head: int, means) -> list[Callable]:
    rtol, _ = ABLATION_TOLERANCE

    def same(r, other):
        return np.allclose(r, other, rtol=rtol, atol=rtol * float(np.abs(other).max()))

    def hint(e, r):
        if same(r, _library_streams(lm, tokens, [], means)):
            return ("those are the clean streams: the head's output was not replaced (a forward pre-hook changes the "
                    "projection's input only when it returns the new one)")
        if same(r, _library_streams(lm, tokens, [(block, head)], means, mode="zero")):
            return "you set the head's output to zero; mean ablation puts its mean, means[block, head], in its place"
        for other in range(lm.n_heads):
            if other != head and same(r, _library_streams(lm, tokens, [(block, other)], means)):
                return (f"you replaced head {other}: the projection's input [1, N, H * d_head] holds the heads side by "
                        f"side, head h in columns h * d_head to (h + 1) * d_head")
        return None

    return [hint]


def _ablation_cases() -> Any:
    rtol, scale = ABLATION_TOLERANCE
    for family, T, seed, block, head in ABLATION_CASES:
        lm = tiny_model(family)
        tokens = make_sequence(lm, "repeated", T, seed=seed)
        means = head_means(lm)  # [L, H, d_head], over the library's reference sequences

        def compare(e, r, lm=lm, tokens=tokens, block=block, head=head, means=means):
            return compare_arrays(e, r, rtol=rtol, atol=scale * float(np.abs(e).max()),
                                  what="streams [L + 1, N, d] (as clean_streams returns them)",
                                  axes=("stream l", "position t", "component"),
                                  hints=_ablation_hints(lm, tokens, block, head, means))

        yield Case(label=f"{lm.name}, T={T}, head ({block}, {head})", args=(lm, tokens, block, head, means), model=lm,
                   expected=lambda lm=lm, tokens=tokens, block=block, head=head, means=means:
                   _library_streams(lm, tokens, [(block, head)], means),
                   compare=compare)


def check_mean_ablation(mean_ablated_streams: Callable) -> bool:
    """Build it yourself 6: the mean ablation of one head, by a forward pre-hook on its block's output projection.

    Calls ``mean_ablated_streams(lm, tokens, block, head, means)`` (``means`` ``[L, H, d_head]``
    from :func:`~residual_response.ablation.head_means`) on the cases of :data:`ABLATION_CASES` and
    compares the streams it returns, ``[L + 1, N, d]``, with ``clean_streams(lm, tokens)`` run
    inside ``ablate_heads(lm, [(block, head)], means=means)``, to ``|r - e| <= 1e-5 max|e| + 1e-5 |e|``.

    Returns:
        ``True`` if every case agrees; prints one line either way (:mod:`.harness`).
    """
    rtol, scale = ABLATION_TOLERANCE
    return run_check("mean_ablated_streams", mean_ablated_streams, _ablation_cases(),
                     f"matches ablation.ablate_heads on {len(ABLATION_CASES)} heads of 3 models "
                     f"(tolerance {scale:g} x max|h| + {rtol:g} x |h|)")
