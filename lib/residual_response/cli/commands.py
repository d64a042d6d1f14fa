"""The commands of ``residual-response``, and :func:`main`.

Scripts rely on the outputs' exact fields (see each subcommand's help). Bad input exits with
status 2 and one ``error: ...`` line on stderr, and writes nothing. Every result file names its
``kind`` and carries a ``provenance`` block (:mod:`.provenance`); ``show`` draws any of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

from .estimate import _check_size, estimate
from .output import _check_out, _commit, _grow, _reserve
from .parser import CLIError, build_parser

__all__ = ["main", "COMMANDS"]


def _check_eps(args, eps: list[float], option: str = "--eps") -> None:
    """The eps policy on the command line (:mod:`..checks`): above 1 refused unless
    ``--allow-eps-above-1``, below the dtype's rounding floor refused unless ``--allow-below-floor``."""
    from ..checks import check_eps_floor

    top = max(eps)
    if top > 1 and not getattr(args, "allow_eps_above_1", False):
        raise CLIError(f"{option} {top:g} is above 1, a perturbation larger than the stream itself, where no universal "
                       f"regime lies; use {option} <= 1 or --allow-eps-above-1")
    if getattr(args, "allow_below_floor", False):
        return
    try:
        check_eps_floor(eps, args.dtype, option=option, override="--allow-below-floor")
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _status(args, message: str) -> None:
    """One status line on stderr, unless ``--quiet``."""
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr)


def _load(args):
    from ..models import ModelUnavailableError, load_model, validate_cache_dir
    from ..progress import quiet_model_loading

    validate_cache_dir()
    if not (args.quiet or args.no_progress) and sys.stderr.isatty():  # progress, like the bar: terminals only
        print(f"loading {args.model} ({args.dtype}, {args.device_map or args.device})", file=sys.stderr)
    try:
        with quiet_model_loading(), _bars_off(args.quiet or args.no_progress):  # one line, not a bar per tensor
            return load_model(args.model, device=args.device, dtype=args.dtype, device_map=args.device_map)
    except ModelUnavailableError as exc:
        raise CLIError(str(exc)) from None


@contextlib.contextmanager
def _bars_off(off: bool):
    """``TQDM_DISABLE=1`` for a ``with`` block when ``off``: no bar from a cache build either (the toy's
    training runs in a child process, which inherits it)."""
    if not off:
        yield
        return
    old = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = old


def _progress(args, desc: str):
    """The job's one progress bar: on a terminal's stderr only, none with --quiet/--no-progress."""
    from ..progress import Progress

    return Progress(desc, enabled=False if (args.quiet or args.no_progress) else None)


def _provenance(lm, args, **extra) -> dict:
    """The provenance block of this run: every argument, plus what the run resolved (``extra``)."""
    from ..provenance import collect

    params = {k: v for k, v in vars(args).items() if k not in ("command", "quiet", "no_progress") and k[0] != "_"}
    params.update(extra)
    return collect(lm, params, command=["residual-response", *args._argv], clock=args._clock)


def _validate_common(lm, args, T: int | None = None):
    from ..checks import validate_layer
    from ..sequences import validate_length

    validate_layer(lm, args.layer)
    if T is not None:
        validate_length(lm, T)


def _n_positions(lm, T: int) -> int:
    return 2 * T + (0 if lm.bos_token_id is None else 1)


def _cmd_models(args) -> int:
    from ..models import REGISTRY

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
    from ..engine import response
    from ..sequences import make_sequence

    if args.method == "finite":  # jvp ignores eps
        _check_eps(args, args.eps)
    res_file = _reserve(args)
    lm = _load(args)
    _validate_common(lm, args, args.length)
    N = _n_positions(lm, args.length)
    memory, seconds = estimate(lm, n_positions=N, n_sources=N, n_directions=args.directions, n_eps=len(args.eps),
                               l0=args.layer, keep_full=True, jvp=args.method == "jvp")
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
    from ..induction import induction_scores

    _check_eps(args, [args.eps])
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

    from ..regime import RegimeResult
    from ..engine import response
    from ..sequences import make_sequence

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
    from ..induction import section_map

    if args.perturb_layers is not None and not args.perturb_layers:
        raise CLIError("--perturb-layers is given without layers; name at least one, or leave the option out "
                       "for every layer")
    _check_eps(args, [args.eps])
    res_file = _reserve(args)
    lm = _load(args)
    _validate_common(lm, args, args.length)
    layers = list(range(lm.n_layers)) if args.perturb_layers is None else sorted(set(args.perturb_layers))
    from ..checks import validate_layer

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
    if args.png and args._out_in_place:
        raise CLIError(f"--png writes image files beside --out, and --out {args.out} is a device or FIFO; "
                       f"give --out a file path, or leave out --png")
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


