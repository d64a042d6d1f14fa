"""Cross-checks of the response score (attention patterns, ablation, negative controls) on tiny random models."""

import numpy as np
import torch
import pandas as pd
import pytest
import scipy.stats

from residual_response.attention import induction_attention_scores
from residual_response.crosscheck import (
    ablation_study,
    head_rank_agreement,
    kind_scores,
    layer_rank_agreement,
    paired_score_change,
    seed_null_scores,
    spearman,
)
from residual_response.induction import induction_scores
from residual_response.pages.tables import control_envelope


def test_spearman_matches_scipy_and_handles_ties():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=12), rng.normal(size=12)
    assert spearman(x, y) == pytest.approx(scipy.stats.spearmanr(x, y).statistic)
    xt = np.array([1, 2, 2, 3, 5.0])
    yt = np.array([2, 1, 4, 4, 6.0])
    assert spearman(xt, yt) == pytest.approx(scipy.stats.spearmanr(xt, yt).statistic)
    batch = spearman(np.stack([x, -x]), np.stack([x, x]))  # vectorised over leading axes
    np.testing.assert_allclose(batch, [1.0, -1.0])


def test_head_rank_agreement_identical_and_reversed():
    a = np.arange(12.0).reshape(3, 4)
    same = head_rank_agreement(a, a, k=5)
    assert same.overlap == 5 and same.rho == pytest.approx(1.0) and same.n_heads == 12
    rev = head_rank_agreement(a, -a, k=5)
    assert rev.overlap == 0 and rev.rho == pytest.approx(-1.0)
    b = a.copy()
    b[0, 0] = np.nan  # non-finite heads are left out
    assert head_rank_agreement(a, b, k=3).n_heads == 11
    with pytest.raises(ValueError, match="k must be"):
        head_rank_agreement(a, a, k=13)


def test_head_rank_agreement_interval_over_heads():
    a = np.arange(12.0).reshape(3, 4)
    assert head_rank_agreement(a, a, k=5).rho_ci == pytest.approx((1.0, 1.0))  # every resample is in order
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 10))
    y = x + rng.normal(size=(6, 10))  # correlated, with noise: an interval of some width around rho
    agr = head_rank_agreement(x, y, k=3)
    lo, hi = agr.rho_ci
    assert lo < agr.rho < hi and 0.05 < hi - lo < 0.6 and lo > 0  # 60 heads, rho about 0.7
    with pytest.raises(ValueError, match="n_boot"):
        head_rank_agreement(x, y, k=3, n_boot=0)


def test_head_rank_agreement_on_a_hand_computed_example():
    """Known input, results worked out by hand.

    a = [[3, 1, 4], [1.5, 9, 2.6]] has ranks [4, 1, 5, 2, 6, 3]; b = [[1, 2, 8], [7, 9, 3]] has
    ranks [1, 2, 5, 4, 6, 3]. Sum of squared rank differences 14, n = 6:
    rho = 1 - 6 * 14 / (6 * 35) = 0.6. Top 3 of a: (1,1), (0,2), (0,0); of b: (1,1), (0,2), (1,0).
    With a[0, 0] = nan that head leaves both: ranks [1, 4, 2, 5, 3] and [1, 4, 3, 5, 2], sum of
    squares 2, n = 5: rho = 1 - 6 * 2 / (5 * 24) = 0.9; top 3 of a becomes (1,1), (0,2), (1,2).
    """
    a = np.array([[3, 1, 4], [1.5, 9, 2.6]])
    b = np.array([[1, 2, 8], [7, 9, 3.0]])
    res = head_rank_agreement(a, b, k=3)
    assert res.rho == pytest.approx(0.6, abs=1e-12) and res.n_heads == 6
    assert res.overlap == 2 and res.common == [(0, 2), (1, 1)] and res.k == 3
    one = head_rank_agreement(a, b, k=1)
    assert one.overlap == 1 and one.common == [(1, 1)]
    a[0, 0] = np.nan
    res = head_rank_agreement(a, b, k=3)
    assert res.rho == pytest.approx(0.9, abs=1e-12) and res.n_heads == 5
    assert res.overlap == 2 and res.common == [(0, 2), (1, 1)]


@pytest.fixture(scope="module")
def scored(random_lm):
    return induction_scores(random_lm, T=5, seeds=2, n_boot=50, control="random")


@pytest.fixture
def scored_within(random_lm):
    return induction_scores(random_lm, T=6, seeds=2, n_boot=50, control="neighbours")


@pytest.fixture
def scored_twin(random_lm):
    return induction_scores(random_lm, T=6, seeds=2, n_boot=50)  # the default: right neighbours against the twin


