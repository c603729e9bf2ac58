"""The tests `nncli drift` runs: each feature of the current data against the reference profile, significance
corrected for the number of tests (Bonferroni), drift only when the effect size is material too."""

from __future__ import annotations

import math

import numpy as np

from nncli.evaluate.drift_profile import (
    EMBED_CAP,
    MODEL_FEATURES,
    TEXT_FEATURES,
    Profile,
    model_outputs,
    text_features,
    value_counts,
)
from nncli.evaluate.drift_stats import (
    MIN_AUC,
    MIN_CRAMER_V,
    chi2_categorical,
    domain_auc,
    ks,
    mmd_permutation,
    psi,
    psi_threshold,
)


def compare(profile: Profile, texts: list[str], labels: list[str] | None, *, clf=None, pairs: list[str] | None = None,
            alpha: float = 0.05, max_accuracy_drop: float = 5.0, model_sample: int = 5000, seed: int = 0) -> dict:
    """Texts against a text profile: their statistics, and the model's outputs on a seeded sample of them."""
    rng = np.random.default_rng(seed)
    vocab = set(profile.arrays["vocab"].tolist()) if "vocab" in profile.arrays else None
    tok = clf.tokenizer if clf is not None else None
    cur = text_features(texts, tok, vocab)
    idx = np.sort(rng.permutation(len(texts))[:model_sample])
    mo = None
    if clf is not None and profile.meta.get("model"):
        mo = model_outputs(clf, [texts[i] for i in idx], [pairs[i] for i in idx] if pairs is not None else None)
    return compare_features(profile, cur, TEXT_FEATURES, "text", labels, mo, idx, clf.label_names if clf else [], rng,
                            alpha=alpha, max_accuracy_drop=max_accuracy_drop, seed=seed)


def compare_features(profile: Profile, cur: dict[str, np.ndarray], features: tuple[str, ...], kind: str,
                     labels: list[str] | None, mo: dict | None, idx: np.ndarray, names: list[str], rng, *,
                     alpha: float, max_accuracy_drop: float, seed: int) -> dict:
    """Every test, for any task: `cur` holds the current data's input features (text statistics, image statistics),
    `mo` the model's outputs on the current rows `idx` (None without a model), `labels` the current labels if any."""
    raw: list[dict] = []
    for name in features:
        ref = profile.feature(name)
        if ref is None or name not in cur:
            continue
        raw.append(numeric_test(name, kind, ref, cur[name]))
    meta_model = profile.meta.get("model")
    if labels is not None and profile.meta.get("labels"):
        raw.append({"test": "chi2", "feature": "label", "kind": "label", "ref": profile.meta["labels"],
                    "cur": value_counts(labels)})
    if mo is not None:
        for name in MODEL_FEATURES:
            ref = profile.feature(name)
            if ref is not None:
                raw.append(numeric_test(name, "model", ref, mo[name]))
        raw.append({"test": "chi2", "feature": "predicted_class", "kind": "model", "ref": meta_model["predictions"],
                    "cur": value_counts([names[i] for i in mo["pred"]])})
        if mo["embeddings"] is not None and "emb_reference" in profile.arrays:
            centred = mo["embeddings"].astype(np.float64) - profile.arrays["emb_mean"]
            e = centred @ profile.arrays["emb_components"].T.astype(np.float64)
            e = e / profile.arrays["emb_scale"]
            e = e[rng.permutation(len(e))[:EMBED_CAP]]
            raw.append({"test": "mmd", "feature": "embeddings", "kind": "embedding", "ref_x": profile.arrays["emb_reference"],
                        "cur_x": e})
    m_tests = len(raw) + (1 if labels is not None and mo is not None else 0)
    alpha_adj = alpha / max(m_tests, 1)
    tests = [finish_test(t, alpha_adj, seed) for t in raw]

    accuracy: dict = {}
    if mo is not None and meta_model.get("accuracy") is not None:
        tests += accuracy_tests(meta_model, mo, labels, idx, names, max_accuracy_drop, alpha_adj, accuracy)
    plot_data = {"ref": {t["feature"]: profile.feature(t["feature"]) for t in tests if t["kind"] in (kind, "model")},
                 "cur": {**cur, **({k: mo[k] for k in MODEL_FEATURES} if mo is not None else {})}}
    return {"tests": tests, "alpha": alpha, "alpha_per_test": alpha_adj, "accuracy": accuracy, "_plot": plot_data}


