"""The method's schematic (residual_response.pages.schematic) matches the code's own sequence layout."""

import pytest

from residual_response.pages.schematic import CELL_KINDS, cell_frame, method_schematic, sequence_frame
from residual_response.sequences import InductionLayout


@pytest.mark.parametrize("offset", [0, 1])
def test_marks_and_cells_follow_the_layout(offset):
    T, k = 5, 3
    lay = InductionLayout(T=T, offset=offset)
    tokens = [99] * offset + [10, 11, 12, 13, 14] * 2
    seq = sequence_frame(lay, tokens, k)
    marks = dict(zip(seq["mark"], seq["position"]))
    src = offset + k - 1
    assert marks["kick (source s)"] == src
    assert marks["induction target"] == src + T - 1 and marks["duplicate-token target"] == src + T
    assert seq.loc[src, "label"] == "a\u2083" and (seq["role"] == "BOS").sum() == offset
    cells = cell_frame(lay)
    assert len(cells) == lay.length ** 2
    kinds = list(CELL_KINDS)
    ind = cells[cells["kind"] == kinds[2]]
    dup = cells[cells["kind"] == kinds[3]]
    assert len(ind) == T - 1 and (ind["target"] - ind["source"] == T - 1).all()
    assert len(dup) == T and (dup["target"] - dup["source"] == T).all()
    assert ((cells["kind"] == kinds[0]) == (cells["target"] < cells["source"])).all()
    method_schematic(seq, cells, src).to_dict()  # a valid chart


def test_schematic_refuses_a_sequence_that_is_not_repeated():
    lay = InductionLayout(T=3, offset=1)
    with pytest.raises(ValueError, match="second copy"):
        sequence_frame(lay, [0, 1, 2, 3, 1, 2, 4], 2)
    with pytest.raises(ValueError, match="length"):
        sequence_frame(lay, [0, 1, 2], 2)
    with pytest.raises(ValueError, match="k must be"):
        sequence_frame(lay, [0, 1, 2, 3, 1, 2, 3], 1)


def test_stripe_contrast_of_a_known_matrix():
    import numpy as np

    from residual_response.pages.schematic import stripe_contrast

    lay = InductionLayout(T=3, offset=1)
    chi = np.triu(np.ones((lay.length, lay.length)))
    chi[lay.induction_sources, lay.induction_targets] = 5.0
    chi[lay.duplicate_sources, lay.duplicate_targets] = 100.0  # left out of the reference
    assert stripe_contrast(chi, lay) == 5.0
    with pytest.raises(ValueError, match="shape"):
        stripe_contrast(chi[:-1], lay)


def test_measure_schematic_on_a_random_model():
    from residual_response.models import build_random_model
    from residual_response.pages.schematic import measure_schematic

    lm = build_random_model("gpt2", seed=0)
    sc = measure_schematic(lm, T=4, k=2, eps=1e-2, seed=0)
    assert (sc.source, sc.ind_target, sc.dup_target) == (sc.layout.offset + 1, sc.source + 3, sc.source + 4)
    assert sc.chi.shape == (sc.layout.length,) * 2 and sc.stream == lm.n_layers and sc.ratio > 0
    sc.chart.to_dict()  # a valid chart


def test_stripe_contrast_over_seeds_holds_each_sequences_ratio():
    """The interval is over sequences: seed 0's ratio is the pictured one, and one sequence is refused."""
    from residual_response.models import build_random_model
    from residual_response.pages.schematic import measure_schematic, stripe_contrast_over_seeds

    lm = build_random_model("gpt2", seed=0)
    over = stripe_contrast_over_seeds(lm, T=4, eps=1e-2, seeds=3, n_boot=200)
    assert over.per_seed.shape == (3,)
    assert float(over.per_seed[0]) == pytest.approx(measure_schematic(lm, T=4, k=2, eps=1e-2, seed=0).ratio, rel=1e-9)
    assert float(over.lo) <= float(over.mean) <= float(over.hi)
    assert float(over.per_seed.min()) <= float(over.mean) <= float(over.per_seed.max())
    with pytest.raises(ValueError, match="seeds"):
        stripe_contrast_over_seeds(lm, T=4, eps=1e-2, seeds=1)
