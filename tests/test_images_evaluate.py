"""`nncli evaluate` on image classifiers beyond the metrics: robustness under seeded image perturbations (flip rate and
accuracy with exact intervals, recounted here with transformers), slices by a listing's metadata column, --calibrate
by the text rule (the run's validation split, never the evaluated images), and the grid of the most confident mistakes.
One tiny ResNet (built from a config) is fine-tuned once on the shipped digits."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

DIGITS = Path(__file__).resolve().parents[1] / "recipes" / "data" / "digits"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from typer.testing import CliRunner

    from nncli.cli import app
    from nncli.io.image_demo import tiny_image_model

    root = tmp_path_factory.mktemp("imgeval")
    model = tiny_image_model(root / "resnet", "resnet", num_labels=10)
    r = CliRunner().invoke(app, ["finetune", "--model", str(model), "--data", str(DIGITS), "-o", str(root / "run"),
                                 "--method", "full", "train.lr=3e-3", "train.epochs=3", "train.batch_size=32",
                                 "data.augment.hflip=false", "data.max_train_samples=600", "--json"])
    assert r.exit_code == 0, r.stderr
    return root / "run"


@pytest.fixture(scope="module")
def listing(tmp_path_factory) -> Path:
    """120 test digits (12 per class) listed with a metadata column: scanner a, b or c (every third image)."""
    d = tmp_path_factory.mktemp("listing")
    rows = []
    for digit in range(10):
        for f in sorted((DIGITS / "test" / str(digit)).glob("*.png"))[:12]:
            rows.append({"image": str(f), "label": str(digit), "scanner": "abc"[len(rows) % 3]})
    return _write_listing(d / "test.csv", rows)


def _write_listing(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def _evaluate(cli, *args):
    code, stdout, stderr = cli("evaluate", *args, "--json")
    assert code == 0, stderr
    return json.loads(stdout), stderr


def _predictions(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------------------------------- perturbations

def test_every_image_perturbation_changes_pixels_and_is_seeded():
    from nncli.evaluate import image_perturb
    from nncli.io.image_checks import load_rgb

    images = [load_rgb(f) for f in sorted((DIGITS / "test" / "3").glob("*.png"))[:4]]
    for name in image_perturb.PERTURBATIONS:
        once, again = image_perturb.apply(name, images, seed=0), image_perturb.apply(name, images, seed=0)
        for a, b, im in zip(once, again, images):
            assert a.mode == "RGB" and a.size == im.size, name
            assert np.array_equal(np.asarray(a), np.asarray(b)), f"{name} is not seeded"
            assert np.abs(np.asarray(a, dtype=int) - np.asarray(im, dtype=int)).mean() > 1.0, f"{name} left the image as is"
    # the sample's position, not the batch, seeds an image: the second image alone (start=1) is perturbed the same way
    alone = image_perturb.apply("gaussian_noise", images[1:2], seed=0, start=1)[0]
    assert np.array_equal(np.asarray(alone), np.asarray(image_perturb.apply("gaussian_noise", images, seed=0)[1]))
    other_seed = image_perturb.apply("gaussian_noise", images[1:2], seed=1, start=1)[0]
    assert not np.array_equal(np.asarray(alone), np.asarray(other_seed))


def test_scores_of_unchanged_and_changed_predictions():
    from nncli.evaluate.robustness import score

    y = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1, 1])
    same = score(y, y.copy(), y)
    assert same["flip_rate"] == 0.0 and same["flips"] == 0 and same["accuracy"] == 1.0 and same["accuracy_drop"] == 0.0
    assert same["flip_rate_ci95"][0] == 0.0 and same["flip_rate_ci95"][1] == pytest.approx(1 - 0.025 ** (1 / 10))
    changed = y.copy()
    changed[:3] = 1 - changed[:3]
    s = score(y, changed, y)
    assert s["flips"] == 3 and s["flip_rate"] == 0.3 and s["accuracy"] == 0.7 and s["accuracy_drop"] == pytest.approx(0.3)
    from scipy.stats import beta

    assert s["flip_rate_ci95"] == pytest.approx([beta.ppf(0.025, 3, 8), beta.ppf(0.975, 4, 7)])


def test_a_text_perturbation_for_an_image_model_is_a_usage_error(trained, listing, cli):
    code, _, stderr = cli("evaluate", trained, "--data", listing, "robustness.perturbations=[typo_swap]")
    assert code == 2 and "typo_swap is not an image perturbation" in stderr and "gaussian_noise" in stderr, stderr


# ---------------------------------------------------------------------------------------------- robustness end to end

def _recount(model_dir: Path, paths: list[str], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Clean and perturbed predictions the way a user's own client gets them: transformers on the decoded images."""
    import torch
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from nncli.evaluate import image_perturb
    from nncli.io.image_checks import load_rgb

    model = AutoModelForImageClassification.from_pretrained(model_dir).eval()
    proc = AutoImageProcessor.from_pretrained(model_dir, use_fast=False)
    images = [load_rgb(p) for p in paths]
    with torch.inference_mode():
        clean = model(**proc(images=images, return_tensors="pt")).logits.argmax(1).numpy()
        moved = model(**proc(images=image_perturb.apply(name, images, seed=0), return_tensors="pt")).logits.argmax(1).numpy()
    return clean, moved


