"""The toy GPT-2: a 2-block GPT-2 trained on CPU on repeated random sequences.

Why a toy model: the paper watches induction emerge layer by layer in large models; a model small
enough to train in the book lets us watch it emerge *in training time* as well, and check that the
response stripe appears when, and only when, the loss on repeats drops (the phase change of
Olsson et al. 2022). This module makes the model (recipe, training, checkpoints, loading); what
is measured across its training is in :mod:`.dynamics`.

Training rows (token 0 is BOS, tokens ``1..vocab_size-1`` are ordinary) are
``[BOS, a, a, b, b, c, c, ...]``: random segments, each followed at once by a copy of itself,
packed until the row is full (the last pair is cut at the row end). Segment lengths are uniform
in ``t_min..t_max`` and every segment is fresh, so nothing but copying from context (induction)
predicts the copies, and the lengths and positions vary too much for a positional shortcut.

The next-token loss weighs the predictable targets (``a_2..a_T`` of every copy) 1 and all other
targets ``other_weight`` (0.1). Why: the other targets are random, so they add only gradient noise;
Adam divides every step by the running gradient scale, and with full weight that noise slows the
copy signal so much that the model sits on the "copy any token seen so far" plateau for thousands
of steps (we measured no phase change within 2500 steps of this model with the plain loss, nor
with GPT-2's default 0.02 initialisation). The small weight keeps the model honest on random
tokens (its loss there stays near ``ln(vocab_size - 1)``).

Initialisation: token and position embeddings ``N(0, emb_std = 1)``, the other weights GPT-2's
scheme with ``initializer_range = init_std``; the unembedding is not tied to the embedding. With
GPT-2's default 0.02 the embeddings are so small that the position-dependent attention a
previous-token head needs takes far longer to learn.

Layout on disk (``toy_dir()`` = ``cache_dir()/models/toy-gpt2``)::

    checkpoints/step-00000/   HF save_pretrained folders (config.json, model.safetensors)
    checkpoints/step-00100/   ...
    final/                    the model after the last step
    training_log.json         train loss per step; first/second-copy loss per checkpoint

The whole folder is written under a temporary name in the same parent and moved into place with
``os.replace`` at the end, so an interrupted run leaves no half-written cache. Its
``MANIFEST.json`` (size and sha256 of every file) is written last and verified on every load:
damaged weights are retrained once, with one warning, never loaded.

Same weights on every x86 CPU: training runs in a child process (:data:`PORTABLE_ENV`) whose matrix
products are exact integer sums (:mod:`.toy_portable` says why and how); the log records the
weights' SHA-256 (:func:`weights_sha256`), and ``make test`` compares a fresh training's with
:data:`EXPECTED_WEIGHTS_SHA256`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import json
import math
import os
import platform
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..behaviour import copy_losses
from ..io import install_dir, make_temp_dir, remove_stale_temps
from . import (LoadedModel, ModelSpec, ModelUnavailableError, cache_dir, prepare_model, quiet_hf_progress,
               resolve_device, resolve_dtype, wrap_model)
from .cache import (CacheRepairWarning, build_failure, building, tidy_entry, verify_cache_entry,
                    write_cache_manifest)
from .child import report_failure, run_child
from ..sequences import InductionLayout
from .toy_portable import EXPECTED_WEIGHTS_SHA256, TRAINING_VERSION, FixedPointMatmuls, hash_problem, weights_sha256

__all__ = [
    "ToyRecipe",
    "DEFAULT_RECIPE",
    "EXPECTED_WEIGHTS_SHA256",
    "PORTABLE_ENV",
    "TRAINING_VERSION",
    "TOY_NAME",
    "ensure_toy_model",
    "expected_hash_problem",
    "load_registered",
    "load_toy_model",
    "load_training_log",
    "toy_checkpoint_steps",
    "toy_dir",
    "train_toy",
    "weights_sha256",
]

TOY_NAME = "toy-gpt2"
BOS = 0
#: intra-op threads while training. Why one: the model is so small that thread start-up and
#: synchronisation cost more than they save (measured 58 ms/step with 1 thread vs 268 ms/step with 2
#: on the 2-core machine under load), and a fixed count keeps the run bit-reproducible everywhere.
TRAIN_THREADS = 1
#: Set in the training child process before torch is imported (module docstring): PyTorch's
#: default kernels, whose vector width is fixed in the code rather than taken from the CPU, and one
#: thread. MKL and oneDNN need no setting: the child calls neither (its matrix products are
#: :class:`FixedPointMatmuls`), so their own CPU dispatch cannot reach the weights.
PORTABLE_ENV = {
    "ATEN_CPU_CAPABILITY": "default",
    "OMP_NUM_THREADS": str(TRAIN_THREADS),
    "MKL_NUM_THREADS": str(TRAIN_THREADS),
}


@dataclass(frozen=True)
class ToyRecipe:
    """Everything that defines a toy training run (together with the seed).

    Attributes:
        vocab_size: token ids ``0..vocab_size-1``; 0 is BOS, the rest ordinary.
        n_positions: context of the model (learned position embeddings).
        d_model, n_layers, n_heads: GPT-2 shape (MLPs kept, width ``4 d_model``).
        steps: optimiser steps.
        checkpoint_every: save a checkpoint every this many steps (and at 0 and at the end).
        batch_size, train_len: rows per step and their length (``train_len <= n_positions``).
        lr, warmup, weight_decay: AdamW with linear warm-up, then constant.
        emb_std: standard deviation of the initial token and position embeddings.
        init_std: GPT-2 ``initializer_range`` for all other weights.
        t_min, t_max: lengths of the repeated segments.
        other_weight: loss weight of the unpredictable targets (copies weigh 1).
        eval_T, eval_n: held-out repeats ``[BOS, a_1..a_T, a_1..a_T]`` scored at each checkpoint.
    """

    vocab_size: int = 64
    n_positions: int = 48
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    steps: int = 2000
    checkpoint_every: int = 50
    batch_size: int = 16
    train_len: int = 48
    lr: float = 3e-3
    warmup: int = 50
    weight_decay: float = 0.01
    emb_std: float = 1.0
    init_std: float = 0.1
    t_min: int = 4
    t_max: int = 23
    other_weight: float = 0.1
    eval_T: int = 20
    eval_n: int = 64

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field and what is allowed."""
        ints = {
            "vocab_size": 4, "n_positions": 8, "d_model": 4, "n_layers": 1, "n_heads": 1, "steps": 1,
            "checkpoint_every": 1, "batch_size": 1, "train_len": 8, "warmup": 0, "t_min": 2, "t_max": 2,
            "eval_T": 2, "eval_n": 1,
        }
        for name, low in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"recipe field {name}={v!r} must be an int >= {low}")
        for name in ("lr", "weight_decay", "emb_std", "init_std", "other_weight"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"recipe field {name}={v!r} must be a finite number >= 0")
        if self.lr == 0 or self.init_std == 0 or self.emb_std == 0:
            raise ValueError(f"lr, init_std and emb_std must be > 0, got {self.lr}, {self.init_std}, {self.emb_std}")
        if self.other_weight > 1:
            raise ValueError(f"other_weight={self.other_weight} must lie in [0, 1]")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be a multiple of n_heads={self.n_heads}")
        if self.train_len > self.n_positions:
            raise ValueError(f"train_len={self.train_len} exceeds n_positions={self.n_positions}")
        if self.t_min > self.t_max:
            raise ValueError(f"t_min={self.t_min} exceeds t_max={self.t_max}")
        if 2 * self.t_max + 1 > self.train_len:
            raise ValueError(f"t_max={self.t_max} too long for train_len={self.train_len}; need 2*t_max+1 <= train_len")
        if 2 * self.eval_T + 1 > self.n_positions:
            raise ValueError(f"eval_T={self.eval_T} too long for n_positions={self.n_positions}")


