"""Deployment on SST-2: PyTorch fp32 vs ONNX Runtime fp32 vs int8 (PyTorch and ONNX Runtime).

    python benchmarks/deploy_bench.py [--train-rows 4000] [--repeats 5]

1. fine-tunes all-MiniLM-L6-v2 on a seeded SST-2 subset with nncli (or reuses --run DIR),
2. exports it with `nncli export` (parity gate) and quantizes with `nncli quantize` (auto, --max-drop 1),
3. times every backend in one process, interleaved, at batch 1 and batch 32 (128 tokens): medians,
4. scores each on SST-2 dev (872): accuracy and predictions flipped against fp32.
Writes benchmarks/results/deploy.json. Needs ../shared/data.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "sst2"


def sh(*args: str) -> dict:
    p = subprocess.run([sys.executable, "-m", "nncli", *args, "--json", "-q"], capture_output=True, text=True,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if p.returncode not in (0,):
        raise SystemExit(f"nncli {' '.join(args)} failed ({p.returncode}):\n{p.stderr[-3000:]}\n{p.stdout[-2000:]}")
    return json.loads(p.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-rows", type=int, default=4000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--run", default="/tmp/nncli-deploy-bench/run")
    ap.add_argument("--out", default=str(HERE / "results" / "deploy.json"))
    a = ap.parse_args()
    if not (SHARED / "train.tsv").exists():
        print(f"skipped: {SHARED} is absent")
        return
    run = Path(a.run)
    if not (run / "merged").exists():
        sh("finetune", "sst2", f"data.max_train_samples={a.train_rows}", "train.epochs=2", "data.test=null", "--output", str(run),
           "--overwrite")
    sh("export", str(run), "--overwrite")
    q = sh("quantize", str(run), "--max-drop", "1.0", "--overwrite", "min_seconds=3")

    from nncli.core.timing import measure
    from nncli.io.inference import load_classifier, quantize_dynamic_int8, release
    from nncli.io.labelled import read_texts

    def torch_int8():
        c = load_classifier(str(run))
        c.model = quantize_dynamic_int8(c.model)
        c.backend = "torch-int8"
        return c

    dev, names, _ = read_texts(str(SHARED / "dev.tsv"), "content", label_column="label")
    models = {"pytorch fp32": lambda: load_classifier(str(run)), "onnxruntime fp32": lambda: load_classifier(str(run / "onnx")),
              "pytorch int8 (dynamic)": torch_int8}
    chosen = q.get("chosen", "")
    if (run / "quantized" / "model.onnx").exists():
        models[f"onnxruntime int8 ({chosen})"] = lambda: load_classifier(str(run / "quantized"))
    y = np.array([int(n) for n in names])
    ref_pred = None
    acc, flips = {}, {}
    for name, make in models.items():
        clf = make()
        pred = clf.predict_proba(dev.texts).argmax(1)
        release(clf)
        ref_pred = pred if ref_pred is None else ref_pred
        acc[name] = float((pred == y).mean())
        flips[name] = float((pred != ref_pred).mean())
    # one engine alive at a time: an idle ONNX Runtime session's spinning threads would slow the others
    times = {name: {1: [], 32: []} for name in models}
    loads = []
    for _ in range(a.repeats):
        for name, make in models.items():
            clf = make()
            loads.append(os.getloadavg()[0])
            for b in (1, 32):
                batch = clf.synthetic_batch(b, 128)
                m = measure(lambda clf=clf, batch=batch: clf.forward(batch), warmup=2, min_repeats=5 if b == 32 else 20,
                            min_seconds=1.0)
                times[name][b].append(m["p50_ms"])
            release(clf)
    rows = {}
    base_thr = None
    for name in models:
        lat1 = statistics.median(times[name][1])
        lat32 = statistics.median(times[name][32])
        thr = 32 / (lat32 / 1000)
        base_thr = base_thr or thr
        rows[name] = {"latency_ms_batch1": lat1, "latency_ms_batch32": lat32, "throughput_batch32": thr,
                      "speedup_vs_pytorch_fp32": thr / base_thr, "dev_accuracy": acc[name], "flip_rate_vs_fp32": flips[name],
                      "runs_batch1_ms": times[name][1], "runs_batch32_ms": times[name][32]}
    export = json.loads((run / "onnx" / "report.json").read_text())
    result = {"settings": vars(a), "rows": rows, "parity": export["parity"], "quantize_candidates": q.get("candidates"),
              "quantize_chosen": chosen, "load_average": loads, "cpu": q["environment"].get("cpu"),
              "cpu_features": q["environment"].get("cpu_features"), "when": time.strftime("%Y-%m-%d %H:%M")}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    for name, r in rows.items():
        print(f"{name:40s} b1 {r['latency_ms_batch1']:7.1f} ms  b32 {r['throughput_batch32']:7.1f}/s  "
              f"x{r['speedup_vs_pytorch_fp32']:.2f}  "
              f"acc {r['dev_accuracy']:.4f}  flips {r['flip_rate_vs_fp32']:.3f}")
    print(f"export parity: max |dlogit| {export['parity']['max_abs_diff']:.2e}")


if __name__ == "__main__":
    main()
