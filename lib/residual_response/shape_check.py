"""How often the shape rule of a rise errs at a measured noise: the false-"steps" rate on gradual
rises and the power on rises in steps, by simulation.

Why: the book labels a model's rise "steps", "gradual" or "unresolved" from the paired interval
of the share of the log rise that the two largest blocks make (:func:`.rise.step_shares`,
:func:`.rise.shape_label`). The blocks are picked on the noisy point scores, the largest two of
many noisy adds, which pushes a gradual rise's share up; whether the rule then calls a truly
gradual rise "steps" at the noise of a real measurement is a question the interval alone does
not answer. Here known profiles, gradual ones and ones in steps, get the measured noise of a
model and are labelled by exactly the rule the pages use (the same :func:`.rise.rise_ends`,
:func:`.rise.factor_interval`, :func:`.rise.step_shares` and :func:`.rise.shape_label`).

How a simulated measurement is made (:func:`label_rates`). The measured noise is the set of
paired bootstrap replicates of the log score, centred on the point: ``d_r = log B_r - log S``
``[n_boot, n]``, one row per replicate, so the correlation between streams is kept. One draw
picks a replicate ``j``: its *observed* profile is ``truth + d_j``, and its own bootstrap
replicates are ``observed + d_k`` for every other ``k``. Approximations: (1) the bootstrap
principle: the spread of replicates around the measured point stands for the spread of
measurements around the truth; (2) the noise in log score does not depend on the score, so a
stream gets its measured relative noise whatever the synthetic profile puts there; (3) every
draw reuses the same pool for its replicates, so its interval has the measured width and only
its observed point moves (a real repeat would also change the width); (4) a resample of a few
sequences is itself a coarse picture of the spread between sequences, and can understate it:
``error_scale`` scales the error of each draw (not its replicates) to ask what the rule does if
the real spread is that many times the bootstrap's.
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import numpy as np

from .checks import InputError, check_int
from .rise import factor_interval, rise_ends, shape_label, step_shares
from .stats import percentile_interval

__all__ = ["ERROR_SCALE_CHECK", "FALSE_STEPS_BAR", "LABELS", "SHAPE_CHECK", "gradual_truth", "label_rates", "log_deviations", "measured_noise",
           "shape_error_rates", "step_truth", "summarize_rates", "wilson_interval"]

#: the outcomes of one simulated measurement: the three shapes, and "no rise" when the rise's
#: interval does not clear :data:`.rise.MIN_RISE` (the pages then give no shape)
LABELS = ("steps", "gradual", "unresolved", "no rise")

#: the book's setting of the simulation: draws per profile, the seed of the draws, the widths of
#: the gradual rises (``None``: 4, 6, 8, ... up to the blocks read) and the share the step blocks make
SHAPE_CHECK = {"n_draws": 200, "seed": 0, "ks": None, "step_share": 0.8}

#: the false-"steps" rate on gradual profiles above which a "steps" label needs a caveat
FALSE_STEPS_BAR = 0.05

#: the error scale of the book's sensitivity check: a measurement's error twice the spread its
#: bootstrap of a few sequences shows (``error_scale`` of :func:`label_rates`)
ERROR_SCALE_CHECK = 2.0


def log_deviations(score: Sequence[float], boots: np.ndarray) -> np.ndarray:
    """``[n_boot, n]``: the bootstrap replicates ``boots`` ``[n_boot, n]`` of the positive scores
    ``score`` ``[n]`` as deviations of the log score from the point, ``log B - log S``."""
    score = np.asarray(score, dtype=float)
    boots = np.asarray(boots, dtype=float)
    if score.ndim != 1 or boots.ndim != 2 or boots.shape[1] != score.shape[0] or boots.shape[0] < 2:
        raise InputError(f"boots must be [n_boot >= 2, n] for score [n], got score {score.shape} and boots {boots.shape}")
    if not (np.all(np.isfinite(score) & (score > 0)) and np.all(np.isfinite(boots) & (boots > 0))):
        raise InputError("score and boots must be finite and positive (leave out the perturbed stream), got "
                         f"min score {np.nanmin(score)!r}, min replicate {np.nanmin(boots)!r}")
    return np.log(boots) - np.log(score)


def measured_noise(result) -> tuple[list[int], np.ndarray, np.ndarray]:
    """``(streams [n], score [n], boots [n_boot, n])`` of an induction result, after its perturbed stream.

    The replicates are those the result's own rise was computed from: the two-level bootstrap of
    its stripes with the same size, confidence and seed (0) as :func:`.induction.scores_from_stripes`.
    Why from the stripes: the result keeps only the per-stream intervals, which lose the
    correlation between streams that the shares depend on. Streams with a non-positive score or
    replicate are left out, as :func:`.rise.rise_of` leaves them out.
    """
    from .stats import bootstrap_ratio

    st = getattr(result, "stripes", None)
    if st is None:
        raise InputError("result has no stripes (it was loaded from a file); compute it with induction_scores")
    ind = st.parts("induction")
    score, _, _, boots = bootstrap_ratio(ind[0], ind[1], twin=ind[2:] or None, n_boot=result.n_boot,
                                         confidence=result.confidence, seed=0, return_boots=True)
    streams = np.asarray(st.read_streams)
    keep = (streams > st.l0) & np.isfinite(score) & (score > 0) & np.all(np.isfinite(boots) & (boots > 0), axis=0)
    return [int(s) for s in streams[keep]], score[keep], boots[:, keep]


def _blocks(layers: Sequence[int]) -> list[int]:
    """The blocks ``b`` whose both streams ``b`` and ``b + 1`` are in ``layers``."""
    have = set(int(x) for x in layers)
    return [b for b in sorted(have) if b + 1 in have]


def _profile(layers: Sequence[int], adds: dict[int, float]) -> np.ndarray:
    """``[n]`` log score: 0 at the first stream, then the cumulative sum of what each block adds."""
    out, level = [], 0.0
    for i, l in enumerate(layers):
        if i:
            level += adds.get(int(layers[i - 1]), 0.0) if int(layers[i - 1]) == l - 1 else 0.0
        out.append(level)
    return np.asarray(out)


def gradual_truth(layers: Sequence[int], k: int, total: float, centre: float, kind: str = "even") -> np.ndarray:
    """``[n]`` log score over the streams ``layers`` that rises by ``total`` over about ``k`` blocks.

    ``kind="even"``: the ``k`` blocks nearest to ``centre`` (a stream; moved inwards where the
    blocks would pass the ends) each add ``total / k``. ``kind="sigmoid"``: a logistic curve in the
    stream centred at ``centre`` whose 10 % to 90 % span is ``k`` streams, scaled to rise by
    ``total`` from the first stream to the last. Flat elsewhere.
    """
    blocks = _blocks(layers)
    k = check_int(k, "k", minimum=1, maximum=max(1, len(blocks)))
    if not math.isfinite(total) or total <= 0:
        raise InputError(f"total must be a positive log rise, got {total!r}")
    if kind == "even":
        first = min(max(int(np.searchsorted(blocks, round(centre - k / 2))), 0), len(blocks) - k)
        return _profile(layers, {b: total / k for b in blocks[first:first + k]})
    if kind == "sigmoid":
        x = np.asarray(layers, dtype=float)
        c = min(max(float(centre), x[0] + k / 2), x[-1] - k / 2)
        y = 1 / (1 + np.exp(-(x - c) * 2 * math.log(9) / k))
        return total * (y - y[0]) / (y[-1] - y[0])
    raise InputError(f"kind must be 'even' or 'sigmoid', got {kind!r}")


def step_truth(layers: Sequence[int], steps: Sequence[int], total: float, share: float = 0.8) -> np.ndarray:
    """``[n]`` log score that rises by ``total``, the blocks ``steps`` (one or two) making ``share``
    of it in equal parts and the four other blocks nearest to them the rest, in equal parts."""
    blocks = _blocks(layers)
    steps = sorted({int(b) for b in steps})
    if not 1 <= len(steps) <= 2 or any(b not in blocks for b in steps):
        raise InputError(f"steps must be one or two blocks of {blocks}, got {steps!r}")
    if not 0 < share <= 1:
        raise InputError(f"share must lie in (0, 1], got {share!r}")
    if not math.isfinite(total) or total <= 0:
        raise InputError(f"total must be a positive log rise, got {total!r}")
    rest = sorted((b for b in blocks if b not in steps), key=lambda b: min(abs(b - s) for s in steps))[:4]
    adds = {b: share * total / len(steps) for b in steps}
    adds.update({b: (1 - share) * total / len(rest) for b in rest} if rest else {})
    return _profile(layers, adds)


def _label(layers, logs: np.ndarray, blogs: np.ndarray, confidence: float) -> tuple[str, float]:
    """The label of one measured (or simulated) profile, as the pages label it, and its top-2 share."""
    score, boots = np.exp(logs), np.exp(blogs)
    bottom, top = rise_ends(score)
    if top == bottom or not factor_interval(boots, bottom, top, confidence)[2]:
        return "no rise", math.nan
    st = step_shares(layers, score, boots, bottom, top, confidence)
    if st["top2_share_ci"] is None:
        return "no rise", math.nan
    return shape_label(st["top2_share_ci"]), st["top2_share"]


def label_rates(layers: Sequence[int], truth: Sequence[float], deviations: np.ndarray, *, n_draws: int = 200,
                seed: int = 0, confidence: float = 0.95, error_scale: float = 1.0) -> dict:
    """How often the shape rule labels a true log profile each way at the given noise.

    Args:
        layers: ``[n]`` read streams; truth: ``[n]`` true log scores over them;
        deviations: ``[n_boot, n]`` centred log replicates (:func:`log_deviations`), ``n_boot > n_draws``.
        n_draws, seed: the simulated measurements (the module docstring says how one is made).
        error_scale: the error of each draw is ``error_scale`` times a replicate's deviation (its
            replicates keep the measured spread): 1 trusts the bootstrap's spread.

    Returns:
        ``{label: share of draws for each of LABELS, "mean_top2": mean top-2 share over the draws
        that rose, "top2": [n_draws] each draw's top-2 share (``nan`` where it did not rise), "n": n_draws}``.
    """
    truth = np.asarray(truth, dtype=float)
    dev = np.asarray(deviations, dtype=float)
    if truth.ndim != 1 or len(layers) != truth.shape[0] or not np.all(np.isfinite(truth)):
        raise InputError(f"truth must be [n] finite log scores for the {len(layers)} layers, got shape {truth.shape}")
    if dev.ndim != 2 or dev.shape[1] != truth.shape[0] or not np.all(np.isfinite(dev)):
        raise InputError(f"deviations must be finite [n_boot, {truth.shape[0]}], got shape {dev.shape}")
    n_draws = check_int(n_draws, "n_draws", minimum=1, maximum=dev.shape[0] - 1)
    seed = check_int(seed, "seed", minimum=0)
    if isinstance(error_scale, bool) or not isinstance(error_scale, numbers.Real):
        raise TypeError(f"error_scale must be a number, got {type(error_scale).__name__} {error_scale!r}")
    if not (math.isfinite(error_scale) and error_scale > 0):
        raise InputError(f"error_scale must be a positive number, got {error_scale!r}")
    picks = np.random.default_rng(seed).choice(dev.shape[0], size=n_draws, replace=False)
    counts = dict.fromkeys(LABELS, 0)
    shares = []
    for j in picks:
        observed = truth + error_scale * dev[j]
        label, share = _label(layers, observed, observed + np.delete(dev, j, axis=0), confidence)
        counts[label] += 1
        shares.append(share if math.isfinite(share) else math.nan)
    risen = [x for x in shares if math.isfinite(x)]
    return {**{lab: c / n_draws for lab, c in counts.items()}, "mean_top2": float(np.mean(risen)) if risen else math.nan,
            "top2": shares, "n": n_draws}


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson interval of a rate ``k / n``: why not ``k / n`` plus or minus a normal spread, it
    stays inside [0, 1] and does not shrink to a point at 0 draws out of ``n``."""
    from statistics import NormalDist

    n = check_int(n, "n", minimum=1)
    k = check_int(k, "k", minimum=0, maximum=n)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (0.0 if k == 0 else max(0.0, mid - half)), (1.0 if k == n else min(1.0, mid + half))


def _true_top2(layers, truth: np.ndarray) -> float:
    """The top-2 share of a noiseless profile, by :func:`.rise.step_shares` between its own ends."""
    score = np.exp(truth)
    bottom, top = rise_ends(score)
    return step_shares(layers, score, score[None], bottom, top)["top2_share"]


def shape_error_rates(layers: Sequence[int], score: Sequence[float], boots: np.ndarray, *, ks: Sequence[int] | None = None,
                      n_draws: int = 200, seed: int = 0, confidence: float = 0.95, step_share: float = 0.8,
                      error_scale: float = 1.0) -> list[dict]:
    """The shape rule's rates on gradual and step profiles at one model's measured noise.

    The profiles sit where the model's own rise is and rise as much (in log) from its lowest
    stream to its highest: gradual ones over ``k`` blocks (``ks``, default 4, 6, 8, ... up to the
    blocks read), even and sigmoid (:func:`gradual_truth`, centred at the model's half-way
    stream); and step ones (:func:`step_truth`), the model's largest block, and its two largest,
    making ``step_share`` of the rise. Each gets ``n_draws`` simulated measurements
    (:func:`label_rates`, with ``error_scale``).

    Args:
        layers, score, boots: ``[n]``, ``[n]``, ``[n_boot, n]``: the model's streams after the
            perturbed one, its scores and their paired replicates (:func:`measured_noise`).

    Returns:
        one dict per profile: ``profile``, ``k`` (blocks; ``None`` for steps), ``blocks``,
        ``true_top2`` (the noiseless profile's top-2 share), ``truth`` (its label without noise),
        the rate of each of :data:`LABELS`, ``steps_ci`` (Wilson interval), ``mean_top2``, ``n``.
    """
    dev = log_deviations(score, boots)
    layers = [int(x) for x in layers]
    s = np.asarray(score, dtype=float)
    bottom, top = rise_ends(s)
    if top == bottom:
        raise InputError("the measured score does not rise (its largest value is at its first stream): no rise to simulate")
    total = float(np.log(s[top] / s[bottom]))
    logs = np.log(s)
    centre = next(layers[i] for i in range(bottom, top + 1) if logs[i] >= (logs[bottom] + logs[top]) / 2)
    st = step_shares(layers, s, boots, bottom, top, confidence)
    blocks = _blocks(layers)
    ks = list(range(4, len(blocks) + 1, 2)) if ks is None else [check_int(k, "k", minimum=1, maximum=len(blocks)) for k in ks]
    profiles = [(f"gradual, {kind}", k, gradual_truth(layers, k, total, centre, kind)) for k in ks for kind in ("even", "sigmoid")]
    if st["step_block"] is not None:
        two = list(st["top2_blocks"]) if len(st["top2_blocks"]) == 2 else [st["step_block"], _neighbour(blocks, st["step_block"])]
        profiles += [("1 step", None, step_truth(layers, [st["step_block"]], total, step_share)),
                     ("2 steps", None, step_truth(layers, two, total, step_share))]
    rows = []
    for name, k, truth in profiles:
        true_top2 = _true_top2(layers, truth)
        rates = label_rates(layers, truth, dev, n_draws=n_draws, seed=seed, confidence=confidence, error_scale=error_scale)
        rows.append({"profile": name, "k": k, "true_top2": true_top2, "truth": shape_label((true_top2, true_top2)),
                     **rates, "steps_ci": wilson_interval(round(rates["steps"] * n_draws), n_draws, confidence)})
    return rows


def _neighbour(blocks: list[int], b: int) -> int:
    """The block after ``b`` (before it at the end): the second step where a model's rise has one."""
    return b + 1 if b + 1 in blocks else b - 1


def summarize_rates(rows: Sequence[dict]) -> dict:
    """What the rows of :func:`shape_error_rates` say, in the numbers a page quotes.

    Returns ``{"gradual_ks", "false_steps", "false_steps_ci", "false_steps_at", "threshold_steps",
    "threshold_at", "power", "bias", "n"}``: the ``k`` of the profiles that are
    gradual without noise (top-2 share below one half), the largest "steps" rate among them, its
    Wilson interval and its profile; the largest "steps" rate of the gradual profiles that lie at
    or above one half without noise (4 even blocks make exactly one half), and its profile;
    ``{profile: ("steps" rate, its interval)}`` of the step profiles (empty without them); and the
    mean amount by which the observed top-2 share exceeds the true one on gradual profiles (the
    selection bias of picking the blocks on noisy scores), with ``"bias_ci"``: its percentile interval
    over the simulated draws (each replicate resamples the draws, the same ones for every profile,
    and takes the same mean; ``None`` without per-draw shares).
    """
    if not rows:
        raise InputError("rows must be the non-empty output of shape_error_rates, got no rows")
    grad = [r for r in rows if r["k"] is not None and r["truth"] == "gradual"]
    edge = [r for r in rows if r["k"] is not None and r["truth"] != "gradual"]
    steps = [r for r in rows if r["k"] is None]
    worst = max(grad, key=lambda r: r["steps"], default=None)
    worst_edge = max(edge, key=lambda r: r["steps"], default=None)
    bias = [r["mean_top2"] - r["true_top2"] for r in grad if math.isfinite(r["mean_top2"])]
    bias_ci = _bias_interval([r for r in grad if math.isfinite(r["mean_top2"])])
    return {"gradual_ks": sorted({r["k"] for r in grad}),
            "false_steps": None if worst is None else worst["steps"],
            "false_steps_ci": None if worst is None else worst["steps_ci"],
            "false_steps_at": None if worst is None else f"{worst['profile']}, k = {worst['k']}",
            "threshold_steps": None if worst_edge is None else worst_edge["steps"],
            "threshold_at": None if worst_edge is None else f"{worst_edge['profile']}, k = {worst_edge['k']}",
            "power": {r["profile"]: (r["steps"], r["steps_ci"]) for r in steps},
            "bias": float(np.mean(bias)) if bias else None, "bias_ci": bias_ci, "n": rows[0]["n"]}


def _bias_interval(grad: Sequence[dict], n_boot: int = 1000, confidence: float = 0.95, seed: int = 0):
    """The percentile interval of the mean over ``grad`` of (mean observed top-2 share - true one) when
    the draws are resampled (the same draw indices for every profile: they share their noise draws)."""
    if not grad or any("top2" not in r for r in grad):
        return None
    shares = np.array([r["top2"] for r in grad], dtype=float)  # [profiles, draws]
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        pick = shares[:, rng.integers(0, shares.shape[1], shares.shape[1])]
        with np.errstate(all="ignore"):
            means = np.array([np.nanmean(p) if np.isfinite(p).any() else np.nan for p in pick])
        stats.append(np.nanmean(means - np.array([r["true_top2"] for r in grad])))
    low, high = percentile_interval(np.array(stats), confidence, ignore_nan=True)
    return float(low), float(high)
