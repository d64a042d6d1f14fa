"""The "Use it" cells of the build-it-yourself exercises: the student's function put to work on a trained model.

A check (:mod:`residual_response.exercises`) says whether a student's function agrees with the
library on small cases; it does not show what the function is for. Each function here runs the
student's function on a real measurement of a trained model (the pages pass the toy GPT-2,
``toy-gpt2``: 2 blocks of 4 heads, seconds on a CPU) and lays its result beside the library's,
so the student sees their own code find what the page is about:

- :func:`use_chi_one_source` (Build it yourself 1): the response matrix of every source, from the
  student's kick, and how far its induction stripe stands out at each stream;
- :func:`use_stripe_ratio` (2c): the stripe of repeated sequences over their twins', stream by stream;
- :func:`use_writing_blocks` (4c): the blocks that write a stripe in each section map of its page;
- :func:`use_twin_score` (3): the induction score profile over the streams, from the student's score;
- :func:`use_half_rise` (3b): where the score of each of the page's models rises, by the student's rule;
- :func:`use_bootstrap_twin_score` (4): the score profile with the student's intervals;
- :func:`use_head_attention` (5): the model's induction heads, ranked by the student's attention score;
- :func:`use_mean_ablation` (6): the loss on the second copy with each head mean-ablated by the
  student's hook;
- :func:`use_permutation_p_value` (6b): the page's own ablations ranked by the student's p-value.

Each returns a table (a pandas ``Styler`` whose caption carries the setting), or ``None`` after
one line when the student's function is still the stub (``name: not implemented yet``) or raises
(:func:`~residual_response.exercises.harness.apply_student`, the same line the checks print).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from ..ablation import ablate_heads, head_means
from ..attention import induction_attention_scores
from ..behaviour import copy_losses
from ..engine import response
from ..exercises.harness import CheckFailed, apply_student, as_array
from ..induction import induction_scores
from ..models import LoadedModel
from ..perturbation import perturbation_directions
from ..rise import half_rise_layer
from ..sequences import induction_layout, make_sequence
from .schematic import stripe_contrast
from .tables import fmt_eps, setting_text, styled

__all__ = ["use_chi_one_source", "use_stripe_ratio", "use_writing_blocks", "use_twin_score", "use_half_rise", "use_bootstrap_twin_score", "use_head_attention", "use_mean_ablation",
           "use_permutation_p_value", "last_stream_logits"]


def _received(value, shape: tuple[int, ...], what: str) -> np.ndarray:
    """The student's ``value`` as a float64 array of ``shape``, or :class:`CheckFailed` with one sentence."""
    out = as_array(value, what)
    if out.shape != shape:
        raise CheckFailed(f"expected {what} of shape {shape}, received shape {out.shape}")
    return out


def use_chi_one_source(chi_one_source: Callable, lm: LoadedModel, *, T: int, seed: int = 0, eps: float = 1e-2,
                       l0: int = 0):
    """Build it yourself 1 put to work: kick every position of one repeated sequence with the
    student's ``chi_one_source`` and read, stream by stream, how far the induction stripe of the
    matrix stands out (:func:`~residual_response.pages.schematic.stripe_contrast`: mean stripe
    entry over the mean of the other cells above the diagonal), beside the same from the library's
    :func:`~residual_response.response` with the same directions.

    Args:
        chi_one_source: the student's ``(lm, tokens, l0, source, eps, u) -> [L + 1 - l0, N]``.
        lm: the model; T, seed: the repeated sequence (``seed`` also draws the directions);
        eps, l0: the kick.

    Returns:
        a table, one row per read stream ``l0 + 1 .. L``, or ``None`` (module docstring).
    """
    tokens = make_sequence(lm, "repeated", T, seed=seed)  # [N]
    N, layout = len(tokens), induction_layout(lm, T)
    sources = list(range(N))
    u = perturbation_directions(lm, tokens, torch.tensor(sources), 1, "gaussian", seed)[:, 0]  # [N, d]
    reads = list(range(l0, lm.n_layers + 1))

    def use(fn):
        rows = [_received(fn(lm, tokens, l0, s, eps, u[s]), (len(reads), N), f"chi [L + 1 - l0, N] of source {s}")
                for s in sources]
        return np.stack(rows, axis=1)  # [n_read, N sources, N targets]

    yours = apply_student("chi_one_source", chi_one_source, use)
    if yours is None:
        return None
    library = response(lm, tokens, [eps], l0=l0, read_streams=reads, sources=sources, seed=seed).chi[0]  # [n_read, N, N]
    frame = pd.DataFrame([{"stream l": l, "stripe contrast, your chi": stripe_contrast(yours[i], layout),
                           "stripe contrast, library's response": stripe_contrast(np.asarray(library[i]), layout),
                           "largest |your chi - library's|": float(np.abs(yours[i] - np.asarray(library[i])).max()),
                           "setting": f"{lm.name}, T = {T}, seed {seed}, ε = {fmt_eps(eps)}, l0 = {l0}, every position kicked"}
                          for i, l in enumerate(reads) if l > l0])
    return styled(frame, {"largest |your chi - library's|": "{:.1e}"}, uuid="use-chi", precision=3,
                  caption="The induction stripe's contrast in the response matrix of every stream, from your kick and "
                          "from the library's (1: the stripe is no stronger than the average cell above the diagonal).")


