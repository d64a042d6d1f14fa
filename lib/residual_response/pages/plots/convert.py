"""vl-convert's static renderings (SVG, PNG) that survive an address-space limit.

vl-convert draws charts with V8, and V8 reserves tens of gigabytes of address space up front
(its pointer cage and its Oilpan heap cage) whatever it then uses. Under ``ulimit -v`` (RLIMIT_AS)
the reservation fails and V8 aborts the whole process, ``Fatal process out of memory``, status
133, with no chance of cleanup: a page kernel, ``show --png`` or the book build would die
mid-work. Without such a limit the conversions run in this process, as before; under one they
run in a child process, whose death is turned into :class:`V8Unavailable`, one sentence that
names the limit. The caller then leaves out what needs V8 (a chart's SVG fallback, with a
warning) or stops with one line (a PNG).

The JavaScript bundle (:func:`.render.vega_bundle_js`) needs no V8 and runs in this process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

__all__ = ["V8Unavailable", "address_space_limit", "check_v8", "vegalite_to_png", "vegalite_to_svg"]


class V8Unavailable(RuntimeError):
    """vl-convert's V8 cannot start here (an address-space limit); the message names the limit."""


#: The child: one vl-convert call, its arguments as JSON on stdin, its result on stdout.
_CHILD = """
import json, sys
import vl_convert as vlc
request = json.loads(sys.stdin.buffer.read())
out = getattr(vlc, request["fn"])(**request["kwargs"])
sys.stdout.buffer.write(out.encode("utf-8") if isinstance(out, str) else bytes(out))
"""

_unavailable: str | None = None  # the message, once a child has shown that V8 cannot start here


def address_space_limit() -> int | None:
    """The soft RLIMIT_AS of this process in bytes, or ``None`` when there is none."""
    try:
        import resource
    except ImportError:
        return None
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (OSError, ValueError, AttributeError):
        return None
    return None if soft == resource.RLIM_INFINITY or soft < 0 else int(soft)


def _message(limit: int) -> str:
    from ...memory import human_bytes

    return (f"vl-convert's JavaScript engine (V8) cannot start under this process's address-space limit of "
            f"{human_bytes(limit)} (ulimit -v): it reserves far more address space than it uses; raise or "
            f"remove the limit (ulimit -v unlimited)")


def _call(fn: str, **kwargs: Any):
    """``vl_convert.<fn>(**kwargs)``: here without an address-space limit, in a child process under one."""
    global _unavailable
    limit = address_space_limit()
    if limit is None:
        import vl_convert as vlc

        return getattr(vlc, fn)(**kwargs)
    if _unavailable is not None:
        raise V8Unavailable(_unavailable)
    request = json.dumps({"fn": fn, "kwargs": kwargs}).encode("utf-8")
    proc = subprocess.run([sys.executable, "-c", _CHILD], input=request, capture_output=True)
    if proc.returncode == 0:
        return proc.stdout.decode("utf-8") if fn.endswith("_svg") else proc.stdout
    err = proc.stderr.decode("utf-8", errors="replace")
    if "Fatal process out of memory" in err or proc.returncode in (133, -5, -6, -11):
        _unavailable = _message(limit)
        raise V8Unavailable(_unavailable)
    lines = [l for l in err.strip().splitlines() if l.strip()]
    raise RuntimeError(f"vl-convert failed: {lines[-1] if lines else f'exit status {proc.returncode}'}")


def vegalite_to_svg(spec: dict, vl_version: str) -> str:
    """``vl_convert.vegalite_to_svg``, safe under an address-space limit (:class:`V8Unavailable`)."""
    return _call("vegalite_to_svg", vl_spec=spec, vl_version=vl_version)


def vegalite_to_png(spec: dict, vl_version: str, scale: float = 1) -> bytes:
    """``vl_convert.vegalite_to_png``, safe under an address-space limit (:class:`V8Unavailable`)."""
    return _call("vegalite_to_png", vl_spec=spec, vl_version=vl_version, scale=scale)


def check_v8() -> None:
    """Raise :class:`V8Unavailable` now if a chart could not be rendered here (a one-chart probe,
    in a child process, only under an address-space limit)."""
    if address_space_limit() is None:
        return
    # vl-convert's own default Vega-Lite: the probe asks only whether V8 starts (and imports nothing
    # of .render, which imports this module)
    _call("vegalite_to_svg", vl_spec={"data": {"values": [{"x": 1}]}, "mark": "point",
                                      "encoding": {"x": {"field": "x"}}})
