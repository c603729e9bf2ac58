"""Causal language models: LoRA (or full) fine-tuning with `task: causal-lm`, and `nncli generate`.

Data, one of three shapes (chosen by the columns the recipe names):
- plain text (`data.text_column`): domain adaptation, loss on every token;
- prompt/completion pairs (`data.prompt_column`, `data.completion_column`): loss on the completion only;
- chat conversations (`data.messages_column`: a list of {role, content}, or its JSON string), rendered
  with the tokenizer's chat template (or `data.chat_template`): loss on the assistant turns only.
`data.train_on_prompt: true` puts the prompt/user tokens back into the loss. Examples longer than
`data.max_length` are truncated and counted; `data.packing: true` concatenates short examples into full
sequences (the first token of every packed example is not a target, so nothing is learned across them).

Training is finetune's: warm-up and decay, gradient clipping and accumulation, evaluation every epoch or
N steps with validation loss and perplexity, early stopping on validation loss with the best weights
restored, NaN abort, SIGINT/SIGTERM checkpoints with exact `--resume`. LoRA targets every linear layer
of the architecture (attention and MLP projections, never lm_head), DoRA as an option; the adapter is
merged into `merged/`. The report and model card carry a few sample generations from validation prompts.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from nncli.core import console
from nncli.core.errors import GateFailed, InputError, Interrupted, UsageError
from nncli.recipe.finetune import FinetuneRecipe
from nncli.recipe.load import dump, fingerprint
from nncli.core.rundir import RunDir
from nncli.core.report import Timer, base_report, environment, evaluate_gates, now, peak_memory_mb
from nncli.core.atomic import atomic_dir

IGNORE = -100
LM_METRICS = ["validation.loss", "validation.perplexity", "loss", "perplexity", "test.loss", "test.perplexity"]


# ---------------------------------------------------------------------------------------------- data

@dataclass
class LMExamples:
    name: str
    mode: str                                   # text | prompt-completion | chat
    input_ids: list[list[int]] = field(default_factory=list)
    labels: list[list[int]] = field(default_factory=list)
    prompts: list = field(default_factory=list)     # for sample generations: prompt text, or messages before the answer
    truncated: int = 0
    dropped: int = 0
    rows_read: int = 0


def data_mode(recipe: FinetuneRecipe) -> str:
    d = recipe.data
    if d.messages_column:
        return "chat"
    if d.prompt_column or d.completion_column:
        if not (d.prompt_column and d.completion_column):
            raise UsageError("prompt/completion data needs both data.prompt_column and data.completion_column",
                             "pass --prompt-column and --completion-column")
        return "prompt-completion"
    return "text"


def _messages(value, row: int, source: str) -> list[dict] | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise InputError(f"{source} row {row}: the messages column is not a JSON list of {{role, content}}",
                             'write each conversation as [{"role": "user", "content": "..."}, {"role": "assistant", ...}]') from None
    if not isinstance(value, list) or not all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
        raise InputError(f"{source} row {row}: messages must be a list of {{role, content}} objects",
                         'e.g. [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]')
    return [{"role": str(m["role"]), "content": "" if m["content"] is None else str(m["content"])} for m in value]


def encode_text(tok, text: str, max_length: int) -> tuple[list[int], list[int], bool]:
    ids = tok(text, add_special_tokens=True)["input_ids"]
    if tok.eos_token_id is not None and (not ids or ids[-1] != tok.eos_token_id):
        ids = ids + [tok.eos_token_id]
    cut = len(ids) > max_length
    ids = ids[:max_length]
    return ids, list(ids), cut


def encode_pair(tok, prompt: str, completion: str, max_length: int, train_on_prompt: bool) -> tuple[list[int], list[int], bool]:
    p = tok(prompt, add_special_tokens=True)["input_ids"]
    c = tok(completion, add_special_tokens=False)["input_ids"]
    if tok.eos_token_id is not None:
        c = c + [tok.eos_token_id]
    ids = p + c
    labels = (list(p) if train_on_prompt else [IGNORE] * len(p)) + list(c)
    cut = len(ids) > max_length
    return ids[:max_length], labels[:max_length], cut


def render_chat(tok, messages: list[dict], template: str | None, add_generation_prompt: bool = False) -> str:
    kw = {"chat_template": template} if template else {}
    if not template and not getattr(tok, "chat_template", None):
        raise InputError("the tokenizer has no chat template, and the recipe sets none",
                         "set data.chat_template (a Jinja template), or use prompt/completion columns")
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt, **kw)


def encode_chat(tok, messages: list[dict], template: str | None, max_length: int, train_on_prompt: bool) -> tuple[list[int], list[int], bool]:
    """Token ids of the rendered conversation; labels only on assistant turns (found by rendering prefixes)."""
    ids: list[int] = []
    labels: list[int] = []
    done = ""
    for i, m in enumerate(messages):
        if m["role"] == "assistant":
            before = render_chat(tok, messages[:i], template, add_generation_prompt=True) if i else ""
            upto = render_chat(tok, messages[: i + 1], template)
            segs = [(before[len(done):], train_on_prompt), (upto[len(before):], True)]
            done = upto
        else:
            continue
        for text, learn in segs:
            if not text:
                continue
            t = tok(text, add_special_tokens=False)["input_ids"]
            ids += t
            labels += list(t) if learn else [IGNORE] * len(t)
    full = render_chat(tok, messages, template)
    rest = full[len(done):]
    if rest:
        t = tok(rest, add_special_tokens=False)["input_ids"]
        ids += t
        labels += list(t) if train_on_prompt else [IGNORE] * len(t)
    cut = len(ids) > max_length
    return ids[:max_length], labels[:max_length], cut


def load_examples(recipe: FinetuneRecipe, tok) -> dict[str, LMExamples]:
    from nncli.io.tables import read_table

    d = recipe.data
    mode = data_mode(recipe)
    sources = {"train": d.train, "validation": d.validation, "test": d.test}
    out: dict[str, LMExamples] = {}
    for name, src in sources.items():
        if not src:
            continue
        table = read_table(src, role=f"{name} data", encoding=d.encoding, config=d.config,
                           split={"train": d.train_split, "validation": d.validation_split or "validation",
                                  "test": d.test_split or "test"}[name])
        for n in table.notes:
            console.warn(n)
        ex = LMExamples(name, mode, rows_read=table.n_rows)
        cols = [c for c in ([d.messages_column] if mode == "chat" else [d.prompt_column, d.completion_column] if mode == "prompt-completion"
                            else ([d.text_column] if isinstance(d.text_column, str) else list(d.text_column)))]
        if mode == "text":
            from nncli.io.labelled import pick_column

            cols = [pick_column(table, d.text_column, "data.text_column", name)]
        for c in cols:
            if c not in table.columns:
                import difflib

                close = difflib.get_close_matches(c, list(table.columns), n=1)
                raise UsageError(f"{name} data has no column '{c}'" + (f"; did you mean '{close[0]}'?" if close else ""),
                                 f"columns: {', '.join(map(str, table.columns))}")
        for i in range(table.n_rows):
            if mode == "chat":
                msgs = _messages(table.columns[cols[0]][i], i + 2, Path(str(src)).name)
                if not msgs or not any(m["role"] == "assistant" for m in msgs):
                    ex.dropped += 1
                    continue
                ids, labels, cut = encode_chat(tok, msgs, d.chat_template, d.max_length, d.train_on_prompt)
                last = max(j for j, m in enumerate(msgs) if m["role"] == "assistant")
                ex.prompts.append({"messages": msgs[:last], "reference": msgs[last]["content"]})
            elif mode == "prompt-completion":
                p, c = table.columns[cols[0]][i], table.columns[cols[1]][i]
                if p is None or c is None or not str(c).strip():
                    ex.dropped += 1
                    continue
                ids, labels, cut = encode_pair(tok, str(p), str(c), d.max_length, d.train_on_prompt)
                ex.prompts.append({"prompt": str(p), "reference": str(c)})
            else:
                t = table.columns[cols[0]][i]
                if t is None or not str(t).strip():
                    ex.dropped += 1
                    continue
                ids, labels, cut = encode_text(tok, str(t), d.max_length)
                words = str(t).split()
                ex.prompts.append({"prompt": " ".join(words[: max(1, len(words) // 3)]), "reference": " ".join(words[len(words) // 3:])})
            if not any(x != IGNORE for x in labels[1:]):
                ex.dropped += 1       # nothing left to learn after truncation
                ex.prompts.pop()
                continue
            ex.input_ids.append(ids)
            ex.labels.append(labels)
            ex.truncated += cut
        if not ex.input_ids:
            raise InputError(f"{name} data {Path(str(src)).name} has no usable examples ({ex.rows_read} rows read, {ex.dropped} empty)",
                             "check the column names and that the texts are not empty")
        out[name] = ex
    if "validation" not in out:
        tr = out["train"]
        n = len(tr.input_ids)
        if n < 10:
            raise InputError(f"only {n} training examples: too few to hold out a validation split",
                             "pass --validation FILE, or more training data")
        idx = list(range(n))
        random.Random(recipe.train.seed).shuffle(idx)
        k = max(1, int(round(n * d.validation_fraction)))
        val, keep = sorted(idx[:k]), sorted(idx[k:])
        v = LMExamples("validation", tr.mode, [tr.input_ids[i] for i in val], [tr.labels[i] for i in val],
                       [tr.prompts[i] for i in val])
        tr.input_ids, tr.labels, tr.prompts = [tr.input_ids[i] for i in keep], [tr.labels[i] for i in keep], [tr.prompts[i] for i in keep]
        out["validation"] = v
    return out


def pack(ex: LMExamples, max_length: int, eos: int | None) -> tuple[list[list[int]], list[list[int]]]:
    """Concatenate examples into sequences of at most max_length; the first token of each example is not a target."""
    seqs, labs = [], []
    cur, cur_l = [], []
    for ids, labels in zip(ex.input_ids, ex.labels):
        labels = [IGNORE] + list(labels[1:])
        if cur and len(cur) + len(ids) > max_length:
            seqs.append(cur)
            labs.append(cur_l)
            cur, cur_l = [], []
        cur = cur + list(ids)
        cur_l = cur_l + labels
    if cur:
        seqs.append(cur)
        labs.append(cur_l)
    return seqs, labs


# ---------------------------------------------------------------------------------------------- training

def run(recipe: FinetuneRecipe, *, resume: bool = False, overwrite: bool = False, dry_run: bool = False,
        gates: list[dict] | None = None) -> dict:
    import numpy as np
    import torch

    from nncli.train import finetune as F
    from nncli.io.models import load_tokenizer, lora_target_regex, resolve
    from nncli.core.machine import set_threads

    timer = Timer()
    gates = gates or []
    from nncli.core.report import check_gate_metrics

    check_gate_metrics(gates, LM_METRICS)
    out = RunDir(recipe.output or f"runs/{recipe.name or 'finetune'}")
    if resume and not (out / "checkpoint" / "state.json").exists():
        raise InputError(f"nothing to resume in {out.path}: no checkpoint found", "run without --resume, or point --output at the interrupted run")
    resolved = resolve(recipe.model.name, recipe.model.revision, recipe.model.allow_pickle)
    tok = load_tokenizer(resolved.path, recipe.model.trust_remote_code)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    examples = load_examples(recipe, tok)
    summary = {name: {"examples": len(e.input_ids), "rows_read": e.rows_read, "dropped": e.dropped, "truncated": e.truncated,
                      "target_tokens": int(sum(sum(1 for x in lab if x != IGNORE) for lab in e.labels))}
               for name, e in examples.items()}
    data_fp = fingerprint({k: (e.input_ids, e.labels) for k, e in examples.items()})
    for name, s in summary.items():
        console.log(f"{name}: {s['examples']} examples ({examples[name].mode}), {s['target_tokens']} target tokens"
                    + (f", {s['truncated']} truncated to {recipe.data.max_length} tokens" if s["truncated"] else ""))
        if s["truncated"] and s["truncated"] > 0.1 * s["examples"]:
            console.warn(f"{name}: {s['truncated']} of {s['examples']} examples are longer than data.max_length={recipe.data.max_length}")
    if dry_run:
        return {"status": "dry-run", "task": "finetune", "data": summary, "exit_code": 0}
    out.prepare(resume=resume, overwrite=overwrite)
    threads = set_threads(recipe.train.threads, adaptive=True)
    F._seed_everything(recipe.train.seed)
    run_fp = fingerprint({"recipe": F._training_relevant(recipe), "data": data_fp})
    report = base_report("finetune", recipe.name)
    report.update(finetune_task="causal-lm", recipe_fingerprint=run_fp, data={"mode": examples["train"].mode, "splits": summary,
                                                                              "fingerprint": data_fp}, warnings=[])
    if resume and F._read_state(out).get("fingerprint") != run_fp:
        raise UsageError(f"cannot resume {out.path}: the recipe or the data changed since the run started",
                         "run again without --resume (with --overwrite), or restore the original recipe and data")
    out.write_text("recipe.yaml", dump(recipe))
    out.write_json("report.json", report)

    from transformers import AutoModelForCausalLM, get_scheduler

    try:
        model = AutoModelForCausalLM.from_pretrained(resolved.path, trust_remote_code=recipe.model.trust_remote_code,
                                                     use_safetensors=None if recipe.model.allow_pickle else True)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot load {recipe.model.name} as a causal LM: {str(e).splitlines()[0][:200]}",
                         "pass a decoder model (GPT-2, Llama, Qwen, Mistral...) with safetensors weights") from e
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    lr = recipe.train.lr or F.DEFAULT_LR[recipe.method]
    if recipe.method == "lora":
        from peft import LoraConfig, get_peft_model

        target, leaves = lora_target_regex(model, recipe.lora.target_modules, [])
        gpt2_style = any(type(m).__name__ == "Conv1D" for m in model.modules())
        cfg = LoraConfig(task_type="CAUSAL_LM", r=recipe.lora.r, lora_alpha=recipe.lora.alpha or 2 * recipe.lora.r,
                         lora_dropout=recipe.lora.dropout, target_modules=target, use_dora=recipe.lora.use_dora,
                         fan_in_fan_out=gpt2_style)
        model = get_peft_model(model, cfg)
        report["training"] = {"lora_targets": leaves, "dora": recipe.lora.use_dora}
    else:
        report["training"] = {"fully_trained_modules": ["all"]}
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in model.parameters())
    report["training"].update(trainable_parameters=n_trainable, total_parameters=n_total, lr=lr)
    console.log(f"model: {recipe.model.name} ({n_total / 1e6:.2f}M parameters, {n_trainable / 1e6:.3f}M trainable, method "
                f"{recipe.method}, lr {lr:g})")

    def tensors(ex: LMExamples) -> dict:
        if recipe.data.packing and ex.name == "train":
            ids, labels = pack(ex, recipe.data.max_length, tok.eos_token_id)
        else:
            ids, labels = ex.input_ids, ex.labels
        return {"ids": ids, "labels": labels, "lengths": np.array([len(x) for x in ids])}

    enc = {name: tensors(e) for name, e in examples.items()}
    bs, accum = recipe.train.batch_size, recipe.train.gradient_accumulation
    steps_per_epoch = max(1, math.ceil(len(enc["train"]["ids"]) / bs) // accum)
    total_steps = recipe.train.max_steps or max(1, int(round(recipe.train.epochs * steps_per_epoch)))
    eval_every = steps_per_epoch if recipe.train.eval_every == "epoch" else int(recipe.train.eval_every)
    optimizer = torch.optim.AdamW(F._param_groups(model, lr, lr, recipe.train.weight_decay), lr=lr)
    scheduler = get_scheduler(recipe.train.scheduler if recipe.train.scheduler != "constant" else "constant_with_warmup", optimizer,
                              num_warmup_steps=int(recipe.train.warmup_ratio * total_steps), num_training_steps=total_steps)
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_metric": None, "best_step": 0, "bad_evals": 0, "history": [],
             "samples_seen": 0, "train_seconds": 0.0, "fingerprint": run_fp}
    best = None
    if resume:
        state, best = F._load_checkpoint(out, model, optimizer, scheduler)
        console.log(f"resuming from step {state['step']} of {total_steps}")
    stop = F._StopFlag()
    stop.install()
    stopped_early = False
    try:
        with console.progress(total_steps, "training") as bar:
            bar.update(state["step"])
            while state["step"] < total_steps and not stopped_early:
                order = F._batches(enc["train"]["lengths"], bs, recipe.train.seed + state["epoch"], recipe.train.group_by_length)
                usable = len(order) // accum * accum or len(order)
                model.train()
                running, n_loss = 0.0, 0
                for bi in range(state["batch_in_epoch"], usable, accum):
                    t0 = time.perf_counter()
                    optimizer.zero_grad(set_to_none=True)
                    for k in range(accum):
                        idx = order[bi + k]
                        batch = collate(enc["train"], idx, tok.pad_token_id)
                        loss = model(**batch).loss / accum
                        if not torch.isfinite(loss):
                            raise F._NonFinite(state["step"], loss.item())
                        loss.backward()
                        running += loss.item() * accum
                        n_loss += 1
                        state["samples_seen"] += len(idx)
                    if recipe.train.max_grad_norm:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.train.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    state["train_seconds"] += time.perf_counter() - t0
                    state["step"] += 1
                    state["batch_in_epoch"] = bi + accum
                    bar.update(1, loss=f"{running / n_loss:.4f}")
                    if state["step"] % recipe.logging.every_steps == 0:
                        out.append_jsonl("metrics.jsonl", {"step": state["step"], "train_loss": round(running / n_loss, 5),
                                                           "lr": scheduler.get_last_lr()[0]})
                        running, n_loss = 0.0, 0
                    done = state["step"] >= total_steps
                    if state["step"] % eval_every == 0 or done:
                        ev = evaluate_lm(model, enc["validation"], tok.pad_token_id)
                        improved = state["best_metric"] is None or ev["loss"] < state["best_metric"]
                        if improved:
                            state.update(best_metric=ev["loss"], best_step=state["step"], bad_evals=0)
                            best = F._trainable_state(model)
                        else:
                            state["bad_evals"] += 1
                        rec = {"step": state["step"], "validation_loss": round(ev["loss"], 5), "validation_perplexity": round(ev["perplexity"], 4)}
                        state["history"].append(rec)
                        out.append_jsonl("metrics.jsonl", rec)
                        console.log(f"step {state['step']}/{total_steps}: validation loss {ev['loss']:.4f}, perplexity "
                                    f"{ev['perplexity']:.2f}" + (" (best)" if improved else ""))
                        if recipe.train.early_stopping_patience and state["bad_evals"] >= recipe.train.early_stopping_patience:
                            stopped_early = True
                        F._save_checkpoint(out, model, optimizer, scheduler, state, best)
                    if done or stopped_early or stop.signal:
                        break
                if stop.signal and not (state["step"] >= total_steps or stopped_early):
                    F._save_checkpoint(out, model, optimizer, scheduler, state, best)
                    report.update(status="interrupted", exit_code=130, finished_at=now())
                    out.write_json("report.json", report)
                    raise Interrupted(f"interrupted by {stop.signal} at step {state['step']} of {total_steps}; state saved in "
                                      f"{out.path}/checkpoint", f"continue with: nncli finetune {out.path}/recipe.yaml --output "
                                      f"{out.path} --resume")
                if state["batch_in_epoch"] >= usable:
                    state["epoch"] += 1
                    state["batch_in_epoch"] = 0
    except F._NonFinite as e:
        report.update(status="failed", exit_code=5, finished_at=now())
        report["gates"] = [{"metric": "train_loss_finite", "op": "==", "threshold": 1, "value": 0, "passed": False}]
        out.write_json("report.json", report)
        raise GateFailed(f"training loss became {e.value} at step {e.step}: the run diverged; nothing was saved",
                         "lower train.lr (e.g. by 10x), keep train.max_grad_norm set", report=report)
    finally:
        stop.restore()

    if best is not None:
        F._load_trainable_state(model, best)
    report["training"].update(steps=state["step"], best_step=state["best_step"], stopped_early=stopped_early, threads=threads,
                              history=state["history"], total_steps_planned=total_steps)
    metrics = {name: evaluate_lm(model, enc[name], tok.pad_token_id) for name in ("validation", "test") if name in enc}
    report["metrics"] = metrics
    report["samples"] = sample_generations(model, tok, examples["validation"], recipe)
    if recipe.method == "lora":
        with atomic_dir(out / "adapter") as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
        report["artifacts"]["adapter"] = "adapter"
        merged = model.merge_and_unload()
    else:
        merged = model
    with atomic_dir(out / "merged") as tmp:
        merged.config.nncli = {"task": "causal-lm", "run": recipe.name}
        merged.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    report["artifacts"]["merged"] = "merged"
    import shutil

    shutil.rmtree(out / "checkpoint", ignore_errors=True)
    report["timings"] = {"wall_seconds": timer(), "train_seconds": round(state["train_seconds"], 2),
                         "train_samples_per_second": round(state["samples_seen"] / state["train_seconds"], 2) if state["train_seconds"] else None}
    report["peak_memory_mb"] = peak_memory_mb()
    report["environment"] = environment(threads)
    flat = {f"{s}.{k}": v for s, m in metrics.items() for k, v in m.items()}
    for k in ("loss", "perplexity"):
        flat[k] = metrics.get("test", metrics["validation"])[k]
    report["gates"] = evaluate_gates(gates, flat)
    failed = [g for g in report["gates"] if not g["passed"]]
    report.update(status="failed" if failed else "succeeded", exit_code=5 if failed else 0, finished_at=now())
    report["artifacts"].update(model_card="README.md", metrics="metrics.jsonl", recipe="recipe.yaml")
    out.write_text("README.md", model_card(report, recipe))
    out.write_json("report.json", report)
    if failed:
        raise GateFailed(f"{len(failed)} gate(s) failed: " + ", ".join(f"{g['metric']} {g['value']:.4f} {g['op']} {g['threshold']}"
                                                                       for g in failed), f"see {out.path}/report.json", report=report)
    return report


def collate(enc: dict, idx, pad_id: int) -> dict:
    import torch

    width = max(len(enc["ids"][i]) for i in idx)
    ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
    labels = torch.full((len(idx), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    for r, i in enumerate(idx):
        n = len(enc["ids"][i])
        ids[r, :n] = torch.tensor(enc["ids"][i])
        labels[r, :n] = torch.tensor(enc["labels"][i])
        mask[r, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def evaluate_lm(model, enc: dict, pad_id: int, batch_size: int = 16) -> dict:
    """Token-weighted mean loss over the target tokens, and its perplexity."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for i in range(0, len(enc["ids"]), batch_size):
            b = collate(enc, list(range(i, min(i + batch_size, len(enc["ids"])))), pad_id)
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.float()
            shift_logits, shift_labels = logits[:, :-1], b["labels"][:, 1:]
            loss = torch.nn.functional.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
                                                     ignore_index=IGNORE, reduction="sum")
            total += float(loss)
            count += int((shift_labels != IGNORE).sum())
    model.train()
    mean = total / max(count, 1)
    return {"loss": mean, "perplexity": float(math.exp(min(mean, 50))), "target_tokens": count}


