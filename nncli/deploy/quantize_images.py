"""`nncli quantize` of an image classifier: ONNX Runtime dynamic int8 (per tensor and per channel) and static int8
(QDQ, per channel, calibrated on training images: nncli/deploy/static_images.py) built from the fp32 ONNX export,
judged exactly like text (nncli/deploy/quantize.py): flips on every image available, the accuracy drop on the
labelled held-out images with exact McNemar bounds, kept only when the 95% upper bound of the drop is within
--max-drop points and it is faster than fp32; otherwise nothing is written and the command exits 5."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nncli.core import console
from nncli.core.errors import UsageError

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


class ImageKind:
    """What quantize (nncli/deploy/quantize.py) needs of an image classifier; the flow and the judging are shared."""
    task, noun = "image-classification", "images"

    def __init__(self, recipe, source, run_dir: Path | None):
        self.recipe, self.source, self.run_dir = recipe, source, run_dir
        self.pixels = np.empty((0,))    # every image's preprocessed pixels, in data["all_inputs"] order (prepare)

    def candidates(self) -> list[str]:
        return candidates_for(self.recipe.method, self.recipe.backend, self.run_dir is not None)

    def data(self) -> dict:
        return images_for(self.recipe, self.run_dir)

    def summary(self, data: dict) -> dict:
        return {"images_for_flips": len(data["all_inputs"]), "calibration_images": len(data["calib"]),
                "calibration": _calibration_note(data, self.recipe)}

    def settings(self) -> dict:
        return {}

    def load(self, path) -> object:
        from nncli.io.image_inference import load_image_classifier

        return load_image_classifier(str(path), threads=self.recipe.threads)

    def load_built(self, path: Path) -> object:
        return self.load(Path(path) / "model.onnx")

    def export_fp32(self, onnx_dir: Path) -> None:
        from nncli.deploy.export_images import export_fp32

        export_fp32(self.source.path, onnx_dir)

    def build(self, name: str, onnx_dir: Path, work: Path, data: dict, ref) -> Path:
        if name in DYNAMIC:
            from nncli.deploy.int8 import build

            return build(name, self.source.path, onnx_dir, work, [], ref)
        from nncli.deploy.static_images import build_static

        console.log(f"  {name}: calibrating on {len(data['calib'])} training images ({CALIBRATION})")
        return build_static(onnx_dir, work, ref.pixels(data["calib"]), CALIBRATION)

    def prepare(self, ref, data: dict) -> None:
        """Every image is decoded and preprocessed once; every candidate reads the same pixels."""
        self.pixels = np.stack([ref.pixels([p])[0] for p in data["all_inputs"]])

    def logits(self, clf, data: dict) -> np.ndarray:
        pv = self.pixels
        return np.concatenate([clf.logits_of_pixels(pv[i:i + 32]) for i in range(0, len(pv), 32)])

    def timed(self, clf) -> tuple:
        b1 = self.pixels[:1]
        bn = np.repeat(b1, self.recipe.batch_size, axis=0)
        return (lambda: clf.logits_of_pixels(b1)), (lambda: clf.logits_of_pixels(bn))

    def details(self, path: Path) -> dict:
        from nncli.deploy.static_images import op_counts

        return {"int8_ops": op_counts(Path(path) / "model.onnx")}


def _calibration_note(data: dict, recipe) -> str:
    if not data["calib"]:
        return "none: the model is not a run directory, so there are no training images (static int8 not tried)"
    return (f"{len(data['calib'])} training images (seeded sample, at most calibration_samples={recipe.calibration_samples}; "
            f"never the held-out images), {CALIBRATION} ranges per activation")


def images_for(recipe, run_dir: Path | None) -> dict:
    """Labelled held-out images for the accuracy drop (the run's validation and test splits, or --data); every image
    available (plus the training images) for the flips; a seeded sample of the training images to calibrate on."""
    from nncli.deploy.quantize import held_out
    from nncli.deploy.static_images import calibration_images

    def given():
        from nncli.io.images import read_labelled

        s, labels, _ = read_labelled(recipe.data.path, recipe.data.image_column, recipe.data.label_column, "quantize data")
        return s.paths, labels, s.source

    def from_run(ft):
        from nncli.io.images import load_images

        return load_images(ft.data, seed=ft.train.seed)

    return held_out(recipe, run_dir, given=given, from_run=from_run, field="paths",
                    calibration=lambda train, _: calibration_images(train, recipe.calibration_samples),
                    words=("images", "images", "FOLDER (<folder>/<label>/<image>), e.g. your validation images",
                           "folder (a few hundred images)"))
