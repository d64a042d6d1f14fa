"""What the bench times: one function per scenario, each returning the measurements of one repeat.

Every scenario takes a :class:`BenchInput` (the model, the sequence, its directions, the clock
and the memory log) and returns a small typed result; :mod:`.record` turns the repeats into the
stored record (medians, ratios, verdicts).

* :func:`one_tensor`: naive loop, engine and floor for one response tensor at ``l0 = 0``, in a
  rotating order (the headline numbers); the floor's candidate schedules are
  :func:`floor_schedules`.
* :func:`time_section_map`: engine and floor at every ``l0``, the naive loop at a few. Its times per
  ``l0`` are also the growth with the number of blocks run (``L - l0``): no separate run.
* :func:`growth_in_length`: the one-tensor times at another sequence length.

Within a scenario the measurements are interleaved, so that a change of load on a shared machine
hits all of them alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..models import LoadedModel
from ..perturbation import perturbation_directions
from ..engine import ResponseResult, response, reuse_clean_passes
from ..sequences import make_sequence
from .clock import Clock, MemoryLog
from .floor import _schedule, _timed_clean, floor_passes, naive_response

__all__ = [
    "FLOOR_SCHEDULES",
    "BenchInput",
    "FloorTimes",
    "OneTensor",
    "SectionMapRun",
    "LengthPoint",
    "naive_loop",
    "engine",
    "floor_schedules",
    "one_tensor",
    "time_section_map",
    "growth_in_length",
    "row_positions",
    "rel_diff",
]

#: Floor schedules timed by default ('exact' and 'chunk-<b>' on request: they never won on our CPU,
#: and 'exact', one pass per source, costs about as much as the naive loop).
FLOOR_SCHEDULES = ("planned", "packed")

Say = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


@dataclass(frozen=True, eq=False)
class BenchInput:
    """What every scenario measures on: the repeated sequence of the induction pages and one
    Gaussian direction per source.

    ``tokens``: ``[N]`` token ids (``N = 2T + 1``); ``directions``: ``[N, d]`` unit directions,
    one per source, the same the engine draws from ``seed``.
    """

    lm: LoadedModel
    T: int
    tokens: torch.Tensor  # [N]
    directions: torch.Tensor  # [N, d]
    eps: float
    seed: int
    clock: Clock
    memory: MemoryLog

    @classmethod
    def prepare(cls, lm: LoadedModel, T: int, eps: float, seed: int, clock: Clock, memory: MemoryLog) -> BenchInput:
        tokens = make_sequence(lm, "repeated", int(T), seed=seed)  # [N]
        N = int(tokens.shape[0])
        dirs = perturbation_directions(lm, tokens, torch.arange(N), 1, "gaussian", seed)[:, 0]  # [N, d]
        return cls(lm, int(T), tokens, dirs, eps, seed, clock, memory)

    def at_length(self, T: int) -> BenchInput:
        """The same bench on the repeated sequence of copy length ``T``."""
        if int(T) == self.T:
            return self
        return BenchInput.prepare(self.lm, T, self.eps, self.seed, self.clock, self.memory)

    @property
    def N(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def sources(self) -> list[int]:
        return list(range(self.N))


def rel_diff(a: np.ndarray, ref: np.ndarray) -> float:
    """Largest absolute difference of ``a`` and ``ref`` relative to the largest ``|ref|``."""
    return float(np.abs(a - ref).max() / np.abs(ref).max())


def naive_loop(b: BenchInput, l0: int) -> tuple[np.ndarray, float]:
    """``chi`` of the naive loop (:func:`~.floor.naive_response`, ``[L + 1 - l0, N, N]``) and its seconds."""
    return b.clock.time(lambda: naive_response(b.lm, b.tokens, b.eps, l0, b.directions))


def engine(b: BenchInput, l0: int) -> tuple[ResponseResult, float]:
    """The engine's response at ``l0`` (every source, one direction, one eps) and its seconds."""
    return b.clock.time(lambda: response(b.lm, b.tokens, [b.eps], l0=l0, n_directions=1, seed=b.seed))


