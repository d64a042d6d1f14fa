"""What the bench measures with: a :class:`Clock` for time and a :class:`MemoryLog` for peak memory.

Why objects: every scenario receives the clock it times with and the log it records memory in,
so that two benches (a test beside a run, say) never share a clock through global state, and a
reader of a scenario sees what it measures with.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import threading
import time
import types
from typing import Callable, Iterator, TypeVar

import torch

__all__ = ["CLOCKS", "Clock", "MemoryLog", "PeakRSS", "PEAK_MEM_METHOD", "rss_mb", "maxrss_mb"]

R = TypeVar("R")

#: The clocks a bench can time with. "wall": elapsed seconds (what a user waits). "cpu": CPU
#: seconds of this process, all its threads (time.process_time). Why both: on a CPU shared with
#: other jobs the wall clock also counts the time the bench waits for a core, and that varies
#: between runs by a factor of two or more; the CPU time counts only the work done (``make bench``
#: uses it). On a GPU only the wall clock means anything (the CPU waits for the device).
CLOCKS = types.MappingProxyType({"wall": time.perf_counter, "cpu": time.process_time})

PEAK_MEM_METHOD = (
    "resident set size (RSS) of the bench process, sampled every 5 ms from /proc/self/statm by a "
    "thread during each phase (peak_mem_by_phase_mb), and the kernel's high-water mark "
    "getrusage(RUSAGE_SELF).ru_maxrss for the whole run (peak_mem_mb), model weights included; on CUDA "
    "also torch.cuda.max_memory_allocated per phase"
)


class Clock:
    """Seconds on one of :data:`CLOCKS`, read after the device has finished its queued work.

    Why the sync: CUDA kernels run asynchronously, so a clock read without waiting for them
    times the launches, not the work. ``kind`` is ``"wall"`` or ``"cpu"``; ``device`` the device
    the timed work runs on (``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``). The CPU
    clock on a CUDA device is refused: it would count the host's waiting, not the device's work.
    """

    def __init__(self, kind: str = "wall", device: str | torch.device = "cpu"):
        if kind not in CLOCKS:
            raise ValueError(f"unknown clock {kind!r}; allowed: {', '.join(CLOCKS)}")
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
        if kind == "cpu" and self.device.type == "cuda":
            raise ValueError("clock='cpu' does not measure GPU work; use clock='wall' with device cuda")
        self.kind = kind
        self._read = CLOCKS[kind]

    def __repr__(self) -> str:
        return f"Clock({self.kind!r}, {str(self.device)!r})"

    def now(self) -> float:
        """The clock's reading (seconds from an arbitrary origin) once the device is idle."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return self._read()

    def time(self, fn: Callable[[], R]) -> tuple[R, float]:
        """``(fn(), seconds it took)``."""
        start = self.now()
        out = fn()
        return out, self.now() - start

    @property
    def description(self) -> str:
        """What one second of this clock is, for the record's definitions."""
        return "CPU seconds of the bench process (time.process_time)" if self.kind == "cpu" else "wall-clock seconds"


def rss_mb() -> float:
    """Resident set size of this process now, in MiB (NaN where ``/proc`` is missing)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return float("nan")


def maxrss_mb() -> float:
    """The kernel's high-water mark of this process's RSS, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


class PeakRSS:
    """Highest RSS seen while the block runs (a thread samples /proc/self/statm every ``interval`` s).

    On a CUDA ``device`` also the peak of ``torch.cuda.max_memory_allocated`` (``cuda_peak``, MiB).
    """

    def __init__(self, device: str | torch.device = "cpu", interval: float = 0.005):
        self.device, self.interval, self.peak, self.cuda_peak = torch.device(device), interval, rss_mb(), None
        self._stop = threading.Event()

    def _run(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())
        if self.device.type == "cuda":
            self.cuda_peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        return False


class MemoryLog:
    """Peak memory by phase of a bench: the highest value over every block run under one phase name.

    ``rss_mb`` maps a phase to its peak RSS (MiB); ``cuda_mb`` to its peak CUDA allocation (MiB,
    empty on a CPU).
    """

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.rss_mb: dict[str, float] = {}
        self.cuda_mb: dict[str, float] = {}

    @contextlib.contextmanager
    def track(self, phase: str) -> Iterator[None]:
        """Record the peak memory of the block under ``phase``."""
        peak = PeakRSS(self.device)
        with peak:
            yield
        self.rss_mb[phase] = max(self.rss_mb.get(phase, 0.0), peak.peak)
        if peak.cuda_peak is not None:
            self.cuda_mb[phase] = max(self.cuda_mb.get(phase, 0.0), peak.cuda_peak)
