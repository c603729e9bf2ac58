"""The delimited-file reader: files written by pandas, Python's csv module and spreadsheets read as pandas reads them;
quoting decided per file (stray quotes keep every row); nothing dropped silently; ragged files refused with exit 3."""

from __future__ import annotations

import csv
import os
import types
from pathlib import Path

import pandas as pd
import pytest
from conftest import SHARED

from nncli.core.errors import ExitCode, InputError, UsageError
from nncli.io.labelled import clean_text, load_labelled, read_texts
from nncli.io.tables import read_table
from nncli.recipe.finetune import ClassifierData as DataSpec

# texts that need quoting in CSV and TSV: quotes, doubled quotes, line breaks (LF and CRLF), tabs, delimiters, wrapping quotes
TEXTS = ['He said "wow" twice', 'a ""doubled"" one', "two\nlines", "crlf\r\ninside", "a\ttab", "comma, and; semi",
         '"Loved it"', "It&#039;s fine", "   padded  ", "plain", '"', "para one\n\npara two"]
LABELS = ["pos", "neg", "pos", "neg", "pos", "neg", "pos", "neg", "pos", "neg", "pos", "neg"]


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"text": TEXTS, "label": LABELS, "stars": list(range(1, len(TEXTS) + 1))})


@pytest.mark.parametrize("sep,ext", [(",", "csv"), ("\t", "tsv")])
@pytest.mark.parametrize("index", [True, False])
def test_pandas_to_csv_reads_as_pandas_reads_it(tmp_path, sep, ext, index):
    p = tmp_path / f"reviews.{ext}"
    _frame().to_csv(p, sep=sep, index=index)
    t = read_table(str(p))
    ref = pd.read_csv(p, sep=sep, keep_default_na=False, dtype=str, index_col=0 if index else None)
    assert list(t.columns) == ["text", "label", "stars"]
    assert t.columns["text"] == TEXTS == list(ref["text"])
    assert t.columns["stars"] == [str(i) for i in range(1, len(TEXTS) + 1)]
    assert t.quoting == "standard" and "RFC 4180" in t.quoting_reason
    assert t.info[0] == f"{p.name}: read with standard quoting: {t.quoting_reason}"
    index_lines = [i for i in t.info if "the index pandas writes" in i]
    assert len(index_lines) == (1 if index else 0)
    # 12 records over 16 lines after the header: 3 texts hold line breaks ("para one\n\npara two" two, one a blank line)
    assert f"{p.name}: 15 non-empty lines after the header became 12 rows; 3 row(s) contain line breaks inside quotes" in t.info
    assert not t.notes


@pytest.mark.parametrize("quoting", [csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC])
def test_python_csv_module_files(tmp_path, quoting):
    p = tmp_path / "d.csv"
    with open(p, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, quoting=quoting)
        w.writerow(["text", "label"])
        w.writerows(zip(TEXTS, LABELS))
    t = read_table(str(p))
    assert t.columns == {"text": TEXTS, "label": LABELS}
    assert t.quoting == "standard"


def test_spreadsheet_export_bom_crlf_semicolon(tmp_path):
    p = tmp_path / "export.csv"
    body = 'text;label\r\ngood one;pos\r\n"cell with\nline break";neg\r\n"semi; inside";pos\r\n"say ""hi""";neg\r\n'
    p.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    t = read_table(str(p))
    assert list(t.columns) == ["text", "label"]  # the BOM is not part of the first name
    assert t.columns["text"] == ["good one", "cell with\nline break", "semi; inside", 'say "hi"']
    assert t.columns["label"] == ["pos", "neg", "pos", "neg"]
    assert t.notes == ["export.csv: the header is semicolon-separated although the extension is .csv; "
                       "read it as semicolon-separated"]
    assert t.quoting == "standard"


