"""An independent, deliberately naive implementation of the perturbation and the response chi as
book/method.md defines them (its sections "Perturbation" and "Response"), for comparisons.

One full forward pass (LM head included) per source position and direction, the perturbation
added by a hook on block ``l0``, the streams read with ``output_hidden_states`` (blocks 0..L-1
inputs) and a hook on the last block's output (``h[L]`` before the final norm). It shares no code
with the engine but the direction generator, so that both perturb along the same vectors.
"""

import numpy as np
import torch


def _streams(lm, tokens, pre_hook=None):
    """[L+1, N, d] streams: hidden_states[0..L-1] and the last block's raw output."""
    out = {}
    blocks = lm.blocks
    handles = [blocks[-1].register_forward_hook(
        lambda m, a, o: out.__setitem__("last", (o[0] if isinstance(o, tuple) else o)[0].detach().clone()))]
    if pre_hook is not None:
        handles.append(pre_hook)
    try:
        with torch.no_grad():
            res = lm.model(input_ids=tokens[None].to(lm.device), output_hidden_states=True)
    finally:
        for h in handles:
            h.remove()
    hs = [h[0] for h in res.hidden_states[: lm.n_layers]] + [out["last"]]
    return torch.stack(hs)


def naive_chi(lm, tokens, eps, l0, directions):
    """chi [L+1-l0, N(source), N(target)] averaged over directions [N, K, d] (float64 numpy)."""
    N = len(tokens)
    K = directions.shape[1]
    clean = _streams(lm, tokens).double()
    chi = np.zeros((lm.n_layers + 1 - l0, N, N))
    for s in range(N):
        for k in range(K):
            u = directions[s, k]

            def pre(module, args, kwargs, s=s, u=u):
                h = (args[0] if args else kwargs["hidden_states"]).clone()
                base = h[0, s].double()
                h[0, s] = (base + eps * base.norm() * u.to(h.device)).to(h.dtype)
                if args:
                    return (h, *args[1:]), kwargs
                return args, {**kwargs, "hidden_states": h}

            fed = {}

            def pre_and_record(module, args, kwargs):
                out = pre(module, args, kwargs)
                fed["h"] = (out[0][0] if out[0] else out[1]["hidden_states"])[0].detach().clone()
                return out

            handle = lm.blocks[l0].register_forward_pre_hook(pre_and_record, with_kwargs=True)
            pert = _streams(lm, tokens, handle).double()
            # HF records hidden_states[l0] before our pre-hook runs: use the stream block l0 was fed
            pert[l0] = fed["h"].double()
            r = (pert - clean).norm(dim=-1) / clean.norm(dim=-1)  # [L+1, N]
            chi[:, s, :] += r[l0:].cpu().numpy() / eps
    return chi / K


def rel_diff_from_naive(lm, tokens, l0, *, eps=1e-2, n_directions=2, seed=0):
    """Max relative difference of the engine's chi from :func:`naive_chi` (same directions), at ``l0``."""
    from residual_response.engine import response
    from residual_response.perturbation import perturbation_directions

    N = len(tokens)
    res = response(lm, tokens, [eps], l0=l0, n_directions=n_directions, seed=seed)
    dirs = perturbation_directions(lm, tokens, torch.arange(N), n_directions, "gaussian", seed)
    ref = naive_chi(lm, tokens, eps, l0, dirs)  # [n_read, N, N]
    return float(np.abs(res.chi[0] - ref).max() / np.abs(ref).max())
