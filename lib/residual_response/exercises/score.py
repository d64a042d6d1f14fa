"""Checks of the induction score: the twin-baseline score of one stream, and its two-level bootstrap.

Build it yourself 3 (the emergence page): :func:`check_twin_score` calls the student's
``twin_score(chi_rep, chi_twin, T)`` on response matrices of one read stream and compares it with
the library's score (:func:`~residual_response.induction.stripe_entries` and
:func:`~residual_response.stats.bootstrap_ratio`). Build it yourself 4 (the null-calibration page):
:func:`check_bootstrap_score` calls ``bootstrap_twin_score(rep, ctrl, twin_rep, twin_ctrl,
n_boot, confidence, seed)`` and compares score and interval with ``stats.bootstrap_ratio``.

The cases: random positive matrices (where every entry is different, so a wrong index shows) and
the response of a tiny random-initialised Llama (:func:`~residual_response.induction.collect_stripes`,
``T = 5``). Both are pure arithmetic on the same numbers, so the tolerance is tight.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..induction import collect_stripes, stripe_entries
from ..sequences import InductionLayout
from ..stats import bootstrap_ratio, percentile_interval, resampled_ratio, two_level_indices
from .harness import Case, CheckFailed, as_array, compare_arrays, compare_number, run_check, tiny_model

__all__ = ["SCORE_RTOL", "BOOT_N", "BOOT_END_TOL", "check_twin_score", "check_bootstrap_score"]

#: relative tolerance of both checks: the same sums in another order differ by about 1e-15
SCORE_RTOL = 1e-9

_T_REAL = 5


def twin_parts(chi_rep: np.ndarray, chi_twin: np.ndarray, T: int) -> tuple[np.ndarray, ...]:
    """``(rep, ctrl, twin_rep, twin_ctrl)``, each ``[S, 1, P]``: the stripe entries and their right
    neighbours of ``[S, T, N]`` response matrices of one stream (sequences with BOS), by the library."""
    layout = InductionLayout(T=T, offset=1)
    out = []
    for chi in (chi_rep, chi_twin):
        pairs = [stripe_entries(c[None], layout, "twin")[0] for c in np.asarray(chi, dtype=np.float64)]
        out += [np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])]
    return tuple(out)


def _ratio_of_means(parts: tuple[np.ndarray, ...]) -> np.ndarray:
    S, _, P = parts[0].shape
    return resampled_ratio(parts[0], parts[1], np.arange(S)[None], np.broadcast_to(np.arange(P), (1, S, P)),
                           twin=parts[2:])[0]


def _variant(chi_rep, chi_twin, T: int, *, lag: int | None = None, offsets=(1, 2), twin: bool = True,
             mean_of_ratios: bool = False) -> float:
    """The score computed with one of the usual mistakes (for the hints)."""
    lag = T - 1 if lag is None else lag

    def ratio(chi):
        chi = np.asarray(chi, dtype=np.float64)
        ks = [k for k in range(2, T) if any(k + o <= T for o in offsets)]
        stripe = np.stack([chi[:, k - 1, k + lag] for k in ks], axis=-1)  # [S, P]
        base = np.stack([chi[:, [k + o - 1 for o in offsets if k + o <= T], k + lag].mean(axis=1) for k in ks], axis=-1)
        return np.mean(stripe / base) if mean_of_ratios else stripe.mean() / base.mean()

    return float(ratio(chi_rep) / ratio(chi_twin)) if twin else float(ratio(chi_rep))


#: the usual mistakes of a score, each a keyword of :func:`_variant` with its wrong value, and what to say
_SCORE_MISTAKES = [
    ("mean_of_ratios", True, "you averaged the ratios of single entries; the score is a ratio of means "
                             "(mean stripe entry over mean baseline, then the same for the twin)"),
    ("twin", False, "that is the repeated sequence's ratio alone: divide it by the same ratio in the twin"),
    ("offsets", (1,), "the baseline averages both right neighbours, k+1 and k+2 (where they lie in the first copy)"),
    ("offsets", (2,), "the baseline averages both right neighbours, k+1 and k+2 (where they lie in the first copy)"),
    ("lag", "T", "you read the duplicate-token stripe (target T+k); the induction stripe's target is T+k-1"),
]


def _score_hints(chi_rep, chi_twin, T: int) -> list[Callable]:
    """The hint that names the usual mistakes a received score shows: one of them, or two at once
    (a mean of ratios with one neighbour only gives neither number alone)."""
    import itertools

    def close(r, kw):
        kw = {k: (T if v == "T" else v) for k, v in kw.items()}
        return np.isclose(r, _variant(chi_rep, chi_twin, T, **kw), rtol=1e-9)

    def hint(e, r):
        for n in (1, 2):
            for combo in itertools.combinations(_SCORE_MISTAKES, n):
                if len({key for key, _, _ in combo}) < n:  # two values of one keyword
                    continue
                if close(r, {key: value for key, value, _ in combo}):
                    return "; and ".join(text for _, _, text in combo)
        return None

    return [hint]


def _synthetic(S: int, T: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    N = 2 * T + 1
    return rng.lognormal(size=(S, T, N)), rng.lognormal(size=(S, T, N))


def _real_stripes():
    """The stripes and matrices of a tiny random Llama (``T = 5``, seeds 0 and 1)."""
    return collect_stripes(tiny_model("llama"), _T_REAL, [0, 1], keep_matrices=True)


def _score_cases() -> Any:
    for S, T, seed in ((3, 6, 0), (1, 4, 1)):
        chi_rep, chi_twin = _synthetic(S, T, seed)
        yield Case(label=f"random matrices, S={S}, T={T}", args=(chi_rep, chi_twin, T),
                   expected=lambda a=chi_rep, b=chi_twin, T=T: float(_ratio_of_means(twin_parts(a, b, T))[0]),
                   compare=lambda e, r, a=chi_rep, b=chi_twin, T=T: compare_number(
                       e, r, rtol=SCORE_RTOL, what="score", hints=_score_hints(a, b, T)))
    st = _real_stripes()
    i = len(st.read_streams) - 1  # the last stream
    chi_rep, chi_twin = st.matrices["repeated"][:, i], st.matrices["twin"][:, i]  # [S, T, N]
    parts = st.parts("induction")
    yield Case(label=f"random-llama, stream {st.read_streams[i]}, T={_T_REAL}, 2 seeds", args=(chi_rep, chi_twin, _T_REAL),
               expected=lambda: float(bootstrap_ratio(parts[0], parts[1], twin=parts[2:], n_boot=1)[0][i]),
               compare=lambda e, r: compare_number(e, r, rtol=SCORE_RTOL, what="score",
                                                   hints=_score_hints(chi_rep, chi_twin, _T_REAL)))


def check_twin_score(twin_score: Callable) -> bool:
    """Build it yourself 3: the twin-baseline induction score of one stream, from response matrices.

    Calls ``twin_score(chi_rep, chi_twin, T)`` (``chi_rep``, ``chi_twin``: ``[S, T, N]``, one row
    per source of the first copy, every target; sequences with BOS) and compares the number it
    returns with the library's score of the same matrices to a relative tolerance of 1e-9.

    Returns:
        ``True`` if every case agrees; prints one line either way (:mod:`.harness`).
    """
    return run_check("twin_score", twin_score, _score_cases(),
                     f"matches the library's score on random matrices and on a random Llama (relative tolerance {SCORE_RTOL:g})")


#: replicates of every bootstrap case: enough that the interval's ends move by about 1 % of its
#: width from one draw to another, so that any correct order of draws passes
BOOT_N = 10_000

#: how far each end of the student's interval may lie from the library's, as a share of the
#: library's width. Measured on the cases below (tests/unit/test_exercises.py): correct bootstraps
#: with other draws lie within 0.07 (the stripes of the random Llama, 2 seeds and 3 positions),
#: 0.04 on the random stripes; a bootstrap over seeds only or over positions only lies 0.22 or
#: more away from it on the case with several seeds
BOOT_END_TOL = 0.12

#: library draws averaged into the reference interval (its own draw-to-draw noise shrinks by 2)
_REF_DRAWS = 4


def _stripes(S: int, n_layers: int, P: int, seed: int, seed_sd: float, position_sd: float = 0.7) -> tuple[np.ndarray, ...]:
    """Four ``[S, n_layers, P]`` positive arrays: a factor per seed and layer (log-sd ``seed_sd``)
    times one per position (log-sd ``position_sd``); the defaults make both levels of the bootstrap matter."""
    rng = np.random.default_rng(seed)
    return tuple(rng.lognormal(sigma=seed_sd, size=(S, n_layers, 1))
                 * rng.lognormal(sigma=position_sd, size=(S, n_layers, P)) for _ in range(4))


def level_interval(parts, n_boot: int, confidence: float, seed: int, levels: str = "both") -> np.ndarray:
    """``[2, n_layers]`` the percentile interval of the score under a bootstrap over ``levels``:
    ``"both"`` (seeds, then positions within each drawn seed: the library's), ``"seeds"`` (whole
    seeds only) or ``"positions"`` (every seed kept, its positions resampled)."""
    S, _, P = parts[0].shape
    rng = np.random.default_rng(seed)
    si, pi = two_level_indices(rng, S, P, n_boot)
    if levels == "seeds":
        pi = np.broadcast_to(np.arange(P), (n_boot, S, P))
    elif levels == "positions":
        si = np.broadcast_to(np.arange(S), (n_boot, S))
    boots = resampled_ratio(parts[0], parts[1], si, pi, twin=parts[2:])
    return np.stack(percentile_interval(boots, confidence))


def reference_interval(parts, n_boot: int, confidence: float) -> np.ndarray:
    """``[2, n_layers]`` the library's interval, its ends averaged over :data:`_REF_DRAWS` draws."""
    return np.mean([level_interval(parts, n_boot, confidence, 1000 + i) for i in range(_REF_DRAWS)], axis=0)


