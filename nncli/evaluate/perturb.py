"""Seeded text perturbations for robustness checks: small changes a model should shrug off."""

from __future__ import annotations

import random
import re
import string

KEYS = "abcdefghijklmnopqrstuvwxyz"


def _words(text: str) -> list[str]:
    return text.split(" ")


def typo_swap(text: str, rng: random.Random, rate: float = 0.1) -> str:
    """Swap two adjacent letters inside ~10% of words longer than 3 characters."""
    words = _words(text)
    for i, w in enumerate(words):
        if len(w) > 3 and w.isalpha() and rng.random() < rate:
            j = rng.randrange(1, len(w) - 2)
            words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    return " ".join(words)


def typo_drop(text: str, rng: random.Random, rate: float = 0.1) -> str:
    words = _words(text)
    for i, w in enumerate(words):
        if len(w) > 3 and w.isalpha() and rng.random() < rate:
            j = rng.randrange(1, len(w) - 1)
            words[i] = w[:j] + w[j + 1:]
    return " ".join(words)


def typo_insert(text: str, rng: random.Random, rate: float = 0.1) -> str:
    words = _words(text)
    for i, w in enumerate(words):
        if len(w) > 2 and w.isalpha() and rng.random() < rate:
            j = rng.randrange(1, len(w))
            words[i] = w[:j] + rng.choice(KEYS) + w[j:]
    return " ".join(words)


def lowercase(text: str, rng: random.Random) -> str:
    return text.lower()


def uppercase(text: str, rng: random.Random) -> str:
    return text.upper()


def punctuation(text: str, rng: random.Random) -> str:
    """Strip punctuation, or (half the time) add an exclamation/comma noise."""
    if rng.random() < 0.5:
        return re.sub(f"[{re.escape(string.punctuation)}]", "", text).strip() or text
    words = _words(text)
    i = rng.randrange(len(words))
    words[i] = words[i] + rng.choice([",", "!!", " ...", ";"])
    return " ".join(words)


def whitespace(text: str, rng: random.Random) -> str:
    return " ".join(w + (" " * rng.randint(0, 2)) for w in _words(text)).replace(" .", ". ")


def truncate(text: str, rng: random.Random) -> str:
    """Keep the first half of the words (at least one)."""
    words = _words(text)
    return " ".join(words[: max(1, len(words) // 2)])


PERTURBATIONS = {"typo_swap": typo_swap, "typo_drop": typo_drop, "typo_insert": typo_insert, "lowercase": lowercase,
                 "uppercase": uppercase, "punctuation": punctuation, "whitespace": whitespace, "truncate": truncate}


def apply(name: str, texts: list[str], seed: int) -> list[str]:
    fn = PERTURBATIONS[name]
    rng = random.Random(f"{seed}:{name}")
    return [fn(t, rng) for t in texts]
