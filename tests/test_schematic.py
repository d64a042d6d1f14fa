"""The method's schematic (residual_response.schematic) matches the code's own sequence layout."""

import pytest

from residual_response.schematic import CELL_KINDS, cell_frame, method_schematic, sequence_frame
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
