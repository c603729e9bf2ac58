"""`nncli predict` on an image classifier: every image of a folder (sorted) or of a CSV/JSONL's image column, one
output row per input image, in order. An image that cannot be read keeps its row, with `skipped` saying why."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np

from nncli.core import console
from nncli.core.atomic import atomic_write_text
from nncli.core.report import Timer


def run(model: str, data: str, *, image_column: str = "image", output: str | None = None, batch_size: int = 64,
        threads: int | None = None, limit: int | None = None, trust_remote_code: bool = False, allow_pickle: bool = False,
        overwrite: bool = False) -> dict:
    from nncli.core.outputs import prepare_output_file
    from nncli.io.image_checks import inspect
    from nncli.io.image_inference import list_images, load_image_classifier
    from nncli.io.inference import model_dir_of, softmax

    paths, rows, _ = list_images(data, image_column)
    if limit:
        paths, rows = paths[:limit], rows[:limit]
    clf = load_image_classifier(model, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code, threads=threads)
    if output:
        prepare_output_file(output, overwrite=overwrite, inputs=[data, model_dir_of(model), clf.path])
    why = {p: inspect(p)[1] for p in paths}
    usable = [p for p in paths if not why[p]]
    t = Timer()
    probs = softmax(clf.logits(usable, batch_size) / clf.temperature) if usable else np.zeros((0, len(clf.label_names)))
    seconds = t()
    scored = dict(zip(usable, probs))
    records = []
    for row, p in zip(rows, paths):
        rec = {"row": row, "image": p, "predicted": None, "confidence": None, "probabilities": None, "skipped": None}
        if p in scored:
            q = scored[p]
            k = int(q.argmax())
            rec.update(predicted=clf.label_names[k], confidence=round(float(q[k]), 6),
                       probabilities={n: round(float(v), 6) for n, v in zip(clf.label_names, q)})
        else:
            rec["skipped"] = f"cannot read image: {why[p]}"
        records.append(rec)
    skipped = len(paths) - len(usable)
    report = {"task": "predict", "status": "succeeded", "exit_code": 0, "model": model, "backend": clf.backend,
              "rows": len(paths), "scored": len(usable), "skipped": {"unreadable_image": skipped} if skipped else {},
              "temperature": clf.temperature,
              "predicted_distribution": dict(Counter(clf.label_names[int(q.argmax())] for q in probs)), "seconds": seconds,
              "throughput_per_second": round(len(usable) / seconds, 2) if seconds else None}
    line = f"predict: {len(paths)} images, {len(usable)} scored, {skipped} skipped"
    (console.warn if skipped else console.log)(line + (" (unreadable: their rows say why)" if skipped else ""))
    if output:
        atomic_write_text(output, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        report["output"] = str(output)
    else:
        report["predictions"] = records
    return report