@dataclass
class FloorTimes:
    """The floor at ``l0 = 0`` in one repeat: its timed clean pass and each schedule's perturbed passes (s)."""

    clean_s: float
    schedules_s: dict[str, float]

    @property
    def best(self) -> str:
        """The fastest schedule."""
        return min(self.schedules_s, key=self.schedules_s.get)

    @property
    def total_s(self) -> float:
        """The floor: the clean pass + the fastest schedule's passes."""
        return self.clean_s + self.schedules_s[self.best]


def floor_schedules(b: BenchInput, names: Sequence[str]) -> FloorTimes:
    """Time the floor's clean pass and the perturbed passes of every schedule in ``names`` at ``l0 = 0``."""
    clean, t_clean = _timed_clean(b.lm, b.tokens, b.clock)
    times = {name: floor_passes(b.lm, b.tokens, clean, 0, _schedule(name, b.sources, b.N, b.lm), b.eps,
                                b.directions, packed=name == "packed", clock=b.clock)
             for name in names}
    return FloorTimes(t_clean, times)


@dataclass
class OneTensor:
    """One repeat of the headline comparison: one response tensor at ``l0 = 0`` three ways."""

    naive_s: float
    engine_s: float
    floor: FloorTimes
    max_rel_diff: float  # engine's chi against the naive loop's
    engine_meta: dict

    @property
    def floor_s(self) -> float:
        return self.floor.total_s


def one_tensor(b: BenchInput, schedules: Sequence[str], rotate: int = 0, say: Say = _quiet) -> OneTensor:
    """Naive loop, engine and floor (:func:`floor_schedules`) at ``l0 = 0``, in the order
    naive, engine, floor rotated by ``rotate`` (the repeat's index: each method goes first in turn)."""
    steps = ["naive", "engine", "floor"]
    steps = steps[rotate % 3:] + steps[:rotate % 3]
    for step in steps:
        with b.memory.track(step):
            if step == "naive":
                chi_naive, t_naive = naive_loop(b, 0)
                say(f"naive {t_naive:.2f} s")
            elif step == "engine":
                res, t_engine = engine(b, 0)
                say(f"engine {t_engine:.2f} s ({res.meta['n_batches']} batches)")
            else:
                floor = floor_schedules(b, schedules)
                say(f"floor clean {floor.clean_s:.2f} s + "
                    + ", ".join(f"{k} {v:.2f} s" for k, v in floor.schedules_s.items()))
    return OneTensor(t_naive, t_engine, floor, rel_diff(res.chi[0], chi_naive), res.meta)


@dataclass
class SectionMapRun:
    """One repeat of the section map: engine and floor at every ``l0``, the naive loop at a few."""

    schedule: str  # the floor schedule (the fastest at l0 = 0 in the same repeat)
    floor_clean_s: float
    engine_s_by_l0: list[float]  # [L]
    floor_s_by_l0: list[float]  # [L], perturbed passes only
    naive_s_by_l0: dict[int, float]  # the measured l0 (0: the one-tensor time of the same repeat)
    rel_diffs: list[float]  # engine against naive at the measured l0 > 0

    @property
    def engine_s(self) -> float:
        return sum(self.engine_s_by_l0)

    @property
    def floor_s(self) -> float:
        """One clean pass for all ``l0`` + every ``l0``'s perturbed passes."""
        return sum(self.floor_s_by_l0, self.floor_clean_s)

    @property
    def naive_extrapolated_s(self) -> float:
        """``L`` x the mean naive time of the measured ``l0`` (the naive loop's cost does not depend on ``l0``)."""
        return len(self.engine_s_by_l0) * float(np.mean([self.naive_s_by_l0[l0] for l0 in sorted(self.naive_s_by_l0)]))