def _bootstrap_cases() -> list[tuple[str, tuple, float]]:
    """``(label, parts, confidence)``: random stripes of 6 seeds, of 1 seed, and a random Llama's."""
    st = _real_stripes()
    keep = [i for i, l in enumerate(st.read_streams) if l > st.l0]  # the kicked stream has no score
    return [("random stripes, 6 seeds", _stripes(6, 3, 8, 0, 0.1), 0.95),
            ("random stripes, 1 seed", _stripes(1, 2, 10, 2, 0.0), 0.9),
            (f"random-llama stripes, T={_T_REAL}, 2 seeds", tuple(p[:, keep] for p in st.parts("induction")), 0.95)]


def _as_triple(received, n_layers: int) -> tuple[np.ndarray, ...]:
    """``(score, low, high)`` as float arrays ``[n_layers]``, or :class:`CheckFailed`."""
    if not isinstance(received, (tuple, list)) or len(received) != 3:
        raise CheckFailed(f"expected a tuple (score, low, high) of arrays [n_layers], received {type(received).__name__}")
    out = tuple(as_array(r, f"the {name} [n_layers]") for r, name in zip(received, ("score", "low end", "high end")))
    for name, r in zip(("score", "low end", "high end"), out):
        if r.shape != (n_layers,):
            raise CheckFailed(f"expected the {name} of shape ({n_layers},) (one per layer), received shape {r.shape}")
    return out


