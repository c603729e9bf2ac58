"""Distillation on SST-2: a 3-layer student of a fine-tuned all-MiniLM-L6-v2 teacher.

    python benchmarks/distill_bench.py [--rows 8000] [--transfer-rows 20000] [--epochs 3]

1. writes a seeded labelled subset of SST-2 train, and a disjoint unlabelled subset (the transfer data),
2. fine-tunes the teacher with `nncli finetune` (LoRA defaults; validation = 10% of the subset; SST-2 dev
   is the test split, never used for selection),
3. runs `nncli distill --student layers=3 --transfer-data ...` with the control (same student, labels
   only, no teacher, no transfer data) — teacher and student speed measured in the same process,
4. writes benchmarks/results/distill.json; `python benchmarks/render.py --write` puts it in the README.
Needs ../shared/data/sst2. About 15 minutes on 2 idle cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "sst2"


def nncli(*args: str) -> dict:
    t = time.time()
    p = subprocess.run([sys.executable, "-m", "nncli", *args, "--json", "-q"], capture_output=True, text=True,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if p.returncode != 0:
        raise SystemExit(f"nncli {' '.join(args)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    out = json.loads(p.stdout)
    out["_wall_seconds"] = round(time.time() - t, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=8000)
    ap.add_argument("--transfer-rows", type=int, default=20000)
    ap.add_argument("--epochs", type=float, default=3)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--work", default="/tmp/nncli-distill-bench")
    ap.add_argument("--out", default=str(HERE / "results" / "distill.json"))
    a = ap.parse_args()
    if not SHARED.exists():
        raise SystemExit(f"{SHARED} not found: this benchmark needs ../shared/data/sst2")
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    with open(SHARED / "train.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    random.Random(0).shuffle(rows)
    labelled, transfer = rows[: a.rows], rows[a.rows: a.rows + a.transfer_rows]
    for name, part, cols in (("labelled.tsv", labelled, ("sentence", "label")), ("transfer.tsv", transfer, ("sentence",))):
        with open(work / name, "w", newline="") as f:
            w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
            w.writerow(cols)
            for r in part:
                w.writerow([r[c] for c in cols])
    common = ["--data", str(work / "labelled.tsv"), "--test", str(SHARED / "dev.tsv"), "--text-column", "sentence",
              "--text-column", "content", "--label-column", "label", "--epochs", str(a.epochs)]
    load = [os.getloadavg()[0]]
    teacher_dir = work / "teacher"
    if ((teacher_dir / "report.json").exists()
            and json.loads((teacher_dir / "report.json").read_text()).get("status") == "succeeded"):
        teacher = json.loads((teacher_dir / "report.json").read_text())
        print(f"teacher: reusing {teacher_dir}", flush=True)
    else:
        print("teacher: fine-tuning all-MiniLM-L6-v2 ...", flush=True)
        teacher = nncli("finetune", "--model", "sentence-transformers/all-MiniLM-L6-v2", *common, "-o", str(teacher_dir),
                        "--overwrite")
    load.append(os.getloadavg()[0])
    print(f"distill: {a.layers}-layer student with {len(transfer)} transfer texts, and the control ...", flush=True)
    r = nncli("distill", "--teacher", str(teacher_dir), "--student", f"layers={a.layers}", *common,
              "--transfer-data", str(work / "transfer.tsv"), "distill.transfer_text_column=sentence", "distill.bench_seconds=5",
              "-o", str(work / "student"), "--overwrite")
    load.append(os.getloadavg()[0])
    d = r["distill"]
    result = {"settings": {"labelled_rows": len(labelled), "transfer_rows": d.get("transfer_rows"), "epochs": a.epochs,
                           "student": f"layers={a.layers}", "alpha": d["loss"]["alpha"], "temperature": d["loss"]["temperature"],
                           "test": "SST-2 dev (872 rows), never used for selection"},
              "teacher": d["teacher"], "student": d["student"], "control": d.get("control"), "retention": d["retention"],
              "speedup_throughput": d["speedup_throughput"], "speedup_latency": d["speedup_latency"],
              "gain_over_control": d.get("gain_over_control"), "cache_reused": d.get("cache_reused"),
              "wall_seconds": {"teacher": teacher.get("_wall_seconds"), "distill_with_control": r["_wall_seconds"]},
              "load_average_1min": load, "cpu": _cpu(), "when": time.strftime("%Y-%m-%dT%H:%M:%S")}
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    t, s = d["teacher"], d["student"]
    print(f"teacher acc {t['metrics']['test']['accuracy']:.4f}  student {s['metrics']['test']['accuracy']:.4f}  "
          f"control {d['control']['metrics']['test']['accuracy']:.4f}  retention {d['retention']['accuracy']:.3f}  "
          f"throughput x{d['speedup_throughput']:.2f}")


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
