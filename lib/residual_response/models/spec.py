"""A registry entry: :class:`ModelSpec`, and the :data:`Loader` that builds its model.

Why a module of its own: the loaders (:mod:`.gguf`, :mod:`.hf`, :mod:`.random_init`,
:mod:`.toy`) take an entry, and the registry (:mod:`.registry`) imports the loaders; the entry's
type sits below both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from .loaded import LoadedModel

__all__ = ["Loader", "ModelSpec"]


#: What builds a registry entry's model: called as ``loader(spec, device, dtype)``.
Loader = Callable[["ModelSpec", torch.device, torch.dtype], LoadedModel]


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry: how to build a model and what to say about it in listings.

    ``loader`` is a :data:`Loader` or its import path ``"package.module:function"``. Why a path:
    a model built by a module that itself imports this one is registered without an import
    cycle; the path is imported only when that model is loaded (:func:`resolve_loader`).
    """

    name: str
    family: str
    offline: bool
    description: str
    loader: Loader | str
    hf_id: str | None = None
    layers: int | None = None
    d_model: int | None = None
    extra: dict = field(default_factory=dict)
