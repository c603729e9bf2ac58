"""Robustness for `nncli evaluate`: accuracy and prediction flips under small perturbations of a seeded sample, texts
(nncli.evaluate.perturb) or images (nncli.evaluate.image_perturb, run by nncli.evaluate.image_robustness). The scoring,
the sample and the gateable metrics are shared by both."""

from __future__ import annotations

import numpy as np

from nncli.recipe.evaluate import EvaluateRecipe


def perturbations_for(recipe: EvaluateRecipe, kind: str) -> list[str]:
    """The perturbations to run on `kind` ("text" or "image"): the recipe's list, or all of that kind by default; a
    perturbation of the other kind is a UsageError."""
    from nncli.evaluate import image_perturb, perturb

    known = list((perturb if kind == "text" else image_perturb).PERTURBATIONS)
    chosen = recipe.robustness.perturbations
    if chosen is None:
        return known
    from nncli.core.errors import UsageError

    if not chosen:
        raise UsageError("robustness.perturbations: the list is empty", "leave the key out for all of them, or turn "
                         "robustness off with --no-robustness")
    wrong = [p for p in chosen if p not in known]
    if wrong:
        article = "an" if kind == "image" else "a"
        raise UsageError(f"robustness.perturbations: {', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} not "
                         f"{article} {kind} perturbation",
                         f"use some of {', '.join(known)} (or leave the key out for all of them)")
    return list(chosen)


def sample(n_rows: int, recipe: EvaluateRecipe) -> np.ndarray:
    """The rows perturbed: all of them, or a seeded sample of robustness.samples."""
    rng = np.random.default_rng(recipe.robustness.seed)
    n = min(recipe.robustness.samples, n_rows)
    return np.sort(rng.choice(n_rows, n, replace=False)) if n < n_rows else np.arange(n_rows)


def score(clean, perturbed, y) -> dict:
    """One perturbation's result on n rows: accuracy under it and the flip rate (share of predictions that changed),
    each with an exact (Clopper-Pearson) two-sided 95% interval, and the accuracy drop from the clean predictions."""
    from nncli.evaluate.metrics import proportion_ci

    clean, perturbed, y = np.asarray(clean), np.asarray(perturbed), np.asarray(y)
    n, flips, right = len(y), int((perturbed != clean).sum()), int((perturbed == y).sum())
    return {"n": n, "accuracy": right / n, "accuracy_ci95": proportion_ci(right, n), "flips": flips, "flip_rate": flips / n,
            "flip_rate_ci95": proportion_ci(flips, n), "accuracy_drop": float((clean == y).mean()) - right / n}


def summary(idx: np.ndarray, n_rows: int, clean, y, recipe: EvaluateRecipe, per: dict[str, dict]) -> dict:
    """The robustness section of a report: the sample (`samples` of `rows`, at most `sample_cap`: robustness.samples),
    the clean accuracy on it, each perturbation, the mean and the worst."""
    return {"samples": int(len(idx)), "rows": int(n_rows), "sample_cap": recipe.robustness.samples,
            "seed": recipe.robustness.seed,
            "clean_accuracy": float((np.asarray(clean) == np.asarray(y)).mean()), "perturbations": per,
            "mean_flip_rate": float(np.mean([v["flip_rate"] for v in per.values()])),
            "worst": max(per.items(), key=lambda kv: kv[1]["flip_rate"])[0]}


def robustness(clf, split, y, recipe: EvaluateRecipe, temperature: float) -> dict:
    from nncli.evaluate import perturb
    from nncli.io.inference import softmax

    idx = sample(len(split), recipe)
    texts = [split.texts[i] for i in idx]
    pairs = [split.pairs[i] for i in idx] if split.pairs is not None else None
    clean = softmax(clf.logits(texts, pairs, recipe.batch_size) / temperature).argmax(1)
    yy = y[idx]
    per = {}
    for name in perturbations_for(recipe, "text"):
        changed = perturb.apply(name, texts, recipe.robustness.seed)
        p = softmax(clf.logits(changed, pairs, recipe.batch_size) / temperature).argmax(1)
        per[name] = {**score(clean, p, yy), "texts_changed": float(np.mean([a != b for a, b in zip(texts, changed)]))}
    return summary(idx, len(split), clean, yy, recipe, per)


def robustness_metric_names(recipe: EvaluateRecipe, kind: str = "text") -> list[str]:
    out = []
    for p in perturbations_for(recipe, kind):
        out += [f"robustness.{p}.accuracy", f"robustness.{p}.flip_rate"]
    return out


def robustness_metrics(rb: dict) -> dict:
    """The flat, gateable metrics of one robustness result."""
    per = rb["perturbations"]
    flat = {"flip_rate": rb["mean_flip_rate"], "max_flip_rate": max(v["flip_rate"] for v in per.values()),
            "min_robust_accuracy": min(v["accuracy"] for v in per.values())}
    for k, v in per.items():
        flat[f"robustness.{k}.accuracy"] = v["accuracy"]
        flat[f"robustness.{k}.flip_rate"] = v["flip_rate"]
    return flat


def robustness_intervals(rb: dict) -> dict:
    """The 95% intervals of the per-perturbation metrics (gates decide on their bounds)."""
    out = {}
    for k, v in rb["perturbations"].items():
        out[f"robustness.{k}.accuracy"] = v["accuracy_ci95"]
        out[f"robustness.{k}.flip_rate"] = v["flip_rate_ci95"]
    return out