@pytest.mark.slow
def test_robustness_flip_rates_match_a_recount_and_an_unchanged_image_flips_nothing(trained, listing, tmp_path, cli,
                                                                                    monkeypatch):
    from nncli.evaluate import image_perturb

    monkeypatch.setitem(image_perturb.PERTURBATIONS, "jpeg", lambda im, rng: im)    # the same image: nothing may flip
    out = tmp_path / "ev"
    r, _ = _evaluate(cli, trained, "--data", listing, "-o", out, "--max", "robustness.contrast.flip_rate=1.0")
    rb = r["models"][0]["robustness"]
    assert rb["samples"] == 120 and list(rb["perturbations"]) == list(image_perturb.PERTURBATIONS)
    jpeg = rb["perturbations"]["jpeg"]
    assert jpeg["flips"] == 0 and jpeg["flip_rate_ci95"] == [0.0, pytest.approx(1 - 0.025 ** (1 / 120))]
    rows = _predictions(out)
    y = np.array([int(x["label"]) for x in rows])
    clean, moved = _recount(trained / "merged", [x["image"] for x in rows], "contrast")
    assert [str(c) for c in clean] == [x["predicted"] for x in rows]
    contrast = rb["perturbations"]["contrast"]
    assert contrast["flips"] == int((clean != moved).sum()) > 0
    assert contrast["accuracy"] == pytest.approx(float((moved == y).mean()))
    assert rb["clean_accuracy"] == pytest.approx(r["metrics"]["accuracy"])
    assert r["metrics"]["max_flip_rate"] == max(p["flip_rate"] for p in rb["perturbations"].values())
    gate = r["gates"][0]
    assert gate["decided_on"] == "upper bound" and gate["n"] == 120 and gate["ci95"] == contrast["flip_rate_ci95"]


# ---------------------------------------------------------------------------------------------- slices, mistakes

