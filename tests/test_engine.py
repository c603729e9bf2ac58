"""The one training engine: recipes closed per task, gates that live in the recipe, causal LMs with every feature
the classifier has (LR finder, sweep, bf16, trackers, several processes), inputs filtered to what a model accepts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import finetune_args


def _lm_args(model, data, out, *extra):
    return ["finetune", "--task", "causal-lm", "--model", str(model), "--data", str(data["train"]["pc"]), "--validation",
            str(data["validation"]["pc"]), "--prompt-column", "prompt", "--completion-column", "completion", "-o", str(out),
            "train.lr=3e-3", "train.batch_size=8", "data.max_length=64", *map(str, extra)]


# ---------------------------------------------------------------------------------------------- recipes closed per task

@pytest.mark.parametrize("override, says", [
    ("data.packing=true", "data.packing: does not apply to task sequence-classification; it is a key of task causal-lm"),
    ("train.learning_rate=1e-3", "train.learning_rate: unknown key; did you mean 'train.lr'? (nncli's name for learning_rate)"),
    ("num_train_epochs=3", "num_train_epochs: unknown key; did you mean 'train.epochs'? (nncli's name for num_train_epochs)"),
    ("logging.tensorboard=true", "logging.tensorboard: renamed; write logging.report_to=[tensorboard]"),
    ("train.seed=-1", "train.seed: Input should be greater than or equal to 0"),
    ("train.epochs=.inf", "train.epochs: Input should be a finite number"),
])
def test_classifier_recipe_refuses_keys_of_other_tasks_and_trainer_names(override, says, tiny_bert, tiny_data, tmp_path, cli):
    code, _, stderr = cli(*finetune_args(tiny_bert, tiny_data, tmp_path / "r", override))
    assert code == 2 and says in stderr, stderr
    assert not (tmp_path / "r").exists()


def test_causal_lm_recipe_refuses_classifier_keys(tiny_gpt2, lm_data, tmp_path, cli):
    code, _, stderr = cli(*_lm_args(tiny_gpt2, lm_data, tmp_path / "r", "train.class_weights=none"))
    assert code == 2
    assert "train.class_weights: does not apply to task causal-lm; it is a key of task sequence-classification" in stderr


# ---------------------------------------------------------------------------------------------- gates live in the recipe

def test_python_run_applies_the_recipes_gates(tiny_bert, tiny_data, tmp_path):
    from nncli.core.errors import GateFailed
    from nncli.recipe.load import load_recipe
    from nncli.train import finetune

    args = finetune_args(tiny_bert, tiny_data, tmp_path / "py", "train.max_steps=3")[1:]
    overrides = [a for a in args if "=" in a and not a.startswith("-")]
    recipe = load_recipe("finetune", None, overrides + ["gates.min.test.accuracy=0.999"],
                         {"model.name": str(tiny_bert), "data.train": str(tiny_data["train"]),
                          "data.validation": str(tiny_data["validation"]),
                          "data.test": str(tiny_data["test"]), "output": str(tmp_path / "py")})
    with pytest.raises(GateFailed) as e:
        finetune.run(recipe)
    gate = e.value.report["gates"][0]
    assert gate["metric"] == "test.accuracy" and gate["threshold"] == 0.999 and gate["passed"] is False and gate["n"] == 60
    assert json.loads((tmp_path / "py" / "report.json").read_text())["exit_code"] == 5


@pytest.mark.slow
def test_min_flag_is_saved_and_applies_again_from_another_directory(tiny_bert, tiny_data, tmp_path, cli, monkeypatch):
    out = tmp_path / "first"
    code, _, _ = cli(*finetune_args(tiny_bert, tiny_data, out, "train.max_steps=3", "--min", "test.accuracy=0.999"))
    assert code == 5
    saved = yaml.safe_load((out / "recipe.yaml").read_text())
    assert saved["gates"]["min"] == {"test.accuracy": 0.999}
    assert saved["train"]["lr"] == 5e-3 and saved["data"]["max_length"] == 32
    assert all(os.path.isabs(saved["data"][k]) for k in ("train", "validation", "test"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, stdout, stderr = cli("finetune", str(out / "recipe.yaml"), "-o", "again", "--json")
    assert code == 5, stderr
    assert [g["metric"] for g in json.loads(stdout)["gates"]] == ["test.accuracy"]
    assert json.loads(stdout)["metrics"] == json.loads((out / "report.json").read_text())["metrics"]


def test_gates_decide_on_the_interval_bound_and_carry_the_sample_size(tiny_bert, tiny_data, tmp_path, cli):
    code, stdout, _ = cli(*finetune_args(tiny_bert, tiny_data, tmp_path / "r", "--method", "full", "train.lr=3e-3",
                                         "train.epochs=6", "--min", "test.accuracy=0.8", "--json"))
    r = json.loads(stdout)
    g = r["gates"][0]
    assert g["n"] == 60 and g["ci95"] == r["metrics"]["test"]["ci95"]["accuracy"] and g["decided_on"] == "lower bound"
    assert g["passed"] is (g["ci95"][0] >= 0.8) and code == (0 if g["passed"] else 5)


# ---------------------------------------------------------------------------------------------- causal LMs on the one loop

def test_causal_lm_find_lr_bf16_and_tensorboard(tiny_gpt2, lm_data, tmp_path, cli):
    out = tmp_path / "lr"
    code, stdout, stderr = cli(*_lm_args(tiny_gpt2, lm_data, out, "--find-lr", "train.lr_finder_steps=30", "--json"))
    assert code == 0, stderr
    r = json.loads(stdout)
    assert r["mode"] == "find-lr" and r["lr_finder"]["steps_run"] >= 10 and (out / "lr_finder.png").exists()
    assert not (out / "merged").exists()
    out2 = tmp_path / "bf16"
    code, stdout, stderr = cli(*_lm_args(tiny_gpt2, lm_data, out2, "train.max_steps=6", "train.bf16=true",
                                         "logging.report_to=[tensorboard]", "logging.every_steps=1", "--json"))
    assert code == 0, stderr
    r = json.loads(stdout)
    assert r["training"]["bf16"] is True and r["task"] == "causal-lm"
    assert list((out2 / "tensorboard").glob("events.out.tfevents.*"))
    assert (out2 / "merged" / "model.safetensors").exists()


@pytest.mark.slow
def test_sweep_on_a_causal_lm_recipe(tiny_gpt2, lm_data, tmp_path, cli):
    pytest.importorskip("optuna")
    code, stdout, stderr = cli("sweep", "task=causal-lm", f"model.name={tiny_gpt2}", f"data.train={lm_data['train']['pc']}",
                               f"data.validation={lm_data['validation']['pc']}", "data.prompt_column=prompt",
                               "data.completion_column=completion", "train.max_steps=4", "train.batch_size=8",
                               "data.max_length=64",
                               "--trials", "2", "-o", tmp_path / "sw", "--json")
    assert code == 0, stderr
    r = json.loads(stdout)
    assert r["study"]["metric"] == "validation.loss" and r["study"]["direction"] == "minimize"
    assert len([t for t in r["trials"] if t["state"] == "complete"]) == 2
    assert "train.class_weights" not in r["space"]


@pytest.mark.slow
def test_llama_with_a_tokenizer_that_returns_token_type_ids(tmp_path, lm_data, cli):
    """A PreTrainedTokenizerFast built with `tokenizers` returns token_type_ids, which LlamaForCausalLM refuses:
    training and the sample generations after it feed the model only what its forward accepts."""
    import torch
    from conftest import FACTS
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([f"question: the {q} is {a}" for q, a in FACTS],
                            trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "</s>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="</s>")
    assert "token_type_ids" in fast("hello")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64, pad_token_id=0,
                                         eos_token_id=fast.eos_token_id))
    d = tmp_path / "llama-tt"
    model.save_pretrained(d, safe_serialization=True)
    fast.save_pretrained(d)
    code, stdout, stderr = cli(*_lm_args(d, lm_data, tmp_path / "run", "train.max_steps=4", "--json"))
    assert code == 0, stderr
    assert len(json.loads(stdout)["samples"]) == 3


# ---------------------------------------------------------------------------------------------- several processes

def _launch(launcher: list[str], args: list[str], port: int):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": str(port)}
    return subprocess.run([sys.executable, "-m", *launcher, "-m", "nncli", *map(str, args), "--json"], capture_output=True,
                          text=True, timeout=600, env=env)


@pytest.mark.slow
def test_causal_lm_under_torchrun_two_processes(tiny_gpt2, lm_data, tmp_path):
    out = tmp_path / "ddp-lm"
    p = _launch(["torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531"],
                _lm_args(tiny_gpt2, lm_data, out, "train.epochs=2"), 29531)
    assert p.returncode == 0, p.stderr[-3000:]
    printed = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    assert len(printed) == 1, "only the main process prints"
    r = json.loads(printed[0])
    assert r["training"]["world_size"] == 2 and (out / "merged" / "model.safetensors").exists()
    evals = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines() if "validation_loss" in ln]
    assert [e["step"] for e in evals] == [h["step"] for h in r["training"]["history"]], "only the main process writes"


@pytest.mark.slow
def test_classifier_under_accelerate_launch_two_processes(tiny_bert, tiny_data, tmp_path):
    out = tmp_path / "acc"
    p = _launch(["accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--main_process_port", "29533"],
                finetune_args(tiny_bert, tiny_data, out, "--method", "full", "train.lr=3e-3", "train.epochs=6",
                              "train.early_stopping_patience=0"), 29533)
    assert p.returncode == 0, p.stderr[-3000:]
    printed = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    assert len(printed) == 1
    r = json.loads(printed[0])
    assert r["training"]["world_size"] == 2
    assert r["metrics"]["test"]["macro_f1"] > r["baselines"]["majority_class"]["test"]["macro_f1"]


@pytest.mark.slow
def test_progress_bar_on_a_terminal_keeps_log_lines_on_their_own_lines(tiny_bert, tiny_data, tmp_path):
    """On a terminal the evaluation lines are printed above the live bar, never onto its line."""
    import pty
    import re

    master, slave = pty.openpty()
    args = finetune_args(tiny_bert, tiny_data, tmp_path / "tty", "train.epochs=8", "train.batch_size=4")
    p = subprocess.Popen([sys.executable, "-m", "nncli", *map(str, args)], stdin=slave, stdout=slave, stderr=slave,
                         close_fds=True,
                         env={**os.environ, "COLUMNS": "160", "TERM": "xterm"})
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    assert p.wait(timeout=300) == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode("utf-8", "replace"))
    lines = [ln for chunk in text.split("\n") for ln in chunk.split("\r")]
    assert any("validation accuracy" in ln for ln in lines)
    assert not [ln for ln in lines if "━" in ln and "validation accuracy" in ln]
