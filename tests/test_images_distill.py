"""`nncli distill` with an image teacher: students derived from the teacher's config (fewer ViT layers, fewer CNN
blocks or stages) initialised from its weights where shapes match, or another architecture given as a model; the
teacher's cached logits on the training images; the no-teacher control; the side-by-side report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DIGITS = Path(__file__).resolve().parents[1] / "recipes" / "data" / "digits"
LABELS = [str(i) for i in range(10)]


def _save(model, out: Path) -> Path:
    import transformers as T

    model.save_pretrained(out, safe_serialization=True)
    T.ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=1.0).save_pretrained(out)
    return out


def _labels() -> dict:
    return {"num_labels": 10, "id2label": dict(enumerate(LABELS)), "label2id": {n: i for i, n in enumerate(LABELS)}}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Untrained teachers with the digits' labels: a ResNet with depths 2-3, a 4-layer ViT, a ConvNeXt with depths 2-2."""
    import torch
    import transformers as T

    root = tmp_path_factory.mktemp("imgdistill")
    torch.manual_seed(0)
    resnet = T.ResNetForImageClassification(T.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[2, 3],
                                                           layer_type="basic", **_labels()))
    vit = T.ViTForImageClassification(T.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4,
                                                  num_attention_heads=2, intermediate_size=64, **_labels()))
    cnx = T.ConvNextForImageClassification(T.ConvNextConfig(num_stages=2, hidden_sizes=[16, 32], depths=[2, 2], patch_size=2,
                                                            **_labels()))
    return {"resnet": _save(resnet, root / "resnet"), "vit": _save(vit, root / "vit"), "convnext": _save(cnx, root / "cnx")}


def _student(teacher: Path, spec: dict, dest: Path, labels=LABELS):
    from transformers import AutoModelForImageClassification

    from nncli.train.image_student import build_image_student

    info = build_image_student(str(teacher), spec, dest, labels)
    s, load = AutoModelForImageClassification.from_pretrained(dest, output_loading_info=True)
    assert not load["missing_keys"] and not load["unexpected_keys"]
    return info, s, AutoModelForImageClassification.from_pretrained(teacher)


def test_resnet_student_keeps_the_first_and_last_blocks_of_each_stage_with_the_teachers_weights(models, tmp_path):
    import torch

    info, s, t = _student(models["resnet"], {"depths": [1, 2]}, tmp_path / "s")
    assert s.config.depths == [1, 2] and info["kept_teacher_blocks"] == [[0], [0, 2]] and info["new_modules"] == []
    ws, wt = s.resnet.encoder.stages, t.resnet.encoder.stages
    assert torch.equal(ws[1].layers[1].layer[0].convolution.weight, wt[1].layers[2].layer[0].convolution.weight)
    assert torch.equal(ws[1].layers[0].shortcut.convolution.weight, wt[1].layers[0].shortcut.convolution.weight)
    assert torch.equal(ws[0].layers[0].layer[1].normalization.running_var, wt[0].layers[0].layer[1].normalization.running_var)
    assert torch.equal(s.classifier[1].weight, t.classifier[1].weight)
    # one stage fewer: the head reads a narrower feature, so it starts anew; everything before it is the teacher's
    info, s, t = _student(models["resnet"], {"depths": [2]}, tmp_path / "one")
    assert s.config.depths == [2] and s.config.hidden_sizes == [16] and info["new_modules"] == ["classifier.1"]
    assert torch.equal(s.resnet.embedder.embedder.convolution.weight, t.resnet.embedder.embedder.convolution.weight)
    x = torch.rand(2, 3, 32, 32)
    assert s(pixel_values=x).logits.shape == (2, 10)


