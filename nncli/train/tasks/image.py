"""Image classification: images -> labels, with AutoModelForImageClassification and the checkpoint's AutoImageProcessor.

Everything but the inputs is the text classifier's (class-weighted cross-entropy, label smoothing, head learning rate,
metrics): pixel values replace token ids. Training images get a random resized crop, flips and colour jitter (drawn
from torch's generator, which checkpoints save, so --resume repeats them); evaluation sees the processor's own
resize/crop/normalisation only. LoRA goes on the attention projections of a vision transformer; a convolutional model
has none, so LoRA adapts its convolution and linear layers; the head is always trained fully (modules_to_save).
"""

from __future__ import annotations

import math

import numpy as np

from nncli.core import console
from nncli.core.errors import UsageError
from nncli.io.image_checks import load_rgb
from nncli.train.tasks.classify import ClassificationTask, class_weight, majority_accuracy

CACHE_BYTES = 1 << 30          # decoded training images (and preprocessed evaluation tensors) kept in memory up to this
ATTENTION_LEAVES = ("query", "key", "value", "q_proj", "k_proj", "v_proj", "qkv", "q", "k", "v")


class ImageClassificationTask(ClassificationTask):
    name = "image-classification"

    def __init__(self, data, processor, augment, *, metric: str = "macro_f1", class_weights: str = "balanced",
                 label_smoothing: float = 0.0, head_lr: float | None = None):
        self.data, self.processor, self.augment = data, processor, augment
        self.metric, self.higher_is_better = metric, metric != "loss"
        self.n_classes = len(data.label_names)
        self.head_lr, self.label_smoothing = head_lr, label_smoothing
        self.splits = {s.name: s for s in data.splits()}
        self.enc = {name: {"labels": np.asarray(s.labels, dtype=np.int64)} for name, s in self.splits.items()}
        self.weight = class_weight(self.enc["train"]["labels"], self.n_classes, class_weights)
        self.majority_accuracy = majority_accuracy(self.enc["train"]["labels"], self.enc["validation"]["labels"]) \
            if "validation" in self.enc else 0.0       # checkpoint ranking: accuracy >= the majority class's first
        self.size = target_size(processor)
        self.probs: dict[str, np.ndarray] = {}
        self._images: dict[str, object] = {}
        self._pixels: dict[tuple[str, int], object] = {}
        self._cached = 0

    def lengths(self, split: str) -> np.ndarray:
        return np.ones(len(self.splits[split]), dtype=np.int64)

    def image(self, path: str):
        im = self._images.get(path)
        if im is None:
            im = load_rgb(path)
            if self._cached + im.width * im.height * 3 < CACHE_BYTES:
                self._images[path] = im
                self._cached += im.width * im.height * 3
        return im

    def pixels(self, images):
        return self.processor(images=images, return_tensors="pt")["pixel_values"]

    def collate(self, split: str, idx: list[int]) -> dict:
        import torch

        s = self.splits[split]
        if split == "train":
            images = [random_augment(self.image(s.paths[i]), self.size, self.augment) for i in idx]
            pv = self.pixels(images)
        else:
            missing = [i for i in idx if (split, i) not in self._pixels]
            made = dict(zip(missing, self.pixels([self.image(s.paths[i]) for i in missing]))) if missing else {}
            for i, t in made.items():
                if self._cached + t.numel() * 4 < CACHE_BYTES:
                    self._pixels[(split, i)] = t
                    self._cached += t.numel() * 4
            pv = torch.stack([made[i] if i in made else self._pixels[(split, i)] for i in idx])
        return {"inputs": {"pixel_values": pv}, "labels": torch.as_tensor(self.enc[split]["labels"][list(idx)]),
                "index": torch.as_tensor(idx)}


def target_size(processor) -> tuple[int, int]:
    """(height, width) the processor hands the model."""
    size = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    size = size or getattr(processor, "size", None) or {}
    if "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    edge = size.get("shortest_edge") or size.get("longest_edge") or 224
    return int(edge), int(edge)


def _uniform(lo: float, hi: float) -> float:
    import torch

    return lo + (hi - lo) * float(torch.rand(()))


def random_augment(im, size: tuple[int, int], spec):
    """A random resized crop (area share spec.crop_scale, aspect 3/4..4/3) to `size`, a horizontal flip with p=0.5,
    and brightness/contrast/saturation jitter, like torchvision's RandomResizedCrop, RandomHorizontalFlip and
    ColorJitter."""
    import torch
    from PIL import Image, ImageEnhance

    lo, hi = spec.crop_scale
    if (lo, hi) != (1.0, 1.0):
        w0, h0 = im.size
        for _ in range(10):
            area = w0 * h0 * _uniform(lo, hi)
            ratio = math.exp(_uniform(math.log(3 / 4), math.log(4 / 3)))
            w, h = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
            if 0 < w <= w0 and 0 < h <= h0:
                x, y = int(torch.randint(0, w0 - w + 1, ())), int(torch.randint(0, h0 - h + 1, ()))
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR, box=(x, y, x + w, y + h))
                break
    if spec.hflip and float(torch.rand(())) < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if spec.color_jitter:
        j = spec.color_jitter
        for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            im = enhance(im).enhance(_uniform(max(0.0, 1 - j), 1 + j))
    return im


# ---------------------------------------------------------------------------------------------- the model

