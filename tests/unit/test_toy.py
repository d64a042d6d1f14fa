"""The toy GPT-2 trainer: files, atomic writes, determinism, loading (a tiny, few-step run)."""

import json
import os
import shutil

import numpy as np
import pytest
import torch

from residual_response.models import toy, toy_portable
from residual_response.models.toy import ToyRecipe, train_toy

TINY = ToyRecipe(vocab_size=16, n_positions=24, d_model=8, n_layers=2, n_heads=2, steps=6, checkpoint_every=3,
                 batch_size=4, train_len=16, t_min=2, t_max=6, eval_T=5, eval_n=4, warmup=2)


def _state(folder):
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(folder).state_dict()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """``(folder, log)`` of one portable TINY run (seed 0), trained once for the tests that read it;
    its parent folder holds nothing else."""
    out = tmp_path_factory.mktemp("tiny-run") / "toy"
    return out, train_toy(out, seed=0, recipe=TINY, progress=False)


#: CPU settings of a caller on another CPU (other vector units, MKL and oneDNN set otherwise)
OTHER_CPU_SETTINGS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "MKL_CBWR": "COMPATIBLE",
                      "ONEDNN_MAX_CPU_ISA": "SSE41", "NPY_DISABLE_CPU_FEATURES": "X86_V3,X86_V4,AVX512_ICL,AVX512_SPR"}


@pytest.fixture(scope="module")
def tiny_rerun(tmp_path_factory):
    """``(folder, log)`` of a second portable TINY run with the same seed (0), trained by a caller with
    :data:`OTHER_CPU_SETTINGS`: one training that both the same-seed test and the CPU-settings test
    compare with :func:`tiny_run` (a child process costs seconds, nearly all of it imports)."""
    out = tmp_path_factory.mktemp("tiny-rerun") / "toy"
    with pytest.MonkeyPatch.context() as mp:
        for name, value in OTHER_CPU_SETTINGS.items():
            mp.setenv(name, value)
        return out, train_toy(out, seed=0, recipe=TINY, progress=False)


def _cache_with(tiny_run, tmp_path, monkeypatch) -> None:
    """Point the cache at tmp_path, with a copy of the TINY run as the toy's entry."""
    monkeypatch.setenv("RESIDUAL_RESPONSE_CACHE", str(tmp_path))
    monkeypatch.setattr(toy, "DEFAULT_RECIPE", TINY)
    shutil.copytree(tiny_run[0], toy.toy_dir())


def test_train_writes_everything(tiny_run):
    out, log = tiny_run
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000", "step-00003", "step-00006"]
    assert (out / "final" / "config.json").exists()
    on_disk = json.loads((out / "training_log.json").read_text())
    assert on_disk["checkpoints"]["step"] == [0, 3, 6] == log["checkpoints"]["step"]
    assert len(on_disk["train"]["loss"]) == 6
    for key in ("first_copy_loss", "second_copy_loss"):
        assert len(on_disk["checkpoints"][key]) == 3
        assert all(v > 0 for v in on_disk["checkpoints"][key])
    # nothing left behind next to the destination (temporary folders are renamed or removed)
    assert sorted(p.name for p in out.parent.iterdir()) == ["toy"]
    final, last = _state(out / "final"), _state(out / "checkpoints" / "step-00006")
    assert all(torch.equal(final[k], last[k]) for k in final)


def test_same_seed_same_weights(tiny_run, tiny_rerun, tmp_path):
    a, b = tiny_run[1], tiny_rerun[1]  # both seed 0
    c = train_toy(tmp_path / "c", seed=4, recipe=TINY, progress=False)
    assert a["train"]["loss"] == b["train"]["loss"]
    sa, sb, sc = (_state(folder / "final") for folder in (tiny_run[0], tiny_rerun[0], tmp_path / "c"))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_training_leaves_global_state_alone(tmp_path):
    torch.manual_seed(123)
    expect = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    train_toy(tmp_path / "t", seed=0, recipe=TINY, steps=2, checkpoint_every=2, progress=False, portable=False)
    assert torch.equal(torch.rand(3), expect)
    assert torch.get_num_threads() == threads


