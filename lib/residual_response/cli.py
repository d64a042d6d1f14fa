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
from pathlib import Path

from .canonical import CANONICAL
from .checks import MAX_SEED

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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="residual-response", description=__doc__.splitlines()[0])
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
    p.add_argument("--allow-eps-above-1", action="store_true",
                   help="sweep beyond eps = 1, a perturbation larger than the stream itself")

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


#: What each command writes, by the extension its output should have.
_OUTPUT_KIND = {"response": (".npz", "a NumPy .npz archive"), "induction": (".json", "JSON"),
                "regime": (".json", "JSON"), "section-map": (".json", "JSON"), "show": (".html", "an HTML page")}
_KNOWN_EXTENSIONS = {".npz", ".npy", ".json", ".csv", ".txt", ".pt", ".pkl", ".png", ".svg", ".html"}


def _check_out(path: str, command: str) -> Path:
    """The output path must name a file in an existing folder, with an extension that fits the command."""
    if not path.strip():
        raise CLIError(f"--out is empty; give a file path such as out{_OUTPUT_KIND[command][0]}")
    out = Path(path)
    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir() or path.endswith(os.sep):
        raise CLIError(f"--out {path} is a directory; give a file path")
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise CLIError(f"cannot write --out {path}: folder {folder} {what}")
    if not os.access(folder, os.W_OK):
        raise CLIError(f"cannot write --out {path}: folder {folder} is not writable")
    ext, kind = _OUTPUT_KIND[command]
    suffix = out.suffix.lower()
    if suffix in _KNOWN_EXTENSIONS and suffix != ext:
        raise CLIError(f"--out {path}: `{command}` writes {kind}, not {suffix}; give a path ending in {ext}")
    return out


def _reserve(args, size_hint: int = 1 << 16):
    """Create the output's temporary file in its folder now, before any model is loaded (see io.OutputReservation)."""
    from .io import OutputReservation

    out = _check_out(args.out, args.command)
    try:
        res = OutputReservation(out, size_hint)
    except OSError as exc:
        raise CLIError(f"cannot write --out {args.out}: {exc.strerror or exc}") from None
    args._reservation = res
    return res


def _grow(args, res, size: int) -> None:
    """Allocate the estimated output size, so that a full disk fails before the computation."""
    try:
        with open(res.tmp, "r+b") as fh:
            os.posix_fallocate(fh.fileno(), 0, max(int(size), 1))
    except OSError as exc:
        import errno

        if exc.errno in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return
        raise CLIError(f"cannot write --out {args.out}: {exc.strerror or exc} "
                       f"(the output needs about {_human_bytes(size)})") from None


def _commit(args, res, write=None, data=None) -> None:
    """Write the result into the reserved file and move it into place; one error line if that fails."""
    try:
        if write is not None:
            res.commit(write)
        else:
            res.commit_json(data)
    except OSError as exc:
        raise CLIError(f"cannot write --out {args.out}: {exc.strerror or exc}") from None


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"


