"""`nncli quantize` of an image classifier: ONNX Runtime dynamic int8 (per tensor and per channel) and static int8
(QDQ, per channel, calibrated on training images: nncli/deploy/static_images.py) built from the fp32 ONNX export,
judged exactly like text (nncli/deploy/quantize.py): flips on every image available, the accuracy drop on the
labelled held-out images with exact McNemar bounds, kept only when the 95% upper bound of the drop is within
--max-drop points and it is faster than fp32; otherwise nothing is written and the command exits 5."""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from nncli.core import console
from nncli.core.errors import InputError, UsageError
from nncli.core.report import RunReport, Timer, base_report, environment
from nncli.core.rundir import RunDir

DYNAMIC = ("ort-dynamic-int8", "ort-dynamic-int8-per-channel")
CALIBRATION = "minmax"          # measured against percentile and entropy: docs/quantize.md


def candidates_for(method: str, backend: str, can_calibrate: bool) -> list[str]:
    from nncli.deploy.static_images import CANDIDATE

    if backend == "torch":
        raise UsageError("image classifiers are quantized with ONNX Runtime (backend=torch is text-only for now)",
                         "drop --backend, or pass --backend onnxruntime")
    if method == "static" and not can_calibrate:
        raise UsageError("static int8 calibrates on the run's training images, and the model is not a run directory",
                         "pass the run directory the model was trained in, or --method dynamic")
    return (list(DYNAMIC) if method in ("auto", "dynamic") else []) + \
        ([CANDIDATE] if method in ("auto", "static") and can_calibrate else [])


def run(recipe, source, run_dir: Path | None, *, overwrite: bool = False) -> RunReport:
    from nncli.deploy import quantize as q
    from nncli.io.image_inference import load_image_classifier
    from nncli.io.inference import map_labels

    timer = Timer()
    names = candidates_for(recipe.method, recipe.backend, run_dir is not None)
    out_path = Path(recipe.output) if recipe.output else (run_dir / "quantized" if run_dir else None)
    if out_path is None:
        raise UsageError("quantize needs --output DIR (the model is not a run directory)", "pass --output models/int8")
    data = images_for(recipe, run_dir)
    out = RunDir(out_path, command="quantize")
    inputs = [source.path, recipe.data.path, run_dir / "recipe.yaml" if run_dir is not None and not recipe.data.path else None]
    out.check(overwrite=overwrite, inputs=inputs)
    ref = load_image_classifier(source.path, threads=recipe.threads)
    data["y"] = np.asarray(map_labels(data["labels"], ref.label_names, data["source"]))
    report = base_report("quantize", recipe.name, task="image-classification")
    report.update(source={"model": recipe.model, "path": source.path}, environment=environment(recipe.threads),
                  data={"source": data["source"], "labelled_rows": len(data["paths"]),
                        "images_for_flips": len(data["all_paths"]), "calibration_images": len(data["calib"]),
                        "calibration": _calibration_note(data, recipe)},
                  settings={"max_drop_points": recipe.max_drop, "max_flip_rate": recipe.max_flip_rate, "confidence": 0.95,
                            "batch_size": recipe.batch_size})
    work = Path(tempfile.mkdtemp(prefix="nncli-quantize-"))
    try:
        rows, built = _measure_all(recipe, source, ref, data, names, work)
        report["candidates"] = rows
        passing = [r for r in rows if r.get("status") == "passes"]
        if not passing:
            q.refuse(report, rows, recipe, timer)
        fastest = max(r["throughput_per_second"] for r in passing)
        best = min((r for r in passing if r["throughput_per_second"] >= 0.95 * fastest),
                   key=lambda r: (r["flip_rate"], -r["throughput_per_second"]))
        best["status"] = "chosen"
        out.prepare(overwrite=overwrite, inputs=inputs)
        return q.write(out, report, recipe, built[best["candidate"]], best, timer)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _calibration_note(data: dict, recipe) -> str:
    if not data["calib"]:
        return "none: the model is not a run directory, so there are no training images (static int8 not tried)"
    return (f"{len(data['calib'])} training images (seeded sample, at most calibration_samples={recipe.calibration_samples}; "
            f"never the held-out images), {CALIBRATION} ranges per activation")


def _build(name: str, source, onnx_dir: Path, work: Path, data: dict, ref) -> Path:
    if name in DYNAMIC:
        from nncli.deploy.int8 import build

        return build(name, source.path, onnx_dir, work, [], ref)
    from nncli.deploy.static_images import build_static

    console.log(f"  {name}: calibrating on {len(data['calib'])} training images ({CALIBRATION})")
    return build_static(onnx_dir, work, ref.pixels(data["calib"]), CALIBRATION)


