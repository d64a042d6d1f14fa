"""Descriptive numbers quoted with their intervals: the response-matrix page's stripe ratios
(repeated / twin at the stripe entries) and the emergence page's shuffled-copy range.

Why apart from :func:`.frames.stripe_contrasts`: that one gives the point ratios from the seed
means; a ratio quoted in the text needs its spread too, and that needs the per-seed matrices.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ...stats import bootstrap_ratio
from .text import ci_text, setting_text

__all__ = ["stripe_ratio_intervals", "shuffled_table", "shuffled_cover"]


def stripe_ratio_intervals(matrices: Mapping[str, np.ndarray], read_layers: Sequence[int], layout,
                           layers: Mapping[str, int], *, n_boot: int = 1000, seed: int = 0) -> dict[str, str]:
    """Repeated / twin ratios of the mean chi on the stripes, each with its 95 % bootstrap interval, as text.

    The entries are paired: the same seed and stripe position in the repeated sequence and in
    its twin. The bootstrap resamples seeds, then positions within them
    (:func:`.stats.bootstrap_ratio`); with one seed only the positions are resampled, and the
    interval says nothing about other sequences.

    Args:
        matrices: ``{"repeated"|"twin": [n_seeds, n_read, T, N]}`` (``InductionResult.stripes.matrices``).
        read_layers: ``[n_read]`` streams of the matrices; layout: an
            :class:`~residual_response.sequences.InductionLayout`.
        layers: ``{name: stream}``; each name ``"ind_..."`` or ``"dup_..."`` gives the induction
            or the duplicate stripe at that stream.

    Returns:
        ``{name + "_text": "2.31 [1.90, 2.80]"}``.
    """
    offset = layout.offset  # row j of a matrix is the source at position offset + j
    cells = {"ind": (layout.induction_sources.numpy() - offset, layout.induction_targets.numpy()),
             "dup": (layout.duplicate_sources.numpy() - offset, layout.duplicate_targets.numpy())}
    reads = list(read_layers)
    out = {}
    for name, layer in layers.items():
        rows, tgts = cells[name[:3]]
        i = reads.index(layer)
        rep = np.asarray(matrices["repeated"])[:, i : i + 1, rows, tgts]  # [n_seeds, 1, P]
        twin = np.asarray(matrices["twin"])[:, i : i + 1, rows, tgts]
        r, lo, hi = bootstrap_ratio(rep, twin, n_boot=n_boot, seed=seed)
        out[f"{name}_text"] = ci_text(r[0], lo[0], hi[0])
    return out


def shuffled_table(controls, results: dict) -> pd.DataFrame:
    """Trained models on shuffled second copies (``controls``: a :class:`.crosscheck.NegativeControls`):
    the lowest and highest score over layers and the largest duplicate-token score D, each with
    its own 95 % interval and stream (picked from a noisy profile, so the range is wider than the truth)."""
    def at(res, score, lo, hi, pick):
        i = pick([i for i, l in enumerate(res.read_streams) if l > res.l0 and np.isfinite(score[i])], key=lambda i: score[i])
        return f"{ci_text(score[i], lo[i], hi[i])} (stream {res.read_streams[i]})"
    rows = []
    for m in controls.shuffled_range().index:
        s, r = controls.runs[(m, "shuffled copy")], results[m]
        rows.append({"model": m, "lowest shuffled-copy score": at(s, s.score, s.ci_low, s.ci_high, min),
                     "highest": at(s, s.score, s.ci_low, s.ci_high, max),
                     "largest duplicate score D": at(r, r.duplicate_score, r.duplicate_ci_low, r.duplicate_ci_high, max),
                     "setting": setting_text(r.T, len(s.seeds), r.eps) + f"; D: {len(r.seeds)} seeds"})
    return pd.DataFrame(rows, columns=["model", "lowest shuffled-copy score", "highest", "largest duplicate score D", "setting"])


def shuffled_cover(controls) -> dict[str, tuple[int, int]]:
    """Per trained model of ``controls`` (a :class:`.crosscheck.NegativeControls`): how many of the
    read streams after ``l0`` have a shuffled-copy interval that contains 1, and of how many.

    Why: the range of :func:`shuffled_table` says how far the point scores wander; whether the
    shuffled copy moves the score beyond its noise is what the intervals at every stream say.
    """
    out = {}
    for m in controls.shuffled_range().index:
        s = controls.runs[(m, "shuffled copy")]
        idx = [i for i, l in enumerate(s.read_streams) if l > s.l0 and np.isfinite(s.score[i])]
        out[m] = (sum(s.ci_low[i] <= 1.0 <= s.ci_high[i] for i in idx), len(idx))
    return out
