"""`nncli evaluate` on image classifiers: metrics with 95% bootstrap intervals, calibration (ECE, Brier; --calibrate:
image_calibration.py), the majority-class reference, per-class scores and the confusion matrix (confusion.png),
robustness under image perturbations (image_robustness.py), slices by a listing's metadata column (slices.py, shared
with texts), the most confident mistakes (mistakes.png, image_mistakes.py), one prediction per image, gates.
Several models are scored on the same images. Labels come from the folder layout (root/<label>/...) or a listing's
label column."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from nncli.core import console
from nncli.core.errors import UsageError
from nncli.core.report import Timer, base_report, check_gate_metrics, environment, evaluate_gates, gates_of, now, peak_memory_mb
from nncli.core.rundir import RunDir, recording
from nncli.evaluate import metrics as M
from nncli.evaluate.eval_report import raise_if_failed
from nncli.evaluate.gating import gate_inputs
from nncli.evaluate.image_calibration import image_calibrate
from nncli.evaluate.image_mistakes import write_mistakes
from nncli.evaluate.image_robustness import image_robustness
from nncli.evaluate.robustness import robustness_metric_names, robustness_metrics
from nncli.evaluate.slices import check_slice_column, slice_metrics, slices

IMAGE_METRICS = ["accuracy", "macro_f1", "loss", "ece", "mce", "brier", "majority_accuracy", "majority_macro_f1",
                 "flip_rate", "max_flip_rate", "min_robust_accuracy", "worst_slice_accuracy", "worst_slice_macro_f1"]


def run(recipe, *, overwrite: bool = False) -> dict:
    from nncli.evaluate.temperature import check_calibration_source
    from nncli.io.images import read_with_labels
    from nncli.recipe.load import dump

    timer, gates = Timer(), gates_of(recipe.gates)
    check_gate_metrics([g for g in gates if not g["metric"].startswith("slice.")],
                       IMAGE_METRICS + robustness_metric_names(recipe, "image"))
    if recipe.data.slice_column and Path(recipe.data.path).expanduser().is_dir():
        raise UsageError(f"--slice-column {recipe.data.slice_column}: an image folder ({recipe.data.path}) has no metadata "
                         "columns to slice by", "pass a CSV/JSONL listing with image, label and "
                         f"{recipe.data.slice_column} columns as --data")
    check_calibration_source(recipe)
    split, names, notes = read_with_labels(recipe.data.path, recipe.data.image_column, recipe.data.label_column)
    if recipe.data.slice_column:
        check_slice_column(split, recipe.data.slice_column)
    if recipe.data.limit and recipe.data.limit < len(split):
        split, names = split.subset(list(range(recipe.data.limit))), names[: recipe.data.limit]
    out = RunDir(recipe.output, command="evaluate") if recipe.output else None
    if out:
        out.prepare(overwrite=overwrite, inputs=[recipe.data.path, recipe.data.validation, *recipe.models])
    report = base_report("evaluate", recipe.name, task="image-classification")
    report["data"] = {"source": split.source, "rows_read": split.rows_read, "rows": len(split), "dropped": split.dropped,
                      "notes": notes, "kind": "images"}
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
    logits = clf.logits(split.paths, recipe.batch_size)
    seconds = t()
    res = {"name": name, "backend": clf.backend, "path": clf.path, "labels": clf.label_names, "n": len(y),
           "throughput_per_second": round(len(y) / seconds, 2) if seconds else None, "warnings": []}
    calib = {"bins": recipe.calibration.bins, "temperature": clf.temperature}
    temperature = image_calibrate(name, clf, split, logits, y, recipe, res, calib) if recipe.calibration.fit else clf.temperature
    probs = softmax(logits / temperature)
    pred = probs.argmax(1)
    e, mce, bins = M.ece(y, probs, recipe.calibration.bins)
    metrics = {**M.classification(y, pred, n, probs), "ece": e, "mce": mce, "brier": M.brier(y, probs)}
    majority = Counter(y.tolist()).most_common(1)[0][0]
    metrics["majority_accuracy"] = float((y == majority).mean())
    metrics["majority_macro_f1"] = M.macro_f1(y, np.full_like(y, majority), n)
    pc = M.per_class(y, pred, n)
    calib.update(temperature=temperature, ece=e, mce=mce, reliability=bins)
    res.update(metrics=metrics, calibration=calib,
               per_class={clf.label_names[k]: {m: float(pc[m][k]) for m in ("precision", "recall", "f1", "support")}
                          for k in range(n)},
               confusion_matrix={"labels": clf.label_names, "matrix": M.confusion(y, pred, n).tolist()})
    if recipe.bootstrap:
        res["ci95"] = M.bootstrap_ci(y, pred, n, n=recipe.bootstrap, seed=recipe.seed)
    if len(set(pred.tolist())) == 1:
        res["warnings"].append(f"{name}: predicts only '{clf.label_names[int(pred[0])]}' on these images")
    if metrics["accuracy"] <= metrics["majority_accuracy"]:
        res["warnings"].append(f"{name}: accuracy {metrics['accuracy']:.3f} is no better than always predicting the most common "
                               f"label ({metrics['majority_accuracy']:.3f})")
    _robustness_and_slices(clf, split, y, pred, probs, recipe, res)
    if out:
        _write_outputs(out, index, split, y, probs, clf.label_names, res, recipe.data.slice_column)
    return res


def _robustness_and_slices(clf, split, y, pred, probs, recipe, res: dict) -> None:
    """Robustness under image perturbations and per-slice metrics into `res`, with their flat, gateable metrics in
    res["flat"] (their intervals and sizes: nncli.evaluate.gating)."""
    flat = dict(res["metrics"])
    if recipe.robustness.enabled:
        res["robustness"] = image_robustness(clf, split, y, recipe)
        flat.update(robustness_metrics(res["robustness"]))
    if recipe.data.slice_column:
        res["slices"] = slices(split, y, pred, probs, len(clf.label_names), recipe, clf.label_names)
        flat.update(slice_metrics(res["slices"]))
    res["metrics"] = {k: v for k, v in flat.items() if "." not in k}
    res["flat"] = flat


def _write_outputs(out, index: int, split, y, probs, labels: list[str], res: dict, slice_column: str | None) -> None:
    from nncli.train.image_artifacts import plot_confusion

    suffix = "" if index == 0 else f"-{index + 1}"
    rows = [{"row": r, "image": p, "label": labels[int(t)], "predicted": labels[int(q.argmax())],
             "confidence": round(float(q.max()), 6)} for r, p, t, q in zip(split.rows, split.paths, y, probs)]
    if slice_column:
        for row, value in zip(rows, split.extra[slice_column]):
            row["slice"] = value
    out.write_text(f"predictions{suffix}.jsonl", "".join(json.dumps(x) + "\n" for x in rows))
    plot_confusion(out / f"confusion{suffix}.png", res["confusion_matrix"]["matrix"], labels, Path(res["name"]).name)
    res["artifacts"] = {"predictions": f"predictions{suffix}.jsonl", "confusion": f"confusion{suffix}.png"}
    res["mistakes"] = write_mistakes(out / f"mistakes{suffix}.png", split.paths, y, probs, labels, res["name"])
    if res["mistakes"]["file"]:
        res["artifacts"]["mistakes"] = res["mistakes"]["file"]


def _finish(report, results: list[dict], gates: list[dict], out, timer) -> dict:
    rows = []
    for res in results:
        intervals, sizes = gate_inputs(res, res["n"])
        for g in evaluate_gates(gates, res.pop("flat"), intervals=intervals, sizes=sizes):
            rows.append({**g, "model": res["name"]})
    failed = [g for g in rows if not g["passed"]]
    report.update(models=results, metrics=results[0]["metrics"], gates=rows, warnings=[w for r in results for w in r["warnings"]],
                  timings={"wall_seconds": timer()}, peak_memory_mb=peak_memory_mb(), environment=environment(),
                  status="failed" if failed else "succeeded", exit_code=5 if failed else 0, finished_at=now())
    if out:
        report["artifacts"].update(report="report.json", recipe="recipe.yaml")
        out.write_json("report.json", report)
        out.complete()
    raise_if_failed(failed, out, report)
    return report
