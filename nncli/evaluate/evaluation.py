"""`nncli evaluate`: accuracy is not enough. Metrics with bootstrap intervals, calibration (and
temperature scaling), robustness to small perturbations, slices, several models side by side, gates.

Reads top to bottom: load data -> for each model: logits -> (calibrate) -> metrics, calibration,
robustness, slices -> comparison -> gates -> report.json, report.md, predictions, plots.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from nncli.core import console
from nncli.core.atomic import atomic_write_json
from nncli.core.errors import GateFailed, InputError
from nncli.core.report import Timer, base_report, check_gate_metrics, environment, evaluate_gates, now, peak_memory_mb
from nncli.core.rundir import RunDir, recording
from nncli.evaluate import metrics as M
from nncli.io.models import detect_task, run_dir_for
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
    known = LM_METRICS if task == "causal-lm" else CLASSIFICATION_METRICS + _dynamic_metric_names(recipe)
    check_gate_metrics([g for g in gates if not g["metric"].startswith("slice.")], known)
    if recipe.calibration.fit and not recipe.data.validation:
        missing = [m for m in recipe.models if run_dir_for(m) is None]
        if missing:
            raise InputError(f"--calibrate needs validation data, and {missing[0]} is not part of a finetune run directory",
                             "pass --validation FILE (held-out data, never the evaluation data itself)")
    from nncli.io.inference import check_model
    from nncli.io.labelled import read_texts

    split, names, table = read_texts(recipe.data.path, recipe.data.text_column, role="evaluation", encoding=recipe.data.encoding,
                                     clean=recipe.data.clean_text, label_column=None if task == "causal-lm" else recipe.data.label_column,
                                     config=recipe.data.config, split=recipe.data.split)
    if recipe.data.limit and recipe.data.limit < len(split):
        from nncli.io.labelled import subset

        names = names[: recipe.data.limit]
        split = subset(split, list(range(recipe.data.limit)))
    if recipe.data.slice_column:
        _check_slice_column(split, recipe.data.slice_column)
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


def _evaluate_all(recipe: EvaluateRecipe, task: str, split, names: list, table, out: RunDir | None, report: dict, gates: list[dict],
                  timer: Timer) -> dict:
    for note in table.notes:
        console.warn(note)
    if split.dropped:
        console.warn(f"evaluation data: dropped {', '.join(f'{v} rows with {k.replace(chr(95), chr(32))}' for k, v in split.dropped.items())}")

    results = []
    for i, name in enumerate(recipe.models):
        console.log(f"[{i + 1}/{len(recipe.models)}] evaluating {name} on {len(split)} texts")
        if task == "causal-lm":
            res = _evaluate_lm(name, split, recipe)
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
        for g in evaluate_gates(gates, res["flat"]):
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
    if failed:
        listing = ", ".join(f"{g['metric']} {_fmt(g['value'])} {g['op']} {g['threshold']} ({Path(g['model']).name})" for g in failed)
        raise GateFailed(f"{len(failed)} gate(s) failed: {listing}", f"see {out.path}/report.json" if out else
                         "rerun with --output DIR for the full report", report=report)
    return report


# ---------------------------------------------------------------------------------------------- classification

def _write_profile(out: RunDir, recipe: EvaluateRecipe, split, names: list, report: dict) -> None:
    """Reference profile for `nncli drift` on the evaluated data, with the first model."""
    from nncli.evaluate import drift
    from nncli.io.inference import load_classifier, release

    name = recipe.models[0]
    ref = str(Path(name).resolve()) if Path(name).exists() else name
    clf = None
    try:
        clf = load_classifier(name, trust_remote_code=recipe.trust_remote_code, allow_pickle=recipe.allow_pickle,
                              threads=recipe.threads, max_length=recipe.data.max_length)
        labels = names if all(n is not None for n in names) else None
        profile = drift.build_profile(split.texts, labels, clf=clf, model_texts=split.texts, model_pairs=split.pairs,
                                      model_labels=labels, source=str(split.source), text_column=split.columns.get("text"),
                                      label_column=split.columns.get("label"), text_pair_column=split.columns.get("text_pair"),
                                      model_ref=ref, seed=recipe.seed)
        drift.save_profile(out.path, profile)
        report["artifacts"]["profile"] = drift.PROFILE_FILE
    except InputError:
        raise
    except Exception as e:  # the evaluation itself succeeded; say what is missing
        console.warn(f"could not write the drift reference profile ({type(e).__name__}: {str(e)[:160]})")
    finally:
        release(clf)


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
        temperature = _calibrate(name, clf, split, logits, y, recipe, res, calib)
    probs = softmax(logits / temperature)
    pred = probs.argmax(1)

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
    pc = M.per_class(y, pred, n_classes)
    res["per_class"] = {clf.label_names[k]: {m: float(pc[m][k]) for m in ("precision", "recall", "f1", "support")}
                        for k in range(n_classes)}
    cm = M.confusion(y, pred, n_classes)
    res["confusion_matrix"] = {"labels": clf.label_names, "matrix": cm.tolist()}
    used = sorted(set(pred.tolist()))
    if len(used) == 1:
        res["warnings"].append(f"{name}: predicts only '{clf.label_names[used[0]]}' on this data")
    if metrics["accuracy"] <= metrics["majority_accuracy"]:
        res["warnings"].append(f"{name}: accuracy {metrics['accuracy']:.3f} is no better than always predicting the most "
                               f"common label ({metrics['majority_accuracy']:.3f})")

    flat = dict(metrics)
    if recipe.robustness.enabled:
        res["robustness"] = _robustness(clf, split, y, recipe, temperature)
        rb = res["robustness"]["perturbations"]
        flat["flip_rate"] = res["robustness"]["mean_flip_rate"]
        flat["max_flip_rate"] = max(v["flip_rate"] for v in rb.values())
        flat["min_robust_accuracy"] = min(v["accuracy"] for v in rb.values())
        for k, v in rb.items():
            flat[f"robustness.{k}.accuracy"] = v["accuracy"]
            flat[f"robustness.{k}.flip_rate"] = v["flip_rate"]
    if recipe.data.slice_column:
        res["slices"] = _slices(split, y, pred, probs, n_classes, recipe, clf.label_names)
        trusted = [s for s in res["slices"] if not s["small"]] or res["slices"]
        flat["worst_slice_accuracy"] = min(s["accuracy"] for s in trusted)
        flat["worst_slice_macro_f1"] = min(s["macro_f1"] for s in trusted)
        for s in res["slices"]:
            flat[f"slice.{s['value']}.accuracy"] = s["accuracy"]
    res["metrics"] = {k: v for k, v in flat.items() if "." not in k}
    res["flat"] = flat
    if out:
        stem = "predictions.jsonl" if len(recipe.models) == 1 else f"predictions-{index + 1}-{_slug(name)}.jsonl"
        _write_predictions(out / stem, split, y, pred, probs, clf.label_names, recipe)
        res["artifacts"] = {"predictions": stem}
        suffix = "" if len(recipe.models) == 1 else f"-{index + 1}"
        _plot_confusion(out / f"confusion_matrix{suffix}.png", cm, clf.label_names, name)
        _plot_reliability(out / f"reliability{suffix}.png", bins, name, e)
        res["artifacts"].update(confusion_matrix=f"confusion_matrix{suffix}.png", reliability=f"reliability{suffix}.png")
    res["_pred"] = pred  # for paired comparison; removed before writing
    res["_y"] = y
    console.log(f"  accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}, ECE {e:.4f}"
                + (f", mean flip rate {flat['flip_rate']:.3f}" if "flip_rate" in flat else ""))
    return res


def _calibrate(name: str, clf, split, logits, y, recipe: EvaluateRecipe, res: dict, calib: dict) -> float:
    """Fit the temperature on validation data (nncli.evaluate.calibration's rule), check it on the evaluation data, store it."""
    from nncli.evaluate import calibration
    from nncli.io.inference import model_dir_of, softmax

    val_texts, val_pairs, val_y, source = _validation_for(name, recipe, clf)
    overlap = len(set(val_texts) & set(split.texts)) / max(1, len(set(split.texts)))
    if overlap > 0.5:
        res["warnings"].append(f"{name}: the calibration data overlaps the evaluation data ({overlap:.0%} of texts); "
                               "ECE after calibration is optimistic. Evaluate on held-out data")
    decision = calibration.fit(clf.logits(val_texts, val_pairs, recipe.batch_size), val_y, seed=recipe.seed)
    new_t, bins = decision.temperature, recipe.calibration.bins
    before = M.ece(y, softmax(logits / clf.temperature), bins)[0]
    uncalibrated = M.ece(y, softmax(logits), bins)[0]
    after = M.ece(y, softmax(logits / new_t), bins)[0]
    calib.update(fitted_on=source, fitted_rows=len(val_y), temperature=new_t, previous_temperature=clf.temperature,
                 ece_before=before, ece_after=after, ece_uncalibrated=uncalibrated, decision=decision.as_dict())
    console.log(f"calibration: temperature {new_t:.3f} ({decision.status}) from {len(val_y)} validation rows; "
                f"ECE on the evaluation data {before:.4f} -> {after:.4f}")
    if decision.status in ("refused", "bounded"):
        console.warn(f"calibration: {decision.reason}")
        res["warnings"].append(f"{name}: calibration {decision.status}: {decision.reason}")
    elif decision.status == "unchanged":
        console.log(f"calibration: {decision.reason}")
    if after > uncalibrated:
        msg = (f"{name}: the temperature {new_t:.3f} fitted on {source} makes ECE on the evaluation data worse than the "
               f"uncalibrated model ({uncalibrated:.4f} -> {after:.4f}): the validation split does not represent this data")
        console.warn(msg)
        res["warnings"].append(msg)
    stored = _store_temperature(model_dir_of(name), new_t, source, before, after, decision.as_dict())
    calib["stored_in"] = stored
    if stored is None:
        res["warnings"].append(f"{name}: the temperature could not be stored with the model (not a local directory); "
                               f"pass it on: {new_t:.4f}")
    return new_t


def _intervals(y, pred, probs, n_classes, recipe) -> dict:
    n, seed = recipe.bootstrap, recipe.seed
    bins = recipe.calibration.bins
    return {
        "accuracy": M.bootstrap(lambda a, b: float((a == b).mean()), [y, pred], n, seed),
        "macro_f1": M.bootstrap(lambda a, b: M.macro_f1(a, b, n_classes), [y, pred], n, seed),
        "loss": M.bootstrap(lambda a, p: M.log_loss(a, p), [y, probs], n, seed),
        "ece": M.bootstrap(lambda a, p: M.ece(a, p, bins)[0], [y, probs], n, seed),
        "brier": M.bootstrap(lambda a, p: M.brier(a, p), [y, probs], n, seed),
    }


def _robustness(clf, split, y, recipe: EvaluateRecipe, temperature: float) -> dict:
    from nncli.evaluate import perturb
    from nncli.io.inference import softmax

    rng = np.random.default_rng(recipe.robustness.seed)
    n = min(recipe.robustness.samples, len(split))
    idx = np.sort(rng.choice(len(split), n, replace=False)) if n < len(split) else np.arange(len(split))
    texts = [split.texts[i] for i in idx]
    pairs = [split.pairs[i] for i in idx] if split.pairs is not None else None
    clean = softmax(clf.logits(texts, pairs, recipe.batch_size) / temperature).argmax(1)
    yy = y[idx]
    out = {"samples": int(n), "seed": recipe.robustness.seed, "clean_accuracy": float((clean == yy).mean()), "perturbations": {}}
    for name in recipe.robustness.perturbations:
        changed = perturb.apply(name, texts, recipe.robustness.seed)
        p = softmax(clf.logits(changed, pairs, recipe.batch_size) / temperature).argmax(1)
        out["perturbations"][name] = {"accuracy": float((p == yy).mean()), "flip_rate": float((p != clean).mean()),
                                      "accuracy_drop": float((clean == yy).mean() - (p == yy).mean()),
                                      "texts_changed": float(np.mean([a != b for a, b in zip(texts, changed)]))}
    out["mean_flip_rate"] = float(np.mean([v["flip_rate"] for v in out["perturbations"].values()]))
    worst = max(out["perturbations"].items(), key=lambda kv: kv[1]["flip_rate"])
    out["worst"] = worst[0]
    return out


def _slices(split, y, pred, probs, n_classes, recipe: EvaluateRecipe, label_names) -> list[dict]:
    col = recipe.data.slice_column
    values = ["(missing)" if v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() == "" else str(v).strip()
              for v in split.extra[col]]
    out = []
    for value in sorted(set(values)):
        mask = np.array([v == value for v in values])
        k = int(mask.sum())
        m = M.classification(y[mask], pred[mask], n_classes, probs[mask])
        e = M.ece(y[mask], probs[mask], recipe.calibration.bins)[0]
        row = {"value": value, "count": k, **m, "ece": e, "small": k < recipe.slice_min_count}
        if recipe.bootstrap and k >= 2:
            row["ci95_accuracy"] = M.bootstrap(lambda a, b: float((a == b).mean()), [y[mask], pred[mask]],
                                               min(recipe.bootstrap, 500), recipe.seed)
        out.append(row)
    out.sort(key=lambda r: (r["small"], r["accuracy"]))
    return out


def _check_slice_column(split, col: str) -> None:
    if col not in split.extra:
        import difflib

        from nncli.core.errors import UsageError

        cols = list(split.extra)
        close = difflib.get_close_matches(col, cols, n=1)
        raise UsageError(f"data.slice_column: column '{col}' not found (columns: {', '.join(cols) or 'none besides the text'})",
                         f"did you mean '{close[0]}'?" if close else "pass an existing column with --slice-column")


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


def _validation_for(name: str, recipe: EvaluateRecipe, clf):
    """Validation texts for temperature fitting: --validation, else the run directory's own validation split."""
    from nncli.io.inference import map_labels
    from nncli.io.labelled import load_labelled, read_texts

    if recipe.data.validation:
        s, names, _ = read_texts(recipe.data.validation, recipe.data.text_column, role="validation", encoding=recipe.data.encoding,
                                 clean=recipe.data.clean_text, label_column=recipe.data.label_column)
        return s.texts, s.pairs, np.asarray(map_labels(names, clf.label_names, s.source)), s.source
    run_dir = run_dir_for(name)
    if run_dir is not None:
        from nncli.recipe.load import load_run_recipe

        ft = load_run_recipe(run_dir)
        data = load_labelled(ft.data, seed=ft.train.seed, label_names=clf.label_names)
        v = data.validation
        return v.texts, v.pairs, np.asarray(v.labels), f"{run_dir}/recipe.yaml validation split"
    raise InputError("--calibrate needs validation data: the model is not a run directory with a recipe",
                     "pass --validation FILE (never the evaluation data itself)")


def _store_temperature(model_dir: Path | None, t: float, source: str, before: float, after: float, decision: dict) -> str | None:
    from nncli.io.inference import CALIBRATION_FILE

    if model_dir is None:
        return None
    try:
        atomic_write_json(model_dir / CALIBRATION_FILE, {"method": "temperature_scaling", "temperature": t, "fitted_on": source,
                                                         "ece_before": before, "ece_after": after, "fitted_at": now(),
                                                         "status": decision["status"], "reason": decision["reason"],
                                                         "decision": decision})
    except Exception as e:  # read-only model directory: report, do not fail the evaluation
        console.warn(f"could not store the temperature in {model_dir}: {e}")
        return None
    return str(model_dir / CALIBRATION_FILE)


# ---------------------------------------------------------------------------------------------- causal LM

def _evaluate_lm(name: str, split, recipe: EvaluateRecipe) -> dict:
    import torch

    from nncli.core.machine import set_threads
    from nncli.io.models import load_tokenizer, resolve

    set_threads(recipe.threads)
    resolved = resolve(name, None, recipe.allow_pickle)
    from transformers import AutoModelForCausalLM

    from nncli.io.models import is_weights_error, load_config, weights_error

    load_config(resolved.path, recipe.trust_remote_code)
    tok = load_tokenizer(resolved.path, recipe.trust_remote_code)
    try:
        model = AutoModelForCausalLM.from_pretrained(resolved.path, trust_remote_code=recipe.trust_remote_code,
                                                     use_safetensors=None if recipe.allow_pickle else True).eval()
    except Exception as e:
        if is_weights_error(e):
            raise weights_error(e, resolved.path) from None
        raise
    max_len = recipe.data.max_length or min(1024, getattr(model.config, "max_position_embeddings", 1024) or 1024)
    nll, counts = [], []
    t = Timer()
    with torch.inference_mode():
        for i in range(0, len(split), recipe.batch_size):
            texts = split.texts[i:i + recipe.batch_size]
            enc = tok(texts, truncation=True, max_length=max_len, padding=True, return_tensors="pt")
            labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
            logits = model(**enc).logits[:, :-1].float()
            target = labels[:, 1:]
            lp = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), reduction="none",
                                                   ignore_index=-100).view(target.shape)
            mask = (target != -100).float()
            nll.extend((lp * mask).sum(1).tolist())
            counts.extend(mask.sum(1).tolist())
    nll, counts = np.array(nll), np.array(counts)
    keep = counts > 0
    loss = float(nll[keep].sum() / counts[keep].sum())
    metrics = {"loss": loss, "perplexity": float(np.exp(loss))}
    ci = M.bootstrap(lambda a, b: float(np.exp(a.sum() / b.sum())), [nll[keep], counts[keep]], recipe.bootstrap, recipe.seed) \
        if recipe.bootstrap else None
    return {"name": name, "backend": "torch", "path": resolved.path, "metrics": metrics, "ci95": {"perplexity": ci},
            "tokens": int(counts.sum()), "throughput_per_second": round(len(split) / t(), 2), "flat": metrics, "warnings": []}