def time_section_map(b: BenchInput, schedule: str, naive_l0: Sequence[int], naive_at_0: float, rotate: int = 0,
                say: Say = _quiet) -> SectionMapRun:
    """Engine and floor (schedule ``schedule``) at every ``l0 = 0..L-1``, the naive loop at ``naive_l0``.

    The engine runs inside ``reuse_clean_passes()`` (its first call computes the clean pass for
    all ``l0``), the floor from one timed clean pass. Engine and floor alternate which goes first
    (``rotate`` shifts the pattern between repeats). ``naive_at_0`` is the naive time at ``l0 = 0``
    measured by :func:`one_tensor` in the same repeat.
    """
    L = b.lm.n_layers
    batches = _schedule(schedule, b.sources, b.N, b.lm)
    with b.memory.track("section_floor"):
        clean, t_clean = _timed_clean(b.lm, b.tokens, b.clock)
    eng, flo, naive, diffs = [0.0] * L, [0.0] * L, {0: naive_at_0}, []
    with reuse_clean_passes():
        for l0 in range(L):
            order = ("engine", "floor") if (l0 + rotate) % 2 == 0 else ("floor", "engine")
            for step in order:
                if step == "engine":
                    with b.memory.track("section_engine"):
                        res, eng[l0] = engine(b, l0)
                else:
                    with b.memory.track("section_floor"):
                        flo[l0] = floor_passes(b.lm, b.tokens, clean, l0, batches, b.eps, b.directions,
                                               packed=schedule == "packed", clock=b.clock)
            if l0 in naive_l0 and l0 != 0:
                with b.memory.track("naive"):
                    chi_n, naive[l0] = naive_loop(b, l0)
                diffs.append(rel_diff(res.chi[0], chi_n))
    run = SectionMapRun(schedule, t_clean, eng, flo, naive, diffs)
    say(f"section map engine {run.engine_s:.1f} s, floor {run.floor_s:.1f} s ({schedule}), "
        f"naive (extrapolated) {run.naive_extrapolated_s:.1f} s")
    return run


@dataclass
class LengthPoint:
    """One repeat of the one-tensor times at one sequence length (``None``: not timed)."""

    T: int
    N: int
    engine_s: float
    floor_s: float | None
    naive_s: float | None

    @classmethod
    def of(cls, b: BenchInput, run: OneTensor) -> LengthPoint:
        """The point of the bench's own length: the times of :func:`one_tensor` in the same repeat."""
        return cls(b.T, b.N, run.engine_s, run.floor_s, run.naive_s)


def growth_in_length(b: BenchInput, schedule: str, with_floor_and_naive: bool, say: Say = _quiet) -> LengthPoint:
    """The engine at ``l0 = 0`` on ``b``'s sequence; the floor (``schedule``) and the naive loop
    too when ``with_floor_and_naive`` (they cost the most, so long sequences skip them)."""
    floor_s = naive_s = None
    with b.memory.track("growth"):
        _, engine_s = engine(b, 0)
        if with_floor_and_naive:
            clean, t_clean = _timed_clean(b.lm, b.tokens, b.clock)
            floor_s = t_clean + floor_passes(b.lm, b.tokens, clean, 0, _schedule(schedule, range(b.N), b.N, b.lm),
                                             b.eps, b.directions, packed=schedule == "packed", clock=b.clock)
            _, naive_s = naive_loop(b, 0)
    say(f"growth T={b.T} N={b.N}: engine {engine_s:.2f} s"
        + (f", floor {floor_s:.2f} s, naive {naive_s:.2f} s" if naive_s is not None else ""))
    return LengthPoint(b.T, b.N, engine_s, floor_s, naive_s)


def row_positions(b: BenchInput, schedules: Sequence[str], engine_meta: dict | None) -> dict[str, int | None]:
    """Row-positions computed by each method for one tensor at ``l0 = 0`` (positions summed over rows).

    ``necessary``: ``N(N+1)/2`` (row ``s`` needs positions ``s..N-1``); ``naive``: ``N x N``;
    ``engine``: from its meta; ``floor:<name>``: each schedule's passes (padded passes compute
    every row from the pass's smallest source, packed passes exactly the necessary ones).
    """
    N = b.N
    return {
        "necessary": N * (N + 1) // 2,
        "engine": engine_meta.get("row_positions") if engine_meta else None,
        "naive": N * N,
        **{f"floor:{name}": sum((sum(N - s for s in batch) if name == "packed" else len(batch) * (N - min(batch)))
                                for batch in _schedule(name, b.sources, N, b.lm)) for name in schedules},
    }
