"""`nncli drift`: does new data still look like what the model was trained on, and is the model likely still right?

A *reference profile* (profile.json + profile.npz) is written by `nncli finetune` (text statistics on the
training and validation texts; model outputs and embeddings on the held-out validation split) and by
`nncli evaluate --output` (on the evaluated data). `nncli drift` compares new data against it:

- per text feature (length in characters, words and tokens, tokens per word, unknown-token rate,
  out-of-vocabulary rate, shares of non-ASCII, digit, upper-case and punctuation characters), and the
  model's confidence and entropy: Kolmogorov–Smirnov test (significance) and population stability
  index (effect size, threshold corrected for sample size);
- label and predicted-class distributions: chi-squared test on the contingency table (significance)
  and Cramér's V (effect size);
- sentence embeddings (mean-pooled last layer, randomly projected to <= 32 dimensions):
  maximum mean discrepancy with an RBF kernel and a permutation test (significance), and the
  cross-validated AUC of a domain classifier telling reference from current (effect size);
- accuracy: a label-free estimate from the model's confidences (average thresholded confidence,
  Garg et al. 2022, threshold fitted on the reference's labelled held-out data) and, when the new data
  has labels, the actual accuracy.

A test reports drift only when it is significant (p below alpha / number of tests, Bonferroni, so the
whole report's false-alarm rate stays at most alpha) *and* its effect size passes a materiality
threshold, so large samples do not alarm on trivial differences. Any drifting test → exit 5.
"""

from __future__ import annotations

import json
import math
import re
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nncli.core import console
from nncli.core.atomic import atomic_write_bytes, atomic_write_json
from nncli.core.errors import GateFailed, InputError
from nncli.core.report import Timer, base_report, environment, now
from nncli.core.rundir import RunDir, recording

PROFILE_FILE = "profile.json"
PROFILE_ARRAYS = "profile.npz"
PROFILE_VERSION = 1
TEXT_FEATURES = ("chars", "words", "tokens", "tokens_per_word", "unk_rate", "oov_rate", "non_ascii_rate", "digit_rate",
                 "upper_rate", "punct_rate")
MODEL_FEATURES = ("confidence", "entropy")
SAMPLE_CAP = 5000        # values kept per feature in the profile
EMBED_CAP = 1000         # embeddings kept in the profile (and compared from the current data)
VOCAB_CAP = 50000
PCA_DIMS = 32            # embeddings are projected to this many dimensions
BINS = 10
MIN_PSI = 0.1            # "moderate shift" in credit-risk practice; raised for small samples (see psi_threshold)
MIN_CRAMER_V = 0.1       # Cohen's "small" effect
MIN_AUC = 0.6            # a domain classifier that separates the two samples this well is a material shift
PERMUTATIONS = 1000

_WORD = re.compile(r"\w+", re.UNICODE)
_DIGIT = re.compile(r"\d")
_UPPER = re.compile(r"[A-Z]|[^\W\d_a-z]", re.UNICODE)
_PUNCT = re.compile("[" + re.escape(string.punctuation) + "]")


# ---------------------------------------------------------------------------------------------- statistics

def psi(ref: np.ndarray, cur: np.ndarray, bins: int = BINS) -> tuple[float, int]:
    """Population stability index over bins cut at the reference's quantiles, with a bin for values at or below
    the reference's minimum and one for values above its maximum (new extremes are a shift too).

    Counts are smoothed by +0.5 so empty bins stay finite. Returns (psi, number of bins)."""
    ref = np.asarray(ref, dtype=float)
    cur = np.asarray(cur, dtype=float)
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))
    r = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=len(edges) + 1) + 0.5
    c = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=len(edges) + 1) + 0.5
    p, q = r / r.sum(), c / c.sum()
    return float(np.sum((q - p) * np.log(q / p))), len(r)


