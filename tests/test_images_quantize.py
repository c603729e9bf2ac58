"""`nncli quantize` of an image classifier: ONNX Runtime static int8 (QDQ, per channel) calibrated on training images,
judged next to dynamic int8 the same way (accuracy with its interval, the drop's 95% upper bound, flips, size, speed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

DIGITS = Path(__file__).resolve().parents[1] / "recipes" / "data" / "digits"


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory):
    from typer.testing import CliRunner

    from nncli.cli import app
    from nncli.io.image_demo import tiny_image_model

    root = tmp_path_factory.mktemp("iq8")
    model = tiny_image_model(root / "resnet", "resnet", num_labels=10)
    out = root / "run"
    r = CliRunner().invoke(app, ["finetune", "--model", str(model), "--data", str(DIGITS), "-o", str(out), "--method", "full",
                                 "data.augment.hflip=false", "train.lr=3e-3", "train.epochs=4", "train.batch_size=32"])
    assert r.exit_code == 0, r.stderr
    return out


@pytest.mark.slow
def test_static_int8_is_calibrated_on_training_images_and_judged_like_dynamic(cli, resnet_run, tmp_path):
    import onnxruntime as ort
    from transformers import AutoImageProcessor

    out = tmp_path / "q"
    code, stdout, stderr = cli("quantize", resnet_run, "-o", out, "--method", "static", "min_seconds=0.1",
                               "require_speedup=false", "calibration_samples=64", "--json")
    assert code == 0, stderr
    r = json.loads(stdout)
    assert r["chosen"] == "ort-static-int8" and r["data"]["calibration_images"] == 64
    assert "training images" in r["data"]["calibration"] and "minmax" in r["data"]["calibration"]
    row = next(c for c in r["candidates"] if c["candidate"] == "ort-static-int8")
    ref = next(c for c in r["candidates"] if c["candidate"] == "fp32 (torch)")
    assert row["n_labelled"] == ref["n_labelled"] == 504                  # 144 validation + 360 test images
    lo, hi = row["accuracy_ci95"]
    assert lo < row["accuracy"] < hi and hi - lo < 0.2
    assert row["accuracy_drop_upper"] * 100 <= 1.0 and row["flips"] == round(row["flip_rate"] * row["n_flip_texts"])
    assert row["n_flip_texts"] == 1797                                    # every image: train, validation and test
    assert row["int8_ops"] == {"int8": 7, "fp32": 0}                      # all 6 convolutions and the head run in int8
    assert 0 < row["size_mb"] < ref["size_mb"] and row["throughput_per_second"] > 0
    # what a user's client does: the kept model loads in a plain InferenceSession and agrees with the report
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert {n.op_type for n in __import__("onnx").load(str(out / "model.onnx")).graph.node} >= {"QuantizeLinear", "Conv"}
    from PIL import Image

    proc = AutoImageProcessor.from_pretrained(out, use_fast=False)
    files = sorted(DIGITS.glob("test/*/*.png"))
    pv = proc(images=[Image.open(f).convert("RGB") for f in files], return_tensors="np")["pixel_values"]
    config = json.loads((out / "config.json").read_text())
    pred = [config["id2label"][str(i)] for i in session.run(["logits"], {"pixel_values": pv})[0].argmax(1)]
    assert np.mean([p == f.parent.name for f, p in zip(files, pred)]) >= ref["accuracy"] - 0.02


@pytest.mark.slow
def test_auto_tries_static_next_to_dynamic_and_a_bare_model_cannot_calibrate(cli, resnet_run, tmp_path):
    code, stdout, stderr = cli("quantize", resnet_run, "-o", tmp_path / "a", "min_seconds=0.05", "require_speedup=false",
                               "calibration_samples=16", "--json")
    assert code == 0, stderr
    names = [c["candidate"] for c in json.loads(stdout)["candidates"]]
    assert names == ["fp32 (torch)", "fp32 (onnxruntime)", "ort-dynamic-int8", "ort-dynamic-int8-per-channel", "ort-static-int8"]
    import shutil

    bare = shutil.copytree(resnet_run / "merged", tmp_path / "bare")           # a model directory, not a run
    code, _, stderr = cli("quantize", bare, "--data", DIGITS / "test", "-o", tmp_path / "b", "--method", "static")
    assert code == 2 and "static int8 calibrates on the run's training images" in stderr
    assert not (tmp_path / "b").exists()


def test_calibration_sample_is_seeded_and_drawn_from_the_given_images():
    from nncli.deploy.static_images import calibration_images

    train = [f"t{i}.png" for i in range(1000)]
    a, b = calibration_images(train, 256), calibration_images(train, 256)
    assert a == b and len(set(a)) == 256 and set(a) <= set(train) and a != train[:256]
    assert calibration_images(train[:10], 256) == train[:10]
