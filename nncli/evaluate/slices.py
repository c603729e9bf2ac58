"""Slices for `nncli evaluate --slice-column`: metrics per value of a column, small slices flagged."""

from __future__ import annotations

import numpy as np

from nncli.evaluate import metrics as M
from nncli.recipe.evaluate import EvaluateRecipe


def slices(split, y, pred, probs, n_classes, recipe: EvaluateRecipe, label_names) -> list[dict]:
    col = recipe.data.slice_column
    values = ["(missing)" if v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() == "" else str(v).strip()
              for v in split.extra[col]]
    out = []
    for value in sorted(set(values)):
        mask = np.array([v == value for v in values])
        k = int(mask.sum())
        m = M.classification(y[mask], pred[mask], n_classes, probs[mask])
        e = M.ece(y[mask], probs[mask], recipe.calibration.bins)[0]
        row = {"value": value, "count": k, **m, "ece": e, "small": k < recipe.slice_min_count}
        if recipe.bootstrap and k >= 2:
            row["ci95_accuracy"] = M.bootstrap(lambda a, b: float((a == b).mean()), [y[mask], pred[mask]],
                                               min(recipe.bootstrap, 500), recipe.seed)
        out.append(row)
    out.sort(key=lambda r: (r["small"], r["accuracy"]))
    return out


def check_slice_column(split, col: str) -> None:
    if col not in split.extra:
        import difflib

        from nncli.core.errors import UsageError

        cols = list(split.extra)
        close = difflib.get_close_matches(col, cols, n=1)
        listed = ", ".join(cols) or "none besides the inputs and labels"
        raise UsageError(f"data.slice_column: column '{col}' not found (columns: {listed})",
                         f"did you mean '{close[0]}'?" if close else "pass an existing column with --slice-column")


def trusted(rows: list[dict]) -> list[dict]:
    """The slices not flagged small (all of them when every slice is small)."""
    return [s for s in rows if not s["small"]] or rows


def worst_slice(rows: list[dict]) -> dict:
    """The slice behind worst_slice_accuracy: the trusted one with the lowest accuracy."""
    return min(trusted(rows), key=lambda s: s["accuracy"])


def slice_metrics(rows: list[dict]) -> dict:
    """The flat, gateable metrics of the slices: the worst trusted slice, and each slice's accuracy."""
    flat = {"worst_slice_accuracy": worst_slice(rows)["accuracy"],
            "worst_slice_macro_f1": min(s["macro_f1"] for s in trusted(rows))}
    for s in rows:
        flat[f"slice.{s['value']}.accuracy"] = s["accuracy"]
    return flat
