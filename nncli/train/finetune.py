"""`nncli finetune`: LoRA (or full) fine-tuning of a sequence classifier, read top to bottom.

A plain PyTorch loop (measured here: the HF Trainer adds nothing on CPU) with dynamic padding and
length-grouped batches, warm-up + decay, gradient accumulation and clipping, class weights, evaluation
every epoch or N steps, early stopping with restore of the best weights, atomic checkpoints that
`--resume` continues bit-for-bit, Ctrl-C/SIGTERM that save state and exit 130, and data-parallel
training under torchrun / accelerate launch (gloo on CPU; rank 0 alone writes).
"""

from __future__ import annotations

import math
import os
import random
import shutil
import signal
import time

from nncli.core import console
from nncli.train import preflight
from nncli.core.errors import GateFailed, InputError, Interrupted, UsageError
from nncli.recipe.finetune import FinetuneRecipe
from nncli.recipe.load import dump, fingerprint
from nncli.core.rundir import RunDir
from nncli.core.report import Timer, base_report, check_gate_metrics, environment, evaluate_gates, now, peak_memory_mb
from nncli.core.atomic import atomic_dir

DEFAULT_LR = {"lora": 5e-4, "full": 1e-4}
METRIC_NAMES = ["accuracy", "macro_f1", "loss"]


def known_metrics(has_test: bool) -> list[str]:
    out = METRIC_NAMES + [f"validation.{m}" for m in METRIC_NAMES]
    return out + ([f"test.{m}" for m in METRIC_NAMES] if has_test else [])


