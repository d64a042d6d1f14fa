"""Head attribution from the response: which heads carry the induction stripe.

Perturb source ``k`` (the first ``a_k``) at layer ``l0`` and look at every attention head's output
``z_h`` (its slice of the input to the attention output projection) at the stripe target
``T+k-1``. A head that attends from ``T+k-1`` back to ``k`` moves strongly; others barely do.

    head_chi[b, h] = mean_k || z~_h[T+k-1] - z_h[T+k-1] || / (eps * || z_h[T+k-1] ||)

and the head's attribution score is the ratio of ``head_chi`` on repeated sequences to the same
entries of their twins (the same first copy, a fresh second half; :mod:`.sequences`), so only
the repeat differs between the two. Heads ``(block, head)``,
block ``b`` in ``l0..L-1``, are ranked by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .ablation import head_output_projection
from .checks import check_bootstrap, check_eps, check_eps_policy, check_int, check_seeds, keyword_alias, validate_l0
from .models import LoadedModel
from .perturbation import apply_perturbation, perturbation_directions
from .resultfile import renamed
from .sequences import induction_layout, make_sequence, validate_length
from .stats import bootstrap_ratio
from .streams import block_hidden_input, hooked, replace_block_input, skip_blocks

__all__ = ["HeadAttribution", "head_attribution", "head_stripe_response"]


@dataclass
class HeadAttribution:
    """Per-head stripe response and score.

    ``l0`` is the perturbed stream. ``score``/``ci_low``/``ci_high``/``repeated``/``control``
    are ``[L, H]`` indexed ``[block, head]`` (``nan`` for blocks before ``l0``, which the
    perturbation cannot reach).
    """

    model: str
    T: int
    seeds: list[int]
    l0: int
    eps: float
    score: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    repeated: np.ndarray
    control: np.ndarray

    layer = renamed("l0", "layer")

    def ranking(self, k: int | None = None) -> list[tuple[int, int, float]]:
        """Heads ``(block, head, score)`` by decreasing score (finite scores only)."""
        flat = [(int(b), int(h), float(self.score[b, h])) for b in range(self.score.shape[0])
                for h in range(self.score.shape[1]) if np.isfinite(self.score[b, h])]
        flat.sort(key=lambda x: -x[2])
        return flat if k is None else flat[:k]


@torch.no_grad()
@keyword_alias(layer="l0")
def head_stripe_response(
    lm: LoadedModel, tokens: torch.Tensor, sources: torch.Tensor, targets: torch.Tensor, *,
    l0: int = 0, eps: float = 1e-2, n_directions: int = 1, seed: int = 0,
) -> np.ndarray:
    """``head_chi`` for given (source, target) pairs: ``[n_pairs, L, H]`` over blocks and heads
    (``nan`` for blocks below ``l0``).

    One batched forward pass: row ``i`` perturbs ``sources[i]`` (``n_directions`` rows each,
    averaged) and reads every head's output at ``targets[i]``.
    """
    L, H = lm.n_layers, lm.n_heads
    P = len(sources)
    K = n_directions
    projections = [head_output_projection(lm, b) for b in range(L)]
    clean: dict[int, torch.Tensor] = {}
    stream0: dict[str, torch.Tensor] = {}

    def capture(store, b):
        def pre(module, args, kwargs):
            store[b] = block_hidden_input(args, kwargs).detach().clone()  # [B, N, H * d_head]
        return pre

    def grab_l0(module, args, kwargs):
        stream0["h"] = block_hidden_input(args, kwargs)[0].detach().clone()  # [N, d]

    with hooked([(projections[b], "pre", capture(clean, b)) for b in range(l0, L)] + [(lm.blocks[l0], "pre", grab_l0)]):
        lm.base_model(input_ids=tokens[None].to(lm.device), use_cache=False)

    dirs = perturbation_directions(lm, tokens, sources, K, "gaussian", seed).reshape(P * K, -1)  # [P*K, d]
    src_rows = sources.repeat_interleave(K)  # [P*K]
    tgt_rows = targets.repeat_interleave(K)
    h0 = stream0["h"].unsqueeze(0).expand(P * K, -1, -1).clone()  # [P*K, N, d]
    apply_perturbation(h0, src_rows.to(lm.device), dirs, torch.full((P * K,), float(eps)))
    pert: dict[int, torch.Tensor] = {}

    def feed(module, args, kwargs):
        return replace_block_input(args, kwargs, h0)

    hooks = [(lm.blocks[l0], "pre", feed)] + [(projections[b], "pre", capture(pert, b)) for b in range(l0, L)]
    with skip_blocks(lm, l0), hooked(hooks):
        lm.base_model(input_ids=tokens[None].expand(P * K, -1).to(lm.device), use_cache=False)

    out = np.full((P, L, H), np.nan)
    rows = torch.arange(P * K)
    for b in range(l0, L):  # blocks at and after l0: their attention sees the perturbed stream
        z_clean = clean[b][0, tgt_rows].double().reshape(P * K, H, -1)  # [P*K, H, d_head]
        z_pert = pert[b][rows, tgt_rows].double().reshape(P * K, H, -1)
        rel = (z_pert - z_clean).norm(dim=-1) / (eps * z_clean.norm(dim=-1).clamp_min(1e-30))  # [P*K, H]
        out[:, b, :] = rel.reshape(P, K, H).mean(dim=1).cpu().numpy()
    return out


@keyword_alias(layer="l0")
def head_attribution(
    lm: LoadedModel, T: int = 20, seeds: Sequence[int] | int = 4, *, l0: int = 0, eps: float = 1e-2,
    n_directions: int = 1, n_boot: int = 500,
) -> HeadAttribution:
    """Rank heads by the response of their output at the induction-stripe targets.

    Args:
        T: copy length; seeds: an int ``K`` (seeds ``0..K-1``) or a list.
        l0: perturbed stream (``layer=`` is its old name); eps: relative strength (inside the universal regime).
    """
    validate_length(lm, T)
    validate_l0(lm, l0)
    eps = check_eps(eps)
    check_eps_policy(eps, lm.dtype)  # above 1 refused, below the floor warned (checks.allow_eps)
    seed_list = check_seeds(seeds)
    check_int(n_directions, "n_directions", minimum=1)
    check_bootstrap(n_boot, 0.95)
    lay = induction_layout(lm, T)
    src, tgt = lay.induction_sources, lay.induction_targets
    per_kind = {"repeated": [], "control": []}
    for seed in seed_list:
        for key, kind in (("repeated", "repeated"), ("control", "twin")):
            tokens = make_sequence(lm, kind, T, seed)
            per_kind[key].append(head_stripe_response(lm, tokens, src, tgt, l0=l0, eps=eps,
                                                      n_directions=n_directions, seed=seed))
    rep = np.stack(per_kind["repeated"])  # [n_seeds, P, L, H]
    ctrl = np.stack(per_kind["control"])
    L, H = lm.n_layers, lm.n_heads
    flat = lambda a: a.reshape(a.shape[0], a.shape[1], L * H).transpose(0, 2, 1)  # [n_seeds, L*H, P]
    score, lo, hi = bootstrap_ratio(np.nan_to_num(flat(rep)), np.nan_to_num(flat(ctrl)), n_boot=n_boot)
    below = np.zeros((L, H), bool)
    below[:l0] = True
    shape = lambda a: np.where(below, np.nan, a.reshape(L, H))
    return HeadAttribution(
        model=lm.name, T=T, seeds=seed_list, l0=l0, eps=eps,
        score=shape(score), ci_low=shape(lo), ci_high=shape(hi),
        repeated=shape(np.nanmean(rep, axis=(0, 1))), control=shape(np.nanmean(ctrl, axis=(0, 1))),
    )
