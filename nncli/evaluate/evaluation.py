"""`nncli evaluate`: accuracy is not enough. Metrics with bootstrap intervals, calibration (and
temperature scaling), robustness to small perturbations, slices, several models side by side, gates.

Reads top to bottom: load data -> for each model: logits -> (calibrate) -> metrics, calibration,
robustness, slices -> comparison -> gates -> report.json, report.md, predictions, plots.
The steps live beside it: temperature.py (--calibrate), robustness.py, slices.py, perplexity.py (causal LMs)
and eval_report.py (predictions.jsonl, plots, report.md).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from nncli.core import console
from nncli.core.report import Timer, base_report, check_gate_metrics, environment, evaluate_gates, now, peak_memory_mb
from nncli.core.rundir import RunDir, recording
from nncli.evaluate import metrics as M
from nncli.evaluate.eval_report import markdown, plot_confusion, plot_reliability, raise_if_failed, slug, write_predictions
from nncli.evaluate.gating import gate_inputs
from nncli.evaluate.perplexity import evaluate_lm
from nncli.evaluate.robustness import robustness, robustness_metric_names, robustness_metrics
from nncli.evaluate.slices import check_slice_column, slice_metrics, slices
from nncli.evaluate.temperature import calibrate, check_calibration_source
from nncli.io.models import detect_task
from nncli.recipe.evaluate import EvaluateRecipe
from nncli.recipe.load import dump

CLASSIFICATION_METRICS = ["accuracy", "macro_f1", "loss", "ece", "mce", "brier", "flip_rate", "max_flip_rate",
                          "min_robust_accuracy", "worst_slice_accuracy", "worst_slice_macro_f1", "majority_accuracy"]
LM_METRICS = ["perplexity", "loss"]


def run(recipe: EvaluateRecipe, *, overwrite: bool = False) -> dict:
    from nncli.core.report import gates_of

    timer = Timer()
    gates = gates_of(recipe.gates)

    task = recipe.task
    if task == "auto":
        task = detect_task(recipe.models[0])
    if task == "image-classification":
        from nncli.evaluate import images

        return images.run(recipe, overwrite=overwrite)
    known = LM_METRICS if task == "causal-lm" else CLASSIFICATION_METRICS + robustness_metric_names(recipe)
    check_gate_metrics([g for g in gates if not g["metric"].startswith("slice.")], known)
    check_calibration_source(recipe)
    from nncli.io.inference import check_model
    from nncli.io.labelled import read_texts

    split, names, table = read_texts(recipe.data.path, recipe.data.text_column, role="evaluation", encoding=recipe.data.encoding,
                                     clean=recipe.data.clean_text,
                                     label_column=None if task == "causal-lm" else recipe.data.label_column,
                                     config=recipe.data.config, split=recipe.data.split)
    if recipe.data.limit and recipe.data.limit < len(split):
        from nncli.io.labelled import subset

        names = names[: recipe.data.limit]
        split = subset(split, list(range(recipe.data.limit)))
    if recipe.data.slice_column:
        check_slice_column(split, recipe.data.slice_column)
    model_dirs = [check_model(m, allow_pickle=recipe.allow_pickle) for m in recipe.models]   # inputs first, outputs after
    out = RunDir(recipe.output, command="evaluate") if recipe.output else None
    if out:
        out.prepare(overwrite=overwrite, inputs=[recipe.data.path, recipe.data.validation, *model_dirs])
    report = base_report("evaluate", recipe.name)
    report["data"] = {"source": split.source, "rows_read": split.rows_read, "rows": len(split), "dropped": split.dropped,
                      "notes": table.notes, "fingerprint": table.fingerprint}
    with recording(out, report):
        if out:
            out.write_text("recipe.yaml", dump(recipe))
        return _evaluate_all(recipe, task, split, names, table, out, report, gates, timer)


def _evaluate_all(recipe: EvaluateRecipe, task: str, split, names: list, table, out: RunDir | None, report: dict,
                  gates: list[dict],
                  timer: Timer) -> dict:
    for note in table.notes:
        console.warn(note)
    if split.dropped:
        console.warn("evaluation data: dropped "
                     f"{', '.join(f'{v} rows with {k.replace(chr(95), chr(32))}' for k, v in split.dropped.items())}")

    results = []
    for i, name in enumerate(recipe.models):
        console.log(f"[{i + 1}/{len(recipe.models)}] evaluating {name} on {len(split)} texts")
        if task == "causal-lm":
            res = evaluate_lm(name, split, recipe)
        else:
            res = _evaluate_classifier(name, split, names, recipe, out, index=i)
        results.append(res)
    if out and task != "causal-lm" and recipe.profile:
        _write_profile(out, recipe, split, names, report)
    report["models"] = results
    report["task"] = task
    report["metrics"] = results[0]["metrics"]
    if len(results) > 1 and task != "causal-lm":
        report["comparison"] = _compare(results, recipe)

    gate_rows = []
    for res in results:
        intervals, sizes = gate_inputs(res, len(split))
        for g in evaluate_gates(gates, res["flat"], intervals=intervals, sizes=sizes):
            gate_rows.append({**g, "model": res["name"]})
    report["gates"] = gate_rows
    failed = [g for g in gate_rows if not g["passed"]]
    report["warnings"] = [w for r in results for w in r.get("warnings", [])]
    report["timings"] = {"wall_seconds": timer()}
    report["peak_memory_mb"] = peak_memory_mb()
    report["environment"] = environment()
    report.update(status="failed" if failed else "succeeded", exit_code=5 if failed else 0, finished_at=now())
    for r in results:
        for k in ("flat", "_pred", "_y"):
            r.pop(k, None)
    if out:
        report["artifacts"].update({"report": "report.json", "markdown": "report.md", "recipe": "recipe.yaml"})
        out.write_text("report.md", markdown(report))
        out.write_json("report.json", report)
        out.complete()
    raise_if_failed(failed, out, report)
    return report


def _write_profile(out: RunDir, recipe: EvaluateRecipe, split, names: list, report: dict) -> None:
    """Reference profile for `nncli drift` on the evaluated data, with the first model."""
    from nncli.evaluate import drift_profile as drift
    from nncli.io.inference import load_classifier

    name = recipe.models[0]
    ref = str(Path(name).resolve()) if Path(name).exists() else name
    labels = names if all(n is not None for n in names) else None

    def load():
        return load_classifier(name, trust_remote_code=recipe.trust_remote_code, allow_pickle=recipe.allow_pickle,
                               threads=recipe.threads, max_length=recipe.data.max_length)

    def build(clf):
        return drift.build_profile(split.texts, labels, clf=clf, model_texts=split.texts, model_pairs=split.pairs,
                                   model_labels=labels, source=str(split.source), text_column=split.columns.get("text"),
                                   label_column=split.columns.get("label"), text_pair_column=split.columns.get("text_pair"),
                                   model_ref=ref, seed=recipe.seed)

    drift.save_evaluated_profile(out, report, load, build)


def _evaluate_classifier(name: str, split, names: list, recipe: EvaluateRecipe, out: RunDir | None, index: int) -> dict:
    from nncli.io.inference import load_classifier, map_labels, softmax

    clf = load_classifier(name, trust_remote_code=recipe.trust_remote_code, allow_pickle=recipe.allow_pickle,
                          threads=recipe.threads, max_length=recipe.data.max_length)
    y = np.asarray(map_labels(names, clf.label_names, split.source))
    n_classes = len(clf.label_names)
    t = Timer()
    logits = clf.logits(split.texts, split.pairs, recipe.batch_size)
    seconds = t()
    res = {"name": name, "backend": clf.backend, "path": clf.path, "labels": clf.label_names, "warnings": [],
           "throughput_per_second": round(len(split) / seconds, 2) if seconds else None}

    # calibration: fit T on validation data (never on the evaluation data itself), store it with the model
    temperature = clf.temperature
    calib: dict = {"bins": recipe.calibration.bins, "temperature": temperature}
    if recipe.calibration.fit:
        temperature = calibrate(name, clf, split, logits, y, recipe, res, calib)
    probs = softmax(logits / temperature)
    pred = probs.argmax(1)
    metrics, bins = _classifier_metrics(y, pred, probs, n_classes, recipe, res, calib)
    cm = _per_class_and_warnings(name, y, pred, metrics, clf.label_names, res)

    flat = dict(metrics)
    if recipe.robustness.enabled:
        res["robustness"] = robustness(clf, split, y, recipe, temperature)
        flat.update(robustness_metrics(res["robustness"]))
    if recipe.data.slice_column:
        res["slices"] = slices(split, y, pred, probs, n_classes, recipe, clf.label_names)
        flat.update(slice_metrics(res["slices"]))
    res["metrics"] = {k: v for k, v in flat.items() if "." not in k}
    res["flat"] = flat
    if out:
        res["artifacts"] = _write_model_artifacts(out, name, index, recipe, split, y, pred, probs, clf.label_names, cm, bins,
                                                  metrics["ece"])
    res["_pred"] = pred  # for paired comparison; removed before writing
    res["_y"] = y
    console.log(f"  accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}, ECE {metrics['ece']:.4f}"
                + (f", mean flip rate {flat['flip_rate']:.3f}" if "flip_rate" in flat else ""))
    return res


def _classifier_metrics(y, pred, probs, n_classes: int, recipe: EvaluateRecipe, res: dict, calib: dict) -> tuple[dict, list]:
    """Accuracy, macro-F1, loss, calibration (ECE, MCE, Brier), the majority-class baseline, and bootstrap intervals."""
    cls = M.classification(y, pred, n_classes, probs)
    e, mce, bins = M.ece(y, probs, recipe.calibration.bins)
    metrics = {**cls, "ece": e, "mce": mce, "brier": M.brier(y, probs)}
    majority = Counter(y.tolist()).most_common(1)[0][0]
    metrics["majority_accuracy"] = float((y == majority).mean())
    metrics["majority_macro_f1"] = M.macro_f1(y, np.full_like(y, majority), n_classes)
    calib.update(ece=e, mce=mce, brier=metrics["brier"], reliability=bins)
    res["calibration"] = calib
    if recipe.bootstrap:
        res["ci95"] = _intervals(y, pred, probs, n_classes, recipe)
    return metrics, bins


def _per_class_and_warnings(name: str, y, pred, metrics: dict, label_names: list[str], res: dict) -> np.ndarray:
    """Per-class scores and the confusion matrix into `res`, with warnings for a collapsed or no-better-than-majority model."""
    n_classes = len(label_names)
    pc = M.per_class(y, pred, n_classes)
    res["per_class"] = {label_names[k]: {m: float(pc[m][k]) for m in ("precision", "recall", "f1", "support")}
                        for k in range(n_classes)}
    cm = M.confusion(y, pred, n_classes)
    res["confusion_matrix"] = {"labels": label_names, "matrix": cm.tolist()}
    used = sorted(set(pred.tolist()))
    if len(used) == 1:
        res["warnings"].append(f"{name}: predicts only '{label_names[used[0]]}' on this data")
    if metrics["accuracy"] <= metrics["majority_accuracy"]:
        res["warnings"].append(f"{name}: accuracy {metrics['accuracy']:.3f} is no better than always predicting the most "
                               f"common label ({metrics['majority_accuracy']:.3f})")
    return cm


def _write_model_artifacts(out: RunDir, name: str, index: int, recipe: EvaluateRecipe, split, y, pred, probs,
                           label_names: list[str], cm, bins: list, ece: float) -> dict:
    """predictions.jsonl and the two plots of one model (numbered when several models are compared)."""
    stem = "predictions.jsonl" if len(recipe.models) == 1 else f"predictions-{index + 1}-{slug(name)}.jsonl"
    write_predictions(out / stem, split, y, pred, probs, label_names, recipe)
    suffix = "" if len(recipe.models) == 1 else f"-{index + 1}"
    plot_confusion(out / f"confusion_matrix{suffix}.png", cm, label_names, name)
    plot_reliability(out / f"reliability{suffix}.png", bins, name, ece)
    return {"predictions": stem, "confusion_matrix": f"confusion_matrix{suffix}.png", "reliability": f"reliability{suffix}.png"}


def _intervals(y, pred, probs, n_classes, recipe) -> dict:
    n, seed = recipe.bootstrap, recipe.seed
    bins = recipe.calibration.bins
    ci = M.bootstrap_ci(y, pred, n_classes, n, seed)
    return {
        "accuracy": ci.get("accuracy"),
        "macro_f1": ci.get("macro_f1"),
        "loss": M.bootstrap(lambda a, p: M.log_loss(a, p), [y, probs], n, seed),
        "ece": M.bootstrap(lambda a, p: M.ece(a, p, bins)[0], [y, probs], n, seed),
        "brier": M.bootstrap(lambda a, p: M.brier(a, p), [y, probs], n, seed),
    }


def _compare(results: list[dict], recipe: EvaluateRecipe) -> list[dict]:
    """Each model against the first: metric deltas and a paired bootstrap interval of the accuracy difference."""
    base = results[0]
    rows = []
    for r in results:
        row = {"model": r["name"], **{k: r["metrics"].get(k) for k in ("accuracy", "macro_f1", "loss", "ece", "flip_rate")}}
        row["throughput_per_second"] = r.get("throughput_per_second")
        if r is not base:
            row["accuracy_delta"] = r["metrics"]["accuracy"] - base["metrics"]["accuracy"]
            row["agreement_with_first"] = float((r["_pred"] == base["_pred"]).mean())
            if recipe.bootstrap:
                row["accuracy_delta_ci95"] = M.bootstrap(
                    lambda y, a, b: float((a == y).mean() - (b == y).mean()), [base["_y"], r["_pred"], base["_pred"]],
                    recipe.bootstrap, recipe.seed)
        rows.append(row)
    for r in results:
        r.pop("_pred", None)
        r.pop("_y", None)
    return rows