#: What to lower when a command runs out of memory.
_LOWER = {"response": "use fewer eps values or directions, or a shorter length",
          "induction": "use fewer seeds or directions, or a shorter length",
          "regime": "use fewer points or directions, or a shorter length",
          "section-map": "use fewer --perturb-layers or seeds, or a shorter length",
          "show": "draw fewer or smaller result files"}


def _out_of_memory(args, exc: BaseException) -> int:
    from ..memory import describe_allocation_failure

    lower = _LOWER.get(getattr(args, "command", None), "use smaller sizes")
    print(f"error: {describe_allocation_failure(exc, lower + ', or raise the limit')}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run one command; bad input, faults and signals end in one ``error:`` line.

    Exit status: 0 done, 2 refused or failed (one line says why), 128 + signal when interrupted
    (SIGINT 130, SIGHUP 129, SIGTERM 143: all three clean up the same way, :mod:`..signals`).
    """
    import warnings

    from ..checks import allow_eps
    from ..memory import allocation_failure
    from ..provenance import RunClock
    from ..signals import describe, exit_status, terminate_as_interrupt

    clock = RunClock()  # the run's wall and CPU time start here
    argv = sys.argv[1:] if argv is None else list(argv)
    with warnings.catch_warnings(), terminate_as_interrupt():  # both restore what was there afterwards
        warnings.showwarning = _one_line_warnings
        args = None
        try:
            args = build_parser().parse_args(argv)
            args._clock, args._argv = clock, argv  # for the provenance block
            args._out_in_place = _out_in_place(args)
            # the command has applied the eps policy to its options (_check_eps); the library's
            # own check must not refuse or warn a second time
            with allow_eps(above_1=bool(getattr(args, "allow_eps_above_1", False)), below_floor=True):
                return COMMANDS[args.command](args)
        except CLIError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except (ValueError, TypeError) as exc:
            print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
            return 2
        except MemoryError as exc:
            return _out_of_memory(args, exc)
        except RuntimeError as exc:
            if allocation_failure(exc):  # torch: "DefaultCPUAllocator: can't allocate memory", CUDA out of memory
                return _out_of_memory(args, exc)
            raise
        except OSError as exc:  # the machine, not the input: a disk that filled up, a vanished file
            if allocation_failure(exc):
                return _out_of_memory(args, exc)
            where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
            print(f"error: {exc.strerror or str(exc) or type(exc).__name__}{where}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as exc:  # Ctrl-C, and SIGTERM / SIGHUP (signals.Terminated)
            print(f"error: {describe(exc)}", file=sys.stderr)
            return exit_status(exc)
        finally:
            reservation = getattr(args, "_reservation", None)
            if reservation is not None:
                reservation.discard()  # after a commit there is nothing left to remove
            else:
                _release_fifo(argv)


def _release_fifo(argv: list[str]) -> None:
    """A run refused before its output was opened: a reader waiting on a FIFO at ``--out`` gets its
    end of file now (as it would have from the shell's ``>``), instead of waiting for ever. Opened
    without blocking: with no reader there, there is nobody to release."""
    import stat

    argv = [str(a) for a in argv]
    outs = [b for a, b in zip(argv, argv[1:]) if a == "--out"] + [a[6:] for a in argv if a.startswith("--out=")]
    for out in outs:
        try:
            if stat.S_ISFIFO(os.stat(out).st_mode):
                os.close(os.open(out, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


def _out_in_place(args) -> bool:
    """Whether ``--out`` names a character device or FIFO (written in place, :mod:`..outputs`)."""
    from ..outputs import OutputNodeError, output_node

    out = getattr(args, "out", None)
    if not out or not str(out).strip():
        return False
    try:
        return output_node(out).in_place
    except OutputNodeError:
        return False  # _check_out says why


if __name__ == "__main__":
    sys.exit(main())
