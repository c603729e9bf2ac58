"""End-to-end finetune on tiny models: artifacts load in peft's and transformers' own clients."""

from __future__ import annotations

import json

import pytest
from conftest import finetune_args


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["bert", "distilbert", "roberta"])
def test_finetune_end_to_end(arch, tiny_models, tiny_data, tmp_path, cli):
    out = tmp_path / "run"
    code, stdout, stderr = cli(*finetune_args(tiny_models[arch], tiny_data, out, "--json"))
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["status"] == "succeeded" and report["exit_code"] == 0
    for name in ("recipe.yaml", "report.json", "metrics.jsonl", "README.md", "curves.png", "adapter", "merged"):
        assert (out / name).exists(), name
    assert not (out / "checkpoint").exists()
    saved = json.loads((out / "report.json").read_text())
    assert saved["metrics"] == report["metrics"]
    for split in ("validation", "test"):
        m = saved["metrics"][split]
        assert m["ci95"]["accuracy"][0] <= m["accuracy"] <= m["ci95"]["accuracy"][1]
        assert set(saved["baselines"]["majority_class"][split]) >= {"accuracy", "macro_f1"}
        assert set(saved["baselines"]["tfidf_logreg"][split]) >= {"accuracy", "macro_f1"}
    assert saved["data"]["rows"]["train"]["kept"] == 240
    assert saved["training"]["trainable_parameters"] < saved["training"]["total_parameters"]
    assert saved["timings"]["train_samples_per_second"] > 0
    assert saved["environment"]["torch"] and saved["environment"]["transformers"]

    # the ecosystem's own clients load the artifacts and agree with each other
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    merged = AutoModelForSequenceClassification.from_pretrained(out / "merged").eval()
    assert merged.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    base = AutoModelForSequenceClassification.from_pretrained(tiny_models[arch], num_labels=3)
    adapted = PeftModel.from_pretrained(base, out / "adapter").eval()
    tok = AutoTokenizer.from_pretrained(out / "merged")
    x = tok(["great lamp", "awful broken kettle"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(merged(**x).logits, adapted(**x).logits, atol=1e-4)
    # the reported accuracy is the one transformers' own pipeline measures with the merged model (whether LoRA on a
    # random backbone learns is not this test's business: test_training_learns_the_task is)
    import csv

    clf = pipeline("text-classification", model=str(out / "merged"), device="cpu", truncation=True, max_length=32)
    for split in ("validation", "test"):
        with open(tiny_data[split], newline="") as f:
            rows = list(csv.DictReader(f))
        predicted = [p["label"] for p in clf([r["text"] for r in rows], batch_size=16)]
        accuracy = sum(p == r["label"] for p, r in zip(predicted, rows)) / len(rows)
        assert saved["metrics"][split]["accuracy"] == pytest.approx(accuracy), split


@pytest.mark.slow
def test_training_learns_the_task(tiny_bert, tiny_data, tmp_path, cli):
    # a random 2-layer backbone cannot be adapted by LoRA alone; full fine-tuning must learn the keyword task
    out = tmp_path / "run"
    code, stdout, stderr = cli(*finetune_args(tiny_bert, tiny_data, out, "--method", "full", "train.lr=3e-3",
                                              "train.epochs=6", "--json"))
    assert code == 0, stderr
    r = json.loads(stdout)
    test, majority = r["metrics"]["test"], r["baselines"]["majority_class"]["test"]
    assert test["macro_f1"] > majority["macro_f1"] + 0.2
    assert not any(w.startswith("COLLAPSED") for w in r["warnings"])


@pytest.mark.slow
def test_same_seed_same_metrics(tiny_bert, tiny_data, tmp_path, cli):
    reports = []
    for i in range(2):
        code, stdout, stderr = cli(*finetune_args(tiny_bert, tiny_data, tmp_path / f"r{i}", "train.epochs=1", "--json"))
        assert code == 0, stderr
        reports.append(json.loads(stdout)["metrics"])
    assert reports[0] == reports[1]


@pytest.mark.slow
def test_full_finetune_writes_merged_only(tiny_bert, tiny_data, tmp_path, cli):
    out = tmp_path / "full"
    code, stdout, stderr = cli(*finetune_args(tiny_bert, tiny_data, out, "--method", "full", "train.epochs=1", "--json"))
    assert code == 0, stderr
    assert (out / "merged" / "model.safetensors").exists() and not (out / "adapter").exists()
    assert json.loads(stdout)["training"]["fully_trained_modules"] == ["all"]


@pytest.mark.slow
def test_collapse_is_reported(tiny_bert, tiny_data, tmp_path, cli):
    # a random head (the default) and a learning rate far too small for 1 step cannot learn anything: the report must say so
    out = tmp_path / "collapse"
    code, stdout, stderr = cli(*finetune_args(tiny_bert, tiny_data, out, "train.max_steps=1", "train.lr=1e-9",
                                              "train.class_weights=none", "train.head_init=random", "--json"))
    assert code == 0, stderr
    r = json.loads(stdout)
    assert r["training"]["head_init"] == {"method": "random"}
    assert any("COLLAPSED" in w or "majority class" in w for w in r["warnings"])
    assert "warning:" in stderr


@pytest.mark.slow
def test_model_card_and_recipe_rerun(tiny_bert, tiny_data, tmp_path, cli):
    out = tmp_path / "card"
    code, _, stderr = cli(*finetune_args(tiny_bert, tiny_data, out, "train.epochs=1"))
    assert code == 0, stderr
    card = (out / "README.md").read_text()
    assert "95% bootstrap" in card and "TF-IDF" in card and "PeftModel.from_pretrained" in card
    # the resolved recipe re-runs the job: same metrics
    code, stdout, stderr = cli("finetune", out / "recipe.yaml", "--output", tmp_path / "again", "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["metrics"] == json.loads((out / "report.json").read_text())["metrics"]


@pytest.mark.slow
def test_tensorboard_event_files(tiny_bert, tiny_data, tmp_path, cli):
    out = tmp_path / "tb"
    code, _, stderr = cli(*finetune_args(tiny_bert, tiny_data, out, "train.max_steps=4", "logging.report_to=[tensorboard]",
                                         "logging.every_steps=1"))
    assert code == 0, stderr
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard")).Reload()     # logging.every_steps=1: the loss of every step
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3, 4]


@pytest.mark.slow
def test_gradient_accumulation_and_step_evaluation(tiny_bert, tiny_data, tmp_path, cli):
    out = tmp_path / "acc"
    code, stdout, stderr = cli(*finetune_args(tiny_bert, tiny_data, out, "train.gradient_accumulation=2", "train.batch_size=8",
                                              "train.eval_every=5", "train.max_steps=12", "--json"))
    assert code == 0, stderr
    r = json.loads(stdout)
    assert r["training"]["steps"] == 12
    assert [h["step"] for h in r["training"]["history"]] == [0, 5, 10, 12]       # 0: the linear-probe start


def test_threads_adapt_to_cores_busy_elsewhere(monkeypatch, capsys):
    import torch

    from nncli.core import machine as models

    before = torch.get_num_threads()
    monkeypatch.setenv("NNCLI_ADAPTIVE_THREADS", "1")
    try:
        monkeypatch.setattr(models.os, "cpu_count", lambda: 2)
        monkeypatch.setattr(models, "busy_cores_elsewhere", lambda window=0.3: 1.0)
        assert models.set_threads(None, adaptive=True) == 1
        assert models.set_threads(2, adaptive=True) == 2            # an explicit setting is obeyed
        assert models.set_threads(None, adaptive=False) == 2        # inference/bench keep a fixed count
        monkeypatch.setattr(models, "busy_cores_elsewhere", lambda window=0.3: 0.1)
        assert models.set_threads(None, adaptive=True) == 2
        monkeypatch.setattr(models, "busy_cores_elsewhere", lambda window=0.3: 1.0)
        monkeypatch.setenv("NNCLI_ADAPTIVE_THREADS", "0")                # the switch to turn it off
        assert models.set_threads(None, adaptive=True) == 2
    finally:
        torch.set_num_threads(before)


def test_busy_core_measurement_sees_a_busy_loop_and_says_none_without_proc(monkeypatch):
    import builtins
    import os
    import subprocess
    import sys

    from nncli.core import machine

    spin = subprocess.Popen([sys.executable, "-c", "import sys\nprint('go', flush=True)\nwhile True: pass"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert spin.stdout.readline() == "go\n"
        v = machine.busy_cores_elsewhere(0.5)   # another process keeps (at least) one core busy all along
    finally:
        spin.kill()
        spin.wait()
    assert 0.5 <= v <= (os.cpu_count() or 1) + 0.05
    real_open = builtins.open

    def no_proc(f, *a, **k):
        if str(f).startswith("/proc"):
            raise OSError("no /proc here")
        return real_open(f, *a, **k)

    monkeypatch.setattr(builtins, "open", no_proc)
    assert machine.busy_cores_elsewhere(0.01) is None


@pytest.mark.slow
def test_linear_probe_start_is_kept_unless_a_checkpoint_beats_it_beyond_noise(tiny_bert, tiny_data, tmp_path, cli):
    out = tmp_path / "lpft"
    code, stdout, stderr = cli(*finetune_args(tiny_bert, tiny_data, out, "train.head_init=linear_probe", "--json"))
    assert code == 0, stderr
    r = json.loads(stdout)
    assert r["training"]["head_init"]["method"] == "linear_probe"
    sel, history = r["training"]["selection"], r["training"]["history"]
    assert sel["rule"].startswith("a fine-tuned checkpoint replaces the linear-probe start only when it beats")
    assert history[0]["step"] == 0                                  # the probe was scored before the first step
    assert sel["kept"].startswith("the linear-probe start") == (sel["best_step"] == 0)   # a checkpoint's text names it too