def test_interrupted_run_leaves_no_folder(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = toy._save_model

    def failing(model, folder):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        real(model, folder)

    monkeypatch.setattr(toy, "_save_model", failing)
    with pytest.raises(KeyboardInterrupt):
        train_toy(tmp_path / "toy", seed=0, recipe=TINY, progress=False, portable=False)
    assert list(tmp_path.iterdir()) == []


def test_training_removes_leftovers_of_killed_runs_and_honours_the_umask(tmp_path):
    stale = tmp_path / ".toy.999999999-x.tmp"  # a temporary folder of a training whose process is gone
    stale.mkdir()
    (stale / "half-written").write_text("x")
    old = os.umask(0o022)
    try:
        train_toy(tmp_path / "toy", seed=0, recipe=TINY, progress=False, portable=False)
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy"]
    assert (tmp_path / "toy").stat().st_mode & 0o777 == 0o755


def test_portable_training_ignores_the_callers_cpu_settings(tiny_run, tiny_rerun):
    """The training child fixes its kernels itself: a caller limited to other vector units (as on
    another CPU), or with MKL and oneDNN set otherwise, gets the same bits as the run trained with
    this process's own settings, and the log's hash is that of the saved weights. (That another
    seed gives other weights is test_same_seed_same_weights'.)"""
    from transformers import GPT2LMHeadModel

    a = tiny_run[1]  # seed 0, trained with the settings this test process started with
    b = tiny_rerun[1]  # seed 0, trained by a caller with OTHER_CPU_SETTINGS
    assert a["portable"] is True and a["kernel_env"]["ATEN_CPU_CAPABILITY"] == "default"
    assert a["training_version"] == toy.TRAINING_VERSION and a["matmuls"].startswith("exact integer products")
    assert b["kernel_env"] == a["kernel_env"]
    assert a["weights_sha256"] == b["weights_sha256"]
    assert toy.weights_sha256(GPT2LMHeadModel.from_pretrained(tiny_run[0] / "final")) == a["weights_sha256"]


def test_portable_training_calls_mkl_only_for_exact_integer_products(tmp_path):
    """The training child, run with MKL's and oneDNN's verbose logs on, logs no oneDNN primitive and
    no MKL call but float64 products (DGEMM), which hold integers exactly
    (test_exact_integer_products_equal_int64_products_bit_for_bit): no float32 product, no vector
    math. The same log prints a line per call for a plain float32 product."""
    import dataclasses
    import subprocess
    import sys

    folder = tmp_path / "t"
    folder.mkdir()
    spec = {"folder": str(folder), "recipe": dataclasses.asdict(TINY), "seed": 0, "progress": False}
    env = dict(os.environ, **toy.PORTABLE_ENV, MKL_VERBOSE="1", ONEDNN_VERBOSE="all")
    code = "from residual_response.models.toy import _child_main; _child_main()"
    out = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], env=env, capture_output=True, text=True, check=True)
    calls = [line for line in (out.stdout + out.stderr).splitlines() if "verbose" in line.lower()]
    assert not [c for c in calls if "onednn" in c.lower() or "dnnl" in c.lower()], calls[:3]
    mkl_calls = [c.split()[1].split("(")[0] for c in calls if c.startswith("MKL_VERBOSE") and "(" in c.split()[1]]
    assert mkl_calls and set(mkl_calls) <= {"DGEMM", "DGEMM_BATCH"}, sorted(set(mkl_calls))
    assert json.loads((folder / "training_log.json").read_text())["weights_sha256"]
    control = "import torch; torch.ones(4, 4) @ torch.ones(4, 4)"  # the log does show a BLAS call
    out = subprocess.run([sys.executable, "-c", control], env=env, capture_output=True, text=True, check=True)
    assert "MKL_VERBOSE SGEMM" in out.stdout + out.stderr


def test_fixed_point_products_do_not_depend_on_the_order_of_the_sum():
    """Each product is an exact integer sum, so reordering the contraction gives the same bits (a
    float32 BLAS sum does not promise that), and it is as close to float64 as float32 rounding."""
    g = torch.Generator().manual_seed(0)
    for a_shape, b_shape in [((768, 64), (64, 256)), ((64, 48, 16), (64, 16, 48)), ((96, 3000), (3000, 8))]:
        a = torch.randn(a_shape, generator=g) * torch.rand(a_shape[:-1] + (1,), generator=g)
        b = torch.randn(b_shape, generator=g)
        perm = torch.randperm(a_shape[-1], generator=g)
        c = toy_portable._fixed_point_matmul(a, b)
        assert torch.equal(c, toy_portable._fixed_point_matmul(a[..., perm], b[..., perm, :]))
        ref = a.double() @ b.double()
        assert c.dtype == torch.float32 and ((c.double() - ref).abs().max() / ref.abs().max()) < 1e-6


