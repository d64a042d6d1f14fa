"""How much memory a run may still take, and allocation failures told in one line.

Why more than ``MemAvailable``: a process can hit a lower wall first. ``ulimit -v`` (RLIMIT_AS)
bounds its address space, RLIMIT_DATA its data segment, and a container or a batch job's
cgroup (``memory.max`` in cgroup v2, ``memory.limit_in_bytes`` in v1) its resident memory. A
run that passes a bound read from ``MemAvailable`` alone computes for minutes and then dies in an
allocation deep inside torch. :func:`memory_headroom` is the smallest of the four, each less what
is already used, and says which one it is.

An allocation that fails anyway surfaces as ``MemoryError`` (Python, numpy) or as a torch
``RuntimeError`` (``DefaultCPUAllocator: can't allocate memory``, ``CUDA out of memory``);
:func:`allocation_failure` recognises both and :func:`describe_allocation_failure` words the
one line the command line prints: the size that failed, the bound, what to lower.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Headroom", "memory_headroom", "allocation_failure", "describe_allocation_failure", "human_bytes"]


def human_bytes(n: float) -> str:
    """``1.5 GiB``: three significant digits and a binary unit."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"


@dataclass(frozen=True)
class Headroom:
    """Bytes a process may still allocate, and the bound that sets it (words for a message)."""

    bytes: int
    source: str


def _meminfo_available() -> int | None:
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
        return None


def _status_kib(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmSize``, ``VmData``) in bytes."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _rlimit_headroom() -> list[Headroom]:
    try:
        import resource
    except ImportError:
        return []
    out = []
    for name, limit_name, used_field in (("RLIMIT_AS", "address-space limit (ulimit -v)", "VmSize"),
                                         ("RLIMIT_DATA", "data-segment limit (ulimit -d)", "VmData")):
        res = getattr(resource, name, None)
        if res is None:
            continue
        try:
            soft, _ = resource.getrlimit(res)
        except (OSError, ValueError):
            continue
        if soft == resource.RLIM_INFINITY or soft < 0:
            continue
        used = _status_kib(used_field) or 0
        out.append(Headroom(max(soft - used, 0), f"the {limit_name} of {human_bytes(soft)}"))
    return out


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text or text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


#: cgroup v1 reports "no limit" as a huge number near 2**63 rounded to pages.
_V1_UNLIMITED = 1 << 60


def _cgroup_headroom(root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")) -> list[Headroom]:
    """The smallest ``limit - usage`` of this process's cgroup and its ancestors (v2 and v1)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if controllers == "":  # v2: "0::/path"
            base, limit_file, usage_file, words = root, "memory.max", "memory.current", "memory.max"
        elif "memory" in controllers.split(","):  # v1: "N:memory:/path"
            base, limit_file, usage_file, words = root / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes", \
                "memory.limit_in_bytes"
        else:
            continue
        rel_path = Path(rel.lstrip("/"))
        # inside a container the cgroup namespace may show "/" while the files sit at the root
        candidates = [base / rel_path, *[base / p for p in rel_path.parents]]
        for folder in candidates:
            limit = _read_int(folder / limit_file)
            if limit is None or limit >= _V1_UNLIMITED:
                continue
            usage = _read_int(folder / usage_file) or 0
            out.append(Headroom(max(limit - usage, 0), f"the cgroup's {words} of {human_bytes(limit)}"))
    return out


def memory_headroom() -> Headroom:
    """The smallest of ``MemAvailable``, the RLIMIT_AS and RLIMIT_DATA room left, and the cgroup's.

    Each bound is taken less what is in use (``VmSize``, ``VmData``, ``memory.current``), so the
    result is what this process may still allocate.
    """
    found = []
    avail = _meminfo_available()
    if avail is not None:
        found.append(Headroom(avail, "the available memory (MemAvailable)"))
    found += _rlimit_headroom()
    found += _cgroup_headroom()
    if not found:
        return Headroom(1 << 40, "no known bound")
    return min(found, key=lambda h: h.bytes)


_TORCH_ALLOC = re.compile(r"can't allocate memory|out of memory|DefaultCPUAllocator|Cannot allocate memory",
                          re.IGNORECASE)
_SIZE_BYTES = re.compile(r"(?:tried to )?allocate (\d+) bytes", re.IGNORECASE)
_SIZE_UNIT = re.compile(r"(?:tried to )?allocate ([\d.]+) ?(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB)\b", re.IGNORECASE)
_UNITS = {"b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
          "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}


def allocation_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (or the exception it was raised ``from``) is a failed allocation."""
    for e in (exc, exc.__cause__):
        if e is None:
            continue
        if isinstance(e, MemoryError):
            return True
        if isinstance(e, RuntimeError) and _TORCH_ALLOC.search(str(e)):
            return True
        if isinstance(e, OSError) and getattr(e, "errno", None) == 12:  # ENOMEM
            return True
    return False


def failed_size(exc: BaseException) -> int | None:
    """The size of the failed allocation, where the message states it (torch, numpy), in bytes."""
    text = str(exc)
    m = _SIZE_BYTES.search(text)
    if m:
        return int(m.group(1))
    m = _SIZE_UNIT.search(text)
    if m:
        return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    return None


def describe_allocation_failure(exc: BaseException, lower: str) -> str:
    """One sentence for a failed allocation: its size, the bound in force, and ``lower`` (what to reduce)."""
    size = failed_size(exc)
    head = "out of memory" + (f": an allocation of {human_bytes(size)} failed" if size else "")
    bound = memory_headroom()
    return f"{head} ({human_bytes(bound.bytes)} left under {bound.source}); {lower}"
