"""Seeded image perturbations for `nncli evaluate` robustness on image classifiers: small changes a model should shrug
off, applied to the decoded 8-bit RGB image before the model's image processor. Each runs at one fixed strength; where
it has a direction (brighter or darker, left or right) that is drawn per image from a seeded generator, so a rerun
perturbs every image the same way.

    gaussian_noise  additive Gaussian noise, sigma 8% of the 0-255 range (20.4 levels), per pixel and channel
    gaussian_blur   Gaussian blur, radius 1% of the shorter side (at least 1 pixel)
    brightness      brightness x0.7 or x1.3
    contrast        contrast x0.7 or x1.3
    jpeg            re-encoded as JPEG at quality 30
    rotation        rotated by 10 degrees either way, the corners filled with the mean border colour
"""

from __future__ import annotations

import io

import numpy as np

NOISE_SIGMA = 0.08 * 255
BLUR_FRACTION = 0.01
FACTORS = (0.7, 1.3)
JPEG_QUALITY = 30
ROTATION_DEGREES = 10.0


def gaussian_noise(im, rng: np.random.Generator):
    from PIL import Image

    arr = np.asarray(im, dtype=np.float64)
    return Image.fromarray(np.clip(arr + rng.normal(0.0, NOISE_SIGMA, arr.shape) + 0.5, 0, 255).astype(np.uint8))


def gaussian_blur(im, rng: np.random.Generator):
    from PIL import ImageFilter

    return im.filter(ImageFilter.GaussianBlur(radius=max(1.0, BLUR_FRACTION * min(im.size))))


def brightness(im, rng: np.random.Generator):
    from PIL import ImageEnhance

    return ImageEnhance.Brightness(im).enhance(FACTORS[int(rng.integers(2))])


def contrast(im, rng: np.random.Generator):
    from PIL import ImageEnhance

    return ImageEnhance.Contrast(im).enhance(FACTORS[int(rng.integers(2))])


def jpeg(im, rng: np.random.Generator):
    from PIL import Image

    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=JPEG_QUALITY)
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def rotation(im, rng: np.random.Generator):
    from PIL import Image

    arr = np.asarray(im)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    fill = tuple(int(round(v)) for v in border.mean(0))
    angle = ROTATION_DEGREES * (1 if rng.integers(2) else -1)
    return im.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=fill)


PERTURBATIONS = {"gaussian_noise": gaussian_noise, "gaussian_blur": gaussian_blur, "brightness": brightness,
                 "contrast": contrast, "jpeg": jpeg, "rotation": rotation}


def apply(name: str, images: list, seed: int, start: int = 0) -> list:
    """`name` applied to each image; image i of the whole sample (start + position) gets its own seeded generator, so
    the result does not depend on how the sample was batched."""
    fn = PERTURBATIONS[name]
    key = sum(map(ord, name))
    return [fn(im, np.random.default_rng([seed, key, start + i])) for i, im in enumerate(images)]
