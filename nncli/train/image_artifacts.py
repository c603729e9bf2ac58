"""What a finished image-classification run leaves: merged/ (AutoModelForImageClassification.from_pretrained and
AutoImageProcessor.from_pretrained, or pipeline("image-classification", model="merged")), adapter/ for LoRA runs (peft,
with the classifier's config and the image processor beside it), training curves, a confusion matrix, the model card."""

from __future__ import annotations

import json
from pathlib import Path

from nncli.core import console
from nncli.core.atomic import atomic_dir

PREPROCESSING = "RGB (EXIF rotation applied, alpha composited on white, 16-bit scaled), then the saved image processor"


def save_image_classifier(run, pf, recipe, out, report) -> None:
    from nncli.train import checkpoint
    from nncli.train.artifacts import plot_curves, save_merged
    from nncli.train.cards import adapter_base

    console.log(f"saving: {'adapter, ' if recipe.method == 'lora' else ''}merged model with its image processor, curves in "
                f"{out.path}")
    model, processor, arts = run.model, pf.processor, report["artifacts"]
    info = {"task": "image-classification", "run": recipe.name, "preprocessing": PREPROCESSING}
    if recipe.method == "lora":
        with atomic_dir(out / "adapter") as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            processor.save_pretrained(tmp)
            cfg_path = tmp / "adapter_config.json"
            cfg = json.loads(cfg_path.read_text())
            cfg["base_model_name_or_path"] = adapter_base(recipe)
            cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
            model.get_base_model().config.to_json_file(str(tmp / "config.json"))
        arts["adapter"] = "adapter"
    merged = save_merged(out, model, info, processor, arts)
    write_profile(out, recipe, pf, merged, report)
    checkpoint.remove(out)
    plot_curves(out, run.state.history, report)
    primary = "test" if "test" in report["metrics"] else "validation"
    plot_confusion(out / "confusion.png", report["metrics"][primary]["confusion"], pf.data.label_names, primary)
    arts.update(curves="curves.png", confusion="confusion.png", metrics="metrics.jsonl", recipe="recipe.yaml")


def write_profile(out, recipe, pf, merged, report) -> None:
    """Reference profile for `nncli drift`: image statistics on train + validation, the model's outputs on validation
    (held out from training; it chose the checkpoint, so its accuracy is marked optimistic). The test split stays out
    of the profile, so drift on it is an independent check."""
    from nncli.evaluate import drift_images, drift_profile
    from nncli.io.image_inference import ImageClassifier
    from nncli.train.artifacts import profile_not_written

    data, names = pf.data, list(pf.data.label_names)
    try:
        merged.eval()
        clf = ImageClassifier(str(out / "merged"), str(out / "merged"), "torch", names, pf.processor, merged)
        val = data.validation
        listing = None if Path(str(recipe.data.train)).is_dir() else recipe.data.train
        profile = drift_images.build_image_profile(
            data.train.paths + val.paths, [names[i] for i in data.train.labels + val.labels], clf=clf,
            model_paths=val.paths, model_labels=[names[i] for i in val.labels], source=f"{recipe.data.train} (+ validation)",
            image_column=None if listing is None else recipe.data.image_column,
            label_column=None if listing is None else recipe.data.label_column, model_ref="merged",
            seed=recipe.train.seed, model_split="validation", selected_on=True)
        drift_profile.save_profile(out.path, profile)
        report["artifacts"]["profile"] = drift_profile.PROFILE_FILE
    except Exception as e:  # a missing profile must not lose a finished model; say so
        profile_not_written(e, report)


def plot_confusion(path, matrix, labels: list[str], split: str) -> None:
    import numpy as np

    from nncli.core.figures import pyplot, save_figure

    m = np.asarray(matrix)
    n = len(labels)
    fig, ax = pyplot().subplots(figsize=(1.5 + 0.45 * n, 1.2 + 0.45 * n))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=90 if n > 6 else 0)
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title(f"confusion ({split}, n={int(m.sum())})")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if m[i, j] > m.max() / 2 else "black")
    save_figure(fig, path)


def _with_ci(m: dict, k: str) -> str:
    ci = m.get("ci95", {})
    return f"{m[k]:.3f}" + (f" [{ci[k][0]:.3f}, {ci[k][1]:.3f}]" if k in ci else "")


def image_card(report, recipe) -> str:
    from nncli.train.cards import classifier_card_head

    d, t = report["data"], report["training"]
    lora = f", LoRA r={recipe.lora.r} on {t.get('lora_targets_are')}" if recipe.method == "lora" else ""
    lines, primary = classifier_card_head(report, recipe, "image-classification", "Image classifier", lora, "images")
    im = d["images"]
    conv = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in im["converted_to_rgb"].items() if v) or "none"
    lines += ["", f"Labels: {', '.join(d['label_names'])}. Data fingerprint `{d['fingerprint']}`. {im['images']} image files "
              f"checked; converted to RGB: {conv}; EXIF-rotated: {im['exif_rotated']}; model input {d['input_size'][0]}x"
              f"{d['input_size'][1]}.", "", "## Results (95% bootstrap confidence intervals)", "",
              "| split | n | accuracy | macro-F1 | log-loss | majority-class acc / F1 | linear probe acc / F1 |",
              "|---|---|---|---|---|---|---|"]
    for split, m in report["metrics"].items():
        maj, lp = report["baselines"]["majority_class"][split], report["baselines"]["linear_probe"][split]
        lines.append(f"| {split} | {m['n']} | {_with_ci(m, 'accuracy')} | {_with_ci(m, 'macro_f1')} | {m['loss']:.3f} | "
                     f"{maj['accuracy']:.3f} / "
                     f"{maj['macro_f1']:.3f} | {lp['accuracy']:.3f} / {lp['macro_f1']:.3f} |")
    lines += ["", "The linear probe is a class-balanced logistic regression on the pooled features of the backbone as loaded "
              "(before fine-tuning).", "", "![confusion matrix](confusion.png)", "", "## Training", "",
              f"{t['steps']} optimizer steps ({t['epochs_run']} epochs{', stopped early' if t['stopped_early'] else ''}); best "
              f"validation {recipe.train.metric} at step {t['best_step']}. lr {t['lr']:g}, batch {recipe.train.batch_size}; "
              f"augmentation: crop scale {list(recipe.data.augment.crop_scale)}, flips {recipe.data.augment.hflip}, "
              f"colour jitter {recipe.data.augment.color_jitter} (training only). "
              f"{t['trainable_parameters']:,} of {t['total_parameters']:,} parameters trained.", "",
              "![training curves](curves.png)", "", "## Limitations and warnings", ""]
    lines += [f"- {w}" for w in (report["warnings"] or ["none raised by nncli's checks"])]
    if "test" not in report["metrics"]:
        lines += ["- No test split: the validation split also chose the best checkpoint, so its metrics are optimistic."]
    lines += ["", "## Use", "", "```python", "from PIL import Image", "from transformers import pipeline",
              "clf = pipeline('image-classification', model='merged')", "print(clf(Image.open('photo.jpg').convert('RGB')))",
              "```", "", "Re-run: `nncli finetune recipe.yaml`.", ""]
    return "\n".join(lines)
