"""The CI contract: exit codes (GUIDE §3), --json, stderr for everything else, lazy imports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import finetune_args

from nncli.cli import app as _app

TOP = sorted(c.name or c.callback.__name__ for c in _app.registered_commands)
COMMANDS = [[]] + [[c] for c in TOP] + [["recipes"], ["recipes", "list"]]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_does_not_import_torch(cmd):
    code = (f"import sys\nfrom nncli.cli import app\nsys.argv = ['nncli', *{cmd!r}, '--help']\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'peft', 'datasets', 'sklearn', 'pandas') if m in sys.modules]\n"
            "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in out.stdout, out.stdout[-500:] + out.stderr[-500:]


def test_help_lists_every_command_with_examples(cli):
    code, stdout, _ = cli("--help")
    assert code == 0
    assert {"finetune", "evaluate", "export", "quantize", "bench", "predict", "drift", "validate"} <= set(TOP)
    for name in TOP + ["recipes"]:
        assert name in stdout
    for name in TOP:
        code, stdout, _ = cli(name, "--help")
        assert code == 0 and "Examples:" in stdout


def test_version(cli):
    from nncli import __version__

    code, stdout, _ = cli("--version")
    assert code == 0 and stdout.strip() == f"nncli {__version__}"


def test_exit_0_and_single_json_object(tiny_bert, tiny_data, tmp_path, cli):
    code, stdout, stderr = cli(*finetune_args(tiny_bert, tiny_data, tmp_path / "r", "train.epochs=1", "--json"))
    assert code == 0, stderr
    assert len(stdout.strip().splitlines()) == 1
    assert json.loads(stdout)["exit_code"] == 0
    assert "validation accuracy" in stderr  # logs go to stderr


def test_global_json_flag_before_command(tiny_bert, tiny_data, tmp_path, cli):
    code, stdout, stderr = cli("--json", "--quiet", *finetune_args(tiny_bert, tiny_data, tmp_path / "r", "train.max_steps=2"))
    assert code == 0, stderr
    assert json.loads(stdout)["status"] == "succeeded"
    assert "validation accuracy" not in stderr  # --quiet


def test_exit_1_internal_error_without_traceback(monkeypatch, tiny_bert, tiny_data, tmp_path, cli):
    import nncli.train.finetune

    def boom(*a, **k):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(nncli.train.finetune, "run", boom)
    code, stdout, stderr = cli(*finetune_args(tiny_bert, tiny_data, tmp_path / "r"))
    assert code == 1
    assert "internal error" in stderr and "simulated bug" in stderr and "Traceback" not in stderr
    code, stdout, stderr = cli(*finetune_args(tiny_bert, tiny_data, tmp_path / "r", "--debug"))
    assert code == 1 and "Traceback" in stderr
    code, stdout, stderr = cli(*finetune_args(tiny_bert, tiny_data, tmp_path / "r", "--json"))
    assert code == 1 and json.loads(stdout)["exit_code"] == 1


def test_exit_2_usage_lists_all_problems(tiny_bert, tiny_data, tmp_path, cli):
    code, stdout, stderr = cli(*finetune_args(tiny_bert, tiny_data, tmp_path / "r", "train.lr=abc", "trian.epochs=2",
                                              "method=qlora"))
    assert code == 2
    assert "train.lr:" in stderr and "did you mean 'train'" in stderr and "method:" in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "r").exists()


def test_exit_2_bad_flag_type(cli):
    code, _, stderr = cli("finetune", "--epochs", "many")
    assert code == 2


def test_exit_3_missing_data(tiny_bert, tmp_path, cli):
    code, stdout, stderr = cli("finetune", "--model", tiny_bert, "--data", tmp_path / "nope.csv", "-o", tmp_path / "r", "--json")
    assert code == 3
    payload = json.loads(stdout)
    assert payload["exit_code"] == 3 and "nope.csv" in payload["error"] and payload["hint"]
    assert "train file not found" in stderr and "hint:" in stderr


def test_exit_4_not_enough_memory(monkeypatch, tiny_bert, tiny_data, tmp_path, cli):
    import nncli.train.preflight

    monkeypatch.setattr(nncli.train.preflight, "_available_memory", lambda: 100 * 1024 * 1024)
    code, _, stderr = cli(*finetune_args(tiny_bert, tiny_data, tmp_path / "r"))
    assert code == 4
    assert "memory" in stderr and "gradient_accumulation" in stderr
    assert not (tmp_path / "r").exists()


def test_exit_5_gate_failed_report_written(tiny_bert, tiny_data, tmp_path, cli):
    out = tmp_path / "r"
    code, stdout, stderr = cli(*finetune_args(tiny_bert, tiny_data, out, "train.max_steps=2", "--min", "test.accuracy=1.01",
                                              "--max", "loss=100", "--json"))
    assert code == 5
    report = json.loads(stdout)
    gates = {g["metric"]: g for g in report["gates"]}
    assert gates["test.accuracy"]["passed"] is False and gates["test.accuracy"]["op"] == ">="
    assert gates["loss"]["passed"] is True
    saved = json.loads((out / "report.json").read_text())
    assert saved["status"] == "failed" and saved["exit_code"] == 5
    assert "gate(s) failed" in stderr


def test_unknown_gate_metric_is_refused_before_training(tiny_bert, tiny_data, tmp_path, cli):
    code, _, stderr = cli(*finetune_args(tiny_bert, tiny_data, tmp_path / "r", "--min", "acuracy=0.5"))
    assert code == 2 and "did you mean 'accuracy'" in stderr
    assert not (tmp_path / "r").exists()


def test_exit_130_maps_interrupt(monkeypatch, tiny_bert, tiny_data, tmp_path, cli):
    import nncli.train.finetune
    from nncli.core.errors import Interrupted

    def stop(*a, **k):
        raise Interrupted("interrupted by SIGINT at step 3", "continue with --resume")

    monkeypatch.setattr(nncli.train.finetune, "run", stop)
    code, _, stderr = cli(*finetune_args(tiny_bert, tiny_data, tmp_path / "r"))
    assert code == 130 and "--resume" in stderr


def test_existing_output_is_not_overwritten(tiny_bert, tiny_data, tmp_path, cli):
    out = tmp_path / "r"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    code, _, stderr = cli(*finetune_args(tiny_bert, tiny_data, out, "--overwrite"))
    assert code == 2 and "not an nncli run directory" in stderr
    code, _, stderr = cli(*finetune_args(tiny_bert, tiny_data, out))
    assert code == 2 and "--overwrite" in stderr
    assert (out / "precious.txt").read_text() == "keep me"


def test_dry_run_writes_nothing(tiny_bert, tiny_data, tmp_path, cli):
    code, stdout, stderr = cli(*finetune_args(tiny_bert, tiny_data, tmp_path / "r", "--dry-run", "--json"))
    assert code == 0, stderr
    r = json.loads(stdout)
    assert r["status"] == "dry-run" and r["estimate"]["peak_memory_gb"] > 0
    assert not (tmp_path / "r").exists()


def test_nan_loss_aborts_with_gate_exit(monkeypatch, tiny_bert, tiny_data, tmp_path, cli):
    import nncli.io.models

    real = nncli.io.models.load_classifier

    def poisoned(*a, **k):
        model, new = real(*a, **k)
        model.register_forward_hook(lambda m, i, o: type(o)(logits=o.logits * float("nan")))
        return model, new

    monkeypatch.setattr(nncli.io.models, "load_classifier", poisoned)
    out = tmp_path / "r"
    code, _, stderr = cli(*finetune_args(tiny_bert, tiny_data, out))
    assert code == 5 and "diverged" in stderr and "train.lr" in stderr
    assert not (out / "merged").exists()
    assert json.loads((out / "report.json").read_text())["status"] == "failed"
