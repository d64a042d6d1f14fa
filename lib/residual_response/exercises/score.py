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
from .harness import Case, as_array, compare_arrays, compare_number, run_check, tiny_model

__all__ = ["SCORE_RTOL", "check_twin_score", "check_bootstrap_score"]

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


def _one_level(parts, n_boot: int, confidence: float, seed: int) -> np.ndarray:
    """``[2, n_layers]`` the interval of a bootstrap that resamples the seeds only (for the hints)."""
    S, _, P = parts[0].shape
    si, _ = two_level_indices(np.random.default_rng(seed), S, P, n_boot)
    boots = resampled_ratio(parts[0], parts[1], si, np.broadcast_to(np.arange(P), (n_boot, S, P)), twin=parts[2:])
    return np.stack(percentile_interval(boots, confidence))


def _bootstrap_cases() -> Any:
    rng = np.random.default_rng(3)
    synthetic = [("random stripes, 4 seeds", tuple(rng.lognormal(size=(4, 3, 5)) for _ in range(4)), 200, 0.95, 1),
                 ("random stripes, 1 seed", tuple(rng.lognormal(size=(1, 2, 6)) for _ in range(4)), 300, 0.9, 2)]
    for label, parts, n_boot, conf, seed in synthetic:
        yield _bootstrap_case(label, parts, n_boot, conf, seed)
    st = _real_stripes()
    keep = [i for i, l in enumerate(st.read_streams) if l > st.l0]  # the kicked stream has no score
    parts = tuple(p[:, keep] for p in st.parts("induction"))
    yield _bootstrap_case(f"random-llama stripes, T={_T_REAL}, 2 seeds", parts, 500, 0.95, 0)


def _bootstrap_case(label: str, parts: tuple, n_boot: int, conf: float, seed: int) -> Case:
    def compare(expected, received):
        if not isinstance(received, (tuple, list)) or len(received) != 3:
            return f"expected a tuple (score, low, high) of arrays [n_layers], received {type(received).__name__}"
        names = ("score", "low end", "high end")
        for name, e, r in zip(names, expected, received):
            problem = compare_arrays(e, r, rtol=SCORE_RTOL, atol=0.0, what=f"the {name} [n_layers]", axes=("layer",))
            if problem:
                return f"{name}: {problem}" + ("" if name == "score" else _interval_hint(received))
        return None

    def _interval_hint(received) -> str:
        got = np.stack([as_array(received[1], "low"), as_array(received[2], "high")])
        if np.allclose(got, _one_level(parts, n_boot, conf, seed), rtol=1e-9, equal_nan=True):
            return "; your interval resamples the seeds only: within each drawn seed, resample the positions too"
        if parts[0].shape[0] == 1 and np.allclose(got[0], got[1]):
            return "; with one seed only the positions can vary: resample them within each drawn seed"
        return ("; draw the seed indices first, then the position indices, from one np.random.default_rng(seed), and "
                "take np.quantile of the replicates, as the docstring says: other draws give another interval")

    kwargs = dict(n_boot=n_boot, confidence=conf, seed=seed)
    return Case(label=f"{label}, n_boot={n_boot}, confidence={conf}", args=parts, kwargs=kwargs, compare=compare,
                expected=lambda: bootstrap_ratio(parts[0], parts[1], twin=parts[2:], **kwargs))


def check_bootstrap_score(bootstrap_twin_score: Callable) -> bool:
    """Build it yourself 4: the two-level bootstrap (seeds, then positions) of the twin-baseline score.

    Calls ``bootstrap_twin_score(rep, ctrl, twin_rep, twin_ctrl, n_boot=..., confidence=...,
    seed=...)`` (each array ``[S, n_layers, P]``) and compares its ``(score, low, high)``, each
    ``[n_layers]``, with :func:`~residual_response.stats.bootstrap_ratio` on the same arrays, to a
    relative tolerance of 1e-9: the docstring of the stub fixes the order of the random draws, so
    the replicates are the library's own.

    Returns:
        ``True`` if every case agrees; prints one line either way (:mod:`.harness`).
    """
    return run_check("bootstrap_twin_score", bootstrap_twin_score, _bootstrap_cases(),
                     f"score and interval match stats.bootstrap_ratio on 3 cases, one seed and several (relative tolerance {SCORE_RTOL:g})")
