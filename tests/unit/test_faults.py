"""Fault injection: damaged caches, killed writers, full and unwritable disks, broken checkpoints.

Every fault must end in one of two ways: the run heals it (a damaged cache entry is rebuilt once,
with one ``warning:`` line that names it) or it stops with one ``error:`` line that says what to do,
exit status 2 and no file left behind. Never a traceback, never a wrong answer with exit 0.

These tests use their own cache folders (``tmp_path``) and a fake stand-in built from a random
model in well under a second (tests/fault_helpers.py); the shared cache is never touched.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import fault_helpers
from fault_helpers import entry, leftovers, one_error_line
from residual_response import cli, models
from residual_response.checks import NonFiniteResultError
from residual_response.models import CacheRepairWarning, ModelUnavailableError, load_model

TESTS = Path(__file__).resolve().parents[1]  # where fault_helpers.py lives
LIB = TESTS.parent / "lib"


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder of this test, with the fake stand-in registered."""
    return fault_helpers.use_fake_cache(tmp_path, monkeypatch)


def run_cli(argv, capsys) -> tuple[int, str]:
    """The CLI in-process (fast); returns (status, stderr)."""
    rc = cli.main(argv)
    return rc, capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# cache integrity
# --------------------------------------------------------------------------------------------


def test_a_fresh_entry_has_a_manifest_and_loads_without_warnings(cache):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lm = load_model(fault_helpers.NAME)
    record = json.loads((entry(cache) / models.MANIFEST).read_text())
    assert "model.safetensors" in record["files"]
    assert all(len(f["sha256"]) == 64 and f["size"] > 0 for f in record["files"].values())
    assert lm.n_layers == 4 and lm.tokenizer is not None
    before = (entry(cache) / "model.safetensors").stat().st_mtime_ns
    load_model(fault_helpers.NAME)  # a healthy entry is not rebuilt
    assert (entry(cache) / "model.safetensors").stat().st_mtime_ns == before


