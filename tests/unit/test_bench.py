"""The bench logic (residual_response.bench) and the engine's work-skipping, on tiny random models.

Speed is measured by scripts/bench.py, never asserted here: these tests check that the bench
computes the same response three ways, writes every field the book page reads, reads back the
records kept in the repository, and that the engine's planner, packed passes and shared clean
pass change nothing in the result.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from residual_response.bench import (
    BOOK_WORKLOADS,
    PAPER_MODELS,
    SCHEMA_VERSION,
    BenchRecord,
    Clock,
    RecordError,
    describe_run,
    floor_table,
    gpu_estimates,
    timing_numbers,
    layers_frame,
    length_frame,
    load_record,
    naive_response,
    non_embedding_params,
    paper_cost,
    range_text,
    repeat_range,
    response_token_forwards,
    timing_table,
    run_bench,
    write_json,
)
from residual_response.models import build_random_model
from residual_response.perturbation import perturbation_directions
from residual_response.engine import plan_batches, response, reuse_clean_passes
from residual_response.engine import tap
from residual_response.engine.clean import installed_clean_cache
from residual_response.sequences import make_sequence
from residual_response import workers
from residual_response.workers import workers_allowed

from reference import naive_chi


TOP_FIELDS = ["naive_s", "engine_s", "floor_s", "speedup", "floor_fraction", "max_rel_diff", "peak_mem_mb",
              "peak_mem_method", "floor_schedule", "floor_schedules_s", "targets", "targets_met", "definitions",
              "growth", "section_map", "model", "dtype", "device", "T", "N", "n_layers", "repeats"]
SECTION_FIELDS = ["naive_s", "engine_s", "floor_s", "speedup", "floor_fraction", "naive_extrapolated",
                  "naive_extrapolation", "naive_l0_measured", "max_rel_diff"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared CPU run far faster on one thread (no OpenMP barrier waits)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bench_record():
    lm = build_random_model("llama", seed=0)
    return run_bench(lm, T=2, repeats=1, growth_T=(2, 3), floor_schedules=("exact", "chunk-2", "planned", "packed"),
                     log=None)


REPO = Path(__file__).resolve().parents[2]
STORED_RECORDS = [REPO / "bench.json", *sorted((REPO / "benchmarks").rglob("*.json"))]


def test_bench_record_has_every_field(bench_record, tmp_path):
    rec = bench_record.to_json()
    assert rec["schema_version"] == SCHEMA_VERSION
    for key in TOP_FIELDS:
        assert key in rec, key
    for key in SECTION_FIELDS:
        assert key in rec["section_map"], key
    assert rec["section_map"]["naive_extrapolated"] is True
    for key in ("naive_s", "engine_s", "floor_s", "speedup", "floor_fraction", "peak_mem_mb"):
        assert np.isfinite(rec[key]) and rec[key] > 0, key
    assert set(rec["floor_schedules_s"]) == {"exact", "chunk-2", "planned", "packed"}
    assert rec["floor_schedule"] in rec["floor_schedules_s"]
    # growth: one row per length, the main length included; one row per l0 for the layers
    assert [g["T"] for g in rec["growth"]["sequence_length"]] == [2, 3]
    assert [g["l0"] for g in rec["growth"]["layers"]] == list(range(rec["n_layers"]))
    assert rec["growth"]["sequence_length_expected"] and rec["growth"]["layers_expected"]
    # the engine computed exactly the necessary row-positions (packed passes)
    assert rec["row_positions"]["engine"] == rec["row_positions"]["necessary"] == rec["N"] * (rec["N"] + 1) // 2
    path = write_json(bench_record, tmp_path / "bench.json")
    assert json.loads(path.read_text()) == rec
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]  # no temp file left
    assert load_record(path) == bench_record


def test_bench_engine_equals_naive(bench_record):
    assert bench_record.max_rel_diff <= 1e-4
    assert bench_record.section_map.max_rel_diff <= 1e-4
    assert bench_record.targets_met["max_rel_diff"] is True
    assert bench_record.targets_met["section_map_max_rel_diff"] is True


def test_verdicts_follow_the_targets(bench_record):
    rec = bench_record
    sm = rec.section_map
    assert rec.targets_met == {
        "speedup": rec.speedup >= rec.targets["speedup"],
        "floor_fraction": rec.floor_fraction >= rec.targets["floor_fraction"],
        "max_rel_diff": rec.max_rel_diff <= rec.targets["max_rel_diff"],
        "section_map_speedup": sm.speedup >= rec.targets["section_map_speedup"],
        "section_map_floor_fraction": sm.floor_fraction >= rec.targets["floor_fraction"],
        "section_map_max_rel_diff": sm.max_rel_diff <= rec.targets["max_rel_diff"],
    }


@pytest.mark.parametrize("path", STORED_RECORDS, ids=lambda p: str(p.relative_to(REPO)))
def test_stored_records_load(path):
    """The records kept in the repository (schema 1: no version field) load with every verdict."""
    raw = json.loads(path.read_text())
    rec = load_record(path)
    assert rec.schema_version == SCHEMA_VERSION
    assert rec.speedup == raw["speedup"] and rec.section_map.floor_fraction == raw["section_map"]["floor_fraction"]
    assert {k: v for k, v in rec.targets_met.items() if k in raw["targets_met"]} == raw["targets_met"]
    assert rec.targets_met["section_map_max_rel_diff"] == (raw["section_map"]["max_rel_diff"]
                                                          <= raw["targets"]["max_rel_diff"])
    # what the page reads from it
    numbers = timing_numbers(rec)
    assert numbers["speedup"] == raw["speedup"] and numbers["engine_rate"] == raw["engine_gflops_per_s"]
    # the spread over the repeats comes from the record's own runs, paired by repeat
    ratios = [a / b for a, b in zip(raw["runs"]["naive"], raw["runs"]["engine"])]
    assert (numbers["speedup_lo"], numbers["speedup_hi"], numbers["n_repeats"]) == (min(ratios), max(ratios), len(ratios))
    rates = [raw["flops"]["necessary"] / t / 1e9 for t in raw["runs"]["engine"]]
    assert (f"{min(rates):.1f} to {max(rates):.1f} GFLOP/s" in numbers["rates_range"] if len(rates) > 1
            else numbers["rates_range"] == "one repeat, no spread")
    table = timing_table(rec)
    assert table["repeats"].tolist()[0] == len(ratios) and f"({min(ratios):.2f} to {max(ratios):.2f})" in table["speedup (range)"][0]
    if len(rec.section_map.runs["engine"]) == 1:
        assert numbers["sm_speedup_range"] == "timed once, so the record holds no spread"
        assert table["speedup (range)"][1].endswith("(1 repeat)")
    assert set(length_frame(rec)["method"]) >= {"engine", "expected ~ N²"}
    assert len(layers_frame(rec)) > 0 and "fastest" in floor_table(rec)


def test_repeat_range_pairs_the_repeats_and_says_when_there_is_one():
    assert repeat_range([30.0, 28.0, 29.0], [10.0, 10.0, 11.0]) == (pytest.approx(29 / 11), pytest.approx(3.0), 3)
    assert repeat_range([10.0], [5.0]) == (2.0, 2.0, 1)
    lo, hi, n = repeat_range([None, 4.0], [2.0, 0.0])  # a missing or zero time leaves that repeat out
    assert n == 0 and np.isnan(lo) and np.isnan(hi)
    assert range_text(2.9, 2.7, 3.0, 3) == "2.90 (2.70 to 3.00)" and range_text(5.8, 5.8, 5.8, 1) == "5.80 (1 repeat)"
    assert range_text(None, 1.0, 2.0, 3) == "-"
    with pytest.raises(ValueError, match="one time per repeat"):
        repeat_range([1.0, 2.0], [1.0])
    with pytest.raises(TypeError, match="not strings"):
        repeat_range("12", "34")


def test_unreadable_records_fail_with_one_clear_error(bench_record, tmp_path):
    rec = bench_record.to_json()
    cases = {"newer.json": {**rec, "schema_version": SCHEMA_VERSION + 1},
             "missing.json": {k: v for k, v in rec.items() if k != "engine_s"},
             "unknown.json": {**rec, "surprise": 1},
             "list.json": [rec]}
    for name, data in cases.items():
        (tmp_path / name).write_text(json.dumps(data))
    (tmp_path / "cut.json").write_text(json.dumps(rec)[:100])
    for name, match in [("newer.json", f"schema_version {SCHEMA_VERSION + 1}"), ("missing.json", "missing engine_s"),
                        ("unknown.json", "unknown surprise"), ("list.json", "not a list"),
                        ("cut.json", "not a readable")]:
        with pytest.raises(RecordError, match=match) as info:
            load_record(tmp_path / name)
        assert str(info.value).startswith(str(tmp_path / name)) and "rerun `make bench`" in str(info.value)
    with pytest.raises(RecordError, match="missing growth"):
        BenchRecord.from_json({k: v for k, v in rec.items() if k != "growth"})


def test_thread_scaling_times_the_canonical_job_at_each_count_and_reads_back(tmp_path, monkeypatch):
    monkeypatch.setattr(workers, "MIN_UNIT_FLOPS", 0.0)  # the tiny model's sequences in workers all the same
    lm = build_random_model("llama", seed=0)
    rec = run_bench(lm, T=2, repeats=2, growth_T=(2,), section=False, log=None, thread_counts=[2, 1], quick=True)
    ts = rec.thread_scaling
    assert ts.threads == [1, 2] and all(len(v) == 2 for v in ts.runs.values()) and ts.speedup > 0
    assert ts.speedup == pytest.approx(ts.wall_s["1"] / ts.wall_s["2"]) and "T=8, seeds=2" in ts.job
    # the same job at 2 threads with the forked workers off, and the load before each of the 6 runs
    assert len(ts.intra_op_runs) == 2 and ts.intra_op_speedup == pytest.approx(ts.wall_s["1"] / ts.intra_op_wall_s)
    assert ts.workers["1"] == 1 and ts.workers["2"] == (2 if workers_allowed() else 1) and len(ts.runs_load) == 6
    assert ts.speedup_min == pytest.approx(min(ts.runs["1"]) / min(ts.runs["2"]))
    assert rec.targets_met["thread_speedup"] == (ts.speedup >= rec.targets["thread_speedup"])
    back = load_record(write_json(rec, tmp_path / "b.json"))
    assert back.thread_scaling == ts
    lo, hi, n = repeat_range(ts.runs["1"], ts.runs["2"])
    assert n == 2 and lo <= hi and f"times faster, {lo:.2f} to {hi:.2f} over its 2 repeats (target 1.8" in describe_run(back, "a test")
    assert run_bench(lm, T=2, repeats=1, growth_T=(2,), section=False, log=None).thread_scaling is None


def test_bench_without_section_map_writes_no_section_fields(tmp_path):
    lm = build_random_model("gpt2", seed=0)
    rec = run_bench(lm, T=2, repeats=1, growth_T=(2,), section=False, log=None)
    data = json.loads(write_json(rec, tmp_path / "b.json").read_text())
    assert "section_map" not in data and data["growth"]["layers"] == [] and data["section_repeats"] == 0
    assert "section_map_speedup" not in data["targets_met"]
    assert layers_frame(rec) is None and np.isnan(timing_numbers(rec)["sm_speedup"])
    with pytest.raises(ValueError, match="naive_l0 must lie in 0..3"):
        run_bench(lm, T=2, repeats=1, naive_l0=[4], log=None)


def test_naive_response_matches_the_reference_loop(random_lm):
    tokens = make_sequence(random_lm, "repeated", 4, seed=2)
    N = len(tokens)
    dirs = perturbation_directions(random_lm, tokens, torch.arange(N), 1, "gaussian", 5)
    for l0 in (0, 2):
        ours = naive_response(random_lm, tokens, 1e-2, l0, dirs[:, 0])
        ref = naive_chi(random_lm, tokens, 1e-2, l0, dirs)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_packed_passes_equal_padded_passes(random_lm, monkeypatch):
    """Packing rows end to end (the default) gives the padded passes' response within 1e-5."""
    tokens = make_sequence(random_lm, "repeated", 6, seed=1)
    for l0 in (0, 2):
        packed = response(random_lm, tokens, [1e-2, 1e-1], l0=l0, n_directions=2, seed=4, batch_rows=5)
        jvp_packed = response(random_lm, tokens, l0=l0, n_directions=2, seed=4, method="jvp")
        assert packed.meta["packed"] and jvp_packed.meta["packed"]
        with monkeypatch.context() as m:
            m.setattr(tap, "PACKABLE_ATTENTION", ())  # no tappable attention: padded passes
            padded = response(random_lm, tokens, [1e-2, 1e-1], l0=l0, n_directions=2, seed=4, batch_rows=5)
            jvp_padded = response(random_lm, tokens, l0=l0, n_directions=2, seed=4, method="jvp")
        assert not padded.meta["packed"]
        assert packed.meta["row_positions"] < padded.meta["row_positions"]
        for a, b in ((packed, padded), (jvp_packed, jvp_padded)):
            rel = np.abs(a.chi - b.chi).max() / np.abs(b.chi).max()
            assert rel < 1e-5, f"l0={l0} {a.method}: max rel diff {rel:.2e}"
            lower = np.tril(np.ones(a.chi.shape[-2:], bool), k=-1)
            assert np.all(a.chi[..., lower] == 0.0)


