"""Interruption and resume: SIGINT/SIGTERM save state, exit 130, and --resume reaches the same result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import finetune_args

ARGS = ("--method", "full", "train.lr=3e-3", "train.epochs=12", "train.early_stopping_patience=0", "train.batch_size=8",
        "train.threads=2")  # explicit: bit-exact comparisons need the same thread count in every run


def _start(args, env=None):
    return subprocess.Popen([sys.executable, "-m", "nncli", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_then_resume_matches_uninterrupted(sig, tiny_bert, tiny_data, tmp_path, cli):
    ref = tmp_path / "ref"
    code, stdout, stderr = cli(*finetune_args(tiny_bert, tiny_data, ref, *ARGS, "--json"))
    assert code == 0, stderr
    expected = json.loads(stdout)

    out = tmp_path / "run"
    proc = _start(finetune_args(tiny_bert, tiny_data, out, *ARGS))
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "checkpoint" / "state.json").exists():
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("training finished before the signal arrived")
    assert proc.returncode == 130, err
    assert "--resume" in err
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "interrupted" and report["exit_code"] == 130
    assert not (out / "merged").exists()
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert 0 < state["step"] < expected["training"]["steps"]

    code, stdout, stderr = cli(*finetune_args(tiny_bert, tiny_data, out, *ARGS, "--resume", "--json"))
    assert code == 0, stderr
    resumed = json.loads(stdout)
    assert resumed["metrics"] == expected["metrics"]
    assert resumed["training"]["steps"] == expected["training"]["steps"]


def test_resume_refuses_changed_recipe(tiny_bert, tiny_data, tmp_path, cli):
    out = tmp_path / "run"
    proc = _start(finetune_args(tiny_bert, tiny_data, out, *ARGS))
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "checkpoint" / "state.json").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("training finished before the signal arrived")
    code, _, stderr = cli(*finetune_args(tiny_bert, tiny_data, out, *ARGS, "train.lr=1e-3", "--resume"))
    assert code == 2 and "changed" in stderr


def test_resume_without_checkpoint_is_refused(tiny_bert, tiny_data, tmp_path, cli):
    code, _, stderr = cli(*finetune_args(tiny_bert, tiny_data, tmp_path / "none", "--resume"))
    assert code == 3 and "nothing to resume" in stderr


def test_distill_interrupt_then_resume_matches_uninterrupted(trained_run, tiny_data, tmp_path, cli, monkeypatch):
    monkeypatch.setenv("NNCLI_CACHE_DIR", str(tmp_path / "cache"))  # shared by the in-process runs and the subprocess
    def args(out, *extra):
        return ["distill", "--teacher", trained_run, "--student", "layers=1", "--data", tiny_data["train"], "--validation",
                tiny_data["validation"], "-o", out, "train.epochs=12", "train.lr=3e-3", "train.batch_size=8",
                "train.early_stopping_patience=0", "data.max_length=32", "--no-control", "distill.bench_seconds=0.05", "train.threads=2", *extra]

    code, stdout, stderr = cli(*args(tmp_path / "ref", "--json"))
    assert code == 0, stderr
    expected = json.loads(stdout)
    out = tmp_path / "run"
    proc = _start(args(out))
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "checkpoint" / "state.json").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("training finished before the signal arrived")
    assert proc.returncode == 130, err
    assert "nncli distill" in err and "--resume" in err
    assert json.loads((out / "report.json").read_text())["status"] == "interrupted"
    code, stdout, stderr = cli(*args(out, "--resume", "--json"))
    assert code == 0, stderr
    resumed = json.loads(stdout)
    assert resumed["metrics"] == expected["metrics"]
    assert resumed["distill"]["cache_reused"] is True


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_export_interrupted_leaves_nothing_that_looks_exported(sig, trained_run, tmp_path):
    out = tmp_path / "onnx"
    proc = _start(["export", trained_run, "--output", out])
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "report.json").exists():
        time.sleep(0.02)
    time.sleep(0.3)   # inside the ONNX export
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the export finished before the signal arrived")
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "interrupted" and report["exit_code"] == 130
    assert not (out / "model.onnx").exists() and not (out / ".staging").exists()