def accuracy_tests(meta_model: dict, mo: dict, labels, idx, names: list[str], max_drop: float, alpha_adj: float,
                   accuracy: dict) -> list[dict]:
    """The label-free estimate (ATC) and, with labels, the actual accuracy, each against the reference's held-out
    accuracy. Drift needs the lower confidence bound of the drop (not the point) to pass the threshold, so a small
    reference split cannot raise an alarm on noise; sample sizes and intervals are reported."""
    ref_acc, n_ref = meta_model["accuracy"], meta_model["rows"]
    est = float(np.mean(mo["confidence"] > meta_model["atc_threshold"]))
    accuracy.update(reference=ref_acc, reference_rows=n_ref, reference_split=meta_model.get("split", "validation"),
                    estimated=est, estimated_average_confidence=float(mo["confidence"].mean()),
                    method="average thresholded confidence (ATC), threshold fitted on the reference's held-out split")
    out = [drop_test("atc", "estimated_accuracy", ref_acc, n_ref, est, len(mo["pred"]), max_drop, alpha_adj, meta_model)]
    if labels is not None:
        sub = [labels[i] for i in idx]
        y = np.array([names.index(v) if v in names else -1 for v in sub])
        acc = float(np.mean(mo["pred"] == y))
        accuracy.update(actual=acc, unseen_labels=int(sum(v not in names for v in sub)))
        out.append(drop_test("two-proportion z", "accuracy", ref_acc, n_ref, acc, len(y), max_drop, alpha_adj, meta_model))
    return out


def drop_test(test: str, feature: str, ref: float, n_ref: int, cur: float, n_cur: int, max_drop: float, alpha_adj: float,
               meta_model: dict) -> dict:
    from scipy.stats import norm

    drop = ref - cur
    se = math.sqrt(max(ref * (1 - ref) / max(n_ref, 1) + cur * (1 - cur) / max(n_cur, 1), 1e-12))
    lower = drop - norm.ppf(1 - alpha_adj) * se
    p = float(norm.sf((drop - max_drop / 100) / se))
    row = {"test": test, "feature": feature, "kind": "accuracy", "statistic": cur, "p_value": p, "effect": drop * 100,
           "effect_name": "drop (points)", "threshold": max_drop, "significant": p < alpha_adj,
           "drift": bool(lower * 100 > max_drop),
           "decided_on": "lower bound", "ci95": [(drop - 1.96 * se) * 100, (drop + 1.96 * se) * 100], "n_ref": n_ref,
           "n_cur": n_cur}
    if meta_model.get("selected_on"):
        row["note"] = "the reference accuracy comes from the split that chose the checkpoint (optimistic)"
    return row


def numeric_test(name, kind, ref, cur) -> dict:
    return {"test": "ks+psi", "feature": name, "kind": kind, "ref_v": np.asarray(ref, dtype=float),
            "cur_v": np.asarray(cur, dtype=float)}


def finish_test(t: dict, alpha_adj: float, seed: int) -> dict:
    if t["test"] == "ks+psi":
        ref, cur = t["ref_v"], t["cur_v"]
        d, p = ks(ref, cur)
        value, bins = psi(ref, cur)
        thr = psi_threshold(len(ref), len(cur), bins, alpha_adj)
        return {"test": "KS + PSI", "feature": t["feature"], "kind": t["kind"], "statistic": d, "statistic_name": "KS D",
                "p_value": p, "effect": value, "effect_name": "PSI", "threshold": thr, "significant": p < alpha_adj,
                "drift": bool(p < alpha_adj and value > thr), "n_ref": len(ref), "n_cur": len(cur),
                "reference_median": float(np.median(ref)), "current_median": float(np.median(cur))}
    if t["test"] == "chi2":
        stat, p, v = chi2_categorical(t["ref"], t["cur"])
        return {"test": "chi-squared", "feature": t["feature"], "kind": t["kind"], "statistic": stat, "statistic_name": "chi2",
                "p_value": p, "effect": v, "effect_name": "Cramér's V", "threshold": MIN_CRAMER_V, "significant": p < alpha_adj,
                "drift": bool(p < alpha_adj and v >= MIN_CRAMER_V), "n_ref": int(sum(t["ref"].values())),
                "n_cur": int(sum(t["cur"].values())), "reference": shares(t["ref"]), "current": shares(t["cur"])}
    if t["test"] == "mmd":
        x, y = t["ref_x"], t["cur_x"]
        stat, p = mmd_permutation(x, y, seed=seed)
        auc = domain_auc(x, y, seed=seed)
        return {"test": "MMD permutation + domain classifier", "feature": "embeddings", "kind": "embedding", "statistic": stat,
                "statistic_name": "MMD^2", "p_value": p, "effect": auc, "effect_name": "domain AUC", "threshold": MIN_AUC,
                "significant": p < alpha_adj, "drift": bool(p < alpha_adj and auc >= MIN_AUC), "n_ref": len(x), "n_cur": len(y)}
    raise ValueError(t["test"])  # pragma: no cover


def shares(counts: dict) -> dict:
    total = sum(counts.values()) or 1
    return {k: round(v / total, 4) for k, v in sorted(counts.items())}


def severity(t: dict) -> float:
    """How far past its materiality threshold a test's effect is (for ranking the top drifting features)."""
    if t.get("effect") is None or not t.get("threshold"):
        return 0.0
    if t["kind"] == "embedding":
        return (t["effect"] - 0.5) / (t["threshold"] - 0.5)
    return t["effect"] / t["threshold"]
