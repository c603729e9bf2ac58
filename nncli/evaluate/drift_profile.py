"""The reference profile `nncli drift` compares against (profile.json + profile.npz): text features, the model's
confidences, predictions and projected embeddings on held-out data, and the accuracy they had there."""

from __future__ import annotations

import json
import math
import re
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nncli.core.atomic import atomic_write_bytes, atomic_write_json
from nncli.core.errors import InputError
from nncli.core.report import now
from nncli.evaluate.drift_stats import atc_threshold

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

_WORD = re.compile(r"\w+", re.UNICODE)
_DIGIT = re.compile(r"\d")
_UPPER = re.compile(r"[A-Z]|[^\W\d_a-z]", re.UNICODE)
_PUNCT = re.compile("[" + re.escape(string.punctuation) + "]")


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
    logits, emb = clf.run(texts, pairs, batch_size=batch_size, embeddings=True)
    return outputs_of(logits, emb, clf.temperature)


def outputs_of(logits: np.ndarray, emb: np.ndarray | None, temperature: float) -> dict:
    """What the drift tests read from a classifier's logits (and embeddings, where the backend gives them)."""
    from nncli.io.inference import softmax

    probs = softmax(logits / temperature)
    k = probs.shape[1]
    ent = -(probs * np.log(np.clip(probs, 1e-12, 1))).sum(1) / (math.log(k) if k > 1 else 1.0)
    return {"probs": probs, "pred": probs.argmax(1), "confidence": probs.max(1), "entropy": ent, "embeddings": emb}


def _sample(values: np.ndarray, cap: int, rng) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values if len(values) <= cap else values[rng.choice(len(values), cap, replace=False)]


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
            "features": {k: summary(v) for k, v in feats.items()}, "labels": value_counts(labels) if labels else None,
            "model": None}
    if clf is not None and model_texts:
        mo = model_outputs(clf, model_texts, model_pairs)
        meta["model"] = model_profile(clf, mo, model_labels, arrays, rng, seed, model_ref=model_ref, split=model_split,
                                      selected_on=selected_on, pooling="mean of the last hidden layer over real tokens")
    return Profile(meta, arrays)


def model_profile(clf, mo: dict, model_labels: list[str] | None, arrays: dict, rng, seed: int, *, model_ref: str | None,
                  split: str, selected_on: bool, pooling: str) -> dict:
    """The model part of a profile (any task): confidences, entropies, predictions, the accuracy and ATC threshold
    where labels are known, and the projected embeddings (added to `arrays`); returns profile.json's `model`."""
    for k in MODEL_FEATURES:
        arrays[f"feature_{k}"] = _sample(mo[k], SAMPLE_CAP, rng)
    names, n = clf.label_names, len(mo["pred"])
    m = {"ref": model_ref or clf.name, "backend": clf.backend, "label_names": names, "temperature": clf.temperature,
         "max_length": clf.max_length, "rows": n, "predictions": value_counts([names[i] for i in mo["pred"]]),
         "features": {k: summary(mo[k]) for k in MODEL_FEATURES}}
    if model_labels is not None and set(model_labels) <= set(names):
        y = np.array([names.index(v) if v in names else -1 for v in model_labels])
        correct = mo["pred"] == y
        m.update(accuracy=float(correct.mean()), atc_threshold=atc_threshold(mo["confidence"], correct),
                 average_confidence=float(mo["confidence"].mean()), split=split, selected_on=selected_on)
    if mo["embeddings"] is not None and n >= 10:
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
        arrays.update(emb_mean=mean.astype(np.float32), emb_components=comps.astype(np.float32),
                      emb_scale=scale.astype(np.float32), emb_reference=(proj[keep] / scale).astype(np.float32))
        m["embeddings"] = {"dims": int(e.shape[1]), "projected_dims": int(k), "kept": int(len(keep)),
                           "projection": "seeded random orthogonal", "pooling": pooling}
    return m


def save_profile(directory: Path, profile: Profile) -> None:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **profile.arrays)
    atomic_write_bytes(Path(directory) / PROFILE_ARRAYS, buf.getvalue())
    atomic_write_json(Path(directory) / PROFILE_FILE, profile.meta)


def save_evaluated_profile(out, report: dict, load_model, build) -> None:
    """`nncli evaluate --output`'s profile: `build(clf)` with the model `load_model()` returns, saved in `out`. Bad input
    is an error; any other failure a warning (the evaluation itself succeeded)."""
    from nncli.core import console
    from nncli.io.inference import release

    clf = None
    try:
        clf = load_model()
        save_profile(out.path, build(clf))
        report["artifacts"]["profile"] = PROFILE_FILE
    except InputError:
        raise
    except Exception as e:  # the evaluation itself succeeded; say what is missing
        console.warn(f"could not write the drift reference profile ({type(e).__name__}: {str(e)[:160]})")
    finally:
        release(clf)


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


def summary(v: np.ndarray) -> dict:
    v = np.asarray(v, dtype=float)
    if not len(v):
        return {}
    q = np.quantile(v, [0.05, 0.5, 0.95])
    return {"mean": float(v.mean()), "p05": float(q[0]), "median": float(q[1]), "p95": float(q[2])}


def value_counts(values) -> dict:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return out
