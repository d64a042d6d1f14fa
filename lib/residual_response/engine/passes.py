"""The perturbed passes: one forward pass of many perturbed rows, and the relative change it reads.

Row ``b`` perturbs source ``s_b`` of the stream ``h[l0]`` along a unit direction ``u_b`` with
strength ``eps_b`` (``method="finite"``), or carries the tangent ``||h[l0, s_b]|| u_b``
(``method="jvp"``, forward-mode AD). The pass runs blocks ``l0..last-1`` only (earlier blocks
are pass-throughs, the perturbed stream is written into block ``l0``), stops after the last read
layer, and reduces each read stream to ``r[l, b, t] = ||h~[l, t] - h[l, t]|| / ||h[l, t]||`` as
soon as its block produces it.

:class:`Pass` holds these shared steps; two layouts of the rows differ only in which positions
they compute:

* :class:`PaddedPass`: a ``[B, N-p, d]`` rectangle from the pass's first source ``p``; positions
  ``< p`` come from the clean key/value cache; positions between ``p`` and a row's own source are
  recomputed (equal to the clean pass).
* :class:`PackedPass`: row ``b``'s positions ``s_b..N-1`` end to end in one ``[1, M, d]``
  sequence, ``M = sum_b (N - s_b)``, so every matrix product runs on positions that can change;
  attention sees the rows apart through the tap (:mod:`.tap`). A packed layout may hold rows
  beyond the ``B`` perturbed ones: :class:`~.shared_prefix.SharedPrefixPass` adds a twin
  sequence's rows, which start where the twin departs from the sequence.

A pass is built first (its inputs and caches are prepared) and run once (:meth:`Pass.run`);
``run(record=False)`` reads nothing, which is what the benchmark's floor times.
"""

from __future__ import annotations

import contextlib

import torch
import torch.autograd.forward_ad as fwAD

from ..models import LoadedModel
from ..perturbation import apply_perturbation
from ..streams import StopForward, block_output, hooked, replace_block_input, skip_blocks
from .clean import CleanPass
from .tap import attention_tap

__all__ = ["METHODS", "Pass", "PackedPass", "PaddedPass"]

#: how a pass measures the change: a finite perturbation, or its exact linear response (forward-mode AD)
METHODS = ("finite", "jvp")


def tangent_of(x: torch.Tensor) -> torch.Tensor:
    """The tangent of a dual tensor (zeros where nothing depends on the perturbation)."""
    t = fwAD.unpack_dual(x).tangent
    return torch.zeros_like(fwAD.unpack_dual(x).primal) if t is None else t


