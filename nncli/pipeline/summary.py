"""`nncli report RUN_DIR...`: runs side by side (metrics, sizes, speeds) and a Markdown summary for a pull request."""

from __future__ import annotations

from pathlib import Path

from nncli.core.atomic import atomic_write_text
from nncli.core.errors import InputError
from nncli.core.markdown import table


def collect(paths: list[str]) -> tuple[list[dict], list[Path]]:
    """One row per run (a pipeline gives one per step), and every report.json that was read."""
    from nncli.core.artifacts import PipelineReport, Report, read_artifact

    rows, read = [], []
    for p in paths:
        d = Path(p)
        f = d / "report.json" if d.is_dir() else d
        if not f.exists():
            raise InputError(f"{p}: no report.json", "pass run directories written by nncli (or their report.json files)")
        r = read_artifact(f, Report)
        read.append(f)
        if r.kind == "pipeline":
            for s in read_artifact(f, PipelineReport).steps:
                sub = Path(s.output) / "report.json"
                if sub.exists():
                    rows.append(_safe_row(f"{d.name}/{s.name}", read_artifact(sub, Report).model_dump(), s.status, sub))
                    read.append(sub)
                else:
                    rows.append({"run": f"{d.name}/{s.name}", "task": s.command, "status": s.status})
        else:
            rows.append(_safe_row(d.name if d.is_dir() else d.parent.name, r.model_dump(), None, f))
    return rows, read


def _safe_row(name: str, r: dict, step_status: str | None, f: Path) -> dict:
    try:
        return _row(name, r, step_status)
    except (AttributeError, TypeError, KeyError, ValueError, IndexError) as e:
        raise InputError(f"{f}: unexpected content for a {r.get('task') or 'run'} report ({type(e).__name__}: {str(e)[:80]})",
                         "re-run the command that wrote it") from None


def _size_mb(artifact_dir: Path) -> float | None:
    files = [f for pat in ("*.safetensors", "*.onnx") for f in artifact_dir.glob(pat)]
    return round(sum(f.stat().st_size for f in files) / 1e6, 1) if files else None


def _row(name: str, r: dict, step_status: str | None) -> dict:
    from nncli.core.report import command_of, task_of

    task = command_of(r)
    row = {"run": name, "task": task, "status": step_status or r.get("status")}
    m = r.get("metrics") or {}
    if task == "finetune" and task_of(r) == "causal-lm":
        split = "test" if "test" in m else "validation"
        if split in m:
            row.update(split=split, perplexity=m[split].get("perplexity"),
                       note=f"{split} loss {m[split].get('loss', float('nan')):.4f}")
    elif task == "sweep":
        b = r.get("best") or {}
        row.update(note=f"best trial {b.get('number')}: {r.get('study', {}).get('metric')} {b.get('value', float('nan')):.4f} "
                        f"({(r.get('counts') or {})})")
        if b.get("test"):
            row.update(accuracy=b["test"].get("accuracy"), macro_f1=b["test"].get("macro_f1"))
    elif task == "explain":
        f = r.get("faithfulness") or {}
        row.update(note="; ".join(f"{k} comprehensiveness {v['comprehensiveness']:.3f} (random "
                                  f"{v['comprehensiveness_random']:.3f})"
                                  for k, v in f.items()))
    elif task in ("finetune", "distill"):
        split = "test" if "test" in m else "validation"
        if split in m:
            row.update(split=split, accuracy=m[split].get("accuracy"), macro_f1=m[split].get("macro_f1"))
        row["train_samples_per_second"] = (r.get("timings") or {}).get("train_samples_per_second")
        if task == "distill" and r.get("distill"):
            dd = r["distill"]
            row.update(retention=dd["retention"]["accuracy"], speedup=dd["speedup_throughput"],
                       throughput=dd["student"]["throughput_per_second"], latency_ms=dd["student"]["latency_ms_batch1"],
                       size_mb=dd["student"]["size_mb"])
    elif task == "evaluate":
        row.update(split="eval", accuracy=m.get("accuracy"), macro_f1=m.get("macro_f1"), ece=m.get("ece"))
    elif task == "quantize":
        c = next((c for c in r.get("candidates", []) if c.get("status") == "chosen"), None)
        if c:
            row.update(accuracy=c.get("accuracy"), speedup=c.get("speedup"), throughput=c.get("throughput_per_second"),
                       latency_ms=c.get("latency_ms_batch1"), size_mb=c.get("size_mb"), note=c["candidate"])
    elif task == "export":
        p = r.get("parity") or {}
        row.update(note=f"parity max |dlogit| {p.get('max_abs_diff', float('nan')):.2e}, flipped {p.get('flipped')}")
        out = (r.get("artifacts") or {}).get("model")
        if out and Path(out).is_dir():
            row["size_mb"] = _size_mb(Path(out))
    elif task == "bench":
        res = r.get("results") or []
        if res:
            best = max(res, key=lambda x: x["throughput_per_second"])
            b1 = [x for x in res if x["batch_size"] == 1]
            row.update(throughput=best["throughput_per_second"], latency_ms=min(x["p50_ms"] for x in b1) if b1 else None,
                       note=f"best: {Path(best['model'].rstrip('/')).name} {best['backend']} batch {best['batch_size']}")
    elif task == "drift":
        row.update(note=("DRIFT: " + ", ".join(r.get("top_drifting") or [])) if r.get("drift_detected") else "no drift")
    failed = [g for g in r.get("gates") or [] if not g.get("passed", True)]
    if failed:
        row["failed_gates"] = [g.get("metric") for g in failed]
    return row


COLUMNS = [("run", "run"), ("task", "task"), ("status", "status"), ("accuracy", "accuracy"), ("macro_f1", "macro-F1"),
           ("ece", "ECE"), ("perplexity", "perplexity"),
           ("retention", "retention"), ("speedup", "speed-up"), ("throughput", "examples/s"), ("latency_ms", "batch-1 ms"),
           ("size_mb", "MB"), ("note", "note")]


def fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    if isinstance(v, list):
        return ", ".join(map(str, v))
    return str(v)


def markdown(rows: list[dict]) -> str:
    cols = [(k, h) for k, h in COLUMNS if any(r.get(k) is not None for r in rows)]
    body = []
    for r in rows:
        cells = [fmt(r.get(k)) for k, _ in cols]
        if r.get("failed_gates"):
            cells[cols.index(("status", "status"))] += " (failed: " + ", ".join(r["failed_gates"]) + ")"
        body.append(cells)
    return "\n".join(["### nncli report", ""] + table([h for _, h in cols], body)) + "\n"


def run(paths: list[str], output: str | None = None, *, overwrite: bool = False) -> dict:
    from nncli.core.outputs import prepare_output_file

    rows, read = collect(paths)
    md = markdown(rows)
    if output:
        prepare_output_file(output, overwrite=overwrite, inputs=read, what="-o")
        atomic_write_text(Path(output), md)
    return {"status": "succeeded", "exit_code": 0, "runs": rows, "markdown": md, "output": output}
