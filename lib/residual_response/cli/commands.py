"""The commands of ``residual-response``, and :func:`main`.

Scripts rely on the outputs' exact fields (see each subcommand's help). Exit status: 0 on
success; 2, with one ``error: ...`` line on stderr and nothing written, for bad input (an
:class:`~residual_response.checks.InputError`, whatever raised it) and for a run that does not
fit in memory (an allocation that failed, :mod:`residual_response.memory`: the line names the
size and what to lower); 128 + signal when interrupted (SIGINT 130, SIGHUP 129, SIGTERM 143: all
three clean up the same way, :mod:`residual_response.signals`); 1, with the traceback, for
anything else, a fault of the library or the machine and not of the input. Every result file
names its ``kind`` and carries a ``provenance`` block (:mod:`residual_response.provenance`);
``show`` draws any of them.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

from ..checks import InputError, check_eps_floor
from .estimate import estimate
from .jobs import Job, Run, run_job
from .output import check_out, out_in_place
from .parser import build_parser

__all__ = ["main", "COMMANDS"]


def _write_json(result, output) -> None:
    output.commit(data=result.to_json_dict())


def _check_eps(args, eps: list[float], option: str = "--eps") -> None:
    """The eps policy on the command line (:mod:`..checks`): above 1 refused unless
    ``--allow-eps-above-1``, below the dtype's rounding floor refused unless ``--allow-below-floor``."""
    top = max(eps)
    if top > 1 and not args.allow_eps_above_1:
        raise InputError(f"{option} {top:g} is above 1, a perturbation larger than the stream itself, where no "
                         f"universal regime lies; use {option} <= 1 or --allow-eps-above-1")
    if not args.allow_below_floor:
        check_eps_floor(eps, args.dtype, option=option, override="--allow-below-floor")


def _n_tokens(lm, T: int) -> int:
    return 2 * T + (0 if lm.bos_token_id is None else 1)


# --- response -----------------------------------------------------------------------------------


def _response_job(lm, args):
    from ..engine import ResponseJob
    from ..sequences import make_sequence

    tokens = make_sequence(lm, args.sequence, args.T, args.seed)
    return ResponseJob.validated(lm, tokens, args.eps, l0=args.l0, n_directions=args.directions,
                                 direction=args.direction, seed=args.seed, method=args.method)


def _sweep_cost(what: str, full: bool):
    def cost(lm, job):
        memory, seconds = estimate(lm, n_positions=job.N, sources=job.sources, n_directions=job.K, n_eps=len(job.eps),
                                   l0=job.l0, keep_full=full, jvp=job.method == "jvp")
        size = len(job.eps) * len(job.reads) * job.N * job.N * 8 if full else None
        return what, memory, seconds, size
    return cost


def _run_response(lm, job, bar):
    from ..engine import run_response

    return run_response(job, progress=bar)


RESPONSE = Job(
    label="response",
    refuse=lambda args: _check_eps(args, args.eps) if args.method == "finite" else None,  # jvp ignores eps
    prepare=_response_job,
    cost=_sweep_cost("this response", full=True),
    compute=_run_response,
    resolved=lambda res: dict(read_streams=res.read_streams, sources=res.sources, n_tokens=len(res.tokens)),
    write=lambda res, out: out.commit(write=res.write_npz),
    done=lambda res: f": chi {tuple(res.full_matrix().shape)} [eps, read stream, source, target]",
)


# --- induction ----------------------------------------------------------------------------------


def _induction_setting(lm, args):
    from ..induction import InductionSetting

    return InductionSetting.validated(lm, args.T, args.seeds, l0=args.l0, eps=args.eps, n_directions=args.directions,
                                      control=args.control)


def _induction_cost(lm, setting):
    offset = _n_tokens(lm, setting.T) - 2 * setting.T
    memory, seconds = estimate(lm, n_positions=_n_tokens(lm, setting.T), sources=range(offset, offset + setting.T),
                               n_directions=setting.n_directions, n_eps=1, l0=setting.l0, passes=2 * len(setting.seeds))
    return f"induction over {len(setting.seeds)} seeds", memory, seconds, None


def _run_induction(lm, setting, bar):
    from ..induction import run_induction

    return run_induction(lm, setting, bar)


