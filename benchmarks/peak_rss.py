"""Peak resident memory of a block of code (shared by the benchmarks).

On Linux the kernel keeps the process's peak RSS (``VmHWM`` in ``/proc/self/status``) and
resets it on request (``echo 5 > /proc/self/clear_refs``, Linux >= 4.0): the peak is then
exact and costs nothing while the block runs. Elsewhere a thread samples the RSS every
5 ms; that thread competes with the measured code for the CPU and the GIL (it slowed the
face stage by up to a fifth in a timed run), so never time a block inside a sampled one.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import psutil

STATUS, CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def _kernel_peak_bytes() -> int:
    return int(re.search(r"^VmHWM:\s+(\d+) kB", STATUS.read_text(), re.M).group(1)) * 1024


def _reset_kernel_peak() -> bool:
    """Reset the kernel's peak-RSS mark; False where that is not possible."""
    try:
        CLEAR_REFS.write_text("5")
        _kernel_peak_bytes()
    except (OSError, AttributeError):  # no procfs, no permission, or no VmHWM line
        return False
    return True


class PeakRss:
    """``with PeakRss() as rss: ...`` gives ``rss.start_mb`` (when the block starts),
    ``rss.peak_mb`` (the highest RSS while it ran), ``rss.growth_mb`` and ``rss.method``
    ("kernel" or "sampled")."""

    def __enter__(self) -> PeakRss:
        self.proc = psutil.Process()
        self.start = self.peak = self.proc.memory_info().rss
        self.method = "kernel" if _reset_kernel_peak() else "sampled"
        if self.method == "sampled":
            self.running = True
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc) -> None:
        if self.method == "kernel":
            self.peak = max(self.peak, _kernel_peak_bytes())
        else:
            self.running = False
            self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self.start_mb, self.peak_mb = self.start / 2**20, self.peak / 2**20
        self.growth_mb = self.peak_mb - self.start_mb
