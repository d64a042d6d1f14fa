"""Result files: every kind round-trips through its loader, carries its provenance, and a loader
refuses a file of another kind. The command line runs in-process (``main(argv)``) on the tiny
random models."""

import io
import json
import math
import warnings

import numpy as np
import pytest
import torch

from residual_response.cli import main
from residual_response.induction import InductionResult, Rise, SectionMap
from residual_response.models import build_random_model, load_model
from residual_response.progress import Progress
from residual_response.provenance import ProvenanceWarning, compare, library_info, weights_hash
from residual_response.regime import RegimeResult
from residual_response.engine import ResponseResult, response

PROVENANCE_KEYS = {"library", "python", "torch", "transformers", "numpy", "model", "device", "dtype", "threads",
                   "workers", "parameters", "command", "date", "wall_seconds", "cpu_seconds"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One file of each kind, written by the command line (small runs)."""
    d = tmp_path_factory.mktemp("results")
    runs = {
        "response": ["response", "--model", "random-llama", "--sequence", "repeated", "--length", "4", "--seed", "3",
                     "--layer", "1", "--eps", "1e-3", "1e-2", "--directions", "2"],
        "induction": ["induction", "--model", "random-gpt2", "--length", "5", "--seeds", "2"],
        "regime": ["regime", "--model", "random-gemma3", "--length", "3", "--eps-min", "1e-6", "--eps-max", "1",
                   "--points", "7"],
        "section-map": ["section-map", "--model", "random-llama", "--length", "4", "--seeds", "2", "--eps", "3e-2",
                        "--perturb-layers", "0", "2"],
    }
    out = {}
    for kind, argv in runs.items():
        path = d / (kind + (".npz" if kind == "response" else ".json"))
        assert main(argv + ["--out", str(path), "--quiet"]) == 0
        out[kind] = path
    return out


def test_response_round_trip(files):
    path = files["response"]
    raw = np.load(path)
    res = ResponseResult.load(path)
    # the keys scripts read are all still there
    assert {"chi", "eps", "read_streams", "sources", "tokens", "l0", "n_directions", "seed", "method", "direction",
            "model", "dtype"} <= set(raw.files)
    assert str(raw["kind"]) == "response" and int(raw["format"]) == 2
    np.testing.assert_array_equal(res.chi, raw["chi"])  # every position perturbed: rows = positions
    np.testing.assert_array_equal(res.eps, [1e-3, 1e-2])
    assert res.read_streams == [1, 2, 3, 4] and res.l0 == 1 and res.n_directions == 2 and res.seed == 3
    assert res.model == "random-llama" and res.method == "finite" and res.direction == "gaussian"
    assert PROVENANCE_KEYS <= set(res.provenance)
    assert res.provenance["parameters"]["eps"] == [1e-3, 1e-2] and res.provenance["parameters"]["T"] == 4


def test_response_round_trip_of_a_subset_of_sources(tmp_path):
    """Sources given out of order and not every position: the loader returns the same rows."""
    lm = build_random_model("gpt2", seed=0)
    tokens = np.arange(1, 10)
    res = response(lm, tokens, [1e-2], sources=[5, 2, 7])
    res.save_npz(tmp_path / "r.npz")
    back = ResponseResult.load(tmp_path / "r.npz")
    assert back.sources == [5, 2, 7]
    np.testing.assert_array_equal(back.chi, res.chi)
    every = response(lm, tokens, [1e-2], sources=list(range(8, -1, -1)))  # all positions, reversed
    every.save_npz(tmp_path / "all.npz")
    np.testing.assert_array_equal(ResponseResult.load(tmp_path / "all.npz").chi, every.chi)


def test_induction_round_trip(files):
    path = files["induction"]
    raw = json.loads(path.read_text())
    for key in ("read_streams", "score", "ci_low", "ci_high", "duplicate_score", "emergence_layer", "model", "T",
                "seeds", "l0", "rise"):
        assert key in raw
    assert raw["kind"] == "induction" and raw["format"] == 2 and raw["seeds"] == [0, 1] and "seed_list" not in raw
    res = InductionResult.load(path)
    assert res.read_streams == raw["read_streams"] == [0, 1, 2, 3, 4] and res.seeds == [0, 1] and res.n_layers == 4
    assert isinstance(res.rise, Rise) and res.rise.to_dict() == {k: tuple(v) if isinstance(v, list) else v
                                                                 for k, v in raw["rise"].items()}
    assert math.isnan(res.score[0]) and raw["score"][0] is None  # read layer l0: chi is a delta there
    assert res.score[1:] == raw["score"][1:] and res.ci_low[1:] == raw["ci_low"][1:]
    assert res.emergence_layer == raw["emergence_layer"] and res.eps == raw["eps"] == 1e-2
    # written again, it reads back the same
    again = path.with_name("again.json")
    again.write_text(json.dumps(res.to_json_dict()))
    assert InductionResult.load(again).to_json_dict() == res.to_json_dict()


def test_regime_round_trip(files):
    path = files["regime"]
    raw = json.loads(path.read_text())
    assert raw["kind"] == "regime"
    res = RegimeResult.load(path)
    assert [r.to_dict() for r in res.regimes] == raw["regimes"]
    assert res.eps == raw["eps"] and len(res.eps) == 7 and res.tol == 0.01
    assert res.curve_streams == [1, 2, 3, 4] and np.shape(res.curves) == (4, 7)  # [n_read, n_eps]
    for r in res.regimes:  # the regime's ends are points of the grid
        if r.eps_low is not None:
            assert r.eps_low in res.eps and r.eps_high in res.eps
    assert res.to_json_dict() == raw


def test_section_map_round_trip_records_eps(files):
    path = files["section-map"]
    raw = json.loads(path.read_text())
    assert raw["kind"] == "section-map" and raw["eps"] == 3e-2
    assert raw["provenance"]["parameters"]["eps"] == 3e-2
    sm = SectionMap.load(path)
    assert sm.l0s == [0, 2] and sm.read_streams == [0, 1, 2, 3, 4] and sm.eps == 3e-2
    assert sm.score.shape == (2, 5)  # [n_l0, L+1]
    expected = np.array([[np.nan if v is None else v for v in row] for row in raw["score"]], dtype=float)
    np.testing.assert_array_equal(sm.score, expected)  # nan where l <= l0, in the same places
    assert sm.to_json_dict() == raw


def _as_format_1(kind: str, d: dict) -> dict:
    """A format-2 dict written back in the keys of format 1 (what files written before it hold)."""
    from residual_response.resultfile import V1_KEYS

    old = {new: old for old, new in V1_KEYS[kind].items()}
    out = {old.get(k, k): v for k, v in d.items() if k != "format"}
    if kind == "induction":
        out["seed_list"], out["seeds"] = d["seeds"], len(d["seeds"])
        out["rise"] = {{"stream": "layer", "stream_ci": "layer_ci"}.get(k, k): v for k, v in d["rise"].items()}
    if kind == "regime":
        out["regimes"] = [{("layer" if k == "stream" else k): v for k, v in r.items()} for r in d["regimes"]]
    return out


@pytest.mark.parametrize("kind, loader", [("induction", InductionResult), ("regime", RegimeResult),
                                          ("section-map", SectionMap)])
def test_files_of_format_1_read_the_same(files, tmp_path, kind, loader):
    new = loader.load(files[kind])
    old_path = tmp_path / f"old-{kind}.json"
    old_path.write_text(json.dumps(_as_format_1(kind, json.loads(files[kind].read_text()))))
    assert loader.load(old_path).to_json_dict() == new.to_json_dict()


def test_responses_of_format_1_read_the_same(files, tmp_path):
    raw = dict(np.load(files["response"]))
    raw["layer"], raw["read_layers"] = raw.pop("l0"), raw.pop("read_streams")
    del raw["format"]
    np.savez(tmp_path / "old.npz", **raw)
    old, new = ResponseResult.load(tmp_path / "old.npz"), ResponseResult.load(files["response"])
    assert old.l0 == new.l0 and old.read_streams == new.read_streams
    np.testing.assert_array_equal(old.chi, new.chi)


def test_old_names_read_with_a_warning(files):
    res = InductionResult.load(files["induction"])
    with pytest.warns(DeprecationWarning, match="now called read_streams"):
        assert res.layers == res.read_streams
    with pytest.warns(DeprecationWarning, match="now called T"):
        assert res.length == res.T
    with pytest.warns(DeprecationWarning, match="key access"):
        assert res.rise["layer"] == res.rise.stream  # the rise was a dict with the key `layer`


def test_a_newer_format_is_refused_in_one_sentence(files, tmp_path):
    d = json.loads(files["induction"].read_text())
    (tmp_path / "new.json").write_text(json.dumps({**d, "format": 99}))
    with pytest.raises(ValueError, match="format-99 file, newer than this library reads"):
        InductionResult.load(tmp_path / "new.json")


@pytest.mark.parametrize("loader, wrong, its_loader", [
    (InductionResult, "regime", "RegimeResult"),
    (RegimeResult, "section-map", "SectionMap"),
    (SectionMap, "response", "ResponseResult"),
    (ResponseResult, "induction", "InductionResult"),
])
def test_loader_refuses_another_kind_in_one_sentence(files, loader, wrong, its_loader):
    with pytest.raises(ValueError) as info:
        loader.load(files[wrong])
    message = str(info.value)
    assert f" {wrong} result, not a" in message and f"read it with {its_loader}.load" in message
    assert "\n" not in message


def test_loader_refuses_a_json_that_is_no_result(tmp_path):
    path = tmp_path / "other.json"
    path.write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="is not an induction result file"):
        InductionResult.load(path)


def test_provenance_fields(files):
    p = json.loads(files["induction"].read_text())["provenance"]
    assert PROVENANCE_KEYS <= set(p)
    assert p["model"]["name"] == "random-gpt2" and p["model"]["weights_sha256"].startswith("sha256:")
    assert p["model"]["weights_sha256"] == weights_hash(load_model("random-gpt2"))
    assert p["device"] == "cpu" and p["dtype"] == "float32" and p["threads"] >= 1
    params = p["parameters"]
    assert params["T"] == 5 and params["seeds"] == [0, 1]
    assert params["eps"] == 1e-2 and params["l0"] == 0 and params["directions"] == 1 and params["method"] == "finite"
    assert p["command"][:2] == ["residual-response", "induction"] and "--seeds" in p["command"]
    assert p["wall_seconds"] > 0 and p["cpu_seconds"] > 0 and p["date"].endswith("+00:00")
    assert p["library"]["version"]


def test_changing_the_weights_changes_the_recorded_hash(tmp_path, monkeypatch):
    import residual_response.models as models

    a = build_random_model("gpt2", seed=0)
    assert weights_hash(a) == weights_hash(build_random_model("gpt2", seed=0))  # same weights, same hash
    b = build_random_model("gpt2", seed=0)
    with torch.no_grad():
        next(b.model.parameters()).view(-1)[0] += 1e-3  # one number changed
    assert weights_hash(b) != weights_hash(a)

    recorded = {}
    for name, lm in (("a", a), ("b", b)):
        monkeypatch.setattr(models, "load_model", lambda *args, _lm=lm, **kw: _lm)
        out = tmp_path / f"{name}.json"
        assert main(["induction", "--model", "random-gpt2", "--length", "4", "--seeds", "1", "--out", str(out),
                     "--quiet"]) == 0
        recorded[name] = InductionResult.load(out)
    ha, hb = (recorded[k].provenance["model"]["weights_sha256"] for k in "ab")
    assert ha == weights_hash(a) and hb == weights_hash(b) and ha != hb
    assert compare(recorded["a"], recorded["b"]) == [("model.weights_sha256", ha, hb)]
    with pytest.warns(ProvenanceWarning, match="weights_sha256"):
        InductionResult.load(tmp_path / "b.json", against=recorded["a"])
    with pytest.warns(ProvenanceWarning, match="weights_sha256"):
        InductionResult.load(tmp_path / "b.json", against=a)  # against the model itself
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same weights: no warning
        InductionResult.load(tmp_path / "a.json", against=a)


def test_git_commit_is_null_without_git(monkeypatch):
    monkeypatch.setenv("PATH", "")
    info = library_info()
    assert info["git_commit"] is None and info["git_dirty"] is None and info["version"]


def test_one_bar_total_comes_from_the_plan():
    """The job's total is known before its first pass, and equals the passes run."""
    from residual_response.induction import section_map

    class Recorder(Progress):
        first_total = None

        def update(self, n=1):
            if self.first_total is None:
                self.first_total = self.total
            super().update(n)

    lm = build_random_model("llama", seed=0)
    bar = Recorder(enabled=False)
    section_map(lm, 4, 2, l0s=[0, 2], progress=bar, n_boot=50)
    # 2 perturbed streams x 2 seeds x at least one pass (a repeated sequence and its twin share theirs)
    assert bar.done >= 4 and bar.first_total == bar.total == bar.done


def test_bar_only_on_a_terminal():
    stream = io.StringIO()  # not a terminal: no bar, whatever the progress
    bar = Progress("job", stream=stream)
    with bar.expect(3):
        for _ in range(3):
            bar.update()
    bar.close()
    assert not bar.enabled and stream.getvalue() == ""

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    bar = Progress("job", stream=tty)
    with bar.expect(2):
        bar.update(2)
    bar.close()
    assert bar.enabled and "2/2" in tty.getvalue()


def test_cli_stderr_quiet_and_not_a_terminal(tmp_path, capsys):
    out = tmp_path / "r.npz"
    argv = ["response", "--model", "random-gpt2", "--sequence", "random", "--length", "3", "--eps", "1e-2",
            "--out", str(out)]
    assert main(argv) == 0
    err = capsys.readouterr().err.splitlines()  # captured: not a terminal, so no bar and no loading line
    assert len(err) == 1 and err[0].startswith("wrote ")
    assert main(argv + ["--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_model_loading_draws_no_dequantisation_bar():
    """Inside the block, the GGUF loader's per-tensor bar is silent; the patch is undone after."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    from residual_response.progress import quiet_model_loading

    original = gguf_utils.tqdm
    stream = io.StringIO()
    with quiet_model_loading():
        for _ in gguf_utils.tqdm(range(3), desc="Converting and de-quantizing GGUF tensors...", file=stream):
            pass
    assert stream.getvalue() == ""
    assert gguf_utils.tqdm is original
    for _ in gguf_utils.tqdm(range(3), file=stream):
        pass
    assert "3/3" in stream.getvalue()
