"""The detectors behind `nncli audit`, on plain arrays: each takes texts (and labels, vectors) of the pooled rows
and returns findings as (position, kind, score, evidence); audit.py maps positions back to files and rows.

- label issues: confident learning (cleanlab) on out-of-fold probabilities of a cheap model (TF-IDF or frozen
  embeddings + logistic regression), with the estimated noise rate per (given, true) class pair;
- duplicates: normalised exact matches, and near-duplicates by cosine similarity of the row vectors;
- outliers: mean cosine distance to the k nearest neighbours, beyond Tukey's far-out fence (Q3 + 3 IQR);
- hygiene: boilerplate texts, script mix, length extremes (robust z of log word counts), token truncation.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter

import numpy as np

from nncli.core.errors import missing_extra

PLACEHOLDERS = {"", "n a", "na", "none", "null", "nan", "test", "testing", "todo", "tbd", "deleted", "removed",
                "lorem ipsum", "lorem ipsum dolor sit amet", "no text", "empty", "text", "sample text", "asdf", "xxx"}
_URL = re.compile(r"https?://\S+|www\.\S+")
_MENTION = re.compile(r"@\w+")
_NON_WORD = re.compile(r"[^\w\s]|_", re.UNICODE)
_WS = re.compile(r"\s+")
C_GRID = (0.5, 2.0, 8.0, 32.0)    # logistic regression strengths tried; the lowest out-of-fold log-loss wins


def normalise(text: str) -> str:
    """Case, Unicode form, punctuation and whitespace folded: what counts as 'the same text'."""
    t = unicodedata.normalize("NFKC", text).casefold()
    return _WS.sub(" ", _NON_WORD.sub(" ", t)).strip()


# ---------------------------------------------------------------------------------------------- the cheap model

def tfidf_features(texts: list[str], *, analyzer: str = "word"):
    from sklearn.feature_extraction.text import TfidfVectorizer

    if analyzer == "word":
        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, max_features=200_000, dtype=np.float32)
    else:
        vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=1, max_features=300_000,
                              dtype=np.float32)
    return vec.fit_transform(texts)


def out_of_fold_probs(x, labels: np.ndarray, n_classes: int, *, folds: int, seed: int) -> tuple[np.ndarray, dict]:
    """Out-of-fold class probabilities of a logistic regression (stratified k-fold), C chosen by out-of-fold log-loss."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold

    smallest = int(np.bincount(labels, minlength=n_classes).min())
    k = max(2, min(folds, smallest))
    splits = list(StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels))
    best = None
    for c in C_GRID:
        probs = np.zeros((len(labels), n_classes))
        for tr, te in splits:
            lr = LogisticRegression(C=c, max_iter=2000)
            lr.fit(x[tr], labels[tr])
            probs[np.ix_(te, lr.classes_)] = lr.predict_proba(x[te])
        probs = np.clip(probs, 1e-7, 1)
        probs /= probs.sum(1, keepdims=True)
        loss = log_loss(labels, probs, labels=list(range(n_classes)))
        if best is None or loss < best[0]:
            best = (loss, c, probs)
    loss, c, probs = best
    return probs, {"folds": k, "C": c, "oof_log_loss": round(float(loss), 4),
                   "oof_accuracy": round(float((probs.argmax(1) == labels).mean()), 4)}