#: The recipe of the cached ``toy-gpt2`` (seed 0); a cache trained with another is retrained.
DEFAULT_RECIPE = ToyRecipe()


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def _batch(recipe: ToyRecipe, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One training batch drawn from ``gen`` (module docstring).

    Returns:
        ``tokens`` ``[batch_size, train_len]`` int64 and ``copy`` ``[batch_size, train_len]`` bool,
        True where the token is predictable by copying (``a_2..a_T`` of a copy).
    """
    B, n = recipe.batch_size, recipe.train_len
    x = torch.randint(1, recipe.vocab_size, (B, n), generator=gen)
    x[:, 0] = BOS
    copy = torch.zeros(B, n, dtype=torch.bool)
    n_pairs = n // (2 * recipe.t_min) + 1
    lengths = torch.randint(recipe.t_min, recipe.t_max + 1, (B, n_pairs), generator=gen)
    for i in range(B):
        pos = 1
        for T in lengths[i].tolist():
            if pos >= n:
                break
            end = min(pos + 2 * T, n)  # segment pos..pos+T-1, its copy pos+T..end-1 (cut at the row end)
            if end > pos + T:
                x[i, pos + T : end] = x[i, pos : end - T].clone()
                copy[i, pos + T + 1 : end] = True
            pos = end
    return x, copy


def _eval_tokens(recipe: ToyRecipe) -> torch.Tensor:
    """``[eval_n, 2 eval_T + 1]`` held-out ``[BOS, a, a]`` sequences (same for every seed)."""
    gen = torch.Generator().manual_seed(999_983)
    a = torch.randint(1, recipe.vocab_size, (recipe.eval_n, recipe.eval_T), generator=gen)
    bos = torch.full((recipe.eval_n, 1), BOS, dtype=torch.long)
    return torch.cat([bos, a, a], dim=1)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


def _config(recipe: ToyRecipe, **extra):
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=recipe.vocab_size, n_positions=recipe.n_positions, n_embd=recipe.d_model,
        n_layer=recipe.n_layers, n_head=recipe.n_heads, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        initializer_range=recipe.init_std, bos_token_id=BOS, eos_token_id=BOS, pad_token_id=None,
        tie_word_embeddings=False, **extra,
    )


@torch.no_grad()
def _evaluate(model, tokens: torch.Tensor, T: int) -> tuple[float, float]:
    was_training = model.training
    model.eval()
    logits = model(input_ids=tokens, use_cache=False).logits  # [eval_n, N, V]
    first, second = copy_losses(logits, tokens, InductionLayout(T=T, offset=1))
    model.train(was_training)
    return float(first.mean()), float(second.mean())


@contextlib.contextmanager
def _torch_threads(n: int):
    """Set torch's intra-op thread count for a ``with`` block, then restore it."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _save_model(model, folder: Path) -> None:
    with quiet_hf_progress():
        model.save_pretrained(folder, safe_serialization=True)


def train_toy(
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    steps: int | None = None,
    checkpoint_every: int | None = None,
    progress: bool = True,
    recipe: ToyRecipe | None = None,
    portable: bool = True,
) -> dict:
    """Train the toy GPT-2 and write checkpoints, the final model and the training log.

    Why checkpoints: the book follows the response stripe and the attention scores through
    training; the stripe should appear at the step where the second-copy loss drops.

    The run is reproducible: the same seed and recipe give the same weights (model initialisation
    under ``torch.manual_seed(seed)`` inside a forked RNG, so the caller's global RNG state is
    untouched; data from a ``torch.Generator`` seeded with ``seed``; one intra-op thread, see
    :data:`TRAIN_THREADS`, restored afterwards). With ``portable`` (the default) it is also the
    same on every x86 CPU: training runs in a child process with :data:`PORTABLE_ENV`.

    Args:
        out_dir: destination folder; it must not exist yet (or be replaced by a finished run).
        seed: initialisation and data seed.
        steps, checkpoint_every: override the recipe's values.
        progress: show a tqdm progress bar.
        recipe: a :class:`ToyRecipe` (default :data:`DEFAULT_RECIPE`).
        portable: train in a child process with CPU-independent kernels; ``False`` trains in
            this process with its native kernels (faster, but the weights then depend on the CPU).

    Returns:
        the training log (also written to ``out_dir/training_log.json``), with the final
        weights' ``weights_sha256``.
    """
    from transformers import GPT2LMHeadModel

    recipe = DEFAULT_RECIPE if recipe is None else recipe
    if not isinstance(recipe, ToyRecipe):
        raise TypeError(f"recipe must be a ToyRecipe, got {type(recipe).__name__}")
    changes = {k: v for k, v in (("steps", steps), ("checkpoint_every", checkpoint_every)) if v is not None}
    recipe = dataclasses.replace(recipe, **changes)
    recipe.validate()
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if not isinstance(portable, bool):
        raise TypeError(f"portable must be True or False, got {portable!r}")
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out.parent, out.name)  # folders of killed trainings
    tmp = make_temp_dir(out.parent, out.name)
    try:
        if portable:
            log = _train_in_child(tmp, recipe, seed, progress)
        else:
            with _torch_threads(TRAIN_THREADS):
                log = _train_into(tmp, recipe, seed, progress, GPT2LMHeadModel, portable=False)
        write_cache_manifest(tmp)  # last: a folder with its manifest is complete
        install_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return log


