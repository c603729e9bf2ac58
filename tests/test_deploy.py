"""`nncli quantize`, `nncli bench`, `nncli predict` on a tiny trained model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def quantized(trained_run, tmp_path_factory):
    from typer.testing import CliRunner

    from nncli.cli import app

    out = tmp_path_factory.mktemp("q") / "int8"
    # a tiny model is too small for int8 to pay off in speed; allow any drop so the table is complete
    r = CliRunner().invoke(app, ["quantize", str(trained_run), "--output", str(out), "--max-drop", "100", "--json",
                                 "min_seconds=0.2", "seq_len=32"])
    return out, r


@pytest.mark.slow
def test_quantize_reports_every_candidate(quantized):
    out, r = quantized
    assert r.exit_code in (0, 5), r.stderr
    report = json.loads(r.stdout)
    names = [c["candidate"] for c in report["candidates"]]
    assert names[:2] == ["fp32 (torch)", "fp32 (onnxruntime)"]
    assert {"torch-dynamic-int8", "ort-dynamic-int8", "ort-dynamic-int8-per-channel", "ort-static-int8"} <= set(names)
    for c in report["candidates"]:
        if c["status"].startswith("error"):
            continue
        assert {"accuracy", "accuracy_drop", "flip_rate", "latency_ms_batch1", "throughput_per_second", "size_mb"} <= set(c)
    ort = next(c for c in report["candidates"] if c["candidate"] == "ort-dynamic-int8")
    assert ort["size_mb"] < report["candidates"][1]["size_mb"]  # int8 weights are smaller on disk
    if r.exit_code == 0:
        chosen = report["chosen"]
        assert (out / "report.json").exists()
        assert (out / ("model.onnx" if chosen.startswith("ort") else "quantization.json")).exists()
    else:  # no candidate was faster than fp32 on this tiny model: nothing may be written
        assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow
def test_quantize_writes_nothing_when_no_candidate_qualifies(trained_run, tmp_path, cli, monkeypatch):
    import nncli.deploy.quantize as qz

    monkeypatch.setattr(qz, "candidates_for", lambda m, b: ["torch-dynamic-int8"])
    out = tmp_path / "none"
    code, stdout, stderr = cli("quantize", trained_run, "--output", out, "--max-drop", "0", "--max-flip-rate", "0", "--json",
                               "min_seconds=0.1", "seq_len=16")
    report = json.loads(stdout)
    if code == 0:  # the int8 model matched fp32 exactly and was faster: legitimate
        assert report["chosen"] == "torch-dynamic-int8"
        return
    assert code == 5 and "nothing was written" in stderr
    assert not out.exists()
    assert report["candidates"][1]["status"].startswith("rejected")


def test_quantize_needs_labelled_data_for_plain_models(tiny_bert, tmp_path, cli):
    code, _, stderr = cli("quantize", tiny_bert, "--output", tmp_path / "q")
    assert code == 2 and "--data" in stderr


def test_torch_int8_artifact_loads_quantized(trained_run, tmp_path):
    import shutil

    from nncli.io.inference import load_classifier

    d = tmp_path / "m"
    shutil.copytree(trained_run / "merged", d)
    (d / "quantization.json").write_text(json.dumps({"method": "torch-dynamic-int8", "exclude": ["classifier"]}))
    clf = load_classifier(str(d))
    assert clf.backend == "torch-int8"
    import torch

    assert "quantized.dynamic" in type(clf.model.bert.encoder.layer[0].attention.self.query).__module__
    assert type(clf.model.classifier) is torch.nn.Linear
    assert clf.predict_proba(["great lamp"]).shape == (1, 3)


@pytest.mark.slow
def test_bench_and_regression_gate(trained_run, tmp_path, cli):
    out = tmp_path / "b"
    code, stdout, stderr = cli("bench", trained_run, "--batch-sizes", "1,4", "--seq-lens", "16", "--min-seconds", "0.1",
                               "--torch-int8", "-o", out, "--json")
    assert code == 0, stderr
    r = json.loads(stdout)
    assert {(x["backend"], x["batch_size"]) for x in r["results"]} == {("torch", 1), ("torch", 4), ("torch-int8", 1),
                                                                       ("torch-int8", 4)}
    for x in r["results"]:
        assert x["p50_ms"] <= x["p95_ms"] <= x["p99_ms"] and x["throughput_per_second"] > 0
    assert r["machine"]["features"] and r["machine"]["int8_note"]
    assert (out / "latency_throughput.png").exists()
    # doctor the baseline to be 1000x faster (timings here vary 10x under load): the gate must fail
    base = json.loads((out / "report.json").read_text())
    for x in base["results"]:
        x["throughput_per_second"] *= 1000
    (tmp_path / "fast.json").write_text(json.dumps(base))
    code, stdout, stderr = cli("bench", trained_run, "--batch-sizes", "1", "--seq-lens", "16", "--min-seconds", "0.1",
                               "--baseline", tmp_path / "fast.json", "--fail-if-slower", "10%", "--json")
    assert code == 5
    assert json.loads(stdout)["gates"][0]["passed"] is False
    code, _, stderr = cli("bench", trained_run, "--baseline", tmp_path / "missing.json", "--fail-if-slower", "10%")
    assert code == 3
    code, _, stderr = cli("bench", trained_run, "--batch-sizes", "a,b")
    assert code == 2


def test_predict_jsonl_with_labels_and_ids(trained_run, tiny_data, tmp_path, cli):
    out = tmp_path / "preds.jsonl"
    code, stdout, stderr = cli("predict", trained_run, "--data", tiny_data["test"], "--output", out, "--json")
    assert code == 0, stderr
    r = json.loads(stdout)
    assert r["rows"] == 60 and sum(r["predicted_distribution"].values()) == 60
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert rows[0]["id"] == "3-0" and rows[0]["predicted"] in {"negative", "neutral", "positive"}
    assert abs(sum(rows[0]["probabilities"].values()) - 1) < 1e-4
    code, stdout, stderr = cli("predict", trained_run, "--data", tiny_data["test"], "--limit", "2")
    assert code == 0 and len(stdout.strip().splitlines()) == 2


@pytest.mark.slow
def test_predict_onnx_in_a_process_without_torch(trained_run, tiny_data, tmp_path):
    from typer.testing import CliRunner

    from nncli.cli import app

    exp = tmp_path / "onnx"
    assert CliRunner().invoke(app, ["export", str(trained_run), "-o", str(exp), "-q"]).exit_code == 0
    code = (f"import sys, runpy\nsys.argv = ['nncli', 'predict', {str(exp)!r}, '--data', {str(tiny_data['test'])!r}, "
            "'--limit', '3']\n"
            "try:\n    runpy.run_module('nncli', run_name='__main__')\nexcept SystemExit as e:\n    pass\n"
            "print('TORCH', 'torch' in sys.modules, file=sys.stderr)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "TORCH False" in p.stderr, p.stderr[-1000:]
    assert len(p.stdout.strip().splitlines()) == 3
