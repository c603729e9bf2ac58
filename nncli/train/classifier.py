"""`nncli finetune` for sequence classification, around the one loop: pre-flight, model and task, and what comes
after training (every split scored with intervals, reference baselines, guardrails, artifacts that load in the
ecosystem's clients, the drift profile)."""

from __future__ import annotations

import numpy as np

from nncli.core import console
from nncli.evaluate import metrics as M
from nncli.train.tasks.classify import PROBE_LEVEL

METRIC_NAMES = ("accuracy", "macro_f1", "loss")


def prepare(recipe):
    """Every data and model problem, before any training (also `nncli validate` and --dry-run)."""
    from nncli.train import preflight

    pf = preflight.run(recipe)
    for w in pf.warnings:
        console.warn(w)
    console.log(preflight.render(pf))
    return pf


def render(pf) -> str:
    from nncli.train import preflight

    return preflight.render(pf)


def known_metrics(pf) -> list[str]:
    splits = ["validation"] + (["test"] if pf.data.test is not None else [])
    out = list(METRIC_NAMES) + [f"{s}.{m}" for s in splits for m in METRIC_NAMES]
    return out + ["vs_baseline.accuracy", "vs_baseline.macro_f1"]


def inputs_of(recipe) -> list:
    return [recipe.data.train, recipe.data.validation, recipe.data.test, recipe.model.name]


def data_fingerprint(pf) -> str:
    return pf.data.fingerprint


def build(pf, recipe, report, *, train_split=None):
    """The model (with LoRA) and the task; `train_split` replaces the training split (augmentation, distillation)."""
    from nncli.io.models import accepted_inputs
    from nncli.train.tasks.classify import ClassificationTask, build_model

    model = build_model(pf.model_path, pf.data.label_names, recipe, report)
    if train_split is None and recipe.data.augment.methods:
        train_split = _augmented(pf.data, recipe, report)
    t = recipe.train
    task = ClassificationTask(pf.data, pf.tokenizer, pf.max_length, accepted_inputs(model), metric=t.metric,
                              class_weights=t.class_weights, label_smoothing=t.label_smoothing, head_lr=t.head_lr,
                              train_split=train_split)
    init = _head_init(model, task, recipe, report)
    report["training"]["head_init"] = init
    return task, model


def _head_init(model, task, recipe, report) -> dict:
    """`linear_probe`: a new head starts as a linear probe (nncli/train/head_init.py); a head that came with the
    checkpoint is kept."""
    from nncli.train.head_init import is_new_head, linear_probe_init

    if recipe.train.head_init == "random":
        return {"method": "random"}
    if not is_new_head(report["training"].get("newly_initialised", [])):
        return {"method": "checkpoint"}
    return linear_probe_init(model, task, recipe.train.seed) or {"method": "random"}


def _augmented(data, recipe, report):
    import dataclasses

    from nncli.core.errors import UsageError
    from nncli.train.augment import augment_split

    if data.train.pairs is not None:
        raise UsageError("data.augment does not support text pairs (it would change one side only)", "remove data.augment")
    a = recipe.data.augment
    texts, labels, added = augment_split(data.train.texts, list(data.train.labels), a, recipe.train.seed)
    report["data"]["augmentation"] = {"methods": list(a.methods), "p": a.p, "examples_added": added,
                                      "train_rows_with_augmentation": len(texts)}
    console.log(f"augmentation: {added} augmented training examples added ({', '.join(a.methods)})")
    return dataclasses.replace(data.train, texts=texts, labels=labels)


