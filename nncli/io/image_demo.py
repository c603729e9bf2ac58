"""Offline demo material for images: scikit-learn's handwritten digits (1,797 8x8 scans, bundled with scikit-learn)
written as an image folder, and a tiny image classifier built from a config (no pretrained vision checkpoint ships
offline)."""

from __future__ import annotations

from pathlib import Path

ARCHS = ("vit", "resnet", "convnext")


def write_digits(root: str | Path, size: int = 32, test_fraction: float = 0.2, seed: int = 0) -> dict[str, Path]:
    """root/train/<digit>/*.png and root/test/<digit>/*.png (grayscale PNGs upscaled to size x size), a stratified
    seeded split. Refuses a root that exists and is not empty: it never overwrites a user's files."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    root = Path(root)
    if root.exists() and any(root.iterdir()):
        from nncli.core.errors import UsageError

        raise UsageError(f"{root} exists and is not empty", "pass a new folder")
    d = load_digits()
    idx = np.arange(len(d.target))
    tr, te = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=d.target)
    for split, rows in (("train", tr), ("test", te)):
        for i in sorted(rows):
            pixels = (d.images[i] / 16.0 * 255).round().astype(np.uint8)
            folder = root / split / str(d.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR).save(folder / f"{i:04d}.png")
    return {"train": root / "train", "test": root / "test", "root": root}


def tiny_image_model(out: str | Path, arch: str = "vit", image_size: int = 32, num_labels: int = 2, seed: int = 0) -> Path:
    """A small image classifier (hidden ~32, 2 layers/stages) initialised from a config, saved with its image processor."""
    import torch
    import transformers as T

    torch.manual_seed(seed)
    if arch == "vit":
        cfg = T.ViTConfig(image_size=image_size, patch_size=max(2, image_size // 4), hidden_size=32, num_hidden_layers=2,
                          num_attention_heads=2, intermediate_size=64, num_labels=num_labels)
        model, proc = T.ViTForImageClassification(cfg), T.ViTImageProcessor(size={"height": image_size, "width": image_size})
    elif arch == "resnet":
        cfg = T.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic", num_labels=num_labels)
        model = T.ResNetForImageClassification(cfg)
        proc = T.ConvNextImageProcessor(size={"shortest_edge": image_size}, crop_pct=1.0)
    elif arch == "convnext":
        cfg = T.ConvNextConfig(num_stages=2, hidden_sizes=[16, 32], depths=[1, 1], patch_size=2, num_labels=num_labels)
        model = T.ConvNextForImageClassification(cfg)
        proc = T.ConvNextImageProcessor(size={"shortest_edge": image_size}, crop_pct=1.0)
    else:
        raise ValueError(f"arch must be one of {ARCHS}")
    out = Path(out)
    model.save_pretrained(out, safe_serialization=True)
    proc.save_pretrained(out)
    return out
