"""The engine calls of an induction run: one per sequence, but a repeated sequence and its twin in one.

Why together: the twin ``[BOS, a_1 .. a_T, b_1 .. b_T]`` shares the repeated sequence's first copy,
where every perturbed source lies, and is perturbed with the same seed; its perturbed rows equal
the repeated sequence's up to the end of that copy. One call of
:func:`~.engine.shared_prefix.run_response_pair` computes the twin's rows only from there on:
about a sixth less work for every induction run with the twin baseline (the default), with the
results of two separate calls to float rounding.

Why apart from :mod:`.induction`: the calls run side by side in forked workers where they help
(:func:`~.workers.map_units`), each call a unit, and a worker hands the clean passes it computed
back to its parent's clean-pass cache (a section map reuses them at every ``l0``); this module
holds that bookkeeping, :mod:`.induction` what is measured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .cost import response_flops
from .engine import run_response
from .engine.clean import installed_clean_cache
from .engine.plan import planned_passes
from .engine.shared_prefix import run_response_pair, shared_prefix_length
from .models import LoadedModel
from .progress import Progress
from .workers import in_worker, last_workers, map_units

if TYPE_CHECKING:
    from .induction import InductionSetting

__all__ = ["plan_units", "run_units", "unit_groups"]


def unit_groups(units: list[tuple]) -> list[tuple[int, ...]]:
    """The units (``(seed, key, tokens)``, :func:`~.induction.sequence_units`) that share an engine
    call, by index: each seed's ``"repeated"`` sequence with its ``"twin"``, every other unit alone."""
    index = {(seed, key): i for i, (seed, key, _tokens) in enumerate(units)}
    groups, taken = [], set()
    for i, (seed, key, _tokens) in enumerate(units):
        if i in taken:
            continue
        twin = index.get((seed, "twin")) if key == "repeated" else None
        groups.append((i,) if twin is None or twin in taken else (i, twin))
        taken.update(groups[-1])
    return groups


def plan_units(lm: LoadedModel, setting: "InductionSetting", sources: list[int],
               units: list[tuple]) -> list[tuple[tuple[int, ...], int]]:
    """``[(group, passes)]``: the engine calls of ``units`` (:func:`unit_groups`) and the forward
    passes each will run (:func:`~.engine.plan.planned_passes`), for a progress bar planned ahead."""
    out = []
    for group in unit_groups(units):
        tokens = [units[i][2] for i in group]
        prefix = shared_prefix_length(*tokens) if len(tokens) == 2 else None
        out.append((group, planned_passes(lm, len(tokens[0]), sources, n_eps=1, n_directions=setting.n_directions,
                                          method=setting.method, batch_rows=setting.batch_rows,
                                          memory_budget_mb=setting.memory_budget_mb,
                                          reuse_prefix=setting.reuse_prefix, twin_prefix=prefix)))
    return out


def _call_flops(lm: LoadedModel, setting: "InductionSetting", sources: list[int], tokens: list) -> float:
    """The necessary work of one engine call (:func:`~.cost.response_flops`): the twin's rows start
    at the end of the shared prefix."""
    N = len(tokens[0])
    flops = response_flops(lm, N, sources, setting.l0, setting.n_directions)
    if len(tokens) == 2:
        flops += response_flops(lm, N, [shared_prefix_length(*tokens)] * len(sources), setting.l0, setting.n_directions)
    return flops


def run_units(lm: LoadedModel, setting: "InductionSetting", sources: list[int], units: list[tuple],
              plan: list[tuple[tuple[int, ...], int]], bar: Progress) -> list:
    """The engine's result for each ``(seed, key, tokens)`` unit, in order, from the calls of ``plan``
    (:func:`plan_units`); side by side in forked workers where the thread count and the work allow,
    each call computed as a one-thread run computes it.

    A worker's clean passes would be lost with it: where a clean-pass cache is installed (a section
    map), each worker hands back the clean passes the parent lacks, and the parent keeps them.
    """
    if not units:
        return []
    cache = installed_clean_cache()
    missing = {i for i, (_s, _k, tokens) in enumerate(units) if cache is not None and cache.peek(lm, tokens) is None}

    def one(g: int):
        group = plan[g][0]
        seed, _key, tokens = units[group[0]]
        here = not in_worker()  # here, the bar counts each pass; a worker's bar is not drawn
        job = setting.response_job(lm, tokens, sources, seed)
        if len(group) == 2:
            results = run_response_pair(job, units[group[1]][2], progress=bar if here else False)
        else:
            results = (run_response(job, progress=bar if here else False),)
        return results, [cache.peek(lm, units[i][2]) if not here and i in missing else None for i in group]

    def done(g: int, value) -> None:
        for i, clean in zip(plan[g][0], value[1]):
            if clean is not None:
                cache.put(lm, units[i][2], clean)
        if last_workers() > 1:
            bar.update(plan[g][1])

    flops = _call_flops(lm, setting, sources, [units[i][2] for i in plan[0][0]])
    out: list = [None] * len(units)
    for (group, _passes), (results, _cleans) in zip(plan, map_units(one, range(len(plan)), device=lm.device.type,
                                                                    unit_flops=flops, done=done)):
        for i, res in zip(group, results):
            out[i] = res
    return out
