"""What `nncli export` (nncli/deploy/export.py) needs of an image classifier: the real images its always-on parity
gate compares on (the run's validation images, or --data), the logits of the PyTorch model and of the ONNX export
on them, and the bare fp32 export that `nncli quantize` builds its int8 candidates from. The export loads in
onnxruntime.InferenceSession and optimum's ORTModelForImageClassification, with the image processor beside it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from nncli.core.errors import UsageError


def parity_images(recipe, run_dir: Path | None) -> list[str]:
    if recipe.parity.data:
        from nncli.io.image_inference import list_images

        return list_images(recipe.parity.data)[0]
    if run_dir is not None:
        from nncli.io.images import load_images
        from nncli.recipe.load import load_run_recipe

        ft = load_run_recipe(run_dir)
        return load_images(ft.data, seed=ft.train.seed).validation.paths
    raise UsageError("export needs images for the parity check: the model is not a run directory",
                     "pass --data FOLDER (real images, e.g. your validation images)")


def export_fp32(src: str, dest: Path) -> None:
    """The fp32 ONNX export alone (quantize builds its int8 candidates from it), with the run's calibration beside it."""
    from nncli.deploy.export import export_onnx
    from nncli.recipe.deploy import ExportRecipe

    export_onnx(src, dest, "image-classification", ExportRecipe(model=src))
    if (Path(src) / "calibration.json").exists():
        shutil.copy2(Path(src) / "calibration.json", dest / "calibration.json")


def image_logits(src: str, dest: Path, images: list[str], recipe) -> tuple[np.ndarray, np.ndarray]:
    """The logits of the source model and of the staged ONNX export on the same images."""
    from nncli.io.image_inference import load_image_classifier

    ref = load_image_classifier(src, allow_pickle=recipe.allow_pickle, trust_remote_code=recipe.trust_remote_code)
    new = load_image_classifier(str(dest / "model.onnx"), trust_remote_code=recipe.trust_remote_code)
    return ref.logits(images, batch_size=16), new.logits(images, batch_size=16)
