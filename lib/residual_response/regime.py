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

from .checks import InputError, check_choice, check_number, keyword_alias
from .engine import ResponseResult
from .resultfile import FORMAT_VERSION, read, renamed

__all__ = ["RegimeInterval", "RegimeResult", "widest_flat_interval", "layer_curves", "universal_regime", "log_eps_grid",
           "window_position"]


def log_eps_grid(eps_min: float, eps_max: float, points_per_decade: float) -> np.ndarray:
    """Log-spaced strengths from ``eps_min`` to ``eps_max`` (both included), ``points_per_decade`` a decade.

    Why per decade: the regime's width is measured in decades, so a grid fixed per decade gives
    the same resolution whatever the range. ``[n]`` float64, ``n = round(decades x ppd) + 1``.
    """
    for name, value in (("eps_min", eps_min), ("eps_max", eps_max), ("points_per_decade", points_per_decade)):
        check_number(value, name, positive=True)
    if eps_min >= eps_max:
        raise InputError(f"eps_min ({eps_min!r}) must be below eps_max ({eps_max!r})")
    n = int(round(np.log10(eps_max / eps_min) * points_per_decade)) + 1
    return np.logspace(np.log10(eps_min), np.log10(eps_max), max(n, 2))


@dataclass(frozen=True)
class RegimeInterval:
    """The universal regime of one read stream.

    ``stream`` is the read stream ``l`` (``layer``, its old name, still reads it). ``eps_low``/``eps_high`` are ``None`` when no two neighbouring grid points
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

    layer = renamed("stream", "layer")

    def to_dict(self) -> dict:
        """Plain types, keyed as the written JSON."""
        return {**asdict(self), "decades": self.decades}

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
        raise InputError(f"eps and curve must be 1-D of equal length, got {eps.shape} and {curve.shape}")
    tol = check_number(tol, "tol", positive=True, below=1.0)
    if np.any(np.diff(eps) <= 0):
        raise InputError("eps must be strictly increasing")
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
        raise InputError(f"unknown statistic {statistic!r}; allowed: mean, median")
    return out.T


def universal_regime(result: ResponseResult, tol: float = 0.01, *, statistic: str = "mean") -> list[RegimeInterval]:
    """The regime interval of every read layer of an eps sweep.

    Args:
        result: a :func:`~residual_response.engine.response` result with several eps.
        tol: relative tolerance of the flatness criterion (default 1%).
    """
    _check_result(result)
    check_number(tol, "tol", positive=True, below=1.0)
    if result.method != "finite" or len(result.eps) < 2:
        raise InputError("the regime needs a finite-eps sweep with at least two strengths")
    order = np.argsort(result.eps)
    eps = result.eps[order]
    curves = layer_curves(result, statistic=statistic)[:, order]
    out = []
    for stream, curve in zip(result.read_streams, curves):
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
        regimes: one :class:`RegimeInterval` per read stream after ``l0``.
        curve_streams: ``[n_read]`` read streams of ``curves``.
        curves: ``[n_read, n_eps]`` the summary curve (:func:`layer_curves`) of each read layer,
            the data the regime was found on (kept so that the sweep can be drawn again).
    """

    model: str
    dtype: str
    l0: int
    T: int
    seed: int
    tol: float
    eps: list[float]
    regimes: list[RegimeInterval]
    curve_streams: list[int] = field(default_factory=list)
    curves: list[list[float | None]] = field(default_factory=list)
    sequence: str | None = None
    n_directions: int = 1
    provenance: dict | None = field(default=None, repr=False)

    #: the ``kind`` tag of the file the command line writes
    KIND = "regime"
    layer = renamed("l0", "layer")
    length = renamed("T", "length")
    curve_layers = renamed("curve_streams", "curve_layers")

    @classmethod
    @keyword_alias(length="T")
    def from_response(cls, result: ResponseResult, tol: float = 0.01, *, sequence: str | None = None,
                      T: int | None = None) -> "RegimeResult":
        """Find the regime of a sweep and keep its curves (read layer ``l0`` left out: chi is a delta there)."""
        regimes = universal_regime(result, tol=tol)
        order = np.argsort(result.eps)
        curves = layer_curves(result)[:, order]  # [n_read, n_eps]
        keep = [i for i, l in enumerate(result.read_streams) if l != result.l0]
        return cls(
            model=result.model, dtype=result.dtype, l0=result.l0,
            T=len(result.tokens) if T is None else int(T), seed=result.seed, tol=float(tol),
            eps=[float(e) for e in result.eps[order]], regimes=[r for r in regimes if r.stream != result.l0],
            curve_streams=[result.read_streams[i] for i in keep],
            curves=[[float(v) if math.isfinite(v) else None for v in curves[i]] for i in keep],
            sequence=sequence, n_directions=result.n_directions,
        )

    def to_json_dict(self) -> dict:
        """Plain JSON types (the command line's keys, plus ``kind``, the curves and provenance)."""
        return {"kind": self.KIND, "format": FORMAT_VERSION, "model": self.model, "dtype": self.dtype,
                "l0": self.l0, "T": self.T, "seed": self.seed, "tol": self.tol, "eps": list(self.eps),
                "regimes": [r.to_dict() for r in self.regimes], "sequence": self.sequence,
                "n_directions": self.n_directions, "curve_streams": list(self.curve_streams),
                "curves": [list(c) for c in self.curves], "provenance": self.provenance}

    @classmethod
    def load(cls, path: str | os.PathLike, *, against=None) -> "RegimeResult":
        """Read a file written by ``residual-response regime --out`` (or :meth:`to_json_dict`).

        Give ``against`` (a model, a result or a provenance dict) to be warned when the file was
        made with other weights, model or dtype. Raises ``ValueError`` for another kind of file.
        """
        from .provenance import warn_if_different

        d = read(path, cls.KIND)
        regimes = [RegimeInterval.from_dict(r) for r in d["regimes"]]
        res = cls(model=d["model"], dtype=d["dtype"], l0=int(d["l0"]), T=int(d["T"]),
                  seed=int(d["seed"]), tol=float(d["tol"]), eps=[float(e) for e in d["eps"]], regimes=regimes,
                  curve_streams=[int(l) for l in d.get("curve_streams", [])], curves=d.get("curves", []),
                  sequence=d.get("sequence"), n_directions=int(d.get("n_directions", 1)),
                  provenance=d.get("provenance"))
        if against is not None:
            warn_if_different(res, against, what=os.fspath(path))
        return res


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