def _sms_with_stray_quotes(tmp_path: Path) -> tuple[Path, list[str]]:
    lines = ["label\ttext", 'ham\t"ok see you there', "ham\tsure, at 5", "spam\tWIN a 12\" tv now", 'ham\tlol "quoted" bit',
             'spam\tcall now" free', "ham\tplain line", 'ham\t"quoted whole"', 'ham\tends with a quote"']
    p = tmp_path / "sms.tsv"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p, lines


def test_tsv_with_stray_unbalanced_quotes_keeps_every_row(tmp_path):
    p, lines = _sms_with_stray_quotes(tmp_path)
    t = read_table(str(p))
    assert t.quoting == "none"
    assert t.n_rows == len(lines) - 1
    assert t.columns["text"] == [ln.split("\t")[1] for ln in lines[1:]]  # quote characters kept as written
    assert t.quoting_reason == ("with standard quoting row 2 spans 3 lines and its quote does not close where a field ends: "
                                "a stray quote; with quoting off every row has the header's 2 field(s)")
    assert t.info[0] == f"sms.tsv: read with quoting off: {t.quoting_reason}"
    ref = pd.read_csv(p, sep="\t", keep_default_na=False, quoting=csv.QUOTE_NONE)
    assert t.columns["text"] == list(ref["text"])


def test_stray_quotes_that_pair_up_across_records_keep_every_row(tmp_path):
    # two stray quotes that happen to make one well-formed quoted field: the tab on its second line gives it away
    p = tmp_path / "sms.tsv"
    p.write_text('label\ttext\nham\t"ok\nspam\tWIN a 12"\nham\tfine\n')
    t = read_table(str(p))
    assert t.quoting == "none" and t.columns["text"] == ['"ok', 'WIN a 12"', "fine"]
    assert t.quoting_reason.startswith("with standard quoting row 2 swallowed 2 lines holding a tab: a stray quote")


def test_one_column_file_with_an_unclosed_quote_keeps_every_line(tmp_path):
    p = tmp_path / "prompts.txt"
    p.write_text('text\n"I think so, she said\nsecond\nthird\n')
    t = read_table(str(p))
    assert t.quoting == "none" and t.columns["text"] == ['"I think so, she said', "second", "third"]
    q = tmp_path / "texts.csv"  # a well-formed one-column file from pandas keeps its multi-line texts
    pd.DataFrame({"text": ["one\ntwo", 'say "hi"', "plain"]}).to_csv(q, index=False)
    t = read_table(str(q))
    assert t.quoting == "standard" and t.columns["text"] == ["one\ntwo", 'say "hi"', "plain"]


def _never_closing(tmp_path: Path) -> Path:
    p = tmp_path / "d.csv"
    p.write_text('text,label\nok,b\n"broken quote,a\nnext row,b\nlast,a\n')
    return p


def test_stray_quote_never_closing_keeps_every_row(tmp_path):
    t = read_table(str(_never_closing(tmp_path)))
    assert t.quoting == "none" and t.columns["text"] == ["ok", '"broken quote', "next row", "last"]
    assert t.quoting_reason.startswith("with standard quoting 1 row(s) do not have the header's 2 fields (row 3 has 1 field)")


def test_forced_quoting_is_obeyed_and_named_in_errors(tmp_path):
    p, lines = _sms_with_stray_quotes(tmp_path)
    t = read_table(str(p), quoting="standard")  # obeyed: the stray quote merges rows 2-4, which is said
    assert t.quoting == "standard" and t.n_rows == len(lines) - 3
    assert t.columns["text"][0] == "ok see you there\nham\tsure, at 5\nspam\tWIN a 12 tv now"
    assert t.notes == ["sms.tsv: 8 non-empty lines after the header became 6 rows; 1 row(s) contain line breaks inside quotes. "
                       "Row 2 looks like several records merged by a stray quote; if so, fix the quote, or set data.quoting=none"]
    with pytest.raises(InputError) as e:
        read_table(str(_never_closing(tmp_path)), quoting="standard")
    assert e.value.message == "data file d.csv: a stray quote at row 3 merged 3 lines into one field"
    assert e.value.hint.endswith("or set data.quoting=none")
    q = tmp_path / "pandas.csv"
    _frame().to_csv(q, index=False)
    with pytest.raises(InputError) as e:
        read_table(str(q), quoting="none")
    assert "with quoting off" in e.value.message and e.value.hint.endswith("or set data.quoting=standard")
    t = read_table(str(q), quoting="standard")
    assert t.columns["text"] == TEXTS and t.quoting_reason == "set by data.quoting"
    with pytest.raises(UsageError) as e:
        read_table(str(q), quoting="minimal")
    assert e.value.message == "data.quoting: unknown value 'minimal'" and e.value.code == ExitCode.USAGE