#: replicates of the calls that test the seed's role and the diagnoses (fewer: a loop over
#: replicates in the student's function stays fast)
_SMALL_N = 500


def _width_ratio(fn: Callable, parts: tuple) -> np.ndarray:
    """``[n_layers]`` the width of ``fn``'s interval over the library's, at :data:`_SMALL_N` replicates."""
    _, low, high = _as_triple(fn(*parts, n_boot=_SMALL_N, confidence=0.9, seed=0), parts[0].shape[1])
    ref = level_interval(parts, _SMALL_N, 0.9, 0)
    return (high - low) / (ref[1] - ref[0])


#: a level is missing when the width is below this share of the library's on the case that needs
#: it; a bootstrap over one level gives 0 (seeds only, one seed) or about 0.2 (positions only,
#: seeds far apart), a correct one about 1 (tests/unit/test_exercises.py)
_MISSING_WIDTH = 0.5


def _diagnose(fn: Callable, got: np.ndarray, ref: np.ndarray) -> str:
    """What an interval ``got`` ``[2, n_layers]`` that is not the library's ``ref`` lacks, found
    on two cases that need one level each: one seed (only the positions vary) and six seeds far
    apart with nearly equal positions (only the seeds vary)."""
    if np.allclose(got[0], got[1]):
        return "the interval has width 0: every replicate must draw its seeds and positions anew"
    if np.all(_width_ratio(fn, _stripes(1, 2, 10, 2, 0.0)) < _MISSING_WIDTH):
        return ("your interval misses the position level (with one seed it is far narrower than the library's): "
                "within each drawn seed, resample the positions too")
    if np.all(_width_ratio(fn, _stripes(6, 2, 8, 3, 1.0, position_sd=0.1)) < _MISSING_WIDTH):
        return ("your interval misses the seed level (with seeds far apart it is far narrower than the library's): "
                "first draw S seeds with replacement, then the positions within each drawn seed")
    ratio = (got[1] - got[0]) / (ref[1] - ref[0])
    return (f"its width is {np.round(ratio, 2).tolist()} times the library's per layer; replicate b takes S seeds "
            "drawn with replacement and, within each, P positions drawn with replacement, the same indices in all "
            "four arrays, and the interval is np.quantile of the replicates at (1 - confidence) / 2 and (1 + confidence) / 2")


