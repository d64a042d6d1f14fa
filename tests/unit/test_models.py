"""Model loading: the registry, errors, the dequantised cache."""

import pytest
import torch

from residual_response.checks import InputError
from residual_response.models import ModelUnavailableError, build_random_model, load_model, resolve_dtype


def test_unknown_model_and_bad_arguments():
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        load_model("nope")
    with pytest.raises(ValueError, match="unsupported dtype"):
        load_model("random-gpt2", dtype="float8")
    for bad in (None, 3):
        with pytest.raises(TypeError, match="model name must be a non-empty string"):
            load_model(bad)
    with pytest.raises(InputError, match="model name must be a non-empty string"):
        load_model("")
    with pytest.raises(ValueError, match="unknown model './nowhere'"):
        load_model("./nowhere")
    assert resolve_dtype("float64") is torch.float64


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine with CUDA has the device")
def test_a_missing_device_is_refused_in_one_sentence():
    with pytest.raises(InputError, match="CUDA is not available on this machine"):
        load_model("random-gpt2", device="cuda")
    with pytest.raises(InputError, match="invalid device 'gpu:x'"):
        load_model("random-gpt2", device="gpu:x")


def test_paper_model_offline_fails_with_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as err:
        load_model("gemma-2-2b")
    msg = str(err.value)
    assert "\n" not in msg and "google/gemma-2-2b" in msg and "not available" in msg


def test_random_models_are_seeded():
    a = build_random_model("gemma2", seed=3)
    b = build_random_model("gemma2", seed=3)
    c = build_random_model("gemma2", seed=4)
    pa, pb, pc = (next(m.model.parameters()) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_float64_models_keep_norms_in_float64():
    lm = build_random_model("gemma3", dtype="float64")
    norm = lm.base_model.norm
    x = torch.randn(2, 3, lm.d_model, dtype=torch.float64)
    ref = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.eps) * (1 + norm.weight)
    torch.testing.assert_close(norm(x), ref, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma2", "gemma3"])
def test_block_dims_and_the_cost_model_agree_with_the_weights(family):
    """block_dims reads the widths the blocks really have, whatever the config calls them: the one
    cost model's formula on them (residual_response.cost) counts the weights a block multiplies by."""
    from residual_response.cost import block_weights, matmul_weights, model_dims

    lm = build_random_model(family, seed=0)
    dims = model_dims(lm)
    assert dims["gated"] == (family != "gpt2")
    expected = matmul_weights(dims["d_model"], dims["d_ffn"], dims["q_dim"], dims["kv_dim"], dims["gated"])
    assert block_weights(lm) == expected == sum(p.numel() for p in lm.blocks[0].parameters() if p.ndim == 2)


def test_models_imports_no_model_module():
    """models knows registry entries by loader path only: importing it imports no toy model."""
    import subprocess
    import sys

    code = "import residual_response.models, sys; assert 'residual_response.models.toy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_loader_paths_resolve_when_loaded(monkeypatch):
    """A registry entry may name its loader as 'module:function'; a wrong name is one clear ValueError."""
    from residual_response import models
    from residual_response.models import REGISTRY, ModelSpec, resolve_loader

    spec = ModelSpec("path-gpt2", "gpt2", True, "random gpt2 through a loader path",
                     "residual_response.models.random_init:_load_random", extra={"seed": 1})
    monkeypatch.setitem(REGISTRY, spec.name, spec)
    lm = load_model("path-gpt2")
    ref = build_random_model("gpt2", seed=1)
    assert torch.equal(next(lm.model.parameters()), next(ref.model.parameters()))
    for bad in ("residual_response.models", "residual_response.models:nope", ":x"):
        with pytest.raises(ValueError, match="path-gpt2"):
            resolve_loader(ModelSpec("path-gpt2", "gpt2", True, "", bad))
    assert resolve_loader(REGISTRY["random-gpt2"]) is models.random_init._load_random
