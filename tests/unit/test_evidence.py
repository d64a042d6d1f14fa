"""What one page computes and another quotes (residual_response.pages.evidence, .book_params and the
paper page's sections row), on tiny random models and on rows whose answer is known."""

from types import SimpleNamespace

import pandas as pd
import pytest

from residual_response import results_cache as rc
from residual_response.models import build_random_model
from residual_response.pages import evidence, studies, tables
from residual_response.pages.book_params import notebook_defaults, page_arguments

ARGS = dict(T=4, seeds=2, att_seeds=2, loss_seeds=2, eps=1e-2, l0=0, k=1, n_random=2, ablation_seeds=2, n_boot=30)


def test_the_page_arguments_merge_the_notebook_defaults_and_the_profile():
    cc = page_arguments("cross-checks", "publish")
    assert cc["n_boot"] == notebook_defaults("notebooks/cross_checks.md")["n_boot"]  # only in the notebook
    assert cc["T"] == 20 and cc["n_random"] == 20 and page_arguments("cross-checks", "ci")["T"] == 10
    args = evidence.cross_check_arguments(cc, "smollm2-135m")
    assert args["l0"] == cc["layer"] and args["k"] == cc["k"]["smollm2-135m"]
    assert evidence.cross_check_arguments({**cc, "k": {}}, "smollm2-135m")["k"] == 5  # the page's default
    for page, profile, word in (("cross-checks", "nightly", "profile"), ("nope", "ci", "page must be"),
                                ("model-gemma3-270m", "ci", "not built in the ci")):
        with pytest.raises(ValueError, match=word):
            page_arguments(page, profile)


def test_the_stored_evidence_is_the_pages_own_check_and_is_read_back(store):
    lm = build_random_model("gpt2", seed=0)
    key = evidence.ablation_key(lm, **ARGS)
    check = studies.cross_check(lm, **ARGS)
    first = evidence.ablation_evidence(lm, key=key, check=check, **ARGS)
    tests = check.rank_tests()
    assert first.tests["top"].p_value == tests["top"].p_value and first.heads["top"] == check.study.heads["top"]
    assert first.setting == {"T": 4, "seeds": 2, "eps": 1e-2, "l0": 0, "n_random": 2} and first.k == 1
    # another page, same arguments: read from the store, the study is not run again
    again = evidence.ablation_evidence(lm, key=key, check=SimpleNamespace(), **ARGS)
    assert again == first
    # other arguments: another entry (computed), and a key taken for other arguments is refused
    other = evidence.ablation_evidence(lm, key=evidence.ablation_key(lm, **{**ARGS, "n_random": 1}),
                                       **{**ARGS, "n_random": 1})
    assert other.setting["n_random"] == 1
    with pytest.raises(ValueError, match="other arguments"):
        evidence.ablation_evidence(lm, key=key, **{**ARGS, "n_random": 1})
    # a model with hooks has no key: computed, not stored
    handle = lm.model.transformer.h[0].register_forward_hook(lambda *a: None)
    assert evidence.ablation_key(lm, **ARGS) is None
    handle.remove()


def test_without_the_store_the_evidence_is_computed():
    lm = build_random_model("gpt2", seed=0)
    assert not rc.enabled() and evidence.ablation_key(lm, **ARGS) is None
    ev = evidence.ablation_evidence(lm, **{**ARGS, "n_random": 1})
    assert set(ev.tests) >= {"top", "attention"} and ev.tests["top"].n_random == 1


def _rows(writes, firsts):
    return pd.DataFrame([{"l0": l0, "first": f, "first low": f - 0.3, "first high": f + 0.3, "writes": w}
                         for l0, (w, f) in enumerate(zip(writes, firsts))])


def _abl(response, control):
    return {"response": response, "control": control, "text": ""}


