"""Inputs for calibration and accuracy: shipped data only (nothing is downloaded).

- digits-cnn: scikit-learn's digits (labelled).
- image-shaped inputs ``[3, H, W]``: crops of the two photographs that ship with
  scikit-learn (``load_sample_images``), ImageNet-normalised: real pixels, no labels.
- anything else: seeded random inputs (standard normal floats, small non-negative integers).
"""

from __future__ import annotations

import numpy as np

from tuner.models.spec import InputSpec

_MEAN = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
_STD = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]


def _photos() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images

    return list(load_sample_images().images)  # two uint8 [427, 640, 3] photographs


def is_image_like(spec: InputSpec) -> bool:
    shape = spec.shape
    return (
        spec.dtype == "float32"
        and len(shape) == 3
        and shape[0] == 3
        and 16 <= shape[1] <= 427
        and 16 <= shape[2] <= 640
    )


def photo_crops(n: int, height: int, width: int, seed: int) -> np.ndarray:
    """`n` random crops (random horizontal flips) as float32 ``[n, 3, height, width]``."""
    rng = np.random.default_rng(seed)
    photos = _photos()
    out = np.empty((n, 3, height, width), np.float32)
    for i in range(n):
        img = photos[rng.integers(len(photos))]
        y = rng.integers(img.shape[0] - height + 1)
        x = rng.integers(img.shape[1] - width + 1)
        crop = img[y : y + height, x : x + width].astype(np.float32) / 255.0
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out[i] = (crop.transpose(2, 0, 1) - _MEAN) / _STD
    return out


def synthetic_inputs(specs: tuple[InputSpec, ...], n: int, seed: int) -> dict[str, np.ndarray]:
    """Inputs for models without shipped data: photo crops where image-shaped, else random."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for k, spec in enumerate(specs):
        shape = (n, *spec.shape)
        if is_image_like(spec):
            feeds[spec.name] = photo_crops(n, spec.shape[1], spec.shape[2], seed + 7919 * k)
        elif np.issubdtype(np.dtype(spec.dtype), np.floating):
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif spec.dtype == "bool":
            feeds[spec.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[spec.name] = rng.integers(0, 10, shape).astype(spec.dtype)
    return feeds


def split_batches(feeds: dict[str, np.ndarray], batch: int) -> list[dict[str, np.ndarray]]:
    n = len(next(iter(feeds.values())))
    return [{k: v[i : i + batch] for k, v in feeds.items()} for i in range(0, n, batch)]
