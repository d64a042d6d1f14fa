"""The toy's training child process: started with its environment, its progress forwarded, and a
failure reported in one line that the parent turns back into the exception that stopped it.

Why apart from :mod:`.toy`: the child's plumbing (a subprocess, its stderr, its report) is not the
toy's recipe or training; a failure in the child (a full disk, an allocation that failed) must
reach the command line as the same exception, told in one line, not as the child's traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["run_child", "report_failure"]

#: Prefix of the line in which the training child reports why it failed (a JSON object follows).
_CHILD_ERROR = "residual-response-child-error: "


def run_child(code: str, spec: dict, env_extra: dict, progress: bool) -> None:
    """Run ``python -c code`` with ``spec`` as its JSON argument and ``env_extra`` in its environment,
    forwarding its stderr (the progress bar) while ``progress``; raise what stopped it (:func:`_failure`).

    The child imports this same package, wherever it was imported from.
    """
    import residual_response

    env = dict(os.environ, **env_extra)
    package_root = str(Path(residual_response.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-c", code, json.dumps(spec)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        err_lines = []
        forward = progress
        for line in proc.stderr:  # forward the progress bar, keep the tail for an error message
            err_lines = (err_lines + [line])[-20:]
            if line.startswith(("Traceback", _CHILD_ERROR)):
                forward = False  # the failure is reported once, by the parent, in one line
            if forward:
                sys.stderr.write(line)
        status = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if status != 0:
        raise _failure(status, err_lines)


def _failure(code: int, err_lines: list[str]) -> BaseException:
    """The exception that stopped the training child, rebuilt from its report (an ``OSError`` with
    its errno, a ``MemoryError``), or a ``RuntimeError`` naming how it ended."""
    import signal

    for line in reversed(err_lines):
        if line.startswith(_CHILD_ERROR):
            try:
                info = json.loads(line[len(_CHILD_ERROR):])
            except ValueError:
                break
            if info.get("memory"):
                return MemoryError(info.get("message") or "out of memory")
            if info.get("errno") is not None:
                return OSError(int(info["errno"]), info.get("strerror") or info.get("message"), info.get("filename"))
            return RuntimeError(f"toy training failed in its child process: {info.get('type')}: {info.get('message')}")
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        why = " (the kernel's out-of-memory killer, or another process)" if -code == signal.SIGKILL else ""
        return RuntimeError(f"toy training's child process was killed by {name}{why}")
    tail = "".join(err_lines).strip().splitlines()
    return RuntimeError(f"toy training failed in its child process (exit {code}): {tail[-1] if tail else 'no message'}")


def report_failure(exc: BaseException) -> None:
    """In the child: report ``exc`` in the one line the parent reads (:data:`_CHILD_ERROR`), then exit
    (130 after an interrupt, else 1)."""
    from ..memory import allocation_failure
    from .loaded import _first_line

    info = {"type": type(exc).__name__, "message": _first_line(exc), "memory": allocation_failure(exc),
            "errno": getattr(exc, "errno", None), "strerror": getattr(exc, "strerror", None),
            "filename": None if getattr(exc, "filename", None) is None else str(exc.filename)}
    sys.stderr.write(_CHILD_ERROR + json.dumps(info) + "\n")
    sys.stderr.flush()
    sys.exit(130 if isinstance(exc, KeyboardInterrupt) else 1)
