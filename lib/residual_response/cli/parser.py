"""The command line's arguments: one parser, its types, and the one-line error of a bad value."""

from __future__ import annotations

import argparse
import math
import re

from ..canonical import CANONICAL
from ..checks import MAX_SEED

__all__ = ["CLIError", "DESCRIPTION", "build_parser"]

#: The first line of ``residual-response --help``.
DESCRIPTION = "Command line: ``residual-response {models,response,induction,regime,section-map,show}``."


class CLIError(Exception):
    """An input problem reported as ``error: ...`` with exit status 2."""


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # let "-1e-3" reach --eps as a (bad) value instead of being taken for an option
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|nan)$")

    def error(self, message):  # argparse's own errors: one line, status 2
        raise CLIError(message)


def _int_at_least(minimum: int, maximum: int | None = None):
    """An argparse type: an integer >= ``minimum`` (and <= ``maximum``); argparse names the option."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"expected an integer in {minimum}..{maximum}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)


_nonneg_int = _int_at_least(0)


_seed_int = _int_at_least(0, MAX_SEED)


def _number_in(what: str, *, below: float | None = None):
    """An argparse type: a finite number > 0 (and < ``below``), the message naming ``what``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not math.isfinite(value) or value <= 0 or (below is not None and value >= below):
            allowed = "finite and > 0" if below is None else f"a number > 0 and < {below:g}"
            raise argparse.ArgumentTypeError(f"{what} must be {allowed}, got {text}")
        return value

    return parse


_tol_value = _number_in("the relative tolerance", below=1.0)


def _eps_value(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"eps must be a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"eps must be finite and > 0, got {text}")
    return value


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="registry name (see `models`), local folder or Hugging Face id")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"], help="default float32")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    p.add_argument("--device-map", choices=["auto"], default=None,
                   help="auto: spread a model too large for one GPU over all visible GPUs (accelerate)")
    p.add_argument("--layer", type=_nonneg_int, default=0, help="perturbed stream l0 (default 0)")
    p.add_argument("--out", required=True, help="output file")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar and no status lines (errors and warnings stay)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _add_floor_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-below-floor", action="store_true",
                   help="accept an eps below the dtype's rounding floor (chi there is mostly rounding noise)")
    _add_above_1_arg(p)


def _add_above_1_arg(p: argparse.ArgumentParser, help: str = "accept an eps above 1, a perturbation larger than "
                                                             "the stream itself") -> None:
    p.add_argument("--allow-eps-above-1", action="store_true", help=help)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="residual-response", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("models", help="list the model registry")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("response", help="chi over (eps, read layer, source, target) for one sequence -> .npz")
    _add_model_args(p)
    p.add_argument("--sequence", required=True, choices=["repeated", "random", "shuffled"])
    p.add_argument("--length", type=_positive_int, required=True, help="T: one copy's length (N = 2T [+ BOS])")
    p.add_argument("--seed", type=_seed_int, default=0, help=f"0..{MAX_SEED}")
    p.add_argument("--eps", type=_eps_value, nargs="+", required=True, help="relative strengths, each > 0")
    p.add_argument("--directions", type=_positive_int, default=1, help="random directions averaged per source")
    p.add_argument("--direction", choices=["gaussian", "embedding"], default="gaussian")
    p.add_argument("--method", choices=["finite", "jvp"], default="finite")
    _add_floor_arg(p)

    p = sub.add_parser("induction", help="induction score per layer with bootstrap CI -> .json")
    _add_model_args(p)
    p.add_argument("--length", type=_positive_int, default=CANONICAL["T"],
                   help=f"T: one copy's length (default {CANONICAL['T']}, the book's canonical setting)")
    p.add_argument("--seeds", type=_positive_int, default=CANONICAL["seeds"],
                   help=f"number of seeds 0..K-1 (default {CANONICAL['seeds']})")
    p.add_argument("--eps", type=_eps_value, default=CANONICAL["eps"])
    p.add_argument("--directions", type=_positive_int, default=1)
    p.add_argument("--control", choices=["neighbours", "random", "shuffled"], default="neighbours")
    _add_floor_arg(p)

    p = sub.add_parser("regime", help="universal regime per read layer from an eps sweep -> .json")
    _add_model_args(p)
    p.add_argument("--sequence", choices=["repeated", "random"], default="repeated")
    p.add_argument("--length", type=_positive_int, default=10)
    p.add_argument("--seed", type=_seed_int, default=0, help=f"0..{MAX_SEED}")
    p.add_argument("--eps-min", type=_eps_value, default=1e-8,
                   help="smallest strength (may lie below the rounding floor: the sweep shows where it is)")
    p.add_argument("--eps-max", type=_eps_value, default=1.0, help="largest strength, <= 1 unless --allow-eps-above-1")
    p.add_argument("--points", type=_positive_int, default=33)
    p.add_argument("--tol", type=_tol_value, default=0.01, help="relative flatness tolerance in (0, 1) (default 0.01)")
    p.add_argument("--directions", type=_positive_int, default=1)
    _add_above_1_arg(p, help="sweep beyond eps = 1, a perturbation larger than the stream itself")

    p = sub.add_parser("section-map", help="score(l0, l) over perturbed and read layers -> .json")
    _add_model_args(p)
    p.add_argument("--length", type=_positive_int, required=True)
    p.add_argument("--seeds", type=_positive_int, default=2)
    p.add_argument("--eps", type=_eps_value, default=1e-2)
    p.add_argument("--perturb-layers", type=_nonneg_int, nargs="*", default=None, help="default: every layer")
    _add_floor_arg(p)

    p = sub.add_parser("show", help="draw result files as a self-contained, offline HTML page (and a PNG)")
    p.add_argument("files", nargs="+", help="result files written by response, induction, regime or section-map")
    p.add_argument("--out", required=True, help="the HTML page to write")
    p.add_argument("--png", action="store_true", help="also write a static PNG beside it (vl-convert)")
    return parser
