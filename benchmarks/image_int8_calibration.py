"""Static int8 calibration methods for an image classifier: MinMax, percentile (99.999) and entropy, each calibrated
on the same seeded sample of the run's training images and scored on its held-out (validation + test) images against
the fp32 ONNX model: accuracy, flips, build time, throughput at batch 32, peak memory of the process.

    python benchmarks/image_int8_calibration.py RUN_DIR [--images 256] [--out results/image_int8_calibration.json]

RUN_DIR is an image run (e.g. `nncli finetune --model recipes/data/tiny-resnet --data recipes/data/digits ...`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from nncli.core.timing import measure
    from nncli.deploy.export_images import export_fp32
    from nncli.deploy.static_images import CALIBRATION_METHODS, build_static, calibration_images, op_counts
    from nncli.io.image_inference import load_image_classifier
    from nncli.io.images import load_images
    from nncli.recipe.load import load_run_recipe

    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--out")
    a = ap.parse_args()
    ft = load_run_recipe(a.run)
    d = load_images(ft.data, seed=ft.train.seed)
    held = [s for s in (d.validation, d.test) if s is not None]
    paths = [p for s in held for p in s.paths]
    ref = load_image_classifier(a.run, threads=1)
    y = np.asarray([ref.label_names.index(d.label_names[i]) for s in held for i in s.labels])
    pv = ref.pixels(paths)

    def predict(clf):
        return np.concatenate([clf.logits_of_pixels(pv[i:i + 64]) for i in range(0, len(pv), 64)]).argmax(1)

    def speed(clf):
        b = pv[:32]
        return 32 / (measure(lambda: clf.logits_of_pixels(b), min_seconds=1.0, min_repeats=5, warmup=2)["p50_ms"] / 1000)

    work = Path(tempfile.mkdtemp(prefix="calib-bench-"))
    export_fp32(ref.path, work / "fp32")
    fp32 = load_image_classifier(str(work / "fp32" / "model.onnx"), threads=1)
    p32 = predict(fp32)
    calib = ref.pixels(calibration_images(d.train.paths, a.images))
    out = {"run": a.run, "held_out_images": len(paths), "calibration_images": len(calib),
           "fp32_onnx": {"accuracy": float((p32 == y).mean()), "per_second_batch32": speed(fp32)}, "methods": {}}
    for m in CALIBRATION_METHODS:
        t = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):          # the calibrator prints progress
            built = build_static(work / "fp32", work / m, calib, m)
        seconds = time.perf_counter() - t
        clf = load_image_classifier(str(built / "model.onnx"), threads=1)
        p = predict(clf)
        out["methods"][m] = {"accuracy": float((p == y).mean()), "flips": int((p != p32).sum()),
                             "build_seconds": round(seconds, 2), "per_second_batch32": speed(clf),
                             "int8_ops": op_counts(built / "model.onnx"),
                             "peak_rss_mb_so_far": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}
    text = json.dumps(out, indent=2)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
