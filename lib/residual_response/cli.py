"""Command line: ``residual-response {models,response,induction,regime,section-map,show}``.

Scripts rely on the outputs' exact fields (see each subcommand's help). Bad input exits with
status 2 and one ``error: ...`` line on stderr, and writes nothing. Every result file names its
``kind`` and carries a ``provenance`` block (:mod:`.provenance`); ``show`` draws any of them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path

from .canonical import CANONICAL

__all__ = ["main", "build_parser"]


class CLIError(Exception):
    """An input problem reported as ``error: ...`` with exit status 2."""


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # let "-1e-3" reach --eps as a (bad) value instead of being taken for an option
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|nan)$")

    def error(self, message):  # argparse's own errors: one line, status 2
        raise CLIError(message)


def _int_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_nonneg_int = _int_at_least(0)


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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="residual-response", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("models", help="list the model registry")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("response", help="chi over (eps, read layer, source, target) for one sequence -> .npz")
    _add_model_args(p)
    p.add_argument("--sequence", required=True, choices=["repeated", "random", "shuffled"])
    p.add_argument("--length", type=_positive_int, required=True, help="T: one copy's length (N = 2T [+ BOS])")
    p.add_argument("--seed", type=_nonneg_int, default=0)
    p.add_argument("--eps", type=_eps_value, nargs="+", required=True, help="relative strengths, each > 0")
    p.add_argument("--directions", type=_positive_int, default=1, help="random directions averaged per source")
    p.add_argument("--direction", choices=["gaussian", "embedding"], default="gaussian")
    p.add_argument("--method", choices=["finite", "jvp"], default="finite")

    p = sub.add_parser("induction", help="induction score per layer with bootstrap CI -> .json")
    _add_model_args(p)
    p.add_argument("--length", type=_positive_int, default=CANONICAL["T"],
                   help=f"T: one copy's length (default {CANONICAL['T']}, the book's canonical setting)")
    p.add_argument("--seeds", type=_positive_int, default=CANONICAL["seeds"],
                   help=f"number of seeds 0..K-1 (default {CANONICAL['seeds']})")
    p.add_argument("--eps", type=_eps_value, default=CANONICAL["eps"])
    p.add_argument("--directions", type=_positive_int, default=1)
    p.add_argument("--control", choices=["neighbours", "random", "shuffled"], default="neighbours")

    p = sub.add_parser("regime", help="universal regime per read layer from an eps sweep -> .json")
    _add_model_args(p)
    p.add_argument("--sequence", choices=["repeated", "random"], default="repeated")
    p.add_argument("--length", type=_positive_int, default=10)
    p.add_argument("--seed", type=_nonneg_int, default=0)
    p.add_argument("--eps-min", type=_eps_value, default=1e-8)
    p.add_argument("--eps-max", type=_eps_value, default=1.0)
    p.add_argument("--points", type=_positive_int, default=33)
    p.add_argument("--tol", type=_eps_value, default=0.01, help="relative flatness tolerance (default 0.01)")
    p.add_argument("--directions", type=_positive_int, default=1)

    p = sub.add_parser("section-map", help="score(l0, l) over perturbed and read layers -> .json")
    _add_model_args(p)
    p.add_argument("--length", type=_positive_int, required=True)
    p.add_argument("--seeds", type=_positive_int, default=2)
    p.add_argument("--eps", type=_eps_value, default=1e-2)
    p.add_argument("--perturb-layers", type=_nonneg_int, nargs="*", default=None, help="default: every layer")

    p = sub.add_parser("show", help="draw result files as a self-contained, offline HTML page (and a PNG)")
    p.add_argument("files", nargs="+", help="result files written by response, induction, regime or section-map")
    p.add_argument("--out", required=True, help="the HTML page to write")
    p.add_argument("--png", action="store_true", help="also write a static PNG beside it (vl-convert)")
    return parser


def _check_out(path: str) -> Path:
    """The output's folder must exist and be writable; nothing is written until the end."""
    out = Path(path)
    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise CLIError(f"--out {path} is a directory; give a file path")
    if not folder.is_dir():
        raise CLIError(f"cannot write --out {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise CLIError(f"cannot write --out {path}: folder {folder} is not writable")
    return out


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON to a temp file beside ``path``, then rename (never half-written)."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, allow_nan=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def _status(args, message: str) -> None:
    """One status line on stderr, unless ``--quiet``."""
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr)


def _load(args):
    from .models import ModelUnavailableError, load_model
    from .progress import quiet_model_loading

    if not (args.quiet or args.no_progress) and sys.stderr.isatty():  # progress, like the bar: terminals only
        print(f"loading {args.model} ({args.dtype}, {args.device_map or args.device})", file=sys.stderr)
    try:
        with quiet_model_loading():  # one line, not a bar per tensor
            return load_model(args.model, device=args.device, dtype=args.dtype, device_map=args.device_map)
    except ModelUnavailableError as exc:
        raise CLIError(str(exc)) from None


def _progress(args, desc: str):
    """The job's one progress bar: on a terminal's stderr only, none with --quiet/--no-progress."""
    from .progress import Progress

    return Progress(desc, enabled=False if (args.quiet or args.no_progress) else None)


def _provenance(lm, args, **extra) -> dict:
    """The provenance block of this run: every argument, plus what the run resolved (``extra``)."""
    from .provenance import collect

    params = {k: v for k, v in vars(args).items() if k not in ("command", "quiet", "no_progress") and k[0] != "_"}
    params.update(extra)
    return collect(lm, params, command=["residual-response", *args._argv], clock=args._clock)


