"""CSV/TSV read with pyarrow.csv: quoting decided per file, every row accounted for, errors that name the row.

A file is parsed with standard (RFC 4180) quoting, which is what pandas, Python's csv module and spreadsheets
write, and, when that parse does not fit, with quoting off, which keeps the rows of files whose texts hold stray
`"` characters. The parse in which every row has the header's field count is kept; see `read_delimited`.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from nncli.core.errors import InputError

QUOTINGS = ("auto", "standard", "none")
DELIMITER_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}
_NL = re.compile(r"\r\n|\r|\n")
_INT = re.compile(r"\s*[+-]?\d+\s*")
INDEX_HEADERS = ("", "Unnamed: 0")  # what pandas' df.to_csv() writes above its index (and what pandas names it on reading)


@dataclass
class Delimited:
    """The columns of one delimited file and how they were read."""

    columns: dict[str, list]
    quoting: str                  # "standard" | "none"
    quoting_reason: str           # one line: why that quoting
    notes: list[str] = field(default_factory=list)
    info: list[str] = field(default_factory=list)


@dataclass
class _Parse:
    quoting: str
    header: list[str]
    columns: list[list[str]]                    # body only, one list per header field
    ragged: list[tuple[int, int, str]] = field(default_factory=list)  # (row number, header = 1; field count; raw text)
    skipped_blank: int = 0                      # whitespace-only lines outside quotes (files of two or more columns)
    multi: list[int] = field(default_factory=list)  # body rows with a line break inside a (quoted) field

    @property
    def width(self) -> int:
        return len(self.header)

    def first_ragged(self) -> str:
        n, k, _ = self.ragged[0]
        return f"row {n} has {k} field{'s' if k != 1 else ''}"


def read_delimited(text: str, path: Path, fmt: str, role: str, quoting: str = "auto") -> Delimited:
    """Parse `text` (decoded, BOM removed) of a .csv/.tsv file. `quoting` is "auto", "standard" or "none".

    auto: standard quoting unless its parse has rows without the header's field count, or a quoted field that swallowed
    a line break followed by a delimiter (the signature of a stray quote merging records) while quoting off gives every
    row the header's field count. Neither fitting is an InputError naming the first bad row."""
    if not text.strip():
        raise InputError(f"{role} file is empty: {path}", "add a header line and data rows")
    first_line = _NL.split(text, 1)[0]
    delim = _sniff_delimiter(first_line, fmt)
    dname = DELIMITER_NAMES[delim]
    notes = []
    if delim != ("\t" if fmt == "tsv" else ","):
        notes.append(f"{path.name}: the header is {dname}-separated although the extension is .{path.suffix.lstrip('.')}; "
                     f"read it as {dname}-separated")
    data = text.encode("utf-8")
    if quoting == "auto":
        chosen, reason = _choose(data, text, delim, first_line, path, role)
    else:
        chosen = _parse(data, delim, quoting, first_line, path, role)
        if chosen.ragged:
            _refuse(chosen, None, path, role, dname)
        reason = "set by data.quoting"
    columns, info = _finish(chosen, text, path, role, notes, delim)
    info.insert(0, f"{path.name}: read with {'standard quoting' if chosen.quoting == 'standard' else 'quoting off'}: {reason}")
    return Delimited(columns, chosen.quoting, reason, notes, info)


# ---------------------------------------------------------------------------------------------- choosing the quoting

def _choose(data: bytes, text: str, delim: str, first_line: str, path: Path, role: str) -> tuple[_Parse, str]:
    std = _parse(data, delim, "standard", first_line, path, role)
    dname = DELIMITER_NAMES[delim]
    if '"' not in text:
        if std.ragged:
            _refuse(std, std, path, role, dname)
        return std, "the file has no quote characters (both readings are the same)"
    suspect = None if std.ragged else (_unclosed(std, text) or _swallowed(std, delim))
    if not std.ragged and suspect is None:
        return std, (f"every row has the header's {std.width} field(s) and no quoted field spans a line break followed by "
                     f"a {dname} (RFC 4180, as pandas, csv and spreadsheets write)")
    off = _parse(data, delim, "none", first_line, path, role)
    if not off.ragged:
        why = suspect or f"{len(std.ragged)} row(s) do not have the header's {std.width} fields ({std.first_ragged()})"
        return off, (f"with standard quoting {why}: a stray quote; with quoting off every row has the header's "
                     f"{off.width} field(s)")
    if suspect:
        return std, f"{suspect}, but with quoting off {off.first_ragged()} (header: {off.width}), so standard quoting is kept"
    _refuse(std, off, path, role, dname)
    raise AssertionError("not reached")  # pragma: no cover


def _unclosed(p: _Parse, text: str) -> str | None:
    """The first row with a multi-line field that is not one well-formed quoted field in the file ("..." with inner
    quotes doubled, closed where the field ends): a quote that opened a field and never closed in its place."""
    pos = 0
    for i in p.multi:
        for col in p.columns:
            v = col[i]
            if "\n" not in v and "\r" not in v:
                continue
            at = text.find('"' + v.replace('"', '""') + '"', pos)  # multi-line fields appear in file order
            if at < 0:
                return f"row {i + 2} spans {len(_NL.split(v))} lines and its quote does not close where a field ends"
            pos = at + 1
    return None


