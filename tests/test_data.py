"""Data layer: no row lost silently, messy files, labels, splits."""

from __future__ import annotations

import json

import pytest

from nncli.core.errors import InputError, UsageError
from nncli.io.labelled import clean_text, load_labelled
from nncli.io.tables import read_table
from nncli.recipe.finetune import ClassifierData as DataSpec


def spec(train, **kw) -> DataSpec:
    return DataSpec(train=str(train), **kw)


def test_tsv_with_stray_quotes_keeps_every_row(tmp_path):
    p = tmp_path / "sms.tsv"
    lines = ["label\ttext", 'ham\tsee you at 5 "ok', "spam\tWIN a 12\" tv now", 'ham\t"quoted whole"', "ham\tplain line"]
    p.write_text("\n".join(lines) + "\n")
    t = read_table(str(p))
    assert t.n_rows == 4
    assert t.columns["text"][1] == 'WIN a 12" tv now'
    assert clean_text(t.columns["text"][2]) == "quoted whole"


def test_csv_multiline_rows_are_counted_and_stray_quote_flagged(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('text,label\n"line one\nline two",a\nok,b\n')
    t = read_table(str(p))
    assert t.n_rows == 2 and any("3 non-empty lines after the header became 2 rows" in n for n in t.info)
    assert not t.notes  # a legitimate multi-line text is information, not a warning
    # a quote that swallows whole records: quoting off is chosen (every line has the header's fields), and said so
    good = "".join(f"fine {i},{'ab'[i % 2]}\n" for i in range(10))
    p.write_text('text,label\n' + good + '"broken ""quote,a\nnext row,b\nlast" ok,a\n' + good)
    t = read_table(str(p))
    assert t.quoting == "none" and t.n_rows == 23 and "a stray quote" in t.quoting_reason
    # a quote that never closes: quoting off keeps every row; forcing standard quoting is refused, naming the row
    p.write_text('text,label\nok,b\n"broken quote,a\nnext row,b\nlast,a\n')
    assert read_table(str(p)).columns["text"] == ["ok", '"broken quote', "next row", "last"]
    with pytest.raises(InputError) as e:
        read_table(str(p), quoting="standard")
    assert "stray quote at row 3" in e.value.message


def test_html_entities_and_wrapping_quotes():
    assert clean_text("It&#039;s &amp;quot;fine&amp;quot;") == 'It\'s "fine"'
    assert clean_text('"Loved it"') == '"Loved it"'  # quotes are the reader's business (tests/test_tables.py)
    assert clean_text("  spaced \n out  ") == "spaced out"
    assert clean_text(float("nan")) == ""


def test_delimiter_mismatch_is_detected(tmp_path):
    p = tmp_path / "semi.csv"
    p.write_text("text;label\ngood;pos\nbad;neg\n")
    t = read_table(str(p))
    assert t.n_rows == 2 and t.columns["label"] == ["pos", "neg"]
    assert any("semicolon" in n for n in t.notes)


def test_ragged_rows_are_refused_with_row_numbers(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("text,label\ngood,pos\nbad, really,neg\n")
    with pytest.raises(InputError) as e:
        read_table(str(p))
    assert "row 3" in e.value.message


def test_non_utf8_names_line_and_fix(tmp_path):
    p = tmp_path / "latin.csv"
    p.write_bytes("text,label\ncaf\xe9,pos\n".encode("latin-1"))
    with pytest.raises(InputError) as e:
        read_table(str(p))
    assert "line 2" in e.value.message and "encoding" in e.value.hint
    t = read_table(str(p), encoding="latin-1")
    assert t.columns["text"] == ["café"]


@pytest.mark.parametrize("fmt", ["json", "jsonl", "parquet"])
def test_other_formats(tmp_path, fmt):
    rows = [{"text": "good", "label": 1}, {"text": "bad", "label": 0}, {"text": "fine", "label": 1}]
    p = tmp_path / f"d.{fmt}"
    if fmt == "json":
        p.write_text(json.dumps(rows))
    elif fmt == "jsonl":
        p.write_text("\n".join(json.dumps(r) for r in rows))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), p)
    t = read_table(str(p))
    assert t.columns["text"] == ["good", "bad", "fine"] and t.n_rows == 3


def test_bad_jsonl_line_is_named(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "a", "label": 1}\n{"text": oops}\n')
    with pytest.raises(InputError) as e:
        read_table(str(p))
    assert "line 2" in e.value.message


def test_labels_empty_texts_and_split(tmp_path):
    p = tmp_path / "d.csv"
    rows = ["text,label"] + [f"text {i},{i % 3}.0" for i in range(60)] + [",1", "   ,2", "no label,", "nan label,nan"]
    p.write_text("\n".join(rows) + "\n")
    d = load_labelled(spec(p))
    assert d.label_names == ["0", "1", "2"]
    assert len(d.train) + len(d.validation) == 60
    assert d.train.dropped == {"empty_text": 2, "missing_label": 2}
    assert sorted(set(d.validation.labels)) == [0, 1, 2]  # stratified
    assert not set(d.train.texts) & set(d.validation.texts)
    assert load_labelled(spec(p)).validation.texts == d.validation.texts  # seeded


