"""The result of the response engine: ``chi`` of one sequence, and its ``.npz`` file.

One :class:`ResponseResult` holds what :func:`~residual_response.engine.response` measured
together with the settings that produced it, so that a saved file can be read back and compared
with a model or another result (:meth:`ResponseResult.load`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from ..io import write_bytes_atomic
from ..resultfile import FORMAT_VERSION, renamed

__all__ = ["ResponseResult"]


@dataclass
class ResponseResult:
    """Normalised response of one sequence.

    Attributes:
        chi: ``[n_eps, n_read, n_src, N]`` float64, ``chi[e, i, j, t]`` for strength ``eps[e]``,
            read stream ``read_streams[i]``, source ``sources[j]`` and target ``t``. Averaged over
            ``n_directions`` directions.
        eps: ``[n_eps]`` strengths (``[0.0]``-free; for ``method="jvp"`` a single ``nan``).
        read_streams: streams read (``l`` is the stream entering block ``l``; ``L`` is the last
            block's output before the final norm).
        sources: perturbed positions.
        tokens: ``[N]`` the sequence.
        l0: the perturbed stream.
    """

    chi: np.ndarray
    eps: np.ndarray
    read_streams: list[int]
    sources: list[int]
    tokens: np.ndarray
    l0: int
    n_directions: int
    direction: str
    method: str
    seed: int
    model: str = ""
    dtype: str = ""
    meta: dict = field(default_factory=dict)
    #: how the result was made (see :mod:`.provenance`); ``None`` when not recorded
    provenance: dict | None = None

    #: the ``kind`` tag of the file :meth:`save_npz` writes
    KIND = "response"
    layer = renamed("l0", "layer")
    read_layers = renamed("read_streams", "read_layers")

    def full_matrix(self) -> np.ndarray:
        """``[n_eps, n_read, N, N]`` with rows for unperturbed sources filled with ``nan``."""
        N = len(self.tokens)
        out = np.full(self.chi.shape[:2] + (N, N), np.nan)
        out[:, :, self.sources, :] = self.chi
        return out

    def write_npz(self, fh) -> None:
        """Write the result as an ``.npz`` archive to an open binary file ``fh``."""
        chi = self.full_matrix() if len(self.sources) == len(self.tokens) else self.chi
        np.savez(
            fh,
            chi=chi,
            eps=self.eps,
            read_streams=np.asarray(self.read_streams, dtype=np.int64),
            sources=np.asarray(self.sources, dtype=np.int64),
            tokens=np.asarray(self.tokens, dtype=np.int64),
            l0=np.int64(self.l0),
            n_directions=np.int64(self.n_directions),
            seed=np.int64(self.seed),
            method=np.str_(self.method),
            direction=np.str_(self.direction),
            model=np.str_(self.model),
            dtype=np.str_(self.dtype),
            kind=np.str_(self.KIND),
            format=np.int64(FORMAT_VERSION),
            meta=np.str_(json.dumps(self.meta, allow_nan=False)),
            provenance=np.str_(json.dumps(self.provenance, allow_nan=False)),
        )

    def save_npz(self, path: str | os.PathLike) -> None:
        """Write the result atomically (temp file in the same folder, then rename; see :mod:`.io`)."""
        write_bytes_atomic(path, self.write_npz)

    @classmethod
    def load(cls, path: str | os.PathLike, *, against=None) -> "ResponseResult":
        """Read a file written by :meth:`save_npz` (``residual-response response --out``).

        Why ``against``: a result is often compared with a model or another result; give it
        (a :class:`~residual_response.models.LoadedModel`, a result or a provenance dict) and a
        :class:`~residual_response.provenance.ProvenanceWarning` says when the file was made with
        other weights, model or dtype.

        Raises ``ValueError`` (one sentence) for a file of another kind.
        """
        from ..provenance import warn_if_different
        from ..resultfile import read

        d = read(path, cls.KIND)
        sources = [int(s) for s in d["sources"]]
        chi = d["chi"]  # [n_eps, n_read, N, N] when every position was perturbed, else [n_eps, n_read, n_src, N]
        if len(sources) == len(d["tokens"]):  # written as the full matrix (row = position)
            chi = chi[:, :, sources, :]
        res = cls(
            chi=chi, eps=d["eps"], read_streams=[int(l) for l in d["read_streams"]], sources=sources,
            tokens=d["tokens"], l0=int(d["l0"]), n_directions=int(d["n_directions"]),
            direction=str(d["direction"]), method=str(d["method"]), seed=int(d["seed"]),
            model=str(d["model"]) if "model" in d else "", dtype=str(d["dtype"]) if "dtype" in d else "",
            meta=json.loads(str(d["meta"])) if "meta" in d else {},
            provenance=json.loads(str(d["provenance"])) if "provenance" in d else None,
        )
        if against is not None:
            warn_if_different(res, against, what=os.fspath(path))
        return res