def test_layer_rank_agreement_aligns_blocks_to_streams(random_lm, scored):
    att = induction_attention_scores(random_lm, T=5, seeds=range(2), n_boot=50)
    res = layer_rank_agreement(att, scored.stripes, n_boot=50)
    L = random_lm.n_layers
    assert res.blocks == list(range(L)) and res.streams == list(range(1, L + 1))
    assert res.n_layers == L and -1 <= res.rho <= 1 and res.lo <= res.hi
    # the per-layer profiles are the stated quantities
    np.testing.assert_allclose(res.attention_max, att.repeated.mean.numpy().max(-1))
    np.testing.assert_allclose(res.response, np.asarray(scored.score)[1:], rtol=1e-10)
    # and rho is their rank correlation
    rho = scipy.stats.spearmanr(res.attention_max, res.response).statistic
    assert res.rho == pytest.approx(rho, abs=1e-12)


def test_paired_score_change_is_zero_for_identical_runs(scored):
    drop, lo, hi = paired_score_change(scored.stripes, [scored.stripes], n_boot=50)
    finite = np.isfinite(drop)
    assert finite[1:].all() and not finite[0]  # l0 itself has no score
    np.testing.assert_allclose(drop[finite], 0.0, atol=1e-12)
    np.testing.assert_allclose(lo[finite], 0.0, atol=1e-12)


def test_random_model_controls_score_near_one(random_lm, scored):
    shuffled = kind_scores(random_lm, "shuffled", scored, n_boot=50)
    null = seed_null_scores(scored, n_boot=50)
    for res in (shuffled, null):
        s = np.asarray(res.score)[1:]
        assert np.all(np.isfinite(s)) and np.all(s < 2.0), res.score
    # the null compares different sequences: not 1 by construction
    st = scored.stripes
    expect = st.induction["control"][1].mean(-1) / st.induction["control"][0].mean(-1)
    np.testing.assert_allclose(null.score[1:], expect[1:], rtol=1e-10)
    assert not np.allclose(null.score[1:], 1.0)
    # "repeated" through kind_scores reproduces the reference exactly (same directions)
    again = kind_scores(random_lm, "repeated", scored, n_boot=50)
    np.testing.assert_allclose(again.score[1:], scored.score[1:], rtol=1e-6)
    one = kind_scores(random_lm, "repeated", scored, seeds=[1], n_boot=50)
    assert one.seeds == [1] and one.stripes.induction["control"].shape[0] == 1
    with pytest.raises(ValueError, match="subset"):
        kind_scores(random_lm, "shuffled", scored, seeds=[7])
    with pytest.raises(ValueError, match="kind must be"):
        kind_scores(random_lm, "random", scored)


def test_controls_with_the_neighbours_baseline(random_lm, scored_within):
    assert scored_within.control == "neighbours" and scored_within.stripes.control_kind == "neighbours"
    # "repeated" reproduces the reference; random and shuffled sequences are scored against themselves
    again = kind_scores(random_lm, "repeated", scored_within, n_boot=50)
    np.testing.assert_allclose(again.score[1:], scored_within.score[1:], rtol=1e-6)
    for kind in ("random", "shuffled"):
        res = kind_scores(random_lm, kind, scored_within, n_boot=50)
        s = np.asarray(res.score)[1:]
        assert np.all(np.isfinite(s)) and np.all(s < 2.0) and np.all(s > 0.5), (kind, res.score)
        assert res.stripes.induction["control"].shape == res.stripes.induction["repeated"].shape
    with pytest.raises(ValueError, match="kind_scores"):
        seed_null_scores(scored_within)


def test_controls_with_the_twin_baseline(random_lm, scored_twin):
    st = scored_twin.stripes
    assert scored_twin.control == "twin" and set(st.induction) == {"repeated", "control", "twin", "twin_control"}
    # the score is the ratio of the two ratios, over all seeds and stripe positions
    rep, ctrl, twin, twin_ctrl = (a.mean(axis=(0, 2)) for a in st.parts("induction"))
    np.testing.assert_allclose(scored_twin.score[1:], ((rep / ctrl) / (twin / twin_ctrl))[1:], rtol=1e-10)
    # "repeated" reproduces the reference; random and shuffled sequences take the repeats' place
    again = kind_scores(random_lm, "repeated", scored_twin, n_boot=50)
    np.testing.assert_allclose(again.score[1:], scored_twin.score[1:], rtol=1e-6)
    for kind in ("random", "shuffled"):
        res = kind_scores(random_lm, kind, scored_twin, n_boot=50)
        s = np.asarray(res.score)[1:]
        assert np.all(np.isfinite(s)) and np.all(s < 2.0) and np.all(s > 0.5), (kind, res.score)
        np.testing.assert_array_equal(res.stripes.induction["twin"], st.induction["twin"])  # reused, not rerun
    # twins of the odd seeds against those of the even seeds
    null = seed_null_scores(scored_twin, n_boot=50)
    odd = [a[1::2].mean(axis=(0, 2)) for a in (st.induction["twin"], st.induction["twin_control"])]
    even = [a[0::2].mean(axis=(0, 2)) for a in (st.induction["twin"], st.induction["twin_control"])]
    np.testing.assert_allclose(null.score[1:], ((odd[0] / odd[1]) / (even[0] / even[1]))[1:], rtol=1e-10)


