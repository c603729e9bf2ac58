"""`nncli bench`: latency percentiles and throughput per batch size and sequence length, across backends
and models side by side, with a machine fingerprint, a latency-vs-throughput plot and a regression gate.

Timing discipline: warm-up runs first, then repeats until both a minimum count and a minimum time are
reached; inputs have exactly the requested sequence length (real text tokens, repeated), so padding
never flatters one backend.
"""

from __future__ import annotations

import os
from pathlib import Path

from nncli.core import console
from nncli.core.atomic import atomic_write_bytes
from nncli.core.errors import GateFailed, InputError, UsageError
from nncli.core.report import Timer, base_report, environment, now
from nncli.core.rundir import RunDir, recording
from nncli.core.timing import measure


def bench_classifier(clf, batch_sizes: list[int], seq_lens: list[int], **timing) -> list[dict]:
    rows = []
    limit = clf.max_length
    for s in seq_lens:
        if s > limit:
            console.warn(f"{clf.name}: sequence length {s} exceeds the model's {limit} positions; skipped")
            continue
        for b in batch_sizes:
            batch = clf.synthetic_batch(b, s)
            m = measure(lambda batch=batch: clf.forward(batch), **timing)
            m["throughput_per_second"] = b / (m["p50_ms"] / 1000)
            rows.append({"model": clf.name, "backend": clf.backend, "batch_size": b, "seq_len": s, **m})
            console.log(f"  {Path(clf.name).name} [{clf.backend}] batch {b} x {s} tokens: p50 {m['p50_ms']:.1f} ms, "
                        f"{m['throughput_per_second']:.1f} examples/s")
    return rows


def machine() -> dict:
    from nncli.core.machine import cpu_flags, cpu_name

    flags = cpu_flags()
    features = {"avx2": "avx2" in flags, "avx512": "avx512f" in flags, "vnni": bool({"avx512_vnni", "avx_vnni"} & flags),
                "avx512_bf16": "avx512_bf16" in flags, "amx": bool({"amx_tile", "amx_int8"} & flags)}
    if features["amx"]:
        note = "AMX tiles are present: int8 and bf16 matrix products have dedicated hardware; expect large int8 gains."
    elif features["vnni"]:
        note = "VNNI is present (no AMX): int8 dot products run in one instruction; expect 2-3x from int8 on encoder matmuls."
    elif features["avx2"]:
        note = "No VNNI: int8 matmuls emulate with AVX2 and gain little over fp32; int8 mainly saves memory here."
    else:
        note = "No AVX2/VNNI: int8 will likely be slower than fp32 on this CPU."
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "features": features, "int8_note": note}


def run(models: list[str], *, batch_sizes: list[int], seq_lens: list[int], threads: int | None = None, torch_int8: bool = False,
        output: str | None = None, overwrite: bool = False, baseline: str | None = None, fail_if_slower: float | None = None,
        min_seconds: float = 2.0, min_repeats: int = 10) -> dict:
    from nncli.io.image_inference import is_image_model, load_image_classifier
    from nncli.io.inference import check_model, load_classifier, quantize_dynamic_int8, release

    timer = Timer()
    if fail_if_slower is not None and not baseline:
        raise UsageError("--fail-if-slower needs --baseline OLD/report.json", "pass the report of an earlier nncli bench run")
    if fail_if_slower is not None and not 0 < fail_if_slower < 1:
        raise UsageError(f"fail_if_slower {fail_if_slower!r} must be a fraction between 0 and 1", "e.g. 0.10 for 10%")
    if not batch_sizes or not seq_lens or min(batch_sizes) < 1 or min(seq_lens) < 1:
        raise UsageError("batch sizes and sequence lengths must be positive integers", "e.g. --batch-sizes 1,8,32 --seq-lens 128")
    model_dirs = [check_model(name) for name in models]          # every input is checked before the output is touched
    base, base_path = (_read_baseline(baseline) if baseline else (None, None))
    if base is not None:
        _shared_configurations(models, batch_sizes, seq_lens, base, base_path)
    out = RunDir(output, command="bench") if output else None
    if out:
        out.prepare(overwrite=overwrite, inputs=[*model_dirs, base_path])
    report = base_report("bench")
    with recording(out, report):
        fp = machine()
        console.log(f"machine: {fp['cpu']}, {fp['cores']} cores; {fp['int8_note']}")
        rows = []
        for name in models:
            if is_image_model(name):      # images: one input size, the model's own (seq_len in the table = the image side)
                clf = load_image_classifier(name, threads=threads)
                rows += bench_classifier(clf, batch_sizes, [clf.max_length], min_seconds=min_seconds, min_repeats=min_repeats)
                release(clf)
                continue
            clf = load_classifier(name, threads=threads)
            rows += bench_classifier(clf, batch_sizes, seq_lens, min_seconds=min_seconds, min_repeats=min_repeats)
            if torch_int8 and clf.backend == "torch":
                clf.model = quantize_dynamic_int8(clf.model)
                clf.backend = "torch-int8"
                rows += bench_classifier(clf, batch_sizes, seq_lens, min_seconds=min_seconds, min_repeats=min_repeats)
            release(clf)  # one engine alive at a time: idle ONNX Runtime threads spin and would slow the next model
        report.update(results=rows, machine=fp, environment=environment(threads), settings={
            "batch_sizes": batch_sizes, "seq_lens": seq_lens, "threads": threads, "min_seconds": min_seconds,
            "min_repeats": min_repeats,
            "load_average": list(os.getloadavg())})
        if base is not None:
            report["baseline"] = str(base_path)
            report["regressions"], report["gates"] = _compare(rows, base, fail_if_slower, base_path)
        failed = [g for g in report["gates"] if not g["passed"]]
        report.update(status="failed" if failed else "succeeded", exit_code=5 if failed else 0, finished_at=now(),
                      timings={"wall_seconds": timer()})
        if out:
            _plot(out / "latency_throughput.png", rows)
            report["artifacts"] = {"plot": "latency_throughput.png", "report": "report.json"}
            out.write_json("report.json", report)
            out.complete()
    if failed:
        worst = min(failed, key=lambda g: g["value"])
        raise GateFailed(f"{len(failed)} configuration(s) slower than the baseline by more than {fail_if_slower:.0%} "
                         f"(worst: {worst['metric']} at {worst['value']:.2f}x)", "see the regressions in report.json",
                         report=report)
    return report