def run(recipe: FinetuneRecipe, *, resume: bool = False, overwrite: bool = False, dry_run: bool = False,
        gates: list[dict] | None = None, hooks=None, on_eval=None, find_lr: str | None = None) -> dict:
    """Fine-tune; `hooks` (distill.DistillHooks) changes the loss, adds teacher-labelled rows and a projection;
    `on_eval(step, metrics)` sees every validation result (sweeps prune through it); `find_lr` runs a learning-rate
    range test first: "report" stops after it, "use" trains with its suggestion."""
    if recipe.task == "causal-lm":
        if hooks is not None:
            raise UsageError("distillation of causal LMs is not supported", "distil a sequence classifier")
        from nncli.train import lm

        return lm.run(recipe, resume=resume, overwrite=overwrite, dry_run=dry_run, gates=gates)
    timer = Timer()
    gates = gates or []
    out = RunDir(recipe.output or f"runs/{recipe.name or 'finetune'}")
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if resume and not (out / "checkpoint" / "state.json").exists():
        raise InputError(f"nothing to resume in {out.path}: no checkpoint found",
                         "run without --resume, or point --output at the interrupted run")

    # 1. pre-flight: every data and model problem surfaces before any training
    pf = preflight.run(recipe)
    data = pf.data
    check_gate_metrics(gates, known_metrics(data.test is not None))
    for w in pf.warnings:
        console.warn(w)
    console.log(preflight.render(pf))
    if dry_run:
        return {"status": "dry-run", "task": "finetune", "data": pf.summary, "estimate": pf.estimate, "warnings": pf.warnings,
                "exit_code": 0}
    if rank == 0 and not (hooks and hooks.prepared):
        out.prepare(resume=resume, overwrite=overwrite)

    import numpy as np
    import torch

    from nncli.evaluate import metrics as M
    from nncli.io.models import head_modules, load_classifier, lora_target_regex
    from nncli.core.machine import set_threads

    threads = set_threads(recipe.train.threads, adaptive=True)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = _device()
    _seed_everything(recipe.train.seed)

    run_fp = fingerprint({"recipe": _training_relevant(recipe), "data": data.fingerprint,
                          **({"distill": hooks.fingerprint} if hooks else {})})
    report = base_report(hooks.task if hooks else "finetune", recipe.name)
    report.update(recipe_fingerprint=run_fp, data={**pf.summary, "fingerprint": data.fingerprint},
                  estimate=pf.estimate, warnings=list(pf.warnings))
    if rank == 0:
        if resume:
            old = _read_state(out)
            if old.get("fingerprint") != run_fp:
                raise UsageError(f"cannot resume {out.path}: the recipe or the data changed since the run started",
                                 "run again without --resume (with --overwrite), or restore the original recipe and data")
        out.write_text("recipe.yaml", hooks.recipe_text if hooks else dump(recipe))
        out.write_json("report.json", report)

    # 2. model: LoRA on the backbone's linear layers; head and pooler trained fully
    model, new_params = load_classifier(pf.model_path, data.label_names, trust_remote_code=recipe.model.trust_remote_code,
                                        allow_pickle=recipe.model.allow_pickle)
    heads = head_modules(model)
    lr = recipe.train.lr or DEFAULT_LR[recipe.method]
    head_lr = recipe.train.head_lr or lr
    if recipe.method == "lora":
        from peft import LoraConfig, get_peft_model

        target, leaves = lora_target_regex(model, recipe.lora.target_modules, heads)
        cfg = LoraConfig(task_type="SEQ_CLS", r=recipe.lora.r, lora_alpha=recipe.lora.alpha or 2 * recipe.lora.r,
                         lora_dropout=recipe.lora.dropout, target_modules=target, use_dora=recipe.lora.use_dora,
                         modules_to_save=[h.split(".")[-1] for h in heads])
        model = get_peft_model(model, cfg)
        report["training"] = {"lora_targets": leaves, "fully_trained_modules": heads}
    else:
        report["training"] = {"fully_trained_modules": ["all"]}
    model.to(device)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in model.parameters())
    report["training"].update(trainable_parameters=n_trainable, total_parameters=n_total, newly_initialised=sorted(
        {k.rsplit(".", 1)[0] for k in new_params}), lr=lr, head_lr=head_lr)
    console.log(f"model: {recipe.model.name} ({n_total / 1e6:.1f}M parameters, {n_trainable / 1e6:.2f}M trainable, "
                f"method {recipe.method}, lr {lr:g})")

    # 3. data: tokenized once, dynamic padding, length-grouped batches
    tok = pf.tokenizer
    accepted = _accepted_inputs(model)
    train_split = data.train
    if recipe.data.augment.methods:
        import dataclasses

        from nncli.train.augment import augment_split

        if data.train.pairs is not None:
            raise UsageError("data.augment does not support text pairs (it would change one side only)", "remove data.augment")
        texts, labels, added = augment_split(data.train.texts, list(data.train.labels), recipe.data.augment, recipe.train.seed)
        train_split = dataclasses.replace(data.train, texts=texts, labels=labels)
        report["data"]["augmentation"] = {"methods": list(recipe.data.augment.methods), "p": recipe.data.augment.p,
                                          "examples_added": added, "train_rows_with_augmentation": len(texts)}
        console.log(f"augmentation: {added} augmented training examples added ({', '.join(recipe.data.augment.methods)})")
    enc = {s.name: _encode(tok, train_split if s.name == "train" else s, recipe.data.max_length, accepted) for s in data.splits()}
    if hooks:
        hooks.prepare(enc, data, tok, recipe.data.max_length, accepted)
        hooks.attach(model)
        model.to(device)
    n_classes = len(data.label_names)
    counts = np.bincount(data.train.labels, minlength=n_classes)
    weight = None
    if recipe.train.class_weights == "balanced":
        w = len(data.train.labels) / (n_classes * np.maximum(counts, 1))
        weight = torch.tensor(w / w.mean(), dtype=torch.float32, device=device)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=recipe.train.label_smoothing)

    bs, accum = recipe.train.batch_size, recipe.train.gradient_accumulation
    batches_per_epoch = math.ceil(len(enc["train"]["labels"]) / bs) // world
    steps_per_epoch = max(1, batches_per_epoch // accum)
    total_steps = recipe.train.max_steps or max(1, int(round(recipe.train.epochs * steps_per_epoch)))
    eval_every = steps_per_epoch if recipe.train.eval_every == "epoch" else int(recipe.train.eval_every)

    optimizer = torch.optim.AdamW(_param_groups(model, lr, head_lr, recipe.train.weight_decay), lr=lr)
    from transformers import get_scheduler

    scheduler = get_scheduler(recipe.train.scheduler if recipe.train.scheduler != "constant" else "constant_with_warmup",
                              optimizer, num_warmup_steps=int(recipe.train.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    if find_lr and not resume:
        from nncli.train.sweep import lr_range_test, plot_lr

        order_all = _batches(enc["train"]["lengths"], bs, recipe.train.seed, recipe.train.group_by_length)
        console.log(f"learning-rate range test: up to {recipe.train.lr_finder_steps} steps from 1e-7 to 1")
        res = lr_range_test(model, lambda i: _collate(enc["train"], order_all[i % len(order_all)], tok.pad_token_id, device),
                            lambda b: loss_fn(model(**b["inputs"]).logits.float(), b["labels"]),
                            lambda lr0: torch.optim.AdamW(_param_groups(model, lr0, lr0, recipe.train.weight_decay), lr=lr0),
                            steps=recipe.train.lr_finder_steps)
        _seed_everything(recipe.train.seed)
        if rank == 0:
            plot_lr(res, out / "lr_finder.png")
            out.write_json("lr_finder.json", res)
        report["lr_finder"] = {k: res[k] for k in ("suggested_lr", "steepest_lr", "min_loss_lr", "steps_run")}
        report["artifacts"].update(lr_finder="lr_finder.png", lr_finder_curve="lr_finder.json")
        console.log(f"learning-rate range test: suggested lr {res['suggested_lr']:.3g} (steepest descent {res['steepest_lr']:.3g}, "
                    f"lowest loss at {res['min_loss_lr']:.3g}); see {out.path}/lr_finder.png")
        if find_lr == "report":
            report.update(task="find-lr", status="succeeded", exit_code=0, finished_at=now(), timings={"wall_seconds": timer()})
            if rank == 0:
                out.write_json("report.json", report)
            return report
        lr = head_lr = res["suggested_lr"]
        report["training"].update(lr=lr, head_lr=head_lr, lr_source="learning-rate range test")
        optimizer = torch.optim.AdamW(_param_groups(model, lr, head_lr, recipe.train.weight_decay), lr=lr)
        scheduler = get_scheduler(recipe.train.scheduler if recipe.train.scheduler != "constant" else "constant_with_warmup",
                                  optimizer, num_warmup_steps=int(recipe.train.warmup_ratio * total_steps),
                                  num_training_steps=total_steps)
    use_bf16 = _use_bf16(recipe.train.bf16)
    ddp_model = model
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, find_unused_parameters=False, device_ids=[device.index] if device.type == "cuda" else None)

    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_metric": None, "best_step": 0, "bad_evals": 0,
             "history": [], "samples_seen": 0, "train_seconds": 0.0, "fingerprint": run_fp}
    best_weights = None
    if resume:
        state, best_weights = _load_checkpoint(out, model, optimizer, scheduler)
        console.log(f"resuming from step {state['step']} of {total_steps} (epoch {state['epoch'] + 1})")
    tb = _tensorboard(out, recipe) if rank == 0 else None

    # 4. the loop
    stop = _StopFlag()
    stop.install()
    higher_better = recipe.train.metric != "loss"
    stopped_early = False
    try:
        with console.progress(total_steps, "training") as bar:
            bar.update(state["step"])
            while state["step"] < total_steps and not stopped_early:
                order = _batches(enc["train"]["lengths"], bs, recipe.train.seed + state["epoch"], recipe.train.group_by_length)
                order = order[: len(order) // world * world][rank::world] if world > 1 else order
                usable = len(order) // accum * accum or len(order)
                ddp_model.train()
                running, n_loss = 0.0, 0
                for bi in range(state["batch_in_epoch"], usable, accum):
                    step_start = time.perf_counter()
                    optimizer.zero_grad(set_to_none=True)
                    for k in range(accum):
                        idx = order[bi + k]
                        batch = _collate(enc["train"], idx, tok.pad_token_id, device)
                        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                            output = ddp_model(**batch["inputs"], **({"output_hidden_states": True} if hooks and hooks.needs_hidden else {}))
                        loss = (hooks.loss(output, batch, idx, loss_fn) if hooks else loss_fn(output.logits.float(), batch["labels"])) / accum
                        if not torch.isfinite(loss):
                            raise _NonFinite(state["step"], loss.item())
                        loss.backward()
                        running += loss.item() * accum
                        n_loss += 1
                        state["samples_seen"] += len(idx) * world
                    if recipe.train.max_grad_norm:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.train.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    state["train_seconds"] += time.perf_counter() - step_start
                    state["step"] += 1
                    state["batch_in_epoch"] = bi + accum
                    bar.update(1, loss=f"{running / n_loss:.4f}")
                    if state["step"] % recipe.logging.every_steps == 0 and rank == 0:
                        rec = {"step": state["step"], "epoch": round(state["epoch"] + (bi + accum) / usable, 3),
                               "train_loss": round(running / n_loss, 5), "lr": scheduler.get_last_lr()[0]}
                        out.append_jsonl("metrics.jsonl", rec)
                        if tb:
                            tb.add_scalar("train/loss", rec["train_loss"], state["step"])
                            tb.add_scalar("train/lr", rec["lr"], state["step"])
                        running, n_loss = 0.0, 0
                    done = state["step"] >= total_steps
                    if state["step"] % eval_every == 0 or done:
                        ev = _evaluate(model, enc["validation"], tok.pad_token_id, n_classes)
                        value = ev[recipe.train.metric]
                        improved = state["best_metric"] is None or (value > state["best_metric"] if higher_better
                                                                      else value < state["best_metric"])
                        if improved:
                            state.update(best_metric=value, best_step=state["step"], bad_evals=0)
                            best_weights = _trainable_state(model)
                        else:
                            state["bad_evals"] += 1
                        rec = {"step": state["step"], "epoch": round(state["epoch"] + (bi + accum) / usable, 3),
                               **{f"validation_{k}": round(v, 5) for k, v in ev.items() if k != "pred"}}
                        state["history"].append(rec)
                        if rank == 0:
                            out.append_jsonl("metrics.jsonl", rec)
                            if tb:
                                for k, v in ev.items():
                                    if k != "pred":
                                        tb.add_scalar(f"validation/{k}", v, state["step"])
                        console.log(f"step {state['step']}/{total_steps}: validation accuracy {ev['accuracy']:.4f}, "
                                    f"macro-F1 {ev['macro_f1']:.4f}, loss {ev['loss']:.4f}" + (" (best)" if improved else ""))
                        if on_eval is not None:
                            on_eval(state["step"], ev)
                        patience = recipe.train.early_stopping_patience
                        if patience and state["bad_evals"] >= patience:
                            stopped_early = True
                        if rank == 0:
                            _save_checkpoint(out, model, optimizer, scheduler, state, best_weights)
                    if stop.signal and not (done or stopped_early):
                        break
                    if done or stopped_early:
                        break
                if stop.signal and not (state["step"] >= total_steps or stopped_early):
                    if rank == 0:
                        _save_checkpoint(out, model, optimizer, scheduler, state, best_weights)
                        report.update(status="interrupted", exit_code=130, finished_at=now())
                        out.write_json("report.json", report)
                    raise Interrupted(f"interrupted by {stop.signal} at step {state['step']} of {total_steps}; state saved "
                                      f"in {out.path}/checkpoint", f"continue with: nncli {hooks.task if hooks else 'finetune'} {out.path}/recipe.yaml "
                                      f"--output {out.path} --resume")
                if state["batch_in_epoch"] >= usable:
                    state["epoch"] += 1
                    state["batch_in_epoch"] = 0
    except _NonFinite as e:
        report.update(status="failed", exit_code=5, finished_at=now())
        report["gates"] = [{"metric": "train_loss_finite", "op": "==", "threshold": 1, "value": 0, "passed": False}]
        if rank == 0:
            out.write_json("report.json", report)
        raise GateFailed(f"training loss became {e.value} at step {e.step}: the run diverged; nothing was saved",
                         "lower train.lr (e.g. by 10x), keep train.max_grad_norm set, or check the data for broken rows",
                         report=report)
    finally:
        stop.restore()
        if tb:
            tb.close()

    # 5. restore the best weights, score every split, reference baselines
    if best_weights is not None:
        _load_trainable_state(model, best_weights)
    report["training"].update(steps=state["step"], epochs_run=round(state["step"] / steps_per_epoch, 2),
                              best_step=state["best_step"], best_validation_metric={recipe.train.metric: state["best_metric"]},
                              stopped_early=stopped_early, bf16=use_bf16, threads=threads, world_size=world,
                              total_steps_planned=total_steps, history=state["history"])
    if rank != 0:
        torch.distributed.barrier() if world > 1 else None
        return report
    results = {}
    predictions = {}
    for split in data.splits():
        if split.name == "train":
            continue
        ev = _evaluate(model, enc[split.name], tok.pad_token_id, n_classes)
        predictions[split.name] = ev.pop("pred")
        ev["ci95"] = M.bootstrap_ci(split.labels, predictions[split.name], n_classes, seed=recipe.train.seed)
        results[split.name] = ev
    report["metrics"] = results
    evals = {s.name: (s.texts if s.pairs is None else [a + " [SEP] " + b for a, b in zip(s.texts, s.pairs)], s.labels)
             for s in data.splits() if s.name != "train"}
    train_texts = data.train.texts if data.train.pairs is None else [a + " [SEP] " + b for a, b in zip(data.train.texts, data.train.pairs)]
    report["baselines"] = {
        "majority_class": {n: M.majority_baseline(data.train.labels, labels, n_classes) for n, (_, labels) in evals.items()},
        "tfidf_logreg": M.tfidf_baseline(train_texts, data.train.labels, evals, n_classes, seed=recipe.train.seed),
    }
    report["warnings"].extend(_guardrails(report, predictions, data.label_names))
    for w in report["warnings"][len(pf.warnings):]:
        console.warn(w)

    # 6. artifacts: adapter, merged model, tokenizer — each appears only when complete
    if hooks:
        hooks.detach(model)
    if recipe.method == "lora":
        with atomic_dir(out / "adapter") as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
        report["artifacts"]["adapter"] = "adapter"
        merged = model.merge_and_unload()
    else:
        merged = model
    with atomic_dir(out / "merged") as tmp:
        merged.config.nncli = {"task": "sequence-classification", "run": recipe.name}
        merged.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    report["artifacts"]["merged"] = "merged"
    shutil.rmtree(out / "checkpoint", ignore_errors=True)
    _write_profile(out, recipe, data, merged, tok, report)

    samples_s = state["samples_seen"] / state["train_seconds"] if state["train_seconds"] else None
    if "augmentation" in report["data"]:
        a = report["data"]["augmentation"]
        a["augmented_examples_seen"] = int(round(state["samples_seen"] * a["examples_added"] / max(a["train_rows_with_augmentation"], 1)))
    report["timings"] = {"wall_seconds": timer(), "train_seconds": round(state["train_seconds"], 2),
                         "train_samples_per_second": round(samples_s, 2) if samples_s else None}
    report["peak_memory_mb"] = peak_memory_mb()
    report["environment"] = environment(threads)
    flat = _flat_metrics(results)
    report["gates"] = evaluate_gates(gates, flat)
    failed = [g for g in report["gates"] if not g["passed"]]
    report.update(status="failed" if failed else ("running" if hooks else "succeeded"), exit_code=5 if failed else 0, finished_at=now())
    _write_plots(out, state["history"], report)
    report["artifacts"].update({"curves": "curves.png", "model_card": "README.md", "metrics": "metrics.jsonl", "recipe": "recipe.yaml"})
    out.write_text("README.md", model_card(report, recipe))
    out.write_json("report.json", report)
    if world > 1:
        torch.distributed.barrier()
    if failed:
        names = ", ".join(f"{g['metric']} {g['value']:.4f} {g['op']} {g['threshold']}" if g["value"] is not None
                          else f"{g['metric']} missing" for g in failed)
        raise GateFailed(f"{len(failed)} gate(s) failed: {names}", f"see {out.path}/report.json", report=report)
    return report


# ---------------------------------------------------------------------------------------------- helpers

class _NonFinite(Exception):
    def __init__(self, step: int, value: float):
        self.step, self.value = step, value


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint at the next step boundary and exits 130."""

    def __init__(self):
        self.signal = None
        self._old = {}

    def install(self):
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        if self.signal:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name
        console.warn(f"{self.signal} received: saving a checkpoint at the end of this step (press Ctrl-C again to abort)")

    def restore(self):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _training_relevant(recipe: FinetuneRecipe) -> dict:
    d = recipe.model_dump(mode="json")
    d.pop("output", None)
    d.pop("name", None)
    d.pop("logging", None)
    d.pop("sweep", None)
    d["train"].pop("threads", None)
    return d


def _use_bf16(setting) -> bool:
    from nncli.core.machine import cpu_flags

    if setting is False:
        return False
    native = bool({"avx512_bf16", "amx_bf16"} & cpu_flags())
    if setting is True and not native:
        console.warn("train.bf16=true but this CPU has no native bf16 (avx512_bf16/AMX): it will be slow")
    return setting is True or native


def _accepted_inputs(model) -> set[str]:
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return set(inspect.signature(base.forward).parameters)


def _encode(tok, split, max_length: int, accepted: set[str]) -> dict:
    import numpy as np

    enc = tok(split.texts, split.pairs, truncation=True, max_length=max_length, verbose=False)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc and k in accepted]
    return {"features": {k: enc[k] for k in keys}, "labels": np.asarray(split.labels, dtype=np.int64),
            "lengths": np.array([len(x) for x in enc["input_ids"]])}


def _batches(lengths, batch_size: int, seed: int, group_by_length: bool) -> list[list[int]]:
    """Shuffled batches; with grouping, similar lengths share a batch (less padding) but order stays random."""
    rng = random.Random(seed)
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    if group_by_length:
        mega = batch_size * 50
        grouped = []
        for i in range(0, len(idx), mega):
            chunk = sorted(idx[i:i + mega], key=lambda j: -lengths[j])
            grouped.extend(chunk)
        idx = grouped
    batches = [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
    rng.shuffle(batches)
    return batches


def _device():
    """cuda:LOCAL_RANK when a GPU is visible (one process per GPU under torchrun), else the CPU."""
    import torch

    if torch.cuda.is_available():
        d = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(d)
        return d
    return torch.device("cpu")


def _collate(enc: dict, idx, pad_id: int, device=None) -> dict:
    import torch

    feats = enc["features"]
    width = max(len(feats["input_ids"][i]) for i in idx)
    inputs = {}
    for k, rows in feats.items():
        pad = pad_id if k == "input_ids" else 0
        t = torch.full((len(idx), width), pad, dtype=torch.long)
        for r, i in enumerate(idx):
            seq = rows[i]
            t[r, : len(seq)] = torch.as_tensor(seq)
        inputs[k] = t
    out = {"inputs": inputs, "labels": torch.as_tensor(enc["labels"][list(idx)])}
    if device is not None and device.type != "cpu":
        out = {"inputs": {k: v.to(device) for k, v in inputs.items()}, "labels": out["labels"].to(device)}
    return out


def _evaluate(model, enc: dict, pad_id: int, n_classes: int, batch_size: int = 64) -> dict:
    import numpy as np
    import torch

    from nncli.evaluate import metrics as M

    model.eval()
    order = np.argsort(-enc["lengths"], kind="stable")
    probs = np.zeros((len(order), n_classes), dtype=np.float64)
    with torch.inference_mode():
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size].tolist()
            device = next(model.parameters()).device
            logits = model(**_collate(enc, idx, pad_id, device)["inputs"]).logits.float()
            probs[idx] = torch.softmax(logits, -1).cpu().numpy()
    model.train()
    pred = probs.argmax(1)
    out = M.classification(enc["labels"], pred, n_classes, probs)
    out["pred"] = pred.tolist()
    return out


def _param_groups(model, lr: float, head_lr: float, weight_decay: float) -> list[dict]:
    groups = {(False, False): [], (False, True): [], (True, False): [], (True, True): []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_head = "modules_to_save" in name or any(f".{h}." in f".{name}" for h in ("classifier", "score", "pooler", "pre_classifier"))
        no_decay = p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name or "bias" in name
        groups[(is_head, no_decay)].append(p)
    out = []
    for (is_head, no_decay), params in groups.items():
        if params:
            out.append({"params": params, "lr": head_lr if is_head else lr, "weight_decay": 0.0 if no_decay else weight_decay})
    return out


def _trainable_state(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _load_trainable_state(model, state: dict) -> None:
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, v in state.items():
            params[n].copy_(v)


def _save_checkpoint(out: RunDir, model, optimizer, scheduler, state: dict, best: dict | None) -> None:
    import json

    import numpy as np
    import torch

    with atomic_dir(out / "checkpoint") as tmp:
        torch.save({"trainable": _trainable_state(model), "best": best or {}, "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(),
                    "python_rng": list(random.getstate()[1]), "python_rng_pos": random.getstate()[2],
                    "numpy_rng": torch.from_numpy(np.random.get_state()[1].astype(np.int64))}, tmp / "state.pt")
        (tmp / "state.json").write_text(json.dumps(state, default=float))


def _read_state(out: RunDir) -> dict:
    import json

    try:
        return json.loads((out / "checkpoint" / "state.json").read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"checkpoint in {out.path} is unreadable: {e}", "run again without --resume") from e


def _load_checkpoint(out: RunDir, model, optimizer, scheduler) -> tuple[dict, dict | None]:
    import numpy as np
    import torch

    state = _read_state(out)
    try:
        ck = torch.load(out / "checkpoint" / "state.pt", weights_only=True)
    except Exception as e:
        raise InputError(f"checkpoint in {out.path} is unreadable: {type(e).__name__}", "run again without --resume") from e
    _load_trainable_state(model, ck["trainable"])
    optimizer.load_state_dict(ck["optimizer"])
    scheduler.load_state_dict(ck["scheduler"])
    torch.set_rng_state(ck["torch_rng"])
    random.setstate((3, tuple(ck["python_rng"]), ck["python_rng_pos"]))
    np.random.set_state(("MT19937", ck["numpy_rng"].numpy().astype(np.uint32), 624, 0, 0.0))
    return state, (ck["best"] or None)


def _tensorboard(out: RunDir, recipe: FinetuneRecipe):
    if not recipe.logging.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        from nncli.core.errors import missing_extra
        raise missing_extra("tensorboard", "tensorboard")
    return SummaryWriter(str(out / "tensorboard"))


def _flat_metrics(results: dict) -> dict[str, float]:
    flat = {}
    for split, ev in results.items():
        for k, v in ev.items():
            if isinstance(v, (int, float)):
                flat[f"{split}.{k}"] = v
    primary = "test" if "test" in results else "validation"
    for k, v in results.get(primary, {}).items():
        if isinstance(v, (int, float)):
            flat[k] = v
    return flat


def _guardrails(report: dict, predictions: dict, label_names: list[str]) -> list[str]:
    out = []
    for split, pred in predictions.items():
        used = sorted(set(pred))
        m = report["metrics"][split]
        base = report["baselines"]["majority_class"][split]
        tfidf = report["baselines"]["tfidf_logreg"][split]
        if len(used) == 1:
            out.append(f"COLLAPSED: the model predicts only '{label_names[used[0]]}' on {split}; it learned nothing useful. "
                       "Try a higher train.lr, more epochs, or method=full")
        elif m["accuracy"] <= base["accuracy"] and m["macro_f1"] <= base["macro_f1"] + 0.05:
            out.append(f"{split}: no better than always predicting the majority class (accuracy {m['accuracy']:.3f} vs "
                       f"{base['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f} vs {base['macro_f1']:.3f})")
        if tfidf["macro_f1"] > m["macro_f1"] + 0.02:
            out.append(f"{split}: the TF-IDF + logistic regression baseline beats the model on macro-F1 "
                       f"({tfidf['macro_f1']:.3f} vs {m['macro_f1']:.3f}): the neural model does not earn its cost yet")
    return out


def _write_profile(out: RunDir, recipe: FinetuneRecipe, data, merged, tok, report: dict) -> None:
    """Reference profile for `nncli drift`: text statistics on train + validation, model outputs on validation (held out)."""
    import inspect

    from nncli.evaluate import drift
    from nncli.io.inference import Classifier

    try:
        merged.eval()
        accepted = set(inspect.signature(merged.forward).parameters)
        inputs = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in accepted and k in tok.model_input_names]
        clf = Classifier(str(out / "merged"), str(out / "merged"), "torch", list(data.label_names), 1.0, recipe.data.max_length,
                         {"inputs": inputs}, merged, tok)
        val = data.validation
        profile = drift.build_profile(
            data.train.texts + val.texts, [data.label_names[i] for i in data.train.labels + val.labels], clf=clf,
            model_texts=val.texts, model_pairs=val.pairs, model_labels=[data.label_names[i] for i in val.labels],
            source=f"{recipe.data.train} (+ validation)", text_column=data.train.columns.get("text"),
            label_column=data.train.columns.get("label"), text_pair_column=data.train.columns.get("text_pair"),
            model_ref="merged", seed=recipe.train.seed)
        drift.save_profile(out.path, profile)
        report["artifacts"]["profile"] = drift.PROFILE_FILE
    except Exception as e:  # a missing profile must not lose a finished model; say so
        if isinstance(e, OSError) and e.errno == 28:
            raise
        msg = f"could not write the drift reference profile ({type(e).__name__}: {str(e)[:160]}); nncli drift will need --reference DATA"
        console.warn(msg)
        report["warnings"].append(msg)


def _write_plots(out: RunDir, history: list[dict], report: dict) -> None:
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = []
    p = out / "metrics.jsonl"
    if p.exists():
        train = [r for r in map(json.loads, p.read_text().splitlines()) if "train_loss" in r]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    if train:
        a.plot([r["step"] for r in train], [r["train_loss"] for r in train], label="train loss")
    if history:
        a.plot([r["step"] for r in history], [r["validation_loss"] for r in history], "o-", label="validation loss")
        b.plot([r["step"] for r in history], [r["validation_accuracy"] for r in history], "o-", label="accuracy")
        b.plot([r["step"] for r in history], [r["validation_macro_f1"] for r in history], "s-", label="macro-F1")
        best = report["training"]["best_step"]
        b.axvline(best, color="grey", ls="--", lw=1, label=f"best (step {best})")
    a.set_xlabel("optimizer step"), a.set_title("loss"), a.legend()
    b.set_xlabel("optimizer step"), b.set_title("validation"), b.legend(), b.set_ylim(0, 1)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    from nncli.core.atomic import atomic_write_bytes

    atomic_write_bytes(out / "curves.png", buf.getvalue())


def model_card(report: dict, recipe: FinetuneRecipe) -> str:
    d = report["data"]
    lines = [f"# {recipe.name or 'nncli run'}", "",
             f"Sequence classifier fine-tuned by nncli {report['nncli_version']} from `{recipe.model.name}` "
             f"({recipe.method}{', LoRA r=' + str(recipe.lora.r) if recipe.method == 'lora' else ''}).", "",
             "## Data", "", "| split | rows | classes |", "|---|---|---|"]
    for name, r in d["rows"].items():
        lines.append(f"| {name} | {r['kept']} | " + ", ".join(f"{k}: {v}" for k, v in d["class_counts"][name].items()) + " |")
    lines += ["", f"Labels: {', '.join(d['label_names'])}. Data fingerprint `{d['fingerprint']}`.", "",
              "## Results (95% bootstrap confidence intervals)", "",
              "| split | accuracy | macro-F1 | log-loss | majority-class acc / F1 | TF-IDF+LR acc / F1 |", "|---|---|---|---|---|---|"]
    for split, m in report["metrics"].items():
        ci = m.get("ci95", {})
        fmt = lambda k: f"{m[k]:.3f}" + (f" [{ci[k][0]:.3f}, {ci[k][1]:.3f}]" if k in ci else "")  # noqa: E731
        maj = report["baselines"]["majority_class"][split]
        tf = report["baselines"]["tfidf_logreg"][split]
        lines.append(f"| {split} | {fmt('accuracy')} | {fmt('macro_f1')} | {m['loss']:.3f} | {maj['accuracy']:.3f} / "
                     f"{maj['macro_f1']:.3f} | {tf['accuracy']:.3f} / {tf['macro_f1']:.3f} |")
    t = report["training"]
    lines += ["", "## Training", "",
              f"{t['steps']} optimizer steps ({t['epochs_run']} epochs{', stopped early' if t['stopped_early'] else ''}); "
              f"best validation {recipe.train.metric} at step {t['best_step']}. lr {t['lr']:g} (head {t['head_lr']:g}), "
              f"batch {recipe.train.batch_size} x {recipe.train.gradient_accumulation}, {recipe.train.scheduler} schedule "
              f"with {recipe.train.warmup_ratio:.0%} warm-up, weight decay {recipe.train.weight_decay}, class weights "
              f"{recipe.train.class_weights}, seed {recipe.train.seed}.",
              f"{t['trainable_parameters']:,} of {t['total_parameters']:,} parameters trained. "
              f"{report['timings'].get('train_samples_per_second')} training samples/s, peak memory {report.get('peak_memory_mb')} MB.",
              "", "![training curves](curves.png)", "", "## Limitations and warnings", ""]
    warns = report["warnings"] or ["none raised by nncli's checks"]
    lines += [f"- {w}" for w in warns]
    if "test" not in report["metrics"]:
        lines += ["- No test split: the validation split also chose the best checkpoint (early stopping), so its metrics are "
                  "slightly optimistic. Pass --test for an unbiased estimate."]
    lines += ["- Metrics hold for data like the validation/test files above; check calibration and behaviour on "
              "shifted data before deployment (`nncli evaluate`).", "", "## Use", "", "```python",
              "from transformers import pipeline", "clf = pipeline('text-classification', model='merged')", "```", ""]
    if recipe.method == "lora":
        lines += ["The LoRA adapter alone (`adapter/`) loads onto the base model with peft:", "", "```python",
                  "from transformers import AutoModelForSequenceClassification", "from peft import PeftModel",
                  f"base = AutoModelForSequenceClassification.from_pretrained('{recipe.model.name}', num_labels={len(d['label_names'])})",
                  "model = PeftModel.from_pretrained(base, 'adapter')", "```", ""]
    lines += ["Re-run: `nncli finetune recipe.yaml`.", ""]
    return "\n".join(lines)