def test_exact_integer_products_equal_int64_products_bit_for_bit():
    """The float64 products of 13-bit limbs give the same integers as PyTorch's own int64 product
    (exact, but slow where the CPU has no 64-bit vector multiply), for either operand split, batched
    products, the extreme operands |q| = 2**26 - 1 and a sum of 1024 terms."""
    g = torch.Generator().manual_seed(2)
    top = 2**26 - 1
    for a_shape, b_shape in [((768, 64), (64, 256)), ((4, 3, 48, 16), (4, 3, 16, 48)), ((5, 1024), (1024, 700)),
                             ((300, 7), (7, 2))]:
        qa = torch.randint(-top, top + 1, a_shape, generator=g)
        qb = torch.randint(-top, top + 1, b_shape, generator=g)
        qa.view(-1)[:3] = torch.tensor([top, -top, 0])
        qb.view(-1)[:3] = torch.tensor([-top, top, -1])
        got = toy_portable._exact_integer_matmul(qa.double().numpy(), qb.double().numpy())
        assert got.dtype == np.int64 and np.array_equal(got, torch.matmul(qa, qb).numpy()), (a_shape, b_shape)
    extreme = np.full((2, 1024), float(top))  # the largest sum _fixed_point_product lets through
    want = torch.matmul(torch.from_numpy(extreme).long(), -torch.from_numpy(extreme).long().t()).numpy()
    assert np.array_equal(toy_portable._exact_integer_matmul(extreme, -extreme.T), want)