def _read_baseline(path: str) -> tuple[dict, Path]:
    from nncli.core.artifacts import BenchReport, read_artifact

    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    if not p.exists():
        raise InputError(f"baseline not found: {path}", "pass the report.json of an earlier nncli bench --output run")
    return read_artifact(p, BenchReport).model_dump(), p


def _shared_configurations(models: list[str], batch_sizes: list[int], seq_lens: list[int], base: dict, base_path: Path) -> None:
    """A baseline that shares no (model, batch size, length) with this run would compare nothing: refuse it up front."""
    planned = {(Path(m.rstrip("/")).name, b, s) for m in models for b in batch_sizes for s in seq_lens}
    old = {(k[0], k[2], k[3]) for k in map(_key, base["results"])}
    if not planned & old:
        raise InputError(f"baseline {base_path} shares no configuration with this run (model name, batch size, sequence "
                         "length): the regression gate would compare nothing", _baseline_hint(base))


def _baseline_hint(base: dict) -> str:
    keys = sorted({f"{k[0]} [{k[1]}] b{k[2]} s{k[3]}" for k in map(_key, base["results"])})
    return f"bench the same models with the same --batch-sizes and --seq-lens as the baseline ({', '.join(keys[:4])})"


def _key(r: dict) -> tuple:
    return (Path(r["model"].rstrip("/")).name, r["backend"], r["batch_size"], r["seq_len"])


def _compare(rows: list[dict], base: dict, fail_if_slower: float | None, base_path: Path) -> tuple[list[dict], list[dict]]:
    old = {_key(r): r for r in base["results"]}
    comparisons, gates = [], []
    for r in rows:
        o = old.get(_key(r))
        if o is None:
            continue
        ratio = r["throughput_per_second"] / o["throughput_per_second"]
        comparisons.append({"model": r["model"], "backend": r["backend"], "batch_size": r["batch_size"], "seq_len": r["seq_len"],
                            "throughput_ratio": ratio, "baseline_throughput": o["throughput_per_second"],
                            "throughput": r["throughput_per_second"]})
        if fail_if_slower is not None:
            threshold = 1 - fail_if_slower
            gates.append({"metric": f"throughput_ratio[{_key(r)[0]}/{r['backend']}/b{r['batch_size']}/s{r['seq_len']}]",
                          "op": ">=", "threshold": threshold, "value": ratio, "passed": ratio >= threshold})
    if not comparisons:
        raise InputError(f"baseline {base_path} shares no configuration with this run (model name, backend, batch size, "
                         "sequence length): the regression gate would compare nothing", _baseline_hint(base))
    return comparisons, gates


def _plot(path: Path, rows: list[dict]) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    series: dict = {}
    for r in rows:
        series.setdefault((Path(r["model"].rstrip("/")).name, r["backend"], r["seq_len"]), []).append(r)
    for (name, backend, s), rs in series.items():
        rs = sorted(rs, key=lambda r: r["batch_size"])
        ax.plot([r["p50_ms"] for r in rs], [r["throughput_per_second"] for r in rs], "o-", label=f"{name} [{backend}] {s} tok")
        for r in rs:
            ax.annotate(f"b{r['batch_size']}", (r["p50_ms"], r["throughput_per_second"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.set_xscale("log"), ax.set_xlabel("latency p50 (ms, log)"), ax.set_ylabel("throughput (examples/s)")
    ax.set_title("latency vs throughput (labels: batch size)", fontsize=10), ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
