"""The results of :mod:`.induction` and their files: the stripe entries (:class:`StripeData`), the scores
per read stream (:class:`InductionResult`) and the section map (:class:`SectionMap`).

Why apart from the algorithm: a result is read back from its file without running anything, and
the file's fields (format version 2, :mod:`.resultfile`) are defined here once. Names: ``l0`` is
the perturbed stream, ``read_streams`` the streams read, ``T`` a copy's length, ``seeds`` the list
of seeds (:mod:`.streams` for streams and blocks).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from .checks import check_seeds
from .resultfile import FORMAT_VERSION, read, renamed
from .rise import Rise

__all__ = ["StripeData", "InductionResult", "SectionMap"]


def _none_for_nan(value):
    """``None`` for a non-finite float (JSON has no NaN), the value otherwise."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


@dataclass
class StripeData:
    """Stripe entries of chi and their baselines, per seed.

    Attributes:
        read_streams: ``[n_read]`` streams read.
        induction: ``{key: [n_seeds, n_read, P]}`` at the induction stripe (k, T+k-1): ``"repeated"``
            the stripe entries, ``"control"`` their baselines, and with the ``"twin"`` baseline
            also ``"twin"`` and ``"twin_control"``, the same entries and baselines of the twins.
        duplicate: the same at the duplicate stripe (k, T+k).
        matrices: optional full response matrices ``{kind: [n_seeds, n_read, T, N]}`` (sources of
            the first copy), kept when ``keep_matrices=True``.
    """

    T: int
    l0: int
    eps: float
    seeds: list[int]
    read_streams: list[int]
    induction: dict[str, np.ndarray]
    duplicate: dict[str, np.ndarray]
    sources: list[int]
    control_kind: str = "twin"
    matrices: dict[str, np.ndarray] | None = None

    layer = renamed("l0", "layer")
    read_layers = renamed("read_streams", "read_layers")

    def parts(self, stripe: str = "induction") -> tuple[np.ndarray, ...]:
        """``(rep, ctrl)``, or ``(rep, ctrl, twin, twin_ctrl)`` with the twin baseline: the arrays the
        score is a ratio (of ratios) of, in the order :func:`.stats.bootstrap_ratio` takes them."""
        d = {"induction": self.induction, "duplicate": self.duplicate}[stripe]
        keys = ("repeated", "control", "twin", "twin_control") if "twin" in d else ("repeated", "control")
        return tuple(d[k] for k in keys)


@dataclass
class InductionResult:
    """Induction and duplicate-token scores per read stream, with bootstrap CIs.

    ``score[i]`` belongs to ``read_streams[i]`` (``nan`` at ``l0`` itself, where chi is a delta);
    ``rise`` is where the score rises over depth (:class:`~.rise.Rise`) and ``emergence_layer``
    its half-way stream.
    """

    model: str
    T: int
    seeds: list[int]
    l0: int
    eps: float
    method: str
    read_streams: list[int]
    score: list[float]
    ci_low: list[float]
    ci_high: list[float]
    duplicate_score: list[float]
    duplicate_ci_low: list[float]
    duplicate_ci_high: list[float]
    emergence_layer: int | None
    n_directions: int = 1
    control: str = "twin"
    confidence: float = 0.95
    n_boot: int = 1000
    stripes: StripeData | None = field(default=None, repr=False)
    #: number of blocks ``L`` of the model (relative depth is ``stream / n_layers``)
    n_layers: int | None = None
    #: the rise of the score that locates the emergence layer
    rise: Rise | None = None
    #: how the result was made (see :mod:`.provenance`); ``None`` when not recorded
    provenance: dict | None = field(default=None, repr=False)

    #: the ``kind`` tag of the file the command line writes
    KIND = "induction"
    _FLOAT_LISTS = ("score", "ci_low", "ci_high", "duplicate_score", "duplicate_ci_low", "duplicate_ci_high")
    layer = renamed("l0", "layer")
    layers = renamed("read_streams", "layers")
    length = renamed("T", "length")

    def to_json_dict(self) -> dict:
        """Plain JSON types; ``nan`` (stream ``l0`` itself, where chi is a delta) becomes ``None``."""
        d = {f: getattr(self, f) for f in self.__dataclass_fields__ if f not in ("stripes", "rise")}
        d = {k: [_none_for_nan(v) for v in val] if isinstance(val, list) else _none_for_nan(val) for k, val in d.items()}
        d["rise"] = None if self.rise is None else asdict(self.rise)
        return {"kind": self.KIND, "format": FORMAT_VERSION, **d}

    @classmethod
    def load(cls, path: str | os.PathLike, *, against=None) -> "InductionResult":
        """Read a file written by ``residual-response induction --out`` (or :meth:`to_json_dict`).

        ``None`` scores (stream ``l0``) come back as ``nan``; a file of format 1 (the seed
        *count* under ``seeds``, the list under ``seed_list``) reads as well. Give ``against`` (a
        model, a result or a provenance dict) to be warned when the file was made with other
        weights, model or dtype. Raises ``InputError`` for another kind of file.
        """
        from .provenance import warn_if_different

        d = read(path, cls.KIND)
        names = {f for f in cls.__dataclass_fields__ if f not in ("stripes",)}
        kw = {k: v for k, v in d.items() if k in names}
        for key in cls._FLOAT_LISTS:
            kw[key] = [math.nan if v is None else float(v) for v in d[key]]
        kw["seeds"] = check_seeds(d.get("seed_list", d.get("seeds")))
        kw["eps"] = math.nan if d.get("eps") is None else float(d["eps"])
        kw["rise"] = None if d.get("rise") is None else Rise.from_dict(d["rise"])
        res = cls(**kw)
        if against is not None:
            warn_if_different(res, against, what=os.fspath(path))
        return res


