"""The toy GPT-2: a 2-block GPT-2 trained on CPU on repeated random sequences.

Why a toy model: the paper watches induction emerge layer by layer in large models; a model small
enough to train in the book lets us watch it emerge *in training time* as well, and check that the
response stripe appears when, and only when, the loss on repeats drops (the phase change of
Olsson et al. 2022).

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
``os.replace`` at the end, so an interrupted run leaves no half-written cache.

Same weights on every x86 CPU: PyTorch, MKL and oneDNN pick their kernels by the CPU's vector
units (AVX2, AVX-512), and kernels of different widths round differently; over 2000 optimiser
steps the difference grows until the phase change moves by a checkpoint or more. Training
therefore runs in a child process that fixes the kernels before torch is imported
(:data:`PORTABLE_ENV`: PyTorch's default, non-vectorised CPU kernels, MKL's conditional
numerical reproducibility mode, oneDNN limited to SSE4.1). It costs about twice the time of
native kernels and gives the same bits whatever the CPU; the log records the weights' SHA-256
(:func:`weights_sha256`) so that two machines can compare.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .behaviour import copy_losses
from .io import entry_lock, make_temp_dir, remove_stale_temps
from .models import LoadedModel, _finish, cache_dir, quiet_hf_progress, resolve_device, resolve_dtype, wrap_model
from .sequences import InductionLayout

__all__ = [
    "ToyRecipe",
    "DEFAULT_RECIPE",
    "checkpoint_subsample",
    "ensure_toy_model",
    "induction_through_training",
    "load_toy_model",
    "load_training_log",
    "loss_drop",
    "measurement_steps",
    "onset_step",
    "phase_change_step",
    "rise_step",
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
#: Set in the training child process before torch is imported (module docstring): the kernels
#: that round the same on every x86 CPU.
PORTABLE_ENV = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
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


def _config(recipe: ToyRecipe):
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=recipe.vocab_size, n_positions=recipe.n_positions, n_embd=recipe.d_model,
        n_layer=recipe.n_layers, n_head=recipe.n_heads, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        initializer_range=recipe.init_std, bos_token_id=BOS, eos_token_id=BOS, pad_token_id=None,
        tie_word_embeddings=False,
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
        if out.exists():
            old = make_temp_dir(out.parent, out.name)
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return log


def _train_in_child(folder: Path, recipe: ToyRecipe, seed: int, progress: bool) -> dict:
    """Run :func:`_train_into` in a fresh interpreter with :data:`PORTABLE_ENV`, return its log.

    Why a child process: the kernel choices of PyTorch, MKL and oneDNN are fixed when they load,
    so only a process that sets them before ``import torch`` trains with them.
    """
    import residual_response

    spec = {"folder": str(folder), "recipe": dataclasses.asdict(recipe), "seed": seed, "progress": progress}
    env = dict(os.environ, **PORTABLE_ENV)
    # the child imports this same package, wherever it was imported from
    package_root = str(Path(residual_response.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-c", "from residual_response.toy import _child_main; _child_main()", json.dumps(spec)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        err_lines = []
        for line in proc.stderr:  # forward the progress bar, keep the tail for an error message
            err_lines = (err_lines + [line])[-20:]
            if progress:
                sys.stderr.write(line)
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if code != 0:
        tail = "".join(err_lines).strip().splitlines()
        raise RuntimeError(f"toy training failed in its child process (exit {code}): {tail[-1] if tail else 'no message'}")
    return json.loads((folder / "training_log.json").read_text())


def _child_main() -> None:
    """Entry point of the training child process (:func:`_train_in_child`)."""
    from transformers import GPT2LMHeadModel

    spec = json.loads(sys.argv[1])
    torch.set_num_threads(TRAIN_THREADS)
    _train_into(Path(spec["folder"]), ToyRecipe(**spec["recipe"]), int(spec["seed"]), bool(spec["progress"]),
                GPT2LMHeadModel, portable=True)


def weights_sha256(model) -> str:
    """SHA-256 of a model's parameters and buffers, in name order, as raw float bytes.

    Why: two trainings agree bit for bit exactly when their hashes agree; the training log
    records it so that a run on another machine can be compared with one line.
    """
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tensor.dtype).encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _train_into(folder: Path, recipe: ToyRecipe, seed: int, progress: bool, model_cls, portable: bool) -> dict:
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    eval_tokens = _eval_tokens(recipe)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(_config(recipe))
        with torch.no_grad():
            model.transformer.wte.weight.normal_(0.0, recipe.emb_std)
            model.transformer.wpe.weight.normal_(0.0, recipe.emb_std)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
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
    log = {
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
        "wall_time_s": time.perf_counter() - t0,
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "portable": portable,
        "kernel_env": {k: os.environ.get(k) for k in PORTABLE_ENV} if portable else None,
        "weights_sha256": weights_sha256(model),
    }
    log["phase_change_step"] = phase_change_step(log)
    (folder / "training_log.json").write_text(json.dumps(log, indent=1))
    return log


def phase_change_step(log: dict, fraction: float = 0.5) -> int | None:
    """First checkpoint step at which the second-copy advantage reaches ``fraction`` of its final size.

    Why this definition: the advantage ``first - second`` (nats) is ~0 before induction and large
    after; the step where it crosses half its final value marks the middle of the drop and does not
    depend on the absolute loss level. ``None`` when the final advantage is below 0.5 nats (no
    phase change happened).

    Args:
        log: a training log (:func:`train_toy`, :func:`load_training_log`).
        fraction: in (0, 1).
    """
    if not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction!r}")
    c = log["checkpoints"]
    adv = [f - s for f, s in zip(c["first_copy_loss"], c["second_copy_loss"])]
    if not adv or adv[-1] < 0.5:
        return None
    for step, a in zip(c["step"], adv):
        if a >= fraction * adv[-1]:
            return int(step)
    return None


# --------------------------------------------------------------------------------------------
# The cached toy model
# --------------------------------------------------------------------------------------------


#: The recipe of the cached ``toy-gpt2`` (seed 0); a cache trained with another is retrained.
DEFAULT_RECIPE = ToyRecipe()


def toy_dir() -> Path:
    """Folder of the cached toy model: ``cache_dir()/models/toy-gpt2``."""
    return cache_dir() / "models" / TOY_NAME


def _complete(folder: Path) -> bool:
    """A finished, CPU-independent run of the current recipe (seed 0). Why the checks: a cache
    trained by an older version of this module, or with native kernels, would otherwise be served
    as if it were this one's model."""
    if not ((folder / "final" / "config.json").exists() and (folder / "training_log.json").exists()):
        return False
    try:
        log = json.loads((folder / "training_log.json").read_text())
    except (OSError, ValueError):
        return False
    return (log.get("recipe") == dataclasses.asdict(DEFAULT_RECIPE) and log.get("seed") == 0
            and log.get("portable") is True and isinstance(log.get("weights_sha256"), str))


