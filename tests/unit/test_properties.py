"""Generated bad inputs: every one must end cleanly.

Command line: exit status 2, exactly one line starting ``error:`` on stderr (``warning:`` lines
aside), no traceback, nothing written. Library: ``TypeError`` or ``ValueError`` with a one-line
message that names the argument, raised before any other kind of error.

The examples are drawn by hypothesis with ``derandomize=True`` (the same examples on every run and
machine) and small counts, so the file runs in well under a minute on two cores. The CLI runs
in-process (``cli.main(argv)``): a subprocess per example would cost a second of imports each.
"""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from residual_response import cli
from residual_response.checks import MAX_SEED

settings.register_profile("faults", max_examples=30, derandomize=True, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("faults")


# --------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------

BASE = {
    "response": ["--model", "random-gpt2", "--sequence", "repeated", "--length", "3", "--eps", "1e-2"],
    "induction": ["--model", "random-gpt2", "--length", "3", "--seeds", "1"],
    "regime": ["--model", "random-gpt2", "--length", "3", "--points", "3"],
    "section-map": ["--model", "random-gpt2", "--length", "3", "--seeds", "1"],
}

junk_text = st.sampled_from(["", " ", "x", "1.5", "1e", "--", "nan", "0x10", "1_000_000_000_000_000_000"])
bad_count = st.one_of(st.integers(max_value=0).map(str), junk_text,
                      st.floats(allow_nan=True, allow_infinity=True).map(repr).filter(lambda t: not t.isdigit()))
huge_count = st.integers(min_value=10**9, max_value=10**24).map(str)
bad_positive = st.one_of(st.floats(max_value=0.0, allow_nan=False).map(repr),
                         st.sampled_from(["nan", "inf", "-inf", "x", ""]))
bad_seed = st.one_of(st.integers(max_value=-1), st.integers(min_value=MAX_SEED + 1, max_value=10**30)).map(str)

# (command, option, strategy of bad values) -- option None: a free-form fault
CASES = [
    ("response", "--length", bad_count),
    ("response", "--eps", bad_positive),
    ("response", "--eps", st.floats(min_value=1e-300, max_value=9.9e-7).map(repr)),  # below the fp32 floor
    ("response", "--seed", bad_seed),
    ("response", "--seed", junk_text),
    ("response", "--directions", bad_count),
    ("response", "--directions", huge_count),
    ("response", "--layer", st.one_of(st.integers(min_value=4, max_value=10**6).map(str), st.integers(max_value=-1).map(str))),
    ("response", "--length", st.integers(min_value=256, max_value=10**12).map(str)),  # beyond the context
    ("response", "--sequence", junk_text),
    ("response", "--dtype", st.sampled_from(["float8", "int8", "", "fp32"])),
    ("response", "--model", st.sampled_from(["no-such-model", "", "./missing-folder", "random-gpt3"])),
    ("response", "--out", st.sampled_from(["", " ", "x.json", "/proc/x.npz", "/etc/hostname/x.npz", "/"])),
    ("induction", "--seeds", bad_count),
    ("induction", "--seeds", huge_count),
    ("induction", "--eps", bad_positive),
    ("induction", "--out", st.sampled_from(["x.npz", "", "/proc/y.json"])),
    ("regime", "--points", st.one_of(bad_count, st.just("1"))),
    ("regime", "--points", huge_count),
    ("regime", "--tol", st.one_of(bad_positive, st.floats(min_value=1.0, allow_nan=False).map(repr))),
    ("regime", "--eps-max", st.floats(min_value=1.0001, max_value=1e300).map(repr)),
    ("regime", "--eps-min", st.sampled_from(["2", "1", "10"])),  # not below --eps-max 1
    ("regime", "--seed", bad_seed),
    ("regime", "--directions", huge_count),
    ("section-map", "--perturb-layers", st.lists(st.integers(min_value=4, max_value=99), max_size=3)),
    ("section-map", "--seeds", huge_count),
    ("section-map", "--length", bad_count),
    (None, "--no-such-option", st.sampled_from(["1", "x"])),
]


def _argv(command: str, option: str | None, value, out: str) -> list[str]:
    base = list(BASE[command or "response"])
    if option == "--out":
        return [command, *base, "--no-progress", "--out", value]
    if option == "--no-such-option":
        return ["response", *base, "--no-progress", "--out", out, option, value]
    values = [str(v) for v in (value if isinstance(value, list) else [value])]  # argv holds strings
    if option in base:  # replace the base value
        i = base.index(option)
        base[i + 1:i + 2] = values
    else:
        base += [option, *values]
    return [command, *base, "--no-progress", "--out", out]


def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = cli.main(argv)
        except SystemExit as exc:  # argparse's --help or version paths only
            rc = exc.code
    return rc, err.getvalue()


def _assert_clean_refusal(argv: list[str], folder: Path) -> None:
    rc, err = _run(argv)
    lines = [l for l in err.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("error: ")]
    others = [l for l in lines if not l.startswith(("error: ", "warning: "))]
    assert rc == 2 and len(errors) == 1 and not others, (argv, rc, err)
    assert "Traceback" not in err
    assert list(folder.iterdir()) == [], (argv, list(folder.iterdir()))


@pytest.mark.parametrize("command, option, values", CASES, ids=[f"{c}:{o}" for c, o, _ in CASES])
def test_bad_cli_input_is_one_error_line_exit_2_nothing_written(command, option, values):
    @settings(max_examples=6)
    @given(value=values)
    def check(value):
        with tempfile.TemporaryDirectory() as d:
            folder = Path(d)
            out = str(folder / ("out.npz" if (command or "response") == "response" else "out.json"))
            _assert_clean_refusal(_argv(command, option, value, out), folder)

    check()


@given(option=st.sampled_from(["--eps", "--length", "--seed", "--directions"]),
       value=st.sampled_from(["-1", "-1e-3", "-inf", "-nan", "-2"]))
def test_negative_values_reach_their_option_and_are_refused(option, value):
    """A negative number after an option is that option's (bad) value, not an unknown option."""
    with tempfile.TemporaryDirectory() as d:
        argv = ["response", *BASE["response"], "--no-progress", "--out", str(Path(d) / "chi.npz"), option, value]
        rc, err = _run(argv)
        assert rc == 2 and err.count("error:") == 1 and option.lstrip("-") in err, (argv, err)


def test_bfloat16_eps_below_its_floor_is_refused_and_the_flag_overrides():
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        argv = ["response", "--model", "random-gpt2", "--sequence", "repeated", "--length", "3", "--dtype", "bfloat16",
                "--eps", "1e-8", "--no-progress", "--out", str(folder / "chi.npz")]
        rc, err = _run(argv)
        assert rc == 2 and "rounding floor of bfloat16" in err and "1e-02" in err and "--allow-below-floor" in err
        assert list(folder.iterdir()) == []
        rc, err = _run(argv[:-2] + ["--allow-below-floor", "--out", str(folder / "chi.npz")])
        assert rc == 0, err


def test_the_size_estimate_is_in_the_message(monkeypatch):
    with tempfile.TemporaryDirectory() as d:
        rc, err = _run(["regime", *BASE["regime"][:-2], "--points", "1000000000", "--no-progress",
                        "--out", str(Path(d) / "r.json")])
        assert rc == 2 and "needs about" in err and "iB of memory" in err and "available" in err
        monkeypatch.setattr(cli.estimate, "MAX_SECONDS", 1e-6)  # any real run is over this bound
        rc, err = _run(["induction", *BASE["induction"], "--no-progress", "--out", str(Path(d) / "i.json")])
        assert rc == 2 and "would take about" in err and "seconds" in err and err.count("\n") == 1
        assert list(Path(d).iterdir()) == []


def test_empty_perturb_layers_is_refused():
    with tempfile.TemporaryDirectory() as d:
        rc, err = _run(["section-map", *BASE["section-map"], "--perturb-layers", "--no-progress",
                        "--out", str(Path(d) / "m.json")])
        assert rc == 2 and "--perturb-layers" in err and err.count("\n") == 1


# --------------------------------------------------------------------------------------------
# the library
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lm():
    from residual_response.models import build_random_model

    return build_random_model("llama", seed=0)


@pytest.fixture(scope="module")
def tokens(lm):
    from residual_response.sequences import make_sequence

    return make_sequence(lm, "repeated", 3, 0)


not_a_number = st.sampled_from([None, "1e-2", "", [], {}, object(), b"1", True])
nonfinite = st.sampled_from([math.nan, math.inf, -math.inf])
non_positive = st.one_of(st.floats(max_value=0.0, allow_nan=False), st.integers(max_value=0))
not_an_int = st.one_of(st.floats(allow_nan=True).filter(lambda x: not float(x).is_integer()), not_a_number,
                       st.just(2.0), st.just(np.float64(3.0)))
bad_int_list = st.one_of(st.just([]), st.lists(st.floats(allow_nan=True).filter(lambda x: not float(x).is_integer()),
                                               min_size=1, max_size=3),
                         st.just([[1, 2]]), st.just("01"), st.just([None]), st.just(3.5), st.just([True]))

# (name in the message, call(lm, tokens, value), strategy of bad values)
API = {
    "eps": (lambda lm, x, v: _response(lm, x, eps=v),
            st.one_of(non_positive, nonfinite, st.just([[1e-2, 1e-3]]), st.just([]), st.just([1e-2, -1.0]),
                      st.just("1e-2"), st.just(None), st.just(True), st.just([1e-2, math.nan]))),
    "tokens": (lambda lm, x, v: _response(lm, v),
               st.one_of(st.just(None), st.just("the cat"), st.just(3), st.just([1]), st.just([[1, 2], [3, 4]]),
                         st.just([0.5, 1.5]), st.just([1, 10**6]), st.just([-1, 2]), st.just(torch.zeros(3)))),
    "LoadedModel": (lambda lm, x, v: _response(v, x),
                    st.sampled_from(["random-llama", None, 3, object()])),
    "n_directions": (lambda lm, x, v: _response(lm, x, n_directions=v), st.one_of(non_positive, not_an_int)),
    "batch_rows": (lambda lm, x, v: _response(lm, x, batch_rows=v),
                   st.one_of(non_positive, not_an_int.filter(lambda v: v is not None))),
    "memory_budget_mb": (lambda lm, x, v: _response(lm, x, memory_budget_mb=v),
                         st.one_of(non_positive, nonfinite, not_a_number)),
    "source": (lambda lm, x, v: _response(lm, x, sources=v),
               st.one_of(bad_int_list, st.lists(st.integers(min_value=7, max_value=10**6), min_size=1, max_size=2),
                         st.just([-1]))),
    "read": (lambda lm, x, v: _response(lm, x, read_streams=v),
             st.one_of(bad_int_list, st.just([5]), st.just([-1]))),
    "l0": (lambda lm, x, v: _response(lm, x, l0=v),
              st.one_of(st.integers(min_value=4, max_value=10**9), st.integers(max_value=-1), not_an_int)),
    "seed": (lambda lm, x, v: _response(lm, x, seed=v),
             st.one_of(st.integers(max_value=-1), st.integers(min_value=MAX_SEED + 1), not_an_int)),
    "method": (lambda lm, x, v: _response(lm, x, method=v), st.sampled_from(["jvpp", "", None, 1])),
    "direction": (lambda lm, x, v: _response(lm, x, direction=v), st.sampled_from(["gauss", "", None])),
    "n_boot": (lambda lm, x, v: _induction(lm, n_boot=v), st.one_of(non_positive, not_an_int)),
    "confidence": (lambda lm, x, v: _induction(lm, confidence=v),
                   st.one_of(st.floats(min_value=1.0), non_positive, nonfinite, not_a_number)),
    "seeds": (lambda lm, x, v: _induction(lm, seeds=v),
              st.one_of(st.integers(max_value=0), st.just([]), st.just([-1]), st.just("3"), st.just(None),
                        st.just(2.5), st.just([MAX_SEED + 1]))),
    "length T": (lambda lm, x, v: _induction(lm, T=v),
                 st.one_of(st.integers(max_value=1), st.integers(min_value=256, max_value=10**9), not_an_int)),
    "control": (lambda lm, x, v: _induction(lm, control=v), st.sampled_from(["repeated", "", None])),
    "l0 ": (lambda lm, x, v: _section(lm, l0s=v),
                st.one_of(st.just([]), st.just([4]), st.just([-1]), st.just([1.5]), st.just("0"))),
    "tol": (lambda lm, x, v: _regime(lm, x, tol=v), st.one_of(non_positive, nonfinite, not_a_number,
                                                             st.floats(min_value=1.0, allow_infinity=False))),
    "result": (lambda lm, x, v: __import__("residual_response.regime").regime.universal_regime(v),
               st.sampled_from([None, {}, np.zeros(3), "chi.npz"])),
    "sequence kind": (lambda lm, x, v: _sequence(lm, kind=v), st.sampled_from(["repeat", "", None])),
    "n_boot ": (lambda lm, x, v: _attention(lm, n_boot=v), st.one_of(non_positive, not_an_int)),
    "confidence ": (lambda lm, x, v: _loss(lm, confidence=v), st.one_of(st.floats(min_value=1.0), non_positive)),
    "LoadedModel ": (lambda lm, x, v: _heads(v), st.sampled_from(["random-llama", None])),
    "head": (lambda lm, x, v: _ablate(lm, v),
              st.sampled_from([(0, 1), [(0, 99)], [(9, 0)], [(0.5, 1)], [(0, 1, 2)], "0,1", None])),
    "model": (lambda lm, x, v: __import__("residual_response.models").models.load_model(v),
              st.sampled_from(["", None, 3, "no-such-model", ["random-llama"]])),
}


def _response(lm, tokens, **kw):
    from residual_response.engine import response

    return response(lm, tokens, **{"eps": [1e-2], **kw})


def _induction(lm, **kw):
    from residual_response.induction import induction_scores

    return induction_scores(lm, **{"T": 3, "seeds": 1, "n_boot": 10, **kw})


def _section(lm, **kw):
    from residual_response.induction import section_map

    return section_map(lm, 3, 1, n_boot=10, **kw)


_regime_result = {}


def _regime(lm, tokens, **kw):
    from residual_response.regime import universal_regime

    if "res" not in _regime_result:
        _regime_result["res"] = _response(lm, tokens, eps=[1e-3, 1e-2], read_streams=[2])
    return universal_regime(_regime_result["res"], **kw)


def _attention(lm, **kw):
    from residual_response.attention import induction_attention_scores

    return induction_attention_scores(lm, 3, [0], **kw)


def _loss(lm, **kw):
    from residual_response.behaviour import repeat_loss

    return repeat_loss(lm, 3, [0, 1], **kw)


def _heads(lm):
    from residual_response.heads import head_attribution

    return head_attribution(lm, 3, 1)


def _ablate(lm, heads):
    from residual_response.ablation import ablate_heads

    with ablate_heads(lm, heads, mode="zero"):
        pass


def _sequence(lm, **kw):
    from residual_response.sequences import make_sequence

    return make_sequence(lm, kw.pop("kind"), 3, 0)


@pytest.mark.parametrize("name", list(API))
def test_bad_api_input_raises_one_clear_sentence(lm, tokens, name):
    call, values = API[name]

    @settings(max_examples=8)
    @given(value=values)
    def check(value):
        with pytest.raises((TypeError, ValueError)) as exc:
            call(lm, tokens, value)
        message = str(exc.value)
        assert message and "\n" not in message, message
        assert name.split()[0].lower() in message.lower(), (name, message)  # keys may end in " " to repeat a name

    check()