@dataclass
class SectionMap:
    """``score(l0, l)``: induction score when perturbing stream ``l0`` and reading stream ``l``.

    ``score``/``ci_low``/``ci_high`` are ``[n_l0, L+1]`` (rows: ``l0s``, columns: ``read_streams``)
    with ``nan`` where ``l <= l0``.
    """

    model: str
    T: int
    seeds: list[int]
    l0s: list[int]
    read_streams: list[int]
    score: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    duplicate_score: np.ndarray
    #: the relative strength of every response of the map (``nan`` for ``method="jvp"``)
    eps: float | None = None
    n_directions: int = 1
    #: how the result was made (see :mod:`.provenance`); ``None`` when not recorded
    provenance: dict | None = field(default=None, repr=False)

    #: the ``kind`` tag of the file the command line writes
    KIND = "section-map"
    _MATRICES = ("score", "ci_low", "ci_high", "duplicate_score")
    length = renamed("T", "length")
    perturb_layers = renamed("l0s", "perturb_layers")
    read_layers = renamed("read_streams", "read_layers")

    def writing_blocks(self, threshold: float | None = None) -> list[int]:
        """The perturbed streams ``l0`` whose *first* read stream ``l0 + 1`` already scores clearly above 1.

        Why: stream ``l0 + 1`` differs from stream ``l0`` only by block ``l0``. If the stripe is
        there already, block ``l0`` itself moves the kicked source to the stripe target: it holds
        an induction mechanism that reads the source stream (the previous-token information it
        keys on is in the clean stream already). The rise of a row (:class:`.rise.Rise`) cannot see
        this block, because the row's largest score sits at its first stream.

        "Clearly": the interval's lower end lies above ``threshold`` (default :data:`.rise.MIN_RISE`,
        the same margin the emergence criterion asks of a rise), not merely above 1, because a
        network without induction can score a few percent off 1 with intervals narrower than that.

        Returns:
            the blocks ``b = l0`` that write a stripe, in increasing order.
        """
        from .rise import MIN_RISE

        threshold = MIN_RISE if threshold is None else float(threshold)
        out = []
        for i, l0 in enumerate(self.l0s):
            if l0 + 1 < self.ci_low.shape[1] and np.isfinite(self.ci_low[i, l0 + 1]) and self.ci_low[i, l0 + 1] > threshold:
                out.append(int(l0))
        return out

    def to_json_dict(self) -> dict:
        def clean(a):
            return [[None if not np.isfinite(v) else float(v) for v in row] for row in np.asarray(a)]

        eps = None if self.eps is None or not math.isfinite(self.eps) else float(self.eps)
        return {"kind": self.KIND, "format": FORMAT_VERSION, "model": self.model, "T": self.T, "seeds": self.seeds,
                "l0s": self.l0s, "read_streams": self.read_streams, "score": clean(self.score),
                "ci_low": clean(self.ci_low), "ci_high": clean(self.ci_high),
                "duplicate_score": clean(self.duplicate_score), "eps": eps, "n_directions": self.n_directions,
                "provenance": self.provenance}

    @classmethod
    def load(cls, path: str | os.PathLike, *, against=None) -> "SectionMap":
        """Read a file written by ``residual-response section-map --out`` (or :meth:`to_json_dict`).

        ``None`` cells (``l <= l0``) come back as ``nan``. Give ``against`` (a model, a result or
        a provenance dict) to be warned when the file was made with other weights, model or
        dtype. Raises ``InputError`` for another kind of file.
        """
        from .provenance import warn_if_different

        d = read(path, cls.KIND)
        mats = {k: np.array([[np.nan if v is None else float(v) for v in row] for row in d[k]], dtype=np.float64)
                for k in cls._MATRICES}  # each [n_l0, L+1]
        res = cls(model=d["model"], T=int(d["T"]), seeds=[int(x) for x in d["seeds"]],
                  l0s=[int(x) for x in d["l0s"]], read_streams=[int(x) for x in d["read_streams"]],
                  eps=None if d.get("eps") is None else float(d["eps"]), n_directions=int(d.get("n_directions", 1)),
                  provenance=d.get("provenance"), **mats)
        if against is not None:
            warn_if_different(res, against, what=os.fspath(path))
        return res