INDUCTION = Job(
    label="induction",
    refuse=lambda args: _check_eps(args, [args.eps]),
    prepare=_induction_setting,
    cost=_induction_cost,
    compute=_run_induction,
    resolved=lambda res: dict(seeds=res.seeds, read_streams=res.read_streams, method=res.method),
    write=_write_json,
    done=lambda res: f": emergence layer {res.emergence_layer}",
)


# --- regime -------------------------------------------------------------------------------------


def _regime_refuse(args) -> None:
    if args.eps_min >= args.eps_max:
        raise InputError(f"--eps-min {args.eps_min:g} must be below --eps-max {args.eps_max:g}")
    if args.eps_max > 1 and not args.allow_eps_above_1:
        raise InputError(f"--eps-max {args.eps_max:g} is above 1, a perturbation larger than the stream itself, where "
                         f"no universal regime lies; use --eps-max <= 1 or --allow-eps-above-1")
    if args.points < 2:
        raise InputError(f"--points {args.points} is too few for a sweep; give at least 2")


def _regime_setting(lm, args):
    """The sweep's sequence and perturbed stream, checked against the model; the grid itself is made
    only after the estimate has accepted its size."""
    from ..checks import validate_l0
    from ..sequences import make_sequence

    return make_sequence(lm, args.sequence, args.T, args.seed), validate_l0(lm, args.l0), args


def _regime_cost(lm, prepared):
    tokens, l0, args = prepared
    N = len(tokens)
    memory, seconds = estimate(lm, n_positions=N, sources=range(N), n_directions=args.directions, n_eps=args.points,
                               l0=l0)
    return f"a sweep of {args.points} points", memory, seconds, None


def _run_regime(lm, prepared, bar):
    import numpy as np

    from ..engine import ResponseJob, run_response
    from ..regime import RegimeResult

    tokens, l0, args = prepared
    grid = np.logspace(np.log10(args.eps_min), np.log10(args.eps_max), args.points)  # ends checked by the parser
    job = ResponseJob.trusted(lm, tokens, grid, l0=l0, read_streams=None, sources=None, n_directions=args.directions,
                              direction="gaussian", seed=args.seed, method="finite")
    reg = RegimeResult.from_response(run_response(job, progress=bar), tol=args.tol, sequence=args.sequence, T=args.T)
    reg.dtype = args.dtype
    return reg


REGIME = Job(
    label="eps sweep",
    refuse=_regime_refuse,
    prepare=_regime_setting,
    cost=_regime_cost,
    compute=_run_regime,
    resolved=lambda reg: dict(eps=list(reg.eps), read_streams=[reg.l0, *reg.curve_streams], method="finite"),
    write=_write_json,
)


# --- section-map --------------------------------------------------------------------------------


def _section_refuse(args) -> None:
    if args.l0s is not None and not args.l0s:
        raise InputError("--perturb-layers is given without layers; name at least one, or leave the option out "
                         "for every layer")
    _check_eps(args, [args.eps])


def _section_setting(lm, args):
    from ..induction import section_setting

    return section_setting(lm, args.T, args.seeds, l0s=args.l0s, eps=args.eps)


def _section_cost(lm, prepared):
    setting, l0s = prepared
    offset = _n_tokens(lm, setting.T) - 2 * setting.T
    memory, seconds = 0.0, 0.0
    for l0 in l0s:
        m, t = estimate(lm, n_positions=_n_tokens(lm, setting.T), sources=range(offset, offset + setting.T),
                        n_directions=1, n_eps=1, l0=l0, passes=2 * len(setting.seeds))
        memory, seconds = max(memory, m), seconds + t
    return f"a section map of {len(l0s)} layers x {len(setting.seeds)} seeds", memory, seconds, None


def _run_section_map(lm, prepared, bar):
    from ..induction import run_section_map

    return run_section_map(lm, *prepared, progress=bar)[0]


SECTION_MAP = Job(
    label="section map",
    refuse=_section_refuse,
    prepare=_section_setting,
    cost=_section_cost,
    compute=_run_section_map,
    resolved=lambda sm: dict(seeds=sm.seeds, l0s=sm.l0s, read_streams=sm.read_streams, method="finite",
                             directions=sm.n_directions),
    write=_write_json,
)


# --- models, show -------------------------------------------------------------------------------