def conclude(run, pf, recipe, out, report) -> tuple[dict, dict, dict]:
    """Score every held-out split with the restored best weights, compare with the baselines, save the artifacts.
    Returns the gate values, their 95% intervals and their sample sizes."""
    data, task = pf.data, run.task
    console.log("scoring: validation" + (" and test" if data.test is not None else "") + " with the best checkpoint")
    results, preds = score_splits(run, data, recipe.train.seed)
    report["metrics"] = results
    report["training"]["selection"] = selection(report, data, task, run.state)
    if not run.is_main:
        return {}, {}, {}
    console.log("baselines: majority class and TF-IDF + logistic regression on the same splits")
    report["baselines"] = baselines(data, recipe.train.seed)
    warnings = guardrails(report, preds, data.label_names) + small_validation(report["training"]["selection"])
    for w in warnings:
        console.warn(w)
    report["warnings"].extend(warnings)
    from nncli.train.artifacts import save_classifier

    save_classifier(run, pf, recipe, out, report)
    return flat_values(report)


def score_splits(run, data, seed: int, *, confusion: bool = False) -> tuple[dict, dict]:
    """Every held-out split scored with the restored best weights: the task's metrics, bootstrap 95% intervals, n and
    per-class scores (and the confusion matrix); returns (metrics per split, predictions per split)."""
    task, results, preds = run.task, {}, {}
    for split in [s for s in data.splits() if s.name != "train"]:
        ev = run.evaluate(split.name)
        preds[split.name] = task.probs[split.name].argmax(1)
        ev["ci95"] = M.bootstrap_ci(split.labels, preds[split.name], task.n_classes, seed=seed)
        ev["n"] = len(split)
        pc = M.per_class(np.asarray(split.labels), preds[split.name], task.n_classes)
        ev["per_class"] = {name: {k: float(pc[k][i]) for k in ("precision", "recall", "f1", "support")}
                           for i, name in enumerate(data.label_names)}
        if confusion:
            ev["confusion"] = M.confusion(split.labels, preds[split.name], task.n_classes).tolist()
        results[split.name] = ev
    return results, preds


SELECTION_RULE = ("the evaluation with the highest (validation accuracy >= the majority class's, then validation {metric}, "
                  "then the lower validation loss); early stopping counts evaluations that do not improve that ranking")
PROBE_RULE = ("a fine-tuned checkpoint replaces the linear-probe start only when it beats the probe's validation {metric} "
              "with one-sided {level:.0%} confidence over the whole run (paired bootstrap over the validation rows, each of the "
              "{k} planned evaluations tested at {alpha:.2g}%: Bonferroni); among those, ")
SMALL_VALIDATION = 10


def selection(report, data, task, state) -> dict:
    """How the checkpoint was chosen, on how much validation data, and how certain its score is."""
    v = report["metrics"]["validation"]
    counts = dict(zip(data.label_names, np.bincount(np.asarray(data.validation.labels), minlength=task.n_classes).tolist()))
    metric = task.metric
    out = {"metric": metric, "rule": SELECTION_RULE.format(metric=metric) if metric != "loss" else "the lowest validation loss",
           "validation_source": "file" if data.validation.rows_read else "stratified hold-out of train",
           "validation_rows": v["n"], "validation_class_counts": counts, "best_step": state.best_step,
           "majority_accuracy": round(float(task.majority_accuracy), 4), "value": v.get(metric)}
    if report.get("training", {}).get("head_init", {}).get("method") == "linear_probe":
        k = max(1, report["training"].get("evaluations_planned", 1))
        alpha = 100 * (1 - PROBE_LEVEL) / k
        out["rule"] = PROBE_RULE.format(metric=task.reference_metric, level=PROBE_LEVEL, k=k, alpha=alpha) + out["rule"]
        out["kept"] = ("the linear-probe start: no fine-tuned checkpoint beat it on validation beyond noise"
                       if state.best_step == 0 else "a fine-tuned checkpoint (it beat the linear-probe start on validation "
                                                    "beyond noise)")
    if metric in v.get("ci95", {}):
        out["ci95"] = v["ci95"][metric]
    return out


def small_validation(sel: dict) -> list[str]:
    rare = {k: n for k, n in sel["validation_class_counts"].items() if n < SMALL_VALIDATION}
    if not rare:
        return []
    ci = sel.get("ci95")
    spread = f" (95% interval of validation {sel['metric']}: {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""
    listing = ", ".join(f"'{k}' {n}" for k, n in sorted(rare.items(), key=lambda kv: kv[1]))
    return [f"validation has fewer than {SMALL_VALIDATION} rows of {listing}: the checkpoint choice and the validation "
            f"scores are noisy{spread}; judge the model on the test split, or pass a larger --validation"]


