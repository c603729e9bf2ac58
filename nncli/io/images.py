"""Labelled images: an image folder (root/<label>/*.png|jpg|jpeg|webp) or a CSV/JSONL of image paths and labels.

Every file is opened once in pre-flight (nncli/io/image_checks.py): an unreadable, truncated or non-image file is named
in the error (exit 3), never dropped silently; grayscale, alpha, CMYK and 16-bit images are converted to RGB and
counted, EXIF rotation is applied and counted, and exact duplicates (same pixels) within train and across splits are
reported. A folder whose sub-folders are train/ and validation/ (or val/) and test/ is read as those splits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from nncli.core.errors import InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
IGNORED_FILES = ("thumbs.db", "desktop.ini")
SPLIT_FOLDERS = {"train": ("train", "training"), "validation": ("validation", "val", "valid", "dev"), "test": ("test", "testing")}


@dataclass
class ImageSplit:
    name: str
    source: str
    paths: list[str]
    labels: list[int]
    rows: list[int] = field(default_factory=list)      # 1-based data row of a CSV/JSONL, or the file's position in a folder
    rows_read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    extra: dict[str, list] = field(default_factory=dict)  # a listing's other columns (metadata), one value per image

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, idx: list[int], name: str | None = None) -> ImageSplit:
        return ImageSplit(name or self.name, self.source, [self.paths[i] for i in idx], [self.labels[i] for i in idx],
                          [self.rows[i] for i in idx] if self.rows else [], self.rows_read, dict(self.dropped),
                          {k: [v[i] for i in idx] for k, v in self.extra.items()})


@dataclass
class ImageData:
    train: ImageSplit
    validation: ImageSplit
    test: ImageSplit | None
    label_names: list[str]
    notes: list[str] = field(default_factory=list)     # worth a warning
    info: list[str] = field(default_factory=list)      # worth a log line
    fingerprint: str = ""
    checks: dict = field(default_factory=dict)         # what pre-flight found in the files (image_checks.inspect)

    def splits(self) -> list[ImageSplit]:
        return [s for s in (self.train, self.validation, self.test) if s is not None]


def is_image_file(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS


def is_image_folder(source: str | None) -> bool:
    """A folder of label sub-folders holding images (or of train/validation/test folders that are): an image dataset."""
    if not source:
        return False
    p = Path(source).expanduser()
    try:
        if not p.is_dir():
            return False
        subdirs = [d for d in p.iterdir() if d.is_dir() and not d.name.startswith(".")]
        for d in subdirs[:50]:
            if any(is_image_file(f) for f in _first_files(d)):
                return True
        return any(split_folders(p).values())
    except OSError:
        return p.is_dir()        # an unreadable folder: reading it reports the problem


def _first_files(d: Path, n: int = 20) -> list[Path]:
    out = []
    for f in d.rglob("*"):
        if f.is_file():
            out.append(f)
            if len(out) >= n:
                break
    return out


def split_folders(root: Path) -> dict[str, Path | None]:
    """root/train, root/validation|val, root/test when they are image folders themselves."""
    found: dict[str, Path | None] = {}
    for split, names in SPLIT_FOLDERS.items():
        hits = [root / n for n in names if (root / n).is_dir()]
        found[split] = hits[0] if hits and is_image_folder(str(hits[0])) else None
    return found if found["train"] is not None else {}


# ---------------------------------------------------------------------------------------------- listing a source

def _listdir(d: Path, role: str) -> list[Path]:
    try:
        return sorted(d.iterdir())
    except PermissionError:
        raise InputError(f"{role} image folder {d} cannot be read (permission denied)",
                         f"give read access to it (chmod -R u+rX {d}), or point at another folder") from None
    except OSError as e:
        raise InputError(f"{role} image folder {d} cannot be read ({e.strerror or type(e).__name__})",
                         "check the path and the disk") from None


def walk_files(d: Path, role: str) -> list[Path]:
    """Files under d (sorted, hidden ones and Thumbs.db/desktop.ini left out); an unreadable folder is an InputError."""
    out = []
    for f in _listdir(d, role):
        if f.name.startswith(".") or f.name.lower() in IGNORED_FILES:
            continue
        out.extend(walk_files(f, role) if f.is_dir() else [f])
    return out


def read_folder(root: Path, role: str) -> tuple[list[str], list[str], list[str], list[str]]:
    """(paths, label names, files that are not images, notes) of an image folder root/<label>/...; files that are
    not images are returned so pre-flight names them all at once."""
    paths, names, not_images, notes = [], [], [], []
    loose = 0
    for entry in _listdir(root, role):
        if entry.name.startswith(".") or entry.name.lower() in IGNORED_FILES:
            continue
        if not entry.is_dir():
            loose += is_image_file(entry)
            continue
        for f in walk_files(entry, role):
            if is_image_file(f):
                paths.append(str(f))
                names.append(entry.name)
            else:
                not_images.append(str(f))
    if loose:
        notes.append(f"{role}: {loose} image(s) directly in {root} are not in a label folder and were not used")
    if not paths and not not_images:
        raise InputError(f"{role} image folder {root} has no images in label sub-folders",
                         f"lay it out as {root}/<label>/<image>.png (png, jpg, jpeg or webp), or pass a CSV/JSONL of "
                         "image paths and labels")
    return paths, names, not_images, notes


def read_listing(source: str, image_column: str, label_column: str, role: str, extra: dict | None = None):
    """(paths, label names or None, 1-based rows, dropped counts, missing files) of a CSV/JSONL listing image paths
    (relative to the listing's folder) and labels; with `extra` (a dict), the listing's other columns are put in it,
    one value per kept image."""
    from nncli.io.labelled import check_column, normalise_label
    from nncli.io.tables import read_table

    table = read_table(source, role=role)
    check_column(table, image_column, "data.image_column", role)
    if label_column:
        check_column(table, label_column, "data.label_column", role)
    base = Path(source).expanduser().resolve().parent
    paths, names, rows, missing = [], [], [], []
    dropped = {"empty_path": 0, "missing_label": 0}
    labels = table.columns[label_column] if label_column else [None] * table.n_rows
    for i, (raw, lab) in enumerate(zip(table.columns[image_column], labels)):
        value = "" if raw is None else str(raw).strip()
        name = normalise_label(lab) if label_column else None
        if not value:
            dropped["empty_path"] += 1
            continue
        if label_column and name is None:
            dropped["missing_label"] += 1
            continue
        p = Path(value).expanduser()
        p = p if p.is_absolute() else base / p
        if not p.is_file():
            missing.append(f"{p} (row {i + 1}: file not found)")
        paths.append(str(p))
        names.append(name)
        rows.append(i + 1)
    if extra is not None:
        extra.update({c: [v[r - 1] for r in rows] for c, v in table.columns.items() if c not in (image_column, label_column)})
    return paths, names, rows, {k: v for k, v in dropped.items() if v}, missing, table.n_rows


# ---------------------------------------------------------------------------------------------- the labelled set

def load_images(data, seed: int = 42, label_names: list[str] | None = None) -> ImageData:
    """train/validation/test per an image data spec (nncli.recipe.images.ImageDataSpec), every file checked."""
    from nncli.io.image_checks import check_splits
    from nncli.io.labelled import sort_labels

    sources = {"train": data.train, "validation": data.validation, "test": data.test}
    info: list[str] = []
    root = Path(data.train).expanduser()
    if root.is_dir():
        nested = split_folders(root)
        for split, folder in nested.items():
            if folder is not None and (split == "train" or sources[split] is None):
                sources[split] = str(folder)
        if nested:
            info.append(f"data: split folders in {root}: " + ", ".join(f"{k} = {Path(v).name}/" for k, v in nested.items() if v))
    raw, notes, problems = {}, [], []
    for split, source in sources.items():
        if source is not None:
            raw[split] = _read_source(split, str(source), data, notes, problems)
    if label_names is None:
        found = {n for n in raw["train"][1]}
        if len(found) < 2:
            raise InputError(f"train images have a single class ({next(iter(found), None)!r}): a classifier needs at least two",
                             "add a folder (or rows) for each other class")
        label_names = sort_labels(found)
    splits = {k: _to_split(k, v, label_names) for k, v in raw.items()}
    train = splits["train"]
    if data.max_train_samples and data.max_train_samples < len(train):
        import random

        train = train.subset(sorted(random.Random(seed).sample(range(len(train)), data.max_train_samples)))
        info.append(f"train: using a seeded random subset of {len(train)} images (data.max_train_samples)")
    validation = splits.get("validation")
    if validation is None:
        train, validation = stratified(train, data.validation_fraction, seed, notes)
        info.append(f"validation: a stratified {data.validation_fraction:.0%} split of train ({len(validation)} images, "
                    f"seed {seed})")
    result = ImageData(train, validation, splits.get("test"), label_names, notes, info)
    check_splits(result, problems, min_size=data.min_image_size)
    parts = [result.checks["fingerprint"], str(label_names), str(seed), str(data.validation_fraction),
             str(data.max_train_samples)]
    result.fingerprint = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
    return result


def read_labelled(source: str, image_column: str = "image", label_column: str | None = "label",
                  role: str = "evaluation") -> tuple[ImageSplit, list[str | None], list[str]]:
    """One image set for evaluate/predict (a folder, or a listing whose label column may be absent with label_column
    None): the split (labels empty), each image's label name, notes; every file opened, unusable ones named (exit 3)."""
    from types import SimpleNamespace

    from nncli.io.image_checks import check_files, raise_problems

    notes, problems = [], []
    spec = SimpleNamespace(image_column=image_column, label_column=label_column, extra={})
    paths, names, rows, dropped, src, n = _read_source(role, source, spec, notes, problems)
    check_files(paths, problems)
    raise_problems(problems)
    if not paths:
        raise InputError(f"{role} data {source} has no usable images ({n} rows read)", "check data.image_column")
    return ImageSplit(role, src, paths, [], rows, n, dropped, spec.extra), names, notes


def read_with_labels(source: str, image_column: str = "image", label_column: str | None = "label",
                     role: str = "evaluation") -> tuple[ImageSplit, list[str], list[str]]:
    """read_labelled for images that must all have labels (evaluation, calibration): unlabelled ones are an InputError."""
    split, names, notes = read_labelled(source, image_column, label_column, role)
    if any(n is None for n in names):
        raise InputError(f"{role} images in {source} have no labels", "lay them out as <folder>/<label>/<image>, "
                         "or pass a listing with a label column (data.label_column)")
    return split, names, notes


def _read_source(split: str, source: str, data, notes: list[str], problems: list[str]):
    p = Path(source).expanduser()
    if p.is_dir():
        paths, names, not_images, more = read_folder(p, split)
        problems.extend(f"{f} (not an image: {Path(f).suffix or 'no extension'})" for f in not_images)
        notes.extend(more)
        return paths, names, list(range(1, len(paths) + 1)), {}, str(p), len(paths)
    if not p.exists():
        raise InputError(f"{split} data not found: {source}", "pass an image folder (root/<label>/*.png) or a CSV/JSONL "
                         "with an image-path column and a label column")
    paths, names, rows, dropped, missing, n = read_listing(source, data.image_column, data.label_column, split,
                                                           getattr(data, "extra", None))
    problems.extend(missing)
    if dropped:
        notes.append(f"{split}: {n} rows read, {len(paths)} kept; dropped " +
                     ", ".join(f"{v} with {k.replace('_', ' ')}" for k, v in dropped.items()))
    return paths, names, rows, dropped, str(p), n


def _to_split(split: str, raw, label_names: list[str]) -> ImageSplit:
    paths, names, rows, dropped, source, n = raw
    label2id = {n: i for i, n in enumerate(label_names)}
    unseen: dict[str, int] = {}
    for name in names:
        if name not in label2id:
            unseen[name] = unseen.get(name, 0) + 1
    if unseen:
        listing = ", ".join(f"{k!r} ({v} images)" for k, v in sorted(unseen.items(), key=lambda kv: -kv[1])[:5])
        raise InputError(f"{split} images in {source} have labels the model was not trained on: {listing}; known labels: "
                         f"{', '.join(label_names)}", "fix or remove those images, or add the labels to the training data")
    if not paths:
        raise InputError(f"{split} data {source} has no usable images ({n} rows read)",
                         "check data.image_column and data.label_column")
    return ImageSplit(split, source, paths, [label2id[x] for x in names], rows, n, dropped)


def stratified(train: ImageSplit, fraction: float, seed: int, notes: list[str]) -> tuple[ImageSplit, ImageSplit]:
    from nncli.io.labelled import holdout

    tr, va = holdout(train.labels, fraction, seed, notes, too_few=f"train has only {len(train)} images",
                     fix="add images, or pass a separate validation folder (--validation)",
                     single="some classes have a single image")
    return train.subset(tr), train.subset(va, name="validation")