def _judge_bootstrap(fn: Callable, parts: tuple, conf: float, received) -> str | None:
    """``None`` when what ``fn`` returned for ``parts`` (seed 0) has every property, else the
    sentence that says what differs; ``fn`` is called again for the seed's properties."""
    n_layers = parts[0].shape[1]
    kw = dict(n_boot=BOOT_N, confidence=conf, seed=0)
    score, low, high = _as_triple(received, n_layers)
    expected = bootstrap_ratio(parts[0], parts[1], twin=parts[2:], n_boot=1)[0]
    problem = compare_arrays(expected, score, rtol=SCORE_RTOL, atol=0.0, what="the score [n_layers]", axes=("layer",))
    if problem:
        return f"score: {problem}"
    if np.any(low > score) or np.any(score > high):
        i = int(np.argmax((low > score) | (score > high)))
        return (f"the interval [{low[i]:.4g}, {high[i]:.4g}] at layer {i} does not contain the score {score[i]:.4g}; "
                "low and high are the quantiles (1 - confidence) / 2 and (1 + confidence) / 2 of the replicates")
    ref, got = reference_interval(parts, BOOT_N, conf), np.stack([low, high])
    off = np.abs(got - ref) / (ref[1] - ref[0])
    if np.max(off) > BOOT_END_TOL:
        end, i = np.unravel_index(int(np.argmax(off)), off.shape)
        return (f"the {('low', 'high')[end]} end at layer {i}: expected {ref[end, i]:.4g} (the library's two-level "
                f"bootstrap, within {BOOT_END_TOL:g} x its width {ref[1, i] - ref[0, i]:.4g}, n_boot={BOOT_N}), received "
                f"{got[end, i]:.4g}; {_diagnose(fn, got, ref)}")
    small = {**kw, "n_boot": _SMALL_N}
    first, again, other = (_as_triple(fn(*parts, **{**small, "seed": seed}), n_layers) for seed in (0, 0, 1))
    if not all(np.array_equal(a, b, equal_nan=True) for a, b in zip(first, again)):
        return ("two calls with the same seed gave different intervals: draw every index from one "
                "np.random.default_rng(seed), not from np.random or a generator made elsewhere")
    if np.array_equal(other[1], first[1]) and np.array_equal(other[2], first[2]):
        return "the interval does not change with seed: draw from np.random.default_rng(seed)"
    return None


def check_bootstrap_score(bootstrap_twin_score: Callable) -> bool:
    """Build it yourself 4: the two-level bootstrap (seeds, then positions) of the twin-baseline score.

    Calls ``bootstrap_twin_score(rep, ctrl, twin_rep, twin_ctrl, n_boot=..., confidence=...,
    seed=...)`` (each array ``[S, n_layers, P]``) on three cases (random stripes of 6 seeds and of
    one, the stripes of a tiny random Llama) and checks properties of its ``(score, low, high)``,
    each ``[n_layers]``, not the draws themselves, so that any order of drawing passes:

    - the score equals the library's to a relative tolerance of 1e-9;
    - the interval contains the score;
    - with ``n_boot`` = :data:`BOOT_N`, each end lies within :data:`BOOT_END_TOL` times the
      width of the library's interval (:func:`~residual_response.stats.bootstrap_ratio`, averaged
      over 4 draws) from the library's end. A bootstrap over one level only (seeds only, or
      positions only) is named, from the width it gives on a case that needs the missing level;
    - the same ``seed`` gives the same interval, another ``seed`` another one.

    Returns:
        ``True`` if every case agrees; prints one line either way (:mod:`.harness`).
    """
    fn = bootstrap_twin_score
    cases = (Case(label=f"{label}, n_boot={BOOT_N}, confidence={conf}", args=parts,
                  kwargs=dict(n_boot=BOOT_N, confidence=conf, seed=0), expected=lambda: None,
                  compare=lambda e, received, parts=parts, conf=conf: _judge_bootstrap(fn, parts, conf, received))
             for label, parts, conf in _bootstrap_cases())
    return run_check("bootstrap_twin_score", fn, cases,
                     f"score to {SCORE_RTOL:g}, interval ends within {BOOT_END_TOL:g} x the library's width "
                     f"(n_boot={BOOT_N}), deterministic per seed, on 3 cases, one seed and several")
