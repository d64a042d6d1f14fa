"""The attention tap: every attention call of a model routed through a function of ours.

Why: the packed pass (:class:`~.passes.PackedPass`) lays the positions of many perturbed rows end
to end in one sequence; only attention mixes positions, so only attention must see the rows
apart. Hugging Face attention modules project, rotate and cache keys themselves and then call
the attention function registered for ``config._attn_implementation``; replacing that one
function for the duration of a pass hands us the queries, keys and values of every block
without copying any modeling code. The clean pass (:mod:`.clean`) uses the same tap to keep the
keys and values the attention received.

How: transformers keeps the registered functions in ``ALL_ATTENTION_FUNCTIONS``, an
``AttentionInterface`` whose built-in functions live in ``_global_mapping`` and whose
user-registered ones live in ``_local_mapping`` (looked up first). The tap registers a function
under the model's own implementation name (``ALL_ATTENTION_FUNCTIONS[impl] = routed``, which
writes ``_local_mapping``), and on exit restores the previous local entry or deletes its own.
``eager`` is not in the global mapping: each modeling file calls its own
``eager_attention_forward``, which the tap finds in the module of the attention class.

What breaks when transformers changes: both private attributes (``_local_mapping``,
``_global_mapping``) and the call signature ``fn(module, query, key, value, attention_mask,
**kwargs) -> (out [B, q, H, hd], weights)`` with a ``[B, 1, q, k]`` mask (bool or additive).
If the attributes are renamed the tap raises ``AttributeError`` (a failing test, not a silent
wrong answer); if a modeling file stops calling the registered function, the clean pass sees
fewer blocks than the model has, reports no attention inputs, and the engine falls back to
padded passes (slower, the same numbers); a model whose eager path has no
``eager_attention_forward`` raises :class:`TapUnsupported`, with the same fallback.
"""

from __future__ import annotations

import contextlib
import sys

from ..models import LoadedModel

__all__ = ["PACKABLE_ATTENTION", "TapUnsupported", "attention_tap", "packing_supported"]

#: Attention implementations whose functions take ``(module, q, k, v, mask, **kwargs)`` with a
#: ``[B, 1, q, k]`` mask (bool or additive) and return ``([B, q, H, hd], weights)``: the packed
#: pass can hand them one padded row per perturbed source.
PACKABLE_ATTENTION = ("sdpa", "eager", "rr_eager")


def packing_supported(lm: LoadedModel) -> bool:
    """Whether ``lm``'s current attention implementation can be tapped for packed passes."""
    return getattr(lm.model.config, "_attn_implementation", None) in PACKABLE_ATTENTION


class TapUnsupported(RuntimeError):
    """The model's attention cannot be tapped (the engine then uses padded passes)."""


@contextlib.contextmanager
def attention_tap(lm: LoadedModel, tap):
    """Route every attention call of ``lm`` through ``tap(module, original, q, k, v, mask, **kw)``.

    ``original`` is the function the model would have called, so that ``tap`` can call it on
    other tensors. Active for the ``with`` block only; the registry is restored on exit.
    """
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    impl = lm.model.config._attn_implementation
    had_local = impl in ALL_ATTENTION_FUNCTIONS._local_mapping
    previous = ALL_ATTENTION_FUNCTIONS._local_mapping.get(impl)

    def original_for(module):
        if had_local:
            return previous
        if impl == "eager":
            fn = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
            if fn is None:
                raise TapUnsupported(f"{type(module).__name__} has no eager_attention_forward")
            return fn
        return ALL_ATTENTION_FUNCTIONS._global_mapping[impl]

    def routed(module, query, key, value, attention_mask, **kwargs):
        return tap(module, original_for(module), query, key, value, attention_mask, **kwargs)

    ALL_ATTENTION_FUNCTIONS[impl] = routed
    try:
        yield
    finally:
        if had_local:
            ALL_ATTENTION_FUNCTIONS[impl] = previous
        else:
            del ALL_ATTENTION_FUNCTIONS[impl]
