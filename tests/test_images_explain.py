"""`nncli explain` on image classifiers: on a tiny ResNet trained so that one bright square decides the label, occlusion
and integrated gradients put their heat on the square and beat random orders on the deletion curve; integrated
gradients are complete; PNGs, heatmaps and the HTML page are well formed; attention rollout for a ViT only; bad input
is named."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest


def _square_images(root: Path, n: int, seed: int) -> None:
    """32x32 dark noise; "on" images also have a white 10x10 square somewhere in the top-left 16x16 corner."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n):
        on = i % 2 == 0
        a = rng.integers(0, 60, (32, 32), dtype=np.uint8)
        if on:
            y, x = rng.integers(0, 6, 2)
            a[y:y + 10, x:x + 10] = 255
        d = root / ("on" if on else "off")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(d / f"{i:03d}.png")


@pytest.fixture(scope="module")
def square_run(tmp_path_factory):
    """A tiny ResNet (built from a config) fine-tuned until the square decides its prediction (test accuracy 1.0)."""
    from typer.testing import CliRunner

    from nncli.cli import app
    from nncli.io.image_demo import tiny_image_model

    d = tmp_path_factory.mktemp("squares")
    _square_images(d / "data" / "train", 160, 0)
    _square_images(d / "data" / "test", 20, 1)
    model = tiny_image_model(d / "resnet", "resnet")
    r = CliRunner().invoke(app, ["finetune", "--model", str(model), "--data", str(d / "data"), "-o", str(d / "run"),
                                 "--method", "full", "train.lr=5e-3", "train.epochs=3", "data.augment.hflip=false",
                                 "--json", "-q"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["metrics"]["test"]["accuracy"] == 1.0
    return d / "run", d / "data" / "test"


class _Balance(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.images = [], 0

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images += 1
            assert dict(attrs)["src"].startswith("data:image/png;base64,")
        elif tag not in ("meta", "br"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, tag


@pytest.mark.slow
def test_occlusion_and_ig_find_the_square_and_beat_random(square_run, tmp_path, cli):
    from PIL import Image

    run, test = square_run
    out = tmp_path / "ex"
    code, stdout, stderr = cli("explain", run, "--data", test / "on", "--limit", "3", "--baseline", "black", "-o", out, "--json")
    assert code == 0, stderr
    r = json.loads(stdout)
    assert r["task"] == "image-classification" and r["methods"] == ["ig", "occlusion"] and r["images"] == 3
    assert r["settings"] == {"patch": 4, "stride": 2, "baseline": "black", "cell": 2}       # from the 32x32 input
    for m in ("ig", "occlusion"):
        f = r["faithfulness"][m]
        assert f["beats_random"] and f["images_beating_random"] == 3, (m, f)
        assert f["deletion_auc"] < f["deletion_auc_random"] - 0.2, (m, f)
    heat = np.load(out / "heatmaps.npz")
    assert sorted(heat.files) == [f"{m}_{i:03d}" for m in ("ig", "occlusion") for i in range(3)]
    for i, e in enumerate(r["explanations"]):
        assert e["prediction"] == "on" and e["probability"] > 0.9 and e["label"] is None
        square = np.asarray(Image.open(e["image"])) == 255
        for m in ("ig", "occlusion"):
            h = heat[f"{m}_{i:03d}"]
            assert h.shape == (32, 32)
            assert h[square].mean() > 5 * abs(h[~square].mean()), (m, h[square].mean(), h[~square].mean())
        ig = e["details"]["ig"]     # completeness: the pixel scores add up to p(image) - p(black), within the delta
        assert abs(ig["total_attribution"] - ig["prob_minus_baseline"]) <= ig["convergence_delta"] + 1e-4
        assert ig["convergence_delta"] <= 0.05 * max(ig["prob_minus_baseline"], 0.1)
        assert abs(heat[f"ig_{i:03d}"].sum() - ig["total_attribution"]) < 1e-3
        curve = e["faithfulness"]["occlusion"]["curve"]
        assert len(curve) == 21 and curve[0] == pytest.approx(e["probability"], abs=1e-5)
        png = Image.open(out / e["png"])
        assert png.size == (3 * (32 * 5 + 4), 32 * 5 + 14)      # input, ig, occlusion; enlarged 5x
    disk = json.loads((out / "report.json").read_text())
    assert disk["status"] == "succeeded" and disk["faithfulness"] == r["faithfulness"]
    assert disk["artifacts"]["html"] == "explanations.html"
    p = _Balance()
    p.feed((out / "explanations.html").read_text())
    assert p.stack == [] and p.images == 3


@pytest.mark.slow
def test_one_image_file_with_the_default_baseline(square_run, cli):
    run, test = square_run
    image = sorted((test / "on").glob("*.png"))[0]
    code, stdout, stderr = cli("explain", run, "--data", image, "--method", "occlusion", "--patch", "6", "--stride", "3",
                               "--json")
    assert code == 0, stderr
    r = json.loads(stdout)
    e = r["explanations"][0]
    assert r["images"] == 1 and e["image"] == str(image) and r["settings"]["baseline"] == "zero"
    assert e["details"]["occlusion"] == {"patch": 6, "stride": 3, "windows": 100}     # starts 0,3,...,24 and 26: 10 x 10
    f = r["faithfulness"]["occlusion"]
    assert f["deletion_auc"] < f["deletion_auc_random"], f
    assert r["artifacts"] == {}          # nothing written without -o


def test_attention_rollout_for_a_vit_and_folders_with_labels(tmp_path, cli):
    from nncli.io.image_demo import tiny_image_model

    vit = tiny_image_model(tmp_path / "vit", "vit")           # untrained: rollout still says where the class token looks
    _square_images(tmp_path / "imgs", 2, 3)
    out = tmp_path / "ex"
    code, stdout, stderr = cli("explain", vit, "--data", tmp_path / "imgs", "--steps", "8", "-o", out, "--json")
    assert code == 0, stderr
    r = json.loads(stdout)
    assert r["methods"] == ["ig", "occlusion", "attention"]
    assert [e["label"] for e in r["explanations"]] == ["off", "on"]
    h = np.load(out / "heatmaps.npz")["attention_000"]
    assert h.shape == (32, 32) and h.min() > 0
    blocks = h.reshape(4, 8, 4, 8)       # 8x8 patches: one score per patch
    assert np.allclose(blocks, blocks[:, :1, :, :1]) and len(np.unique(blocks[:, 0, :, 0])) > 1


def test_bad_image_input_is_named(tmp_path, cli):
    from nncli.io.image_demo import tiny_image_model

    resnet = tiny_image_model(tmp_path / "resnet", "resnet")
    _square_images(tmp_path / "imgs", 2, 0)
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    code, _, stderr = cli("explain", resnet, "--data", notes)
    assert code == 3 and "notes.txt" in stderr and "not an image" in stderr
    broken = tmp_path / "imgs" / "on" / "broken.png"
    broken.write_bytes(b"not a png")
    code, _, stderr = cli("explain", resnet, "--data", tmp_path / "imgs")
    assert code == 3 and "broken.png" in stderr
    broken.unlink()
    listing = tmp_path / "imgs" / "list.csv"
    listing.write_text("image\non/000.png\non/gone.png\n")
    code, _, stderr = cli("explain", resnet, "--data", listing)
    assert code == 3 and "gone.png" in stderr
    code, _, stderr = cli("explain", resnet, "--data", tmp_path / "imgs", "--method", "attention")
    assert code == 2 and "resnet" in stderr and "--method ig,occlusion" in stderr
    code, _, stderr = cli("explain", resnet, "--text", "a cat")
    assert code == 2 and "--data" in stderr
    code, _, stderr = cli("explain", resnet, "--data", tmp_path / "imgs", "--baseline", "white")
    assert code == 2 and "white" in stderr
    code, _, stderr = cli("explain", resnet, "--data", tmp_path / "imgs", "--method", "shap")
    assert code == 2 and "shap" in stderr
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    code, _, stderr = cli("explain", resnet, "--data", tmp_path / "imgs", "-o", out)
    assert code == 2 and (out / "mine.txt").read_text() == "keep"