def _train_in_child(folder: Path, recipe: ToyRecipe, seed: int, progress: bool) -> dict:
    """Run :func:`_train_into` in a fresh interpreter with :data:`PORTABLE_ENV`, return its log.

    Why a child process: the kernel choices of PyTorch, MKL and oneDNN are fixed when they load,
    so only a process that sets them before ``import torch`` trains with them (:mod:`.child`).
    """
    spec = {"folder": str(folder), "recipe": dataclasses.asdict(recipe), "seed": seed, "progress": progress}
    run_child("from residual_response.models.toy import _child_main; _child_main()", spec, PORTABLE_ENV, progress)
    return json.loads((folder / "training_log.json").read_text())


def _child_main() -> None:
    """Entry point of the training child process (:func:`_train_in_child`); a failure is reported in
    one line the parent reads (:func:`.child.report_failure`), not as a traceback."""
    try:
        from transformers import GPT2LMHeadModel

        spec = json.loads(sys.argv[1])
        torch.set_num_threads(TRAIN_THREADS)
        _train_into(Path(spec["folder"]), ToyRecipe(**spec["recipe"]), int(spec["seed"]), bool(spec["progress"]),
                    GPT2LMHeadModel, portable=True)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it there
        report_failure(exc)


def _train_into(folder: Path, recipe: ToyRecipe, seed: int, progress: bool, model_cls, portable: bool) -> dict:
    if not portable:
        return _train_steps(folder, recipe, seed, progress, model_cls, portable, _config(recipe))
    # eager attention: its two products go through torch.matmul, where FixedPointMatmuls takes them
    # (the fused attention kernel calls the BLAS itself); the saved config does not keep it
    with FixedPointMatmuls():
        return _train_steps(folder, recipe, seed, progress, model_cls, portable,
                            _config(recipe, attn_implementation="eager"))


