"""The runs of an ablation study, each condition computed only from its first ablated block on.

Why: an ablation study (:func:`.ranked_ablation.ablation_study`) measures the induction score and
the copy losses under ~25 sets of ablated heads. Ablating heads of blocks ``b >= b_min`` changes
nothing before block ``b_min``: the clean pass, every perturbed row and every loss sequence are
those of the unablated model up to that block's input. So the unablated model runs once up to the
last block where a condition starts, keeping the streams entering those blocks, and each condition
runs only from its own first block (:mod:`.engine.variants` for the response, :func:`ablated_losses`
for the losses). The results are those of running every condition whole: the same rows, passes and
operations in the same order.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch

from .ablation import ablate_heads
from .behaviour import RepeatLoss, SecondCopyLoss, repeat_loss, second_copy_loss
from .cost import response_flops
from .engine.variants import run_response_variants
from .induction import InductionResult, InductionSetting, scores_from_stripes, sequence_units, stripes_from
from .models import LoadedModel
from .sequences import induction_layout
from .streams import block_output, hooked, replace_block_input, skip_blocks
from .workers import map_units

__all__ = ["ablated_losses", "ablated_scores", "first_block"]


def first_block(heads: Sequence[tuple[int, int]]) -> int | None:
    """The first block holding one of ``heads`` ``[(block, head), ...]`` (``None`` for no head):
    what the ablation changes starts there."""
    return min(int(b) for b, _ in heads) if heads else None


def ablated_scores(lm: LoadedModel, setting: InductionSetting, conditions: dict, *, mode: str = "mean",
                   means: torch.Tensor | None = None) -> dict[str, InductionResult]:
    """``{key: induction result}`` with the heads ``conditions[key]`` ablated (:func:`.ablation.ablate_heads`),
    each equal to :func:`.induction.run_induction` of ``setting`` inside that ablation.

    Each sequence of the setting is one unit (forked workers where they help, :func:`.workers.map_units`)
    that runs every condition from its first ablated block (:func:`.engine.variants.run_response_variants`).
    """
    layout = induction_layout(lm, setting.T)
    sources = list(range(layout.offset, layout.offset + setting.T))
    units = sequence_units(lm, setting)
    L = lm.n_layers
    variants = {key: (L if not hs else first_block(hs),
                      lambda hs=hs: ablate_heads(lm, hs, mode=mode, means=means))
                for key, hs in conditions.items()}

    def one(i: int) -> dict:
        seed, _key, tokens = units[i]
        return run_response_variants(setting.response_job(lm, tokens, sources, seed), variants)

    flops = len(conditions) * response_flops(lm, len(units[0][2]), sources, setting.l0, setting.n_directions)
    per_unit = map_units(one, range(len(units)), device=lm.device.type, unit_flops=flops)
    out = {}
    for key in conditions:
        res = scores_from_stripes(stripes_from(setting, units, [r[key] for r in per_unit], layout), model=lm.name,
                                  method=setting.method, n_directions=setting.n_directions, n_boot=setting.n_boot,
                                  confidence=setting.confidence)
        res.n_layers = L
        out[key] = res
    return out


@contextlib.contextmanager
def _recording(lm: LoadedModel, kept: dict[int, list]) -> Iterator[None]:
    """Append the stream entering block ``b`` to ``kept[b]`` on every forward call, for each key ``b >= 1``."""
    def make_post(b):
        def post(module, args, output):
            kept[b].append(block_output(output).detach().clone())
        return post

    with hooked([(lm.blocks[b - 1], "post", make_post(b)) for b in kept]):
        yield


@contextlib.contextmanager
def _resumed(lm: LoadedModel, block: int, inputs: list) -> Iterator[None]:
    """Skip blocks ``0..block-1`` and feed block ``block`` the kept ``inputs``, one per forward call, in order."""
    calls = iter(inputs)

    def pre(module, args, kwargs):
        return replace_block_input(args, kwargs, next(calls).clone())

    with skip_blocks(lm, block), hooked([(lm.blocks[block], "pre", pre)]):
        yield


def ablated_losses(lm: LoadedModel, T: int, seeds, conditions: dict, *, mode: str = "mean",
                   means: torch.Tensor | None = None, n_boot: int = 1000) -> dict[str, RepeatLoss | SecondCopyLoss]:
    """The copy losses with the heads ``conditions[key]`` ablated: a condition without heads gets the
    unablated :func:`.behaviour.repeat_loss`, every other one its second-copy loss
    (:func:`.behaviour.second_copy_loss`, all an ablation study reads of it).

    The unablated losses run whole, keeping the streams entering every block where a condition
    starts; each condition then runs from its first block.
    """
    starts = {key: first_block(hs) for key, hs in conditions.items()}
    kept: dict[int, list] = {b: [] for b in sorted({s for s in starts.values() if s})}
    with _recording(lm, kept):
        unablated = repeat_loss(lm, T, seeds, n_boot=n_boot)
    out = {}
    for key, hs in conditions.items():
        if not hs:
            out[key] = unablated
            continue
        start = starts[key]
        with ablate_heads(lm, hs, mode=mode, means=means), (_resumed(lm, start, kept[start]) if start
                                                            else contextlib.nullcontext()):
            out[key] = second_copy_loss(lm, T, seeds, n_boot=n_boot)
    return out
