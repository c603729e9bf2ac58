"""Data-parallel training under torchrun with 2 CPU processes (gloo): rank 0 alone writes and prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_torchrun_two_processes(tiny_bert, tiny_data, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517", "-m", "nncli",
           "finetune", "--model", str(tiny_bert), "--data", str(tiny_data["train"]), "--validation", str(tiny_data["validation"]),
           "--output", str(out), "--method", "full", "train.lr=3e-3", "train.epochs=12", "train.early_stopping_patience=0",
           "data.max_length=32", "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    lines = [ln for ln in p.stdout.splitlines() if ln.strip().startswith("{")]
    assert len(lines) == 1, "only rank 0 prints"
    report = json.loads(lines[0])
    assert report["training"]["world_size"] == 2
    assert report["status"] == "succeeded"
    assert (out / "merged" / "model.safetensors").exists()
    saved = json.loads((out / "report.json").read_text())
    assert saved["environment"]["world_size"] == 2
    assert saved["metrics"]["validation"]["macro_f1"] > saved["baselines"]["majority_class"]["validation"]["macro_f1"]
