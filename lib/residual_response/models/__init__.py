"""Loading causal language models by name: the registry, the offline stand-ins and their cache.

Every analysis in this package takes a :class:`LoadedModel`, a thin record around a Hugging Face
causal LM that knows what the method needs: the list of blocks whose inputs are the residual
stream, the BOS token, the ordinary (non-special) vocabulary and the context length.

Modules, one job each:

- :mod:`.loaded`       :class:`LoadedModel`, block widths, dtypes and devices, wrapping a Hugging Face model
- :mod:`.blocks`       where a model keeps its blocks: known families by path, any other decoder by looking
- :mod:`.spec`         a registry entry (:class:`ModelSpec`) and the loader it names
- :mod:`.registry`     the registry (:data:`REGISTRY`) and :func:`load_model`: a name, a folder or a hub id
- :mod:`.cache`        the cache folder and the manifest that marks an entry complete and undamaged
- :mod:`.gguf`         the offline GGUF stand-ins, de-quantised once into the cache
- :mod:`.hf`           Hugging Face hub ids and local checkpoint folders
- :mod:`.random_init`  random-initialised models of each architecture
- :mod:`.toy`          the toy GPT-2: recipe, CPU-independent training, checkpoints, loading
  (imported only when the toy model is loaded)
- :mod:`.child`        the toy's training child process, its failure told in one line in the parent
"""

from .blocks import UnsupportedModelError
from .cache import MANIFEST, CacheRepairWarning, cache_dir, validate_cache_dir, verify_cache_entry, write_cache_manifest
from .loaded import (DTYPES, ROUNDING_FLOOR, BlockDims, LoadedModel, LowPrecisionWarning, ModelUnavailableError,
                     block_dims, decoder_blocks, decoder_stack, ordinary_ids_from_tokenizer, prepare_model,
                     quiet_hf_progress, resolve_device, resolve_dtype, wrap_model)
from .random_init import RANDOM_CONTEXT, RANDOM_VOCAB, build_random_model
from .registry import REGISTRY, load_model, model_names, resolve_loader
from .spec import Loader, ModelSpec

__all__ = [
    "BlockDims",
    "LoadedModel",
    "block_dims",
    "ModelSpec",
    "ModelUnavailableError",
    "LowPrecisionWarning",
    "REGISTRY",
    "cache_dir",
    "validate_cache_dir",
    "verify_cache_entry",
    "write_cache_manifest",
    "CacheRepairWarning",
    "load_model",
    "model_names",
    "prepare_model",
    "wrap_model",
    "quiet_hf_progress",
    "resolve_dtype",
    "resolve_device",
    "build_random_model",
    "DTYPES",
    "ROUNDING_FLOOR",
    "MANIFEST",
    "RANDOM_CONTEXT",
    "RANDOM_VOCAB",
    "Loader",
    "decoder_blocks",
    "decoder_stack",
    "ordinary_ids_from_tokenizer",
    "resolve_loader",
    "UnsupportedModelError",
]
