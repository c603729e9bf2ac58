"""`nncli distill`: a smaller, faster student trained to mimic a fine-tuned teacher.

- Student: `layers=N` keeps N of the teacher's layers, evenly spaced and including the top one (6 -> 3
  keeps layers 2, 4 and 6), initialised from the teacher's weights (embeddings, kept layers, pooler,
  head); `hidden=H` shrinks the width through a config (randomly initialised, same vocabulary);
  both combine (`layers=3,hidden=192`); anything else is a model name or directory.
- Loss: alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * cross-entropy on the labels, plus
  optionally hidden_weight * MSE between mean-pooled hidden states of matched layers (through a learned
  linear projection when the widths differ).
- Teacher outputs are computed once and cached on disk, keyed by the teacher's weights, the texts and
  the settings, so training never runs the teacher and a second run with the same teacher reuses them.
- Unlabelled transfer data (`distill.transfer_data`) is labelled by the teacher (soft targets only).
- The training loop is finetune's: schedule, early stopping, resume, NaN abort, run directory, profile.
- The report puts teacher and student side by side (parameters with and without embeddings, size,
  latency and throughput measured in the same process, accuracy and macro-F1, retention) and, by
  default, the same student trained without the teacher (the control), so the gain is measured.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np

from nncli.core import console
from nncli.core.errors import GateFailed, InputError, UsageError
from nncli.core.report import Timer, evaluate_gates, now
from nncli.core.atomic import atomic_write_bytes

IGNORE = -100


# ---------------------------------------------------------------------------------------------- student

def parse_student(spec: str) -> dict:
    spec = (spec or "").strip()
    if not spec:
        raise UsageError("student: required", "pass --student layers=3 (half the teacher's layers) or a model name/directory")
    if "=" not in spec:
        return {"model": spec}
    out: dict = {}
    for part in spec.split(","):
        k, _, v = part.partition("=")
        k = k.strip()
        if k not in ("layers", "hidden"):
            raise UsageError(f"student: unknown setting {k!r} in {spec!r}", "use layers=N and/or hidden=H, e.g. --student layers=3")
        try:
            out[k] = int(v)
        except ValueError:
            raise UsageError(f"student: {k} must be an integer, got {v!r}", f"e.g. --student {k}=3") from None
        if out[k] < 1:
            raise UsageError(f"student: {k} must be at least 1", "e.g. --student layers=3")
    return out


def kept_layers(n_teacher: int, n_student: int) -> list[int]:
    """n_student of n_teacher layer indices, evenly spaced, always including the top layer (6 -> 3: [1, 3, 5])."""
    return [round((j + 1) * n_teacher / n_student) - 1 for j in range(n_student)]


def _layer_list(model):
    """The ModuleList of transformer blocks (BERT/RoBERTa/ELECTRA encoder.layer, DistilBERT transformer.layer, ...)."""
    import torch.nn as nn

    n = model.config.num_hidden_layers
    best = None
    for name, m in model.named_modules():
        if isinstance(m, nn.ModuleList) and len(m) == n and "lora" not in name:
            if best is None or name.count(".") < best[0].count("."):
                best = (name, m)
    if best is None:
        raise InputError(f"cannot find the {n} transformer layers of {type(model).__name__}",
                         "pass a student model by name or directory (--student DIR) instead of layers=N")
    return best


def build_student(teacher_dir: str, spec: dict, dest: Path, label_names: list[str]) -> dict:
    """Write the student's initial weights, config and tokenizer to dest; return what was done."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(teacher_dir)
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir, use_safetensors=True)
    t_names = [teacher.config.id2label[i] for i in range(teacher.config.num_labels)]
    n_t = teacher.config.num_hidden_layers
    info = {"from": "teacher", "teacher_layers": n_t}
    if "hidden" in spec:
        cfg = AutoConfig.from_pretrained(teacher_dir)
        h = spec["hidden"]
        head_dim = cfg.hidden_size // cfg.num_attention_heads
        heads = max(1, h // head_dim)
        if h % heads:
            raise UsageError(f"student: hidden={h} is not divisible into attention heads of {head_dim}",
                             f"use a multiple of {head_dim}, e.g. hidden={max(head_dim, (h // head_dim) * head_dim)}")
        ratio = getattr(cfg, "intermediate_size", 4 * cfg.hidden_size) / cfg.hidden_size
        cfg.hidden_size, cfg.num_attention_heads = h, heads
        if hasattr(cfg, "intermediate_size"):
            cfg.intermediate_size = int(ratio * h)
        cfg.num_hidden_layers = spec.get("layers", n_t)
        torch.manual_seed(0)
        student = AutoModelForSequenceClassification.from_config(cfg)
        info.update(init="random (width differs from the teacher)", hidden=h, layers=cfg.num_hidden_layers,
                    matched_teacher_layers=kept_layers(n_t, cfg.num_hidden_layers))
    else:
        n_s = spec.get("layers", n_t)
        if n_s > n_t:
            raise UsageError(f"student: layers={n_s} is more than the teacher's {n_t}", f"choose layers between 1 and {n_t - 1}")
        keep = kept_layers(n_t, n_s)
        name, layers = _layer_list(teacher)
        parent = teacher.get_submodule(name.rsplit(".", 1)[0]) if "." in name else teacher
        setattr(parent, name.rsplit(".", 1)[-1], torch.nn.ModuleList([layers[i] for i in keep]))
        teacher.config.num_hidden_layers = n_s
        student = teacher
        info.update(init="teacher weights (embeddings, kept layers, pooler, head)", layers=n_s, kept_teacher_layers=keep,
                    matched_teacher_layers=keep)
    # the data's label order may differ from the teacher's: a head in another order would start wrong
    if t_names != list(label_names):
        info["head"] = "re-initialised (label order differs from the teacher's)"
        student.config.id2label = {i: n for i, n in enumerate(label_names)}
        student.config.label2id = {n: i for i, n in enumerate(label_names)}
        _reset_head(student)
    dest.mkdir(parents=True, exist_ok=True)
    student.save_pretrained(dest, safe_serialization=True)
    tok.save_pretrained(dest)
    return info


def _reset_head(model) -> None:
    from nncli.io.models import head_modules

    for name in head_modules(model):
        if name.endswith("pooler"):
            continue
        for m in model.get_submodule(name).modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()


def count_parameters(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    emb = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n or n.endswith(("wte.weight", "wpe.weight")))
    return {"total": int(total), "without_embeddings": int(total - emb), "embeddings": int(emb)}


# ---------------------------------------------------------------------------------------------- teacher cache

def cache_dir(configured: str | None) -> Path:
    if configured:
        return Path(configured)
    base = os.environ.get("NNCLI_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "nncli")
    return Path(base) / "distill"


def model_fingerprint(model_dir: str) -> str:
    h = hashlib.sha256()
    d = Path(model_dir)
    for f in sorted(d.glob("*.safetensors")) + [d / "config.json"]:
        if f.exists():
            h.update(f.name.encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]


def teacher_outputs(teacher, texts: list[str], pairs: list[str] | None, layers: list[int] | None, cache: Path,
                    teacher_fp: str, what: str) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """Teacher logits (and mean-pooled hidden states of `layers`) for texts, from the disk cache when present."""
    h = hashlib.sha256()
    h.update(f"{teacher_fp}|{teacher.max_length}|{layers}|".encode())
    for i, t in enumerate(texts):
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\x1f" + (pairs[i].encode("utf-8", "surrogatepass") if pairs is not None else b"") + b"\x1e")
    key = h.hexdigest()[:24]
    f = cache / f"teacher-{key}.npz"
    if f.exists():
        try:
            with np.load(f, allow_pickle=False) as z:
                logits = z["logits"]
                hidden = z["hidden"].astype(np.float32) if "hidden" in z.files else None
            if len(logits) == len(texts):
                console.log(f"teacher outputs for {len(texts)} {what} texts: reused from cache {f}")
                return logits, hidden, True
        except (OSError, ValueError, KeyError):
            console.warn(f"teacher cache {f} is unreadable; recomputing it")
    console.log(f"teacher: scoring {len(texts)} {what} texts once (cached in {cache})")
    logits, hidden = teacher.run(texts, pairs, batch_size=64, embeddings=bool(layers), layers=layers)
    arrays = {"logits": logits.astype(np.float32)}
    if hidden is not None:
        arrays["hidden"] = hidden.astype(np.float16)
    try:
        import io

        cache.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(f, buf.getvalue())
    except Exception as e:  # an unwritable cache only costs time
        console.warn(f"could not write the teacher cache {f} ({type(e).__name__}); it will be recomputed next time")
    return logits, hidden, False


# ---------------------------------------------------------------------------------------------- training hooks

class DistillHooks:
    """What finetune's loop does differently when it trains a student."""

    task = "distill"
    prepared = True   # distill prepares the run directory itself (the student's initial weights live in it)

    def __init__(self, recipe, teacher, teacher_fp: str, student_info: dict, recipe_text: str):
        self.recipe = recipe
        self.teacher = teacher
        self.teacher_fp = teacher_fp
        self.student_info = student_info
        self.recipe_text = recipe_text
        d = recipe.distill
        self.alpha, self.temperature, self.hidden_weight = d.alpha, d.temperature, d.hidden_weight
        self.needs_hidden = d.hidden_weight > 0
        self.t_logits = None
        self.t_hidden = None
        self.info: dict = {}

    @property
    def fingerprint(self) -> dict:
        d = self.recipe.distill
        return {"teacher": self.teacher_fp, "student": self.recipe.student, "alpha": d.alpha, "T": d.temperature,
                "hidden_weight": d.hidden_weight, "transfer": d.transfer_data, "transfer_limit": d.transfer_limit}

    def prepare(self, enc: dict, data, tok, max_length: int, accepted: set) -> None:
        """Teacher outputs for the training rows, plus transfer rows (teacher-labelled) appended to enc['train']."""
        from nncli.io.labelled import read_texts

        d = self.recipe.distill
        matched = self.student_info.get("matched_teacher_layers")
        layers = [i + 1 for i in matched] if (self.needs_hidden and matched) else None  # hidden_states[0] = embeddings
        cache = cache_dir(d.cache_dir)
        tr = data.train
        logits, hidden, hit = teacher_outputs(self.teacher, tr.texts, tr.pairs, layers, cache, self.teacher_fp, "training")
        self.info.update(cache_dir=str(cache), cache_reused=hit, train_rows=len(tr))
        # teacher columns in the data's label order
        order = [self.teacher.label_names.index(n) for n in data.label_names]
        logits = logits[:, order]
        if d.transfer_data:
            s, _, table = read_texts(d.transfer_data, d.transfer_text_column or self.recipe.data.text_column,
                                     role="transfer data", key_prefix="distill")
            held_out = set()
            for sp in (data.validation, data.test):
                if sp is not None:
                    held_out.update(sp.texts)
            keep = [i for i, t in enumerate(s.texts) if t not in held_out]
            dropped = len(s.texts) - len(keep)
            if d.transfer_limit:
                keep = keep[: d.transfer_limit]
            texts = [s.texts[i] for i in keep]
            pairs = [s.pairs[i] for i in keep] if s.pairs is not None else None
            if dropped:
                console.warn(f"transfer data: dropped {dropped} texts that are also in the validation/test data (they would leak)")
            t_logits, t_hidden, hit2 = teacher_outputs(self.teacher, texts, pairs, layers, cache, self.teacher_fp, "transfer")
            t_enc = tok(texts, pairs, truncation=True, max_length=max_length, verbose=False)
            for k in enc["train"]["features"]:
                enc["train"]["features"][k] = list(enc["train"]["features"][k]) + list(t_enc[k])
            enc["train"]["labels"] = np.concatenate([enc["train"]["labels"], np.full(len(texts), IGNORE, dtype=np.int64)])
            enc["train"]["lengths"] = np.concatenate([enc["train"]["lengths"], [len(x) for x in t_enc["input_ids"]]])
            logits = np.concatenate([logits, t_logits[:, order]])
            if hidden is not None:
                hidden = np.concatenate([hidden, t_hidden])
            self.info.update(transfer_rows=len(texts), transfer_dropped_overlap=dropped, transfer_cache_reused=hit2)
        import torch

        self.t_logits = torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))
        self.t_hidden = torch.from_numpy(hidden.astype(np.float32)) if hidden is not None else None

    def attach(self, model) -> None:
        """A learned projection from the student's width to the teacher's, when they differ (hidden-state matching)."""
        import torch

        self._model_ref = model
        if not self.needs_hidden:
            return
        hs = model.config.hidden_size
        ht = self.t_hidden.shape[-1]
        if hs != ht:
            proj = torch.nn.ModuleList([torch.nn.Linear(hs, ht) for _ in range(self.t_hidden.shape[1])])
            model.nncli_distill_projection = proj  # a submodule while training: optimised, checkpointed, restored
            self.info["projection"] = f"learned linear {hs} -> {ht} per matched layer"

    def detach(self, model) -> None:
        for m in (model, getattr(model, "base_model", None)):
            if m is not None and hasattr(m, "nncli_distill_projection"):
                del m.nncli_distill_projection

    def loss(self, output, batch: dict, idx, loss_fn):
        import torch
        import torch.nn.functional as F

        logits = output.logits.float()
        device = logits.device
        rows = torch.as_tensor(idx, dtype=torch.long)
        t = self.t_logits[rows].to(device)
        T = self.temperature
        kl = F.kl_div(F.log_softmax(logits / T, -1), F.log_softmax(t / T, -1), log_target=True, reduction="batchmean") * T * T
        labels = batch["labels"]
        has = labels != IGNORE
        ce = loss_fn(logits[has], labels[has]) if bool(has.any()) else logits.new_zeros(())
        loss = self.alpha * kl + (1 - self.alpha) * ce
        if self.needs_hidden:
            mask = batch["inputs"]["attention_mask"].unsqueeze(-1).float()
            hs = output.hidden_states
            target = self.t_hidden[rows].to(device)
            proj = getattr(self._model_ref, "nncli_distill_projection", None)
            mse = 0.0
            for j in range(target.shape[1]):
                pooled = (hs[j + 1].float() * mask).sum(1) / mask.sum(1).clamp(min=1)
                if proj is not None:
                    pooled = proj[j](pooled)
                mse = mse + F.mse_loss(pooled, target[:, j])
            loss = loss + self.hidden_weight * mse / target.shape[1]
        return loss