def _validate_common(lm, args, T: int | None = None):
    from .response import validate_layer
    from .sequences import validate_length

    validate_layer(lm, args.layer)
    if T is not None:
        validate_length(lm, T)


def _cmd_models(args) -> int:
    from .models import REGISTRY

    rows = [{"name": s.name, "family": s.family, "layers": s.layers, "d_model": s.d_model,
             "offline": s.offline, "description": s.description} for s in REGISTRY.values()]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'name':<14} {'family':<8} {'layers':>6} {'d_model':>7} {'offline':<7}  description")
    for r in rows:
        layers = "-" if r["layers"] is None else r["layers"]
        d = "-" if r["d_model"] is None else r["d_model"]
        print(f"{r['name']:<14} {r['family']:<8} {layers!s:>6} {d!s:>7} {'yes' if r['offline'] else 'no':<7}  {r['description']}")
    return 0


def _cmd_response(args) -> int:
    from .response import response
    from .sequences import make_sequence

    out = _check_out(args.out)
    lm = _load(args)
    _validate_common(lm, args, args.length)
    tokens = make_sequence(lm, args.sequence, args.length, args.seed)
    with _progress(args, f"{lm.name} response") as bar:
        res = response(lm, tokens, args.eps, layer=args.layer, n_directions=args.directions, direction=args.direction,
                       seed=args.seed, method=args.method, progress=bar)
    res.provenance = _provenance(lm, args, read_layers=res.read_layers, sources=res.sources, n_tokens=len(res.tokens))
    res.save_npz(out)
    _status(args, f"wrote {out}: chi {tuple(res.full_matrix().shape)} [eps, read layer, source, target]")
    return 0


def _cmd_induction(args) -> int:
    from .induction import induction_scores

    out = _check_out(args.out)
    lm = _load(args)
    _validate_common(lm, args, args.length)
    with _progress(args, f"{lm.name} induction") as bar:
        res = induction_scores(lm, args.length, args.seeds, layer=args.layer, eps=args.eps,
                               n_directions=args.directions, control=args.control, progress=bar)
    res.provenance = _provenance(lm, args, seed_list=res.seeds, read_layers=res.layers, method=res.method)
    d = res.to_json_dict()
    d["seeds"] = args.seeds
    d["seed_list"] = res.seeds
    write_json_atomic(out, d)
    _status(args, f"wrote {out}: emergence layer {res.emergence_layer}")
    return 0


def _cmd_regime(args) -> int:
    import numpy as np

    from .regime import RegimeResult
    from .response import response
    from .sequences import make_sequence

    out = _check_out(args.out)
    if args.eps_min >= args.eps_max:
        raise CLIError(f"--eps-min {args.eps_min} must be below --eps-max {args.eps_max}")
    if args.points < 2:
        raise CLIError("--points must be >= 2")
    lm = _load(args)
    _validate_common(lm, args, args.length)
    grid = np.logspace(np.log10(args.eps_min), np.log10(args.eps_max), args.points)
    tokens = make_sequence(lm, args.sequence, args.length, args.seed)
    with _progress(args, f"{lm.name} eps sweep") as bar:
        res = response(lm, tokens, grid, layer=args.layer, n_directions=args.directions, seed=args.seed,
                       progress=bar)
    reg = RegimeResult.from_response(res, tol=args.tol, sequence=args.sequence, length=args.length)
    reg.dtype = args.dtype
    reg.provenance = _provenance(lm, args, eps=grid.tolist(), read_layers=res.read_layers, method=res.method)
    write_json_atomic(out, reg.to_json_dict())
    _status(args, f"wrote {out}")
    return 0


def _cmd_section_map(args) -> int:
    from .induction import section_map

    out = _check_out(args.out)
    lm = _load(args)
    _validate_common(lm, args, args.length)
    with _progress(args, f"{lm.name} section map") as bar:
        sm = section_map(lm, args.length, args.seeds, perturb_layers=args.perturb_layers, eps=args.eps, progress=bar)
    sm.provenance = _provenance(lm, args, seed_list=sm.seeds, perturb_layers=sm.perturb_layers,
                                read_layers=sm.read_layers, method="finite", directions=sm.n_directions)
    write_json_atomic(out, sm.to_json_dict())
    _status(args, f"wrote {out}")
    return 0


def _cmd_show(args) -> int:
    from .show import ShowError, show

    out = _check_out(args.out)
    try:
        written = show(args.files, out, png=args.png)
    except ShowError as exc:
        raise CLIError(str(exc)) from None
    print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0


COMMANDS = {"models": _cmd_models, "response": _cmd_response, "induction": _cmd_induction,
            "regime": _cmd_regime, "section-map": _cmd_section_map, "show": _cmd_show}


def _one_line_warnings(message, category, filename, lineno, file=None, line=None):
    """Warnings on the command line: one line, no source location."""
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    import warnings

    from .provenance import RunClock

    clock = RunClock()  # the run's wall and CPU time start here
    argv = sys.argv[1:] if argv is None else list(argv)
    with warnings.catch_warnings():  # restores the global warning printer afterwards
        warnings.showwarning = _one_line_warnings
        try:
            args = build_parser().parse_args(argv)
            args._clock, args._argv = clock, argv  # for the provenance block
            return COMMANDS[args.command](args)
        except CLIError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except (ValueError, TypeError) as exc:
            print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