def _human_seconds(t: float) -> str:
    for unit, size in (("years", 365 * 86400), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if t >= size:
            return f"{t / size:.3g} {unit}"
    return f"{t:.3g} seconds"


#: Arithmetic rate assumed by the time estimate (FLOP/s). Generous on purpose: the bound only
#: refuses runs that cannot finish, not runs that are merely slow.
_ASSUMED_FLOPS = {"cpu": 1e11, "cuda": 1e14, "mps": 1e13}
#: Least time one response call takes whatever its size (Python, hooks, kernel launches), seconds.
_CALL_OVERHEAD_S = 2e-3
#: Longest run the command line starts (seconds, at the assumed rate).
MAX_SECONDS = 7 * 86400


def _available_bytes() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def estimate(lm, *, n_positions: int, n_sources: int, n_directions: int, n_eps: int, l0: int, passes: int = 1,
             keep_full: bool = False) -> tuple[float, float]:
    """Rough memory (bytes) and time (seconds) of ``passes`` response calls with these sizes.

    Memory: the float64 result arrays (accumulator, chi and, for ``response``, the full
    ``[n_eps, n_read, N, N]`` matrix), the directions, and what each call keeps (the stripes of a
    seed). Time: each of the ``sources x directions x eps`` rows runs about ``N/2`` positions
    through the ``L - l0`` blocks at two FLOPs per weight, at the rate of :data:`_ASSUMED_FLOPS`,
    plus :data:`_CALL_OVERHEAD_S` per call (what dominates for tiny models and many seeds).
    """
    from .models import block_dims

    dims = block_dims(lm)
    n_read = lm.n_layers + 1 - l0
    per_block = (2 * dims.d_model * dims.n_heads * dims.head_dim + 2 * dims.d_model * dims.n_kv_heads * dims.head_dim
                 + 3 * dims.d_model * dims.d_ffn)
    result = float(n_eps) * n_read * n_sources * n_positions * 8
    memory = (3 if keep_full else 2) * result + float(n_sources) * n_directions * dims.d_model * 8
    if keep_full:
        memory += float(n_eps) * n_read * n_positions * n_positions * 8
    if passes > 1:  # stripes kept per call, and the seed list itself
        memory += float(passes) * (2 * n_read * n_sources * 8 + 64)
    rows = float(n_sources) * n_directions * n_eps
    flops = passes * rows * max(n_positions / 2, 1) * (lm.n_layers - l0) * 2 * per_block
    seconds = flops / _ASSUMED_FLOPS.get(lm.device.type, 1e11) + passes * _CALL_OVERHEAD_S
    return memory, seconds


def _check_size(what: str, memory: float, seconds: float) -> None:
    """Refuse a run whose estimate exceeds the free memory or :data:`MAX_SECONDS`; the message gives the estimate."""
    available = _available_bytes()
    if memory > available:
        raise CLIError(f"{what} needs about {_human_bytes(memory)} of memory for its results, more than the "
                       f"{_human_bytes(available)} available; use fewer points, directions, seeds or a shorter length")
    if seconds > MAX_SECONDS:
        raise CLIError(f"{what} would take about {_human_seconds(seconds)} at an optimistic rate; the bound is "
                       f"{_human_seconds(MAX_SECONDS)}; use fewer points, directions, seeds, layers or a shorter length")


def _check_floor(args, eps: list[float]) -> None:
    if getattr(args, "allow_below_floor", False):
        return
    from .checks import check_eps_floor

    try:
        check_eps_floor(eps, args.dtype, option="--eps", override="--allow-below-floor")
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _status(args, message: str) -> None:
    """One status line on stderr, unless ``--quiet``."""
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr)


def _load(args):
    from .models import ModelUnavailableError, load_model, validate_cache_dir
    from .progress import quiet_model_loading

    validate_cache_dir()
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
    from .checks import validate_layer
    from .sequences import validate_length

    validate_layer(lm, args.layer)
    if T is not None:
        validate_length(lm, T)


def _n_positions(lm, T: int) -> int:
    return 2 * T + (0 if lm.bos_token_id is None else 1)


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
    from .engine import response
    from .sequences import make_sequence

    if args.method == "finite":  # jvp ignores eps
        _check_floor(args, args.eps)
    res_file = _reserve(args)
    lm = _load(args)
    _validate_common(lm, args, args.length)
    N = _n_positions(lm, args.length)
    memory, seconds = estimate(lm, n_positions=N, n_sources=N, n_directions=args.directions, n_eps=len(args.eps),
                               l0=args.layer, keep_full=True)
    _check_size("this response", memory, seconds)
    _grow(args, res_file, len(args.eps) * (lm.n_layers + 1 - args.layer) * N * N * 8)
    tokens = make_sequence(lm, args.sequence, args.length, args.seed)
    with _progress(args, f"{lm.name} response") as bar:
        res = response(lm, tokens, args.eps, layer=args.layer, n_directions=args.directions, direction=args.direction,
                       seed=args.seed, method=args.method, progress=bar)
    res.provenance = _provenance(lm, args, read_layers=res.read_layers, sources=res.sources, n_tokens=len(res.tokens))
    _commit(args, res_file, write=res.write_npz)
    _status(args, f"wrote {args.out}: chi {tuple(res.full_matrix().shape)} [eps, read layer, source, target]")
    return 0


def _cmd_induction(args) -> int:
    from .induction import induction_scores

    _check_floor(args, [args.eps])
    res_file = _reserve(args)
    lm = _load(args)
    _validate_common(lm, args, args.length)
    memory, seconds = estimate(lm, n_positions=_n_positions(lm, args.length), n_sources=args.length,
                               n_directions=args.directions, n_eps=1, l0=args.layer, passes=2 * args.seeds)
    _check_size(f"induction over {args.seeds} seeds", memory, seconds)
    with _progress(args, f"{lm.name} induction") as bar:
        res = induction_scores(lm, args.length, args.seeds, layer=args.layer, eps=args.eps,
                               n_directions=args.directions, control=args.control, progress=bar)
    res.provenance = _provenance(lm, args, seed_list=res.seeds, read_layers=res.layers, method=res.method)
    d = res.to_json_dict()
    d["seeds"] = args.seeds
    d["seed_list"] = res.seeds
    _commit(args, res_file, data=d)
    _status(args, f"wrote {args.out}: emergence layer {res.emergence_layer}")
    return 0


