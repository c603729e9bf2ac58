"""nncli drift for image classifiers: the reference profile image finetune and image evaluate --output write, drift
quiet on held-out digits, firing on a shifted copy (image statistics, embeddings, predictions, accuracy), the image
statistics' values, and bad input named with exit 3."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "data"
DIGITS, TINY_RESNET = RECIPES / "digits", RECIPES / "tiny-resnet"


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    """The shipped tiny ResNet fine-tuned briefly on the shipped digits (train/ and test/ folders)."""
    from typer.testing import CliRunner

    from nncli.cli import app

    out = tmp_path_factory.mktemp("imgdrift") / "run"
    r = CliRunner().invoke(app, ["finetune", "--model", str(TINY_RESNET), "--data", str(DIGITS), "-o", str(out), "--method",
                                 "full", "train.lr=3e-3", "train.epochs=2", "data.augment.hflip=false", "--quiet"])
    assert r.exit_code == 0, r.stderr
    return out


def _shifted(dst: Path, labelled: bool, n: int | None = None) -> Path:
    """The test digits with a third of their contrast and a brighter background (a washed-out scanner)."""
    from PIL import Image

    for f in sorted(DIGITS.glob("test/*/*.png"))[:n]:
        a = np.asarray(Image.open(f).convert("L"), dtype=np.float64)
        target = dst / f.parent.name if labelled else dst
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(0.4 * a + 100, 0, 255).astype(np.uint8)).save(target / f"{f.parent.name}-{f.name}")
    return dst


def _drift(cli, *args):
    code, stdout, stderr = cli("drift", *args, "--json")
    return code, (json.loads(stdout) if stdout.strip().startswith("{") else None), stderr


def test_statistics_of_known_images():
    from PIL import Image

    from nncli.evaluate.drift_images import statistics

    red = statistics(Image.new("RGB", (40, 20), (255, 0, 0)))
    assert (red["width"], red["height"], red["aspect"]) == (40, 20, 2.0)
    assert red["brightness"] == pytest.approx(0.299) and red["contrast"] == 0 and red["saturation"] == 1
    assert red["colourfulness"] == pytest.approx(0.3 * np.hypot(255, 127.5))        # Hasler-Süsstrunk: 0.3 * |mean|
    checker = np.zeros((10, 10, 3), dtype=np.uint8)
    checker[::2] = 255
    s = statistics(Image.fromarray(checker))
    assert s["brightness"] == pytest.approx(0.5) and s["contrast"] == pytest.approx(0.5)
    assert s["colourfulness"] == 0 and s["saturation"] == 0
    big = statistics(Image.new("RGB", (1000, 500), (10, 200, 30)))                     # sized on the file, not the copy
    assert (big["width"], big["height"]) == (1000, 500)


@pytest.mark.slow
def test_image_finetune_writes_a_profile_and_the_test_digits_do_not_drift(image_run, cli, tmp_path):
    meta = json.loads((image_run / "profile.json").read_text())
    report = json.loads((image_run / "report.json").read_text())
    assert meta["task"] == "image-classification" and meta["rows"] == 1437 and report["artifacts"]["profile"] == "profile.json"
    assert {"width", "brightness", "contrast", "colourfulness", "saturation"} <= set(meta["features"])
    m = meta["model"]
    assert m["ref"] == "merged" and m["rows"] == 144 and m["split"] == "validation" and m["selected_on"] is True
    assert m["accuracy"] == pytest.approx(report["metrics"]["validation"]["accuracy"])
    assert m["embeddings"]["dims"] == 32            # the tiny ResNet's pooled output

    code, r, stderr = _drift(cli, "-r", image_run, "-c", DIGITS / "test", "-o", tmp_path / "quiet")
    assert code == 0, stderr
    assert r["drift_detected"] is False and r["task"] == "image-classification" and r["current"]["rows"] == 360
    assert {t["kind"] for t in r["tests"]} == {"image", "label", "model", "embedding", "accuracy"}
    assert r["accuracy"]["actual"] == pytest.approx(report["metrics"]["test"]["accuracy"])
    md = (tmp_path / "quiet" / "report.md").read_text()
    assert "no drift" in md and "brightness" in md and "chose the checkpoint (optimistic)" in md
    assert (tmp_path / "quiet" / "drift.png").stat().st_size > 1000


@pytest.mark.slow
def test_shifted_digits_drift_on_image_statistics_embeddings_and_accuracy(image_run, cli, tmp_path):
    code, r, stderr = _drift(cli, "-r", image_run, "-c", _shifted(tmp_path / "labelled", labelled=True))
    assert code == 5, stderr
    drifting = {t["feature"] for t in r["tests"] if t["drift"]}
    assert {"brightness", "contrast", "embeddings", "accuracy"} <= drifting
    assert not drifting & {"width", "height", "aspect", "colourfulness", "saturation"}       # what did not change
    assert r["top_drifting"][:2] == ["brightness", "contrast"] and "drift detected" in stderr
    assert r["accuracy"]["actual"] < r["accuracy"]["reference"] - 0.05

    code, r, stderr = _drift(cli, "-r", image_run, "-c", _shifted(tmp_path / "flat", labelled=False, n=120))
    assert code == 5, stderr
    assert r["current"]["has_labels"] is False and "actual" not in r["accuracy"]
    assert {"brightness", "contrast", "embeddings"} <= {t["feature"] for t in r["tests"] if t["drift"]}


@pytest.mark.slow
def test_bad_current_images_are_named_with_exit_3(image_run, cli, tmp_path):
    folder = tmp_path / "cur"
    folder.mkdir()
    for f in sorted(DIGITS.glob("test/3/*.png"))[:25]:
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "broken.png").write_bytes(b"not a png")
    code, _, stderr = _drift(cli, "-r", image_run, "-c", folder)
    assert code == 3 and "broken.png" in stderr and "not an image" in stderr, stderr
    listing = tmp_path / "list.csv"
    listing.write_text("image\n" + "".join(f"{f}\n" for f in sorted(DIGITS.glob("test/3/*.png"))[:25]) + "gone.png\n")
    code, _, stderr = _drift(cli, "-r", image_run, "-c", listing)
    assert code == 3 and "gone.png" in stderr and "file not found" in stderr, stderr
    few = tmp_path / "few"
    few.mkdir()
    (few / "a.png").write_bytes(next(DIGITS.glob("test/3/*.png")).read_bytes())
    code, _, stderr = _drift(cli, "-r", image_run, "-c", few)
    assert code == 3 and "too few" in stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_evaluate_output_an_image_folder_and_an_onnx_model_as_references(image_run, cli, tmp_path):
    code, _, stderr = cli("evaluate", image_run, "--data", DIGITS / "test", "-o", tmp_path / "ev", "--json")
    assert code == 0, stderr
    meta = json.loads((tmp_path / "ev" / "profile.json").read_text())
    assert meta["task"] == "image-classification" and meta["rows"] == 360 and meta["model"]["split"] == "evaluated"
    assert meta["model"]["ref"] == str(image_run.resolve())
    listing = tmp_path / "cur.csv"                       # a listing with labels: the actual accuracy too
    listing.write_text("path,digit\n" + "".join(f"{f},{f.parent.name}\n" for f in sorted(DIGITS.glob("train/*/*.png"))[::5]))
    code, r, stderr = _drift(cli, "-r", tmp_path / "ev", "-c", listing, "--image-column", "path", "--label-column", "digit")
    assert r is not None and r["current"]["has_labels"] is True and "actual" in r["accuracy"], stderr

    code, r, stderr = _drift(cli, "-r", DIGITS / "train", "-c", DIGITS / "test", "--model", image_run)
    assert code == 0, stderr
    assert r["reference"]["rows"] == 1437 and {"image", "label", "model", "embedding"} <= {t["kind"] for t in r["tests"]}

    code, _, stderr = cli("export", image_run, "-o", tmp_path / "onnx")
    assert code == 0, stderr
    code, r, stderr = _drift(cli, "-r", image_run, "-c", _shifted(tmp_path / "s", labelled=True, n=100),
                             "--model", tmp_path / "onnx" / "model.onnx")
    assert code == 5, stderr
    assert "embeddings" not in {t["feature"] for t in r["tests"]}
    assert any("embeddings: not tested" in w and "logits only" in w for w in r["warnings"])
    assert {"brightness", "contrast", "predicted_class"} <= {t["feature"] for t in r["tests"] if t["drift"]}
