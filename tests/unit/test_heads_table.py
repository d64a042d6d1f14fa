"""The cross-checks page's top heads with their intervals (residual_response.pages.tables.heads_table)."""

import pytest

from residual_response.attention import induction_attention_scores, previous_token_scores, top_heads
from residual_response.models import build_random_model
from residual_response.pages.tables import attention_head_table, head_ratio_text, previous_token_text
from residual_response.stats import ratio_of_means


def test_head_ratio_text_caps_what_the_digits_cannot_carry():
    assert head_ratio_text(5.1, 3.9, 6.8) == "5.1× [3.9, 6.8]"
    assert head_ratio_text(4.1, 3.0, 12.4) == "4.1× [3.0, 12]" and head_ratio_text(0.95, 0.89, 1.0) == "0.95× [0.89, 1.0]"
    assert head_ratio_text(80.0, 40.0, 300.0) == "80× [40, > 100]"  # only the upper end past the cap
    assert head_ratio_text(119.0, 75.0, 300.0) == "> 100× [75, > 100]"  # a point past the cap is not printed above its own interval
    assert head_ratio_text(500.0, 150.0, 900.0) == "> 100×"


def test_attention_head_table_and_previous_token_text_read_the_per_seed_scores():
    lm = build_random_model("gpt2", seed=0)
    att = induction_attention_scores(lm, T=4, seeds=range(3), n_boot=50)
    from types import SimpleNamespace
    c = SimpleNamespace(attention=att, n_layers=lm.n_layers, n_heads=lm.n_heads,
                        agreement=SimpleNamespace(n_layers=2, rho=1.0, lo=1.0, hi=1.0))
    tbl = attention_head_table({"random-gpt2": c}, setting="s", att_setting="a", k=3, n_boot=50)
    assert len(tbl) == 3 and tbl["Spearman over layers [95 % CI]"].tolist() == ["n/a (n = 2)", "", ""]
    b, h, v = top_heads(att, 1)[0]
    r, lo, hi = ratio_of_means(att.repeated.per_seed[:, b, h].numpy(), att.baseline.per_seed[:, b, h].numpy(), n_boot=50)
    assert tbl["÷ random sequences [95 % CI]"][0] == head_ratio_text(r, lo, hi)
    assert tbl["attention [95 % CI]"][0].startswith(f"{v:.2f} [")
    prev = previous_token_scores(lm, T=4, seeds=range(3), n_boot=50)
    text = previous_token_text(prev, 2)
    (b, h, v), _ = top_heads(prev, 2)
    assert text.startswith(f"({b}, {h}): {v:.2f} [") and text.count("[") == 2
    with pytest.raises(ValueError, match="previous_token_scores"):
        previous_token_text(att)
    with pytest.raises(ValueError, match="checks is empty"):
        attention_head_table({}, setting="s", att_setting="a")
    with pytest.raises(ValueError, match="k"):
        attention_head_table({"m": c}, setting="s", att_setting="a", k=0)
