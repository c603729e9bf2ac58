"""Robustness of an image classifier for `nncli evaluate`: the seeded sample of images (robustness.samples at most),
each decoded once per batch and perturbed (nncli.evaluate.image_perturb) before the model's image processor; scored
the one way text robustness is (nncli.evaluate.robustness.score: flip rate and accuracy with exact 95% intervals)."""

from __future__ import annotations

import numpy as np

from nncli.core import console
from nncli.evaluate import robustness as R
from nncli.recipe.evaluate import EvaluateRecipe


def image_robustness(clf, split, y, recipe: EvaluateRecipe) -> dict:
    """The robustness section of one model (a temperature changes no prediction, so none is applied)."""
    from nncli.evaluate import image_perturb
    from nncli.io.image_checks import load_rgb

    names = R.perturbations_for(recipe, "image")
    idx = R.sample(len(split), recipe)
    console.log(f"  robustness: {len(names)} perturbations on {len(idx)} images"
                + (f" (a seeded sample of {len(split)}; robustness.samples)" if len(idx) < len(split) else ""))
    seed, bs = recipe.robustness.seed, recipe.batch_size
    clean, perturbed = [], {k: [] for k in names}
    for start in range(0, len(idx), bs):
        images = [load_rgb(split.paths[i]) for i in idx[start:start + bs]]
        clean.append(_predict(clf, images))
        for k in names:
            perturbed[k].append(_predict(clf, image_perturb.apply(k, images, seed, start)))
    clean_pred, yy = np.concatenate(clean), np.asarray(y)[idx]
    per = {k: R.score(clean_pred, np.concatenate(v), yy) for k, v in perturbed.items()}
    return R.summary(idx, len(split), clean_pred, yy, recipe, per)


def _predict(clf, images: list) -> np.ndarray:
    return clf.logits_of_pixels(clf.pixels_of(images)).argmax(1)
