"""Offline fixtures: tiny models built from transformers configs (never downloaded) and tiny datasets.

The tokenizers are built in-process from the fixture corpus (deterministically: tests/tiny_tokenizers.py), so the
suite needs no model package and no network. Models are 2 layers, hidden 32, built once per session.
"""

from __future__ import annotations

import csv
import json
import os
import random
from pathlib import Path

import pytest
from tiny_tokenizers import byte_level_bpe, wordpiece_vocab

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("NNCLI_DEBUG", None)
# a fixed thread count in every run: results stay comparable between runs even on a busy CI machine
# (the adaptive choice itself is unit-tested in test_finetune.py)
os.environ["NNCLI_ADAPTIVE_THREADS"] = "0"

SHARED = Path(os.environ.get("NNCLI_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")

POS = ["great", "wonderful", "excellent", "love", "superb", "happy", "fantastic", "delightful"]
NEG = ["awful", "terrible", "broken", "hate", "poor", "refund", "useless", "disappointing"]
NEU = ["okay", "average", "fine", "arrived", "standard", "expected", "plain", "ordinary"]
FILLER = ["the", "kettle", "book", "phone", "it", "was", "quite", "really", "box", "shirt", "toy", "lamp", "this",
          "my", "and", "but", "order", "product", "is", "very", "for", "price", "a", "day", "week"]


def make_rows(n: int, seed: int, labels=("negative", "neutral", "positive"), weights=(0.3, 0.15, 0.55)) -> list[dict]:
    """Texts whose label is carried by sentiment words among neutral filler: learnable in a few steps."""
    rng = random.Random(seed)
    words = {"positive": POS, "negative": NEG, "neutral": NEU}
    rows = []
    for i in range(n):
        label = rng.choices(labels, weights=weights[: len(labels)])[0]
        body = rng.choices(FILLER, k=rng.randint(3, 12))
        for _ in range(rng.randint(1, 2)):
            body.insert(rng.randrange(len(body) + 1), rng.choice(words[label]))
        rows.append({"id": f"{seed}-{i}", "text": " ".join(body), "label": label, "category": rng.choice(["a", "b"])})
    return rows


def write_csv(path: Path, rows: list[dict], delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("data")
    return {"train": write_csv(d / "train.csv", make_rows(240, 1)),
            "validation": write_csv(d / "validation.csv", make_rows(60, 2)),
            "test": write_csv(d / "test.csv", make_rows(60, 3)), "dir": d}


def _corpus() -> list[str]:
    return [r["text"] for r in make_rows(400, 9)] + ["hello world", "[PAD] [UNK]"]


@pytest.fixture(scope="session")
def bert_tokenizer_dir(tmp_path_factory) -> Path:
    from transformers import BertTokenizerFast

    d = tmp_path_factory.mktemp("tok_bert")
    vocab = wordpiece_vocab(_corpus(), 300, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], d)
    BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True).save_pretrained(d)
    return d