def _swallowed(p: _Parse, delim: str) -> str | None:
    """The first row with a field in which a line break is followed by the delimiter."""
    for i in p.multi:
        for col in p.columns:
            rest = _NL.split(col[i])[1:]
            if any(delim in ln for ln in rest):
                return f"row {i + 2} swallowed {len(rest) + 1} lines holding a {DELIMITER_NAMES[delim]}"
    return None


def _refuse(std: _Parse, off: _Parse | None, path: Path, role: str, dname: str) -> None:
    """Raise the InputError for a file whose rows do not fit its header (off: the quoting-off parse, in auto mode)."""
    merged = [(n, t) for n, _, t in std.ragged if _NL.search(t)] if std.quoting == "standard" else []
    if off is std:  # a file without quote characters: both readings are the same
        tried, other = "", ""
    elif off is not None:
        tried = f"; with quoting off {off.first_ragged()} (header: {off.width})"
        other = ""
    else:
        tried = ""
        other = " or set data.quoting=none" if std.quoting == "standard" else " or set data.quoting=standard"
    if merged:
        n, t = merged[0]
        raise InputError(f"{role} file {path.name}: a stray quote at row {n} merged {len(_NL.split(t))} lines into one "
                         f"field{tried}",
                         f"fix or escape that quote (\"\" inside quoted texts){other}")
    sample = ", ".join(f"row {n} has {k} fields" for n, k, _ in std.ragged[:3])
    how = "" if off is std else " with standard quoting" if std.quoting == "standard" else " with quoting off"
    raise InputError(f"{role} file {path.name}: {len(std.ragged)} row(s) do not have the header's {std.width} fields{how} "
                     f"({sample}){tried}",
                     f"the file is probably not {dname}-separated as read, or a text contains an unquoted {dname}; "
                     f"quote such texts (as pandas and csv write them){other}")


# ---------------------------------------------------------------------------------------------- parsing

def _sniff_delimiter(header: str, fmt: str) -> str:
    expected = "\t" if fmt == "tsv" else ","
    if expected in header:
        return expected
    for alt in ("\t", ";", ",", "|"):
        if alt != expected and alt in header:
            return alt
    return expected


def _split_record(text: str, delim: str, quoting: str) -> list[str]:
    if quoting == "none":
        return text.split(delim)
    return next(csv.reader(io.StringIO(text, newline=""), delimiter=delim, quotechar='"', doublequote=True, strict=False), [])


