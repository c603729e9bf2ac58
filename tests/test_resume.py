"""Interruption and resume: SIGINT/SIGTERM save state, exit 130, and --resume reaches the same result."""

from __future__ import annotations

import json
import signal

import pytest
from conftest import finetune_args, interrupt_at

ARGS = ("--method", "full", "train.lr=3e-3", "train.epochs=12", "train.early_stopping_patience=0", "train.batch_size=8",
        "train.threads=2")  # explicit: bit-exact comparisons need the same thread count in every run


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_then_resume_matches_uninterrupted(sig, tiny_bert, tiny_data, tmp_path, cli):
    ref = tmp_path / "ref"
    code, stdout, stderr = cli(*finetune_args(tiny_bert, tiny_data, ref, *ARGS, "--json"))
    assert code == 0, stderr
    expected = json.loads(stdout)

    out = tmp_path / "run"
    rc, _, err = interrupt_at(finetune_args(tiny_bert, tiny_data, out, *ARGS), [("train.step", sig)], tmp_path)
    assert rc == 130, err
    assert f"{sig.name} received" in err and "--resume" in err and "Traceback" not in err
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


@pytest.mark.slow
def test_resume_refuses_changed_recipe(tiny_bert, tiny_data, tmp_path, cli):
    out = tmp_path / "run"
    rc, _, err = interrupt_at(finetune_args(tiny_bert, tiny_data, out, *ARGS), [("train.step", signal.SIGINT)], tmp_path)
    assert rc == 130, err
    code, _, stderr = cli(*finetune_args(tiny_bert, tiny_data, out, *ARGS, "train.lr=1e-3", "--resume"))
    assert code == 2 and "changed" in stderr


def test_resume_without_checkpoint_is_refused(tiny_bert, tiny_data, tmp_path, cli):
    code, _, stderr = cli(*finetune_args(tiny_bert, tiny_data, tmp_path / "none", "--resume"))
    assert code == 3 and "nothing to resume" in stderr


@pytest.mark.slow
def test_distill_interrupt_then_resume_matches_uninterrupted(trained_run, tiny_data, tmp_path, cli, monkeypatch):
    monkeypatch.setenv("NNCLI_CACHE_DIR", str(tmp_path / "cache"))  # shared by the in-process runs and the subprocess
    def args(out, *extra):
        return ["distill", "--teacher", trained_run, "--student", "layers=1", "--data", tiny_data["train"], "--validation",
                tiny_data["validation"], "-o", out, "train.epochs=12", "train.lr=3e-3", "train.batch_size=8",
                "train.early_stopping_patience=0", "data.max_length=32", "--no-control", "distill.bench_seconds=0.05",
                "train.threads=2", *extra]

    code, stdout, stderr = cli(*args(tmp_path / "ref", "--json"))
    assert code == 0, stderr
    expected = json.loads(stdout)
    out = tmp_path / "run"
    rc, _, err = interrupt_at(args(out), [("train.step", signal.SIGINT)], tmp_path)
    assert rc == 130, err
    assert "nncli distill" in err and "--resume" in err
    assert json.loads((out / "report.json").read_text())["status"] == "interrupted"
    code, stdout, stderr = cli(*args(out, "--resume", "--json"))
    assert code == 0, stderr
    resumed = json.loads(stdout)
    assert resumed["metrics"] == expected["metrics"]
    assert resumed["distill"]["cache_reused"] is True


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_export_interrupted_leaves_nothing_that_looks_exported(sig, trained_run, tmp_path):
    """Issue #21: the signal lands while the export sits in its staging folder; more come while the error is printed
    and just before the process exits, after the export's own handler is gone (a SIGINT there used to escape as an
    uncaught KeyboardInterrupt, return code -2; a SIGTERM killed it, -15): still exit 130, nothing exported."""
    out = tmp_path / "onnx"
    stops = [("export.staged", sig), ("cli.error", signal.SIGINT), ("cli.exit", signal.SIGTERM)]
    rc, _, err = interrupt_at(["export", trained_run, "--output", out], stops, tmp_path)
    assert rc == 130, err
    assert f"error: export interrupted; nothing was exported to {out}" in err and "Traceback" not in err
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "interrupted" and report["exit_code"] == 130
    assert not (out / "model.onnx").exists() and not (out / ".staging").exists()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_export_signalled_after_its_last_safe_point_completes_and_exits_130(sig, trained_run, tmp_path):
    """Two signals while the export is moved into place: it is never left half moved; the process still says 130."""
    out = tmp_path / "onnx"
    rc, _, err = interrupt_at(["export", trained_run, "--output", out], [("export.moving", sig), ("export.moved", signal.SIGINT)],
                              tmp_path)
    assert rc == 130, err
    assert "Traceback" not in err
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "succeeded" and (out / "model.onnx").is_file() and not (out / ".staging").exists()