def _truncate(path: Path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _empty(path: Path):
    path.write_bytes(b"")


def _overwrite_middle(path: Path):
    """Overwrite 64 KiB in the middle with random bytes; the size stays the same."""
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(size // 2)
        fh.write(np.random.default_rng(0).bytes(min(1 << 16, size // 4)))


def _flip_one_byte(path: Path):
    with open(path, "r+b") as fh:
        fh.seek(path.stat().st_size - 1)
        last = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([last[0] ^ 0xFF]))


DAMAGE = {
    "weights truncated": ("model.safetensors", _truncate),
    "weights emptied": ("model.safetensors", _empty),
    "weights missing": ("model.safetensors", os.remove),
    "weights overwritten in the middle": ("model.safetensors", _overwrite_middle),
    "weights: one byte flipped": ("model.safetensors", _flip_one_byte),
    "config missing": ("config.json", os.remove),
    "tokenizer truncated": ("tokenizer.json", _truncate),
    "manifest missing": (models.MANIFEST, os.remove),
    "manifest garbage": (models.MANIFEST, lambda p: p.write_text("{not json")),
    "manifest emptied": (models.MANIFEST, _empty),
}


@pytest.mark.parametrize("fault", list(DAMAGE))
def test_a_damaged_entry_is_rebuilt_once_with_one_warning(cache, fault):
    load_model(fault_helpers.NAME)
    name, damage = DAMAGE[fault]
    models.cache._verified.clear()  # a new process: nothing verified yet
    damage(entry(cache) / name)
    with pytest.warns(CacheRepairWarning) as record:
        lm = load_model(fault_helpers.NAME)
    repairs = [w for w in record if issubclass(w.category, CacheRepairWarning)]
    assert len(repairs) == 1 and str(entry(cache)) in str(repairs[0].message)
    assert models.verify_cache_entry(entry(cache)) is None
    assert torch.isfinite(next(lm.model.parameters())).all()


def test_a_damaged_entry_through_the_cli_is_one_warning_line_then_a_result(cache, tmp_path, capsys):
    load_model(fault_helpers.NAME)
    models.cache._verified.clear()
    _overwrite_middle(entry(cache) / "model.safetensors")
    out = tmp_path / "chi.npz"
    rc, err = run_cli(["response", "--model", fault_helpers.NAME, "--sequence", "repeated", "--length", "3",
                       "--eps", "1e-2", "--out", str(out), "--no-progress"], capsys)
    assert rc == 0, err
    warning_lines = [l for l in err.splitlines() if l.startswith("warning:")]
    assert len(warning_lines) == 1 and str(entry(cache)) in warning_lines[0] and "rebuilding" in warning_lines[0]
    assert np.isfinite(np.load(out)["chi"]).all()


def test_a_damaged_entry_that_cannot_be_rebuilt_says_how_to_clear_it(cache, tmp_path, monkeypatch, capsys):
    load_model(fault_helpers.NAME)
    models.cache._verified.clear()
    _truncate(entry(cache) / "model.safetensors")

    def unavailable():
        raise ModelUnavailableError("the GGUF package is not installed")

    monkeypatch.setitem(models.gguf._GGUF_SOURCES, fault_helpers.NAME, unavailable)
    rc, err = run_cli(["response", "--model", fault_helpers.NAME, "--sequence", "repeated", "--length", "3",
                       "--eps", "1e-2", "--out", str(tmp_path / "chi.npz"), "--no-progress"], capsys)
    line = one_error_line(err)  # no "rebuilding" warning: the rebuild cannot start
    assert rc == 2 and f"rm -rf {entry(cache)}" in line and "cannot be rebuilt" in line
    assert not (tmp_path / "chi.npz").exists() and leftovers(tmp_path) == []


def test_stale_temporary_folders_of_killed_builds_are_removed(cache):
    load_model(fault_helpers.NAME)
    parent = entry(cache).parent
    dead = parent / f".{fault_helpers.NAME}.999999999-abc.tmp"  # no such process
    dead.mkdir()
    (dead / "model.safetensors").write_bytes(b"x" * 1000)
    legacy = parent / f".{fault_helpers.NAME}-k2j3h4"  # older versions' name
    legacy.mkdir()
    load_model(fault_helpers.NAME)
    assert not dead.exists() and not legacy.exists()


def test_the_cache_root_is_a_file(tmp_path, monkeypatch, capsys):
    f = tmp_path / "hostname"
    f.write_text("x")
    monkeypatch.setenv("RESIDUAL_RESPONSE_CACHE", str(f))
    rc, err = run_cli(["response", "--model", "random-llama", "--sequence", "repeated", "--length", "3",
                       "--eps", "1e-2", "--out", str(tmp_path / "chi.npz"), "--no-progress"], capsys)
    assert rc == 2 and "RESIDUAL_RESPONSE_CACHE" in one_error_line(err) and "not a folder" in err
    assert leftovers(tmp_path) == [] and not (tmp_path / "chi.npz").exists()
    monkeypatch.setenv("RESIDUAL_RESPONSE_CACHE", str(f / "sub"))
    with pytest.raises(ValueError, match="is not a folder"):
        models.validate_cache_dir()


def test_cache_entries_and_outputs_honour_the_umask(cache, tmp_path, capsys):
    old = os.umask(0o002)
    try:
        load_model(fault_helpers.NAME)
        out = tmp_path / "ind.json"
        rc, err = run_cli(["induction", "--model", "random-gpt2", "--length", "3", "--seeds", "1",
                           "--out", str(out), "--no-progress"], capsys)
        assert rc == 0, err
    finally:
        os.umask(old)
    assert entry(cache).stat().st_mode & 0o777 == 0o775
    assert (entry(cache) / "model.safetensors").stat().st_mode & 0o777 == 0o664
    assert (entry(cache) / models.MANIFEST).stat().st_mode & 0o777 == 0o664
    assert out.stat().st_mode & 0o777 == 0o664


# --------------------------------------------------------------------------------------------
# local checkpoint folders
# --------------------------------------------------------------------------------------------


@pytest.fixture
def checkpoint(tmp_path):
    folder = tmp_path / "ckpt"
    fault_helpers.write_fake_weights(folder, Path("unused"))
    return folder


@pytest.mark.parametrize("fault", ["truncated", "emptied", "missing", "config garbage"])
def test_a_broken_checkpoint_folder_is_one_error_line(checkpoint, tmp_path, fault, capsys):
    weights = checkpoint / "model.safetensors"
    if fault == "truncated":
        _truncate(weights)
    elif fault == "emptied":
        _empty(weights)
    elif fault == "missing":
        weights.unlink()
    else:
        (checkpoint / "config.json").write_text("{")
    with pytest.raises(ModelUnavailableError) as exc:
        load_model(str(checkpoint))
    assert "\n" not in str(exc.value) and str(checkpoint) in str(exc.value)
    rc, err = run_cli(["induction", "--model", str(checkpoint), "--length", "3", "--seeds", "1",
                       "--out", str(tmp_path / "ind.json"), "--no-progress"], capsys)
    assert rc == 2 and str(checkpoint) in one_error_line(err)
    assert not (tmp_path / "ind.json").exists() and leftovers(tmp_path) == []


def test_a_checkpoint_with_nan_weights_is_refused(checkpoint):
    from safetensors.torch import load_file, save_file

    weights = checkpoint / "model.safetensors"
    tensors = load_file(weights)
    name = sorted(k for k in tensors if k.endswith("q_proj.weight"))[0]
    tensors[name][0, 0] = float("nan")
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(ModelUnavailableError, match="NaN or inf"):
        load_model(str(checkpoint))


# --------------------------------------------------------------------------------------------
# never a wrong answer with exit 0
# --------------------------------------------------------------------------------------------


def test_non_finite_chi_names_layer_and_source():
    from residual_response.models import build_random_model
    from residual_response.engine import response
    from residual_response.sequences import make_sequence

    lm = build_random_model("llama", seed=0)
    with torch.no_grad():
        lm.blocks[2].mlp.down_proj.weight[0, 0] = float("inf")  # overflows from stream 3 on
    tokens = make_sequence(lm, "repeated", 3, 0)
    with pytest.raises(NonFiniteResultError, match=r"first at read layer 3, source 0") as exc:
        response(lm, tokens, [1e-2])
    assert "dtype" in str(exc.value) and "eps" in str(exc.value)


def test_non_finite_chi_through_the_cli_writes_nothing(tmp_path, monkeypatch, capsys):
    real = models.build_random_model

    def broken(*args, **kwargs):
        lm = real(*args, **kwargs)
        with torch.no_grad():
            lm.blocks[1].mlp.down_proj.weight.fill_(float("nan"))
        return lm

    monkeypatch.setattr(models.random_init, "build_random_model", broken)
    for command in (["regime", "--points", "3"], ["induction", "--seeds", "1"]):
        out = tmp_path / "out.json"
        rc, err = run_cli([command[0], "--model", "random-llama", "--length", "3", *command[1:], "--out", str(out),
                           "--no-progress"], capsys)
        assert rc == 2 and "not finite" in one_error_line(err) and "read layer 2" in err
        assert not out.exists() and leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------------
# outputs: unwritable, full, killed
# --------------------------------------------------------------------------------------------


def _mount_tmpfs(where: Path, options: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    return proc.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs (skipped where this process may not mount)."""
    where = tmp_path / "small"
    if not _mount_tmpfs(where, "size=64k"):
        pytest.skip("cannot mount a tmpfs here")
    yield where
    subprocess.run(["umount", str(where)], capture_output=True)


@pytest.fixture
def read_only_disk(tmp_path):
    where = tmp_path / "ro"
    if not _mount_tmpfs(where, "ro,size=64k"):
        pytest.skip("cannot mount a tmpfs here")
    yield where
    subprocess.run(["umount", str(where)], capture_output=True)


RESPONSE = ["response", "--model", "random-llama", "--sequence", "repeated", "--length", "30", "--eps", "1e-2",
            "--no-progress"]


def test_an_output_larger_than_the_free_space_fails_before_the_computation(small_disk, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(importlib.import_module("residual_response.engine"), "run_response",
                        lambda *a, **k: calls.append(1))
    rc, err = run_cli(RESPONSE + ["--out", str(small_disk / "chi.npz")], capsys)  # ~150 KiB of chi
    assert rc == 2 and "cannot write --out" in one_error_line(err) and "space" in err
    assert calls == [] and list(small_disk.iterdir()) == []


def test_a_full_disk_before_the_run_is_one_error_line(small_disk, capsys):
    fd = os.open(small_disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:  # fill it to the last block
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    rc, err = run_cli(["induction", "--model", "random-gpt2", "--length", "3", "--seeds", "1", "--no-progress",
                       "--out", str(small_disk / "ind.json")], capsys)
    assert rc == 2 and "cannot write --out" in one_error_line(err)
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_a_disk_that_fills_during_the_write_leaves_no_litter(tmp_path, capsys, monkeypatch):
    from residual_response import io

    def full(self, write):
        self.discard()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io.OutputReservation, "commit", full)
    rc, err = run_cli(["induction", "--model", "random-gpt2", "--length", "3", "--seeds", "1", "--no-progress",
                       "--out", str(tmp_path / "ind.json")], capsys)
    assert rc == 2 and "No space left" in one_error_line(err)
    assert list(tmp_path.iterdir()) == []


def test_a_cache_on_a_full_disk_is_one_error_line(small_disk, tmp_path, monkeypatch, capsys):
    fault_helpers.install(tmp_path / "fake.gguf", monkeypatch.setitem, monkeypatch.setattr)
    monkeypatch.setenv("RESIDUAL_RESPONSE_CACHE", str(small_disk / "cache"))
    rc, err = run_cli(["induction", "--model", fault_helpers.NAME, "--length", "3", "--seeds", "1", "--no-progress",
                       "--out", str(tmp_path / "ind.json")], capsys)
    line = one_error_line(err)
    assert rc == 2 and "cache entry" in line and "RESIDUAL_RESPONSE_CACHE" in line
    assert leftovers(small_disk / "cache" / "models") == [] and leftovers(tmp_path) == []


@pytest.mark.parametrize("where", ["/proc/x.npz", "/proc/self/x.npz", "/etc/hostname/x.npz", "read-only", "missing",
                                   "a folder", "empty", "blank"])
def test_unwritable_outputs_are_one_error_line_before_the_model_loads(where, tmp_path, request, capsys, monkeypatch):
    loads = []
    monkeypatch.setattr(cli.jobs, "load", lambda args: loads.append(1))
    if where == "read-only":
        out = str(request.getfixturevalue("read_only_disk") / "x.npz")
    elif where == "missing":
        out = str(tmp_path / "missing" / "x.npz")
    elif where == "a folder":
        out = str(tmp_path)
    elif where == "empty":
        out = ""
    elif where == "blank":
        out = "  "
    else:
        out = where
    rc, err = run_cli(RESPONSE + ["--out", out], capsys)
    line = one_error_line(err)
    assert rc == 2 and "--out" in line and loads == []
    assert list(tmp_path.iterdir()) in ([], [tmp_path / "ro"])


# --- kills -----------------------------------------------------------------------------------


def _start(tmp_path: Path, point: str, *command: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{LIB}{os.pathsep}{TESTS}", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", "import fault_helpers; fault_helpers.main()", str(tmp_path / "cache"), point, *command],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)


def _kill_when_paused(proc: subprocess.Popen, point: str) -> None:
    line = proc.stdout.readline()
    if f"PAUSED {point}" not in line:
        proc.kill()
        raise AssertionError(f"never reached {point}: {line!r} {proc.stderr.read()}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("point", ["weights", "manifest"])
def test_a_build_killed_mid_write_leaves_nothing_the_next_run_trusts(tmp_path, point, monkeypatch):
    proc = _start(tmp_path, point, "load")
    _kill_when_paused(proc, point)
    parent = tmp_path / "cache" / "models"
    assert leftovers(parent) != []  # the killed build's temporary folder
    assert not (parent / fault_helpers.NAME).exists()  # never renamed into place
    monkeypatch.setenv("RESIDUAL_RESPONSE_CACHE", str(tmp_path / "cache"))
    fault_helpers.install(tmp_path / "fake.gguf", monkeypatch.setitem, monkeypatch.setattr)
    lm = load_model(fault_helpers.NAME)
    assert lm.n_layers == 4 and leftovers(parent) == []
    assert models.verify_cache_entry(parent / fault_helpers.NAME) is None


@pytest.mark.parametrize("point", ["compute", "write"])
def test_a_cli_run_killed_mid_run_leaves_no_output_and_its_temp_is_cleaned(tmp_path, point, capsys):
    out = tmp_path / "chi.npz"
    proc = _start(tmp_path, point, *RESPONSE[:6], "3", *RESPONSE[7:], "--out", str(out))
    _kill_when_paused(proc, point)
    assert not out.exists() and len(leftovers(tmp_path)) == 1
    rc, err = run_cli(RESPONSE[:6] + ["3"] + RESPONSE[7:] + ["--out", str(out)], capsys)
    assert rc == 0, err
    assert np.isfinite(np.load(out)["chi"][:, :, 0]).all() and leftovers(tmp_path) == []


def test_two_processes_build_one_entry_once(tmp_path):
    count = tmp_path / "builds.txt"
    env_extra = {"FAKE_BUILD_COUNT": str(count)}
    procs = []
    for _ in range(2):
        env = {**os.environ, "PYTHONPATH": f"{LIB}{os.pathsep}{TESTS}", **env_extra}
        procs.append(subprocess.Popen(
            [sys.executable, "-c", "import fault_helpers; fault_helpers.main()", str(tmp_path / "cache"),
             "slow-build", "load"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert all("LOADED" in o for o, _ in outs)
    assert count.read_text().count("build") == 1
    assert leftovers(tmp_path / "cache" / "models") == []


def test_only_the_temporaries_of_dead_writers_are_removed(tmp_path):
    """A live writer's temporary (here: this process's) stays; a killed writer's goes."""
    from residual_response.io import remove_stale_temps

    live = tmp_path / f".x.npz.{os.getpid()}-abc.tmp"
    dead = tmp_path / ".x.npz.999999999-abc.tmp"
    other = tmp_path / ".y.npz.999999999-abc.tmp"
    for p in (live, dead, other):
        p.write_bytes(b"x")
    assert remove_stale_temps(tmp_path, "x.npz") == [dead]
    assert live.exists() and other.exists() and not dead.exists()