def test_shared_clean_pass_is_bit_identical_and_notices_weight_changes():
    lm = build_random_model("gpt2", seed=3)
    tokens = make_sequence(lm, "repeated", 4, seed=0)
    alone = [response(lm, tokens, [1e-2], l0=l0, seed=1).chi for l0 in range(lm.n_layers)]
    with reuse_clean_passes() as cache:
        shared = [response(lm, tokens, [1e-2], l0=l0, seed=1).chi for l0 in range(lm.n_layers)]
        assert len(cache) == 1
        with torch.no_grad():  # an in-place weight update must not reuse the stale clean pass
            lm.blocks[0].mlp.c_fc.weight.mul_(1.5)
        changed = response(lm, tokens, [1e-2], l0=0, seed=1).chi
    assert installed_clean_cache() is None
    for a, b in zip(alone, shared):
        assert np.array_equal(a, b)
    fresh = response(lm, tokens, [1e-2], l0=0, seed=1).chi
    assert np.array_equal(changed, fresh) and not np.array_equal(changed, alone[0])


def test_plan_batches_covers_rows_in_order_and_respects_the_row_limit():
    starts = np.arange(81)
    for packed in (False, True):
        plan = plan_batches(starts, 81, 16, 64.0, packed=packed, attention=0.05)
        assert plan[0][0] == 0 and plan[-1][1] == 81
        assert all(a < b and b - a <= 16 for a, b in plan)
        assert all(plan[i][1] == plan[i + 1][0] for i in range(len(plan) - 1))
    # padded passes: fewer positions than one pass over everything, more than the necessary
    padded = plan_batches(starts, 81, 123, 64.0)
    work = sum((b - a) * (81 - a) for a, b in padded)
    assert 81 * 82 // 2 < work < 81 * 81
    # no prefix reuse (all starts 0): as few passes as the row limit allows
    assert plan_batches([0] * 10, 5, 3) == [(0, 1), (1, 4), (4, 7), (7, 10)]
    with pytest.raises(ValueError, match="sorted"):
        plan_batches([3, 1], 5, 2)