def test_map_evidence_names_writing_blocks_and_their_heads():
    e = tables.map_evidence(_rows([False, True, True], [1.0, 3.0, 2.2]), [1, 4, 1], "T = 8")
    assert e["writes"] == [1, 2] and e["match"] == [1] and e["heads"] == [1, 4]
    assert "block 1 writes a stripe right after the kick (3.00 [2.70, 3.30])" in e["text"]
    assert "1 of the 2 writing blocks hold one" in e["text"] and e["text"].endswith("(T = 8)")
    none = tables.map_evidence(_rows([False], [1.0]), [], "T = 8")
    assert none["writes"] == [] and "no attention-pattern induction head" in none["text"]


def test_the_sections_verdict_follows_from_the_map_and_the_ablation():
    located = {"a": {"match": [3]}, "b": {"match": [5]}}
    both = {"a": _abl("distinguishable", "distinguishable"), "b": _abl("distinguishable", "distinguishable")}
    assert tables.sections_verdict(located, both).startswith("agrees:")
    mixed = {**both, "b": _abl("not distinguishable", "distinguishable")}
    v = tables.sections_verdict(located, mixed)
    assert v.startswith("partly:") and "distinguishable from random heads in a (of 2 with enough draws)" in v
    failed = {**both, "b": _abl("distinguishable", "not distinguishable")}  # a control that fails cannot tell
    v = tables.sections_verdict(located, failed)
    assert v.startswith("partly:") and "positive control does not pass on the last stream's score in b" in v
    nothing = tables.sections_verdict({"a": {"match": []}}, {"a": _abl("not distinguishable", "distinguishable")})
    assert nothing.startswith("not shown here:")
    assert tables.sections_verdict({}, {}).startswith("cannot say")
    unmapped = tables.sections_verdict({}, {"a": _abl("distinguishable", "distinguishable")})
    assert unmapped.startswith("partly:") and "maps none of these models" in unmapped
    few = tables.sections_verdict(located, {**both, "b": _abl("too few draws", "too few draws")})
    assert "too few random draws" in few and "does not pass" not in few
    assert "(of 1 with enough draws)" in few  # a model with too few draws is not counted as a negative
    # the response's heads outside the attention set are reported, negatives included
    outside = tables.sections_verdict(located, {**both, "b": {**_abl("distinguishable", "distinguishable"),
                                                              "outside": "not distinguishable"}})
    assert "outside the attention set, the response's top heads are distinguishable from random heads in no model (of 1)" in outside


def test_ablation_evidence_text_reads_the_rank_tests():
    lm = build_random_model("gpt2", seed=0)
    ev = evidence.ablation_evidence(lm, **{**ARGS, "n_random": 1})
    t = tables.ablation_evidence_text(ev)
    assert t["response"] == tables.rank_verdict(ev.tests["top"]) == "too few draws"  # 1 draw: p >= 0.5
    assert t["control"] == tables.rank_verdict(ev.tests["attention"])
    assert f"p = {ev.tests['top'].p_value:.3f}" in t["text"] and "1 random draws" in t["text"]
    same = set(ev.heads["top"]) == set(ev.heads["attention"])
    assert ("(positive control): the same heads" in t["text"]) == same


def test_rank_tests_at_another_stream_read_the_drops_there():
    lm = build_random_model("gpt2", seed=0)
    check = studies.cross_check(lm, **ARGS)
    reads = check.study.results["none"].read_streams
    last, mid = check.rank_tests(), check.rank_tests(reads[1])
    assert check.rank_tests(reads[-1])["top"].p_value == last["top"].p_value
    assert mid["top"].drop == pytest.approx(check.study.drops(1)["top"], abs=1e-12)
    assert check.emergence_stream == check.base.emergence_layer
    with pytest.raises(ValueError, match="read streams"):
        check.rank_tests(99)
    sentence = tables.ablation_sentence("m at stream 1", mid, 1, "T = 4", check.study.heads, score="$S_{1}$")
    assert sentence.startswith("In **m at stream 1** (T = 4)") and "$S_{1}$" in sentence and "$S_L$" not in sentence
