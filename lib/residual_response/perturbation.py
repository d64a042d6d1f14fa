"""Perturbation directions and the perturbed residual stream.

The perturbation at layer ``l0`` and source position ``s`` is

    h[l0, s]  ->  h[l0, s] + eps * ||h[l0, s]|| * u

with ``u`` a unit vector. ``eps`` is therefore a *relative* strength, comparable across layers,
positions and models whose stream norms differ by orders of magnitude (Gemma's BOS token, say).

Two kinds of direction:

* ``"gaussian"``: isotropic, drawn independently per source and per repeat. Averaging the
  response over repeats estimates the direction-averaged response.
* ``"embedding"``: towards another token, ``u ∝ E(v) - E(x_s)`` with ``E`` the input embedding as
  the model feeds it to block 0 (scaled for Gemma) and ``v`` a random ordinary token. At
  ``l0 = 0`` and ``eps * ||h|| = ||E(v) - E(x_s)||`` this turns token ``x_s`` into ``v``; weak
  ``eps`` is a small step of that token swap.
"""

from __future__ import annotations

import torch

from .checks import check_choice, check_int, check_seed
from .models import LoadedModel

__all__ = ["DIRECTION_KINDS", "perturbation_directions", "apply_perturbation"]

DIRECTION_KINDS = ("gaussian", "embedding")


def perturbation_directions(
    lm: LoadedModel,
    tokens: torch.Tensor,
    sources: torch.Tensor,
    n_directions: int,
    kind: str = "gaussian",
    seed: int = 0,
) -> torch.Tensor:
    """Unit directions, one per (source, repeat).

    Args:
        tokens: ``[N]`` the sequence (used by ``"embedding"`` directions).
        sources: ``[S]`` source positions.
        n_directions: repeats ``K`` per source.
        kind: ``"gaussian"`` or ``"embedding"``.
        seed: generator seed; directions are drawn in float64 on the CPU so a seed gives the same
            directions on every device and dtype.

    Returns:
        ``[S, K, d]`` float64 CPU tensor of unit vectors.
    """
    check_choice(kind, "direction", DIRECTION_KINDS)
    return _directions(lm, tokens, sources, check_int(n_directions, "n_directions", minimum=1), kind, check_seed(seed))


def _directions(lm: LoadedModel, tokens: torch.Tensor, sources: torch.Tensor, n_directions: int, kind: str,
                seed: int) -> torch.Tensor:
    """:func:`perturbation_directions` of validated arguments (the engine's own, checked once)."""
    gen = torch.Generator().manual_seed(seed)
    S, K, d = len(sources), n_directions, lm.d_model
    if kind == "gaussian":
        u = torch.randn(S, K, d, generator=gen, dtype=torch.float64)  # [S, K, d]
    else:
        vocab = lm.ordinary_token_ids
        other = vocab[torch.randint(len(vocab), (S, K), generator=gen)]  # [S, K]
        embed = lm.model.get_input_embeddings()
        with torch.no_grad():
            e_other = embed(other.to(lm.device)).double().cpu()  # [S, K, d]
            e_self = embed(tokens[sources].to(lm.device)).double().cpu()  # [S, d]
        u = e_other - e_self[:, None, :]
        # a source whose drawn token equals its own gives a zero vector: fall back to Gaussian
        zero = u.norm(dim=-1) == 0
        if zero.any():
            u[zero] = torch.randn(int(zero.sum()), d, generator=gen, dtype=torch.float64)
    return u / u.norm(dim=-1, keepdim=True)


def apply_perturbation(
    h: torch.Tensor, positions: torch.Tensor, directions: torch.Tensor, eps: torch.Tensor
) -> torch.Tensor:
    """Perturb one position per batch row, in place.

    Args:
        h: ``[B, n, d]`` streams at layer ``l0`` (already offset so that ``positions`` index it).
        positions: ``[B]`` the perturbed position of each row.
        directions: ``[B, d]`` unit directions.
        eps: ``[B]`` relative strengths.

    Returns:
        ``h`` itself, with ``h[b, positions[b]] += eps[b] * ||h[b, positions[b]]|| * directions[b]``.
    """
    rows = torch.arange(h.shape[0], device=h.device)
    base = h[rows, positions]  # [B, d]
    scale = (eps.to(device=h.device, dtype=torch.float64) * base.double().norm(dim=-1))[:, None]  # [B, 1]
    h[rows, positions] = (base.double() + scale * directions.to(h.device).double()).to(h.dtype)
    return h