class Pass:
    """One forward pass of perturbed rows; subclasses lay the rows out (padded or packed).

    Args:
        lm: the model.
        tokens: ``[N]`` token ids.
        clean: the clean pass of ``tokens`` (streams ``l0`` and ``read_streams`` at least).
        l0: the perturbed stream.
        read_streams: streams to read, each in ``l0..L``.
        src_pos: ``[B]`` source of each row.
        dirs: ``[B, d]`` unit directions.
        eps: ``[B]`` strengths (ignored by ``jvp``).
        method: ``"finite"`` or ``"jvp"`` (a ``jvp`` pass is built and run inside ``fwAD.dual_level()``).
    """

    def __init__(self, lm: LoadedModel, tokens: torch.Tensor, clean: CleanPass, l0: int, read_streams: list[int],
                 src_pos: torch.Tensor, dirs: torch.Tensor, eps: torch.Tensor, method: str):
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
        self.lm, self.tokens, self.clean, self.l0, self.method = lm, tokens, clean, int(l0), method
        self.read_streams = list(read_streams)
        self.read_index = {l: i for i, l in enumerate(self.read_streams)}
        self.last = max(self.read_streams)
        self.src_pos = src_pos
        self.B = src_pos.shape[0]
        self.rows = self.B  # rows the pass returns (a layout may add rows beyond the B perturbed ones)
        self.N = tokens.shape[0]
        self.device = lm.device
        h0 = self._clean_input()  # the layout's copy of the clean h[l0]
        if method == "finite":
            self._perturb(h0, dirs, eps)
            self.stream_in = h0
        else:
            tangent = torch.zeros_like(h0)
            scale = clean.norms[l0][src_pos].to(self.device)[:, None]  # [B, 1]
            tangent[self._at_sources] = (scale * dirs.to(self.device).double()).to(h0.dtype)
            self.stream_in = fwAD.make_dual(h0, tangent)
        self.start = self.l0  # the first block the pass runs (:meth:`resume`)
        # streams whose perturbed values :meth:`run` keeps in ``kept`` (a caller that needs only
        # those may lower ``last`` to the last of them: the pass stops there)
        self.keep: set[int] = set()
        self.kept: dict[int, torch.Tensor] = {}
        self._spent = False

    def resume(self, block: int, stream: torch.Tensor) -> "Pass":
        """Start at block ``block`` from ``stream``, the perturbed stream entering it (in this layout).

        Why: a model changed only from block ``block`` on (heads ablated there) computes the same
        perturbed stream up to it as the unchanged model; a pass of the unchanged model with the
        same rows keeps it (``keep``, ``kept``), and this pass runs only the rest. The streams
        ``l0..block`` are then not read (zeros in :meth:`run`'s result): they are the unchanged pass's.
        """
        if self.method != "finite" or not self.l0 <= block < self.last:
            raise ValueError(f"a finite-eps pass resumes at a block in {self.l0}..{self.last - 1}, got {block}")
        self.start, self.stream_in = int(block), stream
        return self

    # what a layout provides ------------------------------------------------------------------

    #: ``[B]`` index of each row's source in the layout (set by ``_clean_input``)
    _at_sources: tuple
    #: positions the pass computes, summed over rows
    row_positions: int

    def _clean_input(self) -> torch.Tensor:
        """A fresh copy of the clean ``h[l0]`` in the layout; sets ``_at_sources``."""
        raise NotImplementedError

    def _perturb(self, h0: torch.Tensor, dirs: torch.Tensor, eps: torch.Tensor) -> None:
        """Add ``eps * ||h[l0, s]|| * u`` at each row's source, in place."""
        raise NotImplementedError

    def _rows(self, h: torch.Tensor) -> torch.Tensor:
        """A block's output in the layout as the positions that ``_clean_at`` selects."""
        return h

    def _clean_at(self, x: torch.Tensor) -> torch.Tensor:
        """A clean per-position tensor (``[N, ...]``) at the positions the pass computes."""
        raise NotImplementedError

    def _store(self, r: torch.Tensor, i: int, values: torch.Tensor) -> None:
        """Write one read layer's ``values`` into ``r[i]`` (``[B, N]``)."""
        raise NotImplementedError

    def _hooks(self) -> list:
        return []

    def _context(self):
        return contextlib.nullcontext()

    def _forward(self) -> None:
        raise NotImplementedError

    def _finish(self, r: torch.Tensor) -> torch.Tensor:
        return r

    # the shared steps ------------------------------------------------------------------------

    def _reduce(self, r: torch.Tensor, l: int, h: torch.Tensor) -> None:
        """Store ``||h~ - h|| / ||h||`` of read layer ``l``."""
        if self.method == "finite":
            diff = (self._rows(h).detach().double() - self._clean_at(self.clean.streams[l]).double()).norm(dim=-1)
        else:
            diff = self._rows(tangent_of(h)).detach().double().norm(dim=-1)
        self._store(r, self.read_index[l], (diff / self._clean_at(self.clean.norms[l])).cpu())

    def _pre(self, module, args, kwargs):
        return replace_block_input(args, kwargs, self.stream_in)

    def _make_post(self, r: torch.Tensor | None, l: int):
        """Read the stream leaving block ``l`` (when recording), keep it if asked, stop after the last one."""
        def post(module, args, output):
            if r is not None and l + 1 in self.read_index:
                self._reduce(r, l + 1, block_output(output))
            if l + 1 in self.keep:
                self.kept[l + 1] = block_output(output).detach().clone()
            if l + 1 == self.last:
                raise StopForward
        return post

    def run(self, record: bool = True) -> torch.Tensor:
        """Run the pass (once).

        Returns:
            ``[n_read, rows, N]`` float64 relative change ``r`` (``||J delta|| / ||h||`` for ``jvp``,
            with ``delta = ||h[l0, s]|| u``), zero at targets before each row's source; all
            zeros when ``record`` is false (nothing is read). ``rows`` is ``B`` except where a
            layout adds rows (:class:`~.shared_prefix.SharedPrefixPass`).
        """
        if self._spent:
            raise RuntimeError("a pass runs once (its key/value cache is extended by the run); build a new one")
        self._spent = True
        r = torch.zeros(len(self.read_streams), self.rows, self.N, dtype=torch.float64)  # [n_read, rows, N]
        rec = r if record else None
        if rec is not None and self.l0 in self.read_index and self.start == self.l0:
            self._reduce(r, self.l0, self.stream_in)
        if self.last > self.start:
            lm = self.lm
            posts = [(lm.blocks[l], "post", self._make_post(rec, l)) for l in range(self.start, self.last)
                     if l + 1 == self.last or l + 1 in self.keep or (rec is not None and l + 1 in self.read_index)]
            hooks = [(lm.blocks[self.start], "pre", self._pre)] + self._hooks() + posts
            with skip_blocks(lm, self.start), hooked(hooks), self._context():
                try:
                    self._forward()
                except StopForward:
                    pass
        return self._finish(r)


