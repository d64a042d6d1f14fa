"""Hugging Face hub ids and local checkpoint folders."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .blocks import config_blocks
from .loaded import LoadedModel, ModelUnavailableError, _first_line, prepare_model, quiet_hf_progress, wrap_model
from .spec import ModelSpec

__all__: list[str] = []  # the loaders are named by the registry (.registry)


def _check_finite_weights(model: torch.nn.Module, where: str) -> None:
    """Refuse weights with NaN or inf: every response computed from them would be NaN."""
    for pname, param in model.named_parameters():
        if param.is_floating_point() and not bool(torch.isfinite(param).all()):
            raise ModelUnavailableError(f"{where} holds NaN or inf in {pname}; the weights are damaged")


# --- Hugging Face ids and folders -------------------------------------------------------------


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection (False when HF_HUB_OFFLINE is set)."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _load_hf(name_or_path: str, device: torch.device, dtype: torch.dtype, *, display_name: str | None = None,
             device_map: str | None = None) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = dict(dtype=dtype)
    if device_map is not None:
        kwargs["device_map"] = device_map
    is_folder = Path(name_or_path).exists()
    if is_folder:  # a config of 0 blocks is refused before any weight is read (and reported on)
        _check_folder_config(name_or_path)
    # a local copy (folder or HF cache) first; the hub only when it answers, so that an offline
    # machine gets one clear line at once instead of minutes of retries
    local_only = is_folder or not _hub_reachable()
    try:
        with quiet_hf_progress():
            model = AutoModelForCausalLM.from_pretrained(name_or_path, local_files_only=local_only, **kwargs)
            tok = AutoTokenizer.from_pretrained(name_or_path, local_files_only=local_only)
    except Exception as exc:  # a damaged folder raises anything from OSError to SafetensorError
        from ..memory import allocation_failure

        if allocation_failure(exc):  # the command line words it, with the memory bound
            raise
        if is_folder:
            raise ModelUnavailableError(f"cannot load a causal LM from folder {name_or_path}: {_first_line(exc)}") from None
        if not isinstance(exc, (OSError, ValueError)):
            raise
        raise ModelUnavailableError(
            f"weights of {name_or_path!r} are not available on this machine (no Hugging Face hub access and no "
            f"local copy); run `huggingface-cli download {name_or_path}` where the hub is reachable"
            + (" (accept its licence on the hub first)" if "google/" in name_or_path or "meta-llama/" in name_or_path else "")
            + ", or pass a local folder"
        ) from exc
    if is_folder:
        _check_finite_weights(model, f"folder {name_or_path}")
    if device_map is None:
        model = prepare_model(model, device, dtype)
    else:
        model.requires_grad_(False)
    return wrap_model(display_name or name_or_path, model, tok, source=name_or_path)


def _check_folder_config(folder: str) -> None:
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(folder, local_files_only=True)
    except Exception:  # the load below says what is wrong with the folder
        return
    config_blocks(cfg, f"folder {folder}", default=1)


def _load_paper(spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    return _load_hf(spec.hf_id, device, dtype, display_name=spec.name, device_map=spec.extra.get("device_map"))