def ensure_toy_model(progress: bool = True) -> Path:
    """Return :func:`toy_dir`, training the toy model first if it is not cached yet.

    Why: the book and the tests load the toy model by name; the first use pays for the training
    (about a minute of CPU time), every later one reads the cache.
    """
    folder = toy_dir()
    if _complete(folder):
        return folder
    with entry_lock(folder):  # one training at a time; a second process waits, then reads its result
        if not _complete(folder):
            train_toy(folder, seed=0, recipe=DEFAULT_RECIPE, progress=progress)
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
    with quiet_hf_progress():
        model = GPT2LMHeadModel.from_pretrained(path, dtype=dt)
    model = _finish(model, dev, dt)
    vocab = int(model.config.vocab_size)
    return wrap_model(
        TOY_NAME, model, None, bos_token_id=BOS, ordinary_token_ids=torch.arange(1, vocab),
        source=str(path) if step is None else f"{path} (training step {step})",
    )


# --------------------------------------------------------------------------------------------
# Following induction through training
# --------------------------------------------------------------------------------------------


def checkpoint_subsample(steps, n: int, around: int | None = None, n_around: int = 2) -> list[int]:
    """About ``n`` of the checkpoint ``steps``: always the first, the last, and ``around`` with neighbours.

    Why: measuring every checkpoint costs too much for a quick build, but the interesting part of
    training is the phase change; a subsample must keep the steps around it so that a rise there
    is resolved, and spread the rest evenly so that the plateaus before and after are seen.

    The checkpoint nearest ``around`` and ``n_around`` checkpoints on each side of it are always
    kept, with the first and last; the remaining ``n`` minus those are the checkpoints nearest
    to evenly spaced steps between the first and the last. When the kept ones already number
    ``n`` or more, they are returned alone (the result may then exceed ``n``).

    Args:
        steps: available checkpoint steps (any order; duplicates ignored).
        n: wanted number of steps, ``>= 2``.
        around: the step to resolve (e.g. :func:`phase_change_step`); ``None`` for none.
        n_around: neighbours kept on each side of ``around``, ``>= 0``.

    Returns:
        the chosen steps, ascending.
    """
    steps = sorted({int(s) for s in steps})
    if not steps:
        raise ValueError("steps is empty")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    if isinstance(n_around, bool) or not isinstance(n_around, int) or n_around < 0:
        raise ValueError(f"n_around must be an int >= 0, got {n_around!r}")
    chosen = {0, len(steps) - 1}
    if around is not None:
        i0 = min(range(len(steps)), key=lambda i: abs(steps[i] - around))
        chosen.update(range(max(0, i0 - n_around), min(len(steps), i0 + n_around + 1)))
    extra = n - len(chosen)
    if extra > 0:
        targets = [steps[0] + (steps[-1] - steps[0]) * (j + 1) / (extra + 1) for j in range(extra)]
        for target in targets:
            free = [i for i in range(len(steps)) if i not in chosen]
            if not free:
                break
            chosen.add(min(free, key=lambda i: abs(steps[i] - target)))
    return [steps[i] for i in sorted(chosen)]


