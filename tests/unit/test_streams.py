"""The stream vocabulary: TransformerLens names of the residual streams."""

import pytest

from residual_response.streams import stream_name


def test_stream_name():
    assert stream_name(0, 2) == "blocks.0.hook_resid_pre"  # the embedding output, entering block 0
    assert stream_name(1, 2) == "blocks.1.hook_resid_pre"
    assert stream_name(2, 2) == "blocks.1.hook_resid_post"  # L: after the last block, before the final norm
    assert stream_name(30, 30) == "blocks.29.hook_resid_post"
    assert [stream_name(l, 1) for l in range(2)] == ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post"]


@pytest.mark.parametrize("l, n_layers, match", [
    (-1, 2, r"stream l=-1 out of range; allowed 0\.\.2"),
    (3, 2, r"stream l=3 out of range; allowed 0\.\.2"),
    (1.0, 2, r"stream l=1\.0 out of range"),
    (True, 2, r"stream l=True out of range"),
    (0, 0, r"n_layers must be an int >= 1, got 0"),
])
def test_stream_name_refuses(l, n_layers, match):
    with pytest.raises(ValueError, match=match):
        stream_name(l, n_layers)
