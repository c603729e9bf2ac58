"""Evaluation throughput: nncli's batched, length-sorted inference vs a plain transformers.pipeline loop.

    python benchmarks/evaluate_bench.py --model RUN_OR_MODEL_DIR [--repeats 3]

Both score SST-2 dev (872 texts) with the same model in the same process, interleaved; metrics must agree.
Writes benchmarks/results/evaluate.json. Needs ../shared/data.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "sst2"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "results" / "evaluate.json"))
    a = ap.parse_args()
    if not (SHARED / "dev.tsv").exists():
        print(f"skipped: {SHARED} is absent")
        return
    import torch
    from transformers import pipeline

    from nncli.io.inference import load_classifier
    from nncli.io.labelled import read_texts

    torch.set_num_threads(os.cpu_count())
    dev, names, _ = read_texts(str(SHARED / "dev.tsv"), "content", label_column="label")
    clf = load_classifier(a.model)
    pipe = pipeline("text-classification", model=clf.path, device="cpu", truncation=True, max_length=512)
    label_of = {n: i for i, n in enumerate(clf.label_names)}
    y = np.array([label_of[n] for n in names])
    t_nn, t_pipe = [], []
    for _ in range(a.repeats):
        t = time.perf_counter()
        pred_nn = clf.logits(dev.texts, batch_size=64).argmax(1)
        t_nn.append(time.perf_counter() - t)
        t = time.perf_counter()
        out = [pipe(x)[0]["label"] for x in dev.texts]  # the plain loop: one text at a time
        t_pipe.append(time.perf_counter() - t)
    pred_pipe = np.array([label_of[o] for o in out])
    result = {"texts": len(dev), "nncli_examples_per_second": len(dev) / statistics.median(t_nn),
              "pipeline_loop_examples_per_second": len(dev) / statistics.median(t_pipe),
              "speedup": statistics.median(t_pipe) / statistics.median(t_nn),
              "accuracy_nncli": float((pred_nn == y).mean()), "accuracy_pipeline": float((pred_pipe == y).mean()),
              "agreement": float((pred_nn == pred_pipe).mean()), "runs_seconds": {"nncli": t_nn, "pipeline": t_pipe},
              "load_average": list(os.getloadavg()), "note": "nncli evaluate also computes calibration, robustness and CIs; "
              "this measures the inference part both share"}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs_seconds"}, indent=2))


if __name__ == "__main__":
    main()