def _cmd_regime(args) -> int:
    import numpy as np

    from .regime import RegimeResult
    from .engine import response
    from .sequences import make_sequence

    if args.eps_min >= args.eps_max:
        raise CLIError(f"--eps-min {args.eps_min:g} must be below --eps-max {args.eps_max:g}")
    if args.eps_max > 1 and not args.allow_eps_above_1:
        raise CLIError(f"--eps-max {args.eps_max:g} is above 1, a perturbation larger than the stream itself, where "
                       f"no universal regime lies; use --eps-max <= 1 or --allow-eps-above-1")
    if args.points < 2:
        raise CLIError(f"--points {args.points} is too few for a sweep; give at least 2")
    res_file = _reserve(args)
    lm = _load(args)
    _validate_common(lm, args, args.length)
    N = _n_positions(lm, args.length)
    memory, seconds = estimate(lm, n_positions=N, n_sources=N, n_directions=args.directions, n_eps=args.points,
                               l0=args.layer)
    _check_size(f"a sweep of {args.points} points", memory, seconds)
    grid = np.logspace(np.log10(args.eps_min), np.log10(args.eps_max), args.points)
    tokens = make_sequence(lm, args.sequence, args.length, args.seed)
    with _progress(args, f"{lm.name} eps sweep") as bar:
        res = response(lm, tokens, grid, layer=args.layer, n_directions=args.directions, seed=args.seed,
                       progress=bar)
    reg = RegimeResult.from_response(res, tol=args.tol, sequence=args.sequence, length=args.length)
    reg.dtype = args.dtype
    reg.provenance = _provenance(lm, args, eps=grid.tolist(), read_layers=res.read_layers, method=res.method)
    _commit(args, res_file, data=reg.to_json_dict())
    _status(args, f"wrote {args.out}")
    return 0


def _cmd_section_map(args) -> int:
    from .induction import section_map

    if args.perturb_layers is not None and not args.perturb_layers:
        raise CLIError("--perturb-layers is given without layers; name at least one, or leave the option out "
                       "for every layer")
    _check_floor(args, [args.eps])
    res_file = _reserve(args)
    lm = _load(args)
    _validate_common(lm, args, args.length)
    layers = list(range(lm.n_layers)) if args.perturb_layers is None else sorted(set(args.perturb_layers))
    from .checks import validate_layer

    for l0 in layers:
        validate_layer(lm, l0, what="--perturb-layers value")
    N = _n_positions(lm, args.length)
    memory, seconds = 0.0, 0.0
    for l0 in layers:
        m, t = estimate(lm, n_positions=N, n_sources=args.length, n_directions=1, n_eps=1, l0=l0, passes=2 * args.seeds)
        memory, seconds = max(memory, m), seconds + t
    _check_size(f"a section map of {len(layers)} layers x {args.seeds} seeds", memory, seconds)
    with _progress(args, f"{lm.name} section map") as bar:
        sm = section_map(lm, args.length, args.seeds, perturb_layers=args.perturb_layers, eps=args.eps, progress=bar)
    sm.provenance = _provenance(lm, args, seed_list=sm.seeds, perturb_layers=sm.perturb_layers,
                                read_layers=sm.read_layers, method="finite", directions=sm.n_directions)
    _commit(args, res_file, data=sm.to_json_dict())
    _status(args, f"wrote {args.out}")
    return 0


def _cmd_show(args) -> int:
    from .show import ShowError, show

    out = _check_out(args.out, "show")
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
        args = None
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
        except MemoryError:
            print("error: out of memory; use fewer points, directions, seeds or a shorter length", file=sys.stderr)
            return 2
        except OSError as exc:  # the machine, not the input: a disk that filled up, a vanished file
            where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
            print(f"error: {exc.strerror or type(exc).__name__}{where}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return 130
        finally:
            reservation = getattr(args, "_reservation", None)
            if reservation is not None:
                reservation.discard()  # after a commit there is nothing left to remove


if __name__ == "__main__":
    sys.exit(main())
