"""Causal-LM fine-tuning (`task: causal-lm`) and `nncli generate` on tiny GPT-2 and Llama models built from configs."""

from __future__ import annotations

import json
import math
import signal

import pytest
from conftest import FACTS, TEMPLATE, interrupt_at  # noqa: F401  (FACTS, TEMPLATE shared with tests/test_engine.py)

from nncli.train import lm_data as lm


def _tok(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


# ---------------------------------------------------------------------------------------------- masking, templates, packing

def test_prompt_tokens_are_masked_token_by_token(tiny_gpt2):
    tok = _tok(tiny_gpt2)
    ids, labels, cut = lm.encode_pair(tok, "question: the capital of france is", " paris", 64, train_on_prompt=False)
    p = tok("question: the capital of france is")["input_ids"]
    c = tok(" paris", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert ids == p + c and not cut
    assert labels == [lm.IGNORE] * len(p) + c
    _, labels2, _ = lm.encode_pair(tok, "question: the capital of france is", " paris", 64, train_on_prompt=True)
    assert labels2 == p + c
    _, short, cut = lm.encode_pair(tok, "question: the capital of france is", " paris", 4, train_on_prompt=False)
    assert cut and len(short) == 4


def test_chat_template_rendering_and_assistant_only_labels(tiny_llama):
    tok = _tok(tiny_llama)
    msgs = [{"role": "user", "content": "what is the colour of the sky?"}, {"role": "assistant", "content": "blue"},
            {"role": "user", "content": "and grass?"}, {"role": "assistant", "content": "green"}]
    text = lm.render_chat(tok, msgs, None)
    assert text == ("<|user|>what is the colour of the sky?<|end|><|assistant|>blue<|end|>"
                    "<|user|>and grass?<|end|><|assistant|>green<|end|>")
    ids, labels, _ = lm.encode_chat(tok, msgs, None, 256, train_on_prompt=False)
    assert tok.decode(ids) == text
    learned = [t for t, lab in zip(ids, labels) if lab != lm.IGNORE]
    assert tok.decode(learned) == "blue<|end|>green<|end|>"
    for t, lab in zip(ids, labels):
        assert lab in (lm.IGNORE, t)
    # a template from the recipe when the tokenizer has none
    plain = _tok(tiny_llama)
    plain.chat_template = None
    from nncli.core.errors import InputError

    with pytest.raises(InputError, match="the tokenizer has no chat template, and the recipe sets none") as e:
        lm.render_chat(plain, msgs, None)
    assert "data.chat_template" in e.value.hint
    template = "{% for m in messages %}[{{ m['content'] }}]{% endfor %}"
    assert lm.render_chat(plain, msgs[:1], template) == "[what is the colour of the sky?]"


def test_packing_keeps_order_and_masks_example_starts():
    ids = [[1, 2, 3], [4, 5], [6, 7, 8, 9], [10]]
    ex = lm.LMExamples("train", "text", input_ids=ids, labels=[list(x) for x in ids])
    seqs, labs = lm.pack(ex, 6, eos=0)
    assert all(len(s) <= 6 for s in seqs)
    assert [t for s in seqs for t in s] == list(range(1, 11))
    assert seqs == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]
    assert labs == [[lm.IGNORE, 2, 3, lm.IGNORE, 5], [lm.IGNORE, 7, 8, 9, lm.IGNORE]]


# ---------------------------------------------------------------------------------------------- training end to end

def _ft(model, data, out, *extra):
    return ["finetune", "--task", "causal-lm", "--model", str(model), "--data", str(data["train"]), "--validation",
            str(data["validation"]), "-o", str(out), "train.lr=5e-3", "train.batch_size=8", "data.max_length=48",
            *map(str, extra)]


@pytest.fixture(scope="module")
def pc_run(tiny_gpt2, lm_data, tmp_path_factory):
    from typer.testing import CliRunner

    from nncli.cli import app

    out = tmp_path_factory.mktemp("lmrun") / "pc"
    data = {s: lm_data[s]["pc"] for s in ("train", "validation")}
    r = CliRunner().invoke(app, [*_ft(tiny_gpt2, data, out, "--prompt-column", "prompt", "--completion-column", "completion",
                                      "--method", "full", "train.epochs=12", "train.early_stopping_patience=0", "--json")])
    return out, r


@pytest.mark.slow
def test_loss_falls_and_the_model_memorises(pc_run):
    out, r = pc_run
    assert r.exit_code == 0, r.stderr
    rep = json.loads(r.stdout)
    hist = rep["training"]["history"]
    assert hist[-1]["validation_loss"] < 0.3 * hist[0]["validation_loss"]
    assert rep["metrics"]["validation"]["perplexity"] < 2.0
    assert rep["data"]["mode"] == "prompt-completion" and rep["samples"]
    assert any(s["generated"].strip().startswith(s["reference"].strip()) for s in rep["samples"])
    assert "## Sample generations" in (out / "README.md").read_text()


@pytest.mark.slow
def test_generate_command_on_the_run(pc_run, cli):
    out, r = pc_run
    assert r.exit_code == 0
    code, stdout, stderr = cli("generate", str(out), "--prompt", "question: the opposite of hot is", "--max-new-tokens", "8",
                               "--json")
    assert code == 0, stderr
    g = json.loads(stdout)["generations"][0]
    assert g["generated"].strip().startswith("cold")
    code, stdout, stderr = cli("generate", str(out), "--prompt", "question: the", "--temperature", "0.8", "--top-p", "0.9",
                               "--seed", "3", "--json")
    assert code == 0, stderr
    code, _, stderr = cli("generate", str(out))
    assert code == 2 and "--prompt" in stderr


@pytest.mark.slow
def test_lora_chat_on_llama_merge_matches_adapter(tiny_llama, lm_data, tmp_path, cli):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    data = {s: lm_data[s]["chat"] for s in ("train", "validation")}
    out = tmp_path / "chat"
    code, stdout, stderr = cli(*_ft(tiny_llama, data, out, "--messages-column", "messages", "lora.use_dora=true",
                                    "train.epochs=2", "--json"))
    assert code == 0, stderr
    rep = json.loads(stdout)
    assert rep["data"]["mode"] == "chat"
    assert set(rep["training"]["lora_targets"]) >= {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert "lm_head" not in rep["training"]["lora_targets"]
    base = AutoModelForCausalLM.from_pretrained(tiny_llama)
    adapted = PeftModel.from_pretrained(base, out / "adapter").eval()
    merged = AutoModelForCausalLM.from_pretrained(out / "merged").eval()
    ids = torch.tensor([_tok(tiny_llama)("<|user|>what is the colour of the sky?<|end|><|assistant|>")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(adapted(input_ids=ids).logits, merged(input_ids=ids).logits, atol=1e-4)


@pytest.mark.slow
def test_plain_text_with_packing_and_gpt2_lora(tiny_gpt2, lm_data, tmp_path, cli):
    data = {s: lm_data[s]["text"] for s in ("train", "validation")}
    code, stdout, stderr = cli(*_ft(tiny_gpt2, data, tmp_path / "txt", "data.packing=true", "train.epochs=1", "--json"))
    assert code == 0, stderr
    rep = json.loads(stdout)
    assert rep["data"]["mode"] == "text" and set(rep["training"]["lora_targets"]) >= {"c_attn", "c_proj", "c_fc"}
    assert rep["training"]["steps"] < 96 / 8  # packed: fewer, longer sequences than examples


@pytest.mark.slow
def test_causal_lm_evaluate_and_gates(pc_run, lm_data, tmp_path, cli):
    out, r = pc_run
    assert r.exit_code == 0
    data = str(lm_data["validation"]["text"])
    code, stdout, stderr = cli("evaluate", str(out), "--data", data, "--max", "perplexity=1e6", "--json")
    assert code == 0, stderr
    rep = json.loads(stdout)
    assert rep["task"] == "causal-lm"
    loss = rep["models"][0]["metrics"]["loss"]
    assert rep["models"][0]["metrics"]["perplexity"] == pytest.approx(math.exp(loss))
    assert [(g["metric"], g["op"], g["passed"]) for g in rep["gates"]] == [("perplexity", "<=", True)]
    # a loss gate just below the measured loss fails: exit 5, the failed gate in stdout and in report.json
    ev = tmp_path / "ev"
    code, stdout, stderr = cli("evaluate", str(out), "--data", data, "--max", f"loss={loss * 0.99}", "-o", str(ev), "--json")
    assert code == 5, stderr
    gates = json.loads((ev / "report.json").read_text())["gates"]
    assert [(g["metric"], g["op"], g["passed"]) for g in gates] == [("loss", "<=", False)]
    assert gates[0]["value"] == pytest.approx(loss) and gates[0]["threshold"] == pytest.approx(loss * 0.99)
    assert json.loads(stdout)["exit_code"] == 5 and "1 gate(s) failed: loss" in stderr
    assert json.loads((ev / "report.json").read_text())["exit_code"] == 5
    # classification metrics mean nothing for a language model: refused before anything runs
    code, _, stderr = cli("evaluate", str(out), "--data", data, "--min", "accuracy=0.5")
    assert code == 2 and "accuracy" in stderr


def test_causal_lm_refuses_bad_input(tiny_gpt2, lm_data, tmp_path, cli):
    data = {s: lm_data[s]["pc"] for s in ("train", "validation")}
    code, _, stderr = cli(*_ft(tiny_gpt2, data, tmp_path / "a", "--prompt-column", "prompt"))
    assert code == 2 and "completion" in stderr
    code, _, stderr = cli(*_ft(tiny_gpt2, data, tmp_path / "b", "--prompt-column", "prompt", "--completion-column", "answer"))
    assert code == 2 and "answer" in stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": "not json"}\n' * 20)
    code, _, stderr = cli(*_ft(tiny_gpt2, {"train": bad, "validation": bad}, tmp_path / "c", "--messages-column", "messages"))
    assert code == 3 and "messages" in stderr and "Traceback" not in stderr


@pytest.mark.slow
def test_interrupt_then_resume_continues_from_the_same_step(tiny_gpt2, lm_data, tmp_path, cli):
    data = {s: lm_data[s]["pc"] for s in ("train", "validation")}
    args = ("--prompt-column", "prompt", "--completion-column", "completion", "--method", "full", "train.epochs=16",
            "train.early_stopping_patience=0", "train.batch_size=4", "train.threads=2")
    code, stdout, stderr = cli(*_ft(tiny_gpt2, data, tmp_path / "ref", *args, "--json"))
    assert code == 0, stderr
    expected = json.loads(stdout)
    out = tmp_path / "run"
    rc, _, err = interrupt_at(_ft(tiny_gpt2, data, out, *args), [("train.step", signal.SIGINT)], tmp_path)
    assert rc == 130, err
    step = json.loads((out / "checkpoint" / "state.json").read_text())["step"]
    assert 0 < step < expected["training"]["steps"]
    code, stdout, stderr = cli(*_ft(tiny_gpt2, data, out, *args, "--resume", "--json"))
    assert code == 0, stderr
    assert "resuming from step" in stderr
    resumed = json.loads(stdout)
    assert resumed["metrics"] == expected["metrics"] and resumed["training"]["steps"] == expected["training"]["steps"]


@pytest.mark.slow
def test_causal_lm_run_exports_to_onnx_with_parity(pc_run, tmp_path, cli):
    out, r = pc_run
    assert r.exit_code == 0
    code, stdout, stderr = cli("export", str(out), "-o", str(tmp_path / "onnx"), "--json")
    assert code == 0, stderr
    rep = json.loads(stdout)
    assert rep["command"] == "export" and rep["task"] == "causal-lm" and rep["parity"]["max_abs_diff"] <= 1e-4


@pytest.mark.slow
def test_report_shows_perplexity_for_causal_lm_runs(pc_run, cli):
    out, r = pc_run
    assert r.exit_code == 0
    code, stdout, stderr = cli("report", str(out), "--json")
    assert code == 0, stderr
    row = json.loads(stdout)["runs"][0]
    assert row["perplexity"] == pytest.approx(json.loads(r.stdout)["metrics"]["validation"]["perplexity"])
    assert "perplexity" in json.loads(stdout)["markdown"]
