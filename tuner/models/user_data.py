"""A user's own calibration and evaluation inputs: ``--calibration-data FILE.npz``.

The file holds one array per model input (named as the input), instances stacked along the
first axis, in the interface tuner's copy of the model has (batch first, fixed inputs left
out). It is read with ``allow_pickle=False``: nothing is unpickled. Even-numbered instances
calibrate int8, odd-numbered ones measure fidelity, so the two never overlap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tuner.errors import TunerError
from tuner.models.spec import InputSpec


def load_user_data(path: Path, specs: tuple[InputSpec, ...]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(calibration, evaluation) feeds from `path`, checked against the model's inputs."""
    if not path.is_file() or path.suffix != ".npz":
        raise TunerError(f"Got {str(path)!r} for --calibration-data. It must be an existing .npz file "
                         "(numpy.savez(path, NAME=array, ...), one array per model input).")
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