# ---------------------------------------------------------------------------------------------- command

def finetune_recipe(recipe, student_dir: Path, output: str):
    from nncli.recipe.finetune import FinetuneRecipe

    raw = recipe.model_dump(mode="json")
    for k in ("command", "teacher", "student", "distill"):
        raw.pop(k, None)
    raw["model"] = {**raw["model"], "name": str(student_dir)}
    raw["output"] = output
    return FinetuneRecipe.model_validate(raw)


def preflight_recipe(recipe):
    """The finetune recipe pre-flight should check for a distill recipe: the student's tokenizer is the teacher's
    unless the student is a named model."""
    from nncli.io.inference import model_dir_of

    spec = parse_student(recipe.student)
    if "model" in spec:
        return finetune_recipe(recipe, Path(spec["model"]) if Path(spec["model"]).exists() else spec["model"], recipe.output or "")
    teacher = model_dir_of(recipe.teacher)
    return finetune_recipe(recipe, teacher if teacher is not None else Path(recipe.teacher), recipe.output or "")


def run(recipe, *, resume: bool = False, overwrite: bool = False, gates: list[dict] | None = None) -> dict:
    from nncli.train import finetune
    from nncli.io.inference import load_classifier, release
    from nncli.recipe.load import dump
    from nncli.core.rundir import RunDir

    timer = Timer()
    gates = gates or []
    spec = parse_student(recipe.student)
    out = RunDir(recipe.output or f"runs/{recipe.name or 'distill'}")
    teacher = load_classifier(recipe.teacher, trust_remote_code=recipe.model.trust_remote_code, allow_pickle=recipe.model.allow_pickle,
                              threads=recipe.train.threads, max_length=recipe.data.max_length)
    if not teacher.backend.startswith("torch"):
        raise InputError(f"teacher {recipe.teacher} is an ONNX export: distillation needs the PyTorch model",
                         "pass the run directory or its merged/ folder as --teacher")
    teacher_fp = model_fingerprint(teacher.path)
    from nncli.io.labelled import load_labelled

    labels_probe = load_labelled(recipe.data, seed=recipe.train.seed).label_names
    missing = [n for n in labels_probe if n not in teacher.label_names]
    if missing:
        raise InputError(f"the data has labels the teacher does not know: {', '.join(map(str, missing[:5]))} "
                         f"(teacher labels: {', '.join(teacher.label_names)})",
                         "distil on data with the teacher's label set, or fine-tune a teacher on this data first")
    # the student's initial weights live in the run directory (so --resume finds the same start)
    work = out / "student_init"
    if not resume:
        out.prepare(overwrite=overwrite)
    if "model" in spec:
        student_dir = spec["model"]
        info = {"from": "model", "model": spec["model"]}
    else:
        if not resume:
            info = build_student(teacher.path, spec, work, labels_probe)
            (work / "nncli_student.json").write_text(__import__("json").dumps(info))
        else:
            import json

            if not (work / "nncli_student.json").exists():
                raise InputError(f"nothing to resume in {out.path}: no student_init/", "run without --resume")
            info = json.loads((work / "nncli_student.json").read_text())
        student_dir = str(work)
    ft = finetune_recipe(recipe, Path(student_dir), str(out.path))
    hooks = DistillHooks(recipe, teacher, teacher_fp, info, dump(recipe))
    report = finetune.run(ft, resume=resume, overwrite=True, gates=[], hooks=hooks)
    if report.get("status") == "dry-run":
        return report

    # teacher vs student, side by side, measured in this process
    student = load_classifier(str(out.path), threads=recipe.train.threads, max_length=recipe.data.max_length)
    data = load_labelled(ft.data, seed=recipe.train.seed)
    compare = _side_by_side(teacher, student, data, recipe, report)
    release(student)
    control = None
    if recipe.distill.control:
        console.log("control: the same student trained on the labels alone (no teacher)")
        control_out = out / "control"
        ctrl = finetune.run(finetune_recipe(recipe, Path(student_dir), str(control_out)), overwrite=True, gates=[])
        control = {"run": "control", "metrics": ctrl["metrics"]}
    release(teacher)
    shutil.rmtree(work, ignore_errors=True) if recipe.distill.keep_student_init is False else None
    split = "test" if "test" in report["metrics"] else "validation"
    metric = recipe.train.metric if recipe.train.metric != "loss" else "accuracy"
    retention = {m: (report["metrics"][split][m] / compare["teacher"]["metrics"][split][m]
                     if compare["teacher"]["metrics"][split][m] else None) for m in ("accuracy", "macro_f1")}
    dist = {"teacher": compare["teacher"], "student": {**compare["student"], "init": info}, "split": split,
            "retention": retention, "retention_metric": metric, "loss": {"alpha": recipe.distill.alpha, "temperature": recipe.distill.temperature,
                                                                        "hidden_weight": recipe.distill.hidden_weight},
            "speedup_throughput": compare["student"]["throughput_per_second"] / compare["teacher"]["throughput_per_second"],
            "speedup_latency": compare["teacher"]["latency_ms_batch1"] / compare["student"]["latency_ms_batch1"],
            **hooks.info}
    if control:
        dist["control"] = control
        dist["gain_over_control"] = {m: report["metrics"][split][m] - control["metrics"][split][m] for m in ("accuracy", "macro_f1")}
    report["distill"] = dist
    report["task"] = "distill"
    flat = finetune._flat_metrics(report["metrics"])
    flat.update({"retention": retention[metric], "retention_accuracy": retention["accuracy"], "retention_macro_f1": retention["macro_f1"],
                 "speedup": dist["speedup_throughput"]})
    if control:
        flat["gain_over_control"] = dist["gain_over_control"][metric]
    report["gates"] = evaluate_gates(gates, flat)
    failed = [g for g in report["gates"] if not g["passed"]]
    report.update(status="failed" if failed else "succeeded", exit_code=5 if failed else 0, finished_at=now())
    report["timings"]["wall_seconds"] = timer()
    out.write_text("README.md", (out / "README.md").read_text() + model_card_section(dist))
    out.write_json("report.json", report)
    if failed:
        names = ", ".join(f"{g['metric']} {g['value']:.4f} {g['op']} {g['threshold']}" if g["value"] is not None
                          else f"{g['metric']} missing" for g in failed)
        raise GateFailed(f"{len(failed)} gate(s) failed: {names}", f"see {out.path}/report.json", report=report)
    return report


