"""The section map shares one clean pass per sequence among all its rows (what the benchmark times)."""

import numpy as np

from residual_response.engine import clean as clean_module
from residual_response.induction import induction_scores, section_map
from residual_response.models import build_random_model


def test_the_section_map_runs_one_clean_pass_per_sequence(monkeypatch):
    """Every row perturbs the same sequences: 3 rows x 2 seeds, two sequences a seed (the repeated
    one and its twin), so 4 clean passes, not 12; the map is the same as without the cache (the
    cache is exact)."""
    lm = build_random_model("llama", seed=0)
    calls = []
    real = clean_module.CleanPass.__init__

    def counting(self, *args, **kwargs):
        calls.append(1)
        real(self, *args, **kwargs)

    monkeypatch.setattr(clean_module.CleanPass, "__init__", counting)
    sm = section_map(lm, 4, 2, l0s=[0, 1, 2], n_boot=20)
    assert len(calls) == 4
    for i, l0 in enumerate([0, 1, 2]):
        alone = induction_scores(lm, 4, 2, l0=l0, n_boot=20)  # each row on its own: its own clean passes
        np.testing.assert_array_equal(sm.score[i, l0 + 1:], alone.score[1:])
    assert len(calls) == 4 + 3 * 4
