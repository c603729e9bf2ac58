"""Recipe errors people can act on: every problem at once as `path.to.key: message`, with "did you mean" for
unknown keys, the nncli spelling of Hugging Face TrainingArguments names, renamed keys, and keys that belong to
another task."""

from __future__ import annotations

import difflib

from pydantic import BaseModel, ValidationError

# TrainingArguments / peft / trl names people type, and where nncli keeps the same setting
TRAINER_NAMES = {
    "learning_rate": "train.lr", "lr": "train.lr", "num_train_epochs": "train.epochs", "epochs": "train.epochs",
    "per_device_train_batch_size": "train.batch_size", "train_batch_size": "train.batch_size",
    "batch_size": "train.batch_size", "gradient_accumulation_steps": "train.gradient_accumulation",
    "warmup_ratio": "train.warmup_ratio", "warmup_steps": "train.warmup_ratio", "weight_decay": "train.weight_decay",
    "max_grad_norm": "train.max_grad_norm", "lr_scheduler_type": "train.scheduler", "seed": "train.seed",
    "bf16": "train.bf16", "fp16": "train.bf16", "max_steps": "train.max_steps", "eval_steps": "train.eval_every",
    "eval_strategy": "train.eval_every", "evaluation_strategy": "train.eval_every", "logging_steps": "logging.every_steps",
    "label_smoothing_factor": "train.label_smoothing", "metric_for_best_model": "train.metric",
    "early_stopping_patience": "train.early_stopping_patience", "report_to": "logging.report_to", "output_dir": "output",
    "model_name_or_path": "model.name", "lora_r": "lora.r", "lora_alpha": "lora.alpha", "lora_dropout": "lora.dropout",
    "target_modules": "lora.target_modules", "max_seq_length": "data.max_length", "max_length": "data.max_length",
    "dataset_text_field": "data.text_column", "packing": "data.packing",
}
RENAMED = {"logging.tensorboard": "logging.report_to=[tensorboard]"}


def format_errors(schema: type[BaseModel], error: ValidationError) -> list[str]:
    out = []
    for err in error.errors():
        loc = [str(p) for p in err["loc"] if not str(p).startswith(("function-", "literal[", "list["))]
        key = ".".join(loc) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = _unknown_key(schema, loc)
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
            if msg.startswith(key + ": "):
                msg = msg[len(key) + 2:]
            elif ": " in msg and key == "(top level)":
                key, _, msg = msg.partition(": ")
        if "input" in err and err["type"] not in ("extra_forbidden", "missing") and not isinstance(err["input"], dict):
            msg += f" (got {err['input']!r})"
        line = f"{key}: {msg}"
        if line not in out:
            out.append(line)
    return out


def _unknown_key(schema: type[BaseModel], loc: list[str]) -> str:
    dotted = ".".join(loc)
    if dotted in RENAMED:
        return f"renamed; write {RENAMED[dotted]}"
    elsewhere = _other_task(schema, loc)
    if elsewhere:
        task = getattr(schema.model_fields.get("task"), "default", "?")
        return f"does not apply to task {task}; it is a key of task {elsewhere}"
    leaf = loc[-1]
    if leaf in TRAINER_NAMES and TRAINER_NAMES[leaf] != dotted and _exists(schema, TRAINER_NAMES[leaf].split(".")):
        return f"unknown key; did you mean '{TRAINER_NAMES[leaf]}'? (nncli's name for {leaf})"
    known = fields_at(schema, loc[:-1])
    close = difflib.get_close_matches(leaf, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean '{'.'.join(loc[:-1] + [close[0]])}'?"
    return f"unknown key; known keys here: {', '.join(sorted(known))}"


def _other_task(schema: type[BaseModel], loc: list[str]) -> str | None:
    from nncli.recipe.finetune import TASK_SCHEMAS

    if "task" not in schema.model_fields:
        return None
    for task, other in TASK_SCHEMAS.items():
        if other is not schema and not issubclass(schema, other) and _exists(other, loc):
            return task
    return None


def _exists(schema: type[BaseModel], loc: list[str]) -> bool:
    return bool(loc) and loc[-1] in fields_at(schema, loc[:-1])


def fields_at(schema: type[BaseModel], loc: list[str]) -> list[str]:
    model = schema
    for part in loc:
        field = model.model_fields.get(part)
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)
