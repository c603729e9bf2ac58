"""report.json, the environment a run saw, timers and gates."""

from __future__ import annotations

import os
import platform
import sys
import time
from datetime import datetime, timezone

from nncli import __version__
from nncli.core.errors import UsageError

SCHEMA_VERSION = 1

def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def environment(threads: int | None = None) -> dict:
    env = {"python": platform.python_version(), "platform": platform.platform(), "nncli": __version__}
    env.update(package_versions())
    from nncli.core.machine import cpu_flags, cpu_name

    flags = cpu_flags()
    env["cpu"] = cpu_name()
    env["cpu_features"] = sorted(f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
                                             "amx_int8") if f in flags)
    env["cores"] = os.cpu_count()
    if threads is None and "torch" in sys.modules:
        threads = sys.modules["torch"].get_num_threads()
    env["threads"] = threads
    env["world_size"] = int(os.environ.get("WORLD_SIZE", "1"))
    return env


# report key -> distribution name: the installed versions, read from the package metadata (a module's
# __version__ is missing on some, e.g. optimum, and only imported modules have one)
PACKAGES = {"torch": "torch", "transformers": "transformers", "peft": "peft", "datasets": "datasets", "accelerate": "accelerate",
            "optimum": "optimum", "optimum_onnx": "optimum-onnx", "onnxruntime": "onnxruntime", "sklearn": "scikit-learn"}


def package_versions() -> dict[str, str]:
    """Installed versions of the stack nncli runs on; a package that is not installed is left out."""
    from importlib import metadata

    out = {}
    for key, dist in PACKAGES.items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def base_report(task: str, name: str | None = None) -> dict:
    return {"schema_version": SCHEMA_VERSION, "nncli_version": __version__, "task": task, "name": name,
            "status": "running", "exit_code": None, "started_at": now(), "finished_at": None,
            "metrics": {}, "gates": [], "warnings": [], "artifacts": {}, "timings": {}, "environment": {}, "data": {}}


def peak_memory_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class Timer:
    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return round(time.perf_counter() - self.start, 3)


# ---------------------------------------------------------------------------------------------- gates

OPS = {"min": ">=", "max": "<="}


def parse_gates(mins: dict[str, float] | None, maxs: dict[str, float] | None) -> list[dict]:
    gates = []
    for op, table in (("min", mins or {}), ("max", maxs or {})):
        for metric, threshold in table.items():
            gates.append({"metric": metric, "op": OPS[op], "threshold": float(threshold)})
    return gates


def parse_gate_flags(items: list[str] | None, op: str) -> dict[str, float]:
    out = {}
    for item in items or []:
        metric, sep, value = item.partition("=")
        try:
            if not sep or not metric.strip():
                raise ValueError
            out[metric.strip()] = float(value.strip().rstrip("%")) / (100 if value.strip().endswith("%") else 1)
        except ValueError:
            raise UsageError(f"--{op} {item!r} is not METRIC=NUMBER", f"write it as --{op} accuracy=0.85")
    return out


def check_gate_metrics(gates: list[dict], known: list[str]) -> None:
    """Refuse unknown metric names before any work is done."""
    import difflib

    bad = []
    for g in gates:
        if g["metric"] not in known:
            close = difflib.get_close_matches(g["metric"], known, n=1)
            bad.append(f"gate {g['metric']}: unknown metric" + (f"; did you mean '{close[0]}'?" if close else ""))
    if bad:
        raise UsageError(f"{len(bad)} gate(s) name unknown metrics", f"known metrics: {', '.join(known)}", details=bad)


def evaluate_gates(gates: list[dict], values: dict[str, float]) -> list[dict]:
    out = []
    for g in gates:
        v = values.get(g["metric"])
        passed = v is not None and (v >= g["threshold"] if g["op"] == ">=" else v <= g["threshold"])
        out.append({**g, "value": v, "passed": bool(passed)})
    return out
