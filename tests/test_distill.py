"""`nncli distill`: students derived from the teacher, the loss, the teacher cache, transfer data, the report."""

from __future__ import annotations

import json

import pytest
from conftest import make_rows, write_csv

from nncli.train import student as D


def test_kept_layers_are_evenly_spaced_and_keep_the_top_layer():
    assert D.kept_layers(6, 3) == [1, 3, 5]
    assert D.kept_layers(6, 2) == [2, 5]
    assert D.kept_layers(12, 4) == [2, 5, 8, 11]
    assert D.kept_layers(2, 1) == [1]
    assert D.kept_layers(4, 4) == [0, 1, 2, 3]


def test_parse_student_specs_and_errors():
    from nncli.core.errors import UsageError

    assert D.parse_student("layers=3") == {"layers": 3}
    assert D.parse_student("layers=2,hidden=64") == {"layers": 2, "hidden": 64}
    assert D.parse_student("prajjwal1/bert-tiny") == {"model": "prajjwal1/bert-tiny"}
    for bad in ("layers=x", "depth=3", "layers=0", ""):
        with pytest.raises(UsageError):
            D.parse_student(bad)


def test_layer_student_is_initialised_from_the_teacher(trained_run, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    teacher_dir = trained_run / "merged"
    info = D.build_student(str(teacher_dir), {"layers": 1}, tmp_path / "s", ["negative", "neutral", "positive"])
    assert info["kept_teacher_layers"] == [1] and "head" not in info
    t = AutoModelForSequenceClassification.from_pretrained(teacher_dir)
    s, load = AutoModelForSequenceClassification.from_pretrained(tmp_path / "s", output_loading_info=True)
    assert not load["missing_keys"] and not load["unexpected_keys"]
    assert s.config.num_hidden_layers == 1
    assert torch.equal(s.bert.encoder.layer[0].attention.self.query.weight, t.bert.encoder.layer[1].attention.self.query.weight)
    assert torch.equal(s.classifier.weight, t.classifier.weight)
    assert torch.equal(s.bert.embeddings.word_embeddings.weight, t.bert.embeddings.word_embeddings.weight)
    params = D.count_parameters(s)
    assert params["without_embeddings"] < params["total"] and params["embeddings"] > 0


def test_width_student_and_label_order_change(trained_run, tmp_path):
    info = D.build_student(str(trained_run / "merged"), {"layers": 1, "hidden": 16}, tmp_path / "w",
                           ["positive", "negative", "neutral"])
    cfg = json.loads((tmp_path / "w" / "config.json").read_text())
    assert cfg["hidden_size"] == 16 and cfg["num_hidden_layers"] == 1 and cfg["num_attention_heads"] == 1
    assert info["head"].startswith("re-initialised") and cfg["id2label"]["0"] == "positive"


def test_distillation_loss_matches_its_definition():
    import torch
    import torch.nn.functional as F

    from nncli.train.tasks.distill import IGNORE, DistillTask

    task = DistillTask.__new__(DistillTask)   # the loss alone: no data or tokenizer needed
    torch.manual_seed(0)
    task.alpha, task.temperature, task.hidden_weight, task.needs_hidden = 0.7, 3.0, 0.0, False
    task.weight, task.label_smoothing, task.t_hidden = None, 0.0, None
    task.t_logits = torch.randn(6, 3)
    s = torch.randn(4, 3)
    idx = [5, 0, 2, 3]
    labels = torch.tensor([1, IGNORE, 2, 0])

    class Out:
        logits = s

    def model(**inputs):
        return Out

    got = task.loss(model, {"inputs": {}, "labels": labels, "index": torch.tensor(idx)})
    T = 3.0
    p_t = F.softmax(task.t_logits[idx] / T, -1)
    kl = (p_t * (p_t.log() - F.log_softmax(s / T, -1))).sum(1).mean() * T * T
    keep = labels != IGNORE
    ce = F.cross_entropy(s[keep], labels[keep])
    assert got.item() == pytest.approx((0.7 * kl + 0.3 * ce).item(), rel=1e-5)
    # a batch of only teacher-labelled (transfer) rows has no hard-label term, and is finite
    got = task.loss(model, {"inputs": {}, "labels": torch.full((4,), IGNORE), "index": torch.tensor(idx)})
    assert torch.isfinite(got) and got.item() == pytest.approx((0.7 * kl).item(), rel=1e-5)


def _distill_args(trained_run, tiny_data, out, *extra):
    return ["distill", "--teacher", str(trained_run), "--student", "layers=1", "--data", str(tiny_data["train"]),
            "--validation", str(tiny_data["validation"]), "--test", str(tiny_data["test"]), "-o", str(out),
            "train.epochs=3", "train.lr=5e-3", "data.max_length=32", "distill.bench_seconds=0.05", *extra]


@pytest.mark.slow
def test_distill_end_to_end_with_control_cache_and_gates(trained_run, tiny_data, tmp_path, cli, monkeypatch):
    monkeypatch.setenv("NNCLI_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "student"
    code, stdout, stderr = cli(*_distill_args(trained_run, tiny_data, out, "--json"))
    assert code == 0, stderr
    r = json.loads(stdout)
    d = r["distill"]
    assert r["command"] == "distill" and r["task"] == "sequence-classification" and r["status"] == "succeeded"
    assert d["student"]["parameters"]["total"] < d["teacher"]["parameters"]["total"]
    assert d["student"]["parameters"]["without_embeddings"] < d["teacher"]["parameters"]["without_embeddings"]
    for k in ("accuracy", "macro_f1"):
        assert d["retention"][k] == pytest.approx(d["student"]["metrics"]["test"][k] / d["teacher"]["metrics"]["test"][k])
    assert "control" in d and (out / "control" / "merged" / "config.json").exists()
    assert d["cache_reused"] is False and list((tmp_path / "cache" / "distill").glob("teacher-*.npz"))
    assert d["student"]["latency_ms_batch1"] > 0 and d["speedup_throughput"] > 0
    assert not (out / "student_init").exists()
    saved = json.loads((out / "report.json").read_text())
    assert saved["status"] == "succeeded" and saved["distill"]["retention"] == d["retention"]
    assert "## Distillation" in (out / "README.md").read_text()
    from transformers import AutoModelForSequenceClassification, pipeline

    m = AutoModelForSequenceClassification.from_pretrained(out / "merged")
    assert m.config.num_hidden_layers == 1
    assert pipeline("text-classification", model=str(out / "merged"))("good")[0]["label"] in ("negative", "neutral", "positive")

    # a second run reuses the teacher's outputs; an unreachable retention gate fails with exit 5
    code, stdout, stderr = cli(*_distill_args(trained_run, tiny_data, tmp_path / "again", "--no-control", "--min-retention", "2",
                                              "--json"))
    assert code == 5, stderr
    r = json.loads(stdout)
    assert r["distill"]["cache_reused"] is True and "control" not in r["distill"]
    assert [g["metric"] for g in r["gates"] if not g["passed"]] == ["retention"]


@pytest.mark.slow
def test_distill_width_student_with_hidden_matching_and_transfer_data(trained_run, tiny_data, tmp_path, cli, monkeypatch):
    monkeypatch.setenv("NNCLI_CACHE_DIR", str(tmp_path / "cache"))
    rows = make_rows(120, seed=99)
    # ten validation texts sneak into the transfer data: they must be dropped, not trained on
    import csv

    with open(tiny_data["validation"], newline="") as f:
        all_val = [r["text"] for r in csv.DictReader(f)]
    val = all_val[:10]
    transfer = write_csv(tmp_path / "unlabelled.csv", [{"text": r["text"]} for r in rows] + [{"text": t} for t in val])
    out = tmp_path / "w"
    code, stdout, stderr = cli("distill", "--teacher", str(trained_run), "--student", "layers=1,hidden=16", "--data",
                               str(tiny_data["train"]), "--validation", str(tiny_data["validation"]), "-o", str(out),
                               "--transfer-data", str(transfer), "distill.hidden_weight=1.0", "train.epochs=1",
                               "data.max_length=32", "distill.bench_seconds=0.05", "--no-control", "--json")
    assert code == 0, stderr
    d = json.loads(stdout)["distill"]
    kept = [r["text"] for r in rows if r["text"] not in set(all_val)]
    assert d["transfer_rows"] == len(kept) and d["transfer_dropped_overlap"] == 130 - len(kept) >= 10
    assert d["projection"].startswith("learned linear 16 -> 32")
    from transformers import AutoModelForSequenceClassification

    _, load = AutoModelForSequenceClassification.from_pretrained(out / "merged", output_loading_info=True)
    assert not load["unexpected_keys"] and not load["missing_keys"]  # the projection was training-only


def test_distill_refuses_bad_input(trained_run, tiny_data, tmp_path, cli):
    code, _, stderr = cli("distill", "--student", "layers=1", "--data", str(tiny_data["train"]), "-o", str(tmp_path / "x"))
    assert code == 2 and "teacher" in stderr
    code, _, stderr = cli(*_distill_args(trained_run, tiny_data, tmp_path / "y", "--student", "layers=9"))
    assert code == 2 and "more than the teacher" in stderr
    rows = [{**r, "label": {"negative": "cat", "neutral": "dog", "positive": "dog"}[r["label"]]} for r in make_rows(60, seed=5)]
    other = write_csv(tmp_path / "other.csv", rows)
    code, _, stderr = cli("distill", "--teacher", str(trained_run), "--data", str(other), "-o", str(tmp_path / "z"))
    assert code == 3 and "labels the teacher does not know" in stderr