def psi_threshold(n_ref: int, n_cur: int, n_bins: int, alpha: float) -> float:
    """PSI's materiality threshold: 0.1, or the (1 - alpha) quantile of PSI between two samples of one distribution.

    Under no shift, n_eff * PSI is approximately chi-squared with (bins - 1) degrees of freedom, n_eff = n*m/(n+m),
    so small samples get a higher threshold instead of false alarms."""
    from scipy.stats import chi2

    n_eff = n_ref * n_cur / max(n_ref + n_cur, 1)
    return max(MIN_PSI, float(chi2.ppf(1 - alpha, max(n_bins - 1, 1))) / max(n_eff, 1.0))


def ks(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    from scipy.stats import ks_2samp

    r = ks_2samp(ref, cur)
    return float(r.statistic), float(r.pvalue)


def chi2_categorical(ref_counts: dict, cur_counts: dict) -> tuple[float, float, float]:
    """Chi-squared test of homogeneity on the 2 x K table; returns (chi2, p, Cramér's V)."""
    from scipy.stats import chi2_contingency

    cats = sorted(set(ref_counts) | set(cur_counts), key=str)
    table = np.array([[ref_counts.get(k, 0) for k in cats], [cur_counts.get(k, 0) for k in cats]], dtype=float)
    table = table[:, table.sum(0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0, 0.0
    stat, p, _, _ = chi2_contingency(table, correction=False)
    v = math.sqrt(stat / table.sum()) if table.sum() else 0.0   # min(rows, cols) - 1 = 1 for two samples
    return float(stat), float(p), float(v)


def mmd_permutation(x: np.ndarray, y: np.ndarray, permutations: int = PERMUTATIONS, seed: int = 0) -> tuple[float, float]:
    """Squared maximum mean discrepancy (RBF kernel, median-distance bandwidth) and its permutation p-value."""
    z = np.vstack([x, y]).astype(np.float64)
    n = len(x)
    sq = (z * z).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0)
    med = np.median(d2[np.triu_indices(len(z), 1)])
    k = np.exp(-d2 / max(med, 1e-12))
    rng = np.random.default_rng(seed)
    w = np.empty((len(z), permutations + 1))
    base = np.r_[np.full(n, 1.0 / n), np.full(len(y), -1.0 / len(y))]
    w[:, 0] = base
    for i in range(permutations):
        w[:, i + 1] = base[rng.permutation(len(z))]
    stats = np.einsum("ij,ij->j", w, k @ w)
    p = (1 + np.sum(stats[1:] >= stats[0] - 1e-12)) / (permutations + 1)
    return float(stats[0]), float(p)


def domain_auc(x: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    """Cross-validated ROC AUC of a logistic regression telling the current sample (1) from the reference (0)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    z = np.vstack([x, y])
    t = np.r_[np.zeros(len(x)), np.ones(len(y))]
    folds = int(min(5, len(x), len(y)))
    if folds < 2:
        return 0.5
    s = cross_val_predict(LogisticRegression(max_iter=1000, C=1.0), z, t, cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                          method="decision_function")
    return float(roc_auc_score(t, s))


def atc_threshold(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Average thresholded confidence: the threshold t at which the share of confidences above t equals the accuracy."""
    acc = float(np.mean(correct))
    if acc >= 1:  # no errors seen: anything less confident than every reference prediction counts as a likely error
        return float(np.min(confidence)) - 1e-9
    return float(np.quantile(confidence, 1 - acc)) if acc > 0 else 1.0


# ---------------------------------------------------------------------------------------------- features

def text_features(texts: list[str], tok=None, vocab: set | None = None) -> dict[str, np.ndarray]:
    n = len(texts)
    out = {k: np.zeros(n) for k in TEXT_FEATURES}
    ids = None
    unk = None
    if tok is not None:
        ids = tok(texts, None, truncation=False, verbose=False)["input_ids"]
        unk = getattr(tok, "unk_token_id", None)
    for i, t in enumerate(texts):
        words = _WORD.findall(t.lower())
        nc = max(len(t), 1)
        out["chars"][i] = len(t)
        out["words"][i] = len(words)
        out["non_ascii_rate"][i] = sum(1 for ch in t if ord(ch) > 127) / nc
        out["digit_rate"][i] = len(_DIGIT.findall(t)) / nc
        out["upper_rate"][i] = len(_UPPER.findall(t)) / nc
        out["punct_rate"][i] = len(_PUNCT.findall(t)) / nc
        if vocab is not None:
            out["oov_rate"][i] = sum(1 for w in words if w not in vocab) / len(words) if words else 0.0
        if ids is not None:
            seq = ids[i]
            out["tokens"][i] = len(seq)
            out["tokens_per_word"][i] = len(seq) / max(len(words), 1)
            out["unk_rate"][i] = (sum(1 for x in seq if x == unk) / len(seq)) if (unk is not None and len(seq)) else 0.0
    if tok is None:
        for k in ("tokens", "tokens_per_word", "unk_rate"):
            out.pop(k)
    if vocab is None:
        out.pop("oov_rate")
    return out


def model_outputs(clf, texts: list[str], pairs: list[str] | None, batch_size: int = 64) -> dict:
    from nncli.io.inference import softmax

    logits, emb = clf.run(texts, pairs, batch_size=batch_size, embeddings=True)
    probs = softmax(logits / clf.temperature)
    k = probs.shape[1]
    ent = -(probs * np.log(np.clip(probs, 1e-12, 1))).sum(1) / (math.log(k) if k > 1 else 1.0)
    return {"probs": probs, "pred": probs.argmax(1), "confidence": probs.max(1), "entropy": ent, "embeddings": emb}


def _sample(values: np.ndarray, cap: int, rng) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values if len(values) <= cap else values[rng.choice(len(values), cap, replace=False)]


# ---------------------------------------------------------------------------------------------- profile

@dataclass
class Profile:
    meta: dict
    arrays: dict

    def feature(self, name: str) -> np.ndarray | None:
        return self.arrays.get(f"feature_{name}")


def build_profile(texts: list[str], labels: list[str] | None, *, clf=None, model_texts: list[str] | None = None,
                  model_pairs: list[str] | None = None, model_labels: list[str] | None = None, source: str = "",
                  text_column=None, label_column=None, text_pair_column=None, model_ref: str | None = None, seed: int = 0,
                  model_split: str = "validation", selected_on: bool = False) -> Profile:
    """Profile reference data: text statistics on `texts`, model outputs on held-out `model_texts` (with labels, for accuracy)."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(texts))
    half_a, half_b = perm[: len(perm) // 2], perm[len(perm) // 2:]
    counts: dict[str, int] = {}
    for i in half_a:
        for w in _WORD.findall(texts[i].lower()):
            counts[w] = counts.get(w, 0) + 1
    vocab = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:VOCAB_CAP]]
    tok = clf.tokenizer if clf is not None else None
    feats = text_features(texts, tok, set(vocab))
    if "oov_rate" in feats:  # in-sample words are never out of vocabulary: measure it on the other half only
        feats["oov_rate"] = feats["oov_rate"][np.sort(half_b)] if len(half_b) else feats["oov_rate"]
    arrays = {f"feature_{k}": _sample(v, SAMPLE_CAP, rng) for k, v in feats.items()}
    arrays["vocab"] = np.array(vocab if vocab else [""], dtype=str)
    meta = {"schema_version": PROFILE_VERSION, "created_at": now(), "source": source, "rows": len(texts),
            "columns": {"text": text_column, "label": label_column, "text_pair": text_pair_column},
            "features": {k: _summary(v) for k, v in feats.items()}, "labels": _counts(labels) if labels else None, "model": None}
    if clf is not None and model_texts:
        mo = model_outputs(clf, model_texts, model_pairs)
        for k in MODEL_FEATURES:
            arrays[f"feature_{k}"] = _sample(mo[k], SAMPLE_CAP, rng)
        names = clf.label_names
        m = {"ref": model_ref or clf.name, "backend": clf.backend, "label_names": names, "temperature": clf.temperature,
             "max_length": clf.max_length,
             "rows": len(model_texts), "predictions": _counts([names[i] for i in mo["pred"]]),
             "features": {k: _summary(mo[k]) for k in MODEL_FEATURES}}
        if model_labels is not None and set(model_labels) <= set(names):
            y = np.array([names.index(v) if v in names else -1 for v in model_labels])
            correct = mo["pred"] == y
            m.update(accuracy=float(correct.mean()), atc_threshold=atc_threshold(mo["confidence"], correct),
                     average_confidence=float(mo["confidence"].mean()), split=model_split, selected_on=selected_on)
        if mo["embeddings"] is not None and len(model_texts) >= 10:
            e = mo["embeddings"].astype(np.float64)
            keep = rng.permutation(len(e))[:EMBED_CAP]
            # a seeded random orthogonal projection, not PCA: PCA fitted on these same points would give them more
            # variance in its subspace than any new point gets, and the MMD test would see that as drift
            mean = e.mean(0)
            k = min(PCA_DIMS, e.shape[1])
            q, _ = np.linalg.qr(np.random.default_rng(seed + 7).normal(size=(e.shape[1], k)))
            comps = q.T
            proj = (e - mean) @ comps.T
            scale = proj.std(0) + 1e-8
            arrays.update(emb_mean=mean.astype(np.float32), emb_components=comps.astype(np.float32), emb_scale=scale.astype(np.float32),
                          emb_reference=(proj[keep] / scale).astype(np.float32))
            m["embeddings"] = {"dims": int(e.shape[1]), "projected_dims": int(k), "kept": int(len(keep)),
                               "projection": "seeded random orthogonal",
                               "pooling": "mean of the last hidden layer over real tokens"}
        meta["model"] = m
    return Profile(meta, arrays)


def save_profile(directory: Path, profile: Profile) -> None:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **profile.arrays)
    atomic_write_bytes(Path(directory) / PROFILE_ARRAYS, buf.getvalue())
    atomic_write_json(Path(directory) / PROFILE_FILE, profile.meta)


def load_profile(ref: str) -> tuple[Profile, Path]:
    p = Path(ref)
    d = p if p.is_dir() else p.parent
    f = d / PROFILE_FILE
    if not f.exists():
        raise InputError(f"no reference profile in {d} ({PROFILE_FILE} missing)",
                         "pass a run directory made by nncli finetune (or nncli evaluate --output); older runs: re-run them, "
                         "or pass the training data file as --reference with --model")
    from nncli.core.artifacts import Profile as ProfileFile
    from nncli.core.artifacts import read_artifact

    read_artifact(f, ProfileFile)          # the keys drift relies on, with their types, or exit 3 naming the file
    meta = json.loads(f.read_text())
    try:
        with np.load(d / PROFILE_ARRAYS, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise InputError(f"reference profile {d / PROFILE_ARRAYS} is unreadable ({type(e).__name__}: {str(e)[:120]})",
                         "re-create it by re-running the finetune or evaluate that wrote it") from None
    if meta.get("schema_version") != PROFILE_VERSION:
        raise InputError(f"reference profile in {d} has schema_version {meta.get('schema_version')}, this nncli reads "
                         f"{PROFILE_VERSION}", "re-create the profile with this nncli version")
    return Profile(meta, arrays), d


def _summary(v: np.ndarray) -> dict:
    v = np.asarray(v, dtype=float)
    if not len(v):
        return {}
    q = np.quantile(v, [0.05, 0.5, 0.95])
    return {"mean": float(v.mean()), "p05": float(q[0]), "median": float(q[1]), "p95": float(q[2])}


def _counts(values) -> dict:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return out


# ---------------------------------------------------------------------------------------------- comparison

def compare(profile: Profile, texts: list[str], labels: list[str] | None, *, clf=None, pairs: list[str] | None = None,
            alpha: float = 0.05, max_accuracy_drop: float = 5.0, model_sample: int = 5000, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    vocab = set(profile.arrays["vocab"].tolist()) if "vocab" in profile.arrays else None
    tok = clf.tokenizer if clf is not None else None
    cur = text_features(texts, tok, vocab)
    raw: list[dict] = []
    for name in TEXT_FEATURES:
        ref = profile.feature(name)
        if ref is None or name not in cur:
            continue
        raw.append(_numeric_test(name, "text", ref, cur[name]))
    meta_model = profile.meta.get("model")
    if labels is not None and profile.meta.get("labels"):
        raw.append({"test": "chi2", "feature": "label", "kind": "label", "ref": profile.meta["labels"], "cur": _counts(labels)})
    mo = None
    idx = np.sort(rng.permutation(len(texts))[:model_sample])
    if clf is not None and meta_model:
        sub = [texts[i] for i in idx]
        mo = model_outputs(clf, sub, [pairs[i] for i in idx] if pairs is not None else None)
        for name in MODEL_FEATURES:
            ref = profile.feature(name)
            if ref is not None:
                raw.append(_numeric_test(name, "model", ref, mo[name]))
        names = clf.label_names
        raw.append({"test": "chi2", "feature": "predicted_class", "kind": "model", "ref": meta_model["predictions"],
                    "cur": _counts([names[i] for i in mo["pred"]])})
        if mo["embeddings"] is not None and "emb_reference" in profile.arrays:
            e = (mo["embeddings"].astype(np.float64) - profile.arrays["emb_mean"]) @ profile.arrays["emb_components"].T.astype(np.float64)
            e = e / profile.arrays["emb_scale"]
            e = e[rng.permutation(len(e))[:EMBED_CAP]]
            raw.append({"test": "mmd", "feature": "embeddings", "kind": "embedding", "ref_x": profile.arrays["emb_reference"], "cur_x": e})
    m_tests = len(raw) + (1 if labels is not None and mo is not None else 0)
    alpha_adj = alpha / max(m_tests, 1)
    tests = [_finish(t, alpha_adj, seed) for t in raw]

    accuracy: dict = {}
    if mo is not None and meta_model and meta_model.get("accuracy") is not None:
        tests += accuracy_tests(meta_model, mo, labels, idx, clf.label_names, max_accuracy_drop, alpha_adj, accuracy)
    plot_data = {"ref": {t["feature"]: profile.feature(t["feature"]) for t in tests if t["kind"] in ("text", "model")},
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
    out = [_drop_test("atc", "estimated_accuracy", ref_acc, n_ref, est, len(mo["pred"]), max_drop, alpha_adj, meta_model)]
    if labels is not None:
        sub = [labels[i] for i in idx]
        y = np.array([names.index(v) if v in names else -1 for v in sub])
        acc = float(np.mean(mo["pred"] == y))
        accuracy.update(actual=acc, unseen_labels=int(sum(v not in names for v in sub)))
        out.append(_drop_test("two-proportion z", "accuracy", ref_acc, n_ref, acc, len(y), max_drop, alpha_adj, meta_model))
    return out


def _drop_test(test: str, feature: str, ref: float, n_ref: int, cur: float, n_cur: int, max_drop: float, alpha_adj: float,
               meta_model: dict) -> dict:
    from scipy.stats import norm

    drop = ref - cur
    se = math.sqrt(max(ref * (1 - ref) / max(n_ref, 1) + cur * (1 - cur) / max(n_cur, 1), 1e-12))
    lower = drop - norm.ppf(1 - alpha_adj) * se
    p = float(norm.sf((drop - max_drop / 100) / se))
    row = {"test": test, "feature": feature, "kind": "accuracy", "statistic": cur, "p_value": p, "effect": drop * 100,
           "effect_name": "drop (points)", "threshold": max_drop, "significant": p < alpha_adj, "drift": bool(lower * 100 > max_drop),
           "decided_on": "lower bound", "ci95": [(drop - 1.96 * se) * 100, (drop + 1.96 * se) * 100], "n_ref": n_ref, "n_cur": n_cur}
    if meta_model.get("selected_on"):
        row["note"] = "the reference accuracy comes from the split that chose the checkpoint (optimistic)"
    return row


def _numeric_test(name, kind, ref, cur) -> dict:
    return {"test": "ks+psi", "feature": name, "kind": kind, "ref_v": np.asarray(ref, dtype=float), "cur_v": np.asarray(cur, dtype=float)}


def _finish(t: dict, alpha_adj: float, seed: int) -> dict:
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
                "n_cur": int(sum(t["cur"].values())), "reference": _shares(t["ref"]), "current": _shares(t["cur"])}
    if t["test"] == "mmd":
        x, y = t["ref_x"], t["cur_x"]
        stat, p = mmd_permutation(x, y, seed=seed)
        auc = domain_auc(x, y, seed=seed)
        return {"test": "MMD permutation + domain classifier", "feature": "embeddings", "kind": "embedding", "statistic": stat,
                "statistic_name": "MMD^2", "p_value": p, "effect": auc, "effect_name": "domain AUC", "threshold": MIN_AUC,
                "significant": p < alpha_adj, "drift": bool(p < alpha_adj and auc >= MIN_AUC), "n_ref": len(x), "n_cur": len(y)}
    raise ValueError(t["test"])  # pragma: no cover


def _shares(counts: dict) -> dict:
    total = sum(counts.values()) or 1
    return {k: round(v / total, 4) for k, v in sorted(counts.items())}


def severity(t: dict) -> float:
    """How far past its materiality threshold a test's effect is (for ranking the top drifting features)."""
    if t.get("effect") is None or not t.get("threshold"):
        return 0.0
    if t["kind"] == "embedding":
        return (t["effect"] - 0.5) / (t["threshold"] - 0.5)
    return t["effect"] / t["threshold"]


# ---------------------------------------------------------------------------------------------- command

def run(recipe, *, overwrite: bool = False) -> dict:
    from nncli.io.inference import load_classifier, release
    from nncli.io.labelled import to_split
    from nncli.io.tables import read_table

    timer = Timer()
    out = RunDir(recipe.output, command="drift") if recipe.output else None
    if out is not None:
        out.check(overwrite=overwrite, inputs=[recipe.current])    # fail fast; prepared once the tests have run
    ref_path = Path(recipe.reference)
    if not ref_path.exists():
        raise InputError(f"reference {recipe.reference} does not exist", "pass a run directory made by nncli finetune, or a profile.json")
    clf = None
    if ref_path.is_file() and ref_path.name != PROFILE_FILE:
        # a data file as the reference: profile it now (with --model for model-based tests)
        if recipe.model:
            clf = load_classifier(recipe.model, threads=recipe.threads)
        table = read_table(str(ref_path), role="reference data")
        lab_col = _present(table, recipe.label_column or "label")
        s, names = to_split(table, "reference data", recipe.text_column or "text", lab_col, key_prefix="reference")
        profile = build_profile(s.texts, names if lab_col else None, clf=clf, model_texts=s.texts if clf else None,
                                model_labels=names if (clf and lab_col) else None, source=str(ref_path),
                                text_column=s.columns.get("text") if s.columns else None, label_column=lab_col,
                                model_ref=recipe.model, seed=recipe.seed)
        ref_dir = None
    else:
        profile, ref_dir = load_profile(str(ref_path))
        model_ref = recipe.model or _model_of(profile, ref_dir)
        if model_ref and profile.meta.get("model"):
            # the same truncation as the profile: mean-pooled embeddings and confidences depend on it
            clf = load_classifier(model_ref, threads=recipe.threads, max_length=profile.meta["model"].get("max_length"))
            # the profile's confidences were taken at its temperature: compare like with like even if the model
            # has been calibrated since (calibration.json)
            clf.temperature = float(profile.meta["model"].get("temperature") or 1.0)
            want = profile.meta["model"]["label_names"]
            if clf.label_names != want:
                raise InputError(f"model {model_ref} has labels {clf.label_names}, the profile was made with {want}",
                                 "pass the model the profile was built with (--model)")
    cols = profile.meta.get("columns") or {}
    table = read_table(recipe.current, role="current data")
    text_col = recipe.text_column or cols.get("text") or "text"
    lab_col = _present(table, recipe.label_column or cols.get("label") or "label")
    pair_col = cols.get("text_pair")
    s, names = to_split(table, "current data", text_col, lab_col, pair_column=pair_col, key_prefix="current")
    if len(s) < 20:
        raise InputError(f"current data {Path(recipe.current).name} has only {len(s)} usable rows: too few to test for drift",
                         "pass at least a few hundred texts (20 is the minimum)")
    if recipe.limit and recipe.limit < len(s):
        keep = np.sort(np.random.default_rng(recipe.seed).permutation(len(s))[: recipe.limit])
        texts = [s.texts[i] for i in keep]
        labels = [names[i] for i in keep] if lab_col else None
        pairs = [s.pairs[i] for i in keep] if s.pairs is not None else None
    else:
        texts, labels, pairs = s.texts, (names if lab_col else None), s.pairs
    console.log(f"drift: {len(texts)} current texts from {recipe.current} against the profile of {profile.meta.get('source')}"
                + (f" with model {clf.name}" if clf else " (no model: text and label tests only)"))
    result = compare(profile, texts, labels, clf=clf, pairs=pairs, alpha=recipe.alpha, max_accuracy_drop=recipe.max_accuracy_drop,
                     model_sample=recipe.model_sample, seed=recipe.seed)
    release(clf)
    plot = result.pop("_plot")
    tests = result["tests"]
    drifting = sorted((t for t in tests if t["drift"]), key=severity, reverse=True)
    report = base_report("drift", recipe.name)
    report.update(reference={"path": str(ref_path), "source": profile.meta.get("source"), "rows": profile.meta.get("rows"),
                             "model": (profile.meta.get("model") or {}).get("ref")},
                  current={"path": recipe.current, "rows": len(texts), "rows_read": s.rows_read, "dropped": s.dropped,
                           "has_labels": labels is not None},
                  tests=tests, accuracy=result["accuracy"], alpha=recipe.alpha, alpha_per_test=result["alpha_per_test"],
                  drift_detected=bool(drifting), top_drifting=[t["feature"] for t in drifting[:5]],
                  warnings=list(table.notes), environment=environment(recipe.threads))
    report["gates"] = [{"metric": f"drift:{t['feature']}", "op": "==", "threshold": 0, "value": int(t["drift"]), "passed": not t["drift"]}
                       for t in tests]
    ending = {"status": "failed" if drifting else "succeeded", "exit_code": 5 if drifting else 0}
    if out is not None:
        ref_files = [ref_path / PROFILE_FILE, ref_path / PROFILE_ARRAYS] if ref_path.is_dir() else [ref_path]
        out.prepare(overwrite=overwrite, inputs=[*ref_files, recipe.current, clf.path if clf is not None else None])
        _write(out, report, plot, tests, {**ending, "timings": {"wall_seconds": timer()}})
    report.update(**ending, finished_at=now(), timings={"wall_seconds": timer()})
    if drifting:
        raise GateFailed(f"drift detected in {len(drifting)} of {len(tests)} tests: " + ", ".join(t["feature"] for t in drifting[:5]),
                         "inspect the table (and drift.png); re-train or re-calibrate on recent data if the shift is real",
                         report=report)
    return report


def _write(out: RunDir, report: dict, plot: dict, tests: list[dict], ending: dict) -> None:
    with recording(out, report):
        report["artifacts"] = {"report": "report.json", "plot": "drift.png", "summary": "report.md"}
        _plot(out / "drift.png", plot, tests)
        report.update(**ending, finished_at=now())
        out.write_text("report.md", markdown(report))
        out.write_json("report.json", report)
        out.complete()


def _present(table, column: str | None) -> str | None:
    if not column:
        return None
    cols = [column] if isinstance(column, str) else list(column)
    for c in cols:
        if c in table.columns:
            return c
    return None


def _model_of(profile: Profile, ref_dir: Path) -> str | None:
    m = profile.meta.get("model")
    if not m:
        return None
    ref = m.get("ref")
    if ref and not Path(ref).is_absolute():
        cand = (ref_dir / ref)
        if cand.exists():
            return str(cand)
    if ref and Path(ref).exists():
        return ref
    raise InputError(f"the model the profile was built with ({ref}) is not there any more",
                     "pass it with --model (a run directory or model directory)")


def markdown(report: dict) -> str:
    from nncli.evaluate.drift_report import markdown as render

    return render(report, severity)


def _plot(path: Path, plot: dict, tests: list[dict]) -> None:
    from nncli.evaluate.drift_report import write_plot

    write_plot(path, plot, tests, severity)