def _cmd_models(run: Run) -> int:
    from ..models import REGISTRY

    rows = [{"name": s.name, "family": s.family, "layers": s.layers, "d_model": s.d_model,
             "offline": s.offline, "description": s.description} for s in REGISTRY.values()]
    if run.args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'name':<14} {'family':<8} {'layers':>6} {'d_model':>7} {'offline':<7}  description")
    for r in rows:
        layers = "-" if r["layers"] is None else r["layers"]
        d = "-" if r["d_model"] is None else r["d_model"]
        print(f"{r['name']:<14} {r['family']:<8} {layers!s:>6} {d!s:>7} {'yes' if r['offline'] else 'no':<7}  {r['description']}")
    return 0


def _cmd_show(run: Run) -> int:
    from .show import show

    if run.args.png and out_in_place(run.args.out):
        raise InputError(f"--png writes image files beside --out, and --out {run.args.out} is a device or FIFO; "
                         f"give --out a file path, or leave out --png")
    written = show(run.args.files, check_out(run.args.out, "show"), png=run.args.png)
    print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0


COMMANDS = {"models": _cmd_models, "response": lambda run: run_job(run, RESPONSE),
            "induction": lambda run: run_job(run, INDUCTION), "regime": lambda run: run_job(run, REGIME),
            "section-map": lambda run: run_job(run, SECTION_MAP), "show": _cmd_show}


def _one_line_warnings(message, category, filename, lineno, file=None, line=None):
    """Warnings on the command line: one line, no source location."""
    print(f"warning: {message}", file=sys.stderr)


def _silence_stdout() -> None:
    """Point stdout at the null device, so that Python's own flush at exit does not fail again."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no file behind stdout (a test's capture)
        pass


#: What to lower when a command runs out of memory.
_LOWER = {"response": "use fewer eps values or directions, or a shorter length",
          "induction": "use fewer seeds or directions, or a shorter length",
          "regime": "use fewer points or directions, or a shorter length",
          "section-map": "use fewer --perturb-layers or seeds, or a shorter length",
          "show": "draw fewer or smaller result files"}


def _out_of_memory(command: str | None, exc: BaseException) -> int:
    from ..memory import describe_allocation_failure

    lower = _LOWER.get(command, "use smaller sizes")
    print(f"error: {describe_allocation_failure(exc, lower + ', or raise the limit')}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit status (module docstring)."""
    import warnings

    from ..checks import allow_eps
    from ..memory import allocation_failure
    from ..provenance import RunClock
    from ..signals import describe, exit_status, terminate_as_interrupt

    clock = RunClock()  # the run's wall and CPU time start here
    argv = sys.argv[1:] if argv is None else list(argv)
    command, status = None, 1
    with warnings.catch_warnings(), terminate_as_interrupt():  # both restore what was there afterwards
        warnings.showwarning = _one_line_warnings
        try:
            args = build_parser().parse_args(argv)
            command = args.command
            # the command applies the eps policy to its options (_check_eps, _regime_refuse); the
            # library's own check must not refuse or warn a second time
            with allow_eps(above_1=bool(getattr(args, "allow_eps_above_1", False)), below_floor=True):
                status = COMMANDS[command](Run(args, argv, clock))
        except InputError as exc:
            print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
            status = 2
        except KeyboardInterrupt as exc:  # Ctrl-C, and SIGTERM / SIGHUP (signals.Terminated)
            print(f"error: {describe(exc)}", file=sys.stderr)
            status = exit_status(exc)
        except BrokenPipeError:  # the reader of the output went away (`| head`): not a failure of the run
            _silence_stdout()
            status = 0
        except Exception as exc:
            if allocation_failure(exc):  # MemoryError, torch's "can't allocate memory", ENOMEM: one line
                status = _out_of_memory(command, exc)
            else:  # a fault of the library or of the machine, not of the input: say where
                traceback.print_exc()
                print("error: the command failed (the traceback above says where); this is not a problem of its "
                      "input", file=sys.stderr)
                status = 1
        finally:
            if status != 0:
                _release_fifo(argv)
    return status


def _release_fifo(argv: list[str]) -> None:
    """A run that failed: a reader waiting on a FIFO at ``--out`` gets its end of file now (as it
    would have from the shell's ``>``), instead of waiting for ever where the run was refused before
    its output was opened. Opened without blocking: with no reader there, there is nobody to release."""
    import stat

    argv = [str(a) for a in argv]
    outs = [b for a, b in zip(argv, argv[1:]) if a == "--out"] + [a[6:] for a in argv if a.startswith("--out=")]
    for out in outs:
        try:
            if stat.S_ISFIFO(os.stat(out).st_mode):
                os.close(os.open(out, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


if __name__ == "__main__":
    sys.exit(main())
