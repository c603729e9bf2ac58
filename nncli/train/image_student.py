"""Image distillation students derived from the teacher: the teacher's config with fewer layers (a vision
transformer: `layers=N`, evenly spaced and including the top one, as for text) or fewer blocks per stage and fewer
stages (a CNN with config.depths, ResNet/ConvNeXt/Swin: `depths=A-B-..`; fewer numbers than the teacher's stages keep
the first stages), built from that config and initialised from the teacher's weights wherever a tensor's name (with
the block index mapped to the teacher block it comes from) and shape match: embeddings, kept blocks, norms and the
head; a head whose input width changed (fewer stages) or whose label order differs starts anew. Another
architecture is a student model directory or hub id instead (nncli/train/distill.py)."""

from __future__ import annotations

import re
from pathlib import Path

from nncli.core.errors import UsageError
from nncli.train.student import kept_layers, layer_list

# block containers inside a stage: ResNet/ConvNeXt `stages.<s>.layers.<j>`, Swin `layers.<s>.blocks.<j>`
STAGE_BLOCKS = (re.compile(r"(^|\.)stages\.(\d+)\.layers\.(\d+)\."), re.compile(r"(^|\.)layers\.(\d+)\.blocks\.(\d+)\."))
DERIVED_KEYS = ("stage_names", "out_features", "out_indices", "_out_features", "_out_indices")


def layout(config) -> str:
    if isinstance(getattr(config, "depths", None), (list, tuple)):
        return "depths"
    if isinstance(getattr(config, "num_hidden_layers", None), int):
        return "layers"
    raise UsageError(f"cannot derive a smaller student from a {config.model_type} teacher (no layers or stages to drop)",
                     "pass a student model by name or directory (--student DIR), e.g. a small ResNet")


def default_spec(config) -> dict:
    """Half the teacher: half its layers, or half the blocks of each stage."""
    if layout(config) == "layers":
        return {"layers": max(1, config.num_hidden_layers // 2)}
    depths = [max(1, d // 2) for d in config.depths]
    if depths == list(config.depths):
        raise UsageError(f"the teacher's stages have one block each (depths {'-'.join(map(str, depths))}): no smaller "
                         "student by default", "pass --student depths=1 (fewer stages) or a student model directory")
    return {"depths": depths}


def stage_keep(n_teacher: int, n_student: int) -> list[int]:
    """Blocks of a stage to keep: always the first (it changes width and stride), the rest evenly spaced up to the last."""
    return [0] + [i + 1 for i in kept_layers(n_teacher - 1, n_student - 1)] if n_student > 1 else [0]


def student_config(teacher_config, spec: dict) -> tuple[object, dict, dict]:
    """(the student's config, how student block indices map to the teacher's, what was done)."""
    kind = layout(teacher_config)
    if "hidden" in spec:
        raise UsageError("student: hidden=H is for text students", "for images use layers=N, depths=A-B-.. or a model")
    raw = teacher_config.to_dict()
    if kind == "layers":
        if "depths" in spec:
            raise UsageError(f"student: depths= needs a CNN teacher with stages; {teacher_config.model_type} has "
                             f"{teacher_config.num_hidden_layers} layers", "use --student layers=N")
        n_t, n_s = teacher_config.num_hidden_layers, spec["layers"]
        if n_s >= n_t:
            raise UsageError(f"student: layers={n_s} is not fewer than the teacher's {n_t}",
                             f"choose layers between 1 and {n_t - 1}")
        keep = kept_layers(n_t, n_s)
        raw["num_hidden_layers"] = n_s
        return type(teacher_config).from_dict(raw), {"layers": keep}, {"layers": n_s, "teacher_layers": n_t,
                                                                        "kept_teacher_layers": keep}
    if "layers" in spec:
        raise UsageError(f"student: layers= is for vision transformers; {teacher_config.model_type} has stages "
                         f"(depths {'-'.join(map(str, teacher_config.depths))})", "use --student depths=A-B-.., e.g. depths=1-1")
    t, s = list(teacher_config.depths), spec["depths"]
    if len(s) > len(t) or any(a > b for a, b in zip(s, t)) or s == t[:len(s)] and len(s) == len(t):
        raise UsageError(f"student: depths={'-'.join(map(str, s))} is not smaller than the teacher's {'-'.join(map(str, t))}",
                         "give at most as many stages as the teacher, each with at most its blocks, and fewer somewhere")
    for k in DERIVED_KEYS:
        raw.pop(k, None)
    for k, v in list(raw.items()):        # per-stage settings (hidden_sizes, num_heads, ...) follow the kept stages
        if isinstance(v, list) and len(v) == len(t) and k != "depths":
            raw[k] = v[:len(s)]
    raw["depths"] = s
    if "num_stages" in raw:
        raw["num_stages"] = len(s)
    keep = [stage_keep(t[i], s[i]) for i in range(len(s))]
    return type(teacher_config).from_dict(raw), {"stages": keep}, {"depths": s, "teacher_depths": t,
                                                                    "kept_teacher_blocks": keep}


def teacher_key(name: str, mapping: dict, layers_prefix: str | None) -> str:
    """The teacher's name for a student tensor: the block index replaced by the teacher block it was kept from."""
    if "layers" in mapping and layers_prefix and name.startswith(layers_prefix + "."):
        j, _, rest = name[len(layers_prefix) + 1:].partition(".")
        return f"{layers_prefix}.{mapping['layers'][int(j)]}.{rest}"
    for pattern in STAGE_BLOCKS if "stages" in mapping else ():
        m = pattern.search(name)
        if m:
            stage, block = int(m.group(2)), int(m.group(3))
            head, tail = m.group(0).rsplit(".", 2)[0], name[m.end():]
            return f"{name[:m.start()]}{head}.{mapping['stages'][stage][block]}.{tail}"
    return name


def build_image_student(teacher_dir: str, spec: dict, dest: Path, label_names: list[str]) -> dict:
    """Write the student's initial weights, config and image processor to dest; return what was done."""
    import torch
    from transformers import AutoModelForImageClassification

    from nncli.io.models import head_modules
    from nncli.train.image import load_processor

    teacher = AutoModelForImageClassification.from_pretrained(teacher_dir, use_safetensors=True)
    t_names = [teacher.config.id2label[i] for i in range(teacher.config.num_labels)]
    cfg, mapping, info = student_config(teacher.config, spec)
    cfg.id2label, cfg.label2id = dict(enumerate(label_names)), {n: i for i, n in enumerate(label_names)}
    cfg.num_labels = len(label_names)
    torch.manual_seed(0)
    student = AutoModelForImageClassification.from_config(cfg)
    prefix = layer_list(teacher)[0] if "layers" in mapping else None
    heads = head_modules(student) if t_names != list(label_names) else []
    t_state, s_state = teacher.state_dict(), student.state_dict()
    copied, fresh = 0, set()
    for name, tensor in s_state.items():
        src = t_state.get(teacher_key(name, mapping, prefix))
        if src is not None and src.shape == tensor.shape and not any(name.startswith(h + ".") for h in heads):
            tensor.copy_(src)
            copied += 1
        else:
            fresh.add(name.rsplit(".", 1)[0])
    info.update(**{"from": "teacher", "init": "teacher weights where shapes match (embeddings, kept blocks, head)",
                   "copied_tensors": copied, "new_modules": sorted(fresh)})
    if heads:
        info["head"] = "re-initialised (label order differs from the teacher's)"
    dest.mkdir(parents=True, exist_ok=True)
    student.save_pretrained(dest, safe_serialization=True)
    load_processor(teacher_dir).save_pretrained(dest)
    return info
