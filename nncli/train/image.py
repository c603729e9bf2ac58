"""`nncli finetune --task image-classification`, around the one loop: pre-flight of every image file, the model and
its image processor, and after training every split scored with intervals next to two reference baselines (the
majority class, and a logistic-regression linear probe on the frozen backbone's pooled features), the guardrails, and
merged/ (AutoModelForImageClassification + AutoImageProcessor) and adapter/ (peft) in the ecosystem's layouts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from nncli.core import console
from nncli.core.errors import InputError, Problems
from nncli.evaluate import metrics as M
from nncli.train import classifier
from nncli.train.preflight import Checked

METRIC_NAMES = ("accuracy", "macro_f1", "loss")
PROBE_MAX_TRAIN = 10_000


@dataclass
class ImagePreflight(Checked):
    data: object = None
    processor: object = None
    probe: dict | None = None            # the linear-probe baseline, computed once on the model as loaded


def load_processor(path: str, trust_remote_code: bool = False):
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(path, trust_remote_code=trust_remote_code, use_fast=False)
    except Exception as e:
        raise InputError(f"model {path} has no image processor ({type(e).__name__}: {str(e).splitlines()[0][:120]})",
                         "use a vision model that ships its preprocessor_config.json (e.g. google/vit-base-patch16-224), "
                         "or save an AutoImageProcessor beside the model") from None


def check_vision_config(config, path: str) -> None:
    from transformers import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING

    if type(config) not in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING:
        raise InputError(f"model {path} ({config.model_type}) is not an image classification architecture",
                         "use a vision model (ViT, DeiT, Swin, ConvNeXt, ResNet, EfficientNet...); for texts drop "
                         "--task image-classification")


def prepare(recipe) -> ImagePreflight:
    """Every data and model problem before any training (also `nncli validate` and --dry-run)."""
    from nncli.io.images import load_images
    from nncli.io.models import load_config, resolve

    pf, problems = ImagePreflight(), Problems()
    with problems:
        pf.data = load_images(recipe.data, seed=recipe.train.seed)
    with problems:
        resolved = resolve(recipe.model.name, recipe.model.revision, recipe.model.allow_pickle)
        pf.model_path = resolved.path
        pf.config = load_config(resolved.path, recipe.model.trust_remote_code)
        check_vision_config(pf.config, recipe.model.name)
        pf.processor = load_processor(resolved.path, recipe.model.trust_remote_code)
    problems.raise_all()
    _summarise(pf, recipe)
    for w in pf.warnings:
        console.warn(w)
    console.log(render(pf))
    return pf


def _summarise(pf: ImagePreflight, recipe) -> None:
    from nncli.train.tasks.image import target_size

    data = pf.data
    pf.info = list(data.info)
    pf.warnings = list(data.notes)
    counts = {s.name: Counter(s.labels) for s in data.splits()}
    pf.summary = {"kind": "images", "label_names": data.label_names,
                  "rows": {s.name: {"read": s.rows_read, "kept": len(s), "dropped": s.dropped, "source": s.source}
                           for s in data.splits()},
                  "class_counts": {k: {n: c.get(i, 0) for i, n in enumerate(data.label_names)} for k, c in counts.items()},
                  "images": {k: v for k, v in data.checks.items() if k != "fingerprint"},
                  "input_size": list(target_size(pf.processor)),
                  "majority_share": round(max(counts["train"].values()) / len(data.train), 4)}
    train = counts["train"]
    rare = [n for i, n in enumerate(data.label_names) if train.get(i, 0) < 10]
    if rare:
        pf.warnings.append(f"train has fewer than 10 images of: {', '.join(rare)}; expect unstable results for those classes")
    smallest = min(train.get(i, 0) for i in range(len(data.label_names)))
    if smallest and max(train.values()) / smallest >= 5:
        pf.warnings.append(f"classes are imbalanced {max(train.values())}:{smallest} (largest:smallest) in train; "
                           f"train.class_weights={recipe.train.class_weights}, and judge the run by macro-F1, not accuracy")
    for s in data.splits():
        if s.name != "train" and len(set(s.labels)) < len(data.label_names):
            missing = [n for i, n in enumerate(data.label_names) if i not in set(s.labels)]
            pf.warnings.append(f"{s.name} has no images of: {', '.join(missing)}; its per-class metrics are undefined")


def render(pf: ImagePreflight) -> str:
    s = pf.summary
    lines = list(pf.info) + [f"labels: {', '.join(s['label_names'])}"]
    for name, r in s["rows"].items():
        dist = ", ".join(f"{k} {v}" for k, v in s["class_counts"][name].items())
        lines.append(f"{name}: {r['kept']} images ({dist})")
    im = s["images"]
    lines.append(f"images: {im['images']} files checked, sizes {im['size']['min'][0]}x{im['size']['min'][1]} to "
                 f"{im['size']['max'][0]}x{im['size']['max'][1]} (median {im['size']['median'][0]}x{im['size']['median'][1]}); "
                 f"model input {s['input_size'][0]}x{s['input_size'][1]}")
    return "\n".join(lines)


def known_metrics(pf) -> list[str]:
    splits = ["validation"] + (["test"] if pf.data.test is not None else [])
    per_split = [f"{s}.{m}" for s in splits for m in METRIC_NAMES]
    return list(METRIC_NAMES) + per_split + ["vs_baseline.accuracy", "vs_baseline.macro_f1"]


def inputs_of(recipe) -> list:
    return [recipe.data.train, recipe.data.validation, recipe.data.test, recipe.model.name]


def data_fingerprint(pf) -> str:
    return pf.data.fingerprint


def build(pf, recipe, report):
    from nncli.train.tasks.image import ImageClassificationTask, build_model

    t = recipe.train
    task = ImageClassificationTask(pf.data, pf.processor, recipe.data.augment, metric=t.metric, class_weights=t.class_weights,
                                   label_smoothing=t.label_smoothing, head_lr=t.head_lr)
    model = build_model(pf.model_path, pf.data.label_names, recipe, report)
    if pf.probe is None:
        pf.probe = linear_probe(model, task, recipe.train.seed)
    return task, model


def linear_probe(model, task, seed: int) -> dict:
    """Logistic regression (class-balanced, standardised features) on the frozen backbone's pooled features: what the
    checkpoint knows before any fine-tuning. The backbone is the one loaded (LoRA, if any, is added later)."""
    import random

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    console.log("baselines: linear probe (logistic regression on the frozen backbone's pooled features)")
    train = task.splits["train"]
    idx = list(range(len(train)))
    if len(idx) > PROBE_MAX_TRAIN:
        idx = sorted(random.Random(seed).sample(idx, PROBE_MAX_TRAIN))
    x = pooled_features_of(model, task, "train", idx)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, class_weight="balanced", random_state=seed))
    clf.fit(x, np.asarray(train.labels)[idx])
    out = {"train_images": len(idx), "features": int(x.shape[1])}
    for name, s in task.splits.items():
        if name != "train":
            pred = clf.predict(pooled_features_of(model, task, name, list(range(len(s)))))
            out[name] = M.classification(s.labels, pred, task.n_classes)
    return out


def pooled_features_of(model, task, split, idx):
    from nncli.train.tasks.image import pooled_features

    return pooled_features(model, task, split, idx)


def conclude(run, pf, recipe, out, report) -> tuple[dict, dict, dict]:
    """Score every held-out split with the restored best weights, compare with the baselines, save the artifacts."""
    data, task = pf.data, run.task
    results, preds = classifier.score_splits(run, data, recipe.train.seed, confusion=True)
    report["metrics"] = results
    if not run.is_main:
        return {}, {}, {}
    held = {s.name: s.labels for s in data.splits() if s.name != "train"}
    probe = dict(pf.probe)
    majority = {k: M.majority_baseline(data.train.labels, y, task.n_classes) for k, y in held.items()}
    report["baselines"] = {"majority_class": majority,
                           "linear_probe": {k: probe[k] for k in held},
                           "linear_probe_setup": {"train_images": probe["train_images"], "features": probe["features"]}}
    for w in guardrails(report, preds, data.label_names):
        console.warn(w)
        report["warnings"].append(w)
    from nncli.train.image_artifacts import save_image_classifier

    save_image_classifier(run, pf, recipe, out, report)
    return flat_values(report)


def flat_values(report) -> tuple[dict, dict, dict]:
    return classifier.flat_values(report, reference="linear_probe")


def guardrails(report, predictions: dict, label_names: list[str]) -> list[str]:
    return classifier.guardrails(report, predictions, label_names, reference="linear_probe")


def card(report, recipe) -> str:
    from nncli.train.image_artifacts import image_card

    return image_card(report, recipe)
