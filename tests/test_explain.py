"""`nncli explain`: on a tiny model trained so that one word decides the label, every method ranks that word
first and the faithfulness scores beat random; integrated gradients are complete; HTML and JSON are well
formed; causal LMs get next-token attributions."""

from __future__ import annotations

import json
import random
from html.parser import HTMLParser

import pytest
from conftest import FILLER, finetune_args, write_csv

KEY = "refund"


def _rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        body = rng.choices(FILLER, k=rng.randint(4, 10))
        flagged = rng.random() < 0.5
        if flagged:
            body.insert(rng.randrange(len(body) + 1), KEY)
        rows.append({"text": " ".join(body), "label": "flagged" if flagged else "ok"})
    return rows


@pytest.fixture(scope="module")
def key_model(tiny_bert, tmp_path_factory):
    from typer.testing import CliRunner

    from nncli.cli import app

    d = tmp_path_factory.mktemp("keyword")
    data = {s: write_csv(d / f"{s}.csv", _rows(n, seed)) for s, n, seed in (("train", 300, 1), ("validation", 60, 2),
                                                                            ("test", 60, 3))}
    r = CliRunner().invoke(app, finetune_args(tiny_bert, data, d / "run", "--method", "full", "train.lr=3e-3", "train.epochs=10",
                                              "train.metric=loss", "train.label_smoothing=0.1",
                                              "--json", "-q"))
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["metrics"]["test"]["accuracy"] >= 0.95
    return d / "run", data


@pytest.mark.slow
def test_every_method_ranks_the_deciding_word_first(key_model, cli):
    run, _ = key_model
    text = "the kettle was refund quite really box"
    code, stdout, stderr = cli("explain", str(run), "--text", text, "--json")
    assert code == 0, stderr
    r = json.loads(stdout)
    e = r["explanations"][0]
    assert e["prediction"] == "flagged" and e["probability"] > 0.8
    for m in ("ig", "occlusion", "attention"):
        sc = e["scores"][m]
        assert e["words"][max(range(len(sc)), key=sc.__getitem__)] == KEY, (m, list(zip(e["words"], sc)))


@pytest.mark.slow
def test_faithfulness_beats_random_and_ig_is_complete(key_model, tmp_path, cli):
    run, data = key_model
    out = tmp_path / "ex"
    code, stdout, stderr = cli("explain", str(run), "--data", str(data["test"]), "--limit", "15", "-o", str(out), "--json")
    assert code == 0, stderr
    r = json.loads(stdout)
    for m in ("ig", "occlusion", "attention"):
        f = r["faithfulness"][m]
        assert set(f) >= {"comprehensiveness", "comprehensiveness_random", "sufficiency", "sufficiency_random", "k"}
        assert f["comprehensiveness"] > f["comprehensiveness_random"] + 0.05, (m, f)
        assert f["sufficiency"] < f["sufficiency_random"], (m, f)
    for e in r["explanations"]:
        d = e["details"]["ig"]
        assert abs(d["total_attribution"] - d["prob_minus_baseline"]) <= 0.05 + 0.05 * abs(d["prob_minus_baseline"])
    # the dataset view finds the shortcut
    assert r["shortcuts"]["flagged"][0]["word"] == KEY
    # outputs on disk are well formed
    lines = (out / "explanations.jsonl").read_text().splitlines()
    assert len(lines) == 15 and all(json.loads(x)["scores"] for x in lines)
    assert json.loads((out / "report.json").read_text())["texts"] == 15

    class Balance(HTMLParser):
        def __init__(self):
            super().__init__()
            self.stack = []

        def handle_starttag(self, tag, attrs):
            if tag not in ("meta", "br"):
                self.stack.append(tag)

        def handle_endtag(self, tag):
            assert self.stack and self.stack.pop() == tag, tag

    p = Balance()
    p.feed((out / "explanations.html").read_text())
    assert p.stack == [] and KEY in (out / "explanations.html").read_text()


def test_causal_lm_next_token_attributions(tiny_gpt2, cli):
    code, stdout, stderr = cli("explain", str(tiny_gpt2), "--text", "the kettle was really", "--method", "ig,occlusion", "--json")
    assert code == 0, stderr
    r = json.loads(stdout)
    assert r["causal_lm"] is True
    e = r["explanations"][0]
    assert e["words"] == ["the", "kettle", "was", "really"] and len(e["scores"]["ig"]) == 4 and e["prediction"]


@pytest.mark.slow
def test_explain_refuses_bad_input(key_model, tmp_path, cli):
    run, data = key_model
    code, _, stderr = cli("explain", str(run))
    assert code == 2 and "--text" in stderr
    code, _, stderr = cli("explain", str(run), "--text", "x", "--method", "shap")
    assert code == 2 and "shap" in stderr
    code, _, stderr = cli("explain", str(run), "--text", "   ")
    assert code == 2
    onnx = tmp_path / "m"
    onnx.mkdir()
    (onnx / "model.onnx").write_bytes(b"x")
    (onnx / "config.json").write_text("{}")
    code, _, stderr = cli("explain", str(onnx), "--text", "hello")
    assert code == 3 and "ONNX" in stderr