def use_twin_score(twin_score: Callable, lm: LoadedModel, *, T: int, seeds: int | Sequence[int], eps: float = 1e-2,
                   l0: int = 0):
    """Build it yourself 3 put to work: the student's ``twin_score`` of every read stream of
    ``lm``, from the response matrices :func:`~residual_response.induction.induction_scores` keeps,
    beside the library's score and its 95 % bootstrap interval.

    Returns:
        a table, one row per read stream ``l0 + 1 .. L``, or ``None`` (module docstring).
    """
    res = induction_scores(lm, T=T, seeds=seeds, l0=l0, eps=eps, keep_matrices=True)
    rep, twin = res.stripes.matrices["repeated"], res.stripes.matrices["twin"]  # [S, n_read, T, N] each
    reads = list(res.read_streams)

    def use(fn):
        return [float(_received(fn(rep[:, i], twin[:, i], T), (), "the score (one number)")) for i, l in enumerate(reads)
                if l > l0]

    yours = apply_student("twin_score", twin_score, use)
    if yours is None:
        return None
    n_seeds = rep.shape[0]
    rows = [(l, s) for l, s in zip([l for l in reads if l > l0], yours)]
    frame = pd.DataFrame([{"stream l": l, "your score": s, "library's score": res.score[reads.index(l)],
                           "library's 95 % interval": f"[{res.ci_low[reads.index(l)]:.3f}, {res.ci_high[reads.index(l)]:.3f}]",
                           "setting": f"{lm.name}, {setting_text(T, n_seeds, eps, l0)}"} for l, s in rows])
    return styled(frame, uuid="use-twin", precision=3,
                  caption="The induction score of every stream: your twin_score on the library's response matrices, "
                          "and the library's score with its interval (1: no induction).")


def use_head_attention(head_induction_attention: Callable, lm: LoadedModel, *, T: int, seeds: int | Sequence[int],
                       top: int = 3):
    """Build it yourself 5 put to work: rank every head of ``lm`` by the student's attention score,
    averaged over repeated sequences, and lay the ranking beside the library's
    (:func:`~residual_response.attention.induction_attention_scores`).

    Returns:
        a table of the student's ``top`` heads, or ``None`` (module docstring).
    """
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    tokens = [make_sequence(lm, "repeated", T, seed=s) for s in seeds]
    L, H = lm.n_layers, lm.n_heads

    def use(fn):
        scores = [[[float(_received(fn(lm, tok, b, h, T), (), f"the score of head ({b}, {h})")) for h in range(H)]
                   for b in range(L)] for tok in tokens]
        return np.mean(scores, axis=0)  # [L, H]

    yours = apply_student("head_induction_attention", head_induction_attention, use)
    if yours is None:
        return None
    library = induction_attention_scores(lm, T=T, seeds=seeds).repeated.mean.double().cpu().numpy()  # [L, H]
    rank = {k: r for r, k in enumerate(np.argsort(-library, axis=None, kind="stable"), start=1)}
    uniform = float(np.mean(1.0 / (T + np.arange(2, T + 1))))
    order = np.argsort(-yours, axis=None, kind="stable")[:top]
    frame = pd.DataFrame([{"your rank": r, "head (block, head)": f"({i // H}, {i % H})", "your score": yours.flat[i],
                           "library's score": library.flat[i], "library's rank": rank[i],
                           "setting": f"{lm.name}, T = {T}, {len(seeds)} repeated sequences (seeds {seeds[0]}..{seeds[-1]}); "
                                      f"a uniform head scores {uniform:.3f}"}
                          for r, i in enumerate(order, start=1)])
    return styled(frame, uuid="use-heads", precision=3,
                  caption=f"The model's top {top} induction heads by your attention score, with the library's score "
                          f"and rank of each (of {L * H} heads).")


