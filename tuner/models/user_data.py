"""A user's own calibration and evaluation inputs: ``--calibration-data FILE.npz|DIR``.

A DIR holds image files (.jpg, .jpeg, .png, .bmp, .webp) for a model with one image-shaped
input: each is resized to the input and normalised as tuner's shipped photographs are
(ImageNet mean and deviation; grey as (x - 0.5) / 0.5). A .npz file holds one array per
model input (named as the input), instances stacked along the first axis, in the interface
tuner's copy of the model has (batch first, fixed inputs left out); it is read with
``allow_pickle=False``: nothing is unpickled. Even-numbered instances calibrate int8,
odd-numbered ones measure fidelity, so the two never overlap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tuner.errors import TunerError
from tuner.models.spec import InputSpec

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def load_images(folder: Path, specs: tuple[InputSpec, ...]) -> dict[str, np.ndarray]:
    """The images of `folder`, resized and normalised for the model's one image-shaped input."""
    from PIL import Image

    from tuner.models.data import image_layout, normalise

    layouts = [image_layout(s) for s in specs]
    if len(specs) != 1 or layouts[0] is None:
        raise TunerError(f"Got the folder {folder} for --calibration-data, but images need a model with one "
                         f"image-shaped input ([3|1, H, W] or [H, W, 3|1], float); its inputs are "
                         f"{[(s.name, list(s.shape), s.dtype) for s in specs]}. Pass a .npz file instead.")
    spec, layout = specs[0], layouts[0]
    channels, h, w = spec.shape if layout == "chw" else (spec.shape[2], spec.shape[0], spec.shape[1])
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    out = []
    for f in files:
        try:
            with Image.open(f) as img:
                rgb = img.convert("RGB").resize((w, h), Image.Resampling.BILINEAR)
        except Exception as exc:
            raise TunerError(f"--calibration-data {folder}: {f.name} is not a readable image "
                             f"({type(exc).__name__}: {exc}). Remove it or replace it.") from None
        x = normalise(np.asarray(rgb, np.float32) / 255.0, channels)
        out.append(x if layout == "chw" else x.transpose(1, 2, 0))
    if len(out) < 2:
        raise TunerError(f"--calibration-data {folder} holds {len(out)} image(s) ({', '.join(IMAGE_SUFFIXES)}); "
                         "give at least 2 (one calibrates, one measures fidelity).")
    return {spec.name: np.stack(out).astype(spec.dtype)}


def load_user_data(path: Path, specs: tuple[InputSpec, ...]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(calibration, evaluation) feeds from `path`, checked against the model's inputs."""
    if path.is_dir():
        images = load_images(path, specs)
        return {k: v[0::2] for k, v in images.items()}, {k: v[1::2] for k, v in images.items()}
    if not path.is_file() or path.suffix != ".npz":
        raise TunerError(f"Got {str(path)!r} for --calibration-data. It must be a folder of images or an existing "
                         ".npz file (numpy.savez(path, NAME=array, ...), one array per model input).")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except Exception as exc:
        raise TunerError(f"{path} could not be read as a .npz of plain arrays ({type(exc).__name__}: {exc}). "
                         "Write it with numpy.savez; object arrays are refused (they need unpickling).") from None
    names = [s.name for s in specs]
    problems = [f"it has no array {n!r}" for n in names if n not in arrays]
    problems += [f"array {k!r} names no model input" for k in arrays if k not in names]
    counts = set()
    for spec in specs:
        a = arrays.get(spec.name)
        if a is None:
            continue
        if tuple(a.shape[1:]) != spec.shape:
            problems.append(f"array {spec.name!r} has shape {list(a.shape)}; it must be [N, {', '.join(map(str, spec.shape))}]")
        counts.add(len(a))
    if len(counts) > 1:
        problems.append(f"the arrays hold different numbers of instances {sorted(counts)}")
    if not problems and min(counts) < 2:
        problems.append("it holds fewer than 2 instances (one calibrates, one measures fidelity)")
    if problems:
        raise TunerError(f"--calibration-data {path}: " + "; ".join(problems) + f". The model's inputs are "
                         f"{[(s.name, [None, *s.shape], s.dtype) for s in specs]} (None = instances).")
    cast = {s.name: arrays[s.name].astype(s.dtype, copy=False) for s in specs}
    return {k: v[0::2] for k, v in cast.items()}, {k: v[1::2] for k, v in cast.items()}