def test_vit_and_convnext_students_and_a_changed_label_order(models, tmp_path):
    import torch

    info, s, t = _student(models["vit"], {"layers": 2}, tmp_path / "v")
    assert s.config.num_hidden_layers == 2 and info["kept_teacher_layers"] == [1, 3] and info["new_modules"] == []
    query = [m.vit.encoder.layer[i].attention.attention.query.weight for m, i in ((s, 1), (t, 3))]
    assert torch.equal(*query)
    assert torch.equal(s.vit.embeddings.patch_embeddings.projection.weight, t.vit.embeddings.patch_embeddings.projection.weight)
    info, s, t = _student(models["convnext"], {"depths": [1, 1]}, tmp_path / "c", labels=LABELS[::-1])
    assert s.config.depths == [1, 1] and s.config.num_stages == 2 and info["head"].startswith("re-initialised")
    assert not torch.equal(s.classifier.weight, t.classifier.weight) and s.config.id2label[0] == "9"
    assert torch.equal(s.convnext.encoder.stages[1].layers[0].dwconv.weight, t.convnext.encoder.stages[1].layers[0].dwconv.weight)


def test_student_specs_that_do_not_fit_the_teacher_are_refused(models):
    from transformers import AutoConfig

    from nncli.core.errors import UsageError
    from nncli.train.image_student import default_spec, student_config
    from nncli.train.student import parse_student

    assert parse_student("depths=2-2-1") == {"depths": [2, 2, 1]}
    resnet, vit = AutoConfig.from_pretrained(models["resnet"]), AutoConfig.from_pretrained(models["vit"])
    assert default_spec(resnet) == {"depths": [1, 1]} and default_spec(vit) == {"layers": 2}
    for config, spec, says in [(resnet, {"layers": 1}, "layers= is for vision transformers"),
                               (resnet, {"depths": [2, 3]}, "not smaller"),
                               (resnet, {"depths": [3]}, "not smaller"), (resnet, {"depths": [1, 1, 1]}, "not smaller"),
                               (vit, {"depths": [1]}, "depths= needs a CNN teacher"), (vit, {"layers": 4}, "not fewer"),
                               (vit, {"hidden": 16}, "for text students")]:
        with pytest.raises(UsageError, match=says):
            student_config(config, spec)
    for bad in ("depths=2-x", "depths=0-1"):
        with pytest.raises(UsageError):
            parse_student(bad)


@pytest.fixture(scope="module")
def resnet_teacher(models, tmp_path_factory):
    """A ResNet (depths 2-3) fine-tuned on the digits."""
    from typer.testing import CliRunner

    from nncli.cli import app

    out = tmp_path_factory.mktemp("teacher") / "run"
    r = CliRunner().invoke(app, ["finetune", "--model", str(models["resnet"]), "--data", str(DIGITS), "-o", str(out),
                                 "--method", "full", "data.augment.hflip=false", "train.lr=3e-3", "train.epochs=3",
                                 "train.batch_size=32"])
    assert r.exit_code == 0, r.stderr
    return out


