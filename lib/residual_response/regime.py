"""The universal (scale-invariant) regime: where ``chi`` does not depend on ``eps``.

Below the regime, the dtype's rounding dominates the difference ``h~ - h`` (float32 floor near
1e-6, bfloat16 near 1e-2); above it, the model's non-linearities bend the curve. We report the
regime as the *widest* contiguous interval of the eps grid on which a summary curve stays within
a relative tolerance of its own median over that interval.

The summary curve of a read layer is the mean of ``chi[l, s, t]`` over all pairs ``t >= s`` of
the perturbed sources (a magnitude-weighted summary: entries that are too small to matter cannot
dominate it). A per-entry criterion is available as well: the median over entries of each entry's
relative deviation.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from .checks import check_choice, check_number
from .response import ResponseResult

__all__ = ["RegimeInterval", "RegimeResult", "widest_flat_interval", "layer_curves", "universal_regime", "log_eps_grid"]


def log_eps_grid(eps_min: float, eps_max: float, points_per_decade: float) -> np.ndarray:
    """Log-spaced strengths from ``eps_min`` to ``eps_max`` (both included), ``points_per_decade`` a decade.

    Why per decade: the regime's width is measured in decades, so a grid fixed per decade gives
    the same resolution whatever the range. ``[n]`` float64, ``n = round(decades x ppd) + 1``.
    """
    for name, value in (("eps_min", eps_min), ("eps_max", eps_max), ("points_per_decade", points_per_decade)):
        check_number(value, name, positive=True)
    if eps_min >= eps_max:
        raise ValueError(f"eps_min ({eps_min!r}) must be below eps_max ({eps_max!r})")
    n = int(round(np.log10(eps_max / eps_min) * points_per_decade)) + 1
    return np.logspace(np.log10(eps_min), np.log10(eps_max), max(n, 2))


@dataclass(frozen=True)
class RegimeInterval:
    """The universal regime of one read stream.

    ``stream`` is the read stream ``l`` (``layer`` reads the same value, and is the key of the
    written JSON). ``eps_low``/``eps_high`` are ``None`` when no two neighbouring grid points
    agree within ``tol`` (no regime found). ``chi`` is the median of the curve over the interval.
    """

    stream: int
    eps_low: float | None
    eps_high: float | None
    n_points: int
    chi: float | None
    max_dev: float | None
    tol: float

    @property
    def decades(self) -> float:
        if self.eps_low is None:
            return 0.0
        return float(np.log10(self.eps_high / self.eps_low))

    @property
    def layer(self) -> int:
        """The read stream (the name of the JSON key and of the command line's option)."""
        return self.stream

    def to_dict(self) -> dict:
        """Plain types, keyed as the written JSON (``layer`` for the read stream)."""
        d = asdict(self)
        return {"layer": d.pop("stream"), **d, "decades": self.decades}

    @classmethod
    def from_dict(cls, d: dict) -> "RegimeInterval":
        """The inverse of :meth:`to_dict` (extra keys such as ``decades`` are ignored)."""
        kw = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        kw["stream"] = int(d["stream"] if "stream" in d else d["layer"])
        return cls(**kw)


def widest_flat_interval(eps: np.ndarray, curve: np.ndarray, tol: float) -> tuple[int, int] | None:
    """Indices ``(i, j)`` of the widest run ``eps[i..j]`` with ``|curve/median - 1| <= tol``.

    Args:
        eps: ``[n]`` increasing strengths.
        curve: ``[n]`` positive values (non-finite values break a run).
        tol: relative tolerance, e.g. 0.01.

    Returns:
        ``(i, j)`` with ``j > i`` (at least two points), or ``None``. Ties in the number of
        points go to the interval spanning more decades, then to the smaller eps.
    """
    eps = np.asarray(eps, dtype=np.float64)
    curve = np.asarray(curve, dtype=np.float64)
    if eps.ndim != 1 or eps.shape != curve.shape:
        raise ValueError(f"eps and curve must be 1-D of equal length, got {eps.shape} and {curve.shape}")
    tol = check_number(tol, "tol", positive=True)
    if np.any(np.diff(eps) <= 0):
        raise ValueError("eps must be strictly increasing")
    n = len(eps)
    best, best_key = None, None
    for i in range(n):
        for j in range(i + 1, n):
            seg = curve[i:j + 1]
            if not np.all(np.isfinite(seg)) or np.any(seg <= 0):
                break
            med = np.median(seg)
            if np.max(np.abs(seg / med - 1.0)) <= tol:
                key = (j - i, np.log10(eps[j] / eps[i]), -i)
                if best_key is None or key > best_key:
                    best, best_key = (i, j), key
    return best


def _check_result(result) -> None:
    if not isinstance(result, ResponseResult):
        raise TypeError(f"result must be a ResponseResult (from response()), got {type(result).__name__}")


def layer_curves(result: ResponseResult, *, statistic: str = "mean") -> np.ndarray:
    """Summary curve per read layer: ``[n_read, n_eps]``.

    ``statistic="mean"``: mean of chi over pairs ``t >= s``. ``"median"``: median over pairs.
    The diagonal read layer ``l0`` is exactly 1 at ``t = s`` and 0 elsewhere, whatever eps.
    """
    _check_result(result)
    check_choice(statistic, "statistic", ("mean", "median"))
    chi = result.chi  # [n_eps, n_read, n_src, N]
    src = np.asarray(result.sources)
    N = chi.shape[-1]
    mask = np.arange(N)[None, :] >= src[:, None]  # [n_src, N]
    vals = chi[..., mask]  # [n_eps, n_read, n_pairs]
    if statistic == "mean":
        out = vals.mean(axis=-1)
    elif statistic == "median":
        out = np.median(vals, axis=-1)
    else:
        raise ValueError(f"unknown statistic {statistic!r}; allowed: mean, median")
    return out.T


def universal_regime(result: ResponseResult, tol: float = 0.01, *, statistic: str = "mean") -> list[RegimeInterval]:
    """The regime interval of every read layer of an eps sweep.

    Args:
        result: a :func:`~residual_response.response.response` result with several eps.
        tol: relative tolerance of the flatness criterion (default 1%).
    """
    _check_result(result)
    check_number(tol, "tol", positive=True, below=1.0)
    if result.method != "finite" or len(result.eps) < 2:
        raise ValueError("the regime needs a finite-eps sweep with at least two strengths")
    order = np.argsort(result.eps)
    eps = result.eps[order]
    curves = layer_curves(result, statistic=statistic)[:, order]
    out = []
    for stream, curve in zip(result.read_layers, curves):
        iv = widest_flat_interval(eps, curve, tol)
        if iv is None:
            out.append(RegimeInterval(stream, None, None, 0, None, None, tol))
            continue
        i, j = iv
        seg = curve[i:j + 1]
        med = float(np.median(seg))
        out.append(RegimeInterval(stream, float(eps[i]), float(eps[j]), j - i + 1, med,
                                  float(np.max(np.abs(seg / med - 1))), tol))
    return out


@dataclass
class RegimeResult:
    """An eps sweep and its universal regime per read layer: what ``residual-response regime`` writes.

    Attributes:
        eps: ``[n_eps]`` the strengths of the sweep, increasing.
        regimes: one :class:`RegimeInterval` per read layer after ``layer``.
        curve_layers: ``[n_read]`` read layers of ``curves``.
        curves: ``[n_read, n_eps]`` the summary curve (:func:`layer_curves`) of each read layer,
            the data the regime was found on (kept so that the sweep can be drawn again).
    """

    model: str
    dtype: str
    layer: int
    length: int
    seed: int
    tol: float
    eps: list[float]
    regimes: list[RegimeInterval]
    curve_layers: list[int] = field(default_factory=list)
    curves: list[list[float | None]] = field(default_factory=list)
    sequence: str | None = None
    n_directions: int = 1
    provenance: dict | None = field(default=None, repr=False)

    #: the ``kind`` tag of the file the command line writes
    KIND = "regime"

    @classmethod
    def from_response(cls, result: ResponseResult, tol: float = 0.01, *, sequence: str | None = None,
                      length: int | None = None) -> "RegimeResult":
        """Find the regime of a sweep and keep its curves (read layer ``l0`` left out: chi is a delta there)."""
        regimes = universal_regime(result, tol=tol)
        order = np.argsort(result.eps)
        curves = layer_curves(result)[:, order]  # [n_read, n_eps]
        keep = [i for i, l in enumerate(result.read_layers) if l != result.layer]
        return cls(
            model=result.model, dtype=result.dtype, layer=result.layer,
            length=len(result.tokens) if length is None else int(length), seed=result.seed, tol=float(tol),
            eps=[float(e) for e in result.eps[order]], regimes=[r for r in regimes if r.stream != result.layer],
            curve_layers=[result.read_layers[i] for i in keep],
            curves=[[float(v) if math.isfinite(v) else None for v in curves[i]] for i in keep],
            sequence=sequence, n_directions=result.n_directions,
        )

    def to_json_dict(self) -> dict:
        """Plain JSON types (the command line's keys, plus ``kind``, the curves and provenance)."""
        return {"kind": self.KIND, "model": self.model, "dtype": self.dtype, "layer": self.layer,
                "length": self.length, "seed": self.seed, "tol": self.tol, "eps": list(self.eps),
                "regimes": [r.to_dict() for r in self.regimes], "sequence": self.sequence,
                "n_directions": self.n_directions, "curve_layers": list(self.curve_layers),
                "curves": [list(c) for c in self.curves], "provenance": self.provenance}

    @classmethod
    def load(cls, path: str | os.PathLike, *, against=None) -> "RegimeResult":
        """Read a file written by ``residual-response regime --out`` (or :meth:`to_json_dict`).

        Give ``against`` (a model, a result or a provenance dict) to be warned when the file was
        made with other weights, model or dtype. Raises ``ValueError`` for another kind of file.
        """
        from .provenance import warn_if_different
        from .resultfile import read

        d = read(path, cls.KIND)
        regimes = [RegimeInterval.from_dict(r) for r in d["regimes"]]
        res = cls(model=d["model"], dtype=d["dtype"], layer=int(d["layer"]), length=int(d["length"]),
                  seed=int(d["seed"]), tol=float(d["tol"]), eps=[float(e) for e in d["eps"]], regimes=regimes,
                  curve_layers=[int(l) for l in d.get("curve_layers", [])], curves=d.get("curves", []),
                  sequence=d.get("sequence"), n_directions=int(d.get("n_directions", 1)),
                  provenance=d.get("provenance"))
        if against is not None:
            warn_if_different(res, against, what=os.fspath(path))
        return res


# --------------------------------------------------------------------------------------------
# The regime as the book's pages show it: curves and regimes as tables, each read layer beside
# its exact linear response (JVP), where a strength lies in the window, and one sweep over
# several models and number formats.
# --------------------------------------------------------------------------------------------

import pandas as pd  # noqa: E402

__all__ += ["curve_frame", "jvp_by_layer", "regime_frame", "window_position", "common_windows", "RegimeSweep",
            "sweep_models"]


def curve_frame(result: ResponseResult, layers=None) -> pd.DataFrame:
    """The summary curves (:func:`layer_curves`) of a sweep as rows ``(layer, eps, chi)``.

    ``layers``: the read layers to keep (default all), so a figure can show a few of many.
    """
    rows = [(l, e, c) for l, curve in zip(result.read_layers, layer_curves(result))
            if layers is None or l in layers for e, c in zip(result.eps, curve)]
    return pd.DataFrame(rows, columns=["layer", "eps", "chi"])


def jvp_by_layer(jvp: ResponseResult) -> dict[int, float]:
    """``{read layer: summary chi}`` of a ``method="jvp"`` result: the plateau the regime must reach."""
    _check_result(jvp)
    if jvp.method != "jvp":
        raise ValueError(f"jvp_by_layer takes a method='jvp' result, got method={jvp.method!r}")
    return {int(l): float(v) for l, v in zip(jvp.read_layers, layer_curves(jvp)[:, 0])}


def regime_frame(sweep: ResponseResult, jvp_chi: dict[int, float], tol: float = 0.01) -> pd.DataFrame:
    """The regime of every read layer after the perturbed one, beside its JVP.

    Columns ``layer, eps_low, eps_high, n_points, chi, max_dev, tol, decades, chi_jvp,
    rel_diff`` (``chi / chi_jvp - 1``; NaN where no regime was found). Why beside the JVP: the
    plateau *is* the linear response, and ``rel_diff`` is how the book checks it.
    """
    rows = [iv.to_dict() for iv in universal_regime(sweep, tol=tol) if iv.layer > sweep.layer]
    df = pd.DataFrame(rows, columns=[*RegimeInterval.__dataclass_fields__, "decades"])
    df["chi_jvp"] = df.layer.map(jvp_chi)
    df["rel_diff"] = df.chi.astype(float) / df.chi_jvp - 1
    return df


def window_position(eps: float, low: float, high: float) -> str:
    """Where a strength lies in a regime window ``[low, high]``.

    One of ``"at the upper end"`` (within 0.1 % of ``high``, where the bend begins),
    ``"inside"``, ``"above"``, ``"below"``, or ``"none"`` (no window: ``low``/``high`` NaN).
    """
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return "none"
    if np.isclose(eps, high, rtol=1e-3):
        return "at the upper end"
    if low <= eps <= high:
        return "inside"
    return "above" if eps > high else "below"


def common_windows(table: pd.DataFrame, eps: float) -> pd.DataFrame:
    """Per model (and number format): the window common to its read layers, and where ``eps`` lies.

    ``table``: rows of :func:`regime_frame` with a ``model`` column (and optionally
    ``dtype``). Columns ``model[, dtype], low, high, position`` (:func:`window_position`).
    """
    keys = [k for k in ("model", "dtype") if k in table.columns]
    out = table.groupby(keys, sort=False).agg(low=("eps_low", "max"), high=("eps_high", "min")).reset_index()
    out["position"] = [window_position(eps, lo, hi) for lo, hi in zip(out.low, out.high)]
    return out


@dataclass
class RegimeSweep:
    """An eps sweep of several models at a few read layers each, with their JVPs.

    Attributes:
        curves: rows ``(model, dtype, layer, eps, chi, chi_over_jvp)`` with ``chi > 0`` (a log
            axis cannot show an exact zero; ``n_zero`` counts those left out).
        table: :func:`regime_frame` rows with ``model`` and ``dtype`` in front.
        jvp: ``{(model, layer): chi_jvp}``.
        n_layers: ``{model: L}``.
        seconds: ``{(model, dtype): wall seconds of the sweep}``.
    """

    curves: pd.DataFrame
    table: pd.DataFrame
    jvp: dict
    n_layers: dict
    seconds: dict
    n_zero: int


def sweep_models(lms: dict, *, T: int, eps_grid, n_sources: int, n_layers_shown: int, seed: int = 0,
                 tol: float = 0.01, float64_models=(), device: str = "cpu") -> RegimeSweep:
    """Sweep eps on one repeated sequence per model, at ``n_layers_shown`` layers spread over 1..L.

    ``lms``: ``{name: float32 LoadedModel}``; the models in ``float64_models`` are loaded again
    in float64 and swept on the same tokens, sources and directions, so the two formats differ
    only in their rounding. The JVP (float32) of each layer is the reference of both.
    """
    import time

    from .models import load_model
    from .response import response
    from .sequences import make_sequence
    from .tables import spread

    curves, tables, jvp_chi, seconds = [], [], {}, {}
    for name, lm32 in lms.items():
        tokens = make_sequence(lm32, "repeated", T, seed)
        kw = dict(layer=0, read_layers=spread(1, lm32.n_layers, n_layers_shown),
                  sources=spread(1, len(tokens) - 2, n_sources), seed=seed)  # BOS and the last token excluded
        jvp = jvp_by_layer(response(lm32, tokens, method="jvp", **kw))
        jvp_chi.update({(name, l): v for l, v in jvp.items()})
        for dtype in ["float32", "float64"] if name in float64_models else ["float32"]:
            lm = lm32 if dtype == "float32" else load_model(name, device=device, dtype=dtype)
            start = time.perf_counter()
            res = response(lm, tokens, eps_grid, **kw)
            seconds[name, dtype] = time.perf_counter() - start
            curves.append(curve_frame(res).assign(model=name, dtype=dtype))
            tables.append(regime_frame(res, jvp, tol).assign(model=name, dtype=dtype))
    curve_df = pd.concat(curves, ignore_index=True)[["model", "dtype", "layer", "eps", "chi"]]
    n_zero = int((curve_df.chi == 0).sum())
    curve_df = curve_df[curve_df.chi > 0].copy()
    curve_df["chi_over_jvp"] = [c / jvp_chi[m, l] for m, l, c in zip(curve_df.model, curve_df.layer, curve_df.chi)]
    table = pd.concat(tables, ignore_index=True)
    table = table[["model", "dtype", *[c for c in table.columns if c not in ("model", "dtype")]]]
    return RegimeSweep(curve_df, table, jvp_chi, {m: lm.n_layers for m, lm in lms.items()}, seconds, n_zero)
