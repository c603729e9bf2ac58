#!/usr/bin/env bash
# GPU smoke test, offline: fine-tune a tiny classifier and a tiny causal LM (both built from configs, nothing is
# downloaded) on CUDA with bf16 through `nncli finetune`, and check that the loss falls, that the model's tensors
# lived on the GPU during training, and that each run directory is complete.
#
#   scripts/gpu-smoke.sh [PYTHON]        # exit 0: passed; 1: a check failed; 4: no CUDA device or a missing package
#
# Needs torch (CUDA build), transformers, peft, accelerate and nncli's own light dependencies (typer, rich, pydantic,
# pyyaml, scikit-learn, matplotlib); run it from the repository root (PYTHONPATH=. is set for you).
set -euo pipefail
PY=${1:-python3}
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

"$PY" - "$WORK" <<'EOF'
import importlib.util, sys
missing = [m for m in ("torch", "transformers", "peft", "accelerate", "typer", "rich", "pydantic", "yaml", "sklearn", "matplotlib")
           if importlib.util.find_spec(m) is None]
if missing:
    print(f"gpu-smoke: missing packages: {', '.join(missing)} (install them, or carry their wheels)", file=sys.stderr)
    sys.exit(4)
import torch
import os
if not torch.cuda.is_available() and os.environ.get("GPU_SMOKE_ALLOW_CPU") != "1":
    print("gpu-smoke: no CUDA device visible to torch (GPU_SMOKE_ALLOW_CPU=1 checks the script itself on the CPU)", file=sys.stderr)
    sys.exit(4)
if not torch.cuda.is_available():
    print("gpu-smoke: CPU rehearsal (GPU_SMOKE_ALLOW_CPU=1): the device check expects cpu")
    sys.exit(0)
print(f"gpu-smoke: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, bf16 {torch.cuda.is_bf16_supported()}")
EOF

"$PY" - "$WORK" <<'EOF'
"""Tiny models and data, written to the work folder."""
import csv, random, sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

work = Path(sys.argv[1])
rng = random.Random(0)
pos, neg = ["great", "superb", "love", "happy"], ["awful", "broken", "hate", "poor"]
filler = ["the", "lamp", "box", "was", "very", "and", "it", "my", "phone", "day"]
rows = []
for i in range(400):
    y = rng.random() < 0.5
    words = rng.choices(filler, k=6) + [rng.choice(pos if y else neg)]
    rng.shuffle(words)
    rows.append({"text": " ".join(words), "label": "positive" if y else "negative"})
for name, part in (("train", rows[:320]), ("validation", rows[320:])):
    with open(work / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["text", "label"])
        w.writeheader()
        w.writerows(part)
        with open(work / f"lm_{name}.csv", "w", newline="") as g:
            w2 = csv.DictWriter(g, fieldnames=["text"])
            w2.writeheader()
            w2.writerows({"text": r["text"] + (" so I kept it." if r["label"] == "positive" else " so I sent it back.")} for r in part)
corpus = [r["text"] + " so I kept it. so I sent it back." for r in rows]
tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
tok.pre_tokenizer = pre_tokenizers.Whitespace()
tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "</s>"]))
fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                               eos_token="</s>")
torch.manual_seed(0)
bert = BertModel(BertConfig(vocab_size=len(fast), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=128, max_position_embeddings=64, pad_token_id=0))
bert.save_pretrained(work / "bert", safe_serialization=True)
fast.save_pretrained(work / "bert")
llama = LlamaForCausalLM(LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                     pad_token_id=0, eos_token_id=fast.eos_token_id, bos_token_id=fast.cls_token_id))
llama.save_pretrained(work / "llama", safe_serialization=True)
fast.save_pretrained(work / "llama")
EOF

"$PY" - "$WORK" <<'EOF'
"""Both runs through nncli's CLI, with a callback that records where the parameters live while training."""
import json, sys
from pathlib import Path

from nncli.train import loop

work = Path(sys.argv[1])
devices = []
original = loop._step


def spy(run, micro):
    devices.append(str(next(run.model.parameters()).device))
    return original(run, micro)


loop._step = spy
from typer.testing import CliRunner

from nncli.cli import app

failures = []
runs = {"classifier": ["finetune", "--model", str(work / "bert"), "--data", str(work / "train.csv"), "--validation",
                       str(work / "validation.csv"), "-o", str(work / "run-clf"), "--method", "full", "train.lr=2e-3",
                       "train.epochs=4", "train.bf16=true", "data.max_length=32", "train.early_stopping_patience=0", "--json"],
        "causal-lm": ["finetune", "--task", "causal-lm", "--model", str(work / "llama"), "--data", str(work / "lm_train.csv"),
                      "--validation", str(work / "lm_validation.csv"), "-o", str(work / "run-lm"), "train.lr=3e-3",
                      "train.epochs=4", "train.bf16=true", "data.max_length=32", "train.early_stopping_patience=0", "--json"]}
for name, args in runs.items():
    devices.clear()
    r = CliRunner().invoke(app, args)
    if r.exit_code != 0:
        failures.append(f"{name}: exit {r.exit_code}: {r.stderr[-800:]}")
        continue
    rep = json.loads(r.stdout)
    hist = rep["training"]["history"]
    first, last = hist[0]["validation_loss"], hist[-1]["validation_loss"]
    out = Path(args[args.index("-o") + 1])
    missing = [f for f in ("report.json", "recipe.yaml", "README.md", "metrics.jsonl", "merged/config.json", "merged/model.safetensors")
               if not (out / f).exists()]
    import os

    want = "cpu" if os.environ.get("GPU_SMOKE_ALLOW_CPU") == "1" and not __import__("torch").cuda.is_available() else "cuda"
    on_gpu = bool(devices) and all(d.startswith(want) for d in devices)
    print(f"gpu-smoke {name}: validation loss {first:.4f} -> {last:.4f}; bf16 {rep['training']['bf16']}; "
          f"parameters on {sorted(set(devices))}; missing files: {missing or 'none'}")
    if not last < first:
        failures.append(f"{name}: the validation loss did not fall ({first:.4f} -> {last:.4f})")
    if not on_gpu:
        failures.append(f"{name}: training did not run on the GPU ({sorted(set(devices))})")
    if not rep["training"]["bf16"] and want == "cuda":
        failures.append(f"{name}: bf16 was not used")
    if missing:
        failures.append(f"{name}: run directory incomplete: {missing}")
for f in failures:
    print(f"gpu-smoke FAILED: {f}", file=sys.stderr)
sys.exit(1 if failures else 0)
EOF
echo "gpu-smoke: passed"
