"""Plain Hugging Face Trainer + peft LoRA fine-tuning: the baseline `nncli finetune` is compared with.

    python benchmarks/trainer_baseline.py --model DIR --train train.tsv --dev dev.tsv --padding max_length|dynamic

Two variants, chosen with --padding:

- `max_length`: every example is padded to --max-length at tokenization and batched with the default
  collator, as the transformers text-classification example (run_glue.py) does by default;
- `dynamic`: no padding at tokenization, DataCollatorWithPadding pads each batch to its longest example
  (the usual best practice).

Same adaptation as nncli's default (LoRA on every linear layer of the encoder: query, key, value, dense;
classifier and pooler trained fully via modules_to_save), same optimiser settings (AdamW, linear schedule,
warm-up, weight decay, clipping at 1.0). No evaluation during training; dev accuracy once at the end.
Prints exactly one JSON object on stdout. Train files are TSV with columns label,sentence; dev files
label,content (SST-2 as in ../shared/data), read with quoting disabled.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile


def read_tsv(path: str, text_column: str):
    import csv

    import pandas as pd

    df = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False, encoding="utf-8")
    return df[text_column].tolist(), [int(x) for x in df["label"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="model directory (or hub id)")
    ap.add_argument("--train", required=True)
    ap.add_argument("--dev", required=True)
    ap.add_argument("--train-text-column", default="sentence")
    ap.add_argument("--dev-text-column", default="content")
    ap.add_argument("--padding", choices=["max_length", "dynamic"], required=True)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--r", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--warmup-ratio", type=float, default=0.1)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--group-by-length", action="store_true",
                    help="Trainer's length-grouped sampler (not used by the benchmark; for attributing nncli's speed-up)")
    a = ap.parse_args()

    import numpy as np
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        default_data_collator,
        set_seed,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.set_num_threads(a.threads)
    set_seed(a.seed)

    train_texts, train_labels = read_tsv(a.train, a.train_text_column)
    dev_texts, dev_labels = read_tsv(a.dev, a.dev_text_column)
    n_labels = len(set(train_labels) | set(dev_labels))
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForSequenceClassification.from_pretrained(a.model, num_labels=n_labels)
    # nncli's lora.target_modules=auto for BERT: every nn.Linear leaf of the encoder outside the head and pooler
    # (query, key, value, dense), written as the same anchored regex nncli builds (nncli/models.py lora_target_regex)
    cfg = LoraConfig(task_type="SEQ_CLS", r=a.r, lora_alpha=a.alpha, lora_dropout=a.dropout,
                     target_modules=r"^bert\.(?!.*\b(?:classifier|pooler)\b).*\.(?:dense|key|query|value)$",
                     modules_to_save=["classifier", "pooler"])
    model = get_peft_model(model, cfg)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    pad = "max_length" if a.padding == "max_length" else False

    def encode(batch):
        return tok(batch["text"], truncation=True, max_length=a.max_length, padding=pad)

    ds_train = Dataset.from_dict({"text": train_texts, "label": train_labels}).map(encode, batched=True,
                                                                                   remove_columns=["text"])
    ds_dev = Dataset.from_dict({"text": dev_texts, "label": dev_labels}).map(encode, batched=True, remove_columns=["text"])
    collator = DataCollatorWithPadding(tok) if a.padding == "dynamic" else default_data_collator

    # warm-up steps as nncli computes them (floor of ratio x total steps; TrainingArguments.warmup_ratio rounds up)
    steps_per_epoch = -(-len(ds_train) // a.batch_size)
    total_steps = max(1, int(round(a.epochs * steps_per_epoch)))
    out_dir = tempfile.mkdtemp(prefix="trainer-baseline-")
    args = TrainingArguments(output_dir=out_dir, per_device_train_batch_size=a.batch_size, per_device_eval_batch_size=64,
                             learning_rate=a.lr, num_train_epochs=a.epochs, warmup_steps=int(a.warmup_ratio * total_steps),
                             lr_scheduler_type="linear", weight_decay=a.weight_decay, max_grad_norm=1.0, seed=a.seed,
                             logging_steps=10, save_strategy="no", eval_strategy="no", report_to=[], use_cpu=True,
                             dataloader_num_workers=0, disable_tqdm=True, group_by_length=a.group_by_length)
    trainer = Trainer(model=model, args=args, train_dataset=ds_train, data_collator=collator)
    out = trainer.train()
    runtime = float(out.metrics["train_runtime"])
    pred = trainer.predict(ds_dev)
    logits = torch.as_tensor(pred.predictions, dtype=torch.float32)
    acc = float((logits.argmax(-1).numpy() == np.asarray(dev_labels)).mean())
    dev_loss = float(torch.nn.functional.cross_entropy(logits, torch.as_tensor(dev_labels)))
    shutil.rmtree(out_dir, ignore_errors=True)
    print(json.dumps({
        "system": f"trainer-{a.padding}" + ("-grouped" if a.group_by_length else ""),
        "train_samples_per_second": len(ds_train) * a.epochs / runtime,
        "train_seconds": runtime,
        "trainer_reported_samples_per_second": out.metrics.get("train_samples_per_second"),
        "optimizer_steps": int(out.global_step),
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "dev_accuracy": acc, "dev_loss": dev_loss, "lr": a.lr,
        "train_rows": len(ds_train), "dev_rows": len(ds_dev), "trainable_parameters": trainable,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