@pytest.mark.slow
def test_slices_on_a_listing_match_the_predictions_and_the_mistakes_grid(trained, listing, tmp_path, cli):
    from PIL import Image

    from nncli.evaluate.image_mistakes import COLUMNS, TILE_INCHES, TITLE_INCHES

    out = tmp_path / "ev"
    r, stderr = _evaluate(cli, trained, "--data", listing, "--slice-column", "scanner", "-o", out, "robustness.samples=40",
                          "--min", "worst_slice_accuracy=0.01")
    m = r["models"][0]
    rows = _predictions(out)
    by = {v: [x["label"] == x["predicted"] for x in rows if x["slice"] == v] for v in "abc"}
    assert {s["value"]: (s["count"], s["accuracy"]) for s in m["slices"]} == {v: (40, pytest.approx(np.mean(k)))
                                                                            for v, k in by.items()}
    assert all(s["small"] is False for s in m["slices"])
    assert r["metrics"]["worst_slice_accuracy"] == pytest.approx(min(np.mean(k) for k in by.values()))
    assert r["gates"][0]["n"] == 40 and r["gates"][0]["decided_on"] == "lower bound"
    assert (m["robustness"]["samples"], m["robustness"]["rows"], m["robustness"]["sample_cap"]) == (40, 120, 40)
    assert "on 40 images (a seeded sample of 120" in stderr
    # the grid of the most confident mistakes
    wrong = sorted((x for x in rows if x["label"] != x["predicted"]), key=lambda x: -x["confidence"])
    shown = min(16, len(wrong))
    assert len(wrong) > 0 and m["mistakes"]["mistakes"] == len(wrong) and m["mistakes"]["shown"] == shown
    assert [x["confidence"] for x in m["mistakes"]["images"]] == [x["confidence"] for x in wrong[:shown]]
    assert m["artifacts"]["mistakes"] == "mistakes.png"
    with Image.open(out / "mistakes.png") as im:
        cols, grid_rows = min(COLUMNS, shown), -(-shown // COLUMNS)
        assert im.format == "PNG"
        assert im.size == (round(cols * TILE_INCHES * 110), round(grid_rows * (TILE_INCHES + TITLE_INCHES) * 110))


@pytest.mark.slow
def test_no_mistakes_no_grid(trained, listing, tmp_path, cli):
    first = tmp_path / "first"
    _evaluate(cli, trained, "--data", listing, "-o", first, "--no-robustness")
    right = [{"image": x["image"], "label": x["label"]} for x in _predictions(first) if x["label"] == x["predicted"]][:20]
    out = tmp_path / "right"
    r, _ = _evaluate(cli, trained, "--data", _write_listing(tmp_path / "right.csv", right), "-o", out, "--no-robustness")
    m = r["models"][0]
    assert r["metrics"]["accuracy"] == 1.0 and not (out / "mistakes.png").exists() and "mistakes" not in m["artifacts"]
    assert m["mistakes"] == {"mistakes": 0, "shown": 0, "file": None,
                             "note": "no mistakes on these images: mistakes.png not written"}


def test_slice_column_on_an_image_folder_is_a_usage_error(trained, tmp_path, cli):
    code, _, stderr = cli("evaluate", trained, "--data", DIGITS / "test", "--slice-column", "scanner", "-o", tmp_path / "ev")
    assert code == 2 and "an image folder" in stderr and "pass a CSV/JSONL listing" in stderr, stderr
    assert not (tmp_path / "ev").exists()


def test_unknown_slice_column_names_the_columns(trained, listing, cli):
    code, _, stderr = cli("evaluate", trained, "--data", listing, "--slice-column", "scaner")
    assert code == 2 and "column 'scaner' not found (columns: scanner)" in stderr and "did you mean 'scanner'" in stderr


# ---------------------------------------------------------------------------------------------- calibration

@pytest.mark.slow
def test_calibrate_fits_on_the_runs_validation_split_and_stores_the_temperature(trained, listing, tmp_path, cli):
    run = tmp_path / "run"
    shutil.copytree(trained, run)          # --calibrate writes calibration.json beside the model
    r, stderr = _evaluate(cli, run, "--data", listing, "--calibrate", "--no-robustness")
    c = r["models"][0]["calibration"]
    assert c["fitted_on"] == f"{run}/recipe.yaml validation split" and c["fitted_rows"] == 60
    assert c["decision"]["status"] in ("fitted", "bounded") and c["ece_after"] == r["metrics"]["ece"]
    assert c["ece_after"] < c["ece_before"] and c["previous_temperature"] == 1.0 and c["temperature"] < 1.0
    assert f"ECE on the evaluation data {c['ece_before']:.4f} -> {c['ece_after']:.4f}" in stderr
    stored = json.loads((run / "merged" / "calibration.json").read_text())
    assert stored["temperature"] == c["temperature"] and c["stored_in"] == str(run / "merged" / "calibration.json")
    again, _ = _evaluate(cli, run, "--data", listing, "--no-robustness")       # later evaluations use it
    assert again["models"][0]["calibration"]["temperature"] == c["temperature"]
    assert again["metrics"]["ece"] == pytest.approx(c["ece_after"])
    # calibrating on the evaluated images themselves is said to be optimistic
    r, _ = _evaluate(cli, run, "--data", listing, "--calibrate", "--validation", listing, "--no-robustness")
    assert any("overlaps the evaluation data (100% of images)" in w for w in r["warnings"])


def test_calibrate_without_validation_data_is_refused_before_anything_is_written(tmp_path, cli):
    from nncli.io.image_demo import tiny_image_model

    model = tiny_image_model(tmp_path / "m", "resnet", num_labels=10)
    code, _, stderr = cli("evaluate", model, "--data", DIGITS / "test", "--calibrate", "-o", tmp_path / "ev")
    assert code == 3 and "--calibrate needs validation data" in stderr and "--validation" in stderr, stderr
    assert not (tmp_path / "ev").exists()
