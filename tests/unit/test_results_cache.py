"""The results cache: computed once, read back bit for bit, keyed by every argument and the library, verified."""

import pickle

import numpy as np
import pytest

from residual_response import results_cache as rc
from residual_response.models import build_random_model


def _counter():
    calls = {"n": 0}

    def compute():
        calls["n"] += 1
        return {"value": [1.5, 2.5], "array": np.arange(3.0)}

    return calls, compute


def test_a_result_is_computed_once_and_read_back(store):
    calls, compute = _counter()
    first = rc.cached("demo", {"x": 1}, compute)
    again = rc.cached("demo", {"x": 1}, compute)
    assert calls["n"] == 1 and again["value"] == first["value"] and np.array_equal(again["array"], first["array"])
    rc.cached("demo", {"x": 2}, compute)  # another question, another entry
    assert calls["n"] == 2 and len(list(store.glob("demo-*.pkl"))) == 2


def test_another_library_or_validity_recomputes(store, monkeypatch):
    calls, compute = _counter()
    rc.cached("demo", {"x": 1}, compute)
    rc.cached("demo", {"x": 1}, compute, valid={"version": 2})
    assert calls["n"] == 2
    monkeypatch.setattr(rc, "_validity", lambda: {"format": rc.FORMAT, "library": "changed", "versions": {}})
    rc.cached("demo", {"x": 1}, compute, valid={"version": 2})
    assert calls["n"] == 3


def test_a_damaged_entry_is_recomputed_with_one_warning(store):
    calls, compute = _counter()
    rc.cached("demo", {"x": 1}, compute)
    (path,) = store.glob("demo-*.pkl")
    data = path.read_bytes()
    path.write_bytes(data[:-3] + b"xyz")
    with pytest.warns(rc.ResultsCacheWarning, match="sha256"):
        rc.cached("demo", {"x": 1}, compute)
    assert calls["n"] == 2 and rc.read_entry(path)[1]["value"] == [1.5, 2.5]


def test_the_reader_builds_no_foreign_object(store, tmp_path):
    import hashlib
    import json
    import os

    payload = pickle.dumps(os.getcwd)  # a callable of another module: never rebuilt
    header = {"format": rc.FORMAT, "codec": "pickle", "sha256": hashlib.sha256(payload).hexdigest()}
    path = tmp_path / "evil.pkl"
    path.write_bytes(json.dumps(header).encode() + b"\n" + payload)
    with pytest.raises(ValueError, match="not a result type"):
        rc.read_entry(path)


def test_recompute_flag_takes_entries_made_before_its_time(store, monkeypatch):
    import time

    calls, compute = _counter()
    rc.cached("demo", {"x": 1}, compute)
    monkeypatch.setenv(rc.ENV_RECOMPUTE, repr(time.time()))
    rc.cached("demo", {"x": 1}, compute)
    rc.cached("demo", {"x": 1}, compute)  # made after the flag's time: read back
    assert calls["n"] == 2
    monkeypatch.setenv(rc.ENV_RECOMPUTE, "1")
    rc.cached("demo", {"x": 1}, compute)
    assert calls["n"] == 3


def test_memoized_induction_scores_equal_the_computation(store):
    from residual_response.induction import induction_scores

    lm = build_random_model("llama", seed=0)
    with rc.switched(False):
        fresh = induction_scores(lm, T=6, seeds=2)
    first = induction_scores(lm, T=6, seeds=2)
    n_files = len(list(store.glob("*.pkl")))
    again = induction_scores(lm, T=6, seeds=2)
    assert len(list(store.glob("*.pkl"))) == n_files  # read back, nothing new computed
    for r in (first, again):
        assert np.array_equal(r.score, fresh.score, equal_nan=True)
        assert np.array_equal(r.ci_low, fresh.ci_low, equal_nan=True) and r.emergence_layer == fresh.emergence_layer
        assert np.array_equal(r.stripes.induction["repeated"], fresh.stripes.induction["repeated"])


def test_models_are_told_apart_by_their_weights_not_their_names(store):
    from residual_response.induction import induction_scores

    a = build_random_model("llama", seed=0)
    ra = induction_scores(a, T=6, seeds=1)
    del a  # a new model may take the freed model's id and memory: the identity must not carry over
    b = build_random_model("llama", seed=1)
    rb = induction_scores(b, T=6, seeds=1)
    assert not np.array_equal(ra.score, rb.score, equal_nan=True)
    with rc.switched(False):
        assert np.array_equal(rb.score, induction_scores(b, T=6, seeds=1).score, equal_nan=True)
    weights = rc.model_identity(b)["weights"]
    with __import__("torch").no_grad():
        next(b.model.parameters()).add_(1.0)  # changed in place
    assert rc.model_identity(b)["weights"] != weights


