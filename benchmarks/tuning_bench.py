"""Does tuning pay on small data? SST-2 subsets, all-MiniLM-L6-v2, LoRA; SST-2 dev (872) is the test split.

    python benchmarks/tuning_bench.py [--rows 600] [--trials 8] [--aug-rows 200] [--seeds 3]

1. default recipe vs `nncli sweep` best trial (selection on a 10% validation split of the subset);
2. default learning rate vs the `--find-lr` suggestion (`--use-found-lr`);
3. on a 200-example subset: no augmentation vs `data.augment` (synonym, swap, deletion; 2 copies), over seeds.
Writes benchmarks/results/tuning.json. Needs ../shared/data/sst2. About 20 minutes on 2 idle cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "sst2"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def nncli(*args: str) -> dict:
    t = time.time()
    p = subprocess.run([sys.executable, "-m", "nncli", *args, "--json", "-q"], capture_output=True, text=True,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if p.returncode not in (0, 5):
        raise SystemExit(f"nncli {' '.join(args)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    out = json.loads(p.stdout)
    out["_wall_seconds"] = round(time.time() - t, 1)
    return out


def subset(rows: list[dict], n: int, path: Path) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        w.writerow(["sentence", "label"])
        for r in rows[:n]:
            w.writerow([r["sentence"], r["label"]])
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=600)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--aug-rows", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--work", default="/tmp/nncli-tuning-bench")
    ap.add_argument("--out", default=str(HERE / "results" / "tuning.json"))
    a = ap.parse_args()
    if not SHARED.exists():
        raise SystemExit(f"{SHARED} not found: this benchmark needs ../shared/data/sst2")
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    with open(SHARED / "train.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    random.Random(0).shuffle(rows)
    train = subset(rows, a.rows, work / "train.tsv")
    small = subset(rows, a.aug_rows, work / "small.tsv")
    common = ["--model", MODEL, "--test", str(SHARED / "dev.tsv"), "--text-column", "sentence", "--text-column", "content",
              "--label-column", "label"]
    res: dict = {"settings": vars(a), "when": time.strftime("%Y-%m-%dT%H:%M:%S")}

    def test_of(r):
        m = r["metrics"]["test"]
        return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}

    print("default recipe ...", flush=True)
    d = nncli("finetune", *common, "--data", str(train), "-o", str(work / "default"), "--overwrite")
    res["default"] = {"test": test_of(d), "lr": d["training"]["lr"], "seconds": d["_wall_seconds"]}
    print(f"sweep ({a.trials} trials) ...", flush=True)
    import shutil

    shutil.rmtree(work / "sweep", ignore_errors=True)
    s = nncli("sweep", *common, "--data", str(train), "-o", str(work / "sweep"), "--trials", str(a.trials))
    res["sweep"] = {"best_params": s["best"]["params"], "best_validation": s["best"]["value"], "test": s["best"].get("test"),
                    "counts": s["counts"], "seconds": s["_wall_seconds"]}
    print("learning-rate finder ...", flush=True)
    f = nncli("finetune", *common, "--data", str(train), "-o", str(work / "found-lr"), "--overwrite", "--use-found-lr")
    res["lr_finder"] = {"suggested_lr": f["lr_finder"]["suggested_lr"], "test": test_of(f), "seconds": f["_wall_seconds"]}
    print(f"augmentation on {a.aug_rows} rows x {a.seeds} seeds ...", flush=True)
    aug = {"none": [], "augment": []}
    for seed in range(a.seeds):
        for name, extra in (("none", []), ("augment", ["data.augment.methods=[synonym, swap, deletion]",
                                                       "data.augment.copies=2"])):
            r = nncli("finetune", *common, "--data", str(small), "-o", str(work / f"aug-{name}-{seed}"), "--overwrite",
                      f"train.seed={42 + seed}", *extra)
            aug[name].append({"seed": 42 + seed, "test": test_of(r), "added": r["data"].get("augmentation",
                                                                                            {}).get("examples_added", 0)})
    res["augmentation"] = {k: {"runs": v, "median_accuracy": statistics.median(x["test"]["accuracy"] for x in v),
                               "median_macro_f1": statistics.median(x["test"]["macro_f1"] for x in v)} for k, v in aug.items()}
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({k: v.get("test", v) for k, v in res.items() if isinstance(v, dict) and k != "settings"}, indent=1)[:3000])


if __name__ == "__main__":
    main()