def test_ablation_study_random_draws_exclude_named_heads(random_lm):
    heads = [(1, 0), (2, 1)]
    study = ablation_study(random_lm, heads, n_random=2, T=4, seeds=1, loss_seeds=range(3), n_boot=20)
    assert study.heads["top"] == sorted(heads) and study.random_keys == ["random-0", "random-1"]
    for key in study.random_keys:
        assert len(study.heads[key]) == 2 and not set(study.heads[key]) & set(heads)
    # the drop is the unablated score minus the mean score over the random draws
    drop, lo, hi = study.score_drop("random", n_boot=20)
    assert drop.shape == (random_lm.n_layers + 1,)
    score = {key: np.asarray(study.results[key].score, dtype=float) for key in study.heads}
    expect = score["none"] - np.mean([score[key] for key in study.random_keys], axis=0)
    np.testing.assert_allclose(drop[1:], expect[1:], rtol=1e-10, atol=1e-12)
    assert np.all(lo[1:] <= drop[1:] + 1e-12) and np.all(drop[1:] <= hi[1:] + 1e-12)
    assert not np.allclose(study.score_drop("top", n_boot=20)[0][1:], 0.0)  # ablation changed the score
    # the loss rise is the ablated minus the unablated second-copy loss, per seed
    rise = study.loss_rise("top", n_boot=20)
    base = study.losses["none"].second.per_seed.double().numpy()
    top = study.losses["top"].second.per_seed.double().numpy()
    assert rise.per_seed.shape == (3,)
    np.testing.assert_allclose(rise.per_seed.double().numpy(), top - base, rtol=1e-6, atol=1e-7)
    assert float(rise.mean) == pytest.approx(float(np.mean(top - base)), rel=1e-6, abs=1e-7)
    # the loss difference is the named change minus the random draws' mean change, per seed
    rand = np.mean([study.losses[k].second.per_seed.double().numpy() for k in study.random_keys], axis=0)
    diff = study.loss_difference("top", n_boot=20)
    np.testing.assert_allclose(diff.per_seed.double().numpy(), top - rand, rtol=1e-6, atol=1e-7)
    above = sum(float(np.mean(study.losses[k].second.per_seed.double().numpy() - base)) >= float(np.mean(top - base))
                for k in study.random_keys)
    assert study.loss_rank("top")["above"] == above
    with pytest.raises(ValueError, match="which must be one of"):
        study.loss_difference("random")
    with pytest.raises(ValueError, match="heads is empty"):
        ablation_study(random_lm, [], T=4, seeds=1)


def test_random_sets_are_distinct_and_all_of_them_where_few_exist():
    """A permutation test counts each draw as a new sample of the null: no set twice. Where the
    other heads allow at most n sets (one head of 7 others, 20 asked), each set comes once."""
    import itertools

    from residual_response.crosscheck import distinct_random_sets
    from residual_response.models import build_random_model

    lm = build_random_model("gpt2", seed=0)  # 4 blocks x 4 heads
    named = [(1, 3)]
    many = distinct_random_sets(lm, 2, 20, exclude=named, random_seed=0)
    assert len(many) == 20 and len({tuple(h) for h in many}) == 20
    assert all(len(h) == 2 and (1, 3) not in h for h in many)
    assert many == distinct_random_sets(lm, 2, 20, exclude=named, random_seed=0)  # seeded
    pool = [(b, h) for b in range(4) for h in range(4) if (b, h) != (1, 3)][:7]  # 7 candidates
    other = [(b, h) for b in range(4) for h in range(4) if (b, h) not in pool]
    every = distinct_random_sets(lm, 1, 20, exclude=other)
    assert every == [[p] for p in pool]  # C(7, 1) = 7 <= 20: each once, in order
    assert distinct_random_sets(lm, 2, 21, exclude=other) == [list(c) for c in itertools.combinations(pool, 2)]


