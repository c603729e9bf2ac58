"""Opening images the one way training, evaluation and prediction all use, and the pre-flight checks of every file.

to_rgb(): EXIF orientation applied (ImageOps.exif_transpose), 16-bit and 32-bit grayscale scaled to 8 bits (a plain
convert("RGB") would clip them to white), transparency composited onto white, CMYK/palette/grayscale converted to RGB.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

from nncli.core.errors import InputError

HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
ORIENTATION = 0x0112


def to_rgb(im):
    """An opened PIL image as 8-bit RGB, upright."""
    import numpy as np
    from PIL import Image, ImageOps

    im = ImageOps.exif_transpose(im)
    if im.mode in HIGH_BIT_MODES:
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        im = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB") if im.mode != "RGB" else im


def load_rgb(path: str):
    """The image at `path` as 8-bit RGB; an InputError (exit 3) naming the file when it cannot be decoded."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return to_rgb(im)
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"cannot read image {path}: {describe(e)}", "replace or remove the file") from None


def describe(e: Exception) -> str:
    name = type(e).__name__
    if name == "UnidentifiedImageError":
        return "not an image (the file's content is no known image format)"
    if name == "DecompressionBombError":
        return "too many pixels (Pillow's decompression-bomb limit)"
    if isinstance(e, FileNotFoundError):
        return "file not found"
    if isinstance(e, PermissionError):
        return "permission denied"
    return str(e).splitlines()[0][:120] or name


def inspect(path: str) -> tuple[dict | None, str | None]:
    """(facts about one image file, None) or (None, why it cannot be used)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            facts = {"mode": im.mode, "format": im.format, "rotated": int(im.getexif().get(ORIENTATION, 1) or 1) not in (1,),
                     "transparent": im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)}
            rgb = to_rgb(im)
    except Exception as e:
        return None, describe(e)
    facts["size"] = rgb.size
    facts["hash"] = hashlib.sha1(rgb.tobytes() + repr(rgb.size).encode()).hexdigest()
    return facts, None


def check_splits(data, problems: list[str], min_size: int = 16) -> None:
    """Open every image of every split: unusable files -> one InputError naming them (exit 3); conversions, EXIF
    rotations, tiny images and duplicates counted into data.checks, the ones worth a warning into data.notes."""
    seen: dict[str, tuple] = {}
    per_split = {split.name: check_files(split.paths, problems, seen) for split in data.splits()}
    raise_problems(problems)
    data.checks = _summarise(data, per_split, min_size)


def check_files(paths: list[str], problems: list[str], seen: dict | None = None) -> list[dict | None]:
    """The facts of each file (inspect), appending 'path (why)' to `problems` for each that cannot be used."""
    seen = {} if seen is None else seen
    facts = []
    for path in paths:
        if path not in seen:
            seen[path] = inspect(path) if Path(path).is_file() else (None, None)
        f, why = seen[path]
        if why:
            problems.append(f"{path} ({why})")
        facts.append(f)
    return facts


def raise_problems(problems: list[str]) -> None:
    if problems:
        unique = list(dict.fromkeys(problems))
        more = f" and {len(unique) - 1} more" if len(unique) > 1 else ""
        raise InputError(f"{len(unique)} image file(s) cannot be used: {unique[0]}{more}",
                         "replace or remove those files (each is listed below); nncli never drops an image silently",
                         details=unique)


def _summarise(data, per_split: dict[str, list[dict]], min_size: int) -> dict:
    import numpy as np

    every = [f for facts in per_split.values() for f in facts]
    modes = Counter(f["mode"] for f in every)
    converted = {"grayscale": sum(v for m, v in modes.items() if m in ("L", "1", "P", "LA") or m in HIGH_BIT_MODES),
                 "with_alpha": sum(1 for f in every if f["transparent"]), "cmyk": modes.get("CMYK", 0),
                 "high_bit_depth": sum(v for m, v in modes.items() if m in HIGH_BIT_MODES)}
    widths = np.array([f["size"][0] for f in every])
    heights = np.array([f["size"][1] for f in every])
    tiny = int(np.sum(np.minimum(widths, heights) < min_size))
    checks = {"images": len(every), "modes": dict(modes), "converted_to_rgb": converted,
              "exif_rotated": sum(1 for f in every if f["rotated"]), "formats": dict(Counter(f["format"] for f in every)),
              "size": {"min": [int(widths.min()), int(heights.min())],
                       "median": [int(np.median(widths)), int(np.median(heights))],
                       "max": [int(widths.max()), int(heights.max())]}, "tiny": tiny, "tiny_below_px": min_size}
    _duplicates(data, per_split, checks)
    checks["fingerprint"] = hashlib.sha256("|".join(f"{s}:{f['hash']}:{y}" for s, facts in per_split.items()
                                                    for f, y in zip(facts, _labels(data, s))).encode()).hexdigest()[:16]
    _notes(data, checks)
    return checks


def _labels(data, name: str) -> list[int]:
    return next(s.labels for s in data.splits() if s.name == name)


def _duplicates(data, per_split: dict, checks: dict) -> None:
    train = Counter(f["hash"] for f in per_split["train"])
    labels_of: dict[str, set] = {}
    for f, y in zip(per_split["train"], data.train.labels):
        labels_of.setdefault(f["hash"], set()).add(y)
    checks["duplicates_in_train"] = sum(c - 1 for c in train.values() if c > 1)
    checks["duplicates_with_different_labels"] = sum(1 for v in labels_of.values() if len(v) > 1)
    checks["overlap"] = {name: sum(1 for f in facts if f["hash"] in train)
                         for name, facts in per_split.items() if name != "train"}


def _notes(data, checks: dict) -> None:
    c = checks["converted_to_rgb"]
    done = [f"{v} {k.replace('_', ' ')}" for k, v in c.items() if v]
    if done:
        rotated = f"; {checks['exif_rotated']} rotated upright per their EXIF orientation" if checks["exif_rotated"] else ""
        data.info.append(f"images: converted to RGB: {', '.join(done)}{rotated}")
    elif checks["exif_rotated"]:
        data.info.append(f"images: {checks['exif_rotated']} rotated upright per their EXIF orientation")
    if checks["tiny"]:
        data.notes.append(f"{checks['tiny']} of {checks['images']} images are smaller than {checks['tiny_below_px']} px on a "
                          "side; they are upscaled to the model's input size")
    if checks["duplicates_in_train"]:
        conflict = checks["duplicates_with_different_labels"]
        data.notes.append(f"train has {checks['duplicates_in_train']} duplicate image(s) (same pixels)"
                          + (f", {conflict} of them with different labels" if conflict else ""))
    for name, n in checks["overlap"].items():
        if n:
            total = len(next(s for s in data.splits() if s.name == name))
            data.notes.append(f"leakage: {n} of {total} {name} images ({n / total:.1%}) also appear in train (same pixels); "
                              f"{name} metrics will be optimistic")
