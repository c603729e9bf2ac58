"""Screen candidate defaults on TweetEval (issue #16): one run per (task, candidate, seed) that trains for the full
epoch budget without early stopping and scores validation AND test after every epoch, so every selection rule
(which metric, which epoch) can be compared offline on the same training curves.

    NNCLI_SHARED_DATA=../shared/data python benchmarks/smalldata_screen.py --tasks stance-climate stance-feminist \\
        --candidates lora-5e-4 full-1e-4 --seed 0

Writes benchmarks/results/smalldata_screen/<task>__<candidate>__s<seed>.json (labels and per-epoch probabilities);
`--summarise` prints each candidate under each selection rule. Test scores are used only to compare rules and
candidates here, never inside nncli.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "smalldata_screen"
CANDIDATES = {
    "lora-5e-4": ["method=lora", "train.lr=5e-4"],
    "lora-1e-3": ["method=lora", "train.lr=1e-3"],
    "lora-2e-3": ["method=lora", "train.lr=2e-3"],
    "full-1e-4": ["method=full", "train.lr=1e-4"],
    "full-5e-5": ["method=full", "train.lr=5e-5"],
    "lora-5e-4-sqrt": ["method=lora", "train.lr=5e-4", "train.class_weights=sqrt"],
    "lora-5e-4-none": ["method=lora", "train.lr=5e-4", "train.class_weights=none"],
    "lora-1e-3-sqrt": ["method=lora", "train.lr=1e-3", "train.class_weights=sqrt"],
    "full-1e-4-sqrt": ["method=full", "train.lr=1e-4", "train.class_weights=sqrt"],
    "lora-5e-4-head5e-3": ["method=lora", "train.lr=5e-4", "train.head_lr=5e-3"],
}


def data_dir() -> Path:
    return Path(os.environ.get("NNCLI_SHARED_DATA", ROOT.parent.parent / "shared" / "data")) / "tweeteval"


def one(task: str, cand: str, seed: int, epochs: float) -> dict:
    from nncli.recipe.load import load_recipe
    from nncli.train import finetune
    from nncli.train.loop import Callback

    d = data_dir() / task
    curve: list[dict] = []

    class ScoreTest(Callback):
        def on_evaluate(self, run, step, metrics):
            run.evaluate("test")
            curve.append({"step": step, "validation": run.task.probs["validation"].round(5).tolist(),
                          "test": run.task.probs["test"].round(5).tolist()})

    over = [f"data.train={d / 'train.tsv'}", f"data.validation={d / 'validation.tsv'}", f"data.test={d / 'test.tsv'}",
            f"train.seed={seed}", f"train.epochs={epochs}", "train.early_stopping_patience=0",
            f"output=/tmp/smalldata_screen/{task}__{cand}__s{seed}", *CANDIDATES[cand]]
    recipe = load_recipe("finetune", overrides=over)
    t0 = time.time()
    report = finetune.run(recipe, overwrite=True, callbacks=(ScoreTest(),))
    from nncli.io.labelled import load_labelled

    data = load_labelled(recipe.data, seed=seed)
    return {"task": task, "candidate": cand, "seed": seed, "epochs": epochs, "wall_seconds": round(time.time() - t0, 1),
            "label_names": data.label_names, "validation_labels": list(data.validation.labels),
            "test_labels": list(data.test.labels), "train_counts": np.bincount(data.train.labels).tolist(),
            "curve": curve, "baselines": report["baselines"]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", nargs="+", default=["stance-climate", "stance-feminist"])
    p.add_argument("--candidates", nargs="+", default=list(CANDIDATES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=float, default=6)
    p.add_argument("--summarise", action="store_true")
    a = p.parse_args(argv)
    if a.summarise:
        from smalldata_rules import summarise

        summarise(OUT)
        return
    OUT.mkdir(parents=True, exist_ok=True)
    for task in a.tasks:
        for cand in a.candidates:
            f = OUT / f"{task}__{cand}__s{a.seed}.json"
            if f.exists():
                continue
            res = one(task, cand, a.seed, a.epochs)
            f.write_text(json.dumps(res))
            print(f"{task} {cand} seed {a.seed}: {res['wall_seconds']} s", file=sys.stderr)


if __name__ == "__main__":
    main()