def label_issues(labels: np.ndarray, probs: np.ndarray, label_names: list[str]) -> tuple[list[tuple], dict]:
    """Confident learning: the off-diagonal of cleanlab's confident joint (filter_by='confident_learning'), ranked by
    self-confidence. Measured on SST-2 with 10% planted flips, it flagged fewer clean rows than pruning by the
    estimated noise rate (precision 0.51 vs 0.43 at recall 0.61 vs 0.74)."""
    try:
        from cleanlab.count import estimate_joint
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError:
        raise missing_extra("cleanlab", "audit") from None
    flagged = find_label_issues(labels, probs, filter_by="confident_learning", return_indices_ranked_by="self_confidence")
    quality = get_label_quality_scores(labels, probs, method="self_confidence")
    joint = estimate_joint(labels, probs)
    out = []
    for i in flagged:
        s = int(probs[i].argmax())
        if s == labels[i]:  # flagged by its class threshold, but its own label is the model's best guess: no suggestion
            s = int(np.argsort(-probs[i])[1])
        out.append((int(i), "label_issue", round(1 - float(quality[i]), 6),
                    {"suggested": label_names[s], "p_label": round(float(probs[i, labels[i]]), 4),
                     "p_suggested": round(float(probs[i, s]), 4)}))
    pairs = []
    given_share = joint.sum(1)
    for g in range(len(label_names)):
        for t in range(len(label_names)):
            if g != t and joint[g, t] > 0:
                pairs.append({"given": label_names[g], "true": label_names[t], "share_of_rows": round(float(joint[g, t]), 4),
                              "share_of_given_class": round(float(joint[g, t] / given_share[g]), 4) if given_share[g] else 0.0})
    pairs.sort(key=lambda p: -p["share_of_rows"])
    noise = {"estimated_noise_rate": round(float(1 - np.trace(joint)), 4), "pairs": pairs,
             "method": "cleanlab confident learning: find_label_issues(filter_by='confident_learning'), "
                       "ranked by self-confidence"}
    return out, noise


# ---------------------------------------------------------------------------------------------- geometry

def l2_normalise(x):
    from sklearn.preprocessing import normalize

    return normalize(x)


def neighbours(x, *, threshold: float, k: int, block: int = 512, max_pairs: int = 200_000):
    """One pass over cosine similarities of L2-normalised rows (dense or sparse), block by block.

    Returns (pairs, knn_distance): pairs (i, j, similarity) with i < j and similarity >= threshold, and each row's
    mean cosine distance to its k nearest other rows."""
    import scipy.sparse as sp

    n = x.shape[0]
    k = max(1, min(k, n - 1))
    knn = np.zeros(n)
    pairs: list[tuple[int, int, float]] = []
    xt = x.T.tocsr() if sp.issparse(x) else x.T
    for a in range(0, n, block):
        b = min(n, a + block)
        s = x[a:b] @ xt
        s = s.toarray() if sp.issparse(s) else np.asarray(s)
        s = s.astype(np.float32, copy=False)
        s[np.arange(b - a), np.arange(a, b)] = -np.inf        # a row is not its own neighbour
        top = np.partition(s, n - k, axis=1)[:, n - k:] if n - 1 >= k else s
        knn[a:b] = 1 - np.clip(top, -1, 1).mean(1)
        rows, cols = np.nonzero(s >= threshold)
        keep = cols > rows + a
        for r, c in zip(rows[keep], cols[keep]):
            if len(pairs) < max_pairs:
                pairs.append((int(r + a), int(c), float(s[r, c])))
    return pairs, knn


def duplicates(texts: list[str], labels: np.ndarray, order: np.ndarray, group: np.ndarray, label_names: list[str], *,
               pairs: list[tuple[int, int, float]]) -> list[tuple]:
    """One finding per row that repeats an earlier row (order: train, validation, test, then row number): kind
    `duplicate` within a split, `cross_split_duplicate` across splits, plus `label_conflict` when their labels differ."""
    norm = [normalise(t) for t in texts]
    first: dict[str, int] = {}
    match: dict[int, tuple[int, str, float]] = {}
    for i in sorted(range(len(texts)), key=lambda i: order[i]):
        if norm[i] and norm[i] in first:
            match[i] = (first[norm[i]], "exact", 1.0)
        elif norm[i]:
            first[norm[i]] = i
    for i, j, s in pairs:
        a, b = (i, j) if order[i] < order[j] else (j, i)
        if b not in match or (match[b][1] == "near" and s > match[b][2]):
            match[b] = (a, "near", round(min(s, 1.0), 6))
    out = []
    for b, (a, how, s) in sorted(match.items()):
        kind = "duplicate" if group[a] == group[b] else "cross_split_duplicate"
        ev = {"of": int(a), "match": how, "similarity": s}
        out.append((b, kind, s, ev))
        if labels[a] != labels[b]:
            out.append((b, "label_conflict", s, {**ev, "other_label": label_names[labels[a]]}))
    return out


