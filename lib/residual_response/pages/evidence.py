"""What one page computes and another quotes: the section map's rows and the ablation's rank tests,
each under one set of arguments, computed once per build.

Why: the paper page summarises the evidence of the model-sections and cross-checks pages. A number
quoted on two pages comes from one computation: both pages call the functions here with the
arguments of the page that shows the evidence (:func:`.book_params.page_arguments`), and the
results go through :mod:`residual_response.results_cache` (the section map's rows by
:func:`.induction.run_induction`'s memo, the ablation's rank tests by :func:`ablation_evidence`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..models import LoadedModel

__all__ = ["AblationEvidence", "ablation_evidence", "ablation_key", "cross_check_arguments", "section_rows"]


def cross_check_arguments(params: Mapping[str, Any], model: str) -> dict:
    """The keyword arguments of :func:`.studies.cross_check` for ``model`` from the cross-checks page's
    parameters ``params`` (:func:`.book_params.page_arguments`): ``layer`` is ``l0``, ``k`` the
    model's entry of the page's ``k`` (5 where it has none)."""
    return {"T": params["T"], "seeds": params["seeds"], "att_seeds": params["att_seeds"],
            "loss_seeds": params["loss_seeds"], "eps": params["eps"], "l0": params["layer"],
            "k": dict(params["k"]).get(model, 5), "n_random": params["n_random"],
            "ablation_seeds": params["ablation_seeds"], "n_boot": params["n_boot"]}


@dataclass(frozen=True)
class AblationEvidence:
    """The ablation of one model's named heads ranked among random draws, as the pages quote it.

    Attributes:
        model, n_layers: the model; k: heads per set; setting: ``T``, ``seeds`` (those of the
            ablation runs), ``eps``, ``l0``, ``n_random`` (draws asked for).
        heads: named set (``"top"``, ``"attention"``, ``"outside"``) -> its heads ``[(block, head)]``.
        tests: named set -> its :class:`.ranked_ablation.RankTest`.
    """

    model: str
    n_layers: int
    k: int
    setting: dict
    heads: dict
    tests: dict

    @classmethod
    def of(cls, check) -> "AblationEvidence":
        """The evidence of a :class:`.studies.CrossCheck` ``check``."""
        st = check.study
        none = st.results["none"]
        return cls(model=check.model, n_layers=check.n_layers, k=st.k,
                   setting={"T": int(none.T), "seeds": len(none.seeds), "eps": float(none.eps), "l0": int(check.l0),
                            "n_random": len(st.random_keys)},
                   heads={w: [tuple(map(int, bh)) for bh in st.heads[w]] for w in st.named_keys},
                   tests=check.rank_tests())


def ablation_key(lm: LoadedModel, **arguments) -> dict | None:
    """What :func:`ablation_evidence` is stored under: the model's identity and every argument of
    :func:`.studies.cross_check`; ``None`` while the results cache is off, or where the model cannot be
    keyed (a hook that may change its outputs is installed, as inside an ablation:
    :func:`.results_cache.model_identity`).
    """
    from .. import results_cache

    if not results_cache.enabled():
        return None
    try:
        return {"call": "residual_response.pages.studies.cross_check", "model": results_cache.model_identity(lm),
                "args": {k: results_cache.key_of(v) for k, v in sorted(arguments.items())}}
    except results_cache.Unkeyable:
        return None


def ablation_evidence(lm: LoadedModel, *, key: dict | None = None, check=None, **arguments) -> AblationEvidence:
    """The :class:`AblationEvidence` of :func:`.studies.cross_check` ``(lm, **arguments)``, from the results
    cache while it is switched on.

    Why a key of its own: ablation runs are never memoized (their hooks change what the model
    computes), so the whole study is keyed by the model's identity and every argument
    (:func:`ablation_key`; pass ``key`` to reuse one already taken, else it is taken here). The
    cross-checks page passes the ``check`` it computed (stored under that key, not computed again);
    another page with the same arguments reads it. The stored value holds rank tests and plain
    values only (the study's tensors are not a result type of the cache). Without a key (cache off,
    a model with hooks) the evidence is computed and not stored.
    """
    from .. import results_cache
    from .studies import cross_check

    def compute() -> AblationEvidence:
        return AblationEvidence.of(check if check is not None else cross_check(lm, **arguments))

    key = key if key is not None else ablation_key(lm, **arguments)
    if key is None:
        return compute()
    if key["args"] != {k: results_cache.key_of(v) for k, v in sorted(arguments.items())}:
        raise ValueError(f"key was taken for other arguments than {sorted(arguments.items())}")
    return results_cache.cached("ablation_evidence", key, compute)


def section_rows(lm: LoadedModel, *, T: int, seeds: int, eps: float, n_l0: int) -> tuple:
    """A section map of ``lm`` as the model-sections page draws it: ``n_l0`` kicked streams evenly
    spread over ``0 .. L-1`` plus the blocks of the model's induction heads (its canonical
    :func:`.headline.headline`), each row with its :class:`.induction.InductionResult`.

    Returns:
        ``(map, {l0: result}, head_blocks)`` (:func:`.induction.section_results`); the rows go through
        the results cache (:func:`.induction.run_induction`), so a second page asking the same reads them.
    """
    from ..headline import headline
    from ..induction import section_results
    from ..sequences import spread

    head_blocks = headline(lm).head_blocks
    l0s = sorted(set(spread(0, lm.n_layers - 1, n_l0)) | set(head_blocks))
    section_map, rows = section_results(lm, T=T, seeds=seeds, eps=eps, l0s=l0s)
    return section_map, rows, head_blocks
