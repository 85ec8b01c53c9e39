"""Wall time and peak memory of a block of work (resident memory sampled in a thread, and CUDA peak)."""

from __future__ import annotations

import resource
import sys
import threading
import time
from dataclasses import dataclass, field

import torch


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


@dataclass
class Usage:
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    peak_rss_delta_mb: float = 0.0
    peak_gpu_mb: float | None = None


@dataclass
class track_usage:
    """Context manager: `with track_usage() as usage: ...` fills `usage` on exit."""

    interval: float = 0.05
    usage: Usage = field(default_factory=Usage)

    def __enter__(self) -> Usage:
        self._start_rss = _rss_bytes()
        self._peak = self._start_rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._t0 = time.perf_counter()
        return self.usage

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, _rss_bytes())

    def __exit__(self, *exc: object) -> None:
        self.usage.seconds = time.perf_counter() - self._t0
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, _rss_bytes())
        self.usage.peak_rss_mb = self._peak / 2**20
        self.usage.peak_rss_delta_mb = (self._peak - self._start_rss) / 2**20
        if torch.cuda.is_available():
            self.usage.peak_gpu_mb = torch.cuda.max_memory_allocated() / 2**20