def last_stream_logits(lm: LoadedModel, stream: torch.Tensor) -> torch.Tensor:
    """``[N, V]`` the logits the model computes from its last stream ``[N, d]`` (stream ``L``, before the final norm).

    Why: an ablation given as streams (Build it yourself 6) is judged by what the model predicts
    from them; the final norm and the unembedding are the model's own modules (``ln_f`` in GPT-2,
    ``norm`` elsewhere), with Gemma 2's final soft-capping where the config has it.
    """
    base = lm.base_model
    norm = getattr(base, "ln_f", None)
    norm = getattr(base, "norm", None) if norm is None else norm
    if norm is None:
        raise TypeError(f"{lm.name}: no final norm (ln_f or norm) on {type(base).__name__}")
    with torch.no_grad():
        h = stream.to(device=lm.device, dtype=lm.dtype)
        logits = lm.model.get_output_embeddings()(norm(h)).float()
        cap = getattr(lm.config, "final_logit_softcapping", None)
        return cap * torch.tanh(logits / cap) if cap else logits


def use_mean_ablation(mean_ablated_streams: Callable, lm: LoadedModel, *, T: int, seeds: int | Sequence[int]):
    """Build it yourself 6 put to work: mean-ablate each head of ``lm`` in turn with the student's
    ``mean_ablated_streams`` and read the loss on the second copy of repeated sequences from the
    last stream (:func:`last_stream_logits`, :func:`~residual_response.behaviour.copy_losses`),
    beside the same loss under the library's :func:`~residual_response.ablation.ablate_heads`.
    An induction head is the one whose ablation makes the second copy hard to predict again.

    Returns:
        a table, one row per head and one without ablation, the largest second-copy loss first,
        or ``None`` (module docstring).
    """
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    tokens = [make_sequence(lm, "repeated", T, seed=s) for s in seeds]
    layout, means = induction_layout(lm, T), head_means(lm)  # means [L, H, d_head]
    heads = [(b, h) for b in range(lm.n_layers) for h in range(lm.n_heads)]

    def losses(logits_of) -> np.ndarray:  # [2]: mean loss on the first and on the second copy over the seeds
        pairs = [copy_losses(logits_of(tok)[None], tok[None].to(lm.device), layout) for tok in tokens]
        return np.array([float(np.mean([float(p[i][0]) for p in pairs])) for i in (0, 1)])

    def use(fn):
        def logits_of(b, h):
            def one(tok):
                streams = fn(lm, tok, b, h, means)
                if not isinstance(streams, torch.Tensor) or streams.shape != (lm.n_layers + 1, len(tok), lm.d_model):
                    got = tuple(streams.shape) if isinstance(streams, torch.Tensor) else type(streams).__name__
                    raise CheckFailed(f"expected streams [L + 1, N, d] = {(lm.n_layers + 1, len(tok), lm.d_model)}, "
                                      f"received {got}")
                return last_stream_logits(lm, streams[-1])
            return one
        return {head: losses(logits_of(*head)) for head in heads}

    yours = apply_student("mean_ablated_streams", mean_ablated_streams, use)
    if yours is None:
        return None

    def library(head):
        with torch.no_grad(), ablate_heads(lm, [head] if head else [], means=means):
            return losses(lambda tok: lm.model(input_ids=tok[None].to(lm.device), use_cache=False).logits[0])

    setting = f"{lm.name}, T = {T}, {len(seeds)} repeated sequences (seeds {seeds[0]}..{seeds[-1]}), mean over them"
    clean = library(None)
    rows = [{"ablated head": f"({b}, {h})", "second-copy loss, your streams": yours[(b, h)][1],
             "second-copy loss, library": library((b, h))[1], "first-copy loss, your streams": yours[(b, h)][0]}
            for b, h in heads]
    rows.sort(key=lambda r: -r["second-copy loss, your streams"])
    rows.insert(0, {"ablated head": "none (the model as it is)", "second-copy loss, your streams": clean[1],
                    "second-copy loss, library": clean[1], "first-copy loss, your streams": clean[0]})
    frame = pd.DataFrame(rows)
    return styled(frame.assign(setting=setting), uuid="use-ablation", precision=2,
                  caption="The loss (nats) on the second copy with each head mean-ablated by your hook, beside the "
                          "library's ablation, the largest of yours first (the first row: no head ablated); the first-copy loss, which induction does not "
                          "help, for comparison.")