def load_image_classifier(path: str, label_names: list[str], *, trust_remote_code: bool = False, allow_pickle: bool = False):
    """AutoModelForImageClassification with our labels (a new head where the checkpoint's differs). Returns (model,
    names of newly initialised parameters)."""
    from transformers import AutoModelForImageClassification

    from nncli.io.models import load_config, load_weights

    id2label = dict(enumerate(label_names))
    config = load_config(path, trust_remote_code, num_labels=len(label_names), id2label=id2label,
                         label2id={n: i for i, n in id2label.items()})
    return load_weights(AutoModelForImageClassification, path, config, what="an image classifier",
                        hint="use a vision model (ViT, DeiT, Swin, ConvNeXt, ResNet, EfficientNet...)",
                        trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)


def lora_targets(model, setting, heads: list[str]) -> tuple[list[str], str]:
    """peft target_modules (full module names) and a line saying what they are: the attention projections of a vision
    transformer; on a model without attention (a CNN) its convolution and linear layers (grouped convolutions left out)."""
    import torch.nn as nn

    if isinstance(setting, list):
        return setting, f"lora.target_modules: {', '.join(setting)}"
    inside = [(n, m) for n, m in model.named_modules() if n and not any(n == h or n.startswith(h + ".") for h in heads)]
    linear = [n for n, m in inside if isinstance(m, nn.Linear)]
    attention = [n for n in linear if n.rsplit(".", 1)[-1] in ATTENTION_LEAVES]
    arch = type(model).__name__
    if setting in ("auto", "attention") and attention:
        return attention, f"the {len(attention)} attention projections (query, key, value)"
    if setting == "all-linear":
        if not linear:
            raise UsageError(f"lora.target_modules=all-linear: {arch} has no linear layers outside its head",
                             "use lora.target_modules=auto (its convolutions), or method=full")
        return linear, f"all {len(linear)} linear layers"
    if setting == "attention":
        raise UsageError(f"lora.target_modules=attention: {arch} has no attention layers (it is convolutional)",
                         "use lora.target_modules=auto (LoRA on its convolution and linear layers), or method=full")
    convs = [n for n, m in inside if isinstance(m, nn.Conv2d) and m.groups == 1]
    if not convs and not linear:
        raise UsageError(f"{arch} has no layers LoRA can adapt", "use method=full")
    console.log(f"LoRA: {arch} has no attention layers; LoRA adapts its {len(convs)} convolution and {len(linear)} linear "
                "layers (for a CNN, method=full is the usual choice)")
    return convs + linear, f"{len(convs)} convolution and {len(linear)} linear layers (no attention in {arch})"


def batch_norms(model, heads: list[str]) -> list[str]:
    """Full names of the backbone's batch-norm layers (CNNs): under LoRA they are trained and saved with the adapter."""
    import torch.nn as nn

    kinds = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
    return [n for n, m in model.named_modules() if isinstance(m, kinds) and not any(n.startswith(h + ".") for h in heads)]


def build_model(model_path: str, label_names: list[str], recipe, report: dict):
    """The classifier with its new head; full, or LoRA with the head trained fully."""
    from nncli.io.models import head_modules

    model, new_params = load_image_classifier(model_path, label_names, trust_remote_code=recipe.model.trust_remote_code,
                                              allow_pickle=recipe.model.allow_pickle)
    heads = head_modules(model)
    training = {"fully_trained_modules": ["all"]}
    if recipe.method == "lora":
        from peft import LoraConfig, get_peft_model

        targets, what = lora_targets(model, recipe.lora.target_modules, heads)
        norms = batch_norms(model, heads)
        if norms:
            console.log(f"LoRA: the {len(norms)} batch-norm layers are trained and saved with the adapter (their running "
                        "statistics change in training, so the base model's would not reproduce the fine-tuned one)")
        cfg = LoraConfig(r=recipe.lora.r, lora_alpha=recipe.lora.alpha or 2 * recipe.lora.r, lora_dropout=recipe.lora.dropout,
                         target_modules=targets, use_dora=recipe.lora.use_dora,
                         modules_to_save=[h.split(".")[-1] for h in heads] + norms)
        model = get_peft_model(model, cfg)
        training.update(lora_targets=sorted({t.rsplit(".", 1)[-1] for t in targets}), lora_target_count=len(targets),
                        lora_targets_are=what, fully_trained_modules=heads, batch_norms_trained=len(norms))
    training.update(trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
                    total_parameters=sum(p.numel() for p in model.parameters()),
                    newly_initialised=sorted({k.rsplit(".", 1)[0] for k in new_params}))
    report["training"] = training
    return model


def pooled_features(model, task: ImageClassificationTask, split: str, idx: list[int], batch_size: int = 64) -> np.ndarray:
    """The backbone's pooled output (a vision transformer's [CLS] state where it has no pooler) for images of a split,
    without augmentation: the features of the linear-probe baseline."""
    import torch

    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if base is None:
        raise UsageError(f"{type(model).__name__} exposes no backbone for the linear probe", "")
    s, out = task.splits[split], []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(idx), batch_size):
            rows = idx[start:start + batch_size]
            o = base(pixel_values=task.pixels([task.image(s.paths[i]) for i in rows]))
            pooled = getattr(o, "pooler_output", None)
            feats = pooled if pooled is not None else o.last_hidden_state[:, 0]
            out.append(feats.reshape(len(rows), -1).float().numpy())
    model.train()
    return np.concatenate(out)
