"""A fast stand-in for the GGUF stand-ins, and pause points for killing a process mid-write.

Why a fake: the real stand-ins take tens of seconds to de-quantise and must never be damaged
(other runs share their cache). The fake goes through the same cache code
(:func:`residual_response.models.gguf._ready_standin`), only the step that writes the weights is a
small random Llama and a word-level tokenizer, written in well under a second.

Used in-process by tests/unit/test_faults.py and, for the kill tests, from a subprocess:
``python -c "import fault_helpers; fault_helpers.main()" <cache> <point> <command...>``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

NAME = "fake-standin"


def write_fake_weights(folder: Path, gguf_path: Path) -> None:
    """Write a random-llama checkpoint and a tokenizer into ``folder`` (the fake de-quantisation)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    from residual_response.models import RANDOM_VOCAB, build_random_model, quiet_hf_progress

    lm = build_random_model("llama", seed=0)
    with quiet_hf_progress():
        lm.model.save_pretrained(folder, safe_serialization=True)
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, RANDOM_VOCAB)}}
    tok = Tokenizer(WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.save_pretrained(folder)
    count = os.environ.get("FAKE_BUILD_COUNT")
    if count:  # the lock test counts builds
        with open(count, "a") as fh:
            fh.write("build\n")


def use_fake_cache(tmp_path: Path, monkeypatch) -> Path:
    """An empty cache folder in ``tmp_path`` with the fake stand-in registered (a test's ``cache`` fixture)."""
    root = tmp_path / "cache"
    monkeypatch.setenv("RESIDUAL_RESPONSE_CACHE", str(root))
    install(tmp_path / "fake.gguf", monkeypatch.setitem, monkeypatch.setattr)
    return root


def entry(root: Path) -> Path:
    """The fake stand-in's entry in the cache ``root``."""
    return root / "models" / NAME


def one_error_line(err: str) -> str:
    """The one ``error:`` line of a run's stderr (and no traceback), asserted."""
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    """Temporary files and folders (``.<name>.<pid>-<random>.tmp``) in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp"))


def install(gguf_path: Path, setitem=None, setattr_=None, *, source=None) -> None:
    """Register ``fake-standin`` (with ``setitem``/``setattr_`` from monkeypatch, or for good in a subprocess)."""
    from residual_response import models
    from residual_response.models import gguf

    setitem = setitem or (lambda d, k, v: d.__setitem__(k, v))
    setattr_ = setattr_ or setattr
    spec = models.ModelSpec(NAME, "llama", True, "fake GGUF stand-in for fault tests", gguf._load_gguf_standin,
                            layers=4, d_model=64)
    setitem(models.REGISTRY, NAME, spec)
    setitem(gguf._GGUF_SOURCES, NAME, source or (lambda: gguf_path))
    setattr_(gguf, "_write_dequantised", write_fake_weights)


def _pause(point: str) -> None:
    print(f"PAUSED {point}", flush=True)
    time.sleep(600)


def main() -> None:
    """Run a load or a CLI command that pauses at ``point`` so that the parent can SIGKILL it there."""
    cache, point, *command = sys.argv[1:]
    os.environ["RESIDUAL_RESPONSE_CACHE"] = cache
    from residual_response import cli, models
    from residual_response.models import gguf
    import importlib

    response_mod = importlib.import_module("residual_response.engine")

    install(Path(cache).parent / "fake.gguf")
    if point == "weights":  # the weights are written, the tokenizer and the manifest are not
        def slow_writer(folder, gguf):
            write_fake_weights(folder, gguf)
            if (folder / "model.safetensors").exists():
                _pause(point)
        gguf._write_dequantised = slow_writer
    elif point == "manifest":  # everything written, the entry not yet renamed into place
        real = gguf.write_cache_manifest

        def slow_manifest(folder):
            out = real(folder)
            _pause(point)
            return out
        gguf.write_cache_manifest = slow_manifest
    elif point == "compute":  # the CLI's output is reserved, the computation runs
        real_response = response_mod.run_response

        def slow_response(*args, **kwargs):
            _pause(point)
            return real_response(*args, **kwargs)
        response_mod.run_response = slow_response
    elif point == "write":  # half of the output archive is written
        def slow_write(self, fh):
            fh.write(b"PK\x03\x04" + b"\0" * 4096)
            fh.flush()
            _pause(point)
        response_mod.ResponseResult.write_npz = slow_write
    elif point == "slow-build":  # the lock test: a build that takes a moment
        def slow_writer(folder, gguf):
            time.sleep(1.0)
            write_fake_weights(folder, gguf)
        gguf._write_dequantised = slow_writer
    if command and command[0] == "load":
        models.load_model(NAME)
        print("LOADED", flush=True)
        return
    sys.exit(cli.main(command))
