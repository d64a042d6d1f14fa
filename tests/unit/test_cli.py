"""The command line: outputs scripts rely on, one-line errors with exit status 2 for bad input, and
status 1 with a traceback for anything else.

Most cases call :func:`residual_response.cli.main` in-process (``main`` returns the exit status;
a second of interpreter start-up and imports per case would dominate these tests). A few run a
real process: the installed ``residual-response`` entry point, and one bad input, where the exit
status, stderr and the untouched output folder are those a shell script sees.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from residual_response.cli import main
from residual_response.engine import response
from residual_response.induction import induction_scores, section_map
from residual_response.sequences import make_sequence


def cli(args, capsys):
    """Run ``main(args)`` in-process: ``(exit status, stdout, stderr)``.

    ``main`` returns its status; argparse's own exits (``--help``) raise ``SystemExit``, whose
    code is taken instead.
    """
    try:
        rc = main(args)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def entry_point() -> str:
    """The installed console script beside this interpreter (or on PATH)."""
    beside = Path(sys.executable).with_name("residual-response")
    found = str(beside) if beside.exists() else shutil.which("residual-response")
    if found is None:
        pytest.skip("the residual-response entry point is not installed")
    return found


def run(args, **kw):
    """Run the installed entry point in a fresh process."""
    return subprocess.run([entry_point(), *args], capture_output=True, text=True, timeout=600, **kw)


def test_models_lists_registry(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = {r["name"]: r for r in rows}
    assert {"smollm2-135m", "gemma3-270m", "random-gpt2", "random-llama", "random-gemma2", "random-gemma3",
            "gpt2-xl", "gemma-2-2b", "llama-3.2-3b", "toy-gpt2"} <= set(names)
    assert names["gpt2-xl"]["offline"] is False and names["smollm2-135m"]["offline"] is True
    assert main(["models"]) == 0
    assert "family" in capsys.readouterr().out


def test_response_npz(tmp_path, capsys):
    out = tmp_path / "chi.npz"
    rc = main(["response", "--model", "random-llama", "--sequence", "repeated", "--length", "4", "--seed", "1",
               "--layer", "1", "--eps", "1e-3", "1e-2", "--directions", "2", "--out", str(out), "--no-progress"])
    assert rc == 0
    d = np.load(out)
    assert d["chi"].shape == (2, 4, 9, 9)  # (n_eps, read layers 1..4, N, N)
    assert list(d["read_streams"]) == [1, 2, 3, 4] and int(d["l0"]) == 1 and int(d["format"]) == 2
    assert d["tokens"].shape == (9,)
    np.testing.assert_allclose(d["eps"], [1e-3, 1e-2])


def test_induction_json(tmp_path):
    out = tmp_path / "ind.json"
    assert main(["induction", "--model", "random-gpt2", "--length", "6", "--seeds", "2", "--out", str(out),
                 "--no-progress"]) == 0
    d = json.loads(out.read_text())
    for key in ("model", "T", "seeds", "l0", "read_streams", "score", "ci_low", "ci_high", "duplicate_score",
                "emergence_layer", "rise", "format"):
        assert key in d
    assert d["read_streams"] == [0, 1, 2, 3, 4] and d["seeds"] == [0, 1] and d["T"] == 6 and d["format"] == 2
    assert d["score"][0] is None and all(isinstance(s, float) for s in d["score"][1:])


def test_threads_sets_torch_before_the_load_and_the_provenance_records_it(tmp_path):
    import torch

    out, before = tmp_path / "ind.json", torch.get_num_threads()
    try:
        assert main(["induction", "--model", "random-gpt2", "--length", "4", "--seeds", "1", "--threads", "1",
                     "--out", str(out), "--no-progress"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    prov = json.loads(out.read_text())["provenance"]
    assert prov["threads"] == 1 and prov["parameters"]["threads"] == 1


def test_regime_json(tmp_path):
    out = tmp_path / "reg.json"
    assert main(["regime", "--model", "random-gemma3", "--length", "3", "--eps-min", "1e-7", "--eps-max", "1",
                 "--points", "15", "--out", str(out), "--no-progress"]) == 0
    d = json.loads(out.read_text())
    assert [r["stream"] for r in d["regimes"]] == [1, 2, 3, 4] and d["curve_streams"] == [1, 2, 3, 4]
    assert all(r["eps_low"] is not None and r["eps_low"] < r["eps_high"] for r in d["regimes"])


BAD = [
    (["response", "--model", "no-such-model", "--sequence", "repeated", "--length", "4", "--eps", "1e-3"], "unknown model"),
    (["response", "--model", "random-gpt2", "--sequence", "repeated", "--length", "4", "--eps", "0"], "eps must be finite and > 0"),
    (["response", "--model", "random-gpt2", "--sequence", "repeated", "--length", "4", "--eps", "-1e-3"], "eps must be finite and > 0"),
    (["response", "--model", "random-gpt2", "--sequence", "repeated", "--length", "4", "--eps", "inf"], "eps must be finite and > 0"),
    (["response", "--model", "random-gpt2", "--sequence", "repeated", "--length", "4000", "--eps", "1e-3"], "beyond the context"),
    (["response", "--model", "random-gpt2", "--sequence", "repeated", "--length", "4", "--layer", "7", "--eps", "1e-3"], "out of range"),
    (["induction", "--model", "random-gpt2", "--length", "4", "--seeds", "0"], "seeds"),
    (["induction", "--model", "gpt2-xl", "--length", "4", "--seeds", "1"], "not available"),
    (["induction", "--model", "random-gpt2", "--length", "4", "--seeds", "1", "--threads", "-1"], "threads"),
]


def _one_error_line(err: str, message: str) -> None:
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize("args, message", BAD)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc, out, err = cli(args + ["--out", str(tmp_path / "out.file")], capsys)
    assert rc == 2, err
    _one_error_line(err, message)
    assert out == "" and list(tmp_path.iterdir()) == []


def test_unwritable_out_exit_2(tmp_path, capsys):
    rc, _, err = cli(["response", "--model", "random-gpt2", "--sequence", "repeated", "--length", "4", "--eps", "1e-3",
                      "--out", str(tmp_path / "missing" / "x.npz")], capsys)
    assert rc == 2
    _one_error_line(err, "cannot write --out")
    assert list(tmp_path.iterdir()) == []


def test_help_exits_0(capsys):
    rc, out, _ = cli(["induction", "--help"], capsys)
    assert rc == 0 and "--seeds" in out


def test_bfloat16_warns_in_one_line_and_runs(tmp_path, capsys):
    """bf16 is allowed, with one warning line saying the regime moves (its floor is ~1e-2)."""
    out = tmp_path / "reg.json"
    rc, _, err = cli(["regime", "--model", "random-llama", "--dtype", "bfloat16", "--length", "3", "--eps-min", "1e-3",
                      "--eps-max", "1", "--points", "7", "--out", str(out), "--no-progress"], capsys)
    assert rc == 0, err
    warning_lines = [l for l in err.splitlines() if l.startswith("warning:")]
    assert len(warning_lines) == 1 and "1e-02" in warning_lines[0] and "regime" in warning_lines[0], err
    assert "Traceback" not in err and out.exists()


def test_entry_point_runs_in_a_process(tmp_path):
    """The installed console script starts, runs a command and writes its file, status 0."""
    out = tmp_path / "ind.json"
    proc = run(["induction", "--model", "random-gpt2", "--length", "3", "--seeds", "1", "--out", str(out), "--quiet"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and json.loads(out.read_text())["read_streams"] == [0, 1, 2, 3, 4]


def test_bad_input_in_a_process_exit_2_one_line_nothing_written(tmp_path):
    """What a shell sees: status 2, one ``error:`` line on stderr, nothing in the output folder."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = run(["response", "--model", "random-gpt2", "--sequence", "repeated", "--length", "4", "--layer", "7",
                "--eps", "1e-3", "--out", str(tmp_path / "chi.npz")], env=env)
    assert proc.returncode == 2, proc.stderr
    _one_error_line(proc.stderr, "out of range")
    assert proc.stdout == "" and list(tmp_path.iterdir()) == []


