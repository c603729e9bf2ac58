"""Classification metrics (checked against scikit-learn in tests) and bootstrap confidence intervals."""

from __future__ import annotations

import numpy as np


def confusion(y_true, y_pred, n_classes: int) -> np.ndarray:
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return m


def per_class(y_true, y_pred, n_classes: int) -> dict[str, np.ndarray]:
    m = confusion(y_true, y_pred, n_classes)
    tp = np.diag(m).astype(float)
    pred = m.sum(0).astype(float)
    true = m.sum(1).astype(float)
    precision = np.divide(tp, pred, out=np.zeros_like(tp), where=pred > 0)
    recall = np.divide(tp, true, out=np.zeros_like(tp), where=true > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": true}


def macro_f1(y_true, y_pred, n_classes: int) -> float:
    """Macro F1 over the classes present in y_true or y_pred (scikit-learn's default labels)."""
    pc = per_class(y_true, y_pred, n_classes)
    present = np.union1d(np.unique(y_true), np.unique(y_pred))
    return float(pc["f1"][present].mean()) if len(present) else 0.0


def accuracy(y_true, y_pred) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float((y_true == y_pred).mean()) if len(y_true) else 0.0


def log_loss(y_true, probs) -> float:
    probs = np.clip(np.asarray(probs, dtype=np.float64), 1e-15, 1.0)
    probs = probs / probs.sum(1, keepdims=True)
    return float(-np.log(probs[np.arange(len(y_true)), np.asarray(y_true)]).mean())


def classification(y_true, y_pred, n_classes: int, probs=None) -> dict[str, float]:
    out = {"accuracy": accuracy(y_true, y_pred), "macro_f1": macro_f1(y_true, y_pred, n_classes)}
    if probs is not None:
        out["loss"] = log_loss(y_true, probs)
    return out


def bootstrap_ci(y_true, y_pred, n_classes: int, n: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, list[float]]:
    """Percentile bootstrap intervals for accuracy and macro-F1 (resampling examples)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) < 2:
        return {}
    return {"accuracy": bootstrap_rows(lambda i: accuracy_rows(y_true, y_pred, i), len(y_true), n, seed, level),
            "macro_f1": bootstrap_rows(lambda i: macro_f1_rows(y_true, y_pred, i, n_classes), len(y_true), n, seed, level)}


def accuracy_rows(y_true, y_pred, idx: np.ndarray) -> np.ndarray:
    """accuracy of every resample at once: row r of `idx` holds the row indices of resample r."""
    return (np.asarray(y_true)[idx] == np.asarray(y_pred)[idx]).mean(1)


def macro_f1_rows(y_true, y_pred, idx: np.ndarray, n_classes: int) -> np.ndarray:
    """macro_f1 of every resample at once: row r of `idx` holds the row indices of resample r."""
    t, p = np.asarray(y_true)[idx], np.asarray(y_pred)[idx]
    total, present = np.zeros(len(idx)), np.zeros(len(idx))
    for c in range(n_classes):
        is_t, is_p = t == c, p == c
        tp = (is_t & is_p).sum(1)
        denom = is_t.sum(1) + is_p.sum(1)                    # 2tp + fp + fn; > 0 exactly when c is present
        total += np.divide(2 * tp, denom, out=np.zeros(len(idx)), where=denom > 0)
        present += denom > 0
    return total / np.maximum(present, 1)


def resamples(size: int, n: int, seed: int = 0, cells: int = 4_000_000):
    """The bootstrap's n resamples of `size` row indices, in chunks of about `cells` indices (the draws of bootstrap)."""
    rng, step = np.random.default_rng(seed), max(1, cells // size)
    for start in range(0, n, step):
        yield rng.integers(0, size, (min(step, n - start), size))


def bootstrap_rows(fn, size: int, n: int = 1000, seed: int = 0, level: float = 0.95) -> list[float] | None:
    """Percentile bootstrap CI of a statistic computed for many resamples at once: fn(idx) gives one value per row
    of idx (resamples x size row indices), so no Python loop runs per resample."""
    if size < 2:
        return None
    vals = np.concatenate([fn(idx) for idx in resamples(size, n, seed)])
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    return [float(np.percentile(vals, lo)), float(np.percentile(vals, hi))]


def majority_baseline(train_labels, eval_labels, n_classes: int) -> dict[str, float]:
    counts = np.bincount(np.asarray(train_labels), minlength=n_classes)
    pred = np.full(len(eval_labels), int(counts.argmax()))
    return classification(eval_labels, pred, n_classes)


def tfidf_baseline(train_texts, train_labels, evals: dict[str, tuple[list[str], list[int]]], n_classes: int, seed: int = 0):
    """TF-IDF (word 1-2 grams + char 2-5 grams) with class-balanced logistic regression: a strong cheap reference."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, make_pipeline

    features = FeatureUnion([
        ("word", TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True, max_features=200_000)),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True, max_features=200_000)),
    ])
    clf = make_pipeline(features, LogisticRegression(max_iter=2000, class_weight="balanced", C=4.0, random_state=seed))
    clf.fit(train_texts, train_labels)
    out = {}
    for name, (texts, labels) in evals.items():
        out[name] = classification(labels, clf.predict(texts), n_classes)
    return out


# ---------------------------------------------------------------------------------------------- calibration

def ece(y_true, probs, bins: int = 15) -> tuple[float, float, list[dict]]:
    """Expected and maximum calibration error with equal-width confidence bins (top-label), plus the bins."""
    probs = np.asarray(probs, dtype=np.float64)
    conf = probs.max(1)
    correct = (probs.argmax(1) == np.asarray(y_true)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    total, worst, table = 0.0, 0.0, []
    n = len(conf)
    for b in range(bins):
        mask = which == b
        k = int(mask.sum())
        if k == 0:
            table.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": 0, "confidence": None, "accuracy": None})
            continue
        gap = abs(correct[mask].mean() - conf[mask].mean())
        total += k / n * gap
        worst = max(worst, gap)
        table.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": k, "confidence": float(conf[mask].mean()),
                      "accuracy": float(correct[mask].mean())})
    return float(total), float(worst), table


def brier(y_true, probs) -> float:
    """Brier score as scikit-learn defines it: the binary score for 2 classes, the multi-class sum otherwise."""
    probs = np.asarray(probs, dtype=np.float64)
    onehot = np.zeros_like(probs)
    onehot[np.arange(len(probs)), np.asarray(y_true)] = 1.0
    total = float(((probs - onehot) ** 2).sum(1).mean())
    return total / 2 if probs.shape[1] == 2 else total


def fit_temperature(logits, y_true) -> float:
    """Temperature scaling (Guo et al. 2017): the maximum-likelihood T > 0 for softmax(logits / T).

    Whether the data supports using it is decided by nncli.evaluate.calibration.fit."""
    from nncli.evaluate.calibration import mle_temperature

    return mle_temperature(logits, y_true)


def bootstrap(fn, arrays: list, n: int = 1000, seed: int = 0, level: float = 0.95) -> list[float] | None:
    """Percentile bootstrap CI of fn(*arrays) resampling rows together (one call per resample: bootstrap_rows is the
    vectorised way where the statistic allows it)."""
    arrays = [np.asarray(a) for a in arrays]
    return bootstrap_rows(lambda idx: np.array([fn(*[a[i] for a in arrays]) for i in idx]), len(arrays[0]), n, seed, level)


# ---------------------------------------------------------------------------------------------- paired comparisons

def rate_bounds(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """One-sided Clopper-Pearson bounds of a rate k/n at `level` (each side holds with that confidence)."""
    from scipy.stats import beta

    if n <= 0:
        return 0.0, 1.0
    lo = float(beta.ppf(1 - level, k, n - k + 1)) if k > 0 else 0.0
    hi = float(beta.ppf(level, k + 1, n - k)) if k < n else 1.0
    return lo, hi


def paired_drop(y, ref_pred, new_pred, level: float = 0.95) -> dict:
    """The accuracy lost by `new_pred` against `ref_pred` on the same rows, with exact McNemar statistics: of the m
    rows where exactly one of the two is right, b are the reference's; conditional on m, b ~ Binomial(m, theta), so
    one-sided Clopper-Pearson bounds of theta give bounds of the drop (2 theta - 1) m / n."""
    from scipy.stats import binomtest

    y, a, c = np.asarray(y), np.asarray(ref_pred), np.asarray(new_pred)
    ra, rc = a == y, c == y
    b, w = int((ra & ~rc).sum()), int((~ra & rc).sum())
    n, m = len(y), b + w
    lo_t, hi_t = rate_bounds(b, m, level) if m else (0.5, 0.5)
    return {"n": n, "drop": (b - w) / n if n else 0.0, "lower": (2 * lo_t - 1) * m / n if n else 0.0,
            "upper": (2 * hi_t - 1) * m / n if n else 0.0, "reference_only_right": b, "new_only_right": w,
            "mcnemar_p": float(binomtest(b, m, 0.5, alternative="greater").pvalue) if m else 1.0}


def proportion_ci(k: int, n: int, level: float = 0.95) -> list[float]:
    """Two-sided exact (Clopper-Pearson) interval of a rate k/n at `level`: the one-sided bounds at (1 + level) / 2."""
    lo, hi = rate_bounds(k, n, (1 + level) / 2)
    return [lo, hi]