def _train_steps(folder: Path, recipe: ToyRecipe, seed: int, progress: bool, model_cls, portable: bool, config) -> dict:
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    eval_tokens = _eval_tokens(recipe)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
        with torch.no_grad():
            model.transformer.wte.weight.normal_(0.0, recipe.emb_std)
            model.transformer.wpe.weight.normal_(0.0, recipe.emb_std)
    model.train()
    # fused: PyTorch's own AdamW kernel; the default one takes its square root from MKL's vector math
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay,
                            fused=True if portable else None)
    warm = max(recipe.warmup, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    ckpt_root = folder / "checkpoints"
    ckpt_root.mkdir()
    train_loss: list[float] = []  # weighted objective per step
    plain_loss: list[float] = []  # unweighted next-token loss per step
    ckpts: dict[str, list] = {"step": [], "first_copy_loss": [], "second_copy_loss": [], "train_loss": []}

    def checkpoint(step: int) -> None:
        first, second = _evaluate(model, eval_tokens, recipe.eval_T)
        recent = train_loss[-recipe.checkpoint_every :]
        ckpts["step"].append(step)
        ckpts["first_copy_loss"].append(first)
        ckpts["second_copy_loss"].append(second)
        ckpts["train_loss"].append(float(sum(recent) / len(recent)) if recent else None)
        _save_model(model, ckpt_root / f"step-{step:05d}")
        if bar is not None:
            bar.set_postfix(first=f"{first:.2f}", second=f"{second:.2f}")

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=recipe.steps, desc="training toy-gpt2", unit="step")
    try:
        checkpoint(0)
        for step in range(1, recipe.steps + 1):
            x, copy = _batch(recipe, gen)  # [B, n], [B, n]
            logits = model(input_ids=x, use_cache=False).logits  # [B, n, V]
            ce = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, recipe.vocab_size), x[:, 1:].reshape(-1), reduction="none"
            )  # [B * (n-1)]
            weight = torch.where(copy[:, 1:].reshape(-1), 1.0, recipe.other_weight)
            loss = (ce * weight).sum() / weight.sum()  # the objective: copies weigh 1, the rest other_weight
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            train_loss.append(float(loss.detach()))
            plain_loss.append(float(ce.detach().mean()))
            if bar is not None:
                bar.update(1)
            if step % recipe.checkpoint_every == 0 or step == recipe.steps:
                checkpoint(step)
    finally:
        if bar is not None:
            bar.close()
    model.eval()
    _save_model(model, folder / "final")
    log = _training_log(model, seed, recipe, train_loss, plain_loss, ckpts, time.perf_counter() - t0, portable)
    (folder / "training_log.json").write_text(json.dumps(log, indent=1))
    return log


