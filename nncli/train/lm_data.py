"""Causal-LM data: three shapes, chosen by the columns the recipe names.

- plain text (`data.text_column`): domain adaptation, loss on every token;
- prompt/completion pairs (`data.prompt_column`, `data.completion_column`): loss on the completion (and EOS) only;
- chat conversations (`data.messages_column`: a list of {role, content}, or its JSON string), rendered with the
  tokenizer's chat template (or `data.chat_template`): loss on the assistant turns only.
`data.train_on_prompt: true` puts the prompt/user tokens back into the loss. Examples longer than `data.max_length`
are truncated and counted; `data.packing: true` concatenates short examples into full sequences (the first token of
every packed example is not a target, so nothing is learned across them).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from nncli.core import console
from nncli.core.errors import InputError, UsageError
from nncli.io.chat import render_chat

IGNORE = -100

@dataclass
class LMExamples:
    name: str
    mode: str                                   # text | prompt-completion | chat
    input_ids: list[list[int]] = field(default_factory=list)
    labels: list[list[int]] = field(default_factory=list)
    prompts: list = field(default_factory=list)     # for sample generations: prompt text, or messages before the answer
    truncated: int = 0
    dropped: int = 0
    rows_read: int = 0


def data_mode(recipe) -> str:
    d = recipe.data
    if d.messages_column:
        return "chat"
    if d.prompt_column or d.completion_column:
        if not (d.prompt_column and d.completion_column):
            raise UsageError("prompt/completion data needs both data.prompt_column and data.completion_column",
                             "pass --prompt-column and --completion-column")
        return "prompt-completion"
    return "text"


def _messages(value, row: int, source: str) -> list[dict] | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise InputError(f"{source} row {row}: the messages column is not a JSON list of {{role, content}}",
                             'write each conversation as [{"role": "user", "content": "..."}, '
                             '{"role": "assistant", ...}]') from None
    if not isinstance(value, list) or not all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
        raise InputError(f"{source} row {row}: messages must be a list of {{role, content}} objects",
                         'e.g. [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]')
    return [{"role": str(m["role"]), "content": "" if m["content"] is None else str(m["content"])} for m in value]


def encode_text(tok, text: str, max_length: int) -> tuple[list[int], list[int], bool]:
    ids = tok(text, add_special_tokens=True)["input_ids"]
    if tok.eos_token_id is not None and (not ids or ids[-1] != tok.eos_token_id):
        ids = ids + [tok.eos_token_id]
    cut = len(ids) > max_length
    ids = ids[:max_length]
    return ids, list(ids), cut


def encode_pair(tok, prompt: str, completion: str, max_length: int, train_on_prompt: bool) -> tuple[list[int], list[int], bool]:
    p = tok(prompt, add_special_tokens=True)["input_ids"]
    c = tok(completion, add_special_tokens=False)["input_ids"]
    if tok.eos_token_id is not None:
        c = c + [tok.eos_token_id]
    ids = p + c
    labels = (list(p) if train_on_prompt else [IGNORE] * len(p)) + list(c)
    cut = len(ids) > max_length
    return ids[:max_length], labels[:max_length], cut


def encode_chat(tok, messages: list[dict], template: str | None, max_length: int,
                train_on_prompt: bool) -> tuple[list[int], list[int], bool]:
    """Token ids of the rendered conversation; labels only on assistant turns (found by rendering prefixes)."""
    ids: list[int] = []
    labels: list[int] = []
    done = ""
    for i, m in enumerate(messages):
        if m["role"] == "assistant":
            before = render_chat(tok, messages[:i], template, add_generation_prompt=True) if i else ""
            upto = render_chat(tok, messages[: i + 1], template)
            segs = [(before[len(done):], train_on_prompt), (upto[len(before):], True)]
            done = upto
        else:
            continue
        for text, learn in segs:
            if not text:
                continue
            t = tok(text, add_special_tokens=False)["input_ids"]
            ids += t
            labels += list(t) if learn else [IGNORE] * len(t)
    full = render_chat(tok, messages, template)
    rest = full[len(done):]
    if rest:
        t = tok(rest, add_special_tokens=False)["input_ids"]
        ids += t
        labels += list(t) if train_on_prompt else [IGNORE] * len(t)
    cut = len(ids) > max_length
    return ids[:max_length], labels[:max_length], cut


def load_examples(recipe, tok) -> dict[str, LMExamples]:
    """Every split's examples, encoded; validation defaults to a seeded hold-out of train."""
    d = recipe.data
    sources = {"train": d.train, "validation": d.validation, "test": d.test}
    out = {name: _split_examples(recipe, tok, name, src) for name, src in sources.items() if src}
    if "validation" not in out:
        out["train"], out["validation"] = _hold_out(out["train"], d.validation_fraction, recipe.train.seed)
    return out