def _parse(data: bytes, delim: str, quoting: str, first_line: str, path: Path, role: str) -> _Parse:
    """One pyarrow.csv parse, every value a str. Rows with a different field count are collected, not dropped: rows
    whose extra fields are all empty (a trailing delimiter) are kept, whitespace-only lines are counted as blank."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    bad: list[tuple[int, int, str]] = []

    def on_invalid(row) -> str:
        bad.append((row.number, row.actual_columns, row.text))
        return "skip"

    one_column = len(_split_record(first_line, delim, quoting)) == 1
    parse = pcsv.ParseOptions(delimiter=delim, quote_char='"' if quoting == "standard" else False, double_quote=True,
                              escape_char=False, newlines_in_values=quoting == "standard",
                              ignore_empty_lines=not one_column, invalid_row_handler=on_invalid)
    # one block: a quoted field with line breaks must not straddle blocks; row numbers need a single thread
    block = max(1 << 20, min(len(data) + 1, 2**31 - 1))
    read = pcsv.ReadOptions(autogenerate_column_names=True, use_threads=False, block_size=block)
    # every column read as text: an upper bound on the header's fields (a quoted header may span lines)
    bound = (first_line if '"' not in first_line else data[:65536].decode("utf-8", "ignore")).count(delim) + 1
    convert = pcsv.ConvertOptions(column_types={f"f{i}": pa.string() for i in range(bound)}, strings_can_be_null=False,
                                  quoted_strings_can_be_null=False)
    try:
        table = pcsv.read_csv(pa.py_buffer(data), read_options=read, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as e:
        raise InputError(f"{role} file {path.name} cannot be parsed as {DELIMITER_NAMES[delim]}-separated text: "
                         f"{str(e).splitlines()[0][:200]}",
                         "check the quoting near that place, or save the file again from pandas or a spreadsheet") from e
    cols = [table.column(i).to_pylist() for i in range(table.num_columns)]
    header = [c[0] for c in cols]
    body = [c[1:] for c in cols]
    p = _Parse(quoting, header, body)
    inserts: list[tuple[int, list[str]]] = []
    for n, k, raw in bad:
        if not raw.strip():
            p.skipped_blank += 1
            continue
        fields = _split_record(raw, delim, quoting)
        if len(fields) > p.width and not any(f.strip() for f in fields[p.width:]):
            inserts.append((n - 2 - p.skipped_blank, fields[: p.width]))
        else:
            p.ragged.append((n, k, raw))
    if inserts:
        p.columns = _merge(body, inserts)
    if quoting == "standard":
        p.multi = _break_rows(p.columns)
    return p


def _break_rows(columns: list[list[str]]) -> list[int]:
    rows: set[int] = set()
    for col in columns:
        joined = "".join(col)  # one scan in C for the common case of no line breaks at all
        if "\n" in joined or "\r" in joined:
            rows.update(i for i, v in enumerate(col) if "\n" in v or "\r" in v)
    return sorted(rows)


def _merge(columns: list[list[str]], inserts: list[tuple[int, list[str]]]) -> list[list[str]]:
    """Put rows back at their body positions (ascending) between the rows the parser kept."""
    out: list[list[str]] = [[] for _ in columns]
    src = 0
    for pos, fields in inserts:
        take = pos - len(out[0])
        for c, o in zip(columns, out):
            o.extend(c[src: src + take])
        src += take
        for o, v in zip(out, fields):
            o.append(v)
    for c, o in zip(columns, out):
        o.extend(c[src:])
    return out


# ---------------------------------------------------------------------------------------------- columns and counts

def _finish(p: _Parse, text: str, path: Path, role: str, notes: list[str], delim: str) -> tuple[dict[str, list], list[str]]:
    info: list[str] = []
    header = [h.strip() for h in p.header]
    body = p.columns
    if len(header) >= 2 and header[0] in INDEX_HEADERS and body[0] and all(_INT.fullmatch(v) for v in body[0]):
        info.append(f"{path.name}: the first column (unnamed, integers) is the index pandas writes (df.to_csv without "
                    "index=False); it was left out")
        header, body = header[1:], body[1:]
    for i, h in enumerate(header):
        if not h:
            header[i] = f"column_{i}"
    if len(set(header)) != len(header):
        dupes = sorted({h for h in header if header.count(h) > 1})
        raise InputError(f"{role} file {path.name} has duplicate column names: {', '.join(dupes)}",
                         "rename the columns so each is unique")
    info.extend(_count_lines(p, body, text, path, notes, delim))
    return dict(zip(header, body)), info


def _count_lines(p: _Parse, body: list[list[str]], text: str, path: Path, notes: list[str], delim: str) -> list[str]:
    """Rows against the file's lines: blank lines and rows spanning several lines are reported, never silent."""
    info = []
    lines = (text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    header_lines = 1 + len(_NL.findall(delim.join(p.header)))
    non_empty = sum(1 for ln in lines[header_lines:] if ln.strip())
    n_rows = len(body[0]) if body else 0
    multi = p.multi
    blank_rows = 0
    if p.width == 1:
        blank_rows = sum(1 for v in body[0] if not v.strip() and "\n" not in v and "\r" not in v) if body else 0
        if blank_rows:
            info.append(f"{path.name}: {blank_rows} blank line(s) read as rows with an empty text (a one-column file)")
    else:
        skipped = len(lines) - header_lines - n_rows - sum(len(_NL.findall(c[i])) for i in multi for c in body)
        if skipped > 0:
            info.append(f"{path.name}: {skipped} blank line(s) skipped")
    if n_rows - blank_rows != non_empty:
        msg = (f"{path.name}: {non_empty} non-empty lines after the header became {n_rows - blank_rows} rows; "
               f"{len(multi)} row(s) contain line breaks inside quotes")
        suspicious = _stray_quote_rows([[c[i] for c in body] for i in range(n_rows)], p.width, delim) if multi else []
        if suspicious:
            notes.append(msg + f". Row {suspicious[0] + 2} looks like several records merged by a stray quote; "
                         "if so, fix the quote, or set data.quoting=none")
        else:
            info.append(msg)
    return info


def _shape(value: str) -> str:
    return re.sub(r"[A-Za-z]+", "a", re.sub(r"\d+", "9", value.strip()))


def _stray_quote_rows(body: list[list[str]], width: int, delim: str) -> list[int]:
    """Rows whose quoted field swallowed lines that look like records of this file: a line that parses to the
    full width and starts like the first column of the other rows, or ends like their last column."""
    if width < 2:
        return []
    clean = [r for r in body if not any(_NL.search(c) for c in r)]
    firsts = Counter(_shape(r[0]) for r in clean if r and len(r[0]) < 40)
    lasts = Counter(r[-1].strip() for r in clean if r)
    common_first = {k for k, v in firsts.items() if v >= max(3, 0.2 * len(clean))}
    common_last = {k for k, v in lasts.items() if v >= max(3, 0.05 * len(clean)) and len(k) < 40}
    for i, r in enumerate(body):
        for c in r:
            for ln in _NL.split(c)[1:]:
                fields = ln.split(delim)
                if len(fields) >= width and (_shape(fields[0]) in common_first or fields[-1].strip() in common_last):
                    return [i]
    return []
