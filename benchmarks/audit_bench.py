"""Does `nncli audit` find planted label errors and leaks, and does cleaning pay? SST-2 and TweetEval emotion.

    python benchmarks/audit_bench.py [--rows 2000] [--dups 40] [--epochs 3] [--no-finetune] [--emotion-finetune]

1. Label noise planted in the training rows: SST-2 (binary) 5% and 10% random flips; TweetEval emotion 5% and 10%
   flips within the confusable pair joy <-> optimism, and 10% random flips. For each, precision and recall of the
   planted flips among the rows audit flags, and in the top-k (k = number planted) of three rankings of the same
   out-of-fold probabilities: audit's (self-confidence of the given label), plain low model confidence (max
   probability), and random. With `--model` embeddings (the default model) and with TF-IDF only.
2. Near-duplicates: `--dups` validation sentences copied into train with a small edit (case/punctuation, a word
   dropped, a word repeated, two words swapped, a typo): how many cross-split pairs audit finds, and what else.
3. `nncli finetune` (default model, LoRA, max_length 64) on the clean rows, the noisy rows, and the copy written by
   `nncli audit --fix` (policy remove): test macro-F1 of the three (SST-2 10%; with --emotion-finetune also emotion).

Writes benchmarks/results/audit.json. Needs ../shared/data. Rows stay in a temporary folder, never in the repo.
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

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
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


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def read(path: Path, text_col: str) -> list[tuple[str, str]]:
    from nncli.io.labelled import read_texts

    s, names, _ = read_texts(str(path), text_col, label_column="label")
    return list(zip(s.texts, names))


# ---------------------------------------------------------------------------------------------- planting

def edit(text: str, kind: str, rng: random.Random) -> str:
    w = text.split()
    i = rng.randrange(len(w))
    if kind == "case_punct":
        return text.upper() + " !"
    if kind == "drop_word":
        return " ".join(w[:i] + w[i + 1:])
    if kind == "repeat_word":
        return " ".join(w[:i + 1] + [w[i]] + w[i + 1:])
    if kind == "swap_words":
        j = min(i + 1, len(w) - 1) if i < len(w) - 1 else i - 1
        w[i], w[j] = w[j], w[i]
        return " ".join(w)
    long = max(range(len(w)), key=lambda k: len(w[k]))   # a typo: two letters of the longest word swapped
    x = w[long]
    if len(x) > 3:
        w[long] = x[0] + x[2] + x[1] + x[3:]
    return " ".join(w)


EDITS = ("case_punct", "drop_word", "repeat_word", "swap_words", "typo")


def flip(labels: list[str], names: list[str], rate: float, rng: random.Random,
         pair: tuple[str, str] | None) -> tuple[list[str], set]:
    out = list(labels)
    n = int(round(rate * len(labels)))
    pool = [i for i, y in enumerate(labels) if pair is None or y in pair]
    chosen = set(rng.sample(pool, n))
    for i in chosen:
        if pair:
            out[i] = pair[1] if labels[i] == pair[0] else pair[0]
        else:
            out[i] = rng.choice([c for c in names if c != labels[i]])
    return out, chosen


# ---------------------------------------------------------------------------------------------- detection

def rankings(pool, probs: np.ndarray, n_train: int, planted: set, flagged: list[int], seed: int) -> dict:
    y = pool.labels
    train = np.arange(n_train)
    k = len(planted)
    ranks = {"audit (self-confidence)": np.argsort(probs[train, y[train]], kind="stable"),
             "low model confidence": np.argsort(probs[train].max(1), kind="stable"),
             "random": np.random.default_rng(seed).permutation(n_train)}
    out = {}
    for name, order in ranks.items():
        hits = np.cumsum([i in planted for i in order])
        ks = np.arange(1, n_train + 1)
        ok = hits / ks >= 0.5
        out[name] = {"precision_at_k": round(float(hits[k - 1] / k), 4), "recall_at_k": round(float(hits[k - 1] / k), 4),
                     "best_recall_at_precision_0.5": round(float(hits[ok].max() / k), 4) if ok.any() else 0.0}
    tr_flagged = [i for i in flagged if i < n_train]
    tp = len(set(tr_flagged) & planted)
    out["flagged"] = {"rows": len(tr_flagged), "outside_train": len(flagged) - len(tr_flagged),
                      "precision": round(tp / max(len(tr_flagged), 1), 4), "recall": round(tp / k, 4)}
    return out


def detect(pool, rep, noisy: list[str], planted: set, n_train: int, seed: int) -> dict:
    from nncli.evaluate import audit_checks as ck

    index = {n: i for i, n in enumerate(pool.label_names)}
    pool.labels = np.array([index[v] for v in noisy] + list(pool.labels[n_train:]))
    probs, info = ck.out_of_fold_probs(rep.features, pool.labels, len(pool.label_names), folds=5, seed=seed)
    issues, noise = ck.label_issues(pool.labels, probs, pool.label_names)
    r = rankings(pool, probs, n_train, planted, [i for i, *_ in issues], seed)
    return {"planted": len(planted), "oof_accuracy_vs_noisy": info["oof_accuracy"], "C": info["C"],
            "estimated_noise_rate": noise["estimated_noise_rate"], "top_noise_pair": noise["pairs"][:1], **r}


THRESHOLDS = (0.85, 0.9, 0.95, 0.98)


def duplicates(pool, rep, planted_rows: dict[int, tuple[int, str]]) -> dict:
    """planted_rows: train position -> (validation position, edit kind). Cross-split pairs found at each threshold."""
    from nncli.evaluate import audit_checks as ck

    pairs, _ = ck.neighbours(rep.vectors, threshold=min(THRESHOLDS), k=1)
    group = np.array([{"train": 0, "validation": 1, "test": 2}[s] for s in pool.split])
    order = np.arange(len(pool.texts))
    out = {}
    for thr in THRESHOLDS:
        found = ck.duplicates(pool.texts, pool.labels, order, group, pool.label_names, pairs=[p for p in pairs if p[2] >= thr])
        out[str(thr)] = _dup_score([(f[3]["of"], f[0]) for f in found if f[1] == "cross_split_duplicate"], planted_rows)
    return out


def _dup_score(cross: list[tuple[int, int]], planted_rows: dict) -> dict:
    hit = {a: b for a, b in cross if a in planted_rows and planted_rows[a][0] == b}
    per_kind = {k: [0, 0] for k in EDITS}
    for a, (_, kind) in planted_rows.items():
        per_kind[kind][1] += 1
        per_kind[kind][0] += a in hit
    return {"planted": len(planted_rows), "found": len(hit), "recall": round(len(hit) / max(len(planted_rows), 1), 4),
            "other_cross_split_pairs": len(cross) - len(hit),
            "by_edit": {k: f"{v[0]}/{v[1]}" for k, v in per_kind.items()}}


# ---------------------------------------------------------------------------------------------- one dataset

def dataset(name: str, train_rows, val_rows, test_rows, a, work: Path, scenarios, finetune: bool) -> dict:
    from nncli.evaluate import audit
    from nncli.recipe.load import load_recipe

    rng = random.Random(a.seed)
    train = rng.sample(train_rows, min(a.rows, len(train_rows)))
    dup_src = rng.sample(range(len(val_rows)), a.dups)
    planted_dups = {}
    for j, v in enumerate(dup_src):
        kind = EDITS[j % len(EDITS)]
        planted_dups[len(train)] = (v, kind)
        train.append((edit(val_rows[v][0], kind, rng), val_rows[v][1]))
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    paths = {"clean": write_csv(d / "train.clean.csv", train), "validation": write_csv(d / "validation.csv", val_rows),
             "test": write_csv(d / "test.csv", test_rows)}
    recipe = load_recipe("audit", None, [], {"data.train": str(paths["clean"]), "data.validation": str(paths["validation"]),
                                             "data.test": str(paths["test"]), "data.max_length": 64})
    pool, _, _ = audit.load(recipe)
    n_train = len(train)
    planted_dups = {a_: (n_train + v, k) for a_, (v, k) in planted_dups.items()}   # validation rows follow train in the pool
    names = pool.label_names
    out = {"train_rows": n_train, "validation_rows": len(val_rows), "test_rows": len(test_rows), "scenarios": {},
           "duplicates": {}}
    for rep_name, model in (("embeddings", MODEL), ("tfidf", None)):
        t = time.time()
        rep = audit.represent(pool, model, max_length=64)
        out.setdefault("representation_seconds", {})[rep_name] = round(time.time() - t, 1)
        out["duplicates"][rep_name] = duplicates(pool, rep, planted_dups)
        for sc, (rate, pair) in scenarios.items():
            noisy, planted = flip([y for _, y in train], names, rate, random.Random(a.seed + int(rate * 100)), pair)
            found = detect(pool, rep, noisy, planted, n_train, a.seed)
            out["scenarios"].setdefault(sc, {"rate": rate, "pair": pair})[rep_name] = found
            if rep_name == "embeddings":
                write_csv(d / f"train.{sc}.csv", [(t_, y) for (t_, _), y in zip(train, noisy)])
            print(name, sc, rep_name, json.dumps(out["scenarios"][sc][rep_name]), flush=True)
    if finetune:
        out["finetune"] = finetunes(d, paths, [sc for sc in scenarios if scenarios[sc][0] == 0.10][0], a)
    return out


def finetunes(d: Path, paths: dict, sc: str, a) -> dict:
    fixed = d / f"train.{sc}.fixed.csv"
    aud = nncli("audit", str(d / f"train.{sc}.csv"), "--validation", str(paths["validation"]), "--test", str(paths["test"]),
                "--model", MODEL, "--max-length", "64", "--fix", str(fixed), "-o", str(d / f"audit-{sc}"), "--overwrite")
    out = {"scenario": sc, "audit_cli": {"wall_seconds": aud["_wall_seconds"], "metrics": aud["metrics"], "fix": aud["fix"]}}
    for variant, path in (("clean", paths["clean"]), ("noisy", d / f"train.{sc}.csv"), ("audited_and_cleaned", fixed)):
        r = nncli("finetune", "--data", str(path), "--validation", str(paths["validation"]), "--test", str(paths["test"]),
                  "-o", str(d / f"ft-{variant}"), "--overwrite", "data.max_length=64", f"train.epochs={a.epochs}",
                  f"train.seed={a.seed}")
        m = r["metrics"]["test"]
        rows = ((r.get("data") or {}).get("rows") or {}).get("train") or {}
        out[variant] = {"train_rows": rows.get("kept"), "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                        "wall_seconds": r["_wall_seconds"]}
        print("finetune", variant, out[variant], flush=True)
    lost = out["clean"]["macro_f1"] - out["noisy"]["macro_f1"]
    out["macro_f1_lost_to_noise"] = round(lost, 4)
    gained = out["audited_and_cleaned"]["macro_f1"] - out["noisy"]["macro_f1"]
    out["share_recovered"] = round(gained / lost, 4) if lost > 0 else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--dups", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-finetune", action="store_true")
    ap.add_argument("--emotion-finetune", action="store_true")
    ap.add_argument("--work", default="/tmp/nncli-audit-bench")
    ap.add_argument("--shared", default=str(SHARED), help="the shared data folder (default ../shared/data)")
    ap.add_argument("--out", default=str(HERE / "results" / "audit.json"))
    a = ap.parse_args()
    shared = Path(a.shared)
    if not (shared / "sst2").exists() or not (shared / "tweeteval" / "emotion").exists():
        raise SystemExit(f"{shared}/sst2 or tweeteval/emotion not found: this benchmark needs ../shared/data")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(a.work)
    t0 = time.time()
    result = {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "load_average_start": list(os.getloadavg()), "settings": vars(a),
              "model": MODEL}
    sst_train = [r for r in read(shared / "sst2" / "train.tsv", "sentence") if len(r[0].split()) >= 8]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result["sst2"] = dataset("sst2", sst_train, read(shared / "sst2" / "dev.tsv", "content"),
                             read(shared / "sst2" / "test.tsv", "content"), a, work,
                             {"random_5": (0.05, None), "random_10": (0.10, None)}, not a.no_finetune)
    out.write_text(json.dumps(result, indent=2) + "\n")   # partial results, in case the rest is interrupted
    e = shared / "tweeteval" / "emotion"
    result["emotion"] = dataset("emotion", read(e / "train.tsv", "text"), read(e / "validation.tsv", "text"),
                                read(e / "test.tsv", "text"), a, work,
                                {"pair_5": (0.05, ("joy", "optimism")), "pair_10": (0.10, ("joy", "optimism")),
                                 "random_10": (0.10, None)}, a.emotion_finetune and not a.no_finetune)
    result["wall_seconds"] = round(time.time() - t0, 1)
    result["load_average_end"] = list(os.getloadavg())
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out} in {result['wall_seconds']} s")


if __name__ == "__main__":
    main()
