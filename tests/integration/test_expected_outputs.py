"""Stored CLI outputs of the stand-ins at a fixed setting, rerun and compared.

``tests/data/expected/`` holds, per command and model, the arguments (``argv``) and the result
(``scripts/expected_outputs.py`` writes them and says what is kept). The integration tests rerun
each ``argv`` through :func:`residual_response.cli.main` and compare.

Tolerances are set by what another CPU changes, measured by running the same commands under
``scripts/lowest_simd.sh`` (the narrowest vector kernels of torch, numpy, MKL and oneDNN) and
comparing with a native run, then allowing a factor ~4 beyond the largest difference seen:

- ``chi`` (float32 model, finite difference): the rounding of the float32 streams (~6e-8
  relative per operation, grown ~100-1000x over the blocks) is divided by eps. Measured: up to
  1.1e-3 (eps 1e-2) and 7.6e-3 (eps 1e-3) of the largest chi of the same source row. Allowed:
  ``|chi - stored| <= (5e-5 / eps) * max(row)``, and exact zeros (causality) stay exact.
- scores, their intervals and the rise factor (ratios of means of chi at eps 1e-2, bootstrap
  quantiles of them): measured up to 7e-4 relative. Allowed: rtol 3e-3 (the rise factor,
  a ratio of two scores: 6e-3).
- the regime's curve (a mean of chi over the matrix, so the noise averages down): measured up to
  ~2e-7 / eps relative. Allowed: rtol ``max(1e-6 / eps, 1e-4)``; the regime's median chi the
  same at its smallest eps, its ``max_dev`` (a difference of two curve points) twice that, absolute.
  Hence the stored sweep starts at eps 1e-3: at 1e-4 the allowed wiggle would equal the 1 %
  flatness tolerance itself and the regime's bounds could flip.
- integers (layers, emergence layer), strings, ``None``: exact, but only after
  :func:`test_stored_decisions_have_margins` has shown that every stored decision they come
  from (the rise's significance and its crossings) lies farther from its edge than the score
  tolerance can move it. Three are compared with a stated allowance. The regime's bounds: with
  48 read layers some curve point at eps 0.1 (where the non-linear bend begins) sits within the
  curve tolerance of the 1 % flatness edge, so each layer's interval may be any that the stored
  curve allows once every point may move by its tolerance (:func:`regime_allowed`). The rise's
  ``top``/``bottom`` layer may be any layer whose stored score lies within twice the score
  tolerance of the extreme (SmolLM2's top two scores differ by 0.3 %), and the bootstrap interval
  of a layer (``stream_ci``, ``width_ci``: quantiles of per-replicate integer layers, one of which
  may sit on a crossing) may move by one layer.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1] / "data" / "expected"
FILES = sorted(DATA.glob("*.json"))
SCORE_RTOL = 3e-3
CHI_ABS_PER_EPS = 5e-5  # |chi - stored| <= CHI_ABS_PER_EPS / eps * max(row)


def _curve_rtol(eps: float) -> float:
    return max(1e-6 / eps, 1e-4)


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


#: the GGUF stand-ins, de-quantised into the cache on first use (minutes); the random models need nothing
STANDINS = ("smollm2-135m", "gemma3-270m")


def _standin_cached(model: str) -> bool:
    """Whether ``model`` runs without building a cache entry first: its de-quantised entry verifies."""
    from residual_response.models import cache_dir, verify_cache_entry

    return model not in STANDINS or verify_cache_entry(cache_dir() / "models" / model) is None


# --- margins of the stored integer decisions (no model needed) ---------------------------------


def _rise_margins(layers, score, rise) -> list[tuple[str, float]]:
    """Relative distance of each exactly compared rise decision from its edge.

    Scores move by at most SCORE_RTOL; so a log score by ~SCORE_RTOL and a crossing level (a mix
    of two log scores) by as much: a decision is safe when its margin in log exceeds 2 * SCORE_RTOL.
    """
    from residual_response.induction import MIN_RISE

    s = {l: v for l, v in zip(layers, score) if v is not None}
    out = [(f"factor_ci low vs {MIN_RISE}", abs(math.log(rise["factor_ci"][0] / MIN_RISE)))]
    if not rise["emerged"]:
        return out
    lo, hi = math.log(s[rise["bottom"]]), math.log(s[rise["top"]])
    path = [l for l in layers if rise["bottom"] <= l <= rise["top"]]
    for name, f in (("start", 0.1), ("stream", 0.5), ("end", 0.9)):
        level = lo + f * (hi - lo)
        first = rise[name]
        out.append((f"{name}: layer {first} above the {f:.0%} level", math.log(s[first]) - level))
        before = [l for l in path if l < first]
        if before:
            out.append((f"{name}: layers before it below the level", level - max(math.log(s[l]) for l in before)))
    return out


def regime_allowed(eps, curve, tol) -> set[tuple[int, int] | None]:
    """Grid intervals ``(i, j)`` (or ``None``) that the widest flat run may be on another CPU.

    A run ``eps[i..j]`` is *surely* flat when ``max|curve/median - 1|`` plus its possible error
    (twice the largest curve tolerance in the run: a point and the median) stays within ``tol``,
    *possibly* flat when it does minus that error. The widest run (ties: more decades, then
    smaller eps, as :func:`residual_response.regime.widest_flat_interval`) is then a possibly flat
    run at least as wide as every surely flat one.
    """
    c = np.asarray(curve, dtype=float)
    sure, maybe = [], []
    for i in range(len(c)):
        for j in range(i + 1, len(c)):
            seg = c[i:j + 1]
            dev = float(np.max(np.abs(seg / np.median(seg) - 1)))
            err = 2 * max(_curve_rtol(e) for e in eps[i:j + 1])
            key = (j - i, math.log10(eps[j] / eps[i]), -i)
            if dev + err <= tol:
                sure.append(key)
            if dev - err <= tol:
                maybe.append(((i, j), key))
    best = max(sure, default=None)
    allowed = {ij for ij, key in maybe if best is None or key >= best}
    if best is None:
        allowed.add(None)
    return allowed


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_stored_decisions_have_margins(path):
    """The rise's integers can be compared exactly: no decision behind them sits on an edge; the
    stored regimes are among those :func:`regime_allowed` accepts."""
    d = _load(path)["result"]
    if d["kind"] == "induction":
        bad = [(n, m) for n, m in _rise_margins(d["read_streams"], d["score"], d["rise"]) if m <= 2 * SCORE_RTOL]
        assert not bad, bad
    elif d["kind"] == "regime":  # the stored bounds are among those allowed (see regime_allowed)
        for r, curve in zip(d["regimes"], d["curves"]):
            ij = None if r["eps_low"] is None else (d["eps"].index(r["eps_low"]), d["eps"].index(r["eps_high"]))
            assert ij in regime_allowed(d["eps"], curve, d["tol"]), r


def test_stored_files_are_complete_and_small():
    """Four commands x three models, under 200 kB in all, without provenance or an output path."""
    assert sorted(p.stem for p in FILES) == sorted(f"{c}-{m}" for c in ("induction", "regime", "response", "section-map")
                                                   for m in ("gemma3-270m", "random-llama", "smollm2-135m"))
    assert sum(p.stat().st_size for p in FILES) < 200_000
    for p in FILES:
        stored = _load(p)
        assert "provenance" not in stored["result"] and "--out" not in stored["argv"], p.name


# --- the comparison ----------------------------------------------------------------------------


def _compare(got, want, path, rtol, errors, skip=()):
    """Exact for non-floats, ``rtol`` for floats; ``skip`` names keys compared elsewhere."""
    if isinstance(want, dict):
        if set(got) != set(want):
            errors.append(f"{path}: keys {sorted(set(got) ^ set(want))} differ")
            return
        for k in want:
            if k not in skip:
                _compare(got[k], want[k], f"{path}.{k}", rtol, errors, skip)
    elif isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            errors.append(f"{path}: length {len(got) if isinstance(got, list) else got!r} != {len(want)}")
            return
        for i, (g, w) in enumerate(zip(got, want)):
            _compare(g, w, f"{path}[{i}]", rtol, errors, skip)
    elif isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        if not math.isclose(got, want, rel_tol=rtol, abs_tol=0.0):
            errors.append(f"{path}: {got!r} != {want!r} (rtol {rtol:g})")
    elif got != want or type(got) is not type(want):
        errors.append(f"{path}: {got!r} != {want!r} (exact)")


def _compare_rise(got, want, layers, score, errors):
    _compare(got, want, "rise", SCORE_RTOL, errors, skip=("top", "bottom", "stream_ci", "width_ci", "factor",
                                                           "factor_ci", "step_share_ci", "top2_share_ci",
                                                           "from_one_factor", "from_one_ci", "from_one_stream_ci"))
    # bootstrap quantiles of ratios; the rise from 1 is the score at `top`, which may move to a layer within
    # twice the score tolerance (below), so it gets the factor's allowance
    for key in ("factor", "factor_ci", "step_share_ci", "top2_share_ci", "from_one_factor", "from_one_ci"):
        _compare(got[key], want[key], f"rise.{key}", 2 * SCORE_RTOL, errors)
    s = {l: v for l, v in zip(layers, score) if v is not None}
    for key, extreme in (("top", max), ("bottom", min)):
        candidates = [l for l in s if l <= want["top"]] if key == "bottom" else list(s)
        best = s[want[key]]
        near = {l for l in candidates if abs(s[l] / best - 1) <= 2 * SCORE_RTOL}
        if got[key] not in near:
            errors.append(f"rise.{key}: {got[key]} not among the layers {sorted(near)} within {2 * SCORE_RTOL:g}")
    for key in ("stream_ci", "width_ci", "from_one_stream_ci"):
        g, w = got[key], want[key]
        if (g is None) != (w is None) or (w is not None and max(abs(a - b) for a, b in zip(g, w)) > 1):
            errors.append(f"rise.{key}: {g} != {w} (allowance: one layer)")


def _compare_regime(got, want, errors):
    _compare(got, want, "regime", 0.0, errors, skip=("curves", "regimes"))
    for layer, g, w in zip(want["curve_streams"], got["curves"], want["curves"]):
        for e, gv, wv in zip(want["eps"], g, w):
            if not math.isclose(gv, wv, rel_tol=_curve_rtol(e)):
                errors.append(f"curve layer {layer} eps {e:g}: {gv!r} != {wv!r} (rtol {_curve_rtol(e):g})")
    if len(got["regimes"]) != len(want["regimes"]):
        errors.append("regimes: lengths differ")
        return
    eps = want["eps"]
    for g, w, curve in zip(got["regimes"], want["regimes"], want["curves"]):
        _compare(g["stream"], w["stream"], "regimes.stream", 0.0, errors)
        ij = None if g["eps_low"] is None else (eps.index(g["eps_low"]), eps.index(g["eps_high"]))
        allowed = regime_allowed(eps, curve, want["tol"])
        if ij not in allowed:
            errors.append(f"regime stream {w['stream']}: interval {ij} not among {sorted(allowed, key=str)}")
            continue
        if (g["eps_low"], g["eps_high"]) != (w["eps_low"], w["eps_high"]):
            continue  # another allowed interval: its chi and max_dev are not the stored ones
        _compare(g, w, f"regimes[stream {w['stream']}]", 0.0, errors, skip=("chi", "max_dev", "decades"))
        if w["eps_low"] is None:
            continue
        r = _curve_rtol(w["eps_low"])
        if not math.isclose(g["chi"], w["chi"], rel_tol=r):
            errors.append(f"regime chi stream {w['stream']}: {g['chi']!r} != {w['chi']!r} (rtol {r:g})")
        if abs(g["max_dev"] - w["max_dev"]) > 2 * r:
            errors.append(f"regime max_dev stream {w['stream']}: {g['max_dev']!r} != {w['max_dev']!r} (atol {2 * r:g})")
        if not math.isclose(g["decades"], w["decades"], rel_tol=1e-12):
            errors.append(f"regime decades stream {w['stream']}: {g['decades']!r} != {w['decades']!r}")


def _compare_response(got, want, errors):
    _compare(got, want, "response", 0.0, errors, skip=("chi",))
    g, w = np.asarray(got["chi"]), np.asarray(want["chi"])  # [n_eps, n_kept, n_rows, N]
    if g.shape != w.shape:
        errors.append(f"chi: shape {g.shape} != {w.shape}")
        return
    if not np.array_equal(g == 0, w == 0):
        errors.append("chi: the exact zeros (targets before the source) moved")
    for e, eps in enumerate(want["eps"]):
        allowed = CHI_ABS_PER_EPS / eps * np.abs(w[e]).max(axis=-1, keepdims=True)  # [n_kept, n_rows, 1]
        worst = float((np.abs(g[e] - w[e]) / np.where(allowed > 0, allowed, 1)).max())
        if worst > 1:
            errors.append(f"chi at eps {eps:g}: off by {worst:.3g} x the allowed {CHI_ABS_PER_EPS:g}/eps of the row max")


@pytest.mark.integration
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_cli_output_matches_the_stored_one(path, tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    try:
        from expected_outputs import run
    finally:
        sys.path.pop(0)

    stored = _load(path)
    argv, want = stored["argv"], stored["result"]
    model = argv[argv.index("--model") + 1]
    if not _standin_cached(model):
        pytest.skip(f"{model} is not in the cache")
    got = run(argv, tmp_path)
    errors: list[str] = []
    kind = want["kind"]
    if kind == "response":
        _compare_response(got, want, errors)
    elif kind == "regime":
        _compare_regime(got, want, errors)
    elif kind == "induction":
        _compare(got, want, "induction", SCORE_RTOL, errors, skip=("rise",))
        _compare_rise(got["rise"], want["rise"], want["read_streams"], want["score"], errors)
    else:
        _compare(got, want, kind, SCORE_RTOL, errors)
    assert not errors, "\n".join(errors[:20])
