"""Timing discipline for latency and throughput: warm-up runs first, then repeats until both a minimum count and a
minimum time are reached; percentiles of the repeats."""

from __future__ import annotations

import time

import numpy as np


def measure(fn, *, warmup: int = 3, min_repeats: int = 10, min_seconds: float = 2.0, max_repeats: int = 1000) -> dict:
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_repeats or (time.perf_counter() - start < min_seconds and len(times) < max_repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "repeats": len(times)}
