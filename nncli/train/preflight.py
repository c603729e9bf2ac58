"""Pre-flight checks before any training: data, labels, leakage, lengths, and a memory/time estimate.

`nncli validate RECIPE` runs these and stops; `nncli finetune` runs them first so that data errors
surface in seconds, not after an hour of training. Problems are collected and reported together.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from nncli.core.errors import EnvironmentProblem, InputError, Problems, UsageError
from nncli.io.labelled import LabelledData, load_labelled
from nncli.recipe.finetune import AUTO_EPOCHS_EXAMPLES


@dataclass
class Checked:
    """What every pre-flight (texts, images) finds besides its data: the model, the notes for the report, the estimate."""
    model_path: str | None = None
    config: object = None
    warnings: list[str] = field(default_factory=list)
    info: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    estimate: dict = field(default_factory=dict)


@dataclass
class Preflight(Checked):
    data: LabelledData | None = None
    max_length: int = 128
    epochs: float | None = None
    tokenizer: object = None


def run(recipe, *, check_memory: bool = True) -> Preflight:
    from nncli.io.models import check_tokenizer_matches, load_tokenizer, resolve

    pf, problems = Preflight(), Problems()
    with problems:
        pf.data = load_labelled(recipe.data, seed=recipe.train.seed)
    with problems:
        try:
            pf.model_path = resolve(recipe.model.name, recipe.model.revision, recipe.model.allow_pickle).path
            from transformers import AutoConfig

            pf.config = AutoConfig.from_pretrained(pf.model_path, trust_remote_code=recipe.model.trust_remote_code)
            pf.tokenizer = load_tokenizer(pf.model_path, recipe.model.trust_remote_code)
            check_tokenizer_matches(pf.tokenizer, pf.config, pf.model_path)
        except ValueError as e:
            raise InputError(f"cannot read the model config of {recipe.model.name}: {str(e).splitlines()[0][:200]}",
                             "the architecture may need model.trust_remote_code=true") from None
    problems.raise_all()
    _data_checks(pf, recipe)
    pf.epochs, how = choose_epochs(recipe.train.epochs, len(pf.data.train))
    pf.summary["epochs"] = {"epochs": pf.epochs, "chosen": how}
    _estimate(pf, recipe, check_memory)
    return pf


def _data_checks(pf: Preflight, recipe) -> None:
    from nncli.io.labelled import is_info

    data = pf.data
    pf.warnings.extend(n for n in data.notes if not is_info(n))
    pf.info = list(data.info)
    summary = {"label_names": data.label_names, "rows": {}, "class_counts": {}}
    for s in data.splits():
        summary["rows"][s.name] = {"read": s.rows_read, "kept": len(s), "dropped": s.dropped, "source": s.source,
                                   "columns": s.columns}
        counts = Counter(s.labels)
        summary["class_counts"][s.name] = {name: counts.get(i, 0) for i, name in enumerate(data.label_names)}
    _class_checks(data, recipe, summary, pf.warnings)
    _duplicate_checks(data, summary, pf.warnings)
    _length_checks(pf, recipe, summary)
    if getattr(recipe.data, "audit", False):
        _audit(pf, recipe, summary)
    pf.summary = summary


def _audit(pf: Preflight, recipe, summary: dict) -> None:
    """data.audit=true: nncli audit's checks (label issues, near-duplicates, outliers) on the training data, with
    the recipe's own model as the encoder; the summary goes into report.json's data section, its warnings to stderr."""
    from nncli.core import console
    from nncli.evaluate.audit import preflight_summary

    console.log("pre-flight: auditing the data (label issues, near-duplicates, outliers)")
    summary["audit"], warnings = preflight_summary(pf.data, model_path=pf.model_path, seed=recipe.train.seed)
    pf.warnings.extend(warnings)


def _class_checks(data, recipe, summary: dict, w: list[str]) -> None:
    n_classes = len(data.label_names)
    train_counts = Counter(data.train.labels)
    smallest = min(train_counts.get(i, 0) for i in range(n_classes))
    largest = max(train_counts.values())
    summary["majority_share"] = round(largest / len(data.train), 4)
    if smallest < 10:
        rare = [data.label_names[i] for i in range(n_classes) if train_counts.get(i, 0) < 10]
        w.append(f"train has fewer than 10 examples of: {', '.join(rare)}; expect unstable results for those classes")
    if smallest and largest / smallest >= 5:
        w.append(f"classes are imbalanced {largest}:{smallest} (largest:smallest) in train; "
                 f"train.class_weights={recipe.train.class_weights}, and judge the run by macro-F1, not accuracy")
    for s in data.splits():
        if len(set(s.labels)) < n_classes and s.name != "train":
            missing = [data.label_names[i] for i in range(n_classes) if i not in set(s.labels)]
            w.append(f"{s.name} has no examples of: {', '.join(missing)}; its per-class metrics are undefined")


def _normalised(text: str) -> str:
    return " ".join(text.lower().split())


def _duplicate_checks(data, summary: dict, w: list[str]) -> None:
    """Duplicates within train (and their label conflicts), and leakage: held-out texts that also appear in train."""
    train_keys = Counter(_normalised(t) for t in data.train.texts)
    dupes = sum(c - 1 for c in train_keys.values() if c > 1)
    summary["duplicates_in_train"] = dupes
    if dupes:
        conflict = _conflicting_duplicates(data.train, _normalised)
        w.append(f"train has {dupes} duplicate text(s)" + (f", {conflict} of them with different labels" if conflict else ""))
    summary["overlap"] = {}
    for s in (data.validation, data.test):
        if s is None:
            continue
        overlap = sum(1 for t in s.texts if _normalised(t) in train_keys)
        summary["overlap"][s.name] = overlap
        if overlap:
            w.append(f"leakage: {overlap} of {len(s)} {s.name} texts ({overlap / len(s):.1%}) also appear in train; "
                     f"{s.name} metrics will be optimistic")


def _length_checks(pf: Preflight, recipe, summary: dict) -> None:
    """Token lengths of the training texts (a sample of 20,000 at most), max_length chosen or checked against them."""
    import numpy as np

    train = pf.data.train
    step = max(1, len(train) // 20000) if len(train) > 20000 else 1
    pairs = train.pairs[::step] if train.pairs is not None else None
    enc = pf.tokenizer(train.texts[::step], pairs, truncation=False, add_special_tokens=True, verbose=False)["input_ids"]
    lengths = np.array([len(x) for x in enc])
    model_max = getattr(pf.config, "max_position_embeddings", None)
    max_len, how = choose_max_length(recipe.data.max_length, lengths, model_max)
    pf.max_length = max_len
    if model_max and max_len > model_max:
        raise UsageError(f"data.max_length: {max_len} is longer than the model's {model_max} positions",
                         f"set data.max_length={min(512, model_max)} or less")
    truncated = float((lengths > max_len).mean())
    summary["tokens"] = {"p50": int(np.percentile(lengths, 50)), "p90": int(np.percentile(lengths, 90)),
                         "p99": int(np.percentile(lengths, 99)), "max": int(lengths.max()), "max_length": max_len,
                         "truncated_share": round(truncated, 4),
                         "mean_after_truncation": float(np.minimum(lengths, max_len).mean()), "max_length_chosen": how}
    if truncated > 0.1:
        pf.warnings.append(f"{truncated:.0%} of training texts are longer than data.max_length={max_len} tokens and will be "
                           f"truncated (p90 {summary['tokens']['p90']}, max {summary['tokens']['max']}); consider a larger "
                           "max_length")
    elif truncated > 0:
        summary["tokens"]["note"] = f"{truncated:.1%} of training texts will be truncated"


AUTO_LENGTHS = (64, 128, 192, 256, 320, 384, 448, 512)


def choose_max_length(setting, lengths, model_max: int | None) -> tuple[int, str]:
    """data.max_length=auto: the shortest of 64..512 tokens that keeps 95% of the training texts whole, within the
    model's positions (RoBERTa-style models reserve two)."""
    import numpy as np

    if setting != "auto":
        return int(setting), "set in the recipe"
    cap = min(512, (model_max - 2) if model_max and model_max > 512 else (model_max or 512))
    for n in AUTO_LENGTHS:
        if n >= cap:
            break
        if float(np.mean(lengths <= n)) >= 0.95:
            return n, f"auto: {np.mean(lengths <= n):.0%} of training texts fit in {n} tokens"
    return cap, f"auto: the model's limit of {cap} tokens ({np.mean(lengths <= cap):.0%} of training texts fit)"


