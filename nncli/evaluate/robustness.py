"""Robustness for `nncli evaluate`: accuracy and prediction flips under small text perturbations (nncli.evaluate.perturb)."""

from __future__ import annotations

import numpy as np

from nncli.recipe.evaluate import EvaluateRecipe


def robustness(clf, split, y, recipe: EvaluateRecipe, temperature: float) -> dict:
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


def robustness_metric_names(recipe: EvaluateRecipe) -> list[str]:
    out = []
    for p in recipe.robustness.perturbations:
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