def _dynamic_metric_names(recipe: EvaluateRecipe) -> list[str]:
    out = []
    for p in recipe.robustness.perturbations:
        out += [f"robustness.{p}.accuracy", f"robustness.{p}.flip_rate"]
    return out


# ---------------------------------------------------------------------------------------------- outputs

def _write_predictions(path: Path, split, y, pred, probs, labels, recipe: EvaluateRecipe) -> None:
    id_col = recipe.data.id_column or ("id" if "id" in split.extra else None)
    ids = split.extra.get(id_col) if id_col else None
    lines = []
    for i in range(len(split)):
        rec = {"id": ids[i] if ids is not None else i, "text": split.texts[i], "label": labels[int(y[i])],
               "predicted": labels[int(pred[i])], "correct": bool(y[i] == pred[i]),
               "probabilities": {labels[k]: round(float(probs[i, k]), 6) for k in range(len(labels))}}
        if recipe.data.slice_column:
            rec["slice"] = split.extra.get(recipe.data.slice_column, [None] * len(split))[i]
        lines.append(json.dumps(rec, ensure_ascii=False, default=str))
    from nncli.core.atomic import atomic_write_text

    atomic_write_text(path, "\n".join(lines) + "\n")


def _plot_confusion(path: Path, cm: np.ndarray, labels: list[str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4, 0.6 * len(labels) + 2.5)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title(f"confusion matrix: {Path(title).name}", fontsize=9)
    _save_fig(fig, path)


def _plot_reliability(path: Path, bins: list[dict], title: str, ece: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
    full = [b for b in bins if b["count"]]
    ax.bar([(b["lo"] + b["hi"]) / 2 for b in full], [b["accuracy"] for b in full], width=[b["hi"] - b["lo"] for b in full],
           edgecolor="black", alpha=0.7, label="accuracy")
    ax.plot([b["confidence"] for b in full], [b["accuracy"] for b in full], "o", color="C3", ms=3, label="bin confidence")
    ax.set_xlim(0, 1), ax.set_ylim(0, 1), ax.set_xlabel("confidence"), ax.set_ylabel("accuracy")
    ax.set_title(f"reliability: {Path(title).name} (ECE {ece:.3f})", fontsize=9), ax.legend(fontsize=7, loc="upper left")
    _save_fig(fig, path)


def _save_fig(fig, path: Path) -> None:
    import io

    import matplotlib.pyplot as plt

    from nncli.core.atomic import atomic_write_bytes

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name.strip("/").replace("/", "_"))[-60:]


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _ci(res: dict, key: str) -> str:
    ci = (res.get("ci95") or {}).get(key)
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


def markdown(report: dict) -> str:
    lines = [f"# Evaluation: {report.get('name') or Path(report['data']['source']).name}", "",
             f"Data: `{report['data']['source']}`, {report['data']['rows']} rows. nncli {report['nncli_version']}, "
             f"{report['finished_at']}.", ""]
    if report.get("task") == "causal-lm":
        lines += ["| model | loss | perplexity (95% CI) |", "|---|---|---|"]
        for r in report["models"]:
            lines.append(f"| {r['name']} | {r['metrics']['loss']:.4f} | {r['metrics']['perplexity']:.3f}{_ci(r, 'perplexity')} |")
        return "\n".join(lines) + "\n"
    lines += ["## Summary (95% bootstrap intervals)", "",
              "| model | accuracy | macro-F1 | log-loss | ECE | Brier | mean flip rate | majority acc |", "|---|---|---|---|---|---|---|---|"]
    for r in report["models"]:
        m = r["metrics"]
        lines.append(f"| {r['name']} | {m['accuracy']:.3f}{_ci(r, 'accuracy')} | {m['macro_f1']:.3f}{_ci(r, 'macro_f1')} | "
                     f"{m['loss']:.3f} | {m['ece']:.3f}{_ci(r, 'ece')} | {m['brier']:.3f} | "
                     f"{_fmt(m.get('flip_rate'))} | {m['majority_accuracy']:.3f} |")
    if report.get("comparison"):
        lines += ["", "## Against the first model", "", "| model | accuracy delta (95% CI) | agreement |", "|---|---|---|"]
        for row in report["comparison"][1:]:
            ci = row.get("accuracy_delta_ci95")
            lines.append(f"| {row['model']} | {row['accuracy_delta']:+.4f}" + (f" [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else "")
                         + f" | {row['agreement_with_first']:.3f} |")
    for r in report["models"]:
        lines += ["", f"## {r['name']}", "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        for label, pc in r["per_class"].items():
            lines.append(f"| {label} | {pc['precision']:.3f} | {pc['recall']:.3f} | {pc['f1']:.3f} | {int(pc['support'])} |")
        cm = r["confusion_matrix"]
        lines += ["", "Confusion matrix (rows: true, columns: predicted):", "",
                  "| | " + " | ".join(cm["labels"]) + " |", "|---" * (len(cm["labels"]) + 1) + "|"]
        for label, row in zip(cm["labels"], cm["matrix"]):
            lines.append(f"| **{label}** | " + " | ".join(map(str, row)) + " |")
        c = r["calibration"]
        lines += ["", f"Calibration: ECE {c['ece']:.4f}, MCE {c['mce']:.4f}, Brier {c['brier']:.4f}, temperature "
                      f"{c['temperature']:.3f}" + (f" (fitted on {c['fitted_on']}: ECE {c['ece_before']:.4f} -> {c['ece_after']:.4f})"
                                                   if "fitted_on" in c else "") + "."]
        if c.get("decision"):
            lines += ["", f"Temperature {c['decision']['status']}: {c['decision']['reason']}."]
        if r.get("robustness"):
            rb = r["robustness"]
            lines += ["", f"Robustness on {rb['samples']} texts (seed {rb['seed']}, clean accuracy {rb['clean_accuracy']:.3f}):", "",
                      "| perturbation | accuracy | drop | flip rate |", "|---|---|---|---|"]
            for k, v in rb["perturbations"].items():
                lines.append(f"| {k} | {v['accuracy']:.3f} | {v['accuracy_drop']:+.3f} | {v['flip_rate']:.3f} |")
        if r.get("slices"):
            lines += ["", "Slices, worst first (small slices flagged and listed last):", "",
                      "| slice | rows | accuracy (95% CI) | macro-F1 | ECE | |", "|---|---|---|---|---|---|"]
            for s in r["slices"]:
                ci = s.get("ci95_accuracy")
                lines.append(f"| {s['value']} | {s['count']} | {s['accuracy']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
                             + f" | {s['macro_f1']:.3f} | {s['ece']:.3f} | {'too small to trust' if s['small'] else ''} |")
        for key in ("confusion_matrix", "reliability"):
            if r.get("artifacts", {}).get(key):
                lines += ["", f"![{key}]({r['artifacts'][key]})"]
    if report.get("gates"):
        lines += ["", "## Gates", "", "| model | metric | rule | value | result |", "|---|---|---|---|---|"]
        for g in report["gates"]:
            lines.append(f"| {g['model']} | {g['metric']} | {g['op']} {g['threshold']} | {_fmt(g['value'])} | "
                         f"{'pass' if g['passed'] else '**FAIL**'} |")
    if report.get("warnings"):
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in report["warnings"]]
    return "\n".join(lines) + "\n"
