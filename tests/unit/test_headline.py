"""The headline results file: computed once at the canonical setting, cached, verified, healed."""

import pytest

from residual_response import headline as hl
from residual_response.results_cache import ResultsCacheWarning, read_entry
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
    assert counted["n"] == 2 and hl.headline_path(lm.name).exists()  # eps and eps / 10
    assert first.setting == CANONICAL and first.n_layers == lm.n_layers
    assert first.emergence_layer is None  # a random model shows no induction
    assert 1 <= first.peak_layer <= lm.n_layers and first.peak_ci[0] <= first.peak_score <= first.peak_ci[1]
    again = hl.headline(lm)
    assert counted["n"] == 2 and again == first  # read from the file
    # the whole profile is kept, and the checks of eps
    assert first.read_streams == list(range(lm.n_layers + 1)) and first.score[0] is None
    assert first.ci_low[1] <= first.score[1] <= first.ci_high[1]
    assert len(first.top_heads) == 5 and all(len(h) == 4 for h in first.top_heads)
    # a random network has no head that attends along the stripe twice as much on a repeat
    assert first.head_blocks == [] and first.first_head_block is None
    lin, tenth = first.linearity, first.eps_tenth
    assert len(lin["deviations"]) == hl.LINEARITY_CHECK["seeds"] and lin["max"] == max(lin["deviations"])
    assert 0 <= lin["median"] <= lin["max"] < 0.05  # a random float32 model is close to linear at 1e-2
    assert tenth["eps_small"] == CANONICAL["eps"] / 10 and 0 <= tenth["max_change"] < 0.05


def test_other_weights_or_a_damaged_file_are_recomputed(counted):
    lm = build_random_model("llama", seed=0)
    hl.headline(lm)
    other = build_random_model("llama", seed=1)  # same name, other weights
    assert other.name == lm.name
    assert hl.headline(other).key["weights"] != hl.headline(lm).key["weights"]
    assert counted["n"] == 6
    path = hl.headline_path(lm.name)
    text = path.read_bytes()
    path.write_bytes(text[:-40] + b"0" * 40)  # the payload no longer matches its sha256
    with pytest.warns(ResultsCacheWarning, match="damaged"):
        hl.headline(lm)
    assert counted["n"] == 8 and read_entry(path)[1]["model"] == lm.name
    path.write_text("{ not json")  # a file of another layout is replaced without a word
    hl.headline(lm)
    assert counted["n"] == 10 and read_entry(path)[1]["model"] == lm.name


def test_headline_refuses_a_name():
    with pytest.raises(TypeError, match="LoadedModel"):
        hl.headline("random-llama")


def test_headline_holds_the_regime_window_of_its_sweep(counted):
    """The window in the file is the universal regime of REGIME_SWEEP at the last stream, recomputed here."""
    import numpy as np

    from residual_response.canonical import REGIME_SWEEP
    from residual_response.regime import log_eps_grid, universal_regime
    from residual_response import response
    from residual_response.checks import allow_eps
    from residual_response.sequences import make_sequence

    lm = build_random_model("gpt2", seed=0)
    h = hl.headline(lm)
    assert h.key["version"] == hl.HEADLINE_VERSION and h.key["regime_sweep"] == REGIME_SWEEP
    win = h.regime
    sw = REGIME_SWEEP
    tokens = make_sequence(lm, "repeated", sw["T"], sw["seed"])
    grid = log_eps_grid(sw["eps_min"], sw["eps_max"], sw["points_per_decade"])
    sources = [int(x) for x in np.unique(np.linspace(1, len(tokens) - 2, sw["n_sources"]).round())]
    with allow_eps(below_floor=True):  # the sweep starts below the floor on purpose, as headline's does
        res = response(lm, tokens, grid, l0=0, read_streams=[lm.n_layers], sources=sources, seed=sw["seed"])
    iv = universal_regime(res, tol=sw["tol"])[-1]
    assert iv.stream == lm.n_layers == win["layer"]
    assert iv.eps_low is not None, "a float32 random model has a universal regime at the last stream"
    assert win["eps_low"] == pytest.approx(iv.eps_low) and win["eps_high"] == pytest.approx(iv.eps_high)
    assert win["eps_low"] < win["eps_high"] and win["decades"] == pytest.approx(np.log10(iv.eps_high / iv.eps_low))
    assert win["contains_canonical"] == (iv.eps_low <= CANONICAL["eps"] <= iv.eps_high)
    assert read_entry(hl.headline_path(lm.name))[1]["regime"] == win  # stored in the file


def test_a_file_of_another_version_is_recomputed(counted, monkeypatch):
    lm = build_random_model("llama", seed=0)
    hl.headline(lm)
    monkeypatch.setattr(hl, "HEADLINE_VERSION", hl.HEADLINE_VERSION + 1)
    again = hl.headline(lm)
    assert counted["n"] == 4 and again.key["version"] == hl.HEADLINE_VERSION
