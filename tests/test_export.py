"""`nncli export`: ONNX and safetensors with the parity gate; artifacts load in onnxruntime and optimum."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest


@pytest.fixture(scope="module")
def onnx_export(trained_run, tmp_path_factory):
    from typer.testing import CliRunner

    from nncli.cli import app

    out = tmp_path_factory.mktemp("exports") / "onnx"
    r = CliRunner().invoke(app, ["export", str(trained_run), "--output", str(out), "--json"])
    assert r.exit_code == 0, r.stderr
    return out, json.loads(r.stdout)


@pytest.mark.slow
def test_onnx_export_passes_parity_and_loads_in_ecosystem_clients(onnx_export, trained_run):
    out, report = onnx_export
    assert report["status"] == "succeeded"
    p = report["parity"]
    assert p["max_abs_diff"] <= 1e-4 and p["flipped"] == 0 and p["agreement"] == 1.0
    assert p["samples"] == 60  # the run's validation split
    assert all(g["passed"] for g in report["gates"])
    for name in ("model.onnx", "config.json", "tokenizer.json", "report.json"):
        assert (out / name).exists()
    assert not (out / ".staging").exists() and not (out / "rejected").exists()

    import onnxruntime as ort
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    enc = tok(["great lamp", "awful broken kettle and box"], padding=True, return_tensors="np")
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {i.name: enc[i.name].astype(np.int64) for i in sess.get_inputs()}
    ort_logits = sess.run(None, feeds)[0]
    ortm = ORTModelForSequenceClassification.from_pretrained(out)
    assert ortm.config.id2label[0] == "negative"
    import torch

    pt = AutoModelForSequenceClassification.from_pretrained(trained_run / "merged").eval()
    with torch.no_grad():
        ref = pt(**tok(["great lamp", "awful broken kettle and box"], padding=True, return_tensors="pt")).logits.numpy()
    np.testing.assert_allclose(ort_logits, ref, atol=1e-4)
    np.testing.assert_allclose(ortm(**tok(["great lamp", "awful broken kettle and box"], padding=True,
                                          return_tensors="pt")).logits.numpy(),
                               ref, atol=1e-4)


@pytest.mark.slow
def test_parity_failure_exits_5_and_ships_nothing(trained_run, tmp_path, cli, monkeypatch):
    import nncli.deploy.export as ex

    real = ex._parity

    def skewed(*a, **k):
        p = real(*a, **k)
        return {**p, "max_abs_diff": 3.2, "flipped": 4}

    monkeypatch.setattr(ex, "_parity", skewed)
    out = tmp_path / "bad"
    code, stdout, stderr = cli("export", trained_run, "--output", out, "--json")
    assert code == 5 and "parity failed" in stderr
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "failed" and not report["gates"][0]["passed"]
    assert not (out / "model.onnx").exists() and (out / "rejected" / "model.onnx").exists()


@pytest.mark.slow
def test_safetensors_export_is_exact(trained_run, tmp_path, cli):
    out = tmp_path / "st"
    code, stdout, stderr = cli("export", trained_run, "--format", "safetensors", "--output", out, "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["parity"]["max_abs_diff"] == 0.0
    assert (out / "model.safetensors").exists()


def test_export_without_parity_data_is_refused(tiny_bert, tmp_path, cli):
    code, _, stderr = cli("export", tiny_bert, "--output", tmp_path / "x")
    assert code == 2 and "--data" in stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_onnx_inference_path_does_not_import_torch(onnx_export, tiny_data):
    out, _ = onnx_export
    code = ("import sys\nfrom nncli.io.inference import load_classifier\n"
            f"c = load_classifier({str(out)!r})\nprint(c.predict_proba(['great lamp', 'awful box']).shape)\n"
            "print('TORCH', 'torch' in sys.modules, 'transformers' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "TORCH False False" in r.stdout, r.stdout + r.stderr
    assert "(2, 3)" in r.stdout


@pytest.mark.slow
def test_evaluate_accepts_onnx_exports(onnx_export, trained_run, tiny_data, cli):
    out, _ = onnx_export
    code, stdout, stderr = cli("evaluate", trained_run, out, "--data", tiny_data["test"], "--no-robustness", "--json")
    assert code == 0, stderr
    r = json.loads(stdout)
    assert r["models"][1]["backend"] == "onnxruntime"
    assert r["comparison"][1]["agreement_with_first"] == 1.0


@pytest.mark.slow
def test_causal_lm_onnx_export_with_past_key_values(tiny_gpt2, tmp_path, cli):
    texts = tmp_path / "texts.jsonl"
    texts.write_text("\n".join(json.dumps({"text": t}) for t in ["great lamp and very happy", "awful broken kettle", "the book"]))
    out = tmp_path / "lm-onnx"
    code, stdout, stderr = cli("export", tiny_gpt2, "--output", out, "--data", texts, "--json")
    assert code == 0, stderr
    r = json.loads(stdout)
    assert r["command"] == "export" and r["task"] == "causal-lm" and r["parity"]["max_abs_diff"] <= 1e-4
    import onnxruntime as ort

    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    assert any(n.startswith("past_key_values") for n in names)  # decoder exported with its KV cache
    from optimum.onnxruntime import ORTModelForCausalLM
    from transformers import AutoTokenizer

    model = ORTModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    generated = model.generate(**tok("great lamp", return_tensors="pt"), max_new_tokens=3, do_sample=False)
    assert generated.shape[1] > 2
