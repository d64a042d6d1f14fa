#!/usr/bin/env python
"""Regenerate the stored expected CLI outputs in ``tests/data/expected/``.

    PYTHONPATH=lib python scripts/expected_outputs.py [--out tests/data/expected] [--models NAME ...]

Why: ``tests/integration/test_expected_outputs.py`` reruns these commands and compares the results with what
is stored, so a change anywhere on the computation path that moves a number shows up as a failing
test, not only as a different page. Run this script only when a number is *meant* to change (a
new definition, a fixed bug), and say why in the commit.

Each command runs through :func:`residual_response.cli.main` into a temporary folder, at the
stand-ins' fixed setting ``T = 8``. One JSON file per command and model holds ``argv`` (the
command without ``--out``; the test reruns exactly this) and ``result``:

- ``induction``, ``section-map``, ``regime``: the output file without its ``provenance`` block
  (machine, date, timings), which no other machine reproduces.
- ``response``: a reduced ``.npz`` (the full ``chi`` is ~100 kB per model): ``chi`` of the
  :data:`ROWS` source rows (every target) at the read layers :func:`read_layers_kept`, for every
  eps, with the tokens, eps and read layers. The engine's ``meta`` (batching details) is left out.

The regime sweep runs from eps 1e-3 to 1 (4 points) and not from 1e-8: the rounding noise of a
float32 curve point is ~2e-7 / eps relative (measured at the lowest SIMD level), of the order of
the 1 % flatness tolerance below ~1e-4, so whether such a point joins the regime changes with the
CPU's vector width, and the regime's bounds could not be compared exactly.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("gemma3-270m", "smollm2-135m", "random-llama")
T = 8
#: source rows of chi kept for ``response``: BOS, the first token, a middle one, the last of the first copy
ROWS = (0, 1, T // 2, T)


def commands(model: str) -> dict[str, list[str]]:
    """The CLI arguments (without ``--out``) of each stored output of ``model``."""
    t = str(T)
    return {
        "response": ["response", "--model", model, "--sequence", "repeated", "--length", t, "--seed", "0",
                     "--eps", "0.01", "0.001", "--directions", "2", "--layer", "0", "--quiet"],
        "induction": ["induction", "--model", model, "--length", t, "--seeds", "2", "--quiet"],
        "regime": ["regime", "--model", model, "--sequence", "repeated", "--length", t, "--eps-min", "1e-3",
                   "--eps-max", "1", "--points", "4", "--directions", "1", "--quiet"],
        "section-map": ["section-map", "--model", model, "--length", t, "--seeds", "1", "--perturb-layers", "0", "1",
                        "--quiet"],
    }


def read_layers_kept(read_layers: list[int]) -> list[int]:
    """Read layers whose chi is stored: the perturbed one, the next, the middle and the last."""
    first, last = read_layers[0], read_layers[-1]
    return sorted({first, first + 1, (first + last) // 2, last})


def reduce_response(path: Path) -> dict:
    """The stored part of a ``response`` .npz (see the module docstring)."""
    import numpy as np

    with np.load(path) as d:
        read_streams = [int(v) for v in d["read_streams"]]
        keep = read_layers_kept(read_streams)
        chi = d["chi"][:, [read_streams.index(l) for l in keep]][:, :, list(ROWS)]  # [n_eps, n_kept, n_rows, N]
        return {"kind": str(d["kind"]), "model": str(d["model"]), "dtype": str(d["dtype"]), "method": str(d["method"]),
                "direction": str(d["direction"]), "l0": int(d["l0"]), "seed": int(d["seed"]),
                "n_directions": int(d["n_directions"]), "tokens": [int(v) for v in d["tokens"]],
                "eps": [float(v) for v in d["eps"]], "read_streams": read_streams, "chi_shape": list(d["chi"].shape),
                "kept_read_streams": keep, "kept_sources": list(ROWS), "chi": chi.tolist()}


def run(argv: list[str], folder: Path) -> dict:
    """Run one command in-process and return its stored form."""
    from residual_response.cli import main

    out = folder / ("out.npz" if argv[0] == "response" else "out.json")
    rc = main([*argv, "--out", str(out)])
    if rc != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {rc}")
    if argv[0] == "response":
        return reduce_response(out)
    result = json.loads(out.read_text())
    result.pop("provenance", None)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "tests" / "data" / "expected"), help="folder to write")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--commands", nargs="+", default=None, choices=list(commands(MODELS[0])),
                        help="only these commands (default all)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for model in args.models:
        for name, cmd in commands(model).items():
            if args.commands is not None and name not in args.commands:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                result = run(cmd, Path(tmp))
            path = out / f"{name}-{model}.json"
            path.write_text(json.dumps({"argv": cmd, "result": result}, indent=1) + "\n")
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