def loss_drop(log: dict, low: float = 0.1, high: float = 0.9) -> tuple[int, int]:
    """The checkpoint steps where the second-copy advantage passes ``low`` and ``high`` of its final size.

    Why: the phase change is not one step but a stretch of training; the toy page asks whether the
    other views of induction move *during* it, so it needs the stretch, measured from the training
    log alone (every saved checkpoint, whatever subsample the page measures).

    Raises:
        ValueError: the log shows no phase change (:func:`phase_change_step` is ``None``).
    """
    if not 0 < low < high < 1:
        raise ValueError(f"need 0 < low < high < 1, got low={low!r}, high={high!r}")
    if phase_change_step(log) is None:
        raise ValueError("the training log shows no phase change (final second-copy advantage below 0.5 nats)")
    c = log["checkpoints"]
    adv = [f - s for f, s in zip(c["first_copy_loss"], c["second_copy_loss"])]
    start = rise_step(c["step"], adv, fraction=low)
    end = rise_step(c["step"], adv, fraction=high)
    return int(start), int(end)


def measurement_steps(log: dict, n_outside: int) -> list[int]:
    """Checkpoints to measure: every one from just before to just after the loss drop, plus ``n_outside`` others.

    Why every checkpoint across the drop: the page's claims are about *when* the scores move
    relative to the drop; with a sparse subsample a rise between two far-apart checkpoints would be
    reported at the later one, so the answer would depend on how many checkpoints a build can
    afford. Inside the drop the resolution is therefore always the saving interval; only the
    plateaus before and after, where nothing moves, are subsampled (evenly, with the first and the
    last checkpoint always kept).

    Args:
        log: the training log (:func:`load_training_log`).
        n_outside: checkpoints outside the drop window, ``>= 2`` (the first and last included).

    Returns:
        ascending checkpoint steps.
    """
    if isinstance(n_outside, bool) or not isinstance(n_outside, int) or n_outside < 2:
        raise ValueError(f"n_outside must be an int >= 2, got {n_outside!r}")
    steps = sorted(int(s) for s in log["checkpoints"]["step"])
    start, end = loss_drop(log)
    i0, i1 = steps.index(start), steps.index(end)
    window = steps[max(0, i0 - 1) : i1 + 2]  # one checkpoint beyond each end of the drop
    outside = [s for s in steps if s not in window]
    kept = checkpoint_subsample(outside, n_outside) if len(outside) >= 2 else outside
    return sorted(set(window) | set(kept))


def onset_step(steps, ci_low, level: float = 1.0) -> int | None:
    """First step from which the lower CI bound stays above ``level`` (``None`` if it never does).

    Why "stays": a single bootstrap interval that happens to clear 1 is a noisy signal; the onset
    of induction is where the score leaves the null for good.
    """
    steps = [int(s) for s in steps]
    low = [float(v) for v in ci_low]
    if len(steps) != len(low) or not steps:
        raise ValueError(f"steps and ci_low must be non-empty and of equal length, got {len(steps)} and {len(low)}")
    onset = None
    for s, v in zip(steps, low):
        if v > level:
            onset = s if onset is None else onset
        else:
            onset = None
    return onset


def rise_step(steps, values, fraction: float = 0.5, min_rise: float = 0.0) -> int | None:
    """First step at which ``values`` have gone ``fraction`` of the way from their first to their last value.

    Why: the loss, the attention score and the response score of the toy model all change at
    the phase change, on different scales; the step where each has covered half of its total
    change is a scale-free way to compare *when* they move (the same rule as
    :func:`phase_change_step`, which applies it to the second-copy advantage). Pass the
    logarithm of a ratio-like score to measure its rise in factors rather than in units.

    Args:
        steps: ascending training steps.
        values: one finite value per step.
        fraction: in (0, 1).
        min_rise: the total rise ``values[-1] - values[0]`` must exceed this, else ``None``.

    Returns:
        the first step with ``values >= values[0] + fraction * (values[-1] - values[0])``, or
        ``None`` when the values do not rise by more than ``min_rise``.
    """
    steps = [int(s) for s in steps]
    values = [float(v) for v in values]
    if len(steps) != len(values) or not steps:
        raise ValueError(f"steps and values must be non-empty and of equal length, got {len(steps)} and {len(values)}")
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError("steps must be strictly ascending")
    if not all(math.isfinite(v) for v in values):
        raise ValueError("values must be finite")
    if not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction!r}")
    total = values[-1] - values[0]
    if total <= min_rise:
        return None
    level = values[0] + fraction * total
    return next(s for s, v in zip(steps, values) if v >= level)


