"""Images: PyTorch fp32 vs ONNX Runtime fp32 vs int8 for a small CNN and a small ViT, on real digit images.

    python benchmarks/images_bench.py [--repeats 3] [--epochs N]
    python benchmarks/images_bench.py --render-only

1. writes scikit-learn's handwritten digits as 32x32 PNG folders (1,437 train / 360 test images);
2. builds two models from configs (no pretrained vision checkpoint ships offline): a ResNet-18-shaped CNN
   (basic blocks, depths 2-2-2-2, widths 64-512, 11.2M parameters) and a DeiT-tiny-shaped ViT (12 layers, hidden
   192, 3 heads, patch 4: 65 tokens at 32x32, 5.4M parameters), and fine-tunes each with `nncli finetune
   --method full` on the digits (the same command a user runs);
3. `nncli export` (fp32 ONNX with the parity gate) and `nncli quantize --max-drop 2` (every int8 candidate:
   accuracy on the run's held-out validation + test images, flips, size, latency at batch 1 and throughput at
   batch 32, measured back to back in one process), `--repeats` times; medians over the repeats.
Writes benchmarks/results/images.json and renders the block between the images markers of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "images.json"
README = HERE / "README.md"
MODELS = {"small CNN (ResNet-18 shape)": "resnet18", "small ViT (DeiT-tiny shape)": "vit-tiny"}
# trained from scratch (no pretrained vision checkpoint ships offline): a ViT needs more epochs and a lower peak
# learning rate than a CNN to learn the digits at all (4 epochs at 1e-3: 0.19 test accuracy; 12 at 5e-4: 0.94)
SETTINGS = {"resnet18": {"lr": "3e-3", "epochs": 4}, "vit-tiny": {"lr": "5e-4", "epochs": 12}}


def nncli(*args: str) -> dict:
    p = subprocess.run([sys.executable, "-m", "nncli", *args, "--json", "-q"], capture_output=True, text=True,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if p.returncode != 0:
        raise SystemExit(f"nncli {' '.join(args)} failed ({p.returncode}):\n{p.stderr[-3000:]}\n{p.stdout[-2000:]}")
    return json.loads(p.stdout)


def build(kind: str, out: Path) -> int:
    import torch
    import transformers as T

    torch.manual_seed(0)
    if kind == "resnet18":
        cfg = T.ResNetConfig(embedding_size=64, hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2], layer_type="basic",
                             num_labels=10)
        model, proc = T.ResNetForImageClassification(cfg), T.ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=1.0)
    else:
        cfg = T.ViTConfig(image_size=32, patch_size=4, hidden_size=192, num_hidden_layers=12, num_attention_heads=3,
                          intermediate_size=768, num_labels=10)
        model, proc = T.ViTForImageClassification(cfg), T.ViTImageProcessor(size={"height": 32, "width": 32})
    model.save_pretrained(out, safe_serialization=True)
    proc.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def one_model(label: str, kind: str, digits: dict, work: Path, a) -> dict:
    model_dir, run = work / kind, work / f"run-{kind}"
    params = build(kind, model_dir)
    lr, epochs = SETTINGS[kind]["lr"], a.epochs or SETTINGS[kind]["epochs"]
    t = time.time()
    ft = nncli("finetune", "--task", "image-classification", "--model", str(model_dir), "--data", str(digits["root"]),
               "--method", "full", "--output", str(run), "--overwrite", f"train.lr={lr}", f"train.epochs={epochs}",
               "data.augment.hflip=false")
    ft_seconds = time.time() - t
    export = nncli("export", str(run), "--overwrite")
    reps = [nncli("quantize", str(run), "--max-drop", "2", "require_speedup=false", "--overwrite")
            for _ in range(a.repeats)]
    rows = {}
    for r in reps:
        for c in r["candidates"]:
            if c.get("accuracy") is None:
                continue
            rows.setdefault(c["candidate"], []).append(c)
    table = {name: {"size_mb": cs[0]["size_mb"], "accuracy": cs[0]["accuracy"], "n": cs[0].get("n_labelled"),
                    "flip_rate": cs[0].get("flip_rate"),
                    "latency_ms_batch1": statistics.median(c["latency_ms_batch1"] for c in cs),
                    "throughput_batch32": statistics.median(c["throughput_per_second"] for c in cs),
                    "runs_latency_ms_batch1": [c["latency_ms_batch1"] for c in cs],
                    "runs_throughput_batch32": [c["throughput_per_second"] for c in cs],
                    "status": cs[-1].get("status")} for name, cs in rows.items()}
    base = next(iter(table.values()))
    for row in table.values():
        row["speedup_batch32"] = row["throughput_batch32"] / base["throughput_batch32"]
        row["speedup_batch1"] = base["latency_ms_batch1"] / row["latency_ms_batch1"]
    return {"label": label, "kind": kind, "parameters": params, "finetune_seconds": round(ft_seconds, 1), "lr": lr,
            "epochs": epochs,
            "test_accuracy": ft["metrics"].get("test", {}).get("accuracy") if isinstance(ft["metrics"].get("test"), dict)
            else ft.get("metrics", {}).get("test_accuracy"),
            "parity": export.get("parity"), "chosen": reps[-1].get("chosen"), "table": table,
            "quantize_data": reps[-1].get("data", {})}


def render(d: dict) -> str:
    out = [f"Run {d['when']}: digits 32x32 (1,437 train incl. validation, 360 test), "
           f"{d['settings']['repeats']} quantize repeats (medians). CPU {d['cpu']}.", ""]
    for m in d["models"]:
        p = m["parity"] or {}
        out += [f"**{m['label']}**: {m['parameters'] / 1e6:.1f}M parameters, trained from scratch with `nncli finetune "
                f"--method full` ({m['epochs']} epochs, lr {m['lr']}) in {m['finetune_seconds']:.0f} s, test accuracy "
                f"{m['test_accuracy']:.4f}; ONNX parity max |Δlogit| {p.get('max_abs_diff', float('nan')):.1e} on "
                f"{p.get('samples', '?')} images; `nncli quantize` chose: {m['chosen'] or 'nothing'}.", "",
                "| backend | size (MB) | held-out accuracy (n) | flips vs fp32 | latency batch 1 (ms) | "
                "throughput batch 32 (/s) | speed-up batch 32 | status |",
                "|---|---|---|---|---|---|---|---|"]
        for name, r in m["table"].items():
            flips = "" if r["flip_rate"] is None else f"{r['flip_rate']:.1%}"
            out.append(f"| {name} | {r['size_mb']:.1f} | {r['accuracy']:.4f} ({r['n']}) | {flips} | "
                       f"{r['latency_ms_batch1']:.2f} | {r['throughput_batch32']:.0f} | "
                       f"{r['speedup_batch32']:.2f}x | {r['status']} |")
        out.append("")
    return "\n".join(out).rstrip()


def write_readme(d: dict) -> None:
    text = README.read_text()
    start, end = "<!-- images:start -->", "<!-- images:end -->"
    head, rest = text.split(start)
    _, tail = rest.split(end)
    README.write_text(f"{head}{start}\n{render(d)}\n{end}{tail}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=None, help="override every model's epochs (SETTINGS)")
    ap.add_argument("--render-only", action="store_true")
    a = ap.parse_args()
    if a.render_only:
        write_readme(json.loads(RESULTS.read_text()))
        return
    from nncli.core.machine import cpu_name
    from nncli.io.image_demo import write_digits

    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="nncli-images-bench-") as tmp:
        work = Path(tmp)
        digits = write_digits(work / "digits", size=32, test_fraction=0.2, seed=0)
        models = [one_model(label, kind, digits, work, a) for label, kind in MODELS.items()]
    d = {"settings": {"repeats": a.repeats, "epochs": a.epochs, "command": "python benchmarks/images_bench.py"},
         "cpu": cpu_name(), "when": time.strftime("%Y-%m-%d %H:%M"), "load_average_at_start": os.getloadavg(),
         "wall_seconds": round(time.time() - t0, 1), "models": models}
    RESULTS.write_text(json.dumps(d, indent=2) + "\n")
    write_readme(d)
    print(render(d))


if __name__ == "__main__":
    main()