def test_low_precision_warning_from_the_api():
    from residual_response.models import LowPrecisionWarning, load_model

    with pytest.warns(LowPrecisionWarning, match="universal regime moves up"):
        lm = load_model("random-gpt2", dtype="bfloat16")
    assert str(lm.dtype) == "torch.bfloat16"


# --- exit status: the user's input (2, one line) against a fault of the library (1, traceback) ---


def test_a_fault_of_the_library_exits_1_with_its_traceback(tmp_path, capsys, monkeypatch):
    """A bug is not reported as bad input: status 1, the traceback, and nothing written."""
    import residual_response.induction as induction

    def broken(*args, **kwargs):
        raise ValueError("an internal invariant failed")  # a ValueError, but not the user's

    monkeypatch.setattr(induction, "run_induction", broken)
    out = tmp_path / "ind.json"
    rc, _, err = cli(["induction", "--model", "random-gpt2", "--length", "4", "--seeds", "1", "--out", str(out),
                      "--no-progress"], capsys)
    assert rc == 1 and "Traceback" in err and "an internal invariant failed" in err
    assert "not a problem of its input" in err.splitlines()[-1]
    assert list(tmp_path.iterdir()) == []


def _sentence(call) -> str:
    try:
        call()
    except ValueError as exc:
        return str(exc)
    raise AssertionError("no error")


