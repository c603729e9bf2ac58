"""Text augmentation for training examples (EDA-style, Wei & Zou 2019): random deletion, random swap,
synonym replacement from a word list. Seeded; applied to the training split only; off by default."""

from __future__ import annotations

import random
import re
from pathlib import Path

from nncli.core.errors import InputError

_TOKEN = re.compile(r"\w+|[^\w\s]+", re.UNICODE)


def load_synonyms(path: str | None) -> dict[str, list[str]]:
    """Groups of interchangeable words, one group per line (comma-separated); '#' starts a comment."""
    if path is None:
        from nncli.recipe.shipped import recipes_dir

        p = recipes_dir() / "data" / "synonyms.txt"
    else:
        p = Path(path)
    if not p.exists():
        raise InputError(f"synonym list {p} not found", "set data.augment.synonyms to a file of comma-separated word groups")
    table: dict[str, list[str]] = {}
    for line in p.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        group = [w.strip().lower() for w in line.split(",") if w.strip()]
        for w in group:
            table.setdefault(w, [])
            table[w] += [x for x in group if x != w and x not in table[w]]
    if not table:
        raise InputError(f"synonym list {p} has no word groups", "write comma-separated groups, one per line")
    return table


def augment_text(text: str, methods: list[str], p: float, rng: random.Random, synonyms: dict[str, list[str]]) -> str:
    words = text.split()
    if len(words) < 2:
        return text
    for m in methods:
        if m == "synonym":
            out = []
            for w in words:
                core = w.strip(".,!?;:\"'()").lower()
                if core in synonyms and rng.random() < p:
                    rep = rng.choice(synonyms[core])
                    out.append(w.lower().replace(core, rep, 1) if w.lower().startswith(core) else rep)
                else:
                    out.append(w)
            words = out
        elif m == "swap":
            for _ in range(max(1, int(round(p * len(words))))):
                i, j = rng.randrange(len(words)), rng.randrange(len(words))
                words[i], words[j] = words[j], words[i]
        elif m == "deletion":
            kept = [w for w in words if rng.random() >= p]
            words = kept if kept else [rng.choice(words)]
    return " ".join(words)


def augment_split(texts: list[str], labels: list[int], spec, seed: int) -> tuple[list[str], list[int], int]:
    """Original rows plus `copies` augmented variants of each (identical variants are skipped)."""
    if not spec or not spec.methods:
        return texts, labels, 0
    rng = random.Random(seed + 7919)
    synonyms = load_synonyms(spec.synonyms) if "synonym" in spec.methods else {}
    new_t, new_l = [], []
    for t, y in zip(texts, labels):
        for _ in range(spec.copies):
            a = augment_text(t, list(spec.methods), spec.p, rng, synonyms)
            if a != t:
                new_t.append(a)
                new_l.append(y)
    return texts + new_t, labels + new_l, len(new_t)
