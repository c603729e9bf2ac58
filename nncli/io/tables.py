"""Reading tables without losing rows: local CSV/TSV/JSON/JSONL/parquet files and hub datasets."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from nncli.core.errors import InputError, UsageError
from nncli.io.delimited import QUOTINGS, read_delimited

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
    quoting: str = ""                                    # CSV/TSV: "standard" | "none", as decided for this file
    quoting_reason: str = ""                             # CSV/TSV: one line saying why (also in info)

    @property
    def n_rows(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0



# ---------------------------------------------------------------------------------------------- reading

def is_local(source: str) -> bool:
    p = Path(source)
    return p.exists() or p.suffix.lower() in LOCAL_FORMATS or source.startswith((".", "/", "~")) or "\\" in source


def read_table(source: str, *, role: str = "data", encoding: str = "utf-8", config: str | None = None,
               split: str = "train", quoting: str = "auto") -> Table:
    """Read a local file (format from the extension) or a hub dataset split into a Table.

    quoting (CSV/TSV only): "auto" decides per file (see nncli.io.delimited), "standard" (RFC 4180) or "none"."""
    if quoting not in QUOTINGS:
        raise UsageError(f"data.quoting: unknown value '{quoting}'", f"use one of {', '.join(QUOTINGS)}")
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
            d = read_delimited(text, path, fmt, role, quoting)
            table = Table(str(path), d.columns, fmt, d.notes, info=d.info, quoting=d.quoting, quoting_reason=d.quoting_reason)
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
        raise InputError(f"{role} file is not readable (permission denied): {path}", "fix its permissions (chmod +r)") from None
    except OSError as e:
        raise InputError(f"cannot read {role} file {path}: {e.strerror or e}", "check the file and the disk") from e


def _decode(raw: bytes, path: Path, role: str, encoding: str) -> str:
    try:
        text = raw.decode("utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding)
    except LookupError:
        raise UsageError(f"data.encoding: unknown encoding '{encoding}'",
                         "use a Python codec name such as utf-8, latin-1, cp1252") from None
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise InputError(f"{role} file {path.name} is not valid {encoding}: byte 0x{raw[e.start]:02x} at line {line}",
                         "convert it (iconv -f latin1 -t utf-8) or set data.encoding=latin-1 (or cp1252)") from None
    if "\x00" in text:
        raise InputError(f"{role} file {path.name} contains NUL bytes: it looks binary or UTF-16",
                         "save it as UTF-8 text, or use .parquet for binary tables")
    return text


def _read_jsonl(text: str, path: Path, role: str) -> Table:
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{role} file {path.name}: line {n} is not valid JSON ({e.msg})",
                             "each line of a .jsonl file must be one JSON object") from None
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
                         "fix the JSON, or use .jsonl for one object per line") from None
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
                         "check that it was written completely (parquet files have a footer)") from e
    return Table(str(path), {c: t.column(c).to_pylist() for c in t.column_names}, "parquet")


def _read_hub(source: str, config: str | None, split: str, role: str) -> Table:
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a core dependency
        from nncli.core.errors import missing_extra
        raise missing_extra("datasets", "core") from None
    try:
        ds = datasets.load_dataset(source, config, split=split)
    except FileNotFoundError as e:
        raise InputError(f"{role}: no local file and no hub dataset named '{source}'",
                         "check the path or the dataset id; offline (HF_HUB_OFFLINE=1) only cached datasets load") from e
    except ValueError as e:
        raise InputError(f"{role}: hub dataset '{source}' could not be loaded: {str(e).splitlines()[0]}",
                         "check data.config and the split names (data.train_split, data.validation_split)") from e
    except Exception as e:
        raise InputError(f"{role}: hub dataset '{source}' could not be loaded "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:200]})",
                         "check the dataset id and your network, or download it and pass a local file") from e
    fp = getattr(ds, "_fingerprint", "") or hashlib.sha256(f"{source}:{config}:{split}".encode()).hexdigest()[:16]
    cols = ds.to_dict()
    # ClassLabel features: keep their names, not bare integers
    for name, feat in ds.features.items():
        if type(feat).__name__ == "ClassLabel" and name in cols:
            cols[name] = [feat.int2str(v) if isinstance(v, int) and v >= 0 else None for v in cols[name]]
    return Table(f"{source}[{split}]", cols, "hub", fingerprint=str(fp)[:16])
