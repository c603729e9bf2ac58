"""What the pipeline records about its steps: fingerprints (to skip unchanged steps) and the few numbers a person
wants per step in the pipeline report."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from nncli import __version__
from nncli.core.rundir import LOCK, MARKER
from nncli.recipe.load import fingerprint

# ---------------------------------------------------------------------------------------------- fingerprints

def strings(tree) -> list[str]:
    if isinstance(tree, str):
        return [tree]
    if isinstance(tree, dict):
        return [s for v in tree.values() for s in strings(v)]
    if isinstance(tree, list):
        return [s for v in tree for s in strings(v)]
    return []


def content_hash(p: Path) -> str:
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and f.name not in (MARKER, LOCK))
    for f in files:
        h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def step_fingerprint(cmd: str, recipe: dict, upstream: dict, pipeline_dir: Path) -> str:
    files = {}
    for s in strings(recipe):
        if len(s) > 4096 or "\n" in s:
            continue
        try:
            p = Path(s)
            if not p.is_absolute() or not p.exists():
                continue
            rp = p.resolve()
        except (OSError, ValueError):
            continue
        if rp == pipeline_dir or pipeline_dir in rp.parents:
            continue   # outputs of this pipeline: covered by the upstream run ids
        files[s] = content_hash(rp)
    return fingerprint({"nncli": __version__, "command": cmd, "recipe": recipe, "upstream": upstream, "inputs": files})


# ---------------------------------------------------------------------------------------------- summaries

def summary(cmd: str, r: dict | None) -> dict:
    """The few numbers a person wants per step, in the pipeline report."""
    if not r:
        return {}
    m: dict[str, Any] = {}
    if cmd in ("finetune", "distill"):
        for split in ("test", "validation"):
            if split in (r.get("metrics") or {}):
                sm = r["metrics"][split]
                m.update({f"{split}.accuracy": sm.get("accuracy"), f"{split}.macro_f1": sm.get("macro_f1")})
                break
        if cmd == "distill" and r.get("distill"):
            m.update(retention=r["distill"]["retention"]["accuracy"], speedup=r["distill"]["speedup_throughput"])
    elif cmd == "evaluate":
        x = r.get("metrics") or {}
        m.update({k: x.get(k) for k in ("accuracy", "macro_f1", "ece", "perplexity") if x.get(k) is not None})
        cal = (r.get("models") or [{}])[0].get("calibration") or {}
        if cal.get("ece_after") is not None:
            m["ece_after_calibration"] = cal["ece_after"]
    elif cmd == "quantize":
        chosen = next((c for c in r.get("candidates", []) if c.get("status") == "chosen"), None)
        if chosen:
            m.update(chosen=chosen["candidate"], speedup=chosen["speedup"], accuracy_drop_points=chosen["accuracy_drop"] * 100,
                     flip_rate=chosen["flip_rate"], size_mb=chosen["size_mb"])
    elif cmd == "export":
        p = r.get("parity") or {}
        m.update({k: p.get(k) for k in ("max_abs_diff", "flipped", "agreement") if k in p})
    elif cmd == "bench":
        res = r.get("results") or []
        if res:
            best = max(res, key=lambda x: x["throughput_per_second"])
            m.update(best_throughput=best["throughput_per_second"], best_backend=best["backend"], best_batch=best["batch_size"])
    elif cmd == "drift":
        m.update(drift_detected=r.get("drift_detected"), top_drifting=r.get("top_drifting"))
    return {"metrics": m, "artifacts": r.get("artifacts") or {}}


def markdown(report: dict) -> str:
    from nncli.core.markdown import table

    rows = []
    for s in report.get("steps", []):
        nums = ", ".join(f"{k} {fmt(v)}" for k, v in (s.get("metrics") or {}).items())
        if s.get("error"):
            nums = (nums + "; " if nums else "") + s["error"][:200]
        rows.append([s["name"], s["command"], s.get("status", "not run"), f"{s.get('seconds', 0):.1f}", nums])
    lines = [f"# Pipeline {report.get('name') or ''}: {report.get('status')}", ""]
    lines += table(["step", "command", "status", "seconds", "key numbers"], rows)
    if report.get("failed_step"):
        lines += ["", f"Stopped at step `{report['failed_step']}`."]
    return "\n".join(lines) + "\n"


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return ", ".join(map(str, v[:5]))
    return str(v)
