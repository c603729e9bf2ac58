"""Plain Hugging Face Trainer + peft LoRA fine-tuning: the baseline nncli finetune is compared with.

Two variants, chosen with --padding: `max_length` pads every example to max_length at tokenization, as
the transformers text-classification example (run_glue.py) does by default; `dynamic` pads each batch to
its longest example with DataCollatorWithPadding (best practice). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np
import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--dev", required=True)
    ap.add_argument("--padding", choices=["max_length", "dynamic"], required=True)
    ap.add_argument("--epochs", type=float, default=1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--r", type=int, default=16)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="/tmp/trainer-baseline")
    a = ap.parse_args()

    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments, set_seed)

    torch.set_num_threads(a.threads)
    set_seed(a.seed)
    train = pd.read_csv(a.train, sep="\t", quoting=3)
    dev = pd.read_csv(a.dev, sep="\t", quoting=3)
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForSequenceClassification.from_pretrained(a.model, num_labels=2)
    # the same adaptation as nncli's default: LoRA on every linear layer of the encoder, head and pooler trained fully
    cfg = LoraConfig(task_type="SEQ_CLS", r=a.r, lora_alpha=2 * a.r, lora_dropout=0.1,
                     target_modules=r"^bert\.(?!.*\b(?:classifier|pooler)\b).*\.(?:dense|key|query|value)$",
                     modules_to_save=["classifier", "pooler"])
    model = get_peft_model(model, cfg)
    pad = "max_length" if a.padding == "max_length" else False

    def encode(batch):
        return tok(batch["text"], truncation=True, max_length=a.max_length, padding=pad)

    ds_train = Dataset.from_dict({"text": train["sentence"].tolist(), "label": train["label"].tolist()}).map(encode, batched=True)
    ds_dev = Dataset.from_dict({"text": dev["content"].tolist(), "label": dev["label"].tolist()}).map(encode, batched=True)
    args = TrainingArguments(output_dir=a.out, per_device_train_batch_size=a.batch_size, per_device_eval_batch_size=64,
                             learning_rate=a.lr, num_train_epochs=a.epochs, warmup_ratio=0.1, lr_scheduler_type="linear",
                             weight_decay=0.01, max_grad_norm=1.0, seed=a.seed, logging_steps=50, save_strategy="no",
                             eval_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0)
    collator = DataCollatorWithPadding(tok) if a.padding == "dynamic" else None
    trainer = Trainer(model=model, args=args, train_dataset=ds_train.remove_columns(["text"]), data_collator=collator)
    t = time.perf_counter()
    out = trainer.train()
    train_seconds = time.perf_counter() - t
    pred = trainer.predict(ds_dev.remove_columns(["text"]))
    acc = float((np.argmax(pred.predictions, -1) == np.array(dev["label"])).mean())
    print(json.dumps({"system": f"trainer-{a.padding}", "train_samples_per_second": len(train) * a.epochs / train_seconds,
                      "trainer_reported_samples_per_second": out.metrics.get("train_samples_per_second"),
                      "train_seconds": train_seconds, "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "dev_accuracy": acc, "pid": os.getpid()}))


if __name__ == "__main__":
    main()