class PaddedPass(Pass):
    """Rows padded to a rectangle: positions ``p..N-1`` for every row (``p``: ``first``).

    ``first`` defaults to the smallest source (positions ``< p`` are then the clean key/value
    cache of ``clean``, which must hold one when ``p > 0``); ``first=0`` recomputes the prefix.
    """

    def __init__(self, lm: LoadedModel, tokens: torch.Tensor, clean: CleanPass, l0: int, read_streams: list[int],
                 src_pos: torch.Tensor, dirs: torch.Tensor, eps: torch.Tensor, method: str = "finite",
                 first: int | None = None):
        self.p = int(src_pos.min()) if first is None else int(first)
        if not 0 <= self.p <= int(src_pos.min()):
            raise ValueError(f"first position {self.p} must lie in 0..{int(src_pos.min())} (the smallest source)")
        if self.p > 0 and clean.cache is None:
            raise ValueError("a padded pass after position 0 needs a clean pass with its key/value cache")
        super().__init__(lm, tokens, clean, l0, read_streams, src_pos, dirs, eps, method)
        B, N, p, device = self.B, self.N, self.p, self.device
        self.row_positions = B * (N - p)
        self._kwargs = {"position_ids": torch.arange(p, N, device=device)[None].expand(B, -1)}
        if p > 0:
            self._kwargs["cache"] = clean.prefix_cache(p, B)
            self._kwargs["use_cache"] = True
        else:
            self._kwargs["use_cache"] = False  # nothing reads the keys/values this pass makes
        self._ids = tokens[p:].to(device)[None].expand(B, -1)  # [B, N-p]

    def _clean_input(self):
        h0 = self.clean.streams[self.l0][self.p:].unsqueeze(0).expand(self.B, -1, -1).clone()  # [B, N-p, d]
        self._local = (self.src_pos - self.p).to(self.device)  # [B] source within the rectangle
        self._at_sources = (torch.arange(self.B, device=self.device), self._local)
        return h0

    def _perturb(self, h0, dirs, eps):
        apply_perturbation(h0, self._local, dirs, eps)

    def _clean_at(self, x):
        return x[self.p:]

    def _store(self, r, i, values):  # values [B, N-p]
        r[i, :, self.p:] = values

    def _forward(self):
        self.lm.base_model(input_ids=self._ids, **self._kwargs)

    def _finish(self, r):
        # Targets before a row's source are unchanged by causality (tests/unit/test_response.py shows it
        # exactly on the naive loop). Positions p..s-1 were still recomputed, with kernels whose
        # rounding can depend on the batch shape (~1e-7 relative); report the exact zeros.
        before = torch.arange(self.N)[None, :] < self.src_pos[:, None].cpu()  # [B, N]
        r[:, before] = 0.0
        return r


