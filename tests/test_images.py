"""Images through the one engine: image folders and CSV/JSONL listings, pre-flight that names every unusable file,
tiny ViT / ResNet / ConvNeXt built from configs fine-tuned on real images (scikit-learn's digits), baselines, and
artifacts that load in transformers and peft."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def digits(tmp_path_factory) -> dict[str, Path]:
    from nncli.io.image_demo import write_digits

    return write_digits(tmp_path_factory.mktemp("digits") / "digits")


@pytest.fixture(scope="session")
def tiny_vision(tmp_path_factory):
    from nncli.io.image_demo import tiny_image_model

    root = tmp_path_factory.mktemp("vision")
    return {a: tiny_image_model(root / a, a) for a in ("vit", "resnet", "convnext")}


def _train(cli, model, data, out, *extra):
    code, stdout, stderr = cli("finetune", "--model", model, "--data", data, "-o", out, "data.augment.hflip=false", *extra,
                               "--json")
    return code, (json.loads(stdout) if stdout.strip().startswith("{") else None), stderr


def _accuracy_with_transformers(model_dir: Path, test_dir: Path) -> float:
    """What a user's own client computes: AutoModelForImageClassification + AutoImageProcessor on the test images."""
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(model_dir).eval()
    proc = AutoImageProcessor.from_pretrained(model_dir, use_fast=False)
    files = sorted(test_dir.glob("*/*.png"))
    with torch.inference_mode():
        batches = [proc(images=[Image.open(f).convert("RGB") for f in files[i:i + 128]], return_tensors="pt")
                   for i in range(0, len(files), 128)]
        logits = torch.cat([model(**b).logits for b in batches])
    pred = [model.config.id2label[int(i)] for i in logits.argmax(1)]
    return float(np.mean([p == f.parent.name for f, p in zip(files, pred)]))


# ---------------------------------------------------------------------------------------------- training on digits

def test_vit_learns_digits_and_merged_loads_in_transformers(cli, digits, tiny_vision, tmp_path):
    """No --task: an image folder is detected as an image dataset; root/train and root/test are read as splits."""
    out = tmp_path / "vit"
    code, r, stderr = _train(cli, tiny_vision["vit"], digits["root"], out, "--method", "full", "train.lr=3e-3", "train.epochs=5",
                        "train.batch_size=32")
    assert code == 0, stderr
    assert r["task"] == "image-classification" and r["data"]["rows"]["test"]["kept"] == 360
    test, majority = r["metrics"]["test"], r["baselines"]["majority_class"]["test"]["accuracy"]
    assert majority == pytest.approx(37 / 360, abs=0.01)
    assert test["accuracy"] > majority + 0.2 and test["ci95"]["accuracy"][0] > majority     # measured 0.48 (from scratch)
    assert set(r["baselines"]["linear_probe"]) == {"validation", "test"}
    assert np.asarray(test["confusion"]).sum() == 360
    assert r["data"]["images"]["converted_to_rgb"]["grayscale"] == 1797
    assert _accuracy_with_transformers(out / "merged", digits["test"]) == pytest.approx(test["accuracy"], abs=1e-9)
    from PIL import Image
    from transformers import pipeline

    first = sorted(digits["test"].glob("3/*.png"))[0]
    top = pipeline("image-classification", model=str(out / "merged"))(Image.open(first).convert("RGB"))
    assert top[0]["label"] in [str(d) for d in range(10)]
    for f in ("README.md", "curves.png", "confusion.png", "recipe.yaml"):
        assert (out / f).exists(), f
    assert "linear probe" in (out / "README.md").read_text()