def test_genuinely_ragged_file_exits_3_naming_row_and_counts(tmp_path):
    p = tmp_path / "ragged.csv"
    p.write_text('text,label\n"fine, quoted",pos\nplain,neg\nbad, really,neg\nalso,bad,x,y\n')
    with pytest.raises(InputError) as e:
        read_table(str(p))
    assert e.value.code == ExitCode.INPUT == 3
    assert e.value.message == ("data file ragged.csv: 2 row(s) do not have the header's 2 fields with standard quoting "
                               "(row 4 has 3 fields, row 5 has 4 fields); with quoting off row 2 has 3 fields (header: 2)")
    assert "quote such texts" in e.value.hint


def test_swallowed_lines_kept_with_a_note_when_quoting_off_does_not_fit(tmp_path):
    p = tmp_path / "d.csv"
    good = "".join(f"fine {i},{'ab'[i % 2]}\n" for i in range(10))
    p.write_text('text,label\n"has, comma",a\n' + good + '"broken ""quote,a\nnext row,b\nlast" ok,a\n' + good)
    t = read_table(str(p))
    assert t.quoting == "standard" and t.n_rows == 22
    assert t.quoting_reason == ("row 13 spans 3 lines and its quote does not close where a field ends, but with quoting off "
                                "row 2 has 3 fields (header: 2), so standard quoting is kept")
    assert t.notes == ["d.csv: 24 non-empty lines after the header became 22 rows; 1 row(s) contain line breaks inside quotes. "
                       "Row 13 looks like several records merged by a stray quote; if so, fix the quote, "
                       "or set data.quoting=none"]


def test_doubled_quotes_are_one_quote(tmp_path):
    p = tmp_path / "d.tsv"
    p.write_text('text\tlabel\n"He said ""wow"""\tpos\n"""all wrapped"""\tneg\n')
    t = read_table(str(p))
    assert t.columns["text"] == ['He said "wow"', '"all wrapped"']