@pytest.mark.slow
def test_distill_a_resnet_into_fewer_blocks_with_the_control(cli, resnet_teacher, tmp_path, monkeypatch):
    from transformers import AutoModelForImageClassification, pipeline

    monkeypatch.setenv("NNCLI_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "student"
    args = ["distill", "--teacher", resnet_teacher, "--data", DIGITS, "data.augment.hflip=false", "train.epochs=3",
            "train.lr=3e-3", "train.batch_size=32", "distill.bench_seconds=0.05"]
    code, stdout, stderr = cli(*args, "-o", out, "--json")                      # default student: half of each stage (depths 1-1)
    assert code == 0, stderr
    r = json.loads(stdout)
    d = r["distill"]
    assert r["task"] == "image-classification" and r["command"] == "distill" and d["split"] == "test"
    assert d["student"]["init"]["depths"] == [1, 1] and d["student"]["init"]["kept_teacher_blocks"] == [[0], [0]]
    assert d["student"]["parameters"]["total"] < d["teacher"]["parameters"]["total"]
    assert 0 < d["student"]["size_mb"] <= d["teacher"]["size_mb"] and d["student"]["latency_ms_batch1"] > 0
    for k in ("accuracy", "macro_f1"):
        assert d["retention"][k] == pytest.approx(d["student"]["metrics"]["test"][k] / d["teacher"]["metrics"]["test"][k])
        assert d["gain_over_control"][k] == pytest.approx(d["student"]["metrics"]["test"][k] - d["control"]["metrics"]["test"][k])
    assert d["teacher"]["metrics"]["test"]["accuracy"] > 0.5                  # a real teacher, scored on the 360 test images
    assert d["train_rows"] == 1293 and d["teacher_passes"] == {"cached": 1293, "online_would_be": 3 * 1293}
    assert d["cache_reused"] is False and len(list((tmp_path / "cache" / "distill").glob("teacher-*.npz"))) == 1
    assert (out / "control" / "merged" / "config.json").exists() and not (out / "student_init").exists()
    assert "## Distillation" in (out / "README.md").read_text()
    m = AutoModelForImageClassification.from_pretrained(out / "merged")
    assert m.config.depths == [1, 1]
    first = sorted((DIGITS / "test" / "4").glob("*.png"))[0]
    assert pipeline("image-classification", model=str(out / "merged"))(str(first))[0]["label"] in LABELS
    # again: the teacher's logits come from the cache; an unreachable retention gate fails with exit 5
    code, stdout, stderr = cli(*args, "-o", tmp_path / "again", "--no-control", "--min-retention", "2", "--json")
    assert code == 5, stderr
    r = json.loads(stdout)
    assert r["distill"]["cache_reused"] is True and "control" not in r["distill"]
    assert [g["metric"] for g in r["gates"] if not g["passed"]] == ["retention"]


@pytest.mark.slow
def test_distill_a_vit_into_another_architecture_given_as_a_model(cli, models, tmp_path, monkeypatch):
    from nncli.io.image_demo import tiny_image_model

    monkeypatch.setenv("NNCLI_CACHE_DIR", str(tmp_path / "cache"))
    student = tiny_image_model(tmp_path / "tiny-resnet", "resnet")            # 2 labels: a new head for the 10 digits
    code, stdout, stderr = cli("distill", "--teacher", models["vit"], "--student", student, "--data", DIGITS, "-o",
                               tmp_path / "s", "data.max_train_samples=300", "train.epochs=1", "distill.bench_seconds=0.05",
                               "--no-control", "--json")
    assert code == 0, stderr
    d = json.loads(stdout)["distill"]
    assert d["student"]["init"] == {"from": "model", "model": str(student)}
    assert d["train_rows"] == 270 and d["teacher"]["parameters"]["total"] != d["student"]["parameters"]["total"]
    assert json.loads((tmp_path / "s" / "merged" / "config.json").read_text())["model_type"] == "resnet"


def test_image_distill_refuses_a_text_student_setting_and_unknown_labels(cli, models, tmp_path):
    code, _, stderr = cli("distill", "--teacher", models["resnet"], "--student", "hidden=16", "--data", DIGITS, "-o",
                          tmp_path / "a")
    assert code == 2 and "hidden=H is for text students" in stderr and not (tmp_path / "a").exists()
    code, _, stderr = cli("distill", "--teacher", models["resnet"], "--data", DIGITS, "-o", tmp_path / "b",
                          "distill.hidden_weight=1")
    assert code == 2 and "distill.hidden_weight" in stderr
    two = tmp_path / "two"
    for label in ("cat", "dog"):
        (two / label).mkdir(parents=True)
        for f in sorted((DIGITS / "train" / "1").glob("*.png"))[:12]:
            (two / label / f.name).write_bytes(f.read_bytes())
    code, _, stderr = cli("distill", "--teacher", models["resnet"], "--data", two, "-o", tmp_path / "c")
    assert code == 3 and "labels the teacher does not know" in stderr