def sample_generations(model, tok, ex: LMExamples, recipe, n: int = 3, max_new_tokens: int = 32) -> list[dict]:
    out = []
    for p in ex.prompts[:n]:
        prompt = render_chat(tok, p["messages"], recipe.data.chat_template, add_generation_prompt=True) if "messages" in p else p["prompt"]
        text = generate(model, tok, prompt, max_new_tokens=max_new_tokens)
        out.append({"prompt": prompt, "generated": text, "reference": p.get("reference")})
    return out


def generate(model, tok, prompt: str, *, max_new_tokens: int = 64, temperature: float = 0.0, top_p: float = 1.0,
             top_k: int = 0, seed: int = 0) -> str:
    import torch

    model.eval()
    enc = tok(prompt, return_tensors="pt")
    kw = {"do_sample": temperature > 0, "max_new_tokens": max_new_tokens, "pad_token_id": tok.pad_token_id}
    if temperature > 0:
        torch.manual_seed(seed)
        kw.update(temperature=temperature, top_p=top_p, top_k=top_k or None)
    with torch.inference_mode():
        ids = model.generate(**enc, **kw)
    return tok.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)


def model_card(report: dict, recipe: FinetuneRecipe) -> str:
    t = report["training"]
    lines = [f"# {recipe.name or 'nncli run'}", "", f"Causal LM fine-tuned by nncli {report['nncli_version']} from `{recipe.model.name}` "
             f"({recipe.method}{', LoRA r=' + str(recipe.lora.r) if recipe.method == 'lora' else ''}{', DoRA' if recipe.lora.use_dora else ''}) "
             f"on {report['data']['mode']} data.", "", "## Data", "", "| split | examples | target tokens | truncated |", "|---|---|---|---|"]
    for name, s in report["data"]["splits"].items():
        lines.append(f"| {name} | {s['examples']} | {s['target_tokens']} | {s['truncated']} |")
    lines += ["", "## Results", "", "| split | loss | perplexity |", "|---|---|---|"]
    for name, m in report["metrics"].items():
        lines.append(f"| {name} | {m['loss']:.4f} | {m['perplexity']:.3f} |")
    lines += ["", f"{t['steps']} optimizer steps; best validation loss at step {t['best_step']}; {t['trainable_parameters']:,} of "
                  f"{t['total_parameters']:,} parameters trained.", "", "## Sample generations (greedy, validation prompts)", ""]
    for s in report.get("samples", []):
        lines += [f"- prompt: `{s['prompt'][-200:]}`", f"  - generated: `{s['generated'][:200]}`", f"  - reference: `{(s['reference'] or '')[:200]}`"]
    lines += ["", "Re-run: `nncli finetune recipe.yaml`. Use: `nncli generate merged --prompt \"...\"`.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- generate command

def generate_command(model_name: str, prompts: list[str], *, max_new_tokens: int = 64, temperature: float = 0.0, top_p: float = 1.0,
                     top_k: int = 0, seed: int = 0, chat: bool = False, threads: int | None = None) -> dict:
    from transformers import AutoModelForCausalLM

    from nncli.io.inference import model_dir_of
    from nncli.io.models import load_tokenizer, resolve
    from nncli.core.machine import set_threads

    set_threads(threads)
    d = model_dir_of(model_name)
    resolved = resolve(str(d) if d else model_name, None, False)
    try:
        model = AutoModelForCausalLM.from_pretrained(resolved.path, use_safetensors=True).eval()
    except (OSError, ValueError) as e:
        raise InputError(f"cannot load {model_name} as a causal LM: {str(e).splitlines()[0][:200]}",
                         "pass a run directory of a causal-LM fine-tune, its merged/ folder, or a decoder model") from e
    tok = load_tokenizer(resolved.path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    results = []
    for p in prompts:
        text = render_chat(tok, [{"role": "user", "content": p}], None, add_generation_prompt=True) if chat else p
        results.append({"prompt": p, "generated": generate(model, tok, text, max_new_tokens=max_new_tokens, temperature=temperature,
                                                            top_p=top_p, top_k=top_k, seed=seed)})
    return {"status": "succeeded", "exit_code": 0, "task": "generate", "model": model_name,
            "settings": {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "top_k": top_k, "seed": seed,
                         "greedy": temperature == 0}, "generations": results}
