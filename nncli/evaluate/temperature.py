"""`nncli evaluate --calibrate`: fit the temperature on validation data (never the evaluation data itself), check it
on the evaluation data, and store it with the model (calibration.json)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nncli.core import console
from nncli.core.atomic import atomic_write_json
from nncli.core.errors import InputError
from nncli.core.report import now
from nncli.evaluate import metrics as M
from nncli.io.models import run_dir_for
from nncli.recipe.evaluate import EvaluateRecipe


def calibrate(name: str, clf, split, logits, y, recipe: EvaluateRecipe, res: dict, calib: dict) -> float:
    """Fit the temperature on validation texts (nncli.evaluate.calibration's rule), check it on the evaluation data, store it."""
    val_texts, val_pairs, val_y, source = _validation_for(name, recipe, clf)
    overlap = len(set(val_texts) & set(split.texts)) / max(1, len(set(split.texts)))
    return fit_and_store(name, clf, clf.logits(val_texts, val_pairs, recipe.batch_size), val_y, source, (overlap, "texts"),
                         logits, y, recipe, res, calib)


def check_calibration_source(recipe: EvaluateRecipe) -> None:
    """--calibrate without --validation needs every model to be part of a training run (its validation split): checked
    before anything is read or written."""
    if recipe.calibration.fit and not recipe.data.validation:
        missing = [m for m in recipe.models if run_dir_for(m) is None]
        if missing:
            raise InputError(f"--calibrate needs validation data, and {missing[0]} is not part of a finetune run directory",
                             "pass --validation FILE (held-out data, never the evaluation data itself)")


def fit_and_store(name: str, clf, val_logits, val_y, source: str, overlap: tuple[float, str], logits, y,
                  recipe: EvaluateRecipe, res: dict, calib: dict) -> float:
    """The temperature fitted on validation logits (texts or images), ECE on the evaluation logits before and after,
    warnings when the validation data overlaps the evaluation data (share, unit) or the fit makes ECE worse; stored with
    the model."""
    from nncli.evaluate import calibration
    from nncli.io.inference import model_dir_of, softmax

    if overlap[0] > 0.5:
        res["warnings"].append(f"{name}: the calibration data overlaps the evaluation data ({overlap[0]:.0%} of {overlap[1]}); "
                               "ECE after calibration is optimistic. Evaluate on held-out data")
    decision = calibration.fit(val_logits, val_y, seed=recipe.seed)
    new_t, bins = decision.temperature, recipe.calibration.bins
    before = M.ece(y, softmax(logits / clf.temperature), bins)[0]
    uncalibrated = M.ece(y, softmax(logits), bins)[0]
    after = M.ece(y, softmax(logits / new_t), bins)[0]
    calib.update(fitted_on=source, fitted_rows=len(val_y), temperature=new_t, previous_temperature=clf.temperature,
                 ece_before=before, ece_after=after, ece_uncalibrated=uncalibrated, decision=decision.as_dict())
    console.log(f"calibration: temperature {new_t:.3f} ({decision.status}) from {len(val_y)} validation rows; "
                f"ECE on the evaluation data {before:.4f} -> {after:.4f}")
    if decision.status in ("refused", "bounded"):
        console.warn(f"calibration: {decision.reason}")
        res["warnings"].append(f"{name}: calibration {decision.status}: {decision.reason}")
    elif decision.status == "unchanged":
        console.log(f"calibration: {decision.reason}")
    if after > uncalibrated:
        msg = (f"{name}: the temperature {new_t:.3f} fitted on {source} makes ECE on the evaluation data worse than the "
               f"uncalibrated model ({uncalibrated:.4f} -> {after:.4f}): the validation split does not represent this data")
        console.warn(msg)
        res["warnings"].append(msg)
    stored = _store_temperature(model_dir_of(name), new_t, source, before, after, decision.as_dict())
    calib["stored_in"] = stored
    if stored is None:
        res["warnings"].append(f"{name}: the temperature could not be stored with the model (not a local directory); "
                               f"pass it on: {new_t:.4f}")
    return new_t


def _validation_for(name: str, recipe: EvaluateRecipe, clf):
    """Validation texts for temperature fitting: --validation, else the run directory's own validation split."""
    from nncli.io.inference import map_labels
    from nncli.io.labelled import load_labelled, read_texts

    if recipe.data.validation:
        s, names, _ = read_texts(recipe.data.validation, recipe.data.text_column, role="validation",
                                 encoding=recipe.data.encoding,
                                 clean=recipe.data.clean_text, label_column=recipe.data.label_column)
        return s.texts, s.pairs, np.asarray(map_labels(names, clf.label_names, s.source)), s.source
    run_dir = run_dir_for(name)
    if run_dir is not None:
        from nncli.recipe.load import load_run_recipe

        ft = load_run_recipe(run_dir)
        data = load_labelled(ft.data, seed=ft.train.seed, label_names=clf.label_names)
        v = data.validation
        return v.texts, v.pairs, np.asarray(v.labels), f"{run_dir}/recipe.yaml validation split"
    raise InputError("--calibrate needs validation data: the model is not a run directory with a recipe",
                     "pass --validation FILE (never the evaluation data itself)")


def _store_temperature(model_dir: Path | None, t: float, source: str, before: float, after: float, decision: dict) -> str | None:
    from nncli.io.inference import CALIBRATION_FILE

    if model_dir is None:
        return None
    try:
        atomic_write_json(model_dir / CALIBRATION_FILE, {"method": "temperature_scaling", "temperature": t, "fitted_on": source,
                                                         "ece_before": before, "ece_after": after, "fitted_at": now(),
                                                         "status": decision["status"], "reason": decision["reason"],
                                                         "decision": decision})
    except Exception as e:  # read-only model directory: report, do not fail the evaluation
        console.warn(f"could not store the temperature in {model_dir}: {e}")
        return None
    return str(model_dir / CALIBRATION_FILE)
