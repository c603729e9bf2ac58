"""Texts and labels from tables: cleaning, label mapping, splits; every dropped row counted under a named reason."""

from __future__ import annotations

import difflib
import hashlib
import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nncli.core.errors import InputError, UsageError
from nncli.io.tables import Table, is_local, read_table


@dataclass
class Split:
    name: str
    source: str
    texts: list[str]
    labels: list[int]
    pairs: list[str] | None = None
    rows_read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    extra: dict[str, list] = field(default_factory=dict)  # other columns, kept for slices and audits
    columns: dict[str, Any] = field(default_factory=dict)  # which columns were used
    rows: list[int] = field(default_factory=list)          # each kept row's number in its source (1-based data row)

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class LabelledData:
    train: Split
    validation: Split
    test: Split | None
    label_names: list[str]
    notes: list[str] = field(default_factory=list)
    fingerprint: str = ""
    info: list[str] = field(default_factory=list)

    def splits(self) -> list[Split]:
        return [s for s in (self.train, self.validation, self.test) if s is not None]


# ---------------------------------------------------------------------------------------------- cleaning and labels

_WS = re.compile(r"\s+")
_ENTITY = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[a-zA-Z]{2,8});")


def clean_text(value: Any, clean: bool = True) -> str:
    """A cell as text: HTML entities unescaped (twice, for &amp;#039;), whitespace folded. Quotes are left alone: undoing
    CSV quoting is the reader's job (nncli.io.delimited), so a text that starts and ends with a quote keeps them."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    s = value if isinstance(value, str) else str(value)
    if not clean:
        return s
    for _ in range(2):  # double-escaped entities (&amp;#039;) are common in scraped text
        if _ENTITY.search(s):
            s = html.unescape(s)
    return _WS.sub(" ", s).strip()


def normalise_label(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
        return str(value)
    if isinstance(value, int):
        return str(value)
    s = str(value).strip()
    # Only an empty cell (or a float NaN's text) is a missing label: "none", "null" and "NA" are real class names in
    # the wild (TweetEval's stance tasks have a class called "none").
    if s in ("", "nan", "NaN"):
        return None
    if re.fullmatch(r"[+-]?\d+\.0*", s):
        return str(int(float(s)))
    return s


def sort_labels(names: set[str]) -> list[str]:
    if all(re.fullmatch(r"[+-]?\d+", n) for n in names):
        return sorted(names, key=int)
    return sorted(names)


def check_column(table: Table, column: str, key: str, role: str) -> None:
    if column not in table.columns:
        cols = list(table.columns)
        close = difflib.get_close_matches(column, cols, n=1, cutoff=0.5) or [c for c in cols if c.lower() == column.lower()]
        guess = None if close else likely_column(table, "label" if key.endswith("label_column") else "text")
        flag = "--label-column" if key.endswith("label_column") else "--text-column"
        held_out = role in ("validation", "test") and key in ("data.text_column", "data.label_column")
        if close and held_out:     # train had the column: a list of names covers files that differ
            hint = (f"did you mean '{close[0]}'? when files name it differently, give both (the first one each file "
                    f"has): {flag} '{column}' {flag} '{close[0]}'")
        elif close:
            hint = f"did you mean '{close[0]}'? (set {key}={close[0]})"
        elif guess:
            hint = f"'{guess}' looks like it: pass {flag} '{guess}' (or set {key}); the columns are {', '.join(map(str, cols))}"
        else:
            hint = f"set {key} to one of: {', '.join(map(str, cols))}"
        raise UsageError(f"{key}: column '{column}' not found in {role} data {Path(table.source).name} "
                         f"(columns: {', '.join(map(str, cols))})", hint)


def likely_column(table: Table, kind: str) -> str | None:
    """The column that most looks like the texts (the longest non-numeric values) or the labels (few distinct values
    that repeat), for a hint; None when nothing stands out."""
    def values(c):
        return [str(v).strip() for v in table.columns[c][:2000] if v is not None and str(v).strip()]

    def numeric(vs):
        return all(re.fullmatch(r"[+-]?\d+(\.\d+)?", v) for v in vs)

    scored = []
    for c in table.columns:
        vs = values(c)
        if not vs:
            continue
        distinct = len(set(vs))
        if kind == "text" and not numeric(vs) and distinct > len(vs) / 2:
            scored.append((sum(map(len, vs)) / len(vs), c))
        elif kind == "label" and 2 <= distinct <= min(100, len(vs) // 3):
            scored.append((-distinct, c))
    return max(scored)[1] if scored else None


def pick_column(table: Table, column, key: str, role: str) -> str:
    """A column name, or a list of candidates of which the first one present is used (files that name it differently)."""
    candidates = [column] if isinstance(column, str) else list(column)
    for c in candidates:
        if c in table.columns:
            return c
    check_column(table, " | ".join(candidates) if len(candidates) > 1 else candidates[0], key, role)
    return candidates[0]  # not reached


def to_split(table: Table, name: str, text_column, label_column, pair_column: str | None = None,
             clean: bool = True, keep_columns: bool = True, key_prefix: str = "data") -> tuple[Split, list[str | None]]:
    """Clean rows, dropping (and counting) rows with an empty text or a missing label. Returns the split and raw label names."""
    text_column = pick_column(table, text_column, f"{key_prefix}.text_column", name)
    if label_column:
        label_column = pick_column(table, label_column, f"{key_prefix}.label_column", name)
    if pair_column:
        check_column(table, pair_column, f"{key_prefix}.text_pair_column", name)
    texts, pairs, names, keep = [], [], [], []
    dropped = {"empty_text": 0, "missing_label": 0}
    raw_texts = table.columns[text_column]
    raw_pairs = table.columns[pair_column] if pair_column else None
    raw_labels = table.columns[label_column] if label_column else [None] * len(raw_texts)
    for i, raw in enumerate(raw_texts):
        t = clean_text(raw, clean)
        p = clean_text(raw_pairs[i], clean) if raw_pairs is not None else None
        lab = normalise_label(raw_labels[i]) if label_column else None
        if not t.strip():
            dropped["empty_text"] += 1
            continue
        if label_column and lab is None:
            dropped["missing_label"] += 1
            continue
        texts.append(t)
        if raw_pairs is not None:
            pairs.append(p or "")
        names.append(lab)
        keep.append(i)
    extra = {}
    if keep_columns:
        for c, vals in table.columns.items():
            if c not in (text_column, pair_column):
                extra[str(c)] = [vals[i] for i in keep]
    split = Split(name, table.source, texts, [], pairs if raw_pairs is not None else None, table.n_rows,
                  {k: v for k, v in dropped.items() if v}, extra, rows=[i + 1 for i in keep])
    split.columns = {"text": text_column, "label": label_column, "text_pair": pair_column}
    return split, names


def _split_note(split: Split, held_out: int = 0) -> str | None:
    """What the reader dropped from one file; `held_out`: rows of it moved into a validation split made from it."""
    if not split.dropped:
        return None
    parts = ", ".join(f"{n} with {k.replace('_', ' ')}" for k, n in split.dropped.items())
    kept = f"{len(split) + held_out} kept ({held_out} of them held out for validation)" if held_out else f"{len(split)} kept"
    return f"{split.name}: {split.rows_read} rows read, {kept}; dropped {parts}"


# ---------------------------------------------------------------------------------------------- the whole labelled set

def load_labelled(data, seed: int = 42, label_names: list[str] | None = None) -> LabelledData:
    """Load train/validation/test per a DataSpec. Validation defaults to a stratified, seeded split of train."""
    notes: list[str] = []
    quoting = getattr(data, "quoting", "auto")
    common = dict(encoding=data.encoding, config=data.config, quoting=quoting)
    train_t = read_table(data.train, role="train", split=data.train_split, **common)
    val_source = data.validation or (data.train if data.validation_split and not is_local(data.train) else None)
    val_t = (read_table(val_source, role="validation", split=data.validation_split or "validation", **common)
             if val_source else None)
    test_source = data.test or (data.train if data.test_split and not is_local(data.train) else None)
    test_t = read_table(test_source, role="test", split=data.test_split or "test", **common) if test_source else None
    info: list[str] = []
    for t in (train_t, val_t, test_t):
        if t is not None:
            notes.extend(t.notes)
            info.extend(t.info)

    args = dict(text_column=data.text_column, label_column=data.label_column, pair_column=data.text_pair_column,
                clean=data.clean_text)
    train, train_names = to_split(train_t, "train", **args)
    columns_hint = f"check data.text_column={data.text_column} and data.label_column={data.label_column}"
    if data.max_train_samples and data.max_train_samples < len(train):
        import random

        idx = sorted(random.Random(seed).sample(range(len(train)), data.max_train_samples))
        train, train_names = subset(train, idx), [train_names[i] for i in idx]
        notes.append(f"train: using a seeded random subset of {len(train)} rows (data.max_train_samples)")
    if len(train) == 0:
        raise InputError(f"train data {Path(train_t.source).name} has no usable rows ({train_t.n_rows} read, all empty "
                         "or unlabelled)", columns_hint)
    names = set(train_names)
    if label_names is None:
        if len(names) < 2:
            raise InputError(f"train data has a single class ({next(iter(names))!r}): a classifier needs at least two",
                             "check data.label_column, or add examples of the other classes")
        label_names = sort_labels(names)
    label2id = {n: i for i, n in enumerate(label_names)}
    train.labels = _map_labels(train_names, label2id, "train", train_t.source)

    if val_t is not None:
        validation, val_names = to_split(val_t, "validation", **args)
        validation.labels = _map_labels(val_names, label2id, "validation", val_t.source)
    else:
        train, validation = stratified_split(train, data.validation_fraction, seed, notes,
                                             min_per_class=getattr(data, "validation_min_per_class", 0))
    test = None
    if test_t is not None:
        test, test_names = to_split(test_t, "test", **args)
        test.labels = _map_labels(test_names, label2id, "test", test_t.source)
    for s in (train, validation, test):
        if s is not None:
            if len(s) == 0:
                raise InputError(f"{s.name} data {Path(s.source).name} has no usable rows ({s.rows_read} read, all empty "
                                 "or unlabelled)", columns_hint)
            held_out = len(validation) if s is train and val_t is None else 0
            note = None if s is validation and val_t is None else _split_note(s, held_out)
            if note:
                notes.append(note)
    fp = hashlib.sha256("|".join([t.fingerprint for t in (train_t, val_t, test_t) if t] +
                                 [str(data.text_column), str(data.label_column), str(data.text_pair_column), str(data.clean_text),
                                  str(data.max_train_samples), str(data.validation_fraction), str(seed)]
                                 + ([f"min_per_class={data.validation_min_per_class}"]
                                    if getattr(data, "validation_min_per_class", 0) else [])
                                 + ([f"quoting={quoting}"] if quoting != "auto" else [])).encode()).hexdigest()[:16]
    return LabelledData(train, validation, test, label_names, notes, fp, info + [n for n in notes if is_info(n)])


def is_info(note: str) -> bool:
    return note.startswith(("validation: a stratified", "train: using a seeded random subset"))


def _map_labels(names: list[str | None], label2id: dict[str, int], role: str, source: str) -> list[int]:
    unseen: dict[str, int] = {}
    for n in names:
        if n not in label2id:
            unseen[str(n)] = unseen.get(str(n), 0) + 1
    if unseen:
        listing = ", ".join(f"{k!r} ({v} rows)" for k, v in sorted(unseen.items(), key=lambda kv: -kv[1])[:5])
        raise InputError(f"{role} data {Path(source).name} has labels the model was not trained on: {listing}; "
                         f"known labels: {', '.join(label2id)}",
                         "fix or drop those rows, or include the labels in the training data")
    return [label2id[n] for n in names]


def subset(split: Split, idx: list[int]) -> Split:
    return Split(split.name, split.source, [split.texts[i] for i in idx], [split.labels[i] for i in idx] if split.labels else [],
                 [split.pairs[i] for i in idx] if split.pairs is not None else None, split.rows_read, dict(split.dropped),
                 {k: [v[i] for i in idx] for k, v in split.extra.items()}, dict(split.columns),
                 [split.rows[i] for i in idx] if split.rows else [])


MAX_VALIDATION_SHARE = 0.25


def validation_share(counts: dict, fraction: float, min_per_class: int) -> float:
    """The share of train held out: `fraction`, raised (up to MAX_VALIDATION_SHARE) until the rarest class has
    `min_per_class` validation rows, so the checkpoint is not chosen on a handful of minority examples."""
    if not min_per_class or not counts:
        return fraction
    return max(fraction, min(MAX_VALIDATION_SHARE, min_per_class / min(counts.values())))


def holdout(labels: list, share: float, seed: int, notes: list[str], *, too_few: str, fix: str,
            single: str) -> tuple[list[int], list[int]]:
    """The sorted (train, validation) indices of a seeded split that holds out `share` of the rows (at least one per
    class), stratified by label when every class has two rows (else notes say `single`); `too_few` and `fix` make the
    error when fewer rows than classes would be left to train on (texts and images alike)."""
    from collections import Counter

    from sklearn.model_selection import train_test_split

    counts = Counter(labels)
    n_val = max(len(counts), int(round(len(labels) * share)))
    if len(labels) - n_val < len(counts):
        raise InputError(f"{too_few}: too few to hold out a validation split", fix)
    stratify = labels if min(counts.values()) >= 2 else None
    if stratify is None:
        notes.append(f"validation split is not stratified: {single}")
    tr, va = train_test_split(list(range(len(labels))), test_size=n_val, random_state=seed, shuffle=True, stratify=stratify)
    return sorted(tr), sorted(va)


def stratified_split(train: Split, fraction: float, seed: int, notes: list[str], min_per_class: int = 0) -> tuple[Split, Split]:
    from collections import Counter

    counts = Counter(train.labels)
    share = validation_share(counts, fraction, min_per_class)
    tr, va = holdout(train.labels, share, seed, notes, too_few=f"train data has only {len(train)} usable rows",
                     fix="add data, or pass a separate validation file (--validation)",
                     single=f"{sum(v < 2 for v in counts.values())} class(es) have a single example")
    a, b = subset(train, tr), subset(train, va)
    b.name = "validation"
    b.rows_read = 0
    rarest = min(Counter(b.labels).values()) if len(set(b.labels)) == len(counts) else 0
    raised = f", raised from {fraction:.0%} so the rarest class has {rarest} rows" if share > fraction else ""
    notes.append(f"validation: a stratified {share:.0%} split of train ({len(b)} rows, seed {seed}{raised})")
    return a, b


def read_texts(source: str, text_column: str, *, role: str = "data", encoding: str = "utf-8", clean: bool = True,
               label_column: str | None = None, config: str | None = None, split: str = "train",
               key_prefix: str = "data", quoting: str = "auto") -> tuple[Split, list[str | None], Table]:
    """Read one file of texts (labels optional) for predict/evaluate/drift-style commands."""
    table = read_table(source, role=role, encoding=encoding, config=config, split=split, quoting=quoting)
    s, names = to_split(table, role, text_column, label_column, clean=clean, key_prefix=key_prefix)
    if len(s) == 0:
        raise InputError(f"{role} data {Path(source).name} has no usable rows ({s.rows_read} read, all empty)",
                         f"check the text column ({text_column})")
    return s, names, table
