"""The headline results file: computed once at the canonical setting, cached, verified, healed."""

import json

import pytest

from residual_response import headline as hl
from residual_response.canonical import CANONICAL
from residual_response.models import build_random_model


@pytest.fixture
def counted(monkeypatch, tmp_path):
    """A temporary cache and a counter of the induction runs behind the headline."""
    monkeypatch.setenv("RESIDUAL_RESPONSE_CACHE", str(tmp_path))
    import residual_response.induction as ind

    calls = {"n": 0}
    real = ind.induction_scores

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(ind, "induction_scores", counting)
    monkeypatch.setattr(hl, "HEADLINE_N_BOOT", 50)
    return calls


def test_headline_is_computed_once_and_read_back(counted):
    lm = build_random_model("llama", seed=0)
    first = hl.headline(lm)
    assert counted["n"] == 1 and hl.headline_path(lm.name).exists()
    assert first["setting"] == CANONICAL and first["n_layers"] == lm.n_layers
    assert first["emergence_layer"] is None  # a random model shows no induction
    assert 1 <= first["peak_layer"] <= lm.n_layers and first["peak_ci"][0] <= first["peak_score"] <= first["peak_ci"][1]
    again = hl.headline(lm)
    assert counted["n"] == 1 and again == first  # read from the file


def test_other_weights_or_a_damaged_file_are_recomputed(counted):
    lm = build_random_model("llama", seed=0)
    hl.headline(lm)
    other = build_random_model("llama", seed=1)  # same name, other weights
    assert other.name == lm.name
    assert hl.headline(other)["key"]["weights"] != hl.headline(lm)["key"]["weights"]
    assert counted["n"] == 3
    path = hl.headline_path(lm.name)
    path.write_text("{ not json")
    hl.headline(lm)
    assert counted["n"] == 4 and json.loads(path.read_text())["model"] == lm.name


def test_headline_refuses_a_name():
    with pytest.raises(TypeError, match="LoadedModel"):
        hl.headline("random-llama")