def _measure_all(recipe, source, ref, data, names, work: Path) -> tuple[list[dict], dict]:
    from nncli.core.report import Timer
    from nncli.deploy import quantize as q
    from nncli.deploy.export_images import export_fp32
    from nncli.deploy.static_images import op_counts
    from nncli.io.image_inference import load_image_classifier

    console.log(f"fp32 reference: {source.path}; accuracy on {len(data['paths'])} labelled images ({data['source']}), flips on "
                f"{len(data['all_paths'])} images")
    pixels = {p: ref.pixels([p])[0] for p in data["all_paths"]}          # preprocessed once, shared by every candidate
    fp32 = _score(ref, data, pixels, recipe)
    rows = [{"candidate": "fp32 (torch)", "backend": "torch", "size_mb": q.size_mb(Path(source.path), "*.safetensors"),
             **q.public(fp32), **q.accuracy_interval(fp32, data), "accuracy_drop": 0.0, "flip_rate": 0.0,
             "speedup": 1.0, "status": "reference"}]
    onnx_dir = work / "fp32-onnx"
    export_fp32(source.path, onnx_dir)
    rows.append(q.judge("fp32 (onnxruntime)", "onnx", q.size_mb(onnx_dir, "*.onnx"),
                        _score(load_image_classifier(str(onnx_dir / "model.onnx"), threads=recipe.threads), data, pixels, recipe),
                        fp32, data, recipe, reference=True))
    built = {}
    for name in names:
        t = Timer()
        try:
            with contextlib.redirect_stdout(sys.stderr):      # onnxruntime's calibrator prints progress on stdout
                path = _build(name, source, onnx_dir, work, data, ref)
        except Exception as e:  # one candidate failing must not hide the others
            console.warn(f"{name}: could not be built ({type(e).__name__}: {str(e).splitlines()[0][:160]})")
            rows.append({"candidate": name, "status": f"error: {type(e).__name__}", "accuracy": None})
            continue
        clf = load_image_classifier(str(path / "model.onnx"), threads=recipe.threads)
        row = q.judge(name, "onnx", q.size_mb(path, "*.onnx"), _score(clf, data, pixels, recipe), fp32, data, recipe)
        row.update(build_seconds=t(), int8_ops=op_counts(path / "model.onnx"))
        rows.append(row)
        built[name] = path
        console.log(f"  {name}: accuracy {row['accuracy']:.4f} (drop {row['accuracy_drop'] * 100:+.2f} pts, at most "
                    f"{row['accuracy_drop_upper'] * 100:.2f}), flips {row['flip_rate']:.1%}, "
                    f"{row['throughput_per_second']:.1f}/s "
                    f"({row['speedup']:.2f}x), {row['status']}")
    return rows, built


def _score(clf, data: dict, pixels: dict, recipe) -> dict:
    from nncli.core.timing import measure

    pv = np.stack([pixels[p] for p in data["all_paths"]])
    logits = np.concatenate([clf.logits_of_pixels(pv[i:i + 32]) for i in range(0, len(pv), 32)])
    pred_all = logits.argmax(1)
    pred = pred_all[data["labelled_index"]]
    timing = {"min_seconds": recipe.min_seconds, "min_repeats": 5, "warmup": 2}
    b1, bn = pv[:1], np.repeat(pv[:1], recipe.batch_size, axis=0)
    lat, thr = measure(lambda: clf.logits_of_pixels(b1), **timing), measure(lambda: clf.logits_of_pixels(bn), **timing)
    return {"pred": pred, "pred_all": pred_all, "accuracy": float((pred == data["y"]).mean()), "latency_ms_batch1": lat["p50_ms"],
            "throughput_per_second": recipe.batch_size / (thr["p50_ms"] / 1000)}


def images_for(recipe, run_dir: Path | None) -> dict:
    """Labelled held-out images for the accuracy drop (the run's validation and test splits, or --data); every image
    available (plus the training images) for the flips; a seeded sample of the training images to calibrate on."""
    paths, labels, extra, calib, source = [], [], [], [], ""
    if recipe.data.path:
        from nncli.io.images import read_labelled

        s, labels, _ = read_labelled(recipe.data.path, recipe.data.image_column, recipe.data.label_column, "quantize data")
        paths, source = s.paths, s.source
    if run_dir is not None:
        from nncli.io.images import load_images
        from nncli.recipe.load import load_run_recipe

        ft = load_run_recipe(run_dir)
        d = load_images(ft.data, seed=ft.train.seed)
        held = [s for s in (d.validation, d.test) if s is not None]
        if not recipe.data.path:
            paths = [p for s in held for p in s.paths]
            labels = [d.label_names[i] for s in held for i in s.labels]
            source = f"{run_dir}/recipe.yaml " + " + ".join(s.name for s in held) + " split(s)"
        extra = d.train.paths
        from nncli.deploy.static_images import calibration_images

        calib = calibration_images(d.train.paths, recipe.calibration_samples)
    elif not recipe.data.path:
        raise UsageError("quantize needs labelled images to measure accuracy: the model is not a run directory",
                         "pass --data FOLDER (<folder>/<label>/<image>), e.g. your validation images")
    if recipe.data.limit and recipe.data.limit < len(paths):
        paths, labels = paths[: recipe.data.limit], labels[: recipe.data.limit]
    if len(paths) < 20:
        raise InputError(f"only {len(paths)} labelled images to measure accuracy on: too few to judge an accuracy drop",
                         "pass a larger --data folder (a few hundred images)")
    all_paths = list(dict.fromkeys(paths + extra))
    index = {p: i for i, p in enumerate(all_paths)}
    return {"paths": paths, "labels": labels, "source": source, "all_paths": all_paths,
            "labelled_index": np.array([index[p] for p in paths]), "calib": calib}
