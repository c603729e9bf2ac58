"""Facts about this machine: CPU features, cores kept busy by other processes, torch threads."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


def set_threads(threads: int | None, adaptive: bool = False) -> int:
    """torch threads: the given number, else this process's share of the cores. With `adaptive`, cores that other
    processes keep busy are left to them: measured here, with one of two cores busy elsewhere, two torch threads
    trained 7.5x slower than one (each step waits for the thread that shares a core)."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    n = threads or max(1, (os.cpu_count() or 1) // world)
    if os.environ.get("NNCLI_ADAPTIVE_THREADS", "1") == "0":
        adaptive = False
    if threads is None and adaptive and world == 1 and n > 1:
        busy = busy_cores_elsewhere()
        if busy is not None and busy >= 0.6:
            fewer = max(1, n - int(round(busy)))
            if fewer < n:
                from nncli.core import console

                console.warn(f"other processes keep ~{busy:.1f} of {n} cores busy: using {fewer} torch thread(s) instead of {n} "
                             "(set train.threads to override)")
                n = fewer
    torch.set_num_threads(n)
    return n


def busy_cores_elsewhere(window: float = 0.3) -> float | None:
    """How many cores other processes kept busy over a short window (from /proc/stat), or None if unknown."""
    import time

    def sample():
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(vals), vals[3] + (vals[4] if len(vals) > 4 else 0), int(fields[11]) + int(fields[12])

    try:
        t0, i0, s0 = sample()
        time.sleep(window)
        t1, i1, s1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    total = t1 - t0
    if total <= 0:
        return None
    cores = os.cpu_count() or 1
    busy = (total - (i1 - i0) - (s1 - s0)) / total * cores
    return max(0.0, busy)
