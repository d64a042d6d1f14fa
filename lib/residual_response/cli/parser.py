"""The command line's arguments: one parser, its types, and the one-line error of a bad value."""

from __future__ import annotations

import argparse
import re

from ..canonical import CANONICAL
from ..checks import MAX_SEED, InputError, check_eps, check_int, check_number, check_seed
from ..sequences import check_length

__all__ = ["DESCRIPTION", "build_parser"]

#: The first line of ``residual-response --help``.
DESCRIPTION = "Command line: ``residual-response {models,response,induction,regime,section-map,show}``."


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # let "-1e-3" reach --eps as a (bad) value instead of being taken for an option
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|nan)$")

    def error(self, message):  # argparse's own errors: one line, status 2
        raise InputError(message)


def _checked(parse, check=None):
    """An argparse type: ``parse`` the text (``int`` or ``float``), then the library's own ``check``
    of the value, so that a bad value gets the one message the library gives it (argparse adds
    the option's name in front)."""
    noun = "an integer" if parse is int else "a number"

    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if check is None:
            return value
        try:
            check(value)
        except (InputError, TypeError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    return convert


_length = _checked(int, check_length)
_seed_count = _checked(int, lambda v: check_int(v, "seeds (a count)", minimum=1, maximum=MAX_SEED + 1))
_seed = _checked(int, check_seed)
_eps = _checked(float, check_eps)
_directions = _checked(int, lambda v: check_int(v, "n_directions", minimum=1))
_tol = _checked(float, lambda v: check_number(v, "tol", positive=True, below=1.0))
_threads = _checked(int, lambda v: check_int(v, "threads", minimum=0))
_stream = _checked(int)  # its range depends on the model: checked once it is loaded (checks.validate_l0)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="registry name (see `models`), local folder or Hugging Face id")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"], help="default float32")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    p.add_argument("--device-map", choices=["auto"], default=None,
                   help="auto: spread a model too large for one GPU over all visible GPUs (accelerate)")
    p.add_argument("--l0", "--layer", dest="l0", type=_stream, default=0,
                   help="perturbed stream l0 (default 0; --layer is its older name)")
    p.add_argument("--threads", type=_threads, default=0,
                   help="CPU threads (default 0: torch's default, one per core unless OMP_NUM_THREADS says otherwise); "
                        "with more than one, an induction job's sequences run side by side in one-thread processes")
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
    p.add_argument("--length", dest="T", type=_length, required=True, help="T: one copy's length (N = 2T [+ BOS])")
    p.add_argument("--seed", type=_seed, default=0, help=f"0..{MAX_SEED}")
    p.add_argument("--eps", type=_eps, nargs="+", required=True, help="relative strengths, each > 0")
    p.add_argument("--directions", type=_directions, default=1, help="random directions averaged per source")
    p.add_argument("--direction", choices=["gaussian", "embedding"], default="gaussian")
    p.add_argument("--method", choices=["finite", "jvp"], default="finite")
    _add_floor_arg(p)

    p = sub.add_parser("induction", help="induction score per layer with bootstrap CI -> .json")
    _add_model_args(p)
    p.add_argument("--length", dest="T", type=_length, default=CANONICAL["T"],
                   help=f"T: one copy's length (default {CANONICAL['T']}, the book's canonical setting)")
    p.add_argument("--seeds", type=_seed_count, default=CANONICAL["seeds"],
                   help=f"number of seeds 0..K-1 (default {CANONICAL['seeds']})")
    p.add_argument("--eps", type=_eps, default=CANONICAL["eps"])
    p.add_argument("--directions", type=_directions, default=1)
    p.add_argument("--control", choices=["twin", "neighbours", "random", "shuffled"], default="twin")
    _add_floor_arg(p)

    p = sub.add_parser("regime", help="universal regime per read layer from an eps sweep -> .json")
    _add_model_args(p)
    p.add_argument("--sequence", choices=["repeated", "random"], default="repeated")
    p.add_argument("--length", dest="T", type=_length, default=10)
    p.add_argument("--seed", type=_seed, default=0, help=f"0..{MAX_SEED}")
    p.add_argument("--eps-min", type=_eps, default=1e-8,
                   help="smallest strength (may lie below the rounding floor: the sweep shows where it is)")
    p.add_argument("--eps-max", type=_eps, default=1.0, help="largest strength, <= 1 unless --allow-eps-above-1")
    p.add_argument("--points", type=_checked(int), default=33, help="strengths of the sweep, at least 2 (default 33)")
    p.add_argument("--tol", type=_tol, default=0.01, help="relative flatness tolerance in (0, 1) (default 0.01)")
    p.add_argument("--directions", type=_directions, default=1)
    _add_above_1_arg(p, help="sweep beyond eps = 1, a perturbation larger than the stream itself")

    p = sub.add_parser("section-map", help="score(l0, l) over perturbed and read layers -> .json")
    _add_model_args(p)
    p.add_argument("--length", dest="T", type=_length, required=True)
    p.add_argument("--seeds", type=_seed_count, default=2)
    p.add_argument("--eps", type=_eps, default=1e-2)
    p.add_argument("--perturb-layers", "--l0s", dest="l0s", type=_stream, nargs="*", default=None,
                   help="the perturbed streams l0 (default: every stream 0..L-1)")
    _add_floor_arg(p)

    p = sub.add_parser("show", help="draw result files as a self-contained, offline HTML page (and a PNG)")
    p.add_argument("files", nargs="+", help="result files written by response, induction, regime or section-map")
    p.add_argument("--out", required=True, help="the HTML page to write")
    p.add_argument("--png", action="store_true", help="also write a static PNG beside it (vl-convert)")
    return parser