def use_half_rise(half_rise_stream: Callable, results: dict, setting: str):
    """Build it yourself 3b put to work: the student's ``half_rise_stream`` on the score profile
    of each model the page measured (``results``: ``{model: InductionResult}``), beside the
    library's rule (:func:`~residual_response.rise.half_rise_layer`) and the emergence layer,
    which also asks the rise to beat resampling noise.

    Returns:
        a table, one row per model, or ``None`` (module docstring).
    """
    def use(fn):
        return {m: int(_received(fn(np.asarray(r.read_streams), np.asarray(r.score, dtype=float)), (),
                                 "a stream (one number)")) for m, r in results.items()}

    yours = apply_student("half_rise_stream", half_rise_stream, use)
    if yours is None:
        return None
    frame = pd.DataFrame([{"model": m, "your stream": yours[m], "library's half_rise_layer": half_rise_layer(r.read_streams, r.score),
                           "emergence layer (rise beyond noise)": r.emergence_layer, "setting": setting}
                          for m, r in results.items()])
    return styled(frame, uuid="use-half-rise",
                  caption="Where each model's induction score is half way up its rise: your rule, the library's, and "
                          "the emergence layer, which is missing where the rise does not beat resampling noise.")


def use_permutation_p_value(permutation_p_value: Callable, tests: dict, setting: str):
    """Build it yourself 6b put to work: the student's ``permutation_p_value`` of the page's own
    ablations (``tests``: ``{model: {named set: RankTest}}``), beside the library's p-value.

    Returns:
        a table, one row per model and named set, or ``None`` (module docstring).
    """
    def use(fn):
        return {(m, w): float(_received(fn(t.drop, np.asarray(t.random_drops, dtype=float)), (), "a p-value (one number)"))
                for m, by_set in tests.items() for w, t in by_set.items()}

    yours = apply_student("permutation_p_value", permutation_p_value, use)
    if yours is None:
        return None
    frame = pd.DataFrame([{"model": m, "named heads": w, "drop of the score": t.drop, "random draws": len(t.random_drops),
                           "your p-value": yours[(m, w)], "library's p-value": t.p_value, "setting": setting}
                          for m, by_set in tests.items() for w, t in by_set.items()])
    return styled(frame, uuid="use-p-value", precision=3,
                  caption="The page's ablations ranked among their random draws by your p-value and by the library's.")


def use_bootstrap_twin_score(bootstrap_twin_score: Callable, lm: LoadedModel, *, T: int, seeds: int | Sequence[int],
                             eps: float = 1e-2, l0: int = 0, n_boot: int = 1000, confidence: float = 0.95):
    """Build it yourself 4 put to work: the student's ``bootstrap_twin_score`` on the stripes of
    ``lm`` (:func:`~residual_response.induction.induction_scores`), stream by stream, beside the
    library's score and interval of the same stripes (other draws: the ends agree to resampling noise).

    Returns:
        a table, one row per read stream ``l0 + 1 .. L``, or ``None`` (module docstring).
    """
    res = induction_scores(lm, T=T, seeds=seeds, l0=l0, eps=eps, n_boot=n_boot, confidence=confidence)
    reads = list(res.read_streams)
    keep = [i for i, l in enumerate(reads) if l > l0]  # the kicked stream has no score
    parts = tuple(np.asarray(a)[:, keep] for a in res.stripes.parts("induction"))

    def use(fn):
        got = fn(*parts, n_boot=n_boot, confidence=confidence, seed=0)
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            raise CheckFailed(f"expected a tuple (score, low, high), received {type(got).__name__}")
        return [_received(g, (len(keep),), f"the {name} [n_layers]") for g, name in zip(got, ("score", "low", "high"))]

    yours = apply_student("bootstrap_twin_score", bootstrap_twin_score, use)
    if yours is None:
        return None
    score, low, high = yours
    frame = pd.DataFrame([{"stream l": reads[i], "your score": score[j], "your interval": f"[{low[j]:.3f}, {high[j]:.3f}]",
                           "library's score": res.score[i], "library's interval": f"[{res.ci_low[i]:.3f}, {res.ci_high[i]:.3f}]",
                           "setting": f"{lm.name}, {setting_text(T, len(res.stripes.seeds), eps, l0)}, n_boot = {n_boot}, "
                                      f"{confidence:.0%} intervals"} for j, i in enumerate(keep)])
    return styled(frame, uuid="use-bootstrap", precision=3,
                  caption="The induction score of every stream with your bootstrap interval, beside the library's "
                          "(other draws: the ends differ by resampling noise).")