def test_resnet_lora_learns_digits_and_the_adapter_loads_with_peft(cli, digits, tiny_vision, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForImageClassification

    out = tmp_path / "resnet"
    code, r, stderr = _train(cli, tiny_vision["resnet"], digits["root"], out, "train.lr=5e-3", "train.epochs=2",
                                  "train.batch_size=32")
    assert code == 0, stderr
    assert "LoRA: ResNetForImageClassification has no attention layers; LoRA adapts its 6 convolution" in stderr
    t = r["training"]
    assert t["fully_trained_modules"] == ["classifier"] and t["lora_target_count"] == 6 and t["batch_norms_trained"] == 6
    assert r["metrics"]["test"]["accuracy"] > r["baselines"]["majority_class"]["test"]["accuracy"] + 0.4
    config = AutoConfig.from_pretrained(out / "adapter")
    base = AutoModelForImageClassification.from_pretrained(tiny_vision["resnet"], config=config, ignore_mismatched_sizes=True)
    peft_model = PeftModel.from_pretrained(base, out / "adapter").eval()
    merged = AutoModelForImageClassification.from_pretrained(out / "merged").eval()
    x = torch.rand(4, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(peft_model(pixel_values=x).logits, merged(pixel_values=x).logits, atol=1e-4)


def test_convnext_full_and_vit_lora_on_attention_projections(cli, digits, tiny_vision, tmp_path):
    code, r, stderr = _train(cli, tiny_vision["convnext"], digits["root"], tmp_path / "cnx", "--method", "full", "train.lr=5e-3",
                             "train.epochs=3", "train.batch_size=32")
    assert code == 0, stderr
    assert r["metrics"]["test"]["accuracy"] > r["baselines"]["majority_class"]["test"]["accuracy"] + 0.15   # measured 0.375
    code, r, stderr = _train(cli, tiny_vision["vit"], digits["train"], tmp_path / "vit-lora", "--task", "image-classification",
                             "train.max_steps=3", "data.max_train_samples=300")
    assert code == 0, stderr
    assert r["training"]["lora_targets"] == ["key", "query", "value"] and r["training"]["fully_trained_modules"] == ["classifier"]
    cfg = json.loads((tmp_path / "vit-lora" / "adapter" / "adapter_config.json").read_text())
    assert cfg["modules_to_save"] == ["classifier"]
    assert all(t.rsplit(".", 1)[-1] in ("query", "key", "value") for t in cfg["target_modules"])


# ---------------------------------------------------------------------------------------------- the recipe is closed

def test_image_recipe_refuses_text_keys_and_attention_lora_on_a_cnn(cli, digits, tiny_vision, tmp_path):
    code, _, stderr = _train(cli, tiny_vision["vit"], digits["root"], tmp_path / "a", "data.max_length=64")
    assert code == 2 and "data.max_length: does not apply to task image-classification" in stderr
    code, _, stderr = _train(cli, tiny_vision["resnet"], digits["root"], tmp_path / "b", "lora.target_modules=attention")
    assert code == 2 and "ResNetForImageClassification has no attention layers (it is convolutional)" in stderr
    assert not (tmp_path / "b" / "merged").exists()
    code, _, stderr = cli("finetune", "--data", digits["root"], "-o", tmp_path / "c")
    assert code == 2 and "model.name: required for images" in stderr


# ---------------------------------------------------------------------------------------------- files pre-flight names

def _small_folder(root: Path, n: int = 6) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / label / f"{label}{i}.png")
    return root


@pytest.mark.parametrize("name, content, says", [
    ("broken.png", "truncate", "image file is truncated"),
    ("notes.txt", b"a note", "not an image: .txt"),
    ("fake.jpg", b"this is text, not a jpeg", "not an image (the file's content is no known image format)"),
])
def test_unusable_files_are_named_with_exit_3(name, content, says, cli, tiny_vision, tmp_path):
    root = _small_folder(tmp_path / "data")
    bad = root / "cat" / name
    if content == "truncate":
        good = (root / "cat" / "cat0.png").read_bytes()
        bad.write_bytes(good[: len(good) // 2])
    else:
        bad.write_bytes(content)
    code, _, stderr = _train(cli, tiny_vision["vit"], root, tmp_path / "run")
    assert code == 3, stderr
    first = json.loads(stderr.strip().splitlines()[-1]) if stderr.strip().startswith("{") else None
    line = first["error"] if first else stderr
    assert f"1 image file(s) cannot be used: {bad} (" in line and says in line, stderr
    assert not (tmp_path / "run").exists()


def test_an_unreadable_folder_is_named_with_exit_3(cli, tiny_vision, tmp_path, monkeypatch):
    root = _small_folder(tmp_path / "data")
    locked = root / "dog"
    real = Path.iterdir

    def iterdir(self):
        if self == locked:
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    code, _, stderr = cli("finetune", "--task", "image-classification", "--model", tiny_vision["vit"], "--data", root, "-o",
                          tmp_path / "run")
    assert code == 3 and f"train image folder {locked} cannot be read (permission denied)" in stderr, stderr


def test_a_listing_with_a_missing_file_names_it(cli, tiny_vision, tmp_path):
    root = _small_folder(tmp_path / "data")
    rows = [{"image": str(p.relative_to(root)), "label": p.parent.name} for p in sorted(root.glob("*/*.png"))]
    rows.append({"image": "cat/gone.png", "label": "cat"})
    listing = root / "train.jsonl"
    listing.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, _, stderr = _train(cli, tiny_vision["vit"], listing, tmp_path / "run", "--task", "image-classification")
    assert code == 3 and f"{root / 'cat' / 'gone.png'} (row {len(rows)}: file not found)" in stderr, stderr
    csv = root / "train.csv"                      # the same listing without the missing file, as a CSV: it reads
    csv.write_text("image,label\n" + "".join(f"{r['image']},{r['label']}\n" for r in rows[:-1]))
    code, r, stderr = _train(cli, tiny_vision["vit"], csv, tmp_path / "run", "--task", "image-classification", "--dry-run",
                             "data.validation_fraction=0.2")
    assert code == 0, stderr
    assert r["data"]["rows"]["train"]["kept"] + r["data"]["rows"]["validation"]["kept"] == 12
    assert r["data"]["label_names"] == ["cat", "dog"]


# ---------------------------------------------------------------------------------------------- conversions and counts

def _odd_images(root: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (24, 40, 3), dtype=np.uint8)
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir(parents=True)
    Image.fromarray(rgb[..., 0]).save(root / "a" / "gray.png")
    Image.fromarray(np.dstack([rgb, np.full((24, 40), 128, np.uint8)])).save(root / "a" / "alpha.png")
    Image.fromarray(rgb).convert("CMYK").save(root / "a" / "cmyk.jpg")
    Image.fromarray(rgb[..., 1].astype(np.uint16) * 257).save(root / "a" / "deep.png")
    exif = Image.Exif()
    exif[0x0112] = 6                       # rotate 90 degrees to be upright
    Image.fromarray(rgb).save(root / "b" / "rotated.jpg", exif=exif)
    Image.fromarray(rgb[:8, :8]).save(root / "b" / "tiny.png")
    Image.fromarray(rgb).save(root / "b" / "plain.png")
    Image.fromarray(rgb).save(root / "b" / "copy.png")


def test_conversions_rotations_tiny_and_duplicates_are_counted(cli, tiny_vision, tmp_path):
    root = tmp_path / "odd"
    _odd_images(root / "train")
    test = root / "test" / "b"
    test.mkdir(parents=True)
    (test / "leak.png").write_bytes((root / "train" / "b" / "plain.png").read_bytes())
    (root / "test" / "a").mkdir()
    (root / "test" / "a" / "g.png").write_bytes((root / "train" / "a" / "gray.png").read_bytes())
    code, r, stderr = _train(cli, tiny_vision["vit"], root, tmp_path / "run", "--dry-run", "data.validation_fraction=0.25")
    assert code == 0, stderr
    im = r["data"]["images"]
    assert im["converted_to_rgb"] == {"grayscale": 3, "with_alpha": 1, "cmyk": 1, "high_bit_depth": 1}
    assert im["exif_rotated"] == 1 and im["tiny"] == 1 and im["duplicates_in_train"] + sum(im["overlap"].values()) >= 2
    assert any(w.startswith("leakage: 2 of 2 test images") for w in r["warnings"]), r["warnings"]
    assert any("smaller than 16 px" in w for w in r["warnings"])


def test_to_rgb_scales_16_bit_applies_exif_and_composites_alpha(tmp_path):
    from PIL import Image

    from nncli.io.image_checks import load_rgb

    _odd_images(tmp_path)
    deep = np.asarray(load_rgb(str(tmp_path / "a" / "deep.png")))
    src = np.random.default_rng(1).integers(0, 255, (24, 40, 3), dtype=np.uint8)[..., 1]
    assert deep.shape == (24, 40, 3) and np.abs(deep[..., 0].astype(int) - src).max() <= 1    # not clipped to white
    assert load_rgb(str(tmp_path / "b" / "rotated.jpg")).size == (24, 40)                     # upright: width and height swap
    alpha = np.asarray(load_rgb(str(tmp_path / "a" / "alpha.png"))).astype(int)
    assert Image.open(tmp_path / "a" / "alpha.png").mode == "RGBA" and alpha.min() >= 127     # half-transparent on white


def test_interrupt_then_resume_repeats_the_augmented_run(digits, tiny_vision, tmp_path, cli):
    """Random crops and flips come from torch's generator, which the checkpoint saves: --resume gives the same model."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = ["finetune", "--model", tiny_vision["resnet"], "--data", digits["root"], "--method", "full", "train.lr=3e-3",
            "train.epochs=3", "train.early_stopping_patience=0", "data.max_train_samples=240", "train.threads=2",
            "data.augment.color_jitter=0.2"]
    code, stdout, stderr = cli(*args, "-o", tmp_path / "ref", "--json")
    assert code == 0, stderr
    expected = json.loads(stdout)
    out, marker = tmp_path / "run", tmp_path / "held"
    env = {**os.environ, "NNCLI_TEST_HOLD": "train.step", "NNCLI_TEST_HOLD_FILE": str(marker)}
    proc = subprocess.Popen([sys.executable, "-m", "nncli", *map(str, args), "-o", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 300
    while time.time() < deadline and not marker.exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    code, stdout, stderr = cli(*args, "-o", out, "--resume", "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["metrics"] == expected["metrics"]
