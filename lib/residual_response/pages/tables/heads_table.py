"""The cross-checks page's attention heads with their intervals: the top heads by attention on the
induction stripe and by previous-token attention.

Why apart from :func:`.frames.cross_check_tables`: a head's attention score and its ratio over
random sequences are means over the attention sequences, so each gets its bootstrap interval over
those sequences here, and that needs the per-seed scores, not only the means the other tables read.
"""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from ...attention import PreviousTokenAttention, top_heads
from ...checks import InputError, check_int
from ...stats import ratio_of_means
from .text import ci_text

__all__ = ["attention_head_table", "head_ratio_text", "previous_token_text"]

#: above this ratio the random-sequence attention is near 0 and the ratio's digits mean nothing
RATIO_CAP = 100.0


def head_ratio_text(ratio: float, lo: float, hi: float) -> str:
    """A head's ratio of stripe attention on repeats to that on random sequences, with its interval:
    ``"5.1× [3.9, 6.8]"``; where even the interval's lower end is above :data:`RATIO_CAP`, ``"> 100×"``,
    and a point value or upper end above it is written ``"> 100"``."""
    if lo > RATIO_CAP:
        return f"> {RATIO_CAP:.0f}×"
    high = f"> {RATIO_CAP:.0f}" if hi > RATIO_CAP else _num(hi)
    point = f"> {RATIO_CAP:.0f}" if ratio > RATIO_CAP else _num(ratio)  # not "119× [75, > 100]"
    return f"{point}× [{_num(lo)}, {high}]"


def _num(x: float) -> str:
    """Two significant digits, written alike at every size: 0.95, 4.1, 12."""
    return f"{x:.0f}" if x >= 9.95 else f"{x:.1f}" if x >= 0.995 else f"{x:.2f}"


def _head_rows(name: str, att, k: int, n_boot: int) -> list[dict]:
    """One row per head of the ``k`` with the most attention on the stripe (best first)."""
    rows = []
    for b, h, value in top_heads(att, k):
        ratio = ratio_of_means(att.repeated.per_seed[:, b, h].numpy(), att.baseline.per_seed[:, b, h].numpy(),
                               n_boot=n_boot)
        rows.append({"model": name, "head (block, head)": f"({b}, {h})",
                     "attention [95 % CI]": ci_text(value, att.repeated.lo[b, h], att.repeated.hi[b, h]),
                     "÷ random sequences [95 % CI]": head_ratio_text(*ratio)})
    return rows


def attention_head_table(checks: Mapping, *, setting: str, att_setting: str, k: int = 5,
                         n_boot: int = 1000) -> pd.DataFrame:
    """The top-``k`` heads of each model by attention on the induction stripe, one row per head.

    Columns: the head, its attention on the stripe and its ratio over the same entries of random
    sequences, each with a 95 % bootstrap interval over the attention sequences (the ratio's
    replicates resample the repeated and the random sequences by the same seed numbers), and, on
    the model's first row only, the rank agreement of the per-block attention with the response
    score and the setting of both.

    Args:
        checks: model name -> :class:`.studies.CrossCheck` (its ``attention``, ``agreement``, ``n_layers``, ``n_heads``).
        setting, att_setting: the settings of the response runs and of the attention patterns.
    """
    check_int(k, "k", minimum=1)
    if not checks:
        raise InputError("checks is empty: give at least one model's cross-checks")
    rows = []
    for name, c in checks.items():
        heads = _head_rows(name, c.attention, min(k, c.n_layers * c.n_heads), n_boot)
        a = c.agreement
        rho = f"n/a (n = {a.n_layers})" if a.n_layers < 3 else f"{ci_text(a.rho, a.lo, a.hi)} (n = {a.n_layers})"
        for i, row in enumerate(heads):
            row["Spearman over layers [95 % CI]"] = rho if i == 0 else ""
            row["setting"] = f"attention {att_setting}; response {setting}" if i == 0 else ""
        rows += heads
    return pd.DataFrame(rows)


def previous_token_text(prev, k: int = 3) -> str:
    """The ``k`` heads with the most attention to the previous token, each with its 95 % bootstrap
    interval over the sequences: ``"(0, 1): 0.45 [0.40, 0.51], ..."``.

    Args:
        prev: a result of :func:`.attention.previous_token_scores`.
    """
    if not isinstance(prev, PreviousTokenAttention):
        raise InputError(f"prev must be a result of previous_token_scores, got {type(prev).__name__}")
    s = prev.scores
    return ", ".join(f"({b}, {h}): {ci_text(v, s.lo[b, h], s.hi[b, h])}" for b, h, v in top_heads(prev, k))
