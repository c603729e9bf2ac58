"""Distillation students: `layers=N` keeps N of the teacher's layers, evenly spaced and including the top one (6 -> 3
keeps layers 2, 4 and 6), initialised from the teacher's weights (embeddings, kept layers, pooler, head); `hidden=H`
shrinks the width through a config (randomly initialised, same vocabulary); both combine (`layers=3,hidden=192`);
`depths=A-B-..` (image CNNs: blocks kept per stage; fewer numbers keep fewer stages, nncli/train/image_student.py);
anything else is a model name or directory."""

from __future__ import annotations

from pathlib import Path

from nncli.core.errors import InputError, UsageError


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
        if k not in ("layers", "hidden", "depths"):
            raise UsageError(f"student: unknown setting {k!r} in {spec!r}",
                             "use layers=N and/or hidden=H, e.g. --student layers=3 (image CNNs: depths=2-2-1)")
        if k == "depths":
            out[k] = [_positive(k, x, "depths=2-2-1") for x in v.split("-")]
        else:
            out[k] = _positive(k, v, f"{k}=3")
    return out


def _positive(k: str, v: str, example: str) -> int:
    try:
        n = int(v)
    except ValueError:
        raise UsageError(f"student: {k} must be {'integers' if k == 'depths' else 'an integer'}, got {v!r}",
                         f"e.g. --student {example}") from None
    if n < 1:
        raise UsageError(f"student: {k} must be at least 1", f"e.g. --student {example}")
    return n


def kept_layers(n_teacher: int, n_student: int) -> list[int]:
    """n_student of n_teacher layer indices, evenly spaced, always including the top layer (6 -> 3: [1, 3, 5])."""
    return [round((j + 1) * n_teacher / n_student) - 1 for j in range(n_student)]


def layer_list(model):
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

    if "depths" in spec:
        raise UsageError("student: depths= is for image CNN teachers (stages of blocks)", "use layers=N for a text teacher")
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
        name, layers = layer_list(teacher)
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
        reset_head(student)
    dest.mkdir(parents=True, exist_ok=True)
    student.save_pretrained(dest, safe_serialization=True)
    tok.save_pretrained(dest)
    return info


def reset_head(model) -> None:
    from nncli.io.models import head_modules

    for name in head_modules(model):
        if name.endswith("pooler"):
            continue
        for m in model.get_submodule(name).modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()


def count_parameters(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    emb = sum(p.numel() for n, p in model.named_parameters()
              if "embeddings" in n or ".embedder." in n or n.endswith(("wte.weight", "wpe.weight")))   # ResNet: embedder
    return {"total": int(total), "without_embeddings": int(total - emb), "embeddings": int(emb)}


# ---------------------------------------------------------------------------------------------- teacher cache
