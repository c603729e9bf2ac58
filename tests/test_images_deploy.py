"""The shipped images quickstart (nncli run images-quickstart: finetune -> evaluate -> quantize -> export -> bench -> drift on the
bundled digits and tiny ResNet) runs, and its artifacts load in onnxruntime and optimum; predict on image folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

DIGITS = Path(__file__).resolve().parents[1] / "recipes" / "data" / "digits"


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    from typer.testing import CliRunner

    from nncli.cli import app

    out = tmp_path_factory.mktemp("iq") / "pipe"
    r = CliRunner().invoke(app, ["run", "images-quickstart", f"output={out}", "finetune.train.epochs=4", "bench.min_seconds=0.2",
                                 "quantize.min_seconds=0.2", "--json"])
    assert r.exit_code == 0, r.stderr
    return out, json.loads(r.stdout)


def test_the_shipped_digits_match_the_generator(tmp_path):
    from PIL import Image

    from nncli.io.image_demo import write_digits

    fresh = write_digits(tmp_path / "d")["root"]
    shipped = sorted(p.relative_to(DIGITS) for p in DIGITS.glob("*/*/*.png"))
    assert shipped == sorted(p.relative_to(fresh) for p in fresh.glob("*/*/*.png")) and len(shipped) == 1797
    for rel in shipped[::97]:
        assert np.array_equal(np.asarray(Image.open(DIGITS / rel)), np.asarray(Image.open(fresh / rel))), rel


def test_images_quickstart_runs_every_step(quickstart):
    out, r = quickstart
    assert [s["name"] for s in r["steps"]] == ["finetune", "evaluate", "quantize", "export", "bench", "drift"]
    assert [s["status"] for s in r["steps"]] == ["succeeded"] * 6
    ft = json.loads((out / "finetune" / "report.json").read_text())
    test = ft["metrics"]["test"]
    assert ft["task"] == "image-classification" and test["n"] == 360
    assert test["accuracy"] > ft["baselines"]["majority_class"]["test"]["accuracy"] + 0.5
    ev = json.loads((out / "evaluate" / "report.json").read_text())
    assert ev["metrics"]["accuracy"] == pytest.approx(test["accuracy"], abs=1e-9)            # the same images, the same model
    assert ev["models"][0]["ci95"]["accuracy"][0] <= ev["metrics"]["accuracy"] <= ev["models"][0]["ci95"]["accuracy"][1]
    assert np.asarray(ev["models"][0]["confusion_matrix"]["matrix"]).sum() == 360
    assert (out / "evaluate" / "confusion.png").exists()
    q = json.loads((out / "quantize" / "report.json").read_text())
    chosen = next(c for c in q["candidates"] if c["status"] == "chosen")
    assert chosen["candidate"] == "ort-static-int8" and chosen["accuracy_drop_upper"] * 100 <= 1.0
    ex = json.loads((out / "export" / "report.json").read_text())
    assert ex["parity"]["flipped"] == 0 and ex["parity"]["max_abs_diff"] <= 1e-4 and ex["parity"]["samples"] == 144
    bench = json.loads((out / "bench" / "report.json").read_text())
    assert {x["backend"] for x in bench["results"]} == {"torch", "onnx"} and {x["seq_len"] for x in bench["results"]} == {32}
    drift = json.loads((out / "drift" / "report.json").read_text())          # the held-out test digits: quiet
    assert drift["drift_detected"] is False and drift["current"]["rows"] == 360
    assert drift["accuracy"]["actual"] == pytest.approx(test["accuracy"])
    assert {"brightness", "contrast", "embeddings"} <= {t["feature"] for t in drift["tests"]}
    assert (out / "drift" / "drift.png").exists() and (out / "drift" / "report.md").exists()


def test_the_onnx_export_loads_in_onnxruntime_and_optimum(quickstart):
    import onnxruntime as ort
    import torch
    from optimum.onnxruntime import ORTModelForImageClassification
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    out, _ = quickstart
    files = sorted(DIGITS.glob("test/*/*.png"))[::12]
    proc = AutoImageProcessor.from_pretrained(out / "export", use_fast=False)
    pv = proc(images=[Image.open(f).convert("RGB") for f in files], return_tensors="np")["pixel_values"]
    session = ort.InferenceSession(str(out / "export" / "model.onnx"))
    a = session.run(["logits"], {"pixel_values": pv})[0]
    b = ORTModelForImageClassification.from_pretrained(out / "export")(pixel_values=torch.from_numpy(pv)).logits.numpy()
    ref = AutoModelForImageClassification.from_pretrained(out / "finetune" / "merged").eval()
    with torch.inference_mode():
        c = ref(pixel_values=torch.from_numpy(pv)).logits.numpy()
    assert np.abs(a - c).max() < 1e-4 and np.abs(b - c).max() < 1e-4


def test_predict_a_folder_keeps_one_row_per_image_and_says_why_one_was_skipped(quickstart, cli, tmp_path):
    out, _ = quickstart
    folder = tmp_path / "new"
    folder.mkdir()
    for f in sorted(DIGITS.glob("test/7/*.png"))[:5]:
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "zz-broken.png").write_bytes(b"not a png")
    for model in (out / "finetune", out / "export"):
        code, stdout, stderr = cli("predict", model, "--data", folder)
        assert code == 0, stderr
        rows = [json.loads(x) for x in stdout.splitlines()]
        assert [r["row"] for r in rows] == [1, 2, 3, 4, 5, 6]
        assert sum(r["predicted"] == "7" for r in rows[:5]) >= 4
        assert rows[5]["predicted"] is None and rows[5]["skipped"].startswith("cannot read image: not an image")
        assert "1 skipped" in stderr


def test_evaluate_gates_on_the_lower_bound_and_needs_labels(quickstart, cli, tmp_path):
    out, _ = quickstart
    code, stdout, stderr = cli("evaluate", out / "finetune", "--data", DIGITS / "test", "--min", "accuracy=0.999", "--json")
    assert code == 5, stderr
    g = json.loads(stdout)["gates"][0]
    assert g["decided_on"] == "lower bound" and g["n"] == 360 and g["passed"] is False
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.png").write_bytes((DIGITS / "train" / "0" / "0000.png").read_bytes())
    code, _, stderr = cli("evaluate", out / "finetune", "--data", flat)
    assert code == 3 and "has no images in label sub-folders" in stderr, stderr
