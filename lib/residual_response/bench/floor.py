"""The two reference implementations the engine is timed against: the naive loop and the floor.

* :func:`naive_response`: the loop a researcher writes first (:data:`~.record.NAIVE_DEFINITION`).
* :func:`floor_passes`: plain forward passes of only the necessary work, in one of several
  schedules (:func:`_schedule`), from a clean pass prepared by :func:`_timed_clean`
  (:data:`~.record.FLOOR_DEFINITION`).

The floor runs the engine's own passes (:class:`~residual_response.engine.PaddedPass` and
:class:`~residual_response.engine.PackedPass`) with nothing read, on the engine's batch plan
(:func:`~residual_response.engine.source_batches`), so that it does exactly the work the engine
must do and nothing else. Times are read from the
:class:`~.clock.Clock` passed in.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..models import LoadedModel
from ..engine import CleanPass, PackedPass, PaddedPass, source_batches
from ..streams import block_hidden_input, block_output, hooked, replace_block_input
from .clock import Clock

__all__ = ["naive_response", "floor_passes"]


def naive_response(lm: LoadedModel, tokens: torch.Tensor, eps: float, l0: int, directions: torch.Tensor) -> np.ndarray:
    """The loop a researcher writes first (see :data:`~.record.NAIVE_DEFINITION`).

    Args:
        tokens: ``[N]`` token ids.
        eps: relative strength.
        l0: perturbed stream.
        directions: ``[N, d]`` unit directions, one per source.

    Returns:
        ``[L + 1 - l0, N, N]`` float64 ``chi[l - l0, s, t]``.
    """
    L, N = lm.n_layers, int(tokens.shape[0])
    ids = tokens[None].to(lm.device)

    def streams(pre_hook=None) -> torch.Tensor:
        last = {}

        def grab_last(module, args, output):
            last["h"] = block_output(output)[0].detach()

        hooks = [(lm.blocks[L - 1], "post", grab_last)]
        if pre_hook is not None:
            hooks.append((lm.blocks[l0], "pre", pre_hook))
        with hooked(hooks), torch.no_grad():
            out = lm.model(input_ids=ids, output_hidden_states=True)
        return torch.stack([h[0] for h in out.hidden_states[:L]] + [last["h"]]).double()  # [L+1, N, d]

    clean = streams()
    clean_norm = clean.norm(dim=-1)
    chi = np.zeros((L + 1 - l0, N, N))
    for s in range(N):
        fed = {}

        def perturb(module, args, kwargs, s=s):
            h = block_hidden_input(args, kwargs).clone()
            base = h[0, s].double()
            h[0, s] = (base + eps * base.norm() * directions[s].to(h.device).double()).to(h.dtype)
            fed["h"] = h[0]
            return replace_block_input(args, kwargs, h)

        pert = streams(perturb)
        pert[l0] = fed["h"].double()  # HF records hidden_states[l0] before the pre-hook runs
        r = (pert - clean).norm(dim=-1) / clean_norm  # [L+1, N]
        chi[:, s, :] = (r[l0:] / eps).cpu().numpy()
    return chi


def _schedule(name: str, sources: Sequence[int], N: int, lm: LoadedModel) -> list[list[int]]:
    """Batches of sources (in order) of one floor schedule."""
    srcs = sorted(sources)
    if name == "exact":
        return [[s] for s in srcs]
    if name.startswith("chunk-"):
        b = int(name.split("-", 1)[1])
        return [srcs[i:i + b] for i in range(0, len(srcs), b)]
    if name in ("planned", "packed"):
        return source_batches(lm, srcs, N, packed=name == "packed")
    raise ValueError(f"unknown floor schedule {name!r}; use exact, chunk-<b>, planned or packed")


def floor_passes(lm: LoadedModel, tokens: torch.Tensor, clean: CleanPass, l0: int, batches: list[list[int]],
                 eps: float, directions: torch.Tensor, packed: bool = False, *, clock: Clock) -> float:
    """Seconds of the plain perturbed passes of one schedule (see :data:`~.record.FLOOR_DEFINITION`).

    The engine's own passes (:class:`~residual_response.engine.PaddedPass`, or
    :class:`~residual_response.engine.PackedPass` with ``packed``), one per batch, run with
    nothing read. ``clean`` must hold the streams, the keys/values and (for ``packed``) the
    attention inputs (:func:`_timed_clean`). Every pass is built first (inputs, perturbation,
    key/value caches); only the runs are timed.
    """
    kind = PackedPass if packed else PaddedPass
    with torch.no_grad():
        passes = [kind(lm, tokens, clean, l0, [lm.n_layers], torch.tensor(batch), directions[torch.tensor(batch)],
                       torch.full((len(batch),), float(eps))) for batch in batches]
    start = clock.now()
    with torch.no_grad():
        for one in passes:
            one.run(record=False)
    return clock.now() - start


def _timed_clean(lm: LoadedModel, tokens: torch.Tensor, clock: Clock) -> tuple[CleanPass, float]:
    """The clean pass the floor starts from (every stream, keys/values, attention inputs), timed."""
    start = clock.now()
    clean = CleanPass.full(lm, tokens)
    return clean, clock.now() - start