def test_flop_arithmetic_of_the_gpu_estimate():
    # GPT-2 XL: 48 blocks of 12 d^2 weights (attention 4 d^2, MLP 8 d^2), d = 1600
    assert non_embedding_params(**PAPER_MODELS["gpt2-xl"]) == 48 * 12 * 1600**2
    assert 2.0e9 < non_embedding_params(**PAPER_MODELS["gemma-2-2b"]) < 2.1e9
    assert 2.7e9 < non_embedding_params(**PAPER_MODELS["llama-3.2-3b"]) < 2.9e9
    # one response tensor at l0 = 0: N clean positions + sum_s (N - s) perturbed ones
    assert response_token_forwards(5, 4, [0]) == 5 + 15
    # the last block alone costs 1/L of a position per position
    assert response_token_forwards(5, 4, [3]) == 5 + 15 / 4
    rows = gpu_estimates()
    assert {r["model"] for r in rows} == set(PAPER_MODELS)
    for r in rows:
        assert 0 < r["bfloat16_s_low"] < r["bfloat16_s_high"] < r["float32_s_low"] < r["float32_s_high"]
    one = [r for r in rows if r["model"] == "gpt2-xl" and r["work"].startswith("one response")][0]
    N = 81
    assert one["token_forwards"] == N + N * (N + 1) // 2
    assert one["tflop"] == pytest.approx(2 * 48 * 12 * 1600**2 * one["token_forwards"] / 1e12)
    # one cost model: paper_cost's H100 columns are gpu_estimates', its CPU column the work at the given rate
    est = paper_cost(BOOK_WORKLOADS, 10.0)
    assert est[["bfloat16_s_low", "float32_s_high"]].to_dict("records") == [
        {k: r[k] for k in ("bfloat16_s_low", "float32_s_high")} for r in rows]
    assert est["cpu_s"].tolist() == pytest.approx([r["tflop"] * 1e12 / 10e9 for r in rows])
    # relative depths map onto the paper model's blocks; a source count spreads over 1..N-2
    deep = paper_cost([dict(work="d", T=2, l0=[0.0, 0.5], sources=2)], 1.0)
    gpt2 = deep[deep.model == "gpt2-xl"].iloc[0]
    assert gpt2["token_forwards"] == 5 + (4 + 2) * (1 + 24 / 48)
    with pytest.raises(ValueError, match="cpu_gflops"):
        paper_cost(BOOK_WORKLOADS, 0.0)


def test_cpu_clock_is_recorded_and_bad_clocks_refused():
    lm = build_random_model("gpt2", seed=0)
    rec = run_bench(lm, T=2, repeats=1, growth_T=(2,), section=False, clock="cpu", log=None)
    assert rec.clock == "cpu"
    assert "CPU seconds" in rec.definitions["timing"]
    assert rec.engine_s > 0 and rec.naive_s > 0
    with pytest.raises(ValueError, match="unknown clock 'gpu'"):
        run_bench(lm, T=2, repeats=1, clock="gpu", log=None)
    with pytest.raises(ValueError, match="clock='cpu' does not measure GPU work"):
        Clock("cpu", "cuda")
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        Clock("wall", "gpu0")


def test_clock_times_on_its_own_kind():
    """Two clocks of different kinds side by side: sleeping costs wall seconds, not CPU seconds."""
    import time

    (_, c), w = Clock("wall").time(lambda: Clock("cpu").time(lambda: time.sleep(0.05)))
    assert w >= 0.05 and c < 0.03