def induction_through_training(
    steps,
    *,
    T: int = 20,
    seeds: int = 4,
    eps: float = 1e-2,
    layer: int = 0,
    matrices_at=(),
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float32",
    n_boot: int = 1000,
) -> dict:
    """Attention-pattern and response-based induction scores of the toy model at checkpoints.

    Why: the toy model's page checks that three independent views of induction (the copy loss
    of the training log, the attention of heads on the induction stripe, and the response
    stripe of :func:`.induction.induction_scores`) change at the same point of training.

    For every checkpoint step, with sequences ``[BOS, a, a]`` of copy length ``T`` and seeds
    ``0..seeds-1`` (the same sequences at every step):

    * ``attention``: the largest, over the heads of block ``l``, mean attention from target
      ``T+k-1`` to source ``k`` (:func:`.attention.induction_attention_scores`);
      ``attention_head`` is that head and ``attention_control`` its value on the controls;
    * ``previous_token``: the largest previous-token attention of a head of block ``l``
      (:func:`.attention.previous_token_scores`, on random sequences);
    * ``response``, ``response_lo``, ``response_hi``: the induction score at read layer ``l``
      (the stream after block ``l``) with its bootstrap CI, perturbing stream ``layer``;
      ``duplicate``: the duplicate-token (lag ``T``) score there.

    Args:
        steps: checkpoint steps (:func:`toy_checkpoint_steps`).
        T, seeds, eps, layer: as for :func:`.induction.induction_scores`.
        matrices_at: steps whose mean response matrices (over seeds) are kept.
        device, dtype: as for :func:`load_toy_model`.
        n_boot: bootstrap resamples of both CIs.

    Returns:
        ``{"rows": [...], "matrices": {step: {"repeated"|"control": [n_read, T, N]}},
        "read_layers": [...], "sources": [...], "T": T, "seeds": seeds}``; ``rows`` holds one dict
        per step and block ``l = 1..L`` with the keys above plus ``step`` and ``layer``.
    """
    from .attention import induction_attention_scores, previous_token_scores
    from .induction import induction_scores

    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be an int >= 1, got {seeds!r}")
    steps = [int(s) for s in steps]
    wanted = {int(s) for s in matrices_at}
    missing = sorted(wanted - set(steps))
    if missing:
        raise ValueError(f"matrices_at steps {missing} are not among the measured steps")
    rows, matrices, reads, sources = [], {}, None, None
    for step in steps:
        lm = load_toy_model(device=device, dtype=dtype, step=step)
        att = induction_attention_scores(lm, T=T, seeds=range(seeds), n_boot=n_boot)
        prev = previous_token_scores(lm, T=T, seeds=range(seeds), n_boot=n_boot)["scores"]["mean"]  # [L, H]
        keep = step in wanted
        res = induction_scores(lm, T=T, seeds=seeds, layer=layer, eps=eps, n_boot=n_boot, keep_matrices=keep)
        reads, sources = list(res.layers), list(res.stripes.sources)
        if keep:
            matrices[step] = {kind: m.mean(axis=0) for kind, m in res.stripes.matrices.items()}
        rep, ctrl = att["repeated"]["mean"], att["baseline"]["mean"]  # [L, H]
        for l in range(1, lm.n_layers + 1):
            head = int(rep[l - 1].argmax())
            i = reads.index(l) if l in reads else None
            rows.append({
                "step": step, "layer": l,
                "attention": float(rep[l - 1, head]), "attention_head": head,
                "attention_control": float(ctrl[l - 1, head]),
                "previous_token": float(prev[l - 1].max()),
                "response": float("nan") if i is None else float(res.score[i]),
                "response_lo": float("nan") if i is None else float(res.ci_low[i]),
                "response_hi": float("nan") if i is None else float(res.ci_high[i]),
                "duplicate": float("nan") if i is None else float(res.duplicate_score[i]),
            })
    return {"rows": rows, "matrices": matrices, "read_layers": reads, "sources": sources, "T": T, "seeds": seeds}