class PackedPass(Pass):
    """Rows packed end to end: row ``b`` computes exactly positions ``s_b..N-1``.

    Attention is the one step that mixes positions: the tap scatters each row's queries, keys and
    values into a padded ``[R, heads, N, head_dim]`` layout whose positions ``< s_b`` hold the
    clean keys and values, calls the model's own attention function on it with the clean pass's
    mask (causal, sliding window...) and gathers the outputs back. ``clean`` must hold the
    attention inputs (:class:`~.clean.CleanPass` with a tappable attention).

    Here ``R = B``; a subclass may lay out more rows (:meth:`_row_starts`: where each starts, in
    which sequence), read other sequences' clean tensors (laid end to end, indexed by ``_at_d``)
    and write a packed key/value into more than one row of the padded layout (``_kv_from``,
    ``_kv_to``).
    """

    def __init__(self, lm: LoadedModel, tokens: torch.Tensor, clean: CleanPass, l0: int, read_streams: list[int],
                 src_pos: torch.Tensor, dirs: torch.Tensor, eps: torch.Tensor, method: str = "finite"):
        if clean.attention is None:
            raise ValueError(f"{lm.name}: a packed pass needs the clean pass's attention inputs (sdpa or eager attention)")
        super().__init__(lm, tokens, clean, l0, read_streams, src_pos, dirs, eps, method)
        self._masks = {}
        self._block = None

    def _row_starts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``[R]`` the first position each packed row computes and ``[R]`` the sequence it belongs
        to (0: ``tokens``). Here ``R = B``: row ``b`` starts at its source, in ``tokens``; the first
        ``B`` rows are always the perturbed ones, each starting at its source."""
        src = self.src_pos.long().cpu()
        return src, torch.zeros_like(src)

    def _sequences(self) -> torch.Tensor:
        """``[S * N]`` the token ids of the pass's sequences end to end (here ``S = 1``: ``tokens``);
        the clean tensors the pass reads (``clean.streams``, ``clean.norms``) are laid out alike."""
        return self.tokens

    def _clean_input(self):
        N, device = self.N, self.device
        starts, sequence = self._row_starts()  # [R], [R]
        R = self.rows = starts.shape[0]
        self.p = int(starts.min())
        self.nq = N - self.p  # query positions a padded row covers
        lengths = N - starts  # [R]
        self.row_positions = int(lengths.sum())
        self._row_of = torch.repeat_interleave(torch.arange(R), lengths)  # [M] row of each packed position
        offset = torch.cumsum(lengths, 0) - lengths  # [R] packed index of each row's first position
        self._pos_of = torch.arange(self.row_positions) - offset[self._row_of] + starts[self._row_of]  # [M] position
        row_d, self._pos_d = self._row_of.to(device), self._pos_of.to(device)
        self._at_d = sequence.to(device)[row_d] * N + self._pos_d  # [M] into the clean tensors ([S * N])
        self._flat_kv = row_d * N + self._pos_d  # [M] into [R * N]
        # the packed keys/values written into the padded layout: all of them, at their own rows
        self._kv_from, self._kv_to = None, self._flat_kv  # [K] packed index (None: 0..M-1), [K] into [R * N]
        self._flat_q = row_d * self.nq + (self._pos_d - self.p)  # [M] into [R * nq]
        self._first = offset[:self.B].to(device)  # [B] packed index of each perturbed row's source
        self._at_sources = (0, self._first)
        return self.clean.streams[self.l0][self._at_d].unsqueeze(0).clone()  # [1, M, d]

    def _perturb(self, h0, dirs, eps):
        at_src = h0[0, self._first].unsqueeze(1)  # [B, 1, d]
        apply_perturbation(at_src, torch.zeros(self.B, dtype=torch.long, device=self.device), dirs, eps)
        h0[0, self._first] = at_src[:, 0]

    def _rows(self, h):  # [1, M, d] -> [M, d]
        return h[0]

    def _clean_at(self, x):
        return x[self._at_d]

    def _store(self, r, i, values):  # values [M]
        r[i, self._row_of, self._pos_of] = values

    def _mask_for(self, l: int, like: torch.Tensor) -> torch.Tensor:
        """The clean pass's mask of block ``l`` for query positions ``p..N-1`` (``[1, 1, nq, N]``)."""
        if l not in self._masks:
            N, device = self.N, self.device
            mask = self.clean.attention[l][2]
            if mask is None:  # sdpa took the causal shortcut: spell the causal mask out
                causal = torch.ones(N, N, dtype=torch.bool, device=device).tril()
                mask = causal if self.clean.attn_implementation == "sdpa" else torch.zeros(
                    N, N, dtype=like.dtype, device=device).masked_fill(~causal, torch.finfo(like.dtype).min)
                mask = mask[None, None]
            self._masks[l] = mask[:, :, self.p:N, :N]
        return self._masks[l]

    def _tap(self, module, original, query, key, value, attention_mask, **kwargs):
        """Attention of the packed rows on their padded copies (query/key/value ``[1, heads, M, hd]``)."""
        R, N, nq, l = self.rows, self.N, self.nq, self._block
        kc, vc, _ = self.clean.attention[l]  # [1, KV, N, hd]

        def padded(clean_kv, new):  # clean_kv [1, KV, N, hd], new [1, KV, M, hd] -> [R, KV, N, hd]
            heads, hd = clean_kv.shape[1], clean_kv.shape[3]
            base = clean_kv[0].transpose(0, 1).unsqueeze(0).expand(R, N, heads, hd).reshape(R * N, heads, hd)
            new = new[0].transpose(0, 1)  # [M, KV, hd]
            new = new if self._kv_from is None else new.index_select(0, self._kv_from)
            return base.index_copy(0, self._kv_to, new).view(R, N, heads, hd).transpose(1, 2)

        H, hd = query.shape[1], query.shape[3]
        q = query.new_zeros(R * nq, H, hd).index_copy(0, self._flat_q, query[0].transpose(0, 1))
        q = q.view(R, nq, H, hd).transpose(1, 2)  # [R, H, nq, hd]
        out, _ = original(module, q, padded(kc, key), padded(vc, value), self._mask_for(l, query), **kwargs)  # [R, nq, H, hd]
        out = out.reshape(R * nq, *out.shape[2:]).index_select(0, self._flat_q)  # [M, H, hd]
        return out.unsqueeze(0), None

    def _make_enter(self, l: int):
        def enter(module, args, kwargs):
            self._block = l
        return enter

    def _hooks(self):
        return [(self.lm.blocks[l], "pre", self._make_enter(l)) for l in range(self.start, self.last)]

    def _context(self):
        return attention_tap(self.lm, self._tap)

    def _forward(self):
        ids = self._sequences().to(self.device)[self._at_d][None]  # [1, M] (the embeddings are overwritten at block l0)
        # a ready 4D mask stops the model from building an [M, M] one; the tap ignores it
        dummy_mask = torch.zeros(1, 1, 1, 1, dtype=self.lm.dtype, device=self.device)
        self.lm.base_model(input_ids=ids, position_ids=self._pos_d[None], attention_mask=dummy_mask, use_cache=False)