def known_metrics(has_test: bool) -> list[str]:
    from nncli.train.finetune import known_metrics as ft

    return ft(has_test) + ["retention", "retention_accuracy", "retention_macro_f1", "speedup", "gain_over_control"]


def _side_by_side(teacher, student, data, recipe, report) -> dict:
    from nncli.evaluate import metrics as M
    from nncli.deploy.bench import make_batch, measure
    from nncli.io.inference import softmax

    out = {}
    timing = {"min_seconds": recipe.distill.bench_seconds, "min_repeats": 5, "warmup": 2}
    for role, clf in (("teacher", teacher), ("student", student)):
        row = {"path": clf.path, "parameters": count_parameters(clf._model),
               "size_mb": round(sum(f.stat().st_size for f in Path(clf.path).glob("*.safetensors")) / 1e6, 2)}
        seq = min(128, clf.max_length)
        b1, b32 = make_batch(clf, 1, seq), make_batch(clf, 32, seq)
        row["latency_ms_batch1"] = measure(lambda: clf._forward(b1), **timing)["p50_ms"]
        row["throughput_per_second"] = 32 / (measure(lambda: clf._forward(b32), **timing)["p50_ms"] / 1000)
        if role == "teacher":
            order = [clf.label_names.index(n) for n in data.label_names]
            metrics = {}
            for s in data.splits():
                if s.name == "train":
                    continue
                probs = softmax(clf.logits(s.texts, s.pairs)[:, order])
                metrics[s.name] = M.classification(np.asarray(s.labels), probs.argmax(1), len(data.label_names), probs)
            row["metrics"] = metrics
        else:
            row["metrics"] = {k: {m: v[m] for m in ("accuracy", "macro_f1", "loss") if m in v} for k, v in report["metrics"].items()}
        out[role] = row
    return out