def baselines(data, seed: int) -> dict:
    def joined(s):
        return s.texts if s.pairs is None else [a + " [SEP] " + b for a, b in zip(s.texts, s.pairs)]

    n = len(data.label_names)
    held = {s.name: (joined(s), s.labels) for s in data.splits() if s.name != "train"}
    return {"majority_class": {k: M.majority_baseline(data.train.labels, y, n) for k, (_, y) in held.items()},
            "tfidf_logreg": M.tfidf_baseline(joined(data.train), data.train.labels, held, n, seed=seed)}


def flat_values(report, reference: str = "tfidf_logreg") -> tuple[dict, dict, dict]:
    """Gate values: split.metric for every split, the bare names for the test split (else validation), and
    vs_baseline.* = the model minus the best of the majority class and `reference` (a key of report["baselines"])."""
    values, intervals, sizes = {}, {}, {}
    primary = "test" if "test" in report["metrics"] else "validation"
    for split, ev in report["metrics"].items():
        for k in METRIC_NAMES:
            keys = [f"{split}.{k}"] + ([k] if split == primary else [])
            for key in keys:
                values[key], sizes[key] = ev[k], ev["n"]
                if k in ev.get("ci95", {}):
                    intervals[key] = ev["ci95"][k]
    base = report["baselines"]
    for k in ("accuracy", "macro_f1"):
        best = max(base["majority_class"][primary][k], base[reference][primary][k])
        values[f"vs_baseline.{k}"] = report["metrics"][primary][k] - best
        sizes[f"vs_baseline.{k}"] = report["metrics"][primary]["n"]
    return values, intervals, sizes


# how the guardrails name each reference baseline: (baseline key) -> (its name, the advice when the model is below
# both references, the sentence when it beats the model)
REFERENCES = {
    "tfidf_logreg": ("TF-IDF + logistic regression", "; the TF-IDF baseline is the better choice here",
                     "the TF-IDF + logistic regression baseline beats the model",
                     "the neural model does not earn its cost yet"),
    "linear_probe": ("the linear probe", "", "the linear probe on the frozen backbone beats the fine-tuned model",
                     "fine-tuning does not earn its cost yet"),
}


def guardrails(report, predictions: dict, label_names: list[str], reference: str = "tfidf_logreg") -> list[str]:
    """Say loudly, first, when the network does not earn its cost against the majority class and `reference`."""
    name, advice, beats, verdict = REFERENCES[reference]
    out = []
    for split, pred in predictions.items():
        used = sorted(set(np.asarray(pred).tolist()))
        m = report["metrics"][split]
        base = report["baselines"]["majority_class"][split]
        ref = report["baselines"][reference][split]
        if len(used) == 1:
            out.append(f"COLLAPSED: the model predicts only '{label_names[used[0]]}' on {split}; it learned nothing useful. "
                       "Try a higher train.lr, more epochs, or method=full")
        elif m["accuracy"] < base["accuracy"] and m["macro_f1"] < ref["macro_f1"]:
            out.append(f"BELOW BASELINES on {split}: accuracy {m['accuracy']:.3f} is under the majority class "
                       f"({base['accuracy']:.3f}) and macro-F1 {m['macro_f1']:.3f} under {name} "
                       f"({ref['macro_f1']:.3f}): do not ship this model{advice} "
                       "(gate it in CI with --min vs_baseline.macro_f1=0)")
        elif ref["macro_f1"] > m["macro_f1"] + 0.02:
            out.append(f"{split}: {beats} on macro-F1 ({ref['macro_f1']:.3f} vs {m['macro_f1']:.3f}): {verdict}")
    return out


def card(report, recipe) -> str:
    from nncli.train.cards import classifier_card

    return classifier_card(report, recipe)
