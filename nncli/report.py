"""Run directory, atomic writes, report.json, gates, environment. See GUIDE §4.

Writes are atomic (temp file, then rename), so a crash leaves the old file or the new one, never a
torn one; a run that did not finish never looks finished (report.json says status=running/failed/
interrupted until the very end).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import __version__
from .errors import EnvironmentProblem, UsageError

SCHEMA_VERSION = 1
RUN_MARKERS = ("report.json", "recipe.yaml")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _disk_error(e: OSError, what: Path) -> EnvironmentProblem:
    if e.errno == errno.ENOSPC:
        return EnvironmentProblem(f"disk full while writing {what}", "free disk space, or choose another --output on a larger disk")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return EnvironmentProblem(f"cannot write {what}: {e.strerror}", "choose a writable --output directory")
    return EnvironmentProblem(f"cannot write {what}: {e.strerror or e}", "check the output location")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except OSError as e:
        raise _disk_error(e, path) from e


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def _json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, set):
        return sorted(o)
    return str(o)


@contextmanager
def atomic_dir(final: Path):
    """Yield a temp directory next to `final`; on success it replaces `final` in one rename."""
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    except OSError as e:
        raise _disk_error(e, final) from e
    try:
        yield tmp
        old = final.with_name(f".{final.name}.old")
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _disk_error(e, final) from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, other: str) -> Path:
        return self.path / other

    def prepare(self, *, resume: bool = False, overwrite: bool = False) -> None:
        p = self.path
        if p.exists() and not p.is_dir():
            raise UsageError(f"output path exists and is a file: {p}", "choose a directory path for --output")
        if p.exists() and any(p.iterdir()) and not resume:
            if not overwrite:
                raise UsageError(f"output directory {p} exists and is not empty",
                                 "pass --overwrite to replace it, --resume to continue the run, or choose another --output")
            if not any((p / m).exists() for m in RUN_MARKERS):
                raise UsageError(f"output directory {p} is not an nncli run directory; refusing to delete it with --overwrite",
                                 "choose an empty or new --output directory")
            for child in p.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        try:
            p.mkdir(parents=True, exist_ok=True)
            probe = p / ".nncli-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise _disk_error(e, p) from e

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.path / name, obj)

    def write_text(self, name: str, text: str) -> None:
        atomic_write_text(self.path / name, text)

    def append_jsonl(self, name: str, obj: Any) -> None:
        try:
            with open(self.path / name, "a", encoding="utf-8") as f:
                f.write(json.dumps(obj, default=_json_default) + "\n")
        except OSError as e:
            raise _disk_error(e, self.path / name) from e


def environment(threads: int | None = None) -> dict:
    env = {"python": platform.python_version(), "platform": platform.platform(), "nncli": __version__}
    for mod in ("torch", "transformers", "peft", "datasets", "optimum", "onnxruntime", "sklearn"):
        m = sys.modules.get(mod)
        if m is not None:
            env[mod] = getattr(m, "__version__", "?")
    from .models import cpu_flags, cpu_name

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


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Inside the block, SIGTERM raises KeyboardInterrupt like Ctrl-C does, so cleanup code runs for both."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class StopFlag:
    """SIGINT/SIGTERM set a flag that the job checks at safe points (raising from a signal handler in the middle of
    native code can abort the process instead of cleaning up); a second signal stops at once."""

    def __init__(self, message: str):
        self.signal = None
        self.message = message
        self._old = {}

    def install(self) -> "StopFlag":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        import signal

        if self.signal:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name
        from . import console

        console.warn(f"{self.signal} received: {self.message} (again to stop at once)")

    def check(self) -> None:
        if self.signal:
            raise KeyboardInterrupt

    def restore(self) -> None:
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}
