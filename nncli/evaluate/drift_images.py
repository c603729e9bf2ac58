"""`nncli drift` for image classifiers: the image statistics a reference profile keeps and the current images are
compared on, the image profile, and reading the current images. The tests, thresholds and report are the text
drift's own (drift_tests.compare_features, drift_report): only the features extracted differ.

Per image: width, height and aspect ratio (of the file, before the processor resizes it), brightness (mean luma,
ITU-R BT.601, 0-1), contrast (standard deviation of luma, 0-1), colourfulness (Hasler and Süsstrunk 2003, on 0-255
RGB) and mean saturation (HSV, 0-1); the model's confidence, entropy and predicted class; and the pooled embedding
the classifier head reads (PyTorch models; an ONNX export gives logits only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nncli.core import console
from nncli.core.errors import InputError
from nncli.core.report import now
from nncli.evaluate.drift_profile import (
    PROFILE_VERSION,
    SAMPLE_CAP,
    Profile,
    model_profile,
    outputs_of,
    summary,
    value_counts,
)

TASK = "image-classification"
IMAGE_FEATURES = ("width", "height", "aspect", "brightness", "contrast", "colourfulness", "saturation")
STATS_SIDE = 256          # statistics are taken on a copy at most this many pixels on a side (sizes on the file)
POOLING = "the classifier head's input (the backbone's pooled output; a vision transformer's [CLS] state)"
MIN_IMAGES = 20


def is_image_profile(profile: Profile) -> bool:
    return profile.meta.get("task") == TASK


def statistics(im) -> dict[str, float]:
    """The statistics of one RGB PIL image."""
    w, h = im.size
    if max(w, h) > STATS_SIDE:
        im = im.copy()
        im.thumbnail((STATS_SIDE, STATS_SIDE))
    rgb = np.asarray(im, dtype=np.float64).reshape(-1, 3)
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    luma = (0.299 * r + 0.587 * g + 0.114 * b) / 255.0
    rg, yb = r - g, 0.5 * (r + g) - b
    top, low = rgb.max(1), rgb.min(1)
    sat = np.where(top > 0, (top - low) / np.maximum(top, 1e-12), 0.0)
    return {"width": float(w), "height": float(h), "aspect": w / max(h, 1), "brightness": float(luma.mean()),
            "contrast": float(luma.std()),
            "colourfulness": float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())),
            "saturation": float(sat.mean())}


def image_features(paths: list[str]) -> dict[str, np.ndarray]:
    """Each image's statistics; every unreadable image is named at once (exit 3)."""
    from nncli.io.image_checks import load_rgb, raise_problems

    out = {k: np.zeros(len(paths)) for k in IMAGE_FEATURES}
    problems = []
    for i, p in enumerate(paths):
        try:
            s = statistics(load_rgb(p))
        except InputError as e:
            problems.append(e.message.removeprefix("cannot read image "))
            continue
        for k in IMAGE_FEATURES:
            out[k][i] = s[k]
    raise_problems(problems)
    return out


def image_outputs(clf, paths: list[str], batch_size: int = 64) -> dict:
    logits, emb = clf.run(paths, batch_size, embeddings=True)
    return outputs_of(logits, emb, clf.temperature)


def build_image_profile(paths: list[str], labels: list[str] | None, *, clf=None, model_paths: list[str] | None = None,
                        model_labels: list[str] | None = None, source: str = "", image_column: str | None = None,
                        label_column: str | None = None, model_ref: str | None = None, seed: int = 0,
                        model_split: str = "validation", selected_on: bool = False) -> Profile:
    """Image statistics on (a seeded sample of at most SAMPLE_CAP of) `paths`, the model's outputs on held-out
    `model_paths` (with labels: the accuracy and the ATC threshold)."""
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.permutation(len(paths))[:SAMPLE_CAP])
    feats = image_features([paths[i] for i in keep])
    arrays = {f"feature_{k}": v for k, v in feats.items()}
    meta = {"schema_version": PROFILE_VERSION, "created_at": now(), "task": TASK, "source": source, "rows": len(paths),
            "columns": {"image": image_column, "label": label_column},
            "features": {k: summary(v) for k, v in feats.items()}, "labels": value_counts(labels) if labels else None,
            "model": None}
    if clf is not None and model_paths:
        mo = image_outputs(clf, model_paths)
        meta["model"] = model_profile(clf, mo, model_labels, arrays, rng, seed, model_ref=model_ref, split=model_split,
                                      selected_on=selected_on, pooling=POOLING)
        if mo["embeddings"] is None:
            meta["model"]["embeddings_missing"] = f"the {clf.backend} model gives logits only"
    return Profile(meta, arrays)


# ---------------------------------------------------------------------------------------------- the current images

