"""`nncli evaluate --calibrate` on image classifiers: the rule of text calibration (nncli.evaluate.temperature): the
temperature is fitted on validation images, `--validation` (a folder or listing) or else the training run's own
validation split, never on the images being evaluated; checked on them (ECE before and after) and stored with the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nncli.recipe.evaluate import EvaluateRecipe


def image_calibrate(name: str, clf, split, logits, y, recipe: EvaluateRecipe, res: dict, calib: dict) -> float:
    from nncli.evaluate.temperature import fit_and_store

    paths, val_y, source = _validation_for(name, recipe, clf)
    evaluated = {str(Path(p).resolve()) for p in split.paths}
    overlap = len({str(Path(p).resolve()) for p in paths} & evaluated) / max(1, len(evaluated))
    return fit_and_store(name, clf, clf.logits(paths, recipe.batch_size), val_y, source, (overlap, "images"), logits, y,
                         recipe, res, calib)


def _validation_for(name: str, recipe: EvaluateRecipe, clf) -> tuple[list[str], np.ndarray, str]:
    """Validation images for the temperature: --validation, else the run directory's own validation split."""
    from nncli.io.images import load_images, read_with_labels
    from nncli.io.inference import map_labels
    from nncli.io.models import run_dir_for

    if recipe.data.validation:
        s, names, _ = read_with_labels(recipe.data.validation, recipe.data.image_column, recipe.data.label_column,
                                       "validation")
        return s.paths, np.asarray(map_labels(names, clf.label_names, s.source)), s.source
    run_dir = run_dir_for(name)    # present: checked by temperature.check_calibration_source before anything was read
    from nncli.recipe.load import load_run_recipe

    ft = load_run_recipe(run_dir)
    v = load_images(ft.data, seed=ft.train.seed, label_names=clf.label_names).validation
    return v.paths, np.asarray(v.labels), f"{run_dir}/recipe.yaml validation split"