def test_control_envelope_bins_and_spans_axis():
    df = pd.DataFrame({"rel_depth": [0.05, 0.1, 0.5, 0.55, 1.0], "score": [1.0, 1.2, 0.8, 0.9, 1.1]})
    env = control_envelope(df, bins=4)
    assert env.rel_depth.iloc[0] == 0.0 and env.rel_depth.iloc[-1] == 1.0
    mid = env[(env.rel_depth > 0) & (env.rel_depth < 1)]
    assert list(mid.n) == [2, 2, 1] and mid.band_lo.iloc[0] == 1.0 and mid.band_hi.iloc[0] == 1.2
    with pytest.raises(ValueError, match="must lie in"):
        control_envelope(df.assign(rel_depth=df.rel_depth * 2))


def test_rank_test_of_named_heads_among_random_draws(random_lm):
    heads, att = [(1, 0)], [(2, 1)]
    study = ablation_study(random_lm, heads, attention_heads=att, n_random=4, T=4, seeds=2, loss_seeds=range(2),
                           n_boot=50)
    assert study.named_keys == ["top", "attention"]
    for key in study.random_keys:  # random draws avoid both named sets
        assert not set(study.heads[key]) & {(1, 0), (2, 1)}
    d = study.drops()
    for which in ("top", "attention"):
        t = study.rank_test(which, n_boot=200)
        rand = [d[k] for k in study.random_keys]
        assert t.drop == d[which] and t.random_drops == rand
        assert t.p_value == (1 + sum(r >= d[which] for r in rand)) / 5 and t.smallest_p == 0.2
        # the difference is the named drop minus the mean random drop; its interval holds the point
        assert t.difference == pytest.approx(d[which] - np.mean(rand), rel=1e-9, abs=1e-12)
        assert t.difference_low <= t.difference <= t.difference_high
        assert not t.distinguishable  # p cannot reach 0.05 with 4 draws
    with pytest.raises(ValueError, match="which must be"):
        study.rank_test("none")
    with pytest.raises(ValueError, match="as many heads"):
        ablation_study(random_lm, heads, attention_heads=[(1, 1), (2, 2)], n_random=1, T=4, seeds=1)


def test_outside_set_is_a_third_named_condition(random_lm):
    """The response's set outside the attention set is ablated like the others, ranked among draws
    that avoid all three sets, and must share no head with the attention set."""
    heads, att, outside = [(1, 0)], [(1, 0)], [(2, 1)]
    study = ablation_study(random_lm, heads, attention_heads=att, outside_heads=outside, n_random=3, T=4, seeds=1,
                           loss_seeds=range(2), n_boot=30)
    assert study.named_keys == ["top", "attention", "outside"] and study.heads["outside"] == outside
    for key in study.random_keys:
        assert not set(study.heads[key]) & {(1, 0), (2, 1)}
    t = study.rank_test("outside", n_boot=50)
    assert t.which == "outside" and t.drop == study.drops()["outside"]
    with pytest.raises(ValueError, match="no head of attention_heads"):
        ablation_study(random_lm, heads, attention_heads=att, outside_heads=[(1, 0)], n_random=1, T=4, seeds=1)
    with pytest.raises(ValueError, match="needs attention_heads"):
        ablation_study(random_lm, heads, outside_heads=outside, n_random=1, T=4, seeds=1)
    with pytest.raises(ValueError, match="as many heads"):
        ablation_study(random_lm, heads, attention_heads=att, outside_heads=[(2, 1), (2, 2)], n_random=1, T=4, seeds=1)


def test_difference_interval_holds_the_spread_between_draws():
    """Draws that differ a lot from each other widen the interval of the difference."""
    from residual_response.stats import paired_ratio_change

    rng = np.random.default_rng(1)
    shape = (4, 2, 6)
    base = (rng.uniform(2, 3, shape), np.ones(shape))
    named = [(rng.uniform(1, 1.1, shape), np.ones(shape))]
    alike = [(np.full(shape, 2.0) + rng.normal(0, 0.01, shape), np.ones(shape)) for _ in range(10)]
    spread = [(np.full(shape, 1.0 + j / 3), np.ones(shape)) for j in range(10)]
    d1, lo1, hi1 = paired_ratio_change(base, named, against=alike, n_boot=500)
    d2, lo2, hi2 = paired_ratio_change(base, named, against=spread, n_boot=500)
    assert np.all(hi2 - lo2 > 5 * (hi1 - lo1))
    np.testing.assert_allclose(d2, np.mean([a[0].mean(axis=(0, 2)) for a in spread], axis=0)
                               - named[0][0].mean(axis=(0, 2)), rtol=1e-12)