def _training_log(model, seed: int, recipe: ToyRecipe, train_loss: list[float], plain_loss: list[float], ckpts: dict,
                  wall_time_s: float, portable: bool) -> dict:
    """The training log: losses per step and checkpoint, the versions and kernels that trained it, the weights' hash."""
    return {
        "model": TOY_NAME,
        "seed": seed,
        "recipe": dataclasses.asdict(recipe),
        "eval": {"T": recipe.eval_T, "n_sequences": recipe.eval_n, "token_seed": 999_983},
        "train": {
            "step": list(range(1, len(train_loss) + 1)),
            "loss": train_loss,
            "loss_unweighted": plain_loss,
            "objective": "cross-entropy weighted 1 on copy targets, other_weight elsewhere (see recipe)",
        },
        "checkpoints": ckpts,
        "uniform_loss": math.log(recipe.vocab_size - 1),
        "wall_time_s": wall_time_s,
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "transformers_version": importlib.metadata.version("transformers"),
        "machine": platform.machine(),
        "libc": " ".join(platform.libc_ver()),
        "portable": portable,
        "training_version": TRAINING_VERSION if portable else None,
        "kernel_env": {k: os.environ.get(k) for k in PORTABLE_ENV} if portable else None,
        "matmuls": "exact integer products of 26-bit fixed-point operands (float64 limbs)" if portable else "native (BLAS)",
        "weights_sha256": weights_sha256(model),
    }



def expected_hash_problem(log: dict) -> str | None:
    """:func:`.toy_portable.hash_problem` of a training ``log`` against the default recipe."""
    return hash_problem(log, dataclasses.asdict(DEFAULT_RECIPE))

# --------------------------------------------------------------------------------------------
# The cached toy model
# --------------------------------------------------------------------------------------------


def toy_dir() -> Path:
    """Folder of the cached toy model: ``cache_dir()/models/toy-gpt2``."""
    return cache_dir() / "models" / TOY_NAME


def _complete(folder: Path) -> bool:
    """A finished, CPU-independent run of the current recipe (seed 0) and :data:`TRAINING_VERSION`.
    Why the checks: a cache trained by an older version of this module, or with native kernels,
    would otherwise be served as if it were this one's model."""
    if not ((folder / "final" / "config.json").exists() and (folder / "training_log.json").exists()):
        return False
    try:
        log = json.loads((folder / "training_log.json").read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(log, dict) and log.get("recipe") == dataclasses.asdict(DEFAULT_RECIPE) and log.get("seed") == 0
            and log.get("portable") is True and log.get("training_version") == TRAINING_VERSION
            and isinstance(log.get("weights_sha256"), str))


def _problem(folder: Path) -> tuple[str, bool] | None:
    """What is wrong with the cached toy (``(words, damaged)``), or ``None`` when it can be loaded."""
    problem = verify_cache_entry(folder)
    if problem is not None:
        return problem, folder.exists()
    if not _complete(folder):
        return "it was trained with another recipe, or by an older version", False
    return None


def _bars_wanted() -> bool:
    """The training bar of a build asked for nothing: on a terminal, unless bars are switched off."""
    return bool(sys.stderr.isatty()) and os.environ.get("TQDM_DISABLE", "") in ("", "0")