def choose_epochs(setting, n_train: int) -> tuple[float, str]:
    """train.epochs=auto: about AUTO_EPOCHS_EXAMPLES training examples seen, in whole epochs from 1 to 6. Up to 1,000
    rows that is 6 epochs (early stopping usually ends sooner); on a few thousand rows a fine-tune started from the
    linear probe has done its work in one or two epochs (TweetEval emotion and irony, benchmarks/README.md), and on
    tens of thousands one epoch is already hours on a CPU."""
    if setting != "auto":
        return float(setting), "set in the recipe"
    epochs = max(1, min(6, math.floor(AUTO_EPOCHS_EXAMPLES / max(1, n_train) + 0.5)))
    return float(epochs), (f"auto: the whole number of epochs, 1 to 6, nearest {AUTO_EPOCHS_EXAMPLES:,} examples seen "
                           f"on {n_train:,} training rows")


def _conflicting_duplicates(split, norm) -> int:
    seen: dict[str, set] = {}
    for t, y in zip(split.texts, split.labels):
        seen.setdefault(norm(t), set()).add(y)
    return sum(1 for v in seen.values() if len(v) > 1)


def _estimate(pf: Preflight, recipe, check_memory: bool) -> None:
    """Rough peak memory and time on this machine, calibrated on all-MiniLM-L6-v2 measurements here."""
    cfg = pf.config
    h = getattr(cfg, "hidden_size", None) or getattr(cfg, "d_model", None) or getattr(cfg, "dim", 768)
    layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None) or getattr(cfg, "n_layers", 12)
    heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", None) or getattr(cfg, "n_heads", 12)
    vocab = getattr(cfg, "vocab_size", 30000)
    inter = getattr(cfg, "intermediate_size", None) or getattr(cfg, "hidden_dim", None) or 4 * h
    n_embed = vocab * h
    n_layer_params = layers * (4 * h * h + 2 * h * inter)
    n_params = n_embed + n_layer_params
    b, s = recipe.train.batch_size, min(pf.max_length, max(8, pf.summary["tokens"]["p99"]))
    # activations kept for backward, fp32 (Korthikanti et al. 2022, per layer s*b*h*(34 + 5*a*s/h) at 2 bytes -> x2)
    act = layers * s * b * h * (68 + 10 * heads * s / h) * (inter / (4 * h) * 0.5 + 0.5)
    trainable = n_params if recipe.method == "full" else 2 * layers * 6 * recipe.lora.r * (h + inter) + 2 * h * h
    state = 4 * n_params + 16 * trainable  # weights + grads + Adam moments
    runtime = 650e6  # torch + transformers + tokenizers resident
    peak = (runtime + state + act) * 1.15
    tokens_epoch = pf.summary["tokens"]["mean_after_truncation"] * len(pf.data.train)
    flops_per_token = (6 if recipe.method == "full" else 4) * n_layer_params + 6 * layers * s * h
    from nncli.core.machine import busy_cores_elsewhere

    cores = os.cpu_count() or 1
    threads = min(recipe.train.threads or cores, cores)
    busy = busy_cores_elsewhere()           # cores other processes keep busy now: they slow training as much
    free = max(0.25, min(threads, cores - busy)) if busy is not None else threads
    # what training achieves per idle core (the formula's FLOPs over measured time; LoRA on all-MiniLM-L6-v2, TweetEval
    # emotion): 33 GFLOP/s on an AMD EPYC (avx512), 15-19 on an Intel Xeon (AMX, bf16 off); the 70 used before was 2-4x
    # optimistic. The progress bar's eta, from the run's own steps, is the figure to trust once training starts.
    rate = 24e9 * free
    epoch_s = tokens_epoch * flops_per_token / rate
    epochs = pf.epochs
    if recipe.train.max_steps:
        steps_per_epoch = max(1, len(pf.data.train) // (b * recipe.train.gradient_accumulation))
        epochs = min(epochs, recipe.train.max_steps / steps_per_epoch)
    avail = _available_memory()
    pf.estimate = {"parameters": int(n_params), "trainable_parameters": int(trainable), "peak_memory_gb": round(peak / 1e9, 2),
                   "available_memory_gb": round(avail / 1e9, 1) if avail else None,
                   "seconds_per_epoch": round(epoch_s, 1), "seconds_total_max": round(epoch_s * epochs * 1.15, 1),
                   "cores_busy_elsewhere": None if busy is None else round(busy, 2)}
    if check_memory and avail and peak > 0.9 * avail:
        raise EnvironmentProblem(
            f"this run needs about {peak / 1e9:.1f} GB of memory, more than the {avail / 1e9:.1f} GB available",
            f"lower train.batch_size (e.g. {max(1, b // 4)}) with "
            f"train.gradient_accumulation={recipe.train.gradient_accumulation * 4}, "
            f"or a shorter data.max_length")


def _available_memory() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def render(pf: Preflight) -> str:
    s = pf.summary
    lines = list(pf.info) + [f"labels: {', '.join(s['label_names'])}"]
    for name, r in s["rows"].items():
        counts = s["class_counts"][name]
        dist = ", ".join(f"{k} {v}" for k, v in counts.items())
        lines.append(f"{name}: {r['kept']} rows ({dist})")
    t = s["tokens"]
    lines.append(f"tokens: p50 {t['p50']}, p90 {t['p90']}, max {t['max']}; max_length {t['max_length']} "
                 f"truncates {t['truncated_share']:.1%}")
    lines.append(f"epochs: {s['epochs']['epochs']:g} ({s['epochs']['chosen']}; early stopping may end sooner)")
    e = pf.estimate
    lines.append(f"estimate: peak memory ~{e['peak_memory_gb']} GB of {e['available_memory_gb']} GB available; "
                 f"~{_fmt_s(e['seconds_per_epoch'])} per epoch, at most ~{_fmt_s(e['seconds_total_max'])} in all"
                 + _contention(e.get("cores_busy_elsewhere")))
    return "\n".join(lines)


def _contention(busy: float | None) -> str:
    if busy is None:
        return " (how busy the cores are is unknown here: the time may be longer)"
    return f" ({busy:.1f} core(s) busy with other processes, counted in)" if busy >= 0.3 else ""


def _fmt_s(sec: float) -> str:
    return f"{sec:.0f}s" if sec < 120 else f"{sec / 60:.0f} min" if sec < 7200 else f"{sec / 3600:.1f} h"
