"""SetFit on one TweetEval task, for smalldata_bench.py. Runs in its own virtual environment (setfit is not an nncli
dependency):

    python -m venv /work/bench-venv && /work/bench-venv/bin/pip install setfit -c constraints.txt
    /work/bench-venv/bin/python benchmarks/smalldata_setfit.py <task dir> <model dir> <seed> <max_steps>

Prints one JSON object: test predictions (label names), wall seconds, versions and the settings used.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time


def read(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def main(task_dir: str, model_dir: str, seed: int, max_steps: int) -> None:
    import setfit
    import torch
    import transformers
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    threads = int(os.environ.get("SETFIT_THREADS", os.cpu_count() or 1))   # all cores, as nncli uses
    torch.set_num_threads(threads)
    t0 = time.time()
    xt, yt = read(f"{task_dir}/train.tsv")
    xs, ys = read(f"{task_dir}/test.tsv")
    names = sorted(set(yt))
    model = SetFitModel.from_pretrained(model_dir, labels=names)
    args = TrainingArguments(batch_size=16, num_epochs=1, max_steps=max_steps, seed=seed, report_to="none",
                             eval_strategy="no", save_strategy="no")
    ds = Dataset.from_dict({"text": xt, "label": [names.index(y) for y in yt]})
    trainer = Trainer(model=model, args=args, train_dataset=ds)
    trainer.train()
    pred = model.predict(xs, batch_size=64)
    pred = [names[int(p)] if not isinstance(p, str) else p for p in (pred.tolist() if hasattr(pred, "tolist") else pred)]
    print(json.dumps({"pred": pred, "wall_seconds": round(time.time() - t0, 1), "versions": {
        "setfit": setfit.__version__, "transformers": transformers.__version__, "torch": torch.__version__},
        "settings": {"batch_size": 16, "num_epochs": 1, "max_steps": max_steps, "head": "LogisticRegression (SetFit default)",
                     "body_lr": "SetFit default (2e-5)", "threads": threads}}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