@dataclass
class CurrentImages:
    source: str
    paths: list[str]
    labels: list[str] | None
    rows_read: int
    dropped: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def read_images(source: str, image_column: str, label_column: str | None, label_names: list[str] | None,
                role: str = "current data") -> CurrentImages:
    """A folder (flat, or <label>/ sub-folders) or a CSV/JSONL listing. Labels are used when every image has one the
    model knows; a listed file that is missing is named (exit 3)."""
    from nncli.io.image_checks import raise_problems
    from nncli.io.image_inference import list_images
    from nncli.io.images import read_listing
    from nncli.io.tables import read_table

    p = Path(source).expanduser()
    if not p.exists():
        raise InputError(f"{role} not found: {source}", "pass an image folder or a CSV/JSONL listing of image paths")
    notes: list[str] = []
    if p.is_dir():
        paths, _, names = list_images(str(p), image_column)
        rows_read, dropped = len(paths), {}
    else:
        lab = label_column if label_column in read_table(source, role=role).columns else None
        paths, names, _, dropped, missing, rows_read = read_listing(source, image_column, lab, role)
        raise_problems(missing)
    labels = names if names and all(n is not None for n in names) else None
    if labels is not None and label_names is not None and not set(labels) <= set(label_names):
        unknown = sorted(set(labels) - set(label_names))
        notes.append(f"{role}: {len(unknown)} folder or label name(s) are not the model's labels ({', '.join(unknown[:5])}): "
                     "the images are treated as unlabelled")
        labels = None
    return CurrentImages(str(p), paths, labels, rows_read, dropped, notes)


def read_current(recipe, profile: Profile) -> CurrentImages:
    cols = profile.meta.get("columns") or {}
    model = profile.meta.get("model") or {}
    cur = read_images(recipe.current, recipe.image_column or cols.get("image") or "image",
                      _first(recipe.label_column) or cols.get("label") or "label", model.get("label_names"))
    if len(cur.paths) < MIN_IMAGES:
        raise InputError(f"current data {Path(recipe.current).name} has only {len(cur.paths)} images: too few to test for drift",
                         f"pass at least a few hundred images ({MIN_IMAGES} is the minimum)")
    if recipe.limit and recipe.limit < len(cur.paths):
        keep = np.sort(np.random.default_rng(recipe.seed).permutation(len(cur.paths))[: recipe.limit])
        cur.paths = [cur.paths[i] for i in keep]
        cur.labels = [cur.labels[i] for i in keep] if cur.labels is not None else None
    return cur


def _first(column) -> str | None:
    return column[0] if isinstance(column, list) and column else column


def compare(profile: Profile, cur: CurrentImages, clf, recipe) -> dict:
    """The current images against an image profile, with the text drift's tests."""
    from nncli.evaluate.drift_tests import compare_features

    rng = np.random.default_rng(recipe.seed)
    feats = image_features(cur.paths)
    idx = np.sort(rng.permutation(len(cur.paths))[:recipe.model_sample])
    mo = None
    if clf is not None and profile.meta.get("model"):
        mo = image_outputs(clf, [cur.paths[i] for i in idx])
        if mo["embeddings"] is None and "emb_reference" in profile.arrays:
            cur.notes.append(f"embeddings: not tested, the {clf.backend} model {clf.name} gives logits only; pass the run "
                             "directory (PyTorch) as --model for the embedding test")
    return compare_features(profile, feats, IMAGE_FEATURES, "image", cur.labels, mo, idx, clf.label_names if clf else [],
                            rng, alpha=recipe.alpha, max_accuracy_drop=recipe.max_accuracy_drop, seed=recipe.seed)


def load_model(model_ref: str, threads: int | None):
    from nncli.io.image_inference import load_image_classifier

    return load_image_classifier(model_ref, threads=threads)


def is_image_reference(path: Path) -> bool:
    """A folder of images (flat, or in label sub-folders) given as the reference, not a run directory."""
    from nncli.io.images import is_image_file, is_image_folder

    if (path / "report.json").exists():
        return False
    try:
        return is_image_folder(str(path)) or any(is_image_file(f) for f in path.iterdir())
    except OSError:
        return False


def profile_now(recipe, path: Path) -> tuple[Profile, object]:
    """An image folder as the reference: profiled now (with --model, the model's outputs on the same images)."""
    clf = load_model(recipe.model, recipe.threads) if recipe.model else None
    ref = read_images(str(path), recipe.image_column or "image", None, clf.label_names if clf else None, "reference data")
    for note in ref.notes:
        console.warn(note)
    profile = build_image_profile(ref.paths, ref.labels, clf=clf, model_paths=ref.paths if clf else None,
                                  model_labels=ref.labels if clf else None, source=str(path), model_ref=recipe.model,
                                  seed=recipe.seed, model_split="reference")
    return profile, clf


def write_evaluate_profile(out, recipe, split, names: list[str], report: dict) -> None:
    """`nncli evaluate --output` on images: a reference profile of the evaluated images, with the first model."""
    from nncli.evaluate.drift_profile import save_evaluated_profile
    from nncli.io.image_inference import load_image_classifier

    name = recipe.models[0]

    def load():
        return load_image_classifier(name, allow_pickle=recipe.allow_pickle, trust_remote_code=recipe.trust_remote_code,
                                     threads=recipe.threads)

    def build(clf):
        return build_image_profile(split.paths, names, clf=clf, model_paths=split.paths, model_labels=names,
                                   source=str(split.source), image_column=recipe.data.image_column,
                                   label_column=_first(recipe.data.label_column),
                                   model_ref=str(Path(name).resolve()) if Path(name).exists() else name,
                                   seed=recipe.seed, model_split="evaluated")

    save_evaluated_profile(out, report, load, build)