def test_drops_are_reported_once_when_validation_is_split_from_train(tmp_path):
    p = tmp_path / "d.csv"
    rows = ["text,label"] + [f"text {i},{i % 3}.0" for i in range(60)] + [",1", "no label,"]
    p.write_text("\n".join(rows) + "\n")
    d = load_labelled(spec(p))
    drops = [n for n in d.notes if "rows read" in n]
    assert drops == [f"train: 62 rows read, 60 kept ({len(d.validation)} of them held out for validation); "
                     "dropped 1 with empty text, 1 with missing label"]


def test_missing_columns_hint_at_the_likely_text_and_label_columns(tmp_path):
    import pandas as pd

    p = tmp_path / "reviews.tsv"
    pd.DataFrame({"Review Text": [f"the lamp number {i} was {'good' if i % 2 else 'bad'} and arrived late" for i in range(40)],
                  "Rating": ["pos" if i % 2 else "neg" for i in range(40)], "Stars": [float(i % 5 + 1) for i in range(40)]}
                 ).to_csv(p, sep="\t")
    with pytest.raises(UsageError) as e:
        load_labelled(spec(p))
    assert e.value.hint.startswith("'Review Text' looks like it: pass --text-column 'Review Text'")
    with pytest.raises(UsageError) as e:
        load_labelled(spec(p, text_column="Review Text"))
    assert e.value.hint.startswith("'Rating' looks like it: pass --label-column 'Rating'")


def test_unseen_labels_in_validation_are_refused(tmp_path):
    tr, va = tmp_path / "t.csv", tmp_path / "v.csv"
    tr.write_text("text,label\na,x\nb,y\nc,x\n")
    va.write_text("text,label\na,x\nb,z\n")
    with pytest.raises(InputError) as e:
        load_labelled(spec(tr, validation=str(va)))
    assert "'z'" in e.value.message and "known labels" in e.value.message


def test_single_class_is_refused(tmp_path):
    p = tmp_path / "one.csv"
    p.write_text("text,label\na,x\nb,x\nc,x\n")
    with pytest.raises(InputError) as e:
        load_labelled(spec(p))
    assert "single class" in e.value.message


def test_missing_column_did_you_mean(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("review,label\na,x\nb,y\n")
    with pytest.raises(UsageError) as e:
        load_labelled(spec(p, text_column="reviews"))
    assert "did you mean 'review'" in e.value.hint


def test_column_name_list_picks_per_file(tmp_path):
    tr, va = tmp_path / "t.tsv", tmp_path / "v.tsv"
    tr.write_text("label\tsentence\n0\tbad\n1\tgood\n0\tawful\n1\tnice\n")
    va.write_text("label\tcontent\n0\tmeh\n1\tgreat\n")
    d = load_labelled(spec(tr, validation=str(va), text_column=["sentence", "content"]))
    assert d.validation.texts == ["meh", "great"] and d.validation.columns["text"] == "content"


@pytest.mark.parametrize("content,what", [(b"", "empty"), (b"text,label\n", "no data rows"),
                                           (b"\x00\x01binary", "NUL")])
def test_empty_or_binary_files(tmp_path, content, what):
    p = tmp_path / "d.csv"
    p.write_bytes(content)
    with pytest.raises(InputError) as e:
        read_table(str(p))
    assert what in e.value.message


@pytest.mark.shared
def test_sst2_reads_every_row():
    from conftest import SHARED

    if not (SHARED / "sst2" / "train.tsv").exists():
        pytest.skip("../shared/data is absent")
    t = read_table(str(SHARED / "sst2" / "train.tsv"))
    assert t.n_rows == 67349
    d = read_table(str(SHARED / "sst2" / "dev.tsv"))
    assert d.n_rows == 872


def test_a_label_called_none_is_a_class(tmp_path):
    """TweetEval's stance tasks have a class called "none": it must not be read as a missing label."""
    p = tmp_path / "stance.tsv"
    names = ["favor", "against", "none", "None", "NA"]
    p.write_text("text\tlabel\n" + "".join(f"tweet {i}\t{names[i % 5]}\n" for i in range(50)))
    d = load_labelled(spec(p))
    assert d.label_names == ["NA", "None", "against", "favor", "none"]
    assert d.train.dropped == {} and len(d.train) + len(d.validation) == 50


def test_a_held_out_file_that_names_the_text_column_differently_gets_the_list_hint(tmp_path):
    tr, te = tmp_path / "train.tsv", tmp_path / "dev.tsv"
    tr.write_text("label\tsentence\n0\ta b\n1\tc d\n0\te f\n1\tg h\n")
    te.write_text("label\tcontent\n0\ta b\n1\tc d\n")
    with pytest.raises(UsageError) as e:
        load_labelled(spec(tr, text_column="sentence", test=str(te)))
    assert "--text-column 'sentence' --text-column 'content'" in e.value.hint
    assert load_labelled(spec(tr, text_column=["sentence", "content"], test=str(te))).test.texts == ["a b", "c d"]
