"""Metrics of the TweetEval paper and the checkpoint-selection rules compared in smalldata_screen.py.

TweetEval's metrics (Barbieri et al. 2020): emotion macro-F1, irony F1 of the `irony` class, stance the mean of the
`against` and `favor` F1 (the `none` class is scored but not averaged).
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import median

import numpy as np


def f1_per_class(y, p, n):
    from sklearn.metrics import f1_score

    return f1_score(y, p, labels=list(range(n)), average=None, zero_division=0)


def scores(task: str, label_names: list[str], y, pred) -> dict[str, float]:
    """accuracy, macro-F1 (over all classes) and the paper's metric for `task`."""
    y, pred = np.asarray(y), np.asarray(pred)
    n = len(label_names)
    f1 = f1_per_class(y, pred, n)
    if task.startswith("stance"):
        paper = float(np.mean([f1[label_names.index("against")], f1[label_names.index("favor")]]))
    elif task == "irony":
        paper = float(f1[label_names.index("irony")])
    else:
        paper = float(np.mean(f1))
    return {"accuracy": float((y == pred).mean()), "macro_f1": float(np.mean(f1)), "paper_metric": paper}


def _val(labels, probs, n, majority):
    from sklearn.metrics import balanced_accuracy_score, log_loss

    y, pr = np.asarray(labels), np.asarray(probs)
    pred = pr.argmax(1)
    acc = float((y == pred).mean())
    mf1 = float(np.mean(f1_per_class(y, pred, n)))
    return {"macro_f1": mf1, "accuracy": acc, "neg_loss": -float(log_loss(y, np.clip(pr, 1e-9, 1), labels=list(range(n)))),
            "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
            "guarded_macro_f1": mf1 if acc >= majority else mf1 - 1.0,
            "f1_plus_acc": mf1 + acc}


RULES = ("rank", "macro_f1", "guarded_macro_f1", "neg_loss", "accuracy", "balanced_accuracy", "f1_plus_acc", "last")


def select(run: dict, rule: str) -> int:
    """Index of the evaluation a rule keeps (ties: the earliest, as nncli's loop does)."""
    n = len(run["label_names"])
    counts = np.asarray(run["train_counts"])
    y = np.asarray(run["validation_labels"])
    majority = float((y == counts.argmax()).mean())
    if rule == "last":
        return len(run["curve"]) - 1
    vals = [_val(y, c["validation"], n, majority) for c in run["curve"]]
    if rule == "rank":         # nncli's ClassificationTask.rank: (accuracy >= majority, macro-F1, -loss)
        keys = [(v["accuracy"] >= majority, v["macro_f1"], v["neg_loss"]) for v in vals]
        return max(range(len(keys)), key=lambda i: (keys[i], -i))
    return int(np.argmax([v[rule] for v in vals]))


def summarise(folder: Path) -> dict:
    runs = [json.loads(f.read_text()) for f in sorted(folder.glob("*.json"))]
    table: dict = {}
    for r in runs:
        yt = np.asarray(r["test_labels"])
        for rule in RULES:
            i = select(r, rule)
            s = scores(r["task"], r["label_names"], yt, np.asarray(r["curve"][i]["test"]).argmax(1))
            table.setdefault((r["candidate"], rule), {})[r["task"], r["seed"]] = {**s, "epoch": i + 1}
    tf = {(r["task"], r["seed"]): r["baselines"]["tfidf_logreg"]["test"]["macro_f1"] for r in runs}
    maj = {(r["task"], r["seed"]): r["baselines"]["majority_class"]["test"]["accuracy"] for r in runs}
    print(f"{'candidate':18} {'rule':18} {'test mF1 med':>12} {'mean':>6} {'paper':>6} {'acc':>6} {'>tfidf':>7} "
          f"{'>=maj':>6}  epochs")
    for (cand, rule), cells in sorted(table.items()):
        m = [v["macro_f1"] for v in cells.values()]
        paper = np.mean([v["paper_metric"] for v in cells.values()])
        print(f"{cand:18} {rule:18} {median(m):12.3f} {np.mean(m):6.3f} {paper:6.3f} "
              f"{np.mean([v['accuracy'] for v in cells.values()]):6.3f} "
              f"{sum(v['macro_f1'] > tf[k] for k, v in cells.items())}/{len(cells):<5} "
              f"{sum(v['accuracy'] >= maj[k] for k, v in cells.items())}/{len(cells):<4} "
              + " ".join(f"{k[0].replace('stance-', '')[:4]}:{v['epoch']}:{v['macro_f1']:.2f}" for k, v in sorted(cells.items())))
    return table