def test_fixed_point_products_carry_gradients_and_refuse_other_kernels():
    """Inside the mode, the model's products (addmm, linear, matmul) and their gradients are the
    fixed-point ones and match float products; tanh is computed without MKL; kernels that would
    reach MKL raise."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 7, 12, generator=g, requires_grad=True)
    w = torch.randn(12, 9, generator=g, requires_grad=True)
    bias = torch.randn(9, generator=g, requires_grad=True)
    q, k = torch.randn(2, 3, 7, 4, generator=g, requires_grad=True), torch.randn(2, 3, 7, 4, generator=g, requires_grad=True)

    def run():
        y = torch.addmm(bias, x.view(-1, 12), w).view(5, 7, 9)
        z = torch.nn.functional.linear(y, w.t()[:, :9], None)
        s = torch.matmul(q, k.transpose(-1, -2))
        loss = (z ** 2).sum() + s.square().sum()  # Tensor.__pow__ outside the mode only
        return loss, torch.autograd.grad(loss, [x, w, bias, q, k])

    want_loss, want = run()
    want_tanh = torch.tanh(x.detach())
    with toy_portable.FixedPointMatmuls():
        for refused in (lambda: torch.exp(x), lambda: x.sqrt(), lambda: torch.pow(x, 0.5), lambda: torch.einsum("ij->", w)):
            with pytest.raises(NotImplementedError, match="MKL"):
                refused()
        assert torch.allclose(torch.tanh(x.detach()), want_tanh, rtol=0, atol=3e-7)  # PyTorch's sigmoid, not MKL's tanh
        y = torch.addmm(bias, x.view(-1, 12), w).view(5, 7, 9)
        z = torch.nn.functional.linear(y, w.t()[:, :9], None)
        s = torch.matmul(q, k.transpose(-1, -2))
        loss = z.square().sum() + s.square().sum()
        got = torch.autograd.grad(loss, [x, w, bias, q, k])
    assert torch.allclose(loss, want_loss, rtol=1e-5)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


def test_expected_hash_problem_is_one_line_naming_the_cause():
    import dataclasses

    log = {"weights_sha256": toy.EXPECTED_WEIGHTS_SHA256, "recipe": dataclasses.asdict(toy.DEFAULT_RECIPE), "seed": 0,
           "portable": True, "training_version": toy.TRAINING_VERSION, "torch_version": toy_portable.EXPECTED_VERSIONS["torch"],
           "transformers_version": toy_portable.EXPECTED_VERSIONS["transformers"], "machine": toy_portable.EXPECTED_VERSIONS["machine"],
           "libc": toy_portable.EXPECTED_VERSIONS["libc"]}
    assert toy.expected_hash_problem(log) is None
    other = {**log, "weights_sha256": "ab" * 32}
    msg = toy.expected_hash_problem(other)
    assert msg.startswith("toy weights sha256 abababab") and "\n" not in msg and "not the portable ones" in msg
    msg = toy.expected_hash_problem({**other, "torch_version": "9.9.9"})
    assert "torch 9.9.9 (expected" in msg and "\n" not in msg
    assert "not the portable training" in toy.expected_hash_problem({**other, "seed": 1})


def test_failed_child_gives_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(toy, "PORTABLE_ENV", {**toy.PORTABLE_ENV, "PYTHONPATH": "", "PYTHONNOUSERSITE": "1",
                                              "PYTHONSAFEPATH": "1"})
    monkeypatch.setattr(toy.sys, "executable", "/bin/false")
    with pytest.raises(RuntimeError, match="toy training failed in its child process"):
        train_toy(tmp_path / "x", seed=0, recipe=TINY, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_recipe_validation(tmp_path):
    with pytest.raises(ValueError, match="d_model=10 must be a multiple of n_heads=4"):
        train_toy(tmp_path / "x", recipe=ToyRecipe(d_model=10, n_heads=4), progress=False)
    with pytest.raises(ValueError, match="steps=0"):
        train_toy(tmp_path / "x", recipe=TINY, steps=0, progress=False)
    with pytest.raises(ValueError, match="seed"):
        train_toy(tmp_path / "x", recipe=TINY, seed=-1, progress=False)
    with pytest.raises(TypeError, match="ToyRecipe"):
        train_toy(tmp_path / "x", recipe={"steps": 3}, progress=False)
    assert not (tmp_path / "x").exists()


def test_batches_are_packed_copies():
    r = ToyRecipe(vocab_size=64, batch_size=8, train_len=40, t_min=3, t_max=8)
    x, copy = toy._batch(r, torch.Generator().manual_seed(0))
    assert x.shape == copy.shape == (8, 40)
    assert (x[:, 0] == 0).all() and (x[:, 1:] > 0).all()
    assert not copy[:, :5].any()  # the first copy target is a_2 of the first copy: index >= 1 + t_min + 1
    assert copy.float().mean() > 0.3  # most of each row after the first segment is copies
    for i in range(8):  # every copy target repeats the token t positions back for some t in t_min..t_max
        for j in torch.nonzero(copy[i]).flatten().tolist():
            assert any(x[i, j] == x[i, j - t] and x[i, j - 1] == x[i, j - 1 - t] for t in range(3, 9))
    again, _ = toy._batch(r, torch.Generator().manual_seed(0))
    assert torch.equal(x, again)


def test_load_from_cache(tiny_run, tmp_path, monkeypatch):
    """ensure/load use toy_dir(): point the cache at a tiny run and load final and a checkpoint."""
    _cache_with(tiny_run, tmp_path, monkeypatch)
    assert toy.toy_checkpoint_steps() == [0, 3, 6]
    lm = toy.load_toy_model()
    assert lm.name == "toy-gpt2" and lm.bos_token_id == 0 and lm.n_layers == 2
    assert torch.equal(lm.ordinary_token_ids, torch.arange(1, 16))
    early = toy.load_toy_model(step=3)
    p_final = dict(lm.model.named_parameters())
    assert any(not torch.equal(p, p_final[n]) for n, p in early.model.named_parameters())
    with pytest.raises(ValueError, match="available steps: 0, 3, 6"):
        toy.load_toy_model(step=4)
    assert toy.load_training_log()["recipe"]["d_model"] == 8


def test_cache_of_another_recipe_is_retrained(tmp_path, monkeypatch):
    """A cached run whose recipe differs from DEFAULT_RECIPE is not served: ensure_toy_model trains anew."""
    monkeypatch.setenv("RESIDUAL_RESPONSE_CACHE", str(tmp_path))
    monkeypatch.setattr(toy, "DEFAULT_RECIPE", TINY)
    other = ToyRecipe(**{**TINY.__dict__, "d_model": 12})
    train_toy(toy.toy_dir(), seed=0, recipe=other, progress=False)
    assert toy.load_training_log()["recipe"]["d_model"] == 8  # retrained with TINY
    assert toy.load_toy_model().d_model == 8


def test_cache_of_an_older_training_version_is_retrained(tiny_run, tmp_path, monkeypatch):
    """A cached run of the default recipe trained by an older version (BLAS products) is not served."""
    _cache_with(tiny_run, tmp_path, monkeypatch)
    assert toy._complete(toy.toy_dir())
    path = toy.toy_dir() / "training_log.json"
    old = json.loads(path.read_text())
    old.pop("training_version")
    path.write_text(json.dumps(old))
    assert not toy._complete(toy.toy_dir())


def test_training_log_holds_no_measurement(tiny_run):
    """The log records what training saw; measurements over it (the phase change) are dynamics'."""
    log = tiny_run[1]
    assert "phase_change_step" not in log
    assert {"recipe", "checkpoints", "train", "weights_sha256"} <= set(log)


def test_registry_loads_the_toy_model(tiny_run, tmp_path, monkeypatch):
    """``toy-gpt2`` in the registry reaches load_toy_model through its loader path."""
    from residual_response.models import REGISTRY, load_model, resolve_loader

    assert resolve_loader(REGISTRY["toy-gpt2"]) is toy.load_registered
    _cache_with(tiny_run, tmp_path, monkeypatch)
    lm = load_model("toy-gpt2")
    assert lm.name == "toy-gpt2" and lm.d_model == 8
