"""`nncli distill` with an image-classifier teacher: what differs from text (nncli/train/distill.py runs both).

The student is the teacher's config with fewer layers or stages, initialised from its weights
(nncli/train/image_student.py), or any image classifier given as a model (another architecture: its own image
processor). The teacher scores every training image once, through its own processor and without augmentation, and
the logits are cached on disk; the student trains on augmented views of those images against them (ImageDistillTask:
the text soft-target loss over the image task). Scoring the same augmented view online would cost a teacher forward
pass per image per epoch instead of one per image (measured in docs/distill.md), and would need the view in the
teacher's preprocessing too when the student's differs."""

from __future__ import annotations

import hashlib

import numpy as np


def load_teacher(recipe):
    from nncli.io.image_inference import load_image_classifier

    return load_image_classifier(recipe.teacher, trust_remote_code=recipe.model.trust_remote_code,
                                 allow_pickle=recipe.model.allow_pickle, threads=recipe.train.threads)


def student_spec(recipe, teacher) -> dict:
    """The student setting, checked against the teacher before any output is written."""
    from nncli.train.image_student import default_spec, student_config
    from nncli.train.student import parse_student

    spec = parse_student(recipe.student) if recipe.student else default_spec(teacher.model.config)
    if "model" not in spec:
        student_config(teacher.model.config, spec)
    return spec


def build_student(teacher_dir: str, spec: dict, dest, label_names: list[str]) -> dict:
    from nncli.train.image_student import build_image_student

    return build_image_student(teacher_dir, spec, dest, label_names)


def teacher_logits(teacher, paths: list[str], teacher_fp: str, data_fp: str, cache) -> tuple[np.ndarray, bool]:
    """The teacher's logits for the training images (in their order), from the disk cache when present."""
    from nncli.train.tasks.distill import cached_outputs

    h = hashlib.sha256(f"images|{teacher_fp}|{data_fp}|{teacher.size}|".encode())
    for p in paths:
        h.update(p.encode("utf-8", "surrogatepass") + b"\x1e")
    logits, _, hit = cached_outputs(h.hexdigest()[:24], len(paths), "training images", cache,
                                    lambda: (teacher.logits(paths), None))
    return logits, hit


def scores(clf, split) -> np.ndarray:
    """Logits of a held-out split (the teacher's column for the side-by-side table)."""
    return clf.logits(split.paths)


def builder(teacher, teacher_fp: str, student_dir: str, recipe, info: dict):
    def build(pf, r, report):
        from nncli.core.timing import measure
        from nncli.train.image import linear_probe
        from nncli.train.tasks.distill import ImageDistillTask, cache_dir
        from nncli.train.tasks.image import build_model

        model = build_model(student_dir, pf.data.label_names, r, report)
        d, tr = recipe.distill, pf.data.train
        cache = cache_dir(d.cache_dir)
        logits, hit = teacher_logits(teacher, tr.paths, teacher_fp, pf.data.fingerprint, cache)
        order = [teacher.label_names.index(n) for n in pf.data.label_names]     # teacher columns in the data's order
        t = r.train
        task = ImageDistillTask(pf.data, pf.processor, r.data.augment, metric=t.metric, class_weights=t.class_weights,
                                label_smoothing=t.label_smoothing, head_lr=t.head_lr, teacher_logits=logits[:, order],
                                alpha=d.alpha, temperature=d.temperature)
        if "teacher_seconds_per_image" not in info:
            sample = teacher.pixels(tr.paths[:32])
            per = measure(lambda: teacher.logits_of_pixels(sample), min_seconds=d.bench_seconds, min_repeats=3,
                          warmup=1)["p50_ms"] / 1000 / len(sample)
            info["teacher_seconds_per_image"] = per
        info.update(cache_dir=str(cache), cache_reused=hit, train_rows=len(tr), teacher_targets="cached, un-augmented",
                    teacher_passes={"cached": len(tr), "online_would_be": int(len(tr) * t.epochs)})
        if pf.probe is None:
            pf.probe = linear_probe(model, task, t.seed)
        return task, model

    return build