def test_a_model_with_hooks_is_computed_without_the_store(store):
    from residual_response.ablation import ablate_heads
    from residual_response.induction import induction_scores

    lm = build_random_model("llama", seed=0)
    plain = induction_scores(lm, T=6, seeds=1)
    with ablate_heads(lm, [(0, 0)]):
        with pytest.raises(rc.Unkeyable):
            rc.model_identity(lm)
        ablated = induction_scores(lm, T=6, seeds=1)
    assert not np.array_equal(plain.score, ablated.score, equal_nan=True)
    assert np.array_equal(induction_scores(lm, T=6, seeds=1).score, plain.score, equal_nan=True)


def test_transformers_recording_hooks_keep_a_model_keyable(store):
    """Asking for attention patterns leaves transformers' output-recording hooks on the model; they
    never change an output, so the model stays keyable, while an ablation's hook still makes it not."""
    from residual_response.ablation import ablate_heads
    from residual_response.attention import induction_attention_scores

    lm = build_random_model("llama", seed=0)
    before = rc.model_identity(lm)
    induction_attention_scores(lm, T=6, seeds=range(1), n_boot=10)
    left = [h for m in lm.model.modules() for h in m._forward_hooks.values()]
    assert left and all(h.__module__ in rc.RECORDING_HOOK_MODULES for h in left)  # what this test is about
    assert rc.model_identity(lm) == before
    with ablate_heads(lm, [(0, 0)]):
        with pytest.raises(rc.Unkeyable):
            rc.model_identity(lm)


def test_switched_off_nothing_is_stored(monkeypatch, tmp_path):
    from residual_response.engine import response

    monkeypatch.setenv("RESIDUAL_RESPONSE_CACHE", str(tmp_path))
    monkeypatch.delenv(rc.ENV_SWITCH, raising=False)
    lm = build_random_model("gpt2", seed=0)
    response(lm, [0, 3, 4, 5, 3, 4, 5], [1e-2], l0=0)
    assert not (tmp_path / "results").exists()
    with rc.switched(True):
        response(lm, [0, 3, 4, 5, 3, 4, 5], [1e-2], l0=0)
    assert len(list((tmp_path / "results").glob("response-*.pkl"))) == 1


def test_the_key_of_an_induction_run_is_its_validated_setting(store):
    """Every field of the setting is in the key (baseline, eps, T, seeds, l0 ...); a count of seeds and
    its list are one setting; another baseline or l0 is another entry."""
    from residual_response.induction import InductionSetting, induction_scores

    lm = build_random_model("llama", seed=0)
    key = rc.key_of(InductionSetting.validated(lm, 6, 2, l0=1, eps=1e-2, control="twin"))
    assert key["dataclass"].endswith("InductionSetting")
    fields = key["fields"]
    assert (fields["T"], fields["seeds"], fields["l0"], fields["eps"], fields["control"]) == (6, [0, 1], 1, 1e-2, "twin")
    induction_scores(lm, T=6, seeds=2)
    n_files = len(list(store.glob("induction_scores-*.pkl")))
    induction_scores(lm, T=6, seeds=[0, 1])
    assert len(list(store.glob("induction_scores-*.pkl"))) == n_files == 1
    induction_scores(lm, T=6, seeds=2, control="neighbours")
    induction_scores(lm, T=6, seeds=2, l0=1)
    assert len(list(store.glob("induction_scores-*.pkl"))) == 3


def test_keys_say_what_a_value_is():
    import torch

    assert rc.key_of((1, 2.5, "a", None, range(2))) == [1, 2.5, "a", None, [0, 1]]
    assert rc.key_of(np.float64(0.5)) == 0.5 and rc.key_of(float("nan")) == "nan"
    t = rc.key_of(torch.tensor([1, 2]))["tensor"]
    assert t["shape"] == [2] and t != rc.key_of(torch.tensor([1, 3]))["tensor"]
    with pytest.raises(rc.Unkeyable):
        rc.key_of(object())


def test_a_timed_step_computes_afresh_and_stores(store):
    from residual_response.pages.tables import timed

    calls, compute = _counter()
    rc.cached("demo", {"x": 1}, compute)
    steps = {}
    with timed(steps, "step"):
        rc.cached("demo", {"x": 1}, compute)  # the page times real work, not a read
    assert calls["n"] == 2 and steps["step"] > 0
    rc.cached("demo", {"x": 1}, compute)
    assert calls["n"] == 2