@pytest.mark.parametrize("cli_args, api_calls, sentence", [
    (["--eps", "0"], [lambda lm: induction_scores(lm, 4, 1, eps=0.0), lambda lm: response(lm, [1, 2, 3], [0.0]),
                      lambda lm: section_map(lm, 4, 1, eps=0.0)], "eps must be finite and > 0, got 0.0"),
    (["--layer", "7"], [lambda lm: induction_scores(lm, 4, 1, l0=7), lambda lm: response(lm, [1, 2, 3], l0=7),
                        lambda lm: section_map(lm, 4, 1, l0s=[7])],
     "perturbed stream l0 7 out of range for random-gpt2; allowed 0..3"),
    (["--length", "1"], [lambda lm: induction_scores(lm, 1, 1), lambda lm: make_sequence(lm, "repeated", 1),
                         lambda lm: section_map(lm, 1, 1)], "length T=1 too short; need T >= 2"),
    (["--seeds", "0"], [lambda lm: induction_scores(lm, 4, 0), lambda lm: section_map(lm, 4, 0)],
     "seeds (a count) must be an int in 1..4294967296, got 0"),
])
def test_one_message_per_bad_value_whatever_the_entry_point(tmp_path, capsys, cli_args, api_calls, sentence):
    """The same bad value gets the same sentence from the command line and from each library call."""
    from residual_response.models import load_model

    lm = load_model("random-gpt2")
    for call in api_calls:
        assert _sentence(lambda: call(lm)) == sentence
    args = ["induction", "--model", "random-gpt2", "--length", "4", "--seeds", "1", *cli_args,
            "--out", str(tmp_path / "i.json"), "--no-progress"]
    rc, _, err = cli(args, capsys)
    assert rc == 2 and err.strip().endswith(sentence), err


def test_the_compute_commands_share_one_run_job():
    """response, induction, regime and section-map are each a Job run by the one run_job()."""
    from residual_response.cli import commands, jobs

    for name, job in [("response", commands.RESPONSE), ("induction", commands.INDUCTION),
                      ("regime", commands.REGIME), ("section-map", commands.SECTION_MAP)]:
        assert isinstance(job, jobs.Job), name
    source = __import__("inspect").getsource(commands)
    assert source.count("run_job(run, ") == 4 and "_reserve" not in source and "args._" not in source