def use_stripe_ratio(stripe_ratio: Callable, lm: LoadedModel, *, T: int, seeds: int | Sequence[int], eps: float = 1e-2,
                     l0: int = 0):
    """Build it yourself 2c put to work: the student's ``stripe_ratio`` on the response matrices of
    ``lm`` (mean over the seeds, every read stream), beside the same ratio of the library's stripe
    cells (:class:`~residual_response.sequences.InductionLayout`).

    Returns:
        a table, one row per read stream ``l0 + 1 .. L``, or ``None`` (module docstring).
    """
    res = induction_scores(lm, T=T, seeds=seeds, l0=l0, eps=eps, keep_matrices=True)
    rep, twin = (res.stripes.matrices[k].mean(axis=0) for k in ("repeated", "twin"))  # [n_read, T, N] each
    layout = induction_layout(lm, T)
    rows, cols = layout.induction_sources.numpy() - layout.offset, layout.induction_targets.numpy()
    reads = list(res.read_streams)

    def use(fn):
        with np.errstate(invalid="ignore", divide="ignore"):  # the kicked stream l0 itself: 0 / 0, not shown
            return _received(fn(rep, twin, T, bool(layout.offset)), (len(reads),), "the ratios [n_read]")

    yours = apply_student("stripe_ratio", stripe_ratio, use)
    if yours is None:
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        library = rep[:, rows, cols].mean(axis=1) / twin[:, rows, cols].mean(axis=1)  # [n_read]
    frame = pd.DataFrame([{"stream l": l, "your ratio": yours[i], "library's stripe cells": library[i],
                           "setting": f"{lm.name}, {setting_text(T, len(res.stripes.seeds), eps, l0)}"}
                          for i, l in enumerate(reads) if l > l0])
    return styled(frame, uuid="use-stripe-ratio", precision=3,
                  caption="The induction stripe of the repeated sequences over the same cells of their twins, per "
                          "stream: your stripe_ratio and the library's stripe cells (1: no difference).")


def use_writing_blocks(writing_blocks: Callable, maps: dict, setting: str):
    """Build it yourself 4c put to work: the student's ``writing_blocks`` on every section map of
    the page (``maps``: ``{model: SectionMap}``), beside
    :meth:`~residual_response.induction_result.SectionMap.writing_blocks`.

    Returns:
        a table, one row per model, or ``None`` (module docstring).
    """
    def blocks(got) -> list[int]:
        if not isinstance(got, (list, tuple, np.ndarray)):
            raise CheckFailed(f"expected a list of blocks, received {type(got).__name__}")
        return [int(b) for b in as_array(list(got), "a list of blocks").ravel()]

    def use(fn):
        return {m: blocks(fn(list(sm.l0s), np.asarray(sm.ci_low, dtype=float))) for m, sm in maps.items()}

    yours = apply_student("writing_blocks", writing_blocks, use)
    if yours is None:
        return None
    text = lambda blocks: ", ".join(map(str, blocks)) or "none"  # noqa: E731
    frame = pd.DataFrame([{"model": m, "kicked streams l0 (rows)": text(sm.l0s), "your writing blocks": text(yours[m]),
                           "library's": text(sm.writing_blocks()), "setting": setting} for m, sm in maps.items()])
    return styled(frame, uuid="use-writing",
                  caption="The blocks that write an induction stripe (the first read stream after the kick scores "
                          "clearly above 1), by your function and by the library, in each section map of this page.")
