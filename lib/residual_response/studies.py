"""The book's studies, one call each: every cross-check of one model, the negative controls of a set.

The science lives in :mod:`.crosscheck`, :mod:`.attention`, :mod:`.heads`, :mod:`.ablation` and
:mod:`.induction`; this module runs them in the combination a page shows and keeps the results
together with the frames the page plots, so that a page calls one function per model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .behaviour import repeat_loss
from .checks import check_int, check_model
from .crosscheck import AblationStudy, ablation_study, head_rank_agreement, kind_scores, layer_rank_agreement
from .induction import InductionResult
from .models import LoadedModel
from .tables import control_envelope

__all__ = ["CrossCheck", "NegativeControls", "cross_check", "is_random_init", "negative_controls"]


def is_random_init(name: str) -> bool:
    """Whether the registry name ``name`` is a random-initialised control (``random-*``)."""
    return str(name).startswith("random-")


@dataclass
class NegativeControls:
    """The negative controls of a set of models, scored like the repeats.

    ``runs`` maps ``(model, control)`` to its :class:`.induction.InductionResult`, the controls
    being ``"shuffled copy"`` and ``"random sequence"`` for every model and ``"repeated, random
    init"`` for the random-initialised ones. ``frame`` has one row per run and read layer after
    ``l0`` (``model, control, rel_depth, score, in_band``). A run is *in the band* when it has
    nothing to find: every run but a trained model's shuffled copy, which a duplicate-token
    response can lift (the emergence page shows it).
    """

    runs: dict
    frame: pd.DataFrame

    @staticmethod
    def in_band(key: tuple[str, str]) -> bool:
        model, control = key
        return control != "shuffled copy" or is_random_init(model)

    @property
    def band_frame(self) -> pd.DataFrame:
        """The rows of the in-band runs."""
        return self.frame[self.frame.in_band]

    def band(self, bins: int = 5) -> pd.DataFrame:
        """:func:`control_envelope` of the in-band runs."""
        return control_envelope(self.band_frame, bins=bins)

    @property
    def n_in_band(self) -> int:
        return sum(self.in_band(key) for key in self.runs)

    def emerged(self) -> list[tuple[str, str]]:
        """In-band runs that pass the emergence criterion (none should)."""
        return [key for key, r in self.runs.items() if self.in_band(key) and r.emergence_layer is not None]

    def shuffled_range(self) -> pd.DataFrame:
        """Per trained model: min and max over layers of its shuffled-copy score (index: model)."""
        d = self.frame[~self.frame.in_band]
        return d.groupby("model").score.agg(["min", "max"])


def negative_controls(lms: dict, results: dict, *, control_seeds: int, n_boot: int = 1000) -> NegativeControls:
    """Score every model's negative controls with the baseline of its repeats (:func:`kind_scores`).

    Why here: a trained model's score means something only against what the same estimator gives
    where there is nothing to copy. Random-initialised models use all the seeds of their result
    (their repeats are a control too); trained ones the first ``control_seeds``.

    Args:
        lms: model name -> loaded model; results: model name -> its repeats'
            :func:`.induction.induction_scores` result (finite eps, with stripes).
    """
    check_int(control_seeds, "control_seeds", minimum=1)
    runs = {}
    for name, res in results.items():
        use = None if is_random_init(name) else res.seeds[:control_seeds]
        runs[(name, "shuffled copy")] = kind_scores(lms[name], "shuffled", res, seeds=use, n_boot=n_boot)
        runs[(name, "random sequence")] = kind_scores(lms[name], "random", res, seeds=use, n_boot=n_boot)
        if is_random_init(name):
            runs[(name, "repeated, random init")] = res
    frame = pd.DataFrame([
        {"model": name, "control": kind, "rel_depth": l / lms[name].n_layers, "score": s,
         "in_band": NegativeControls.in_band((name, kind))}
        for (name, kind), r in runs.items() for l, s in zip(r.layers, r.score) if l != r.layer
    ])
    return NegativeControls(runs=runs, frame=frame)


@dataclass
class CrossCheck:
    """Every cross-check of one model's response score (what :func:`cross_check` measures).

    Attributes:
        losses: :func:`.behaviour.repeat_loss` of the unablated model.
        attention: :func:`.attention.induction_attention_scores` (``repeated.mean`` ``[L, H]``).
        attribution: :func:`.heads.head_attribution` (``score`` ``[L, H]``).
        study: :func:`ablation_study` of the top-``k`` heads by attribution against random heads.
        null: :func:`kind_scores` of random sequences (nothing to copy) with the unablated baseline.
        agreement: :func:`layer_rank_agreement` of the attention and the unablated score.
        heads: :func:`head_rank_agreement` of the two head rankings over their top
            ``min(5, heads - 1)``, plus ``resp_top`` (the response's top heads with their scores),
            ``att_top`` (the attention's top five), ``resp_top_att`` (the attention of the
            response's top heads), ``resp_best`` and ``att_best``.
        seconds: wall time of the whole study.
    """

    model: str
    n_layers: int
    n_heads: int
    layer: int
    losses: dict
    attention: dict
    attribution: object
    study: AblationStudy
    null: InductionResult
    agreement: dict
    heads: dict
    seconds: float
    n_boot: int = 1000

    @property
    def base(self) -> InductionResult:
        """The unablated response scores."""
        return self.study.results["none"]

    def rise_blocks(self) -> dict:
        """Where the score rises, in blocks, beside the blocks of the top-5 attention heads.

        The rise of :attr:`.induction.InductionResult.rise` is read on streams; stream ``l`` is
        written by block ``l - 1``. Returns ``{"half", "blocks", "factor", "factor_ci",
        "att_blocks", "holds"}``: the block writing the half-way stream (``None``: no rise), the
        blocks from the 10 % to the 90 % stream, the rise factor and its interval, the blocks of
        the top-5 attention heads, and whether a block of the rise holds one of them.
        """
        rise = self.base.rise or {}
        att_blocks = sorted({l for l, _, _ in self.heads["att_top"]})
        if not rise.get("emerged"):
            blocks, half = [], None
        else:
            blocks, half = list(range(rise["start"] - 1, rise["end"])), rise["layer"] - 1
        return {"half": half, "blocks": blocks, "factor": rise.get("factor"), "factor_ci": rise.get("factor_ci"),
                "att_blocks": att_blocks, "holds": bool(set(blocks) & set(att_blocks))}

    def quoted(self) -> dict:
        """The numbers a page quotes about this model in its prose, by short name (``loss1``,
        ``half``, ``overlap``, ``drop_top``, ``rise_top``, ``nullmin`` ...), as plain values."""
        rb, h, e, c = self.rise_blocks(), self.heads, self.effects(), self.losses
        return {
            "loss1": float(c["first"]["mean"]), "loss2": float(c["second"]["mean"]),
            "half": "none" if rb["half"] is None else str(rb["half"]),
            "riseblocks": ", ".join(map(str, rb["blocks"])) or "none", "topblocks": ", ".join(map(str, rb["att_blocks"])),
            "rho": float(self.agreement["rho"]), "overlap": h["overlap"], "headrho": float(h["rho"]),
            "respbest": str(h["resp_best"]), "attbest": str(h["att_best"]),
            "respbestatt": h["resp_top_att"][0], "respminatt": min(h["resp_top_att"]),
            "SL": e["base"], "SLtop": e["top_score"], "drop_top": e["top"]["drop"], "drop_random": e["random"]["drop"],
            "rise_top": e["top"]["rise"], "rise_random": e["random"]["rise"],
            "nullmin": float(np.nanmin(self.null.score)), "nullmax": float(np.nanmax(self.null.score)),
        }

    def effects(self) -> dict:
        """Per ``"top"``/``"random"`` ablation: the drop of the score at the last stream and the rise
        of the second-copy loss, each with its paired 95 % interval; plus ``base`` (``S_L``
        unablated) and ``top_score`` (``S_L`` with the top heads ablated)."""
        out = {"base": float(self.base.score[-1]), "top_score": float(self.study.results["top"].score[-1])}
        for which in ("top", "random"):
            drop, lo, hi = self.study.score_drop(which, n_boot=self.n_boot)
            rise = self.study.loss_rise(which, n_boot=self.n_boot)
            out[which] = {"drop": float(drop[-1]), "lo": float(lo[-1]), "hi": float(hi[-1]),
                          "rise": float(rise["mean"]), "rise_lo": float(rise["lo"]), "rise_hi": float(rise["hi"])}
        return out


def cross_check(lm: LoadedModel, *, T: int, seeds: int, att_seeds: int, loss_seeds: int, eps: float, layer: int,
                k: int, n_random: int, n_boot: int = 1000) -> CrossCheck:
    """Run every cross-check of the response score on one model (see :class:`CrossCheck`).

    Why one call: the loss, the attention patterns, the head attribution, the ablation of its
    top-``k`` heads against ``n_random`` draws of random heads, and the null share the model, the
    sequences and the settings; a page shows their numbers side by side.
    """
    import time

    from .attention import induction_attention_scores, top_heads
    from .heads import head_attribution

    check_model(lm)
    check_int(k, "k", minimum=1, maximum=lm.n_layers * lm.n_heads // 2 - 1)
    start = time.perf_counter()
    losses = repeat_loss(lm, T, range(loss_seeds), n_boot=n_boot)
    attention = induction_attention_scores(lm, T=T, seeds=range(att_seeds), n_boot=n_boot)
    attribution = head_attribution(lm, T=T, seeds=seeds, layer=layer, eps=eps, n_boot=n_boot)
    top = [(l, h) for l, h, _ in attribution.ranking(k)]
    study = ablation_study(lm, top, n_random=n_random, T=T, seeds=seeds, loss_seeds=range(loss_seeds),
                           layer=layer, eps=eps, n_boot=n_boot)
    base = study.results["none"]
    null = kind_scores(lm, "random", base, n_boot=n_boot)  # no repeat: nothing to copy
    agreement = layer_rank_agreement(attention, base.stripes, n_boot=n_boot)
    n_all = lm.n_layers * lm.n_heads
    kk = min(5, n_all - 1)
    att_mean = attention["repeated"]["mean"].numpy()  # [L, H]
    heads = head_rank_agreement(attribution.score, att_mean, k=kk).to_dict()  # the page adds the top lists
    heads["resp_top"] = attribution.ranking(kk)
    heads["att_top"] = top_heads(attention, min(5, n_all))
    heads["resp_best"], heads["att_best"] = heads["resp_top"][0][:2], heads["att_top"][0][:2]
    heads["resp_top_att"] = [float(att_mean[l, h]) for l, h, _ in heads["resp_top"]]
    return CrossCheck(model=lm.name, n_layers=lm.n_layers, n_heads=lm.n_heads, layer=layer, losses=losses,
                      attention=attention, attribution=attribution, study=study, null=null, agreement=agreement,
                      heads=heads, seconds=time.perf_counter() - start, n_boot=n_boot)
