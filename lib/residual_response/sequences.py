"""Token sequences for the induction experiments: repeated random tokens and their controls.

``repeated``: ``[BOS, a_1 .. a_T, a_1 .. a_T]`` with the ``a_k`` uniform over ordinary tokens.
Token ``a_k`` sits at index ``k`` and ``T + k`` (with BOS; without BOS subtract one).
``random``:   ``[BOS, b_1 .. b_2T]``, the control of the same length with no repeat.
``shuffled``: ``[BOS, a_1 .. a_T, pi(a_1 .. a_T)]``, the second copy permuted: same tokens, no
order to copy (a negative control for order-based induction).
``twin``:     ``[BOS, a_1 .. a_T, b_1 .. b_T]``, the repeated sequence of the same seed with its
second copy replaced by fresh tokens: the same first copy, nothing repeated. The induction score
compares each repeated sequence with its twin (:mod:`.induction`), so everything but the repeat
is the same in both.

All sequences are drawn from a ``torch.Generator`` seeded by ``seed`` on the CPU, so a seed gives
the same tokens on every machine and device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .checks import InputError, check_choice, check_int, check_model, check_seed
from .models import LoadedModel

__all__ = ["SEQUENCE_KINDS", "InductionLayout", "make_sequence", "induction_layout", "validate_length", "check_length",
           "spread"]

SEQUENCE_KINDS = ("repeated", "random", "shuffled", "twin")


@dataclass(frozen=True)
class InductionLayout:
    """Where the stripes of a ``2T`` (+BOS) sequence lie.

    Attributes:
        T: length of one copy.
        offset: 1 if the sequence starts with BOS, else 0 (index of ``a_1``).
        induction_sources / induction_targets: ``[T-1]`` pairs ``(k, T+k-1)`` for ``k = 2..T``:
            source is the first ``a_k``, target is the second ``a_{k-1}`` (lag ``T-1``).
        duplicate_sources / duplicate_targets: ``[T]`` pairs ``(k, T+k)`` for ``k = 1..T`` (lag ``T``).
    """

    T: int
    offset: int

    @property
    def length(self) -> int:
        return 2 * self.T + self.offset

    @property
    def induction_sources(self) -> torch.Tensor:
        return torch.arange(2, self.T + 1) - 1 + self.offset

    @property
    def induction_targets(self) -> torch.Tensor:
        return self.induction_sources + self.T - 1

    @property
    def duplicate_sources(self) -> torch.Tensor:
        return torch.arange(1, self.T + 1) - 1 + self.offset

    @property
    def duplicate_targets(self) -> torch.Tensor:
        return self.duplicate_sources + self.T


def induction_layout(lm: LoadedModel, T: int) -> InductionLayout:
    """Where the stripes of ``lm``'s repeated sequences of copy length ``T`` lie (with BOS where it has one)."""
    return InductionLayout(T=int(T), offset=0 if lm.bos_token_id is None else 1)


def check_length(T) -> int:
    """A copy's length ``T``: an int >= 2 (the part of :func:`validate_length` that needs no model)."""
    T = check_int(T, "length T")
    if T < 2:
        raise InputError(f"length T={T} too short; need T >= 2")
    return T


def validate_length(lm: LoadedModel, T: int) -> None:
    """``T`` must be an int >= 2 and ``2T`` (+BOS) must fit the model's context."""
    check_model(lm)
    fits_context(lm, check_length(T))


def fits_context(lm: LoadedModel, T: int) -> int:
    """``T`` (an int >= 2 already) if ``2T`` (+BOS) tokens fit the model's context; one sentence if not."""
    n = 2 * T + (0 if lm.bos_token_id is None else 1)
    if n > lm.max_length:
        raise InputError(
            f"length T={T} gives {n} tokens, beyond the context of {lm.name} ({lm.max_length}); use T <= {(lm.max_length - 1) // 2}"
        )
    return T


def make_sequence(lm: LoadedModel, kind: str, T: int, seed: int = 0) -> torch.Tensor:
    """Draw one sequence.

    Args:
        kind: ``"repeated"``, ``"random"`` (``2T`` tokens, no repeat), ``"shuffled"`` or
            ``"twin"`` (the first copy of ``repeated``, then ``T`` fresh tokens).
        T: length of one copy.
        seed: the same seed gives the same tokens; ``repeated``, ``random`` and ``shuffled`` with one
            seed are drawn from independent streams; ``twin`` shares its first copy with
            ``repeated`` and draws its second half from the ``random`` stream.

    Returns:
        ``[N]`` int64 token ids on the CPU, ``N = 2T + 1`` with BOS, ``2T`` without.
    """
    check_choice(kind, "sequence kind", SEQUENCE_KINDS)
    validate_length(lm, T)
    return _draw(lm, kind, int(T), check_seed(seed))


def _draw(lm: LoadedModel, kind: str, T: int, seed: int) -> torch.Tensor:
    """:func:`make_sequence` of validated arguments (a caller's own validated setting: nothing is checked)."""
    vocab = lm.ordinary_token_ids
    gen = torch.Generator().manual_seed(seed * 1000 + SEQUENCE_KINDS.index(kind))
    if kind == "random":
        body = vocab[torch.randint(len(vocab), (2 * T,), generator=gen)]
    elif kind == "twin":
        first = vocab[torch.randint(len(vocab), (T,), generator=torch.Generator().manual_seed(seed * 1000))]
        rest = torch.Generator().manual_seed(seed * 1000 + SEQUENCE_KINDS.index("random"))
        fresh = vocab[torch.randint(len(vocab), (2 * T,), generator=rest)][T:]
        body = torch.cat([first, fresh])
    else:
        first = vocab[torch.randint(len(vocab), (T,), generator=gen)]
        second = first if kind == "repeated" else first[torch.randperm(T, generator=gen)]
        body = torch.cat([first, second])
    if lm.bos_token_id is not None:
        body = torch.cat([torch.tensor([lm.bos_token_id]), body])
    return body.long()


def spread(lo: int, hi: int, n: int) -> list[int]:
    """``n`` integers evenly spread over ``lo..hi`` (both ends included), without repeats.

    Why: pages show "a few layers spread over the depth" or "a few sources spread over the
    sequence"; rounding ``linspace`` can repeat a value when ``n`` exceeds the range, so the
    result may be shorter than ``n``.
    """
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (lo, hi, n)):
        raise TypeError(f"spread takes integers, got lo={lo!r}, hi={hi!r}, n={n!r}")
    if n < 1 or hi < lo:
        raise InputError(f"spread needs n >= 1 and hi >= lo, got lo={lo}, hi={hi}, n={n}")
    return sorted({int(x) for x in np.linspace(lo, hi, n).round()})
