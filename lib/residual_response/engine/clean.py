"""The clean pass: the unperturbed streams, norms and keys/values every perturbed pass compares to.

Every call of the engine needs one forward pass over the whole sequence without a perturbation
(:class:`CleanPass`). A loop that perturbs the same sequence at every ``l0`` (the section map)
would repeat it ``L`` times; a :class:`CleanPassCache` keeps the clean passes of the most recent
sequences so that it runs once. Give a cache to the engine explicitly
(``compute_response(..., clean_cache=cache)``) or install one for every call inside a ``with``
block (:func:`reuse_clean_passes`).
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import copy
import weakref
from typing import Iterator

import torch

from ..models import LoadedModel
from ..streams import block_hidden_input, block_output, hooked
from .tap import TapUnsupported, attention_tap, packing_supported

__all__ = ["CleanPass", "CleanPassCache", "clean_pass", "installed_clean_cache", "reuse_clean_passes"]


class CleanPass:
    """The unperturbed pass: streams at the ``need`` layers, their norms, the prefix for the rows.

    With ``want_cache`` (prefix reuse) the perturbed rows need the clean keys and values. Where
    the model's attention can be tapped (``capture_attention``, sdpa or eager; see :mod:`.tap`)
    they are kept as the attention function received them, per block, for packed passes;
    otherwise as the Hugging Face cache (``cache``) for padded passes. ``keep_cache`` keeps the
    cache in both cases (:meth:`full`).

    Attributes:
        streams: ``{l: [N, d]}`` the clean stream entering block ``l`` (``L``: the last block's output).
        norms: ``{l: [N]}`` float64 norms of ``streams[l]``.
        attention: ``{block: (k [1, KV, N, hd], v [1, KV, N, hd], mask or None)}`` the attention
            inputs of every block, or ``None`` (no tap: packed passes are impossible).
        cache: the Hugging Face key/value cache of all ``N`` positions, or ``None``.
        attn_implementation: the attention implementation the pass ran with.
        n_tokens: the sequence length ``N``.
    """

    def __init__(self, lm: LoadedModel, tokens: torch.Tensor, need: list[int], want_cache: bool,
                 capture_attention: bool = False, keep_cache: bool = False):
        L = lm.n_layers
        N = tokens.shape[0]
        need = sorted(set(need))
        got: dict[int, torch.Tensor] = {}
        current = {"block": None}
        attention: dict[int, tuple] = {}

        def make_pre(l):
            def pre(module, args, kwargs):
                current["block"] = l
                if l in need:
                    got[l] = block_hidden_input(args, kwargs)[0].detach().clone()
            return pre

        def post(module, args, output):
            got[L] = block_output(output)[0].detach().clone()

        def tap(module, original, query, key, value, attention_mask, **kwargs):
            l = current["block"]
            if l is not None and l not in attention:
                mask = attention_mask.detach() if isinstance(attention_mask, torch.Tensor) else None
                attention[l] = (key.detach(), value.detach(), mask)
            return original(module, query, key, value, attention_mask, **kwargs)

        hooks = [(lm.blocks[l], "pre", make_pre(l)) for l in range(L)] + [(lm.blocks[L - 1], "post", post)]
        ids = tokens.to(lm.device)[None]  # [1, N]
        out = None
        if want_cache and capture_attention and packing_supported(lm):
            try:
                with hooked(hooks), torch.no_grad(), attention_tap(lm, tap):
                    out = lm.base_model(input_ids=ids, use_cache=keep_cache)
            except TapUnsupported:
                out = None
        # packed passes only if every block's attention went through the tap with all N keys
        complete = (out is not None and len(attention) == L
                    and all(k.shape[0] == 1 and k.shape[-2] == N for k, _, _ in attention.values()))
        if complete:
            self.attention = attention
            self.cache = _model_cache(out) if keep_cache else None
        else:  # the plain pass (again, if the tap failed), with the cache for padded passes
            with hooked(hooks), torch.no_grad():
                out = lm.base_model(input_ids=ids, use_cache=want_cache)
            self.attention = None
            self.cache = _model_cache(out) if want_cache else None
        self.attn_implementation = lm.model.config._attn_implementation
        self.n_tokens = N
        self.streams = got  # {l: [N, d]}
        self.norms = {l: got[l].double().norm(dim=-1) for l in need}  # {l: [N]} float64

    @classmethod
    def full(cls, lm: LoadedModel, tokens: torch.Tensor) -> "CleanPass":
        """Every stream ``0..L``, the attention inputs (where tappable) and the key/value cache.

        Enough for any padded or packed pass at any ``l0`` (the benchmark's floor times both).
        """
        return cls(lm, tokens, list(range(lm.n_layers + 1)), want_cache=True, capture_attention=True,
                   keep_cache=True)

    def prefix_cache(self, p: int, batch: int):
        """The clean keys/values of positions ``< p``, repeated for ``batch`` rows (a fresh copy).

        A padded pass that starts at position ``p`` extends it in place, so each pass needs its own.
        """
        cache = copy.deepcopy(self.cache)
        if self.n_tokens > p:
            cache.crop(p - self.n_tokens)  # negative: number of positions to drop from the end
        cache.batch_repeat_interleave(batch)
        return cache


def _model_cache(out):
    return getattr(out, "cache", None) or getattr(out, "past_key_values", None)


def _model_state(lm: LoadedModel) -> tuple:
    """What the clean pass depends on besides the tokens: weights (identity, version), settings."""
    params = tuple((p.data_ptr(), p._version) for p in lm.model.parameters())
    return (getattr(lm.model.config, "_attn_implementation", None), lm.dtype, str(lm.device), params)


class CleanPassCache:
    """The clean passes of the ``max_sequences`` most recently used (model, sequence) pairs.

    Results with a cache are the same as without it, bit for bit: a cached clean pass holds every
    stream ``0..L`` and the attention inputs, enough for any ``l0``. A clean pass is recomputed
    when the model's parameters change (replaced, or updated in place: their version counters
    move), or its attention implementation, dtype or device. Hooks added to the model are *not*
    seen: do not change what the model computes with hooks (ablations) while a cache is in use.
    """

    def __init__(self, max_sequences: int = 16):
        self.max_sequences = max(1, int(max_sequences))
        # {(id(model), tokens): (weakref to the model, _model_state, CleanPass)}, least recent first
        self._entries: collections.OrderedDict = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, lm: LoadedModel, tokens: torch.Tensor) -> CleanPass | None:
        """The kept clean pass of ``tokens`` on ``lm`` if it is current, else ``None`` (nothing is computed).

        Why: a forked worker (:mod:`..workers`) fills its own copy of the cache; its parent asks
        it for the passes it computed and keeps them (:meth:`put`) for the next job.
        """
        hit = self._entries.get((id(lm.model), tuple(tokens.tolist())))
        if hit is None:
            return None
        ref, old_state, clean = hit
        return clean if ref() is lm.model and old_state == _model_state(lm) else None

    def put(self, lm: LoadedModel, tokens: torch.Tensor, clean: CleanPass) -> None:
        """Keep ``clean``, the full clean pass of ``tokens`` on ``lm`` computed elsewhere (:meth:`peek`)."""
        key = (id(lm.model), tuple(tokens.tolist()))
        self._entries[key] = (weakref.ref(lm.model), _model_state(lm), clean)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_sequences:
            self._entries.popitem(last=False)

    def get(self, lm: LoadedModel, tokens: torch.Tensor) -> CleanPass:
        """The full clean pass of ``tokens`` on ``lm``: kept, or computed now and kept."""
        key = (id(lm.model), tuple(tokens.tolist()))
        state = _model_state(lm)
        hit = self._entries.get(key)
        if hit is not None:
            ref, old_state, clean = hit
            if ref() is lm.model and old_state == state:
                self._entries.move_to_end(key)
                return clean
        clean = CleanPass(lm, tokens, list(range(lm.n_layers + 1)), want_cache=True, capture_attention=True)
        self._entries[key] = (weakref.ref(lm.model), state, clean)
        while len(self._entries) > self.max_sequences:
            self._entries.popitem(last=False)
        return clean


# the cache that reuse_clean_passes() installed for the calls inside its block (None outside)
_INSTALLED: contextvars.ContextVar[CleanPassCache | None] = contextvars.ContextVar("clean_pass_cache", default=None)


def installed_clean_cache() -> CleanPassCache | None:
    """The cache installed by the innermost active :func:`reuse_clean_passes` block, else ``None``."""
    return _INSTALLED.get()


@contextlib.contextmanager
def reuse_clean_passes(max_sequences: int = 16) -> Iterator[CleanPassCache]:
    """Share one :class:`CleanPassCache` among every engine call inside the ``with`` block.

    Why: callers that loop over ``l0`` (the section map, the benchmark) need not pass a cache
    through every layer of their code. Calls that pass ``clean_cache=`` use theirs instead.
    Yields the installed cache; a nested block yields the outer block's cache (one cache for the
    whole job). The cache is dropped when the outermost block ends.
    """
    outer = _INSTALLED.get()
    if outer is not None:
        yield outer
        return
    token = _INSTALLED.set(CleanPassCache(max_sequences))
    try:
        yield _INSTALLED.get()
    finally:
        _INSTALLED.reset(token)


def clean_pass(lm: LoadedModel, tokens: torch.Tensor, l0: int, read_streams: list[int], want_cache: bool,
               cache: CleanPassCache | None = None) -> CleanPass:
    """The clean pass one engine call needs: from ``cache`` (else the installed one), or computed.

    Without a cache only the streams ``l0`` and ``read_streams`` are kept; with ``want_cache``
    (prefix reuse) also the keys/values, as attention inputs where the attention can be tapped.
    """
    cache = cache if cache is not None else _INSTALLED.get()
    if cache is None:
        return CleanPass(lm, tokens, [l0] + read_streams, want_cache, capture_attention=want_cache)
    return cache.get(lm, tokens)