def model_card_section(d: dict) -> str:
    t, s = d["teacher"], d["student"]
    split = d["split"]
    lines = ["", "## Distillation", "",
             f"Student ({s['init'].get('init', s['init'].get('model'))}) trained against the teacher `{t['path']}` with "
             f"alpha {d['loss']['alpha']}, temperature {d['loss']['temperature']}, hidden-state weight {d['loss']['hidden_weight']}.", "",
             "| | parameters | without embeddings | size MB | batch-1 ms | batch-32 /s | accuracy | macro-F1 |", "|---|---|---|---|---|---|---|---|"]
    for name, r in (("teacher", t), ("student", s)):
        m = r["metrics"][split]
        lines.append(f"| {name} | {r['parameters']['total']:,} | {r['parameters']['without_embeddings']:,} | {r['size_mb']} | "
                     f"{r['latency_ms_batch1']:.1f} | {r['throughput_per_second']:.1f} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} |")
    if "control" in d:
        m = d["control"]["metrics"][split]
        lines.append(f"| student without teacher (control) | | | | | | {m['accuracy']:.4f} | {m['macro_f1']:.4f} |")
    r = d["retention"]
    lines += ["", f"Retention on {split}: accuracy {r['accuracy']:.3f}, macro-F1 {r['macro_f1']:.3f}; throughput "
                  f"{d['speedup_throughput']:.2f}x the teacher's, batch-1 latency {d['speedup_latency']:.2f}x lower."]
    if "gain_over_control" in d:
        g = d["gain_over_control"]
        lines.append(f"Gain from the teacher over the control: accuracy {g['accuracy'] * 100:+.2f} points, macro-F1 {g['macro_f1'] * 100:+.2f} points.")
    return "\n".join(lines) + "\n"
