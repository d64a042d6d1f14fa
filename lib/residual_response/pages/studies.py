"""The book's studies, one call each: every cross-check of one model, the negative controls of a set,
the toy model's phase change.

The science lives in :mod:`~residual_response.crosscheck`, :mod:`~residual_response.attention`,
:mod:`~residual_response.heads`, :mod:`~residual_response.ablation`, :mod:`~residual_response.induction`
and :mod:`~residual_response.dynamics`; this module runs them in the combination a page shows and keeps the results
together with the frames the page plots, so that a page calls one function per model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..checks import check_int, check_model, keyword_alias
from ..crosscheck import AblationStudy, ablation_study, head_rank_agreement, kind_scores, layer_rank_agreement
from ..dynamics import induction_through_training, loss_drop, measurement_steps, onset_step, phase_change_step, rise_step
from ..induction import InductionResult, emergence_layer, induction_scores
from ..models import LoadedModel
from ..models.toy import toy_checkpoint_steps
from .tables.frames import control_envelope, distance_profile, extreme_text
from .tables.text import ci_text, setting_text

__all__ = ["CrossCheck", "NegativeControls", "PhaseChange", "cross_check", "first_stream_null", "follow_phase_change",
           "is_random_init", "negative_controls", "outside_set", "phase_contrasts", "phase_facts"]


def is_random_init(name: str) -> bool:
    """Whether the registry name ``name`` is a random-initialised control (``random-*``)."""
    return str(name).startswith("random-")


def first_stream_null(lm: LoadedModel, l0s, *, T: int, seeds: int, eps: float, init_seed: int = 0) -> dict:
    """The score right after the kick, ``S(l0, l0 + 1)``, in a random-initialised network with
    ``lm``'s whole configuration (:func:`.null.random_like`), for every ``l0`` of ``l0s``.

    Why: a section map calls block ``l0`` a writing block when that score's interval lies above
    :data:`.rise.MIN_RISE`; the rule means something only if a network of the same size without
    trained weights stays below it. Each row reads stream ``l0 + 1`` alone and the rows share
    their clean passes (:func:`.engine.reuse_clean_passes`), so the null costs about one forward
    pass per kick batch and row.

    Returns:
        ``{l0: InductionResult}`` (one read stream each), the rows :func:`.tables.section_rise_table`
        reads; the random network's name is each result's ``model``.
    """
    from ..engine import reuse_clean_passes
    from ..null import random_like

    rnd = random_like(lm, init_seed)
    with reuse_clean_passes():
        return {int(l0): induction_scores(rnd, T=T, seeds=seeds, l0=int(l0), eps=eps, read_streams=[int(l0) + 1])
                for l0 in l0s if int(l0) < rnd.n_layers}


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
        for (name, kind), r in runs.items() for l, s in zip(r.read_streams, r.score) if l != r.l0
    ])
    return NegativeControls(runs=runs, frame=frame)


@dataclass
class CrossCheck:
    """Every cross-check of one model's response score (what :func:`cross_check` measures).

    Attributes:
        losses: :func:`.behaviour.repeat_loss` of the unablated model.
        attention: :func:`.attention.induction_attention_scores` (``repeated.mean`` ``[L, H]``).
        attribution: :func:`.heads.head_attribution` (``score`` ``[L, H]``).
        base: the unablated :func:`.induction.induction_scores` at the page's seeds: the layer-level
            checks (rise, rank agreement, null) read it.
        study: :func:`ablation_study` of the top-``k`` heads by attribution, of the top-``k``
            heads by attention pattern (the positive control) and, where those two sets share a
            head, of the top-``k`` heads by attribution outside the attention set (``"outside"``),
            against random heads, at the first ``ablation_seeds`` of those seeds (its ``"none"`` is
            ``base`` rescored on them).
        null: :func:`kind_scores` of random sequences (nothing to copy) with the baseline of ``base``.
        agreement: :func:`layer_rank_agreement` of the attention and the unablated score.
        heads: :func:`head_rank_agreement` of the two head rankings over their top
            ``min(5, heads - 1)``, plus ``resp_top`` (the response's top heads with their scores),
            ``resp_top_ci`` (their bootstrap intervals over the sequences),
            ``att_top`` (the attention's top five), ``resp_top_att`` (the attention of the
            response's top heads; ``resp_top_att_ci`` their bootstrap intervals over the attention
            sequences), ``resp_best`` and ``att_best``.
        seconds: wall time of the whole study.
    """

    model: str
    n_layers: int
    n_heads: int
    l0: int
    losses: dict
    attention: dict
    attribution: object
    base: InductionResult
    study: AblationStudy
    null: InductionResult
    agreement: dict
    heads: dict
    seconds: float
    n_boot: int = 1000

    def rise_blocks(self) -> dict:
        """Where the score rises, in blocks, beside the blocks of the model's induction heads.

        The rise of :attr:`.induction.InductionResult.rise` is read on streams; stream ``l`` is
        written by block ``l - 1``. The induction heads are those of the top-5 attention heads that
        attend along the stripe at least :data:`.attention.INDUCTION_HEAD_MIN_RATIO` times as much on
        repeats as on random sequences (:func:`.attention.induction_heads`). Returns ``{"half",
        "blocks", "factor", "factor_ci", "from_one", "att_blocks", "holds", "gap", "outside"}``: the block
        writing the half-way stream (``None``: no rise), the blocks from the 10 % to the 90 %
        stream, the rise factor and its interval (``from_one``: the rise from 1 with its interval), the induction heads' blocks, whether a block of
        the rise holds one of them, the distance in blocks from the half-way block to the nearest
        of them (``None`` without a rise or a head), and those of them outside the rise's blocks.
        """
        from ..attention import induction_heads

        rise = self.base.rise
        att_blocks = sorted({b for b, _, _, _ in induction_heads(self.attention, min(5, self.n_layers * self.n_heads))})
        if rise is None or not rise.emerged:
            blocks, half = [], None
        else:
            blocks, half = list(range(rise.start - 1, rise.end)), rise.stream - 1
        gap = min(abs(half - b) for b in att_blocks) if half is not None and att_blocks else None
        return {"half": half, "blocks": blocks, "factor": None if rise is None else rise.factor,
                "factor_ci": None if rise is None else rise.factor_ci,
                "from_one": None if rise is None or rise.from_one_factor is None else (rise.from_one_factor, rise.from_one_ci),
                "att_blocks": att_blocks, "holds": bool(set(blocks) & set(att_blocks)), "gap": gap,
                "outside": [b for b in att_blocks if blocks and b not in blocks]}

    def quoted(self) -> dict:
        """The numbers a page quotes about this model in its prose, by short name (``loss1``,
        ``half``, ``overlap``, ``drop_top``, ``rise_top``, ``nullmin`` ...), as plain values."""
        rb, h, e, c = self.rise_blocks(), self.heads, self.effects(), self.losses
        return {
            "loss1": float(c.first.mean), "loss2": float(c.second.mean),
            "half": "none" if rb["half"] is None else str(rb["half"]),
            "riseblocks": ", ".join(map(str, rb["blocks"])) or "none", "topblocks": ", ".join(map(str, rb["att_blocks"])),
            "rho": float(self.agreement.rho), "overlap": h["overlap"], "headrho": float(h["rho"]),
            "headrho_text": ci_text(h["rho"], *h["rho_ci"]),
            "respbest": str(h["resp_best"]), "attbest": str(h["att_best"]),
            "respbestatt": h["resp_top_att"][0], "respminatt": min(h["resp_top_att"]),
            "respbestatt_text": ci_text(h["resp_top_att"][0], *h["resp_top_att_ci"][0]),
            "respminatt_text": ci_text(min(h["resp_top_att"]), *h["resp_top_att_ci"][int(np.argmin(h["resp_top_att"]))]),
            "SL": e["base"], "SLtop": e["top_score"], "drop_top": e["top"]["drop"], "drop_random": e["random"]["drop"],
            "rise_top": e["top"]["rise"], "rise_random": e["random"]["rise"],
            # the same numbers with their 95 % intervals, as the prose quotes them
            "SL_text": ci_text(e["base"], e["base_lo"], e["base_hi"]),
            "SLtop_text": ci_text(e["top_score"], e["top_score_lo"], e["top_score_hi"]),
            "drop_top_text": ci_text(e["top"]["drop"], e["top"]["lo"], e["top"]["hi"]),
            "drop_random_text": ci_text(e["random"]["drop"], e["random"]["lo"], e["random"]["hi"]),
            "rise_top_text": ci_text(e["top"]["rise"], e["top"]["rise_lo"], e["top"]["rise_hi"]),
            "rise_random_text": ci_text(e["random"]["rise"], e["random"]["rise_lo"], e["random"]["rise_hi"]),
            "nullmin": extreme_text(self.null, np.nanargmin), "nullmax": extreme_text(self.null, np.nanargmax),
            "gap": "none" if rb["gap"] is None else str(rb["gap"]),
        }

    @property
    def ablation_seeds(self) -> int:
        """The number of sequence seeds of the ablation runs."""
        return len(self.study.results["none"].seeds)

    def rank_tests(self, stream: int | None = None) -> dict:
        """Per named set (``"top"`` by response, ``"attention"`` by pattern, ``"outside"``): its drop of the score
        at stream ``stream`` (default: the last) ranked among the random draws
        (:meth:`.crosscheck.AblationStudy.rank_test`)."""
        reads = self.study.results["none"].read_streams
        if stream is not None and stream not in reads:
            raise ValueError(f"stream must be one of the ablation's read streams {reads}, got {stream!r}")
        index = -1 if stream is None else reads.index(stream)
        return {k: self.study.rank_test(k, stream=index, n_boot=self.n_boot) for k in self.study.named_keys}

    @property
    def emergence_stream(self) -> int | None:
        """The emergence layer of the unablated run at the page's seeds (:attr:`base`), where the
        ablation is ranked a second time: heads of the blocks before it are the ones that can make
        the rise; ``None`` where the score does not rise."""
        return self.base.emergence_layer

    def effects(self) -> dict:
        """Per ``"top"``/``"attention"``/``"outside"``/``"random"`` ablation: the drop of the score at the last
        stream and the rise of the second-copy loss, each with its paired 95 % interval (``"random"``:
        the mean over draws, its loss interval resampling the draws too); plus ``base`` (``S_L``
        unablated, at the ablation's seeds) and ``top_score`` (``S_L`` with the top heads ablated),
        each with its bootstrap interval (``base_lo``, ``base_hi``, ``top_score_lo``, ``top_score_hi``). A
        named set also gets its loss change minus the random draws' (``vs_random`` with
        ``vs_random_lo/hi``, resampling seeds and draws) and its rank among the draws
        (:meth:`.crosscheck.AblationStudy.loss_rank`: ``draws_above``, ``draws_below`` of ``n_draws``,
        ``p_more``, ``p_less``)."""
        res = self.study.results
        out = {"base": float(res["none"].score[-1]), "base_lo": float(res["none"].ci_low[-1]),
               "base_hi": float(res["none"].ci_high[-1]), "top_score": float(res["top"].score[-1]),
               "top_score_lo": float(res["top"].ci_low[-1]), "top_score_hi": float(res["top"].ci_high[-1])}
        for which in (*self.study.named_keys, "random"):
            drop, lo, hi = self.study.score_drop(which, n_boot=self.n_boot)
            rise = self.study.loss_rise(which, n_boot=self.n_boot)
            out[which] = {"drop": float(drop[-1]), "lo": float(lo[-1]), "hi": float(hi[-1]),
                          "rise": float(rise.mean), "rise_lo": float(rise.lo), "rise_hi": float(rise.hi)}
            if which != "random" and self.study.random_keys:
                diff = self.study.loss_difference(which, n_boot=self.n_boot)
                rank = self.study.loss_rank(which)
                out[which].update(vs_random=float(diff.mean), vs_random_lo=float(diff.lo), vs_random_hi=float(diff.hi),
                                  draws_above=rank["above"], draws_below=rank["below"], n_draws=rank["n"],
                                  p_more=rank["p_more"], p_less=rank["p_less"])
        return out


def outside_set(attribution, top: list, att_k: list) -> list | None:
    """The top heads by response once the attention set ``att_k`` is left out, as many as ``top``;
    ``None`` where ``top`` shares no head with ``att_k`` (it is then its own outside set) or where
    the heads left after the three sets could not give a random draw of as many.

    Why: a response set that shares heads with the positive control can drop the score through the
    shared heads alone; ablating this set asks whether the response names induction heads of its own.
    """
    k, att = len(top), set(att_k)
    if not set(top) & att:
        return None
    outside = [(b, h) for b, h, _ in attribution.ranking() if (b, h) not in att][:k]
    n_left = attribution.score.size - len(set(top) | att | set(outside))
    return outside if len(outside) == k and n_left >= k + 1 else None


@keyword_alias(layer="l0")
def cross_check(lm: LoadedModel, *, T: int, seeds: int, att_seeds: int, loss_seeds: int, eps: float, l0: int,
                k: int, n_random: int, ablation_seeds: int | None = None, n_boot: int = 1000) -> CrossCheck:
    """Run every cross-check of the response score on one model (see :class:`CrossCheck`).

    Why one call: the loss, the attention patterns, the head attribution, the ablation of its
    top-``k`` heads against ``n_random`` draws of random heads, and the null share the model, the
    sequences and the settings; a page shows their numbers side by side.

    ``ablation_seeds`` (default ``seeds``, at most ``seeds``): the sequence seeds of the ablation's
    ``2 + n_random`` runs, the first of ``seeds``; the unablated score and the head attribution
    use all ``seeds``. Why fewer: the ablation costs ``2 + n_random`` response runs, the rest one.
    """
    import time

    from ..attention import induction_attention_scores, top_heads
    from ..heads import head_attribution

    check_model(lm)
    check_int(k, "k", minimum=1, maximum=lm.n_layers * lm.n_heads // 2 - 1)
    check_int(seeds, "seeds", minimum=1)
    ablation_seeds = check_int(seeds if ablation_seeds is None else ablation_seeds, "ablation_seeds", minimum=1,
                               maximum=seeds)
    start = time.perf_counter()
    attention = induction_attention_scores(lm, T=T, seeds=range(att_seeds), n_boot=n_boot)
    attribution = head_attribution(lm, T=T, seeds=seeds, l0=l0, eps=eps, n_boot=n_boot)
    base = induction_scores(lm, T=T, seeds=seeds, l0=l0, eps=eps, n_boot=n_boot)
    top = [(l, h) for l, h, _ in attribution.ranking(k)]
    att_k = [(l, h) for l, h, _ in top_heads(attention, k)]
    study = ablation_study(lm, top, attention_heads=att_k, outside_heads=outside_set(attribution, top, att_k),
                           n_random=n_random, T=T, seeds=ablation_seeds,
                           loss_seeds=range(loss_seeds), l0=l0, eps=eps, n_boot=n_boot, base=base)
    losses = study.losses["none"]  # repeat_loss(lm, T, range(loss_seeds), n_boot=n_boot), run once by the study
    null = kind_scores(lm, "random", base, n_boot=n_boot)  # no repeat: nothing to copy
    agreement = layer_rank_agreement(attention, base.stripes, n_boot=n_boot)
    n_all = lm.n_layers * lm.n_heads
    kk = min(5, n_all - 1)
    att_mean = attention.repeated.mean.numpy()  # [L, H]
    heads = head_rank_agreement(attribution.score, att_mean, k=kk).to_dict()  # the page adds the top lists
    heads["resp_top"] = attribution.ranking(kk)
    heads["att_top"] = top_heads(attention, min(5, n_all))
    heads["resp_best"], heads["att_best"] = heads["resp_top"][0][:2], heads["att_top"][0][:2]
    heads["resp_top_att"] = [float(att_mean[l, h]) for l, h, _ in heads["resp_top"]]
    heads["resp_top_att_ci"] = [(float(attention.repeated.lo[l, h]), float(attention.repeated.hi[l, h]))
                                for l, h, _ in heads["resp_top"]]  # over the attention sequences
    heads["resp_top_ci"] = [(float(attribution.ci_low[l, h]), float(attribution.ci_high[l, h]))
                            for l, h, _ in heads["resp_top"]]  # over the attribution's sequences
    return CrossCheck(model=lm.name, n_layers=lm.n_layers, n_heads=lm.n_heads, l0=l0, losses=losses,
                      attention=attention, attribution=attribution, base=base, study=study, null=null, agreement=agreement,
                      heads=heads, seconds=time.perf_counter() - start, n_boot=n_boot)


# --------------------------------------------------------------------------------------------
# The phase change three ways (the toy-model page)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseChange:
    """The toy model's phase change seen by the loss, the attention patterns and the response.

    Attributes:
        log: the training log (:func:`.models.toy.load_training_log`).
        T, seeds, eps: the induction measurement (:func:`induction_through_training`).
        phase: the phase change step (:func:`phase_change_step`).
        loss_lo, loss_hi: the loss drop (:func:`loss_drop`).
        used: the measured checkpoint steps (:func:`measurement_steps`), ascending.
        before: the last measured step before the loss drop; ``last``: the last saved step.
        gap: steps between saved checkpoints (the recipe's ``checkpoint_every``).
        trace: the output of :func:`induction_through_training` (matrices at ``before`` and ``last``).
        rows: its rows as a frame, one per (step, stream ``layer`` = 1..L).
        top: the rows of stream ``L`` (the last block's), indexed by step.
        loss: ``step``, ``first copy``, ``second copy``: the copy losses of every saved checkpoint.
        att_rise, resp_rise: steps where the last block's attention score, and its response score
            in factors (log scale, the score is a ratio), cover half of their rise (:func:`rise_step`).
        resp_onset: step from which the response CI stays above 1 (:func:`onset_step`).
        resp_emerge: first step whose response CI lies above :data:`EMERGENCE_THRESHOLD`.
    """

    log: dict
    T: int
    seeds: int
    eps: float
    phase: int
    loss_lo: int
    loss_hi: int
    used: list
    before: int
    last: int
    gap: int
    trace: dict
    rows: pd.DataFrame
    top: pd.DataFrame
    loss: pd.DataFrame
    att_rise: int | None
    resp_rise: int | None
    resp_onset: int | None
    resp_emerge: int | None

    @property
    def L(self) -> int:
        """The last stream ``L``, the one the last block writes (:mod:`.streams`)."""
        return int(self.rows.layer.max())

    @property
    def advantage(self) -> pd.Series:
        """Second-copy advantage (first-copy minus second-copy loss, nats) at every saved checkpoint."""
        return self.loss["first copy"] - self.loss["second copy"]


def follow_phase_change(log: dict, *, T: int, seeds: int, eps: float, n_outside: int,
                        device: str | torch.device = "cpu") -> PhaseChange:
    """Measure both induction scores across the loss drop of the cached toy model (:class:`PhaseChange`).

    Every checkpoint across the drop is measured (:func:`measurement_steps`), so *when* a score
    moves is resolved to one checkpoint whatever ``n_outside`` a build affords; the response
    matrices are kept at the last measured step before the drop and at the last checkpoint.

    Raises:
        RuntimeError: the training log shows no phase change.
    """
    phase = phase_change_step(log)
    if phase is None:
        raise RuntimeError("the toy model shows no phase change in its training log")
    loss_lo, loss_hi = loss_drop(log)  # the advantage passes 10 % and 90 % of its final size
    used = measurement_steps(log, n_outside)
    before = max(s for s in used if s < loss_lo)
    last = toy_checkpoint_steps()[-1]
    trace = induction_through_training(used, T=T, seeds=seeds, eps=eps, matrices_at=[before, last], device=device)
    rows = pd.DataFrame(trace["rows"])
    top = rows[rows.layer == int(rows.layer.max())].set_index("step")
    ck = log["checkpoints"]
    loss = pd.DataFrame({"step": ck["step"], "first copy": ck["first_copy_loss"], "second copy": ck["second_copy_loss"]})
    return PhaseChange(
        log=log, T=T, seeds=seeds, eps=eps, phase=phase, loss_lo=loss_lo, loss_hi=loss_hi, used=used,
        before=before, last=last, gap=log["recipe"]["checkpoint_every"], trace=trace, rows=rows, top=top, loss=loss,
        att_rise=rise_step(top.index, top.attention),
        resp_rise=rise_step(top.index, np.log(top.response)),
        resp_onset=onset_step(top.index, top.response_lo),
        resp_emerge=emergence_layer(list(top.index), list(top.response_lo)),
    )


def _onset_words(top, onset: int | None) -> str:
    """Where the response's interval first lies above 1 and where it stays there, in words: the two
    differ where an early interval clears 1 and a later one reaches back to it."""
    above = [int(s) for s, lo in zip(top.index, top.response_lo) if lo > 1]
    if onset is None:
        return "never stays above 1" + (f" (it lies above 1 at step{'s' if len(above) > 1 else ''} "
                                          f"{', '.join(map(str, above))})" if above else "")
    if above[0] == onset:
        return f"leaves 1 at step {onset} and stays above it from there"
    back = [int(s) for s, lo in zip(top.index, top.response_lo) if above[0] < s < onset and lo <= 1]
    return (f"first lies above 1 at step {above[0]}, reaches back to 1 at step "
            f"{', '.join(map(str, back))}, and stays above it from step {onset} on")


def phase_facts(pc: PhaseChange) -> dict:
    """The numbers the toy-model page quotes about :class:`PhaseChange` ``pc``, by name.

    Steps and scores of the three views (loss, attention, response) at step 0 (``_0``), just
    before the drop (``_before``) and at the end (``_last``); the two-stage drop (how much of the
    advantage context statistics give before the phase change, against the bound
    ``ln((vocab_size - 1) / eval_T)`` of betting evenly on the first copy's tokens); and where
    the attention pattern settles (90 % of its top after the phase change) against the loss and
    the response at that step.
    """
    top, loss, adv, recipe = pc.top, pc.loss, pc.advantage, pc.log["recipe"]
    at_before = loss.step == pc.before
    plateau_adv = float(adv[at_before].iloc[0])
    facts = {
        "resp_onset": str(pc.resp_onset), "gap": pc.gap, "phase": pc.phase, "before": pc.before, "last": pc.last,
        "n_used": len(pc.used), "used_list": ", ".join(str(s) for s in pc.used),
        "T_len": pc.T, "n_seeds": pc.seeds, "eps": pc.eps, "L": pc.L,
        "att_rise": pc.att_rise, "resp_rise": pc.resp_rise, "resp_emerge": str(pc.resp_emerge),
        "resp_lag": pc.resp_rise - pc.phase, "loss_lo": pc.loss_lo, "loss_hi": pc.loss_hi,
        "adv_final": float(adv.iloc[-1]), "second_final": float(loss["second copy"].iloc[-1]),
        "first_final": float(loss["first copy"].iloc[-1]), "first_peak": float(loss["first copy"].max()),
        "adv_before": plateau_adv, "adv_before_frac": plateau_adv / float(adv.iloc[-1]),
        "in_context_bound": float(np.log((recipe["vocab_size"] - 1) / recipe["eval_T"])),
        "gain_before": float(pc.log["uniform_loss"] - loss["second copy"][at_before].iloc[0]),
        "first_before": float(loss["first copy"][at_before].iloc[0]),
    }
    facts["resp_onset_text"] = _onset_words(top, pc.resp_onset)
    d = pc.att_rise - pc.phase
    facts["att_vs_phase_text"] = ("at the loss's phase change step itself" if d == 0 else
                                  f"{abs(d)} steps {'after' if d > 0 else 'before'} the loss's phase change step")
    for name, step in [("0", pc.used[0]), ("before", pc.before), ("last", pc.last)]:
        facts[f"att_{name}"] = float(top.attention[step])
        facts[f"attc_{name}"] = float(top.attention_control[step])
        facts[f"resp_{name}"] = float(top.response[step])
        facts[f"resp_lo_{name}"] = float(top.response_lo[step])
        facts[f"resp_hi_{name}"] = float(top.response_hi[step])
    facts["att_head_last"] = int(top.attention_head[pc.last])
    att_level = float(top.attention[top.index >= pc.phase].max())
    settled = next(s for s in top.index if s >= pc.phase and top.attention[s] >= 0.9 * att_level)
    facts.update(att_settled=settled, resp_settled=float(top.response[settled]),
                 second_settled=float(loss["second copy"][loss.step == settled].iloc[0]))
    # the response after the pattern settles is not monotone: say where it peaks and where it ends
    after = top.response[top.index >= settled]
    peak = int(after.idxmax())
    facts.update(resp_peak_step=peak, resp_peak=float(top.response[peak]), resp_peak_lo=float(top.response_lo[peak]),
                 resp_peak_hi=float(top.response_hi[peak]))
    ci = f"[{top.response_lo[pc.last]:.2f}, {top.response_hi[pc.last]:.2f}]"
    facts["resp_after_text"] = (
        f"grows from {facts['resp_settled']:.2f} to {facts['resp_last']:.2f} {ci} at the last step, {pc.last}"
        if peak == pc.last else
        f"goes from {facts['resp_settled']:.2f} to a peak of {facts['resp_peak']:.2f} [{facts['resp_peak_lo']:.2f}, "
        f"{facts['resp_peak_hi']:.2f}] at step {peak}, then ends at {facts['resp_last']:.2f} {ci} at the last step, "
        f"{pc.last}")
    facts["resp_setting"] = setting_text(pc.T, pc.seeds, pc.eps)
    facts["resp_late_text"] = (f"goes on rising after the loss drop has ended, to its peak at step {peak}"
                               if peak > pc.loss_hi else f"peaks at step {peak}, inside the loss drop")
    return facts


def phase_contrasts(pc: PhaseChange, n_boot: int = 1000, seed: int = 0) -> dict:
    """How the induction stripe stands out of the last read layer's response matrix, before and after.

    The mean response on the lag ``T-1`` stripe (``contrast_<when>``) and on the duplicate-token
    lag ``T`` (``dup_contrast_<when>``), each divided by the mean on the lag ``T-2`` diagonal:
    one position closer, so favoured by the decay with distance. ``<when>`` is ``before``
    (:attr:`PhaseChange.before`) or ``last``; ``read_last`` is the read layer. Each ratio has a 95 %
    percentile interval over the sequences (``<name>_lo``, ``<name>_hi``): a replicate resamples
    the seeds and divides their mean responses at the two lags (the point is the same ratio of
    means over all seeds).
    """
    from ..stats import percentile_interval

    trace, T = pc.trace, pc.T
    read_last = trace["read_layers"][-1]
    facts = {"read_last": read_last}
    rng = np.random.default_rng(seed)
    for name, step in [("before", pc.before), ("last", pc.last)]:
        per_seed = np.stack([distance_profile(m, trace["read_layers"], trace["sources"], [read_last])
                             .set_index("distance")["mean chi"].to_numpy()
                             for m in trace["seed_matrices"][step]["repeated"]])  # [n_seeds, distance - 1]
        at = {lag: per_seed[:, lag - 1] for lag in (T - 2, T - 1, T)}  # distance d sits in column d - 1
        picks = rng.integers(0, per_seed.shape[0], (n_boot, per_seed.shape[0]))
        for key, lag in ((f"contrast_{name}", T - 1), (f"dup_contrast_{name}", T)):
            facts[key] = float(at[lag].mean() / at[T - 2].mean())
            lo, hi = percentile_interval(at[lag][picks].mean(axis=1) / at[T - 2][picks].mean(axis=1), 0.95)
            facts[f"{key}_lo"], facts[f"{key}_hi"] = float(lo), float(hi)
    return facts
