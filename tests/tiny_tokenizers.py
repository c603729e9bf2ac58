"""Deterministic vocabularies for the tiny test models.

`tokenizers`' trainers break ties between equally frequent pairs in hash-map order, which Rust seeds per process:
the same corpus gave a different vocabulary in every test session (six runs, six vocabularies), so a tiny model's
result near a test's threshold passed in one session and failed in the next. These builders break every tie by
the symbols themselves, so each session gets the same token ids.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path


def wordpiece_vocab(corpus: list[str], size: int, special: list[str], out: Path) -> Path:
    """vocab.txt for BertTokenizerFast: the special tokens, every character alone and as a `##` continuation, then
    whole words by frequency (ties alphabetical) up to `size` entries."""
    from tokenizers.pre_tokenizers import BertPreTokenizer

    pre = BertPreTokenizer()
    words = Counter(w for text in corpus for w, _ in pre.pre_tokenize_str(text.lower()) if w not in special)
    chars = sorted({c for w in words for c in w})
    vocab = list(special) + chars + [f"##{c}" for c in chars]
    vocab += [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])) if w not in vocab]
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.txt").write_text("\n".join(vocab[:size]) + "\n", encoding="utf-8")
    return out / "vocab.txt"


def byte_level_bpe(corpus: list[str], size: int, special: list[str], out: Path) -> tuple[Path, Path]:
    """vocab.json and merges.txt for GPT-2 / RoBERTa tokenizers: byte-level BPE whose merge at each step is the most
    frequent pair, ties broken by the pair itself."""
    from tokenizers.pre_tokenizers import ByteLevel

    pre = ByteLevel(add_prefix_space=False)
    words = Counter(w for text in corpus for w, _ in pre.pre_tokenize_str(text))
    pieces = {w: list(w) for w in words}
    vocab = list(special) + sorted(ByteLevel.alphabet())
    merges: list[tuple[str, str]] = []
    while len(vocab) < size:
        pairs = Counter()
        for w, n in words.items():
            for a, b in zip(pieces[w], pieces[w][1:]):
                pairs[a, b] += n
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        vocab.append(best[0] + best[1])
        for w, p in pieces.items():
            i, merged = 0, []
            while i < len(p):
                if i + 1 < len(p) and (p[i], p[i + 1]) == best:
                    merged.append(p[i] + p[i + 1])
                    i += 2
                else:
                    merged.append(p[i])
                    i += 1
            pieces[w] = merged
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    return out / "vocab.json", out / "merges.txt"