def test_every_value_is_text_even_under_a_quoted_multiline_header(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('"review\ntext",label,code\n"a, b",x,007\nc,y,1.50\n')
    t = read_table(str(p))
    assert t.columns == {"review\ntext": ["a, b", "c"], "label": ["x", "y"], "code": ["007", "1.50"]}


def test_one_column_blank_lines_are_rows(tmp_path):
    p = tmp_path / "prompts.txt"
    p.write_text("text\nfirst\n\nthird\n   \nfifth\n")
    t = read_table(str(p))
    assert t.columns == {"text": ["first", "", "third", "   ", "fifth"]}
    assert "prompts.txt: 2 blank line(s) read as rows with an empty text (a one-column file)" in t.info
    s, _, _ = read_texts(str(p), "text")
    assert s.texts == ["first", "third", "fifth"] and s.dropped["empty_text"] == 2 and s.rows_read == 5


def test_blank_lines_and_trailing_delimiters_in_wider_files(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("a,b\n1,2\n\n   \n3,4,\n5,6,,\n")
    t = read_table(str(p))
    assert t.columns == {"a": ["1", "3", "5"], "b": ["2", "4", "6"]}
    assert "d.csv: 2 blank line(s) skipped" in t.info


def test_unnamed_first_column_is_only_dropped_when_it_is_an_index(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text(",text,label\n0,a,x\n1,b,y\n7,c,x\n")
    assert list(read_table(str(p)).columns) == ["text", "label"]
    p.write_text("Unnamed: 0,text,label\n0,a,x\n1,b,y\n")  # read by pandas and written again
    assert list(read_table(str(p)).columns) == ["text", "label"]
    p.write_text(",text,label\nr1,a,x\nr2,b,y\n")
    t = read_table(str(p))
    assert list(t.columns) == ["column_0", "text", "label"] and t.columns["column_0"] == ["r1", "r2"]
    assert not any("index" in i for i in t.info)


def test_duplicate_columns_encoding_and_nul_still_refused(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('text,label,text\n"a",b,c\n')
    with pytest.raises(InputError, match="duplicate column names: text"):
        read_table(str(p))
    p.write_bytes('text,label\n"caf\xe9, bar",x\n'.encode("cp1252"))
    with pytest.raises(InputError, match="line 2"):
        read_table(str(p))
    assert read_table(str(p), encoding="cp1252").columns["text"] == ["café, bar"]
    p.write_bytes("text,label\nx,y\n".encode("utf-16-le"))
    with pytest.raises(InputError, match="NUL bytes"):
        read_table(str(p))


def test_quoting_threads_through_labelled_loaders(tmp_path):
    p = _never_closing(tmp_path)
    spec = types.SimpleNamespace(**DataSpec(train=str(p), validation=str(p)).model_dump())
    spec.quoting = "standard"
    with pytest.raises(InputError, match="stray quote at row 3"):
        load_labelled(spec)
    spec.quoting = "none"
    d = load_labelled(spec)
    assert d.train.texts == d.validation.texts == ["ok", '"broken quote', "next row", "last"]
    assert d.info[0] == "d.csv: read with quoting off: set by data.quoting"
    with pytest.raises(InputError, match="stray quote at row 3"):
        read_texts(str(p), "text", quoting="standard")
    assert len(read_texts(str(p), "text", quoting="auto")[0]) == 4


def test_clean_text_leaves_quotes_to_the_reader(tmp_path):
    # a text that really starts and ends with a quote, read with standard quoting, keeps its quotes
    p = tmp_path / "d.csv"
    pd.DataFrame({"text": ['"Loved it"', "'single'", "It&#039;s &amp;quot;fine&amp;quot;", " spaced \n out "],
                  "label": ["a", "b", "a", "b"]}).to_csv(p, index=False)
    s, _, t = read_texts(str(p), "text")
    assert t.quoting == "standard"
    assert s.texts == ['"Loved it"', "'single'", 'It\'s "fine"', "spaced out"]
    assert clean_text('"He said ""wow"""') == '"He said ""wow"""'
    assert clean_text(" a\u00a0 b\t", clean=False) == " a\u00a0 b\t"


# ---------------------------------------------------------------------------------------------- real data

DATA = Path(os.environ.get("NNCLI_SHARED_DATA", SHARED))
REAL = sorted(DATA.glob("tweeteval/*/*.tsv")) + sorted(DATA.glob("sst2/*.tsv"))


@pytest.mark.shared
@pytest.mark.parametrize("path", REAL or [None], ids=[str(p.relative_to(DATA)) for p in REAL] or ["absent"])
def test_real_tsv_reads_as_pandas_and_csv_read_it(path):
    if path is None:
        pytest.skip(f"{DATA} is absent")
    t = read_table(str(path))
    ref = pd.read_csv(path, sep="\t", keep_default_na=False)
    assert t.n_rows == len(ref)
    text = "text" if "text" in t.columns else "sentence" if "sentence" in t.columns else "content"
    assert t.columns[text] == list(ref[text].astype(str))
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    col = rows[0].index(text)
    # a doubled quote survives only where the tweet itself has two quote characters in a row (csv reads it so too)
    assert [i for i, v in enumerate(t.columns[text]) if '""' in v] == [i for i, r in enumerate(rows[1:]) if '""' in r[col]]
    assert t.quoting == "standard"
