"""nncli audit: planted label flips, duplicates, leakage and unusable rows are found at their file rows; outputs,
gates, --fix and bad input behave as documented. TF-IDF runs on ~500 rows; one tiny BERT for the embedding path."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_rows, write_csv

FLIPS = 20
RARE = ["zebra", "quartz", "glacier", "violin", "meadow", "harbour", "lantern", "orchid", "saddle", "comet", "walnut", "ember",
        "falcon", "prism", "tundra", "velvet", "anchor", "bramble", "cobalt", "dune"]
LONG = "the kettle was really great and the lamp was wonderful and the box arrived on a very quiet day for the price"


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("audit")
    rows = make_rows(400, 11, labels=("negative", "positive"), weights=(0.5, 0.5))
    rows[8].update(text=LONG, label="positive")
    rows[10]["text"] = ""                                          # empty: dropped by the reader, still a finding at row 10
    rows[12].update(text="N/A", label="negative")                  # boilerplate
    rows[14].update(text="это очень плохой чайник", label="negative")  # another script
    rows[16].update(text="<b>great</b> & wonderful lamp", label="positive")
    rng = random.Random(0)
    flips = sorted(rng.sample(range(20, 400), FLIPS))
    clean = {i: rows[i]["label"] for i in flips}
    for i in flips:
        rows[i]["label"] = "negative" if rows[i]["label"] == "positive" else "positive"
    rows.append(dict(rows[16], id="dup"))                                      # row 400: exact duplicate of row 16
    rows.append(dict(rows[6], id="conflict", label="negative" if rows[6]["label"] == "positive" else "positive"))  # row 401
    rows.append(dict(rows[8], id="near", text=LONG.replace(" very", "")))   # row 402: near-duplicate of row 8
    test = make_rows(80, 12, labels=("negative", "positive"), weights=(0.5, 0.5))
    for r in test:  # words train never has: no test row is a chance near-duplicate of a train row in this tiny vocabulary
        r["text"] += " " + " ".join(rng.sample(RARE, 4))
    test.append(dict(rows[7], id="leak"))                                      # test row 80 repeats train row 7
    train = write_csv(d / "train.csv", rows)
    return {"dir": d, "train": train, "test": write_csv(d / "test.csv", test), "flips": flips, "clean": clean, "rows": rows}


def _findings(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def audited(planted, tmp_path_factory):
    from typer.testing import CliRunner

    from nncli.cli import app

    out = tmp_path_factory.mktemp("audit_out") / "run"
    before = _digest(planted["train"])
    r = CliRunner().invoke(app, ["audit", str(planted["train"]), "--test", str(planted["test"]), "-o", str(out), "--json"])
    assert r.exit_code == 0, r.stderr
    assert _digest(planted["train"]) == before
    return json.loads(r.stdout), out


def test_planted_flips_found_at_their_file_rows(planted, audited):
    report, out = audited
    found = {f["row"] - 1 for f in _findings(out) if f["kind"] == "label_issue" and f["split"] == "train"}   # 1-based rows
    hits = found & set(planted["flips"])
    # seeded: confident learning is conservative here (it missed flips whose texts the model was unsure about)
    assert len(hits) >= 12, (sorted(found), planted["flips"])         # recall >= 0.6
    assert len(found - set(planted["flips"]) - {6, 401}) <= 1         # precision >= 0.93 (6/401: the planted conflict)
    for f in _findings(out):
        if f["kind"] == "label_issue" and f["row"] - 1 in planted["clean"]:
            assert f["evidence"]["suggested"] == planted["clean"][f["row"] - 1]
            assert f["text"] == planted["rows"][f["row"] - 1]["text"]     # row numbers are file rows, after the dropped row 10
    assert report["metrics"]["label_issues"] == len([f for f in _findings(out) if f["kind"] == "label_issue"])
    li = report["label_issues"]
    assert li["folds"] == 5 and {p["given"] for p in li["pairs"]} == {"negative", "positive"}
    assert li["estimated_noise_rate"] > 0.02


def test_duplicates_leakage_and_hygiene(audited):
    _, out = audited
    by = {(f["kind"], f["split"], f["row"] - 1): f for f in _findings(out)}     # keyed by list position (rows are 1-based)
    dup = by[("duplicate", "train", 400)]["evidence"]
    assert dup["of"] == {"split": "train", "row": 17, "text": "<b>great</b> & wonderful lamp"}
    assert dup["match"] == "exact"
    assert by[("label_conflict", "train", 401)]["evidence"]["of"]["row"] == 7
    near = by[("duplicate", "train", 402)]["evidence"]
    assert near["match"] == "near" and near["of"]["row"] == 9 and near["similarity"] >= 0.9
    assert by[("cross_split_duplicate", "test", 80)]["evidence"]["of"]["row"] == 8
    assert by[("empty_text", "train", 10)]["score"] == 1.0
    assert ("boilerplate", "train", 12) in by
    assert by[("script", "train", 14)]["evidence"]["scripts"] == {"CYRILLIC": 1.0}
    kinds = {k for k, _, _ in by}
    assert "truncated" not in kinds                                   # no tokenizer without --model


def test_every_output_file(planted, audited):
    from nncli.recipe.load import load_recipe

    report, out = audited
    written = sorted(p.name for p in out.iterdir() if not p.name.startswith(".nncli-run"))
    assert written == ["README.md", "audit.html", "audit.jsonl", "recipe.yaml", "report.json"]
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["metrics"] == report["metrics"] and on_disk["status"] == "succeeded" and on_disk["exit_code"] == 0
    counts = {}
    for f in _findings(out):
        counts[f["kind"]] = counts.get(f["kind"], 0) + 1
    assert on_disk["counts"] == counts
    assert on_disk["metrics"]["cross_split_duplicates"] == 1 and on_disk["metrics"]["empty_texts"] == 1
    md = (out / "README.md").read_text()
    assert md.startswith("# Data audit: succeeded") and "| cross-split duplicates (leakage) | 1 |" in md
    page = (out / "audit.html").read_text()
    assert "&lt;b&gt;great&lt;/b&gt; &amp; wonderful lamp" in page and "<b>great</b>" not in page
    again = load_recipe("audit", out / "recipe.yaml")
    assert again.data.train == str(planted["train"]) and again.data.test == str(planted["test"])


def test_label_issues_match_cleanlab_and_folds_match_sklearn():
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from nncli.evaluate import audit_checks as ck

    rows = make_rows(200, 5, labels=("negative", "positive"), weights=(0.5, 0.5))
    y = np.array([r["label"] == "positive" for r in rows], dtype=int)
    y[:10] = 1 - y[:10]
    x = ck.tfidf_features([r["text"] for r in rows])
    probs, info = ck.out_of_fold_probs(x, y, 2, folds=5, seed=3)
    ref = cross_val_predict(LogisticRegression(C=info["C"], max_iter=2000), x, y,
                            cv=StratifiedKFold(5, shuffle=True, random_state=3), method="predict_proba")
    np.testing.assert_allclose(probs, np.clip(ref, 1e-7, 1) / np.clip(ref, 1e-7, 1).sum(1, keepdims=True), atol=1e-9)
    issues, _ = ck.label_issues(y, probs, ["negative", "positive"])
    ref_idx = find_label_issues(y, probs, filter_by="confident_learning", return_indices_ranked_by="self_confidence")
    assert [i for i, *_ in issues] == list(ref_idx)
    q = get_label_quality_scores(y, probs, method="self_confidence")
    np.testing.assert_allclose([s for _, _, s, _ in issues], 1 - q[ref_idx], atol=1e-6)


def test_gates(cli, planted, tmp_path):
    code, stdout, _ = cli("audit", planted["train"], "--test", planted["test"], "--max", "label_issue_rate=0.01",
                          "--max", "cross_split_duplicates=0", "--min", "rows=10", "-o", tmp_path / "g", "--json")
    assert code == 5
    r = json.loads(stdout)
    gates = {g["metric"]: g["passed"] for g in r["gates"]}
    assert gates == {"rows": True, "label_issue_rate": False, "cross_split_duplicates": False}
    assert json.loads((tmp_path / "g" / "report.json").read_text())["exit_code"] == 5
    code, stdout, _ = cli("audit", planted["train"], "--test", planted["test"], "--max", "cross_split_duplicates=1", "--json")
    assert code == 0 and json.loads(stdout)["gates"][0]["value"] == 1
    code, stdout, _ = cli("audit", planted["train"], "--max", "label_issue_rte=0.1", "--json")
    assert code == 2 and "did you mean 'label_issue_rate'" in " ".join(json.loads(stdout)["details"])


def _read_csv(p: Path) -> list[dict]:
    import csv

    with open(p, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_fix_policies(cli, planted, tmp_path):
    before = _digest(planted["train"])
    code, stdout, err = cli("audit", planted["train"], "--test", planted["test"], "--fix", tmp_path / "clean.csv",
                            "-o", tmp_path / "a", "--json")
    assert code == 0, err
    fx = json.loads(stdout)["fix"]
    findings = _findings(tmp_path / "a")
    issues = {f["row"] - 1 for f in findings if f["kind"] == "label_issue" and f["split"] == "train"}
    expected = issues | {10, 12, 400, 401, 402, 7}                    # label issues, empty, boilerplate, duplicates, leaked row 7
    kept = _read_csv(tmp_path / "clean.csv")
    assert fx["removed"] == len(expected) and len(kept) == 403 - len(expected)
    assert {r["id"] for r in kept} == {r["id"] for i, r in enumerate(planted["rows"]) if i not in expected}
    assert _digest(planted["train"]) == before

    code, stdout, _ = cli("audit", planted["train"], "--fix", tmp_path / "relabel.jsonl", "--fix-policy", "relabel", "--json")
    assert code == 0
    out = [json.loads(x) for x in (tmp_path / "relabel.jsonl").read_text().splitlines()]
    ids = {r["id"]: r for r in out}
    fixed_flips = [i for i in planted["flips"]
                   if planted["rows"][i]["id"] in ids and ids[planted["rows"][i]["id"]]["label"] == planted["clean"][i]]
    assert len(fixed_flips) >= 12 and json.loads(stdout)["fix"]["relabelled"] >= 12

    code, _, _ = cli("audit", planted["train"], "--fix", tmp_path / "mark.csv", "--fix-policy", "mark", "--json")
    marked = _read_csv(tmp_path / "mark.csv")
    assert code == 0 and len(marked) == 403
    assert marked[400]["audit_kinds"] == "duplicate" and marked[10]["audit_kinds"] == "empty_text"
    f0 = planted["flips"][0]
    if "label_issue" in marked[f0]["audit_kinds"]:
        assert marked[f0]["audit_suggested_label"] == planted["clean"][f0]


def test_fix_refusals(cli, planted, tmp_path):
    before = _digest(planted["train"])
    code, stdout, _ = cli("audit", planted["train"], "--fix", planted["train"], "--overwrite", "--json")
    assert code == 2 and "is an input file" in json.loads(stdout)["error"]
    (tmp_path / "exists.csv").write_text("x\n")
    code, stdout, _ = cli("audit", planted["train"], "--fix", tmp_path / "exists.csv", "--json")
    assert code == 2 and "already exists" in json.loads(stdout)["error"]
    assert (tmp_path / "exists.csv").read_text() == "x\n"
    code, stdout, _ = cli("audit", planted["train"], "--fix", tmp_path / "out.xlsx", "--json")
    assert code == 2 and "unknown extension" in json.loads(stdout)["error"]
    code, stdout, _ = cli("audit", planted["train"], "-o", planted["dir"], "--overwrite", "--json")
    assert code == 2 and "would hold or replace the input" in json.loads(stdout)["error"]
    code, stdout, _ = cli("audit", planted["train"], "-o", tmp_path / "o", "--fix", tmp_path / "o" / "c.csv", "--json")
    assert code == 2 and "is inside --output" in json.loads(stdout)["error"]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    code, stdout, _ = cli("audit", planted["train"], "-o", tmp_path / "full", "--json")
    assert code == 2 and "exists and is not empty" in json.loads(stdout)["error"]
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    assert _digest(planted["train"]) == before


def test_bad_input(cli, planted, tmp_path, monkeypatch):
    code, stdout, _ = cli("audit", tmp_path / "missing.csv", "--json")
    assert code == 3 and "not found" in json.loads(stdout)["error"]
    code, stdout, _ = cli("audit", planted["train"], "--text-column", "txt", "--json")
    assert code == 2 and "did you mean 'text'" in json.loads(stdout)["hint"]
    one = write_csv(tmp_path / "one.csv", [{"text": "a b", "label": "x"}, {"text": "c d", "label": "x"}])
    code, stdout, _ = cli("audit", one, "--json")
    assert code == 3 and "single label" in json.loads(stdout)["error"]
    code, stdout, _ = cli("audit", planted["train"], planted["test"], "--json")
    assert code == 2 and "one data file at a time" in json.loads(stdout)["error"]
    code, stdout, _ = cli("audit", planted["train"], "label_issues.fold=3", "--json")
    assert code == 2 and "did you mean 'label_issues.folds'" in " ".join(json.loads(stdout)["details"])
    code, stdout, _ = cli("audit", "--json")
    assert code == 2 and "data.train: required" in " ".join(json.loads(stdout)["details"])
    import sys

    for mod in ("cleanlab", "cleanlab.filter", "cleanlab.count", "cleanlab.rank"):
        monkeypatch.setitem(sys.modules, mod, None)
    code, stdout, _ = cli("audit", planted["train"], "--json")
    assert code == 4 and json.loads(stdout)["hint"] == "install it with: pip install 'nncli-toolkit[audit]'"


def _mean_pool(model_dir: Path, texts: list[str], layers: list[int], max_length: int) -> np.ndarray:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    m = AutoModel.from_pretrained(model_dir).eval()
    out = []
    with torch.inference_mode():
        for t in texts:
            b = tok([t], truncation=True, max_length=max_length, return_tensors="pt")
            h = m(**b, output_hidden_states=True).hidden_states
            out.append(np.stack([h[i][0].mean(0).numpy() for i in layers]))
    return np.stack(out)


def test_embeddings_of_an_encoder_and_a_classifier(tiny_bert, tmp_path):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from nncli.evaluate.audit_embed import encode

    texts = [r["text"] for r in make_rows(12, 4)]
    emb, lengths, info = encode(texts, None, str(tiny_bert), max_length=16, batch_size=5)
    assert info["kind"] == "encoder" and info["layers"] == [1, 2] and emb.shape == (12, 2, 32)
    np.testing.assert_allclose(emb, _mean_pool(tiny_bert, texts, [1, 2], 16), atol=1e-5)
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    assert list(lengths) == [len(tok(t)["input_ids"]) for t in texts]
    torch.manual_seed(0)
    clf_dir = tmp_path / "clf"
    cfg = BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=128, num_labels=2, architectures=["BertForSequenceClassification"])
    BertForSequenceClassification(cfg).save_pretrained(clf_dir, safe_serialization=True)
    tok.save_pretrained(clf_dir)
    emb2, _, info2 = encode(texts, None, str(clf_dir), max_length=16, batch_size=5)
    assert info2["kind"] == "classifier"
    np.testing.assert_allclose(emb2, _mean_pool(clf_dir, texts, [1, 2], 16), atol=1e-5)


def test_audit_with_a_model_reports_truncation(cli, planted, tiny_bert, tmp_path):
    code, stdout, err = cli("audit", planted["train"], "--model", tiny_bert, "--max-length", "12", "-o", tmp_path / "m", "--json")
    assert code == 0, err
    r = json.loads(stdout)
    assert r["representation"]["kind"] == "encoder" and r["duplicates"]["threshold"] == 0.95
    trunc = [f for f in _findings(tmp_path / "m") if f["kind"] == "truncated"]
    assert trunc and all(f["evidence"]["tokens"] > 12 for f in trunc)
    assert any(f["row"] == 9 for f in trunc)                          # the long text
    assert r["metrics"]["truncated"] == len(trunc)


def test_preflight_summary(planted):
    from nncli.evaluate.audit import preflight_summary
    from nncli.io.labelled import load_labelled
    from nncli.recipe.finetune import ClassifierData as DataSpec

    # the test file as validation: no held-out split of train, so the only cross-split duplicate is the planted one
    data = load_labelled(DataSpec(train=str(planted["train"]), validation=str(planted["test"])), seed=0)
    summary, warnings = preflight_summary(data, model_path=None, seed=0)
    assert summary["metrics"]["label_issues"] >= 15 and summary["metrics"]["cross_split_duplicates"] == 1
    assert len(summary["top_label_issues"]) == 10 and summary["top_label_issues"][0]["suggested"] in ("negative", "positive")
    assert any(w.startswith("label issues:") for w in warnings) and any(w.startswith("leakage:") for w in warnings)


def test_finetune_with_data_audit_puts_the_audit_summary_in_the_report(planted, tiny_bert, tmp_path, cli):
    """data.audit=true runs the audit in pre-flight: the planted flips and the train/test leak are in report.json and on
    stderr before training starts."""
    out = tmp_path / "run"
    code, stdout, stderr = cli("finetune", "--model", tiny_bert, "--data", planted["train"], "--test", planted["test"],
                               "-o", out, "train.epochs=1", "data.max_length=32", "data.audit=true", "--json")
    assert code == 0, stderr
    audit = json.loads(stdout)["data"]["audit"]
    assert audit["metrics"]["label_issues"] >= 12 and audit["metrics"]["cross_split_duplicates"] >= 1
    top = audit["top_label_issues"]
    # file rows are 1-based data rows; the planted flips are 0-based indices of the written rows
    assert len(top) == 10 and sum(t["row"] - 1 in planted["flips"] for t in top) >= 8
    assert "pre-flight: auditing the data" in stderr
    assert any(w.startswith("leakage:") for w in json.loads((out / "report.json").read_text())["warnings"])