def _split_examples(recipe, tok, name: str, src: str) -> LMExamples:
    from nncli.io.labelled import check_column, pick_column
    from nncli.io.tables import read_table

    d, mode = recipe.data, data_mode(recipe)
    split = {"train": d.train_split, "validation": d.validation_split or "validation", "test": d.test_split or "test"}[name]
    table = read_table(src, role=f"{name} data", encoding=d.encoding, config=d.config, split=split, quoting=d.quoting)
    for n in table.notes:
        console.warn(n)
    if mode == "chat":
        cols = [d.messages_column]
    elif mode == "prompt-completion":
        cols = [d.prompt_column, d.completion_column]
    else:
        cols = [pick_column(table, d.text_column, "data.text_column", name)]
    keys = {"chat": ["data.messages_column"], "prompt-completion": ["data.prompt_column", "data.completion_column"]}.get(mode)
    for c, key in zip(cols, keys or ["data.text_column"]):
        check_column(table, c, key, name)
    ex = LMExamples(name, mode, rows_read=table.n_rows)
    for i in range(table.n_rows):
        row = [table.columns[c][i] for c in cols]
        encoded = _encode_row(tok, mode, row, d, i + 2, Path(str(src)).name)
        if encoded is None or not any(x != IGNORE for x in encoded[1][1:]):
            ex.dropped += 1           # empty, no assistant turn, or nothing left to learn after truncation
            continue
        ids, labels, cut, prompt = encoded
        ex.input_ids.append(ids)
        ex.labels.append(labels)
        ex.prompts.append(prompt)
        ex.truncated += cut
    if not ex.input_ids:
        raise InputError(f"{name} data {Path(str(src)).name} has no usable examples ({ex.rows_read} rows read, {ex.dropped} "
                         "empty)",
                         "check the column names and that the texts are not empty")
    return ex


def _encode_row(tok, mode: str, row: list, d, line: int, source: str):
    """(ids, labels, truncated, prompt for sample generations) of one row, or None when there is nothing to learn."""
    if mode == "chat":
        msgs = _messages(row[0], line, source)
        if not msgs or not any(m["role"] == "assistant" for m in msgs):
            return None
        last = max(j for j, m in enumerate(msgs) if m["role"] == "assistant")
        return (*encode_chat(tok, msgs, d.chat_template, d.max_length, d.train_on_prompt),
                {"messages": msgs[:last], "reference": msgs[last]["content"]})
    if mode == "prompt-completion":
        p, c = row
        if p is None or c is None or not str(c).strip():
            return None
        return (*encode_pair(tok, str(p), str(c), d.max_length, d.train_on_prompt), {"prompt": str(p), "reference": str(c)})
    t = row[0]
    if t is None or (isinstance(t, float) and math.isnan(t)) or not str(t).strip():
        return None
    words = str(t).split()
    cut = max(1, len(words) // 3)
    return (*encode_text(tok, str(t), d.max_length), {"prompt": " ".join(words[:cut]), "reference": " ".join(words[cut:])})


def _hold_out(tr: LMExamples, fraction: float, seed: int) -> tuple[LMExamples, LMExamples]:
    n = len(tr.input_ids)
    if n < 10:
        raise InputError(f"only {n} training examples: too few to hold out a validation split",
                         "pass --validation FILE, or more training data")
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    k = max(1, int(round(n * fraction)))
    val, keep = sorted(idx[:k]), sorted(idx[k:])

    def pick(rows):
        return [rows[i] for i in keep], [rows[i] for i in val]

    (tr_ids, v_ids), (tr_lab, v_lab), (tr_pr, v_pr) = pick(tr.input_ids), pick(tr.labels), pick(tr.prompts)
    train = LMExamples("train", tr.mode, tr_ids, tr_lab, tr_pr, tr.truncated, tr.dropped, tr.rows_read)
    return train, LMExamples("validation", tr.mode, v_ids, v_lab, v_pr)


def pack(ex: LMExamples, max_length: int, eos: int | None) -> tuple[list[list[int]], list[list[int]]]:
    """Concatenate examples into sequences of at most max_length; the first token of each example is not a target."""
    seqs, labs = [], []
    cur, cur_l = [], []
    for ids, labels in zip(ex.input_ids, ex.labels):
        labels = [IGNORE] + list(labels[1:])
        if cur and len(cur) + len(ids) > max_length:
            seqs.append(cur)
            labs.append(cur_l)
            cur, cur_l = [], []
        cur = cur + list(ids)
        cur_l = cur_l + labels
    if cur:
        seqs.append(cur)
        labs.append(cur_l)
    return seqs, labs

