"""`nncli evaluate` on image classifiers: metrics with 95% bootstrap intervals, calibration (ECE, Brier), the
majority-class reference, per-class scores and the confusion matrix (confusion.png), one prediction per image, gates.
Several models are scored on the same images. Labels come from the folder layout (root/<label>/...) or a listing's
label column."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from nncli.core import console
from nncli.core.errors import GateFailed, UsageError
from nncli.core.report import Timer, base_report, check_gate_metrics, environment, evaluate_gates, gates_of, now, peak_memory_mb
from nncli.core.rundir import RunDir, recording
from nncli.evaluate import metrics as M

IMAGE_METRICS = ["accuracy", "macro_f1", "loss", "ece", "mce", "brier", "majority_accuracy", "majority_macro_f1"]


def run(recipe, *, overwrite: bool = False) -> dict:
    from nncli.io.images import read_labelled
    from nncli.recipe.load import dump

    if recipe.calibration.fit or recipe.data.slice_column:
        raise UsageError("--calibrate and --slice-column are not supported for image classifiers yet",
                         "drop them; evaluate reports ECE and the confusion matrix for images")
    timer, gates = Timer(), gates_of(recipe.gates)
    check_gate_metrics(gates, IMAGE_METRICS)
    split, names, notes = read_labelled(recipe.data.path, recipe.data.image_column, recipe.data.label_column)
    if any(n is None for n in names):
        from nncli.core.errors import InputError

        raise InputError(f"evaluation images in {recipe.data.path} have no labels", "lay them out as <folder>/<label>/<image>, "
                         "or pass a listing with a label column (data.label_column)")
    if recipe.data.limit and recipe.data.limit < len(split):
        split, names = split.subset(list(range(recipe.data.limit))), names[: recipe.data.limit]
    out = RunDir(recipe.output, command="evaluate") if recipe.output else None
    if out:
        out.prepare(overwrite=overwrite, inputs=[recipe.data.path, *recipe.models])
    report = base_report("evaluate", recipe.name, task="image-classification")
    report["data"] = {"source": split.source, "rows_read": split.rows_read, "rows": len(split), "dropped": split.dropped,
                      "notes": notes, "kind": "images"}
    if recipe.robustness.enabled:
        notes.append("robustness: the perturbation suite is for texts; not run on images")
    with recording(out, report):
        if out:
            out.write_text("recipe.yaml", dump(recipe))
        results = [_evaluate_model(name, split, names, recipe, out, i) for i, name in enumerate(recipe.models)]
        if out and recipe.profile:
            from nncli.evaluate.drift_images import write_evaluate_profile

            write_evaluate_profile(out, recipe, split, names, report)
        return _finish(report, results, gates, out, timer)


def _evaluate_model(name: str, split, names: list[str], recipe, out, index: int) -> dict:
    from nncli.io.image_inference import load_image_classifier
    from nncli.io.inference import map_labels, softmax

    console.log(f"[{index + 1}/{len(recipe.models)}] evaluating {name} on {len(split)} images")
    clf = load_image_classifier(name, allow_pickle=recipe.allow_pickle, trust_remote_code=recipe.trust_remote_code,
                                threads=recipe.threads)
    y = np.asarray(map_labels(names, clf.label_names, split.source))
    n = len(clf.label_names)
    t = Timer()
    probs = softmax(clf.logits(split.paths, recipe.batch_size) / clf.temperature)
    seconds = t()
    pred = probs.argmax(1)
    e, mce, bins = M.ece(y, probs, recipe.calibration.bins)
    metrics = {**M.classification(y, pred, n, probs), "ece": e, "mce": mce, "brier": M.brier(y, probs)}
    majority = Counter(y.tolist()).most_common(1)[0][0]
    metrics["majority_accuracy"] = float((y == majority).mean())
    metrics["majority_macro_f1"] = M.macro_f1(y, np.full_like(y, majority), n)
    pc = M.per_class(y, pred, n)
    res = {"name": name, "backend": clf.backend, "path": clf.path, "labels": clf.label_names, "metrics": metrics, "n": len(y),
           "throughput_per_second": round(len(y) / seconds, 2) if seconds else None, "warnings": [],
           "calibration": {"bins": recipe.calibration.bins, "temperature": clf.temperature, "ece": e, "mce": mce,
                           "reliability": bins},
           "per_class": {clf.label_names[k]: {m: float(pc[m][k]) for m in ("precision", "recall", "f1", "support")}
                         for k in range(n)},
           "confusion_matrix": {"labels": clf.label_names, "matrix": M.confusion(y, pred, n).tolist()}}
    if recipe.bootstrap:
        res["ci95"] = M.bootstrap_ci(y, pred, n, n=recipe.bootstrap, seed=recipe.seed)
    if len(set(pred.tolist())) == 1:
        res["warnings"].append(f"{name}: predicts only '{clf.label_names[int(pred[0])]}' on these images")
    if metrics["accuracy"] <= metrics["majority_accuracy"]:
        res["warnings"].append(f"{name}: accuracy {metrics['accuracy']:.3f} is no better than always predicting the most common "
                               f"label ({metrics['majority_accuracy']:.3f})")
    if out:
        _write_outputs(out, index, split, y, probs, clf.label_names, res)
    return res


def _write_outputs(out, index: int, split, y, probs, labels: list[str], res: dict) -> None:
    from nncli.train.image_artifacts import plot_confusion

    suffix = "" if index == 0 else f"-{index + 1}"
    rows = [{"row": r, "image": p, "label": labels[int(t)], "predicted": labels[int(q.argmax())],
             "confidence": round(float(q.max()), 6)} for r, p, t, q in zip(split.rows, split.paths, y, probs)]
    out.write_text(f"predictions{suffix}.jsonl", "".join(json.dumps(x) + "\n" for x in rows))
    plot_confusion(out / f"confusion{suffix}.png", res["confusion_matrix"]["matrix"], labels, Path(res["name"]).name)
    res["artifacts"] = {"predictions": f"predictions{suffix}.jsonl", "confusion": f"confusion{suffix}.png"}


def _finish(report, results: list[dict], gates: list[dict], out, timer) -> dict:
    rows = []
    for res in results:
        intervals = {k: v for k, v in res.get("ci95", {}).items()}
        for g in evaluate_gates(gates, res["metrics"], intervals=intervals, sizes={k: res["n"] for k in res["metrics"]}):
            rows.append({**g, "model": res["name"]})
    failed = [g for g in rows if not g["passed"]]
    report.update(models=results, metrics=results[0]["metrics"], gates=rows, warnings=[w for r in results for w in r["warnings"]],
                  timings={"wall_seconds": timer()}, peak_memory_mb=peak_memory_mb(), environment=environment(),
                  status="failed" if failed else "succeeded", exit_code=5 if failed else 0, finished_at=now())
    if out:
        report["artifacts"].update(report="report.json", recipe="recipe.yaml")
        out.write_json("report.json", report)
        out.complete()
    if failed:
        listing = ", ".join(f"{g['metric']} {g['value']:.4f} {g['op']} {g['threshold']} ({Path(g['model']).name})"
                            for g in failed)
        raise GateFailed(f"{len(failed)} gate(s) failed: {listing}", f"see {out.path}/report.json" if out else
                         "rerun with --output DIR for the full report", report=report)
    return report