def test_ablation_study_reads_the_unablated_run_off_a_base_with_more_seeds(random_lm):
    """A base run with more seeds gives the same unablated condition as running it again."""
    base = induction_scores(random_lm, T=4, seeds=3, n_boot=50)
    kw = dict(n_random=1, T=4, seeds=2, loss_seeds=range(2), n_boot=50)
    reused = ablation_study(random_lm, [(1, 0)], base=base, **kw)
    fresh = ablation_study(random_lm, [(1, 0)], **kw)
    for field in ("score", "ci_low", "ci_high"):
        np.testing.assert_allclose(getattr(reused.results["none"], field), getattr(fresh.results["none"], field),
                                   rtol=1e-10, equal_nan=True)
    assert reused.results["none"].seeds == [0, 1]
    with pytest.raises(ValueError, match="base was run at T=4"):
        ablation_study(random_lm, [(1, 0)], base=base, **{**kw, "seeds": [0, 5]})


def test_draws_and_seeds_mean_holds_the_spread_between_draws():
    """Draws that differ a lot widen the interval; the seeds alone would not (tolerance: exact means)."""
    from residual_response.ranked_ablation import draws_and_seeds_mean

    rng = np.random.default_rng(0)
    named = torch.tensor(rng.normal(1.0, 0.01, 8))
    alike = torch.tensor(rng.normal(0.5, 0.01, (20, 8)))
    apart = alike + torch.tensor(np.linspace(-1, 1, 20))[:, None]  # same mean over draws, far apart
    a, b = draws_and_seeds_mean(named, alike, n_boot=400), draws_and_seeds_mean(named, apart, n_boot=400)
    assert float(a.mean) == pytest.approx(float(named.mean() - alike.mean()), abs=1e-12)
    assert float(b.hi - b.lo) > 5 * float(a.hi - a.lo) and float(b.lo) < float(b.mean) < float(b.hi)
    flipped = draws_and_seeds_mean(torch.zeros(8), alike, n_boot=400, sign=-1)  # the draws' own mean
    assert float(flipped.mean) == pytest.approx(float(alike.mean()), abs=1e-12)
    with pytest.raises(ValueError, match="draws must be"):
        draws_and_seeds_mean(named, alike[:, :5])


def test_paired_margin_is_the_gap_to_the_largest_draw():
    from residual_response.stats import paired_margin

    rng = np.random.default_rng(1)
    rep = rng.uniform(1, 2, (4, 3, 6))
    ctrl = rng.uniform(1, 2, (4, 3, 6))
    named = (rep * 0.5, ctrl)  # a ratio half the draws': the named drop is far beyond them
    draws = [(rep * f, ctrl) for f in (1.0, 0.9, 1.1)]
    margin, lo, hi, first = paired_margin(named, draws, n_boot=300)
    expected = min(rep[:, -1].mean() * f for f in (1.0, 0.9, 1.1)) / ctrl[:, -1].mean() - 0.5 * rep[:, -1].mean() / ctrl[:, -1].mean()
    assert margin == pytest.approx(expected, rel=1e-9) and lo <= margin <= hi and lo > 0 and first == 1.0
    _, lo2, hi2, first2 = paired_margin(draws[1], draws, n_boot=300)  # the named set is one of the draws
    assert lo2 <= 0 <= hi2 + 1e-12 and first2 == 0.0
    with pytest.raises(ValueError, match="draws is empty"):
        paired_margin(named, [])


def test_loss_rank_counts_the_draws_both_ways(random_lm):
    study = ablation_study(random_lm, [(1, 0)], attention_heads=[(2, 1)], n_random=3, T=4, seeds=1,
                           loss_seeds=range(2), n_boot=30)
    rank = study.loss_rank("top")
    base = study.losses["none"].second.per_seed
    named = float((study.losses["top"].second.per_seed - base).mean())
    rises = [float((study.losses[k].second.per_seed - base).mean()) for k in study.random_keys]
    assert rank["above"] == sum(r >= named for r in rises) and rank["below"] == sum(r <= named for r in rises)
    assert rank["p_more"] == (1 + rank["above"]) / 4 and rank["p_less"] == (1 + rank["below"]) / 4
    t = study.rank_test("top", n_boot=50)
    assert t.margin == pytest.approx(t.drop - max(t.random_drops), abs=1e-9) and 0 <= t.first_share <= 1