def _save(model, tok_dir: Path, out: Path) -> Path:
    from transformers import AutoTokenizer

    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(tok_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory, bert_tokenizer_dir) -> Path:
    """A BertModel checkpoint (no classifier head, like a sentence-transformers model)."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=128)
    return _save(BertModel(cfg), bert_tokenizer_dir, tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def tiny_distilbert(tmp_path_factory, bert_tokenizer_dir) -> Path:
    import torch
    from transformers import DistilBertConfig, DistilBertModel

    torch.manual_seed(0)
    from transformers import DistilBertTokenizerFast

    cfg = DistilBertConfig(vocab_size=300, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=128)
    out = tmp_path_factory.mktemp("tiny_distilbert")
    DistilBertModel(cfg).save_pretrained(out, safe_serialization=True)
    DistilBertTokenizerFast(vocab_file=str(bert_tokenizer_dir / "vocab.txt"), do_lower_case=True).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_roberta(tmp_path_factory) -> Path:
    import torch
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    d = tmp_path_factory.mktemp("tiny_roberta")
    vocab, merges = byte_level_bpe(_corpus(), 400, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"], d)
    tok = RobertaTokenizerFast(vocab_file=str(vocab), merges_file=str(merges))
    torch.manual_seed(0)
    cfg = RobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=130, pad_token_id=tok.pad_token_id)
    RobertaModel(cfg).save_pretrained(d, safe_serialization=True)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_models(tiny_bert, tiny_distilbert, tiny_roberta) -> dict[str, Path]:
    return {"bert": tiny_bert, "distilbert": tiny_distilbert, "roberta": tiny_roberta}


@pytest.fixture()
def cli():
    """Invoke the Typer app in-process; returns a function giving (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from nncli.cli import app

    def invoke(*args: str):
        r = CliRunner().invoke(app, [str(a) for a in args])
        return r.exit_code, r.stdout, r.stderr

    return invoke


def interrupt_at(args, stops, tmp_path: Path, env: dict | None = None, timeout: float = 300):
    """Run `python -m nncli *args` and send each (point, signal) of `stops` once the process waits at that hold point
    (nncli.core.signals.hold: the moment is exact, whatever the machine's load). Returns (returncode, stdout, stderr)."""
    import subprocess
    import sys
    import time

    marker = tmp_path / f"hold-{len(list(tmp_path.glob('hold-*')))}"
    env = {**os.environ, **(env or {}), "NNCLI_TEST_HOLD": ",".join(p for p, _ in stops), "NNCLI_TEST_HOLD_FILE": str(marker)}
    proc = subprocess.Popen([sys.executable, "-m", "nncli", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        for point, sig in stops:
            deadline = time.time() + timeout
            while not (marker.exists() and marker.read_text().split()[1:] == [point]):
                if proc.poll() is not None or time.time() > deadline:
                    out, err = proc.communicate(timeout=60)
                    raise AssertionError(f"never reached hold point {point!r} (exit {proc.returncode})\n{err[-3000:]}")
                time.sleep(0.02)
            proc.send_signal(sig)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def finetune_args(model: Path, data: dict, out: Path, *extra: str) -> list[str]:
    return ["finetune", "--model", str(model), "--data", str(data["train"]), "--validation", str(data["validation"]),
            "--test", str(data["test"]), "--output", str(out), "train.epochs=3", "train.lr=5e-3", "train.batch_size=16",
            "data.max_length=32", *extra]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_bert, tiny_data) -> Path:
    """A finished finetune run directory (full fine-tuning of the tiny BERT, which learns the keyword task)."""
    from typer.testing import CliRunner

    from nncli.cli import app

    out = tmp_path_factory.mktemp("runs") / "trained"
    r = CliRunner().invoke(app, finetune_args(tiny_bert, tiny_data, out, "--method", "full", "train.lr=3e-3", "train.epochs=6",
                                              "train.head_init=random", "-q"))   # the trained model, not the probe
    assert r.exit_code == 0, r.stderr
    return out


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    d = tmp_path_factory.mktemp("tiny_gpt2")
    vocab, merges = byte_level_bpe(_corpus(), 400, ["<|endoftext|>"], d)
    tok = GPT2TokenizerFast(vocab_file=str(vocab), merges_file=str(merges))
    tok.pad_token = tok.eos_token
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=128, bos_token_id=tok.eos_token_id,
                     eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
    GPT2LMHeadModel(cfg).save_pretrained(d, safe_serialization=True)
    tok.save_pretrained(d)
    return d


# ---------------------------------------------------------------------------------------------- causal LMs

FACTS = [("capital of france", "paris"), ("colour of the sky", "blue"), ("opposite of hot", "cold"), ("two plus two", "four")]
TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, tiny_gpt2):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    d = tmp_path_factory.mktemp("tiny_llama")
    tok = AutoTokenizer.from_pretrained(tiny_gpt2)
    tok.add_special_tokens({"additional_special_tokens": ["<|user|>", "<|assistant|>", "<|end|>"]})
    tok.chat_template = TEMPLATE
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, max_position_embeddings=128, bos_token_id=tok.eos_token_id,
                      eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.eos_token_id)
    LlamaForCausalLM(cfg).save_pretrained(d, safe_serialization=True)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def lm_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("lm_data")
    rng = random.Random(0)
    out = {}
    for split, n in (("train", 96), ("validation", 16)):
        rows = [rng.choice(FACTS) for _ in range(n)]
        with open(d / f"pc_{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["prompt", "completion"])
            w.writerows([(f"question: the {q} is", f" {a}") for q, a in rows])
        with open(d / f"chat_{split}.jsonl", "w") as f:
            for q, a in rows:
                f.write(json.dumps({"messages": [{"role": "user", "content": f"what is the {q}?"},
                                                 {"role": "assistant", "content": a}]}) + "\n")
        with open(d / f"text_{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text"])
            w.writerows([(f"the {q} is {a} .",) for q, a in rows])
        out[split] = {"pc": d / f"pc_{split}.csv", "chat": d / f"chat_{split}.jsonl", "text": d / f"text_{split}.csv"}
    return out
