"""What scoring the teacher online (on each augmented batch) would cost against the cached, un-augmented teacher
logits nncli distill uses for images: a ViT-B/16 teacher's forward pass and a ResNet-18-shaped student's training step,
per 224x224 image (random weights: only the time matters).

    python benchmarks/image_distill_cost.py [--threads 2]
"""

from __future__ import annotations

import argparse
import time


def per_image(fn, batch: int, repeats: int = 3) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats / batch


def main() -> None:
    import torch
    import transformers as T

    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    torch.set_num_threads(ap.parse_args().threads)
    torch.manual_seed(0)
    teacher = T.ViTForImageClassification(T.ViTConfig(num_labels=10)).eval()
    student = T.ResNetForImageClassification(T.ResNetConfig(depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512],
                                                            layer_type="basic", num_labels=10))
    x, y = torch.randn(8, 3, 224, 224), torch.randint(0, 10, (8,))
    with torch.inference_mode():
        tf = per_image(lambda: teacher(pixel_values=x), len(x))
    opt = torch.optim.AdamW(student.parameters())

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(student(pixel_values=x).logits, y).backward()
        opt.step()

    ts = per_image(step, len(x))
    print(f"teacher forward {tf * 1000:.0f} ms/image; student training step {ts * 1000:.0f} ms/image; "
          f"an online teacher makes each epoch {(tf + ts) / ts:.1f}x as long; the cache costs {tf / ts:.1f} student "
          "epochs once")


if __name__ == "__main__":
    main()