def outliers(knn: np.ndarray) -> tuple[list[tuple], dict]:
    q1, q3 = np.quantile(knn, [0.25, 0.75])
    fence = float(q3 + 3 * (q3 - q1))
    out = [(int(i), "outlier", round(float(knn[i]), 6), {"knn_distance": round(float(knn[i]), 4), "fence": round(fence, 4)})
           for i in np.nonzero(knn > fence)[0]]
    return out, {"fence": round(fence, 4), "median_knn_distance": round(float(np.median(knn)), 4)}


# ---------------------------------------------------------------------------------------------- hygiene

def script_of(ch: str) -> str | None:
    if not ch.isalpha():
        return None
    if ch.isascii():
        return "LATIN"
    try:
        name = unicodedata.name(ch)
    except ValueError:
        return None
    word = name.split(" ")[0]
    return "CJK" if word in ("CJK", "HIRAGANA", "KATAKANA") else word


def scripts(text: str) -> Counter:
    return Counter(s for s in map(script_of, text) if s)


def hygiene(texts: list[str]) -> tuple[list[tuple], dict]:
    """Boilerplate, script mix and length extremes."""
    out: list[tuple] = []
    per_text = [scripts(t) for t in texts]
    dominant = Counter(c.most_common(1)[0][0] for c in per_text if c)
    main = dominant.most_common(1)[0][0] if dominant else None
    for i, t in enumerate(texts):
        n = normalise(t)
        bare = _MENTION.sub(" ", _URL.sub(" ", t))
        if n in PLACEHOLDERS or not any(ch.isalpha() for ch in bare):
            out.append((i, "boilerplate", 1.0, {"reason": "placeholder text" if n in PLACEHOLDERS else "no words (only links, "
                                                 "mentions, digits or punctuation)"}))
        c = per_text[i]
        total = sum(c.values())
        if total and main:
            top, top_n = c.most_common(1)[0]
            other = 1 - c.get(main, 0) / total
            if top != main or other >= 0.3:
                out.append((i, "script", round(other, 4), {"scripts": {k: round(v / total, 3) for k, v in c.most_common(3)},
                                                          "dataset_script": main}))
    words = np.array([len(t.split()) for t in texts], dtype=float)
    lw = np.log1p(words)
    med = float(np.median(lw))
    mad = float(np.median(np.abs(lw - med))) * 1.4826
    if mad > 0:
        z = (lw - med) / mad
        for i in np.nonzero(np.abs(z) > 3.5)[0]:
            ev = {"words": int(words[i]), "median_words": round(math.expm1(med), 1), "direction": "long" if z[i] > 0 else "short"}
            out.append((int(i), "length", round(float(abs(z[i])), 4), ev))
    stats = {"dataset_script": main, "scripts": dict(dominant.most_common(5)),
             "words": {"median": float(np.median(words)), "p99": float(np.quantile(words, 0.99)), "max": int(words.max())}}
    return out, stats


def truncated(lengths: np.ndarray, max_length: int) -> list[tuple]:
    return [(int(i), "truncated", round(float(lengths[i] / max_length), 4), {"tokens": int(lengths[i]), "max_length": max_length})
            for i in np.nonzero(lengths > max_length)[0]]


def class_balance(labels: np.ndarray, label_names: list[str]) -> dict:
    counts = np.bincount(labels, minlength=len(label_names))
    nz = counts[counts > 0]
    return {"counts": {label_names[i]: int(c) for i, c in enumerate(counts)},
            "shares": {label_names[i]: round(float(c / counts.sum()), 4) for i, c in enumerate(counts)},
            "imbalance_ratio": round(float(nz.max() / nz.min()), 3) if len(nz) else None}