def ensure_toy_model(progress: bool | None = None) -> Path:
    """Return :func:`toy_dir`, training the toy model first if it is not cached yet.

    Why: the book and the tests load the toy model by name; the first use pays for the training
    (about a minute of CPU time), every later one reads the cache. The entry's manifest is
    verified first (without a lock: a read-only cache works); a damaged entry is retrained once
    with one :class:`~.cache.CacheRepairWarning`; a training that fails (a full disk) raises one
    sentence that names the cause.

    Args:
        progress: draw the training bar; ``None`` (default): only on a terminal, and not when
            ``TQDM_DISABLE`` is set (the command line's ``--no-progress``, a book page).
    """
    folder = toy_dir()
    found = _problem(folder)
    if found is None:
        tidy_entry(folder)
        return folder
    with building(folder, found[0]):  # one training at a time; a second process waits, then reads its result
        found = _problem(folder)
        if found is None:
            return folder
        problem, damaged = found
        if folder.exists():
            what = "is damaged" if damaged else "is out of date"
            warnings.warn(f"cache entry {folder} {what} ({problem}); retraining it", CacheRepairWarning, stacklevel=2)
        try:
            train_toy(folder, seed=0, recipe=DEFAULT_RECIPE, progress=_bars_wanted() if progress is None else progress)
        except Exception as exc:
            raise build_failure(folder, exc, source="check the disk, then run again") from None
        problem = verify_cache_entry(folder)
        if problem is not None:
            raise ModelUnavailableError(f"cache entry {folder} is damaged right after its training ({problem}); "
                                        f"check the disk, then remove it with `rm -rf {folder}` and run again")
    return folder


def load_training_log() -> dict:
    """The training log of the cached toy model (trains it first if missing)."""
    return json.loads((ensure_toy_model() / "training_log.json").read_text())


def toy_checkpoint_steps() -> list[int]:
    """Steps of the saved checkpoints of the cached toy model, ascending."""
    root = ensure_toy_model() / "checkpoints"
    return sorted(int(p.name.split("-")[1]) for p in root.glob("step-*") if (p / "config.json").exists())


def load_toy_model(device: str | torch.device = "cpu", dtype: str | torch.dtype = "float32", step: int | None = None) -> LoadedModel:
    """Load the toy GPT-2 (final weights, or the checkpoint at ``step``), training it if needed.

    Why checkpoints by step: following the stripe through training is the toy model's purpose.

    Args:
        device, dtype: as for :func:`.models.load_model`.
        step: ``None`` for the final model, else one of :func:`toy_checkpoint_steps`.
    """
    from transformers import GPT2LMHeadModel

    dev = resolve_device(device)
    dt = resolve_dtype(dtype)
    folder = ensure_toy_model()
    if step is None:
        path = folder / "final"
    else:
        steps = toy_checkpoint_steps()
        if isinstance(step, bool) or not isinstance(step, int) or step not in steps:
            shown = ", ".join(str(s) for s in steps[:6]) + (f", ..., {steps[-1]}" if len(steps) > 6 else "")
            raise ValueError(f"no toy checkpoint at step {step!r}; available steps: {shown}")
        path = folder / "checkpoints" / f"step-{step:05d}"
    try:
        with quiet_hf_progress():
            model = GPT2LMHeadModel.from_pretrained(path, dtype=dt)
    except Exception as exc:  # verified files that do not load: the entry was written wrong
        from ..memory import allocation_failure
        from .loaded import _first_line

        if allocation_failure(exc):
            raise
        raise ModelUnavailableError(f"cache entry {folder} cannot be loaded ({_first_line(exc)}); remove it with "
                                    f"`rm -rf {folder}` and run again to retrain it") from None
    model = prepare_model(model, dev, dt)
    vocab = int(model.config.vocab_size)
    return wrap_model(
        TOY_NAME, model, None, bos_token_id=BOS, ordinary_token_ids=torch.arange(1, vocab),
        source=str(path) if step is None else f"{path} (training step {step})",
    )


def load_registered(spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    """The registry's loader of ``toy-gpt2`` (final weights): :func:`load_toy_model` as a
    :data:`.models.Loader`, named in the registry by its import path so that :mod:`.models`
    never imports this module."""
    return load_toy_model(device=device, dtype=dtype)
