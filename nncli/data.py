"""Shared data layer: read local files or hub datasets without losing rows, clean texts, map labels, split.

No row is lost silently: every row read is either kept or counted under a named reason, and the
counts travel into the report. TSV is read with quoting off (real TSV files carry stray `"` characters
that make CSV-style parsing merge lines); CSV is read per RFC 4180 and rows that span several lines are
counted and reported.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import html
import io
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError, UsageError

LOCAL_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "tsv", ".json": "json", ".jsonl": "jsonl",
                 ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


@dataclass
class Table:
    """Rows of one source as a dict of columns (lists), with how it was read."""

    source: str
    columns: dict[str, list]
    format: str
    notes: list[str] = field(default_factory=list)      # problems worth a warning
    fingerprint: str = ""
    info: list[str] = field(default_factory=list)       # facts worth a log line

    @property
    def n_rows(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


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


# ---------------------------------------------------------------------------------------------- reading

def is_local(source: str) -> bool:
    p = Path(source)
    return p.exists() or p.suffix.lower() in LOCAL_FORMATS or source.startswith((".", "/", "~")) or "\\" in source


def read_table(source: str, *, role: str = "data", encoding: str = "utf-8", config: str | None = None,
               split: str = "train") -> Table:
    """Read a local file (format from the extension) or a hub dataset split into a Table."""
    if not is_local(source):
        return _read_hub(source, config, split, role)
    path = Path(source).expanduser()
    if not path.exists():
        raise InputError(f"{role} file not found: {source}", "check the path (relative paths are relative to the current "
                         "directory, or to the recipe file's folder inside a recipe)")
    if path.is_dir():
        raise InputError(f"{role} path is a directory, not a file: {source}", "pass a .csv, .tsv, .json, .jsonl or .parquet file")
    fmt = LOCAL_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{role} file has an unknown extension: {path.name}",
                         f"use one of {', '.join(sorted(LOCAL_FORMATS))} (the format is taken from the extension)")
    raw = _read_bytes(path, role)
    digest = hashlib.sha256(raw).hexdigest()[:16]
    if fmt == "parquet":
        table = _read_parquet(path, raw, role)
    else:
        text = _decode(raw, path, role, encoding)
        if fmt in ("csv", "tsv"):
            table = _read_delimited(text, path, fmt, role)
        elif fmt == "jsonl":
            table = _read_jsonl(text, path, role)
        else:
            table = _read_json(text, path, role)
    table.fingerprint = digest
    if table.n_rows == 0:
        raise InputError(f"{role} file has no data rows: {source}", "check that the file is not empty and has a header line")
    return table


def _read_bytes(path: Path, role: str) -> bytes:
    try:
        return path.read_bytes()
    except PermissionError:
        raise InputError(f"{role} file is not readable (permission denied): {path}", "fix its permissions (chmod +r)")
    except OSError as e:
        raise InputError(f"cannot read {role} file {path}: {e.strerror or e}", "check the file and the disk")


def _decode(raw: bytes, path: Path, role: str, encoding: str) -> str:
    try:
        text = raw.decode("utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding)
    except LookupError:
        raise UsageError(f"data.encoding: unknown encoding '{encoding}'", "use a Python codec name such as utf-8, latin-1, cp1252")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise InputError(f"{role} file {path.name} is not valid {encoding}: byte 0x{raw[e.start]:02x} at line {line}",
                         "convert it (iconv -f latin1 -t utf-8) or set data.encoding=latin-1 (or cp1252)")
    if "\x00" in text:
        raise InputError(f"{role} file {path.name} contains NUL bytes: it looks binary or UTF-16",
                         "save it as UTF-8 text, or use .parquet for binary tables")
    return text


def _sniff_delimiter(header: str, fmt: str) -> str:
    expected = "\t" if fmt == "tsv" else ","
    if expected in header:
        return expected
    for alt in ("\t", ";", ",", "|"):
        if alt != expected and alt in header:
            return alt
    return expected


def _read_delimited(text: str, path: Path, fmt: str, role: str) -> Table:
    notes: list[str] = []
    first_line = text.split("\n", 1)[0]
    delim = _sniff_delimiter(first_line, fmt)
    name = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}[delim]
    if delim != ("\t" if fmt == "tsv" else ","):
        notes.append(f"{path.name}: the header is {name}-separated although the extension is .{path.suffix.lstrip('.')}; read it as {name}-separated")
    physical = [ln for ln in text.splitlines() if ln.strip()]
    if delim == "\t" or fmt == "tsv":
        # Quoting off: a stray quote can never swallow the following lines. Wrapping quotes are removed later.
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim, quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim, quotechar='"', doublequote=True, strict=False)
    try:
        rows = [r for r in reader]
    except csv.Error as e:
        raise InputError(f"{role} file {path.name} cannot be parsed at line {reader.line_num}: {e}",
                         "check the quoting on that line, or save the file as TSV")
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise InputError(f"{role} file is empty: {path}", "add a header line and data rows")
    header = [h.strip() for h in rows[0]]
    for i, h in enumerate(header):
        if not h:
            header[i] = f"column_{i}"
    if len(set(header)) != len(header):
        dupes = sorted({h for h in header if header.count(h) > 1})
        raise InputError(f"{role} file {path.name} has duplicate column names: {', '.join(dupes)}", "rename the columns so each is unique")
    width = len(header)
    body = rows[1:]
    bad = [(i, len(r)) for i, r in enumerate(body) if len(r) != width and not (len(r) > width and not any(c.strip() for c in r[width:]))]
    merged = [i for i, _ in bad if any("\n" in c for c in body[i])]
    if merged:
        i = merged[0]
        n_lines = sum(c.count("\n") for c in body[i]) + 1
        raise InputError(f"{role} file {path.name}: a stray quote at row {i + 2} merged {n_lines} lines into one field",
                         "fix or escape that quote (\"\" inside quoted texts), or save the file as TSV (read with quoting off)")
    if bad:
        sample = ", ".join(f"row {i + 2} has {n} fields" for i, n in bad[:3])
        raise InputError(f"{role} file {path.name}: {len(bad)} row(s) do not have the header's {width} fields ({sample})",
                         f"the file is probably not {name}-separated as read, or a text contains an unquoted {name}; "
                         "quote such texts, or save as TSV with quoting off")
    columns = {h: [r[i] if i < len(r) else "" for r in body] for i, h in enumerate(header)}
    multiline = sum(1 for r in body if any("\n" in c for c in r))
    info = []
    if len(body) != len(physical) - 1:
        msg = (f"{path.name}: {len(physical) - 1} non-empty lines after the header became {len(body)} rows; "
               f"{multiline} row(s) contain line breaks inside quotes")
        suspicious = _stray_quote_rows(body, width, delim)
        if suspicious:
            notes.append(msg + f". Row {suspicious[0] + 2} looks like several records merged by a stray quote; "
                         "if so, fix the quote, or save as TSV (read with quoting off)")
        else:
            info.append(msg)
    return Table(str(path), columns, fmt, notes, info=info)


def _shape(value: str) -> str:
    return re.sub(r"[A-Za-z]+", "a", re.sub(r"\d+", "9", value.strip()))


def _stray_quote_rows(body: list[list[str]], width: int, delim: str) -> list[int]:
    """Rows whose quoted field swallowed lines that look like records of this file: a line that parses to the
    full width and starts like the first column of the other rows, or ends like their last column."""
    if width < 2:
        return []
    clean = [r for r in body if not any("\n" in c for c in r)]
    firsts = Counter(_shape(r[0]) for r in clean if r and len(r[0]) < 40)
    lasts = Counter(r[-1].strip() for r in clean if r)
    common_first = {k for k, v in firsts.items() if v >= max(3, 0.2 * len(clean))}
    common_last = {k for k, v in lasts.items() if v >= max(3, 0.05 * len(clean)) and len(k) < 40}
    out = []
    for i, r in enumerate(body):
        for c in r:
            if "\n" not in c:
                continue
            for ln in c.split("\n")[1:]:
                fields = next(csv.reader([ln], delimiter=delim, quoting=csv.QUOTE_NONE), [])
                if len(fields) >= width and (_shape(fields[0]) in common_first or fields[-1].strip() in common_last):
                    out.append(i)
                    break
            if out and out[-1] == i:
                break
    return out


def _read_jsonl(text: str, path: Path, role: str) -> Table:
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{role} file {path.name}: line {n} is not valid JSON ({e.msg})",
                             "each line of a .jsonl file must be one JSON object")
        if not isinstance(obj, dict):
            raise InputError(f"{role} file {path.name}: line {n} is a JSON {type(obj).__name__}, not an object",
                             "each line of a .jsonl file must be one JSON object")
        records.append(obj)
    return Table(str(path), _columns_from_records(records), "jsonl")


def _read_json(text: str, path: Path, role: str) -> Table:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{role} file {path.name} is not valid JSON: {e.msg} at line {e.lineno}",
                         "fix the JSON, or use .jsonl for one object per line")
    if isinstance(obj, dict):
        lists = {k: v for k, v in obj.items() if isinstance(v, list)}
        if "data" in obj and isinstance(obj["data"], list):
            obj = obj["data"]
        elif lists and len({len(v) for v in lists.values()}) == 1 and len(lists) == len(obj):
            return Table(str(path), {k: list(v) for k, v in obj.items()}, "json")
    if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
        raise InputError(f"{role} file {path.name}: expected a JSON array of objects (one per example)",
                         'write [{"text": ..., "label": ...}, ...] or use .jsonl')
    return Table(str(path), _columns_from_records(obj), "json")


def _columns_from_records(records: list[dict]) -> dict[str, list]:
    keys: list[str] = []
    for r in records:
        for k in r:
            if k not in keys:
                keys.append(k)
    return {k: [r.get(k) for r in records] for k in keys}


def _read_parquet(path: Path, raw: bytes, role: str) -> Table:
    try:
        import pyarrow.parquet as pq

        t = pq.read_table(io.BytesIO(raw))
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise InputError(f"{role} file {path.name} is not a readable parquet file: {str(e).splitlines()[0]}",
                         "check that it was written completely (parquet files have a footer)")
    return Table(str(path), {c: t.column(c).to_pylist() for c in t.column_names}, "parquet")


def _read_hub(source: str, config: str | None, split: str, role: str) -> Table:
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a core dependency
        from .errors import missing_extra
        raise missing_extra("datasets", "core")
    try:
        ds = datasets.load_dataset(source, config, split=split)
    except FileNotFoundError as e:
        raise InputError(f"{role}: no local file and no hub dataset named '{source}'",
                         "check the path or the dataset id; offline (HF_HUB_OFFLINE=1) only cached datasets load") from e
    except ValueError as e:
        raise InputError(f"{role}: hub dataset '{source}' could not be loaded: {str(e).splitlines()[0]}",
                         "check data.config and the split names (data.train_split, data.validation_split)") from e
    except Exception as e:
        raise InputError(f"{role}: hub dataset '{source}' could not be loaded ({type(e).__name__}: {str(e).splitlines()[0][:200]})",
                         "check the dataset id and your network, or download it and pass a local file") from e
    fp = getattr(ds, "_fingerprint", "") or hashlib.sha256(f"{source}:{config}:{split}".encode()).hexdigest()[:16]
    cols = ds.to_dict()
    # ClassLabel features: keep their names, not bare integers
    for name, feat in ds.features.items():
        if type(feat).__name__ == "ClassLabel" and name in cols:
            cols[name] = [feat.int2str(v) if isinstance(v, int) and v >= 0 else None for v in cols[name]]
    return Table(f"{source}[{split}]", cols, "hub", fingerprint=str(fp)[:16])


# ---------------------------------------------------------------------------------------------- cleaning and labels

_WS = re.compile(r"\s+")
_ENTITY = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[a-zA-Z]{2,8});")


def clean_text(value: Any, clean: bool = True) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    s = value if isinstance(value, str) else str(value)
    if not clean:
        return s
    for _ in range(2):  # double-escaped entities (&amp;#039;) are common in scraped text
        if _ENTITY.search(s):
            s = html.unescape(s)
    s = s.strip()
    while len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'" and s[0] not in s[1:-1].replace(s[0] * 2, ""):
        s = s[1:-1].replace(s[0] * 2, s[0]).strip()
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
    if s.lower() in ("", "nan", "none", "null", "na", "n/a"):
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
        hint = f"did you mean '{close[0]}'? (set {key}={close[0]})" if close else f"set {key} to one of: {', '.join(map(str, cols))}"
        raise UsageError(f"{key}: column '{column}' not found in {role} data {Path(table.source).name} "
                         f"(columns: {', '.join(map(str, cols))})", hint)


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
                  {k: v for k, v in dropped.items() if v}, extra)
    split.columns = {"text": text_column, "label": label_column, "text_pair": pair_column}
    return split, names


def _split_note(split: Split) -> str | None:
    if not split.dropped:
        return None
    parts = ", ".join(f"{n} with {k.replace('_', ' ')}" for k, n in split.dropped.items())
    return f"{split.name}: {split.rows_read} rows read, {len(split)} kept; dropped {parts}"


# ---------------------------------------------------------------------------------------------- the whole labelled set

def load_labelled(data, seed: int = 42, label_names: list[str] | None = None) -> LabelledData:
    """Load train/validation/test per a DataSpec. Validation defaults to a stratified, seeded split of train."""
    notes: list[str] = []
    train_t = read_table(data.train, role="train", encoding=data.encoding, config=data.config, split=data.train_split)
    val_source = data.validation or (data.train if data.validation_split and not is_local(data.train) else None)
    val_t = read_table(val_source, role="validation", encoding=data.encoding, config=data.config,
                       split=data.validation_split or "validation") if val_source else None
    test_source = data.test or (data.train if data.test_split and not is_local(data.train) else None)
    test_t = read_table(test_source, role="test", encoding=data.encoding, config=data.config,
                        split=data.test_split or "test") if test_source else None
    info: list[str] = []
    for t in (train_t, val_t, test_t):
        if t is not None:
            notes.extend(t.notes)
            info.extend(t.info)

    args = dict(text_column=data.text_column, label_column=data.label_column, pair_column=data.text_pair_column,
                clean=data.clean_text)
    train, train_names = to_split(train_t, "train", **args)
    if data.max_train_samples and data.max_train_samples < len(train):
        import random

        idx = sorted(random.Random(seed).sample(range(len(train)), data.max_train_samples))
        train, train_names = _subset(train, idx), [train_names[i] for i in idx]
        notes.append(f"train: using a seeded random subset of {len(train)} rows (data.max_train_samples)")
    if len(train) == 0:
        raise InputError(f"train data {Path(train_t.source).name} has no usable rows ({train_t.n_rows} read, all empty "
                         "or unlabelled)", f"check data.text_column={data.text_column} and data.label_column={data.label_column}")
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
        train, validation = stratified_split(train, data.validation_fraction, seed, notes)
    test = None
    if test_t is not None:
        test, test_names = to_split(test_t, "test", **args)
        test.labels = _map_labels(test_names, label2id, "test", test_t.source)
    for s in (train, validation, test):
        if s is not None:
            if len(s) == 0:
                raise InputError(f"{s.name} data {Path(s.source).name} has no usable rows ({s.rows_read} read, all empty "
                                 "or unlabelled)", f"check data.text_column={data.text_column} and data.label_column={data.label_column}")
            note = _split_note(s)
            if note:
                notes.append(note)
    fp = hashlib.sha256("|".join([t.fingerprint for t in (train_t, val_t, test_t) if t] +
                                 [str(data.text_column), str(data.label_column), str(data.text_pair_column), str(data.clean_text),
                                  str(data.max_train_samples), str(data.validation_fraction), str(seed)]).encode()).hexdigest()[:16]
    return LabelledData(train, validation, test, label_names, notes, fp, info + [n for n in notes if _is_info(n)])


def _is_info(note: str) -> bool:
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


def _subset(split: Split, idx: list[int]) -> Split:
    return Split(split.name, split.source, [split.texts[i] for i in idx], [split.labels[i] for i in idx] if split.labels else [],
                 [split.pairs[i] for i in idx] if split.pairs is not None else None, split.rows_read, dict(split.dropped),
                 {k: [v[i] for i in idx] for k, v in split.extra.items()})


def stratified_split(train: Split, fraction: float, seed: int, notes: list[str]) -> tuple[Split, Split]:
    from collections import Counter

    from sklearn.model_selection import train_test_split

    idx = list(range(len(train)))
    counts = Counter(train.labels)
    n_val = max(len(counts), int(round(len(idx) * fraction)))
    if len(idx) - n_val < len(counts):
        raise InputError(f"train data has only {len(idx)} usable rows: too few to hold out a validation split",
                         "add data, or pass a separate validation file (--validation)")
    stratify = train.labels if min(counts.values()) >= 2 else None
    if stratify is None:
        rare = [k for k, v in counts.items() if v < 2]
        notes.append(f"validation split is not stratified: {len(rare)} class(es) have a single example")
    tr, va = train_test_split(idx, test_size=n_val, random_state=seed, shuffle=True, stratify=stratify)
    a, b = _subset(train, sorted(tr)), _subset(train, sorted(va))
    b.name = "validation"
    b.rows_read = 0
    notes.append(f"validation: a stratified {fraction:.0%} split of train ({len(b)} rows, seed {seed})")
    return a, b


def read_texts(source: str, text_column: str, *, role: str = "data", encoding: str = "utf-8", clean: bool = True,
               label_column: str | None = None, config: str | None = None, split: str = "train",
               key_prefix: str = "data") -> tuple[Split, list[str | None], Table]:
    """Read one file of texts (labels optional) for predict/evaluate/drift-style commands."""
    table = read_table(source, role=role, encoding=encoding, config=config, split=split)
    s, names = to_split(table, role, text_column, label_column, clean=clean, key_prefix=key_prefix)
    if len(s) == 0:
        raise InputError(f"{role} data {Path(source).name} has no usable rows ({s.rows_read} read, all empty)",
                         f"check the text column ({text_column})")
    return s, names, table
