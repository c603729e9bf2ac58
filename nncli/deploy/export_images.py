"""`nncli export` of an image classifier to ONNX (optimum-onnx, task image-classification), with the same always-on
parity gate as text: the export is staged, compared with the PyTorch model on real images (the run's validation
images, or --data), and moved into place only when its logits match; otherwise it goes to <output>/rejected/ and the
command exits 5. The export loads in onnxruntime.InferenceSession and optimum's ORTModelForImageClassification, with
the image processor beside it."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from nncli.core import console
from nncli.core.errors import GateFailed, InputError, UsageError
from nncli.core.report import Timer, base_report, environment, now
from nncli.core.rundir import RunDir, recording
from nncli.recipe.load import dump


def run(recipe, source, run_dir: Path | None, *, overwrite: bool = False) -> dict:
    timer = Timer()
    if recipe.format != "onnx":
        raise UsageError("export of image classifiers supports format=onnx (merged/ already is the safetensors model)",
                         "drop --format, or use the run's merged/ folder")
    default_out = run_dir / "onnx" if run_dir else None
    if recipe.output is None and default_out is None:
        raise UsageError("export needs --output DIR (the model is not a run directory)", "pass --output exports/my-model")
    out = RunDir(recipe.output or default_out, command="export")
    images = parity_images(recipe, run_dir)
    out.prepare(overwrite=overwrite, inputs=[source.path, recipe.parity.data, run_dir / "recipe.yaml" if run_dir else None])
    report = base_report("export", recipe.name, task="image-classification")
    report.update(source={"model": recipe.model, "path": source.path, "resolved_from": source.source}, format="onnx")
    with recording(out, report):
        out.write_text("recipe.yaml", dump(recipe))
        staging = out / ".staging"
        shutil.rmtree(staging, ignore_errors=True)
        t = Timer()
        try:
            _export(source.path, staging, recipe)
        except Exception as e:
            shutil.rmtree(staging, ignore_errors=True)
            raise InputError(f"export of {recipe.model} to onnx failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}",
                             "check that optimum-onnx supports the architecture (nncli --debug shows the traceback)") from e
        report["timings"] = {"export_seconds": t()}
        console.log(f"parity: comparing the onnx export with {recipe.model} on {len(images)} images")
        report["parity"] = parity(source.path, staging, images, recipe)
        return _conclude(report, out, staging, recipe, timer)


def parity_images(recipe, run_dir: Path | None) -> list[str]:
    if recipe.parity.data:
        from nncli.io.image_inference import list_images

        paths = list_images(recipe.parity.data)[0]
    elif run_dir is not None:
        from nncli.io.images import load_images
        from nncli.recipe.load import load_run_recipe

        ft = load_run_recipe(run_dir)
        paths = load_images(ft.data, seed=ft.train.seed).validation.paths
    else:
        raise UsageError("export needs images for the parity check: the model is not a run directory",
                         "pass --data FOLDER (real images, e.g. your validation images)")
    if len(paths) > recipe.parity.samples:
        rng = np.random.default_rng(0)
        paths = [paths[i] for i in sorted(rng.choice(len(paths), recipe.parity.samples, replace=False))]
    return paths


def export_fp32(src: str, dest: Path) -> None:
    """The fp32 ONNX export alone (quantize builds its int8 candidates from it)."""
    from nncli.recipe.deploy import ExportRecipe

    _export(src, dest, ExportRecipe(model=src))


def _export(src: str, dest: Path, recipe) -> None:
    import logging
    import warnings

    from optimum.exporters.onnx import main_export

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        level = logging.getLogger("optimum").level
        logging.getLogger("optimum").setLevel(logging.ERROR)
        try:
            with contextlib.redirect_stdout(sys.stderr):
                main_export(src, dest, task="image-classification", opset=recipe.opset, do_validation=False,
                            trust_remote_code=recipe.trust_remote_code, local_files_only=True)
        finally:
            logging.getLogger("optimum").setLevel(level)
    if (Path(src) / "calibration.json").exists():
        shutil.copy2(Path(src) / "calibration.json", dest / "calibration.json")


def parity(src: str, dest: Path, images: list[str], recipe) -> dict:
    from nncli.io.image_inference import load_image_classifier

    ref = load_image_classifier(src, allow_pickle=recipe.allow_pickle, trust_remote_code=recipe.trust_remote_code)
    new = load_image_classifier(str(dest / "model.onnx"), trust_remote_code=recipe.trust_remote_code)
    a, b = ref.logits(images, batch_size=16), new.logits(images, batch_size=16)
    diff = np.abs(a - b)
    agree = a.argmax(-1) == b.argmax(-1)
    return {"samples": len(images), "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "agreement": float(agree.mean()), "flipped": int((~agree).sum()), "atol": recipe.parity.atol,
            "max_flipped": recipe.parity.max_flipped}


def _conclude(report, out, staging: Path, recipe, timer) -> dict:
    p = report["parity"]
    gates = [{"metric": "parity.max_abs_diff", "op": "<=", "threshold": recipe.parity.atol, "value": p["max_abs_diff"],
              "passed": p["max_abs_diff"] <= recipe.parity.atol},
             {"metric": "parity.flipped", "op": "<=", "threshold": recipe.parity.max_flipped, "value": p["flipped"],
              "passed": p["flipped"] <= recipe.parity.max_flipped}]
    passed = all(g["passed"] for g in gates)
    files = sorted(f.name for f in staging.iterdir())
    shutil.rmtree(out / "rejected", ignore_errors=True)
    if passed:
        for f in staging.iterdir():
            os.replace(f, out / f.name)
        shutil.rmtree(staging, ignore_errors=True)
        report["artifacts"] = {f: f for f in files}
    else:
        os.replace(staging, out / "rejected")
        report["artifacts"] = {"rejected": "rejected"}
    size = sum(f.stat().st_size for f in (out.path if passed else out / "rejected").glob("*.onnx"))
    report.update(gates=gates, size_mb=round(size / 1e6, 2), environment=environment(),
                  status="succeeded" if passed else "failed", exit_code=0 if passed else 5, finished_at=now())
    report["timings"]["wall_seconds"] = timer()
    out.write_json("report.json", report)
    out.complete()
    console.log(f"parity: max |Δlogit| {p['max_abs_diff']:.2e}, mean {p['mean_abs_diff']:.2e}, top-1 agreement "
                f"{p['agreement']:.4f}, {p['flipped']} flipped")
    if not passed:
        raise GateFailed(f"export parity failed: max |Δlogit| {p['max_abs_diff']:.3g} (limit {recipe.parity.atol:g}), "
                         f"{p['flipped']} flipped prediction(s) (limit {recipe.parity.max_flipped}); the export was moved "
                         f"to {out.path}/rejected", "do not ship it; report the architecture, or relax parity.atol knowingly",
                         report=report)
    return report
