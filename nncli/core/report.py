"""report.json, the environment a run saw, timers and gates."""

from __future__ import annotations

import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nncli import __version__
from nncli.core.errors import UsageError

SCHEMA_VERSION = 2   # 2: `command` names the command and `task` the kind of model (1 had task=command)


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


class RunReport(BaseModel):
    """What every command writes as report.json and returns to the CLI (and prints under --json).

    `command` is the nncli command that ran; `task` what kind of model it was about (sequence-classification,
    causal-lm, ...). Sections that belong to one command (training, parity, candidates, ...) are extra fields. It
    reads like the mapping it is written as (`r["metrics"]`, `r.get(...)`, `r.update(...)`), so renderers and the
    JSON writer need nothing special."""

    model_config = ConfigDict(extra="allow")

    schema_version: int = SCHEMA_VERSION
    nncli_version: str = __version__
    command: str
    task: str | None = None
    name: str | None = None
    status: Literal["running", "succeeded", "failed", "interrupted", "dry-run", "pruned", "error"] = "running"
    exit_code: int | None = None
    started_at: str = Field(default_factory=lambda: now())
    finished_at: str | None = None
    metrics: dict = Field(default_factory=dict)
    gates: list[dict] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    artifacts: dict = Field(default_factory=dict)
    timings: dict = Field(default_factory=dict)
    environment: dict = Field(default_factory=dict)
    data: dict = Field(default_factory=dict)
    error: str | None = None

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self, key, value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self.keys()

    def keys(self) -> list[str]:
        return list(type(self).model_fields) + list(self.__pydantic_extra__ or {})

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default) if key in self else default

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            setattr(self, key, default)
        return self[key]

    def update(self, other: dict | None = None, **kw: Any) -> None:
        for k, v in {**(other or {}), **kw}.items():
            setattr(self, k, v)

    def to_dict(self) -> dict:
        return {k: self[k] for k in self.keys()}


def command_of(r: dict) -> str | None:
    """The command that wrote a report.json of any schema version (schema 1 named it `task`)."""
    return r.get("command") if (r.get("schema_version") or 1) >= 2 else r.get("task")


def task_of(r: dict) -> str | None:
    """The kind of model a report is about (schema 1 kept it in finetune_task / evaluation_task / export_task)."""
    if (r.get("schema_version") or 1) >= 2:
        return r.get("task")
    return r.get("finetune_task") or r.get("evaluation_task") or r.get("export_task") or "sequence-classification"


def base_report(command: str, name: str | None = None, *, task: str | None = None) -> RunReport:
    return RunReport(command=command, name=name, task=task)


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
    """--min/--max METRIC=NUMBER (or NUMBER%); NaN and infinity are refused: a gate on them decides nothing."""
    import math

    out = {}
    for item in items or []:
        metric, sep, value = item.partition("=")
        try:
            if not sep or not metric.strip():
                raise ValueError
            out[metric.strip()] = float(value.strip().rstrip("%")) / (100 if value.strip().endswith("%") else 1)
        except ValueError:
            raise UsageError(f"--{op} {item!r} is not METRIC=NUMBER", f"write it as --{op} accuracy=0.85") from None
        if not math.isfinite(out[metric.strip()]):
            raise UsageError(f"--{op} {item!r}: the threshold must be a finite number",
                             f"write it as --{op} {metric.strip()}=0.85")
    return out


def parse_slowdown(value: str, flag: str = "--fail-if-slower") -> float:
    """A tolerated throughput drop, as a fraction in (0, 1): written `10%` (a percentage) or `0.10` (a fraction).

    A bare number of 1 or more is refused as ambiguous (is `5` five percent?), and so are 0, 100% and more, and NaN."""
    import math

    v = value.strip()
    pct = v.endswith("%")
    try:
        x = float(v[:-1].strip() if pct else v)
    except ValueError:
        raise UsageError(f"{flag} {value!r} is not a percentage or a fraction", f"e.g. {flag} 10% (or {flag} 0.10)") from None
    if not math.isfinite(x):
        raise UsageError(f"{flag} {value!r}: must be a finite number", f"e.g. {flag} 10% (or {flag} 0.10)")
    if not pct and x >= 1:
        raise UsageError(f"{flag} {value!r} is ambiguous: a fraction must be below 1",
                         f"write a percentage with %, e.g. {flag} {x:g}% (or {flag} {x / 100:g} as a fraction)")
    frac = x / 100 if pct else x
    if not 0 < frac < 1:
        raise UsageError(f"{flag} {value!r} is out of range: the tolerated drop must be above 0% and below 100%",
                         f"e.g. {flag} 10% (or {flag} 0.10)")
    return frac


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


def evaluate_gates(gates: list[dict], values: dict[str, float], *, intervals: dict[str, list[float]] | None = None,
                   sizes: dict[str, int] | None = None) -> list[dict]:
    """Each gate with its value, the sample size behind it and, where the metric has a 95% interval, the decision
    taken on the interval's bound (a minimum must hold for the lower bound, a maximum for the upper one): a gate
    cannot pass by the luck of a small sample."""
    out = []
    for g in gates:
        metric = g["metric"]
        v = values.get(metric)
        ci = (intervals or {}).get(metric)
        bound = v if ci is None or v is None else (ci[0] if g["op"] == ">=" else ci[1])
        passed = bound is not None and (bound >= g["threshold"] if g["op"] == ">=" else bound <= g["threshold"])
        row = {**g, "value": v, "passed": bool(passed), "n": (sizes or {}).get(metric)}
        if ci is not None:
            row.update(ci95=list(ci), decided_on="lower bound" if g["op"] == ">=" else "upper bound")
        out.append(row)
    return out


def gates_of(spec) -> list[dict]:
    """The gates of a recipe's `gates:` section (min: {metric: x}, max: {metric: y})."""
    return parse_gates(spec.min, spec.max)


def describe_failed(failed: list[dict]) -> str:
    """One line naming every failed gate: value, the bound it was decided on, threshold, rows, and the model when an
    evaluation gated several."""
    parts = []
    for g in failed:
        model = f" ({Path(g['model']).name})" if g.get("model") else ""
        if g["value"] is None:
            parts.append(f"{g['metric']} missing{model}")
            continue
        how = f" ({g['decided_on']} {g['ci95'][0 if g['op'] == '>=' else 1]:.4f})" if g.get("decided_on") else ""
        n = f", n={g['n']}" if g.get("n") else ""
        parts.append(f"{g['metric']} {g['value']:.4f}{how} {g['op']} {g['threshold']}{n}{model}")
    return f"{len(failed)} gate(s) failed: " + ", ".join(parts)


def finish(report: RunReport, out, gates: list[dict], *, card: str | None = None, write: bool = True) -> RunReport:
    """The one ending of every command: gates decide the status, the model card and report.json are written (by the
    main process), the run directory is marked complete, and a failed gate raises GateFailed (exit 5)."""
    from nncli.core.errors import GateFailed

    failed = [g for g in gates if not g["passed"]]
    report.gates = gates
    report.update(status="failed" if failed else "succeeded", exit_code=5 if failed else 0, finished_at=now())
    if out is not None and write:
        if card is not None:
            out.write_text("README.md", card)
            report.artifacts["model_card"] = "README.md"
        out.write_json("report.json", report)
        out.complete()
    if failed:
        where = f"see {out.path}/report.json" if out is not None else "rerun with --output DIR for the full report"
        raise GateFailed(describe_failed(failed), where, report=report)
    return report
