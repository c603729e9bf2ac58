"""mistakes.png for `nncli evaluate` on images: the most confident mistakes (up to 16), each tile titled
"true→predicted p=confidence", most confident first; nothing is written when the model makes no mistake."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

MAX_TILES = 16
COLUMNS = 4
TILE_INCHES = 1.6      # width of one tile; its height adds room for the title
TITLE_INCHES = 0.3


def most_confident_mistakes(y, probs, limit: int = MAX_TILES) -> list[int]:
    """Indices of the wrong predictions, most confident first (ties in data order)."""
    pred, conf = probs.argmax(1), probs.max(1)
    wrong = np.flatnonzero(pred != np.asarray(y))
    return [int(i) for i in sorted(wrong, key=lambda i: (-conf[i], i))[:limit]]


def grid_shape(tiles: int) -> tuple[int, int]:
    """(rows, columns) of a grid of `tiles` tiles."""
    cols = min(COLUMNS, tiles)
    return math.ceil(tiles / cols), cols


def write_mistakes(path: Path, paths: list[str], y, probs, labels: list[str], title: str) -> dict:
    """The grid of the most confident mistakes at `path` (none written without mistakes); what it shows, for report.json."""
    from nncli.core.figures import pyplot, save_figure
    from nncli.io.image_checks import load_rgb

    pred = probs.argmax(1)
    total = int((pred != np.asarray(y)).sum())
    shown = most_confident_mistakes(y, probs)
    info = {"mistakes": total, "shown": len(shown), "file": None}
    if not shown:
        info["note"] = "no mistakes on these images: mistakes.png not written"
        return info
    rows, cols = grid_shape(len(shown))
    fig, axes = pyplot().subplots(rows, cols, figsize=(cols * TILE_INCHES, rows * (TILE_INCHES + TITLE_INCHES)),
                                  squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, shown):
        im = load_rgb(paths[i])
        im.thumbnail((128, 128))
        ax.imshow(np.asarray(im))
        ax.set_title(f"{_short(labels[int(y[i])])}→{_short(labels[int(pred[i])])} p={probs[i].max():.2f}", fontsize=7)
    fig.suptitle(f"most confident mistakes: {Path(title).name} ({len(shown)} of {total})", fontsize=8)
    save_figure(fig, path)
    info["file"] = path.name
    info["images"] = [{"image": paths[i], "label": labels[int(y[i])], "predicted": labels[int(pred[i])],
                       "confidence": round(float(probs[i].max()), 6)} for i in shown]
    return info


def _short(label: str, n: int = 12) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"
