"""Inputs for calibration and accuracy: shipped data only (nothing is downloaded), each kind
saying what it is.

- digits-cnn: scikit-learn's digits (labelled).
- image-shaped inputs (``[3, H, W]``, ``[1, H, W]`` or channels-last ``[H, W, 3]``, float, H and
  W >= 16): the two photographs that ship with scikit-learn (``load_sample_images``), randomly
  cropped (random flips; resized up where the input is larger than the photos), ImageNet-normalised (grey: (x - 0.5) / 0.5).
- waveform-shaped inputs (one float axis of >= 256 samples): audio-like signals, a few random
  tones (80-4000 Hz at 16 kHz) plus noise, peak amplitude <= 0.5.
- integer inputs named like a mask (``attention_mask``): ones; like type or segment ids: zeros.
- anything else: seeded random inputs (standard normal floats, integers in [0, 10)).

A user's own data (``--calibration-data FILE.npz``) replaces all of these (tuner.models.user_data).
"""

from __future__ import annotations

import numpy as np

from tuner.models.spec import InputSpec

_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _photos() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images

    return list(load_sample_images().images)  # two uint8 [427, 640, 3] photographs


def image_layout(spec: InputSpec) -> str | None:
    """"chw", "hwc" or None: whether (and how) an input is shaped like an image."""
    s = spec.shape
    if not np.issubdtype(np.dtype(spec.dtype), np.floating) or len(s) != 3:
        return None
    if s[0] in (1, 3) and s[1] >= 16 and s[2] >= 16:
        return "chw"
    if s[2] in (1, 3) and s[0] >= 16 and s[1] >= 16:
        return "hwc"
    return None


def is_image_like(spec: InputSpec) -> bool:
    return image_layout(spec) is not None


def is_waveform_like(spec: InputSpec) -> bool:
    s = spec.shape
    return bool(np.issubdtype(np.dtype(spec.dtype), np.floating) and len(s) == 1 and s[0] >= 256)


def describe(spec: InputSpec) -> str:
    """What the synthetic data of `spec` is, in words (recorded with the model)."""
    layout = image_layout(spec)
    if layout:
        return (f"photographs (scikit-learn's two sample images) cropped and resized to {list(spec.shape)}, "
                "normalised")
    if is_waveform_like(spec):
        return f"audio-like signals (random tones plus noise, 16 kHz), {spec.shape[0]} samples"
    if np.issubdtype(np.dtype(spec.dtype), np.floating):
        return f"random: standard normal {spec.dtype}{list(spec.shape)}"
    if spec.dtype == "bool" or "mask" in spec.name.lower():
        return f"ones {spec.dtype}{list(spec.shape)} (a mask: every position on)"
    if "type" in spec.name.lower() or "segment" in spec.name.lower():
        return f"zeros {spec.dtype}{list(spec.shape)} (type/segment ids: the first)"
    return f"random: {spec.dtype}{list(spec.shape)} in [0, 10)"


def photo_crops(n: int, height: int, width: int, seed: int, channels: int = 3) -> np.ndarray:
    """`n` random crops (random horizontal flips), resized, as float32 ``[n, channels, height, width]``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = _photos()
    out = np.empty((n, channels, height, width), np.float32)
    for i in range(n):
        img = photos[rng.integers(len(photos))]
        if height <= img.shape[0] and width <= img.shape[1]:  # a crop of the photo, no resizing
            y, x = rng.integers(img.shape[0] - height + 1), rng.integers(img.shape[1] - width + 1)
            pixels = img[y : y + height, x : x + width].astype(np.float32) / 255.0
        else:  # the largest crop with the input's aspect ratio, resized up
            scale = min(img.shape[0] / height, img.shape[1] / width)
            h, w = max(1, int(height * scale)), max(1, int(width * scale))
            y, x = rng.integers(img.shape[0] - h + 1), rng.integers(img.shape[1] - w + 1)
            crop = Image.fromarray(img[y : y + h, x : x + w]).resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(crop, np.float32) / 255.0
        if rng.random() < 0.5:
            pixels = pixels[:, ::-1]
        out[i] = normalise(pixels, channels)
    return out


def normalise(pixels: np.ndarray, channels: int) -> np.ndarray:
    """RGB pixels ``[H, W, 3]`` in [0, 1] -> ``[channels, H, W]``: ImageNet-normalised colour,
    or grey as (x - 0.5) / 0.5."""
    if channels == 1:
        return ((pixels @ np.array([0.299, 0.587, 0.114], np.float32) - 0.5) / 0.5)[None]
    return ((pixels - _MEAN) / _STD).transpose(2, 0, 1)


def audio_like(n: int, samples: int, seed: int, dtype: str = "float32") -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000.0
    out = np.empty((n, samples), dtype)
    for i in range(n):
        tones = sum(rng.uniform(0.05, 0.2) * np.sin(2 * np.pi * rng.uniform(80, 4000) * t + rng.uniform(0, 6.3))
                    for _ in range(3))
        signal = tones + rng.normal(0, 0.02, samples)
        out[i] = 0.5 * signal / max(1e-9, float(np.abs(signal).max()))
    return out


def integer_input(name: str, dtype: str | np.dtype, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Values an integer (or boolean) input accepts: ones for a mask, zeros for type or segment
    ids, else small ids in [0, 10). Calibration, the bench and the served load all use it, so a
    model that indexes an embedding with an input gets valid indices everywhere."""
    lowered = name.lower()
    if np.dtype(dtype) == np.bool_ or "mask" in lowered:
        return np.ones(shape, dtype)
    if "type" in lowered or "segment" in lowered:
        return np.zeros(shape, dtype)
    return rng.integers(0, 10, shape).astype(dtype)


def _one(spec: InputSpec, n: int, seed: int, rng: np.random.Generator) -> np.ndarray:
    shape = (n, *spec.shape)
    layout = image_layout(spec)
    if layout == "chw":
        return photo_crops(n, spec.shape[1], spec.shape[2], seed, spec.shape[0]).astype(spec.dtype)
    if layout == "hwc":
        return photo_crops(n, spec.shape[0], spec.shape[1], seed, spec.shape[2]).transpose(0, 2, 3, 1).astype(spec.dtype)
    if is_waveform_like(spec):
        return audio_like(n, spec.shape[0], seed, spec.dtype)
    if np.issubdtype(np.dtype(spec.dtype), np.floating):
        return rng.standard_normal(shape).astype(spec.dtype)
    return integer_input(spec.name, spec.dtype, shape, rng)


def synthetic_inputs(specs: tuple[InputSpec, ...], n: int, seed: int) -> dict[str, np.ndarray]:
    """Inputs for models without shipped data: photos where image-shaped, audio-like where
    waveform-shaped, else random."""
    rng = np.random.default_rng(seed)
    return {spec.name: _one(spec, n, seed + 7919 * k, rng) for k, spec in enumerate(specs)}


def split_batches(feeds: dict[str, np.ndarray], batch: int) -> list[dict[str, np.ndarray]]:
    n = len(next(iter(feeds.values())))
    return [{k: v[i : i + batch] for k, v in feeds.items()} for i in range(0, n, batch)]
