"""Peak resident memory of a block of code, sampled by a thread (shared by the benchmarks)."""

from __future__ import annotations

import threading
import time

import psutil


class PeakRss:
    """``with PeakRss() as rss: ...`` gives ``rss.start_mb`` (when the block starts),
    ``rss.peak_mb`` (the highest sample while it ran, every 5 ms) and ``rss.growth_mb``."""

    def __enter__(self) -> PeakRss:
        self.proc = psutil.Process()
        self.start = self.peak = self.proc.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc) -> None:
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self.start_mb, self.peak_mb = self.start / 2**20, self.peak / 2**20
        self.growth_mb = self.peak_mb - self.start_mb
