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
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y_true), size=(n, len(y_true)))
    accs = (y_true[idx] == y_pred[idx]).mean(1)
    f1s = np.array([macro_f1(y_true[i], y_pred[i], n_classes) for i in idx])
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    return {"accuracy": [float(np.percentile(accs, lo)), float(np.percentile(accs, hi))],
            "macro_f1": [float(np.percentile(f1s, lo)), float(np.percentile(f1s, hi))]}


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
