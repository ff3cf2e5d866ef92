"""Accuracy of a precision variant: task accuracy where labels exist, else fidelity to fp32.

Fidelity is defined so that it can fail, with one kind per shape of output (``--fidelity``):

- ``centred-l2`` (classifiers, detection heads, dense maps): a network with random weights or
  unrelated inputs gives nearly the same output for every input, so top-1 agreement with fp32
  is 1.0 for any precision and measures nothing, and the plain relative error is dominated by
  that common part. We compare the input-dependent part of the outputs:

      fidelity = 1 - ||Y - Y32||_F / ||Y32 - mean(Y32)||_F     (clipped to [0, 1])

  where rows of Y are the flattened float outputs of one instance and mean(Y32) is the fp32
  output averaged over the evaluation inputs. fp32 scores 1; an error as large as the
  variation of fp32's outputs across inputs scores 0.
- ``sequence`` (per-position logits ``[T, C]``, e.g. a CTC text recognizer): the share of
  positions whose argmax over C equals fp32's, over every output of that shape.
- ``cosine`` (embeddings): the mean cosine similarity of each instance's flattened float
  outputs to fp32's (1 = same direction).

``auto`` picks ``sequence`` when the first float output is ``[T, C]`` per instance (T, C >= 2)
holding a softmax over C at every position, else ``centred-l2`` (a detection head
``[attributes, anchors]`` is not a sequence; an embedding cannot be told from logits by shape:
choose ``--fidelity cosine`` for one, ``--fidelity sequence`` for raw sequence logits).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

DESCRIPTIONS = {
    "centred-l2": "fidelity = 1 - ||Y - Y_fp32|| / ||Y_fp32 - mean(Y_fp32)|| over the evaluation inputs "
                  "(relative L2 error of the mean-centred outputs; 1.0 = identical to fp32, 0 = error as "
                  "large as the input-dependent signal)",
    "sequence": "fidelity = share of output positions whose argmax (last axis) equals fp32's, over the "
                "evaluation inputs (per-position agreement of sequence logits)",
    "cosine": "fidelity = mean cosine similarity of each instance's outputs to fp32's (1.0 = same direction)",
}
FIDELITY_DESCRIPTION = DESCRIPTIONS["centred-l2"]
TOP1_DESCRIPTION = "top-1 accuracy on the held-out labelled test set"

Outputs = list[np.ndarray]  # one float64 array [n, ...] per model output, in graph order


def run_outputs(model_path: str, feeds: dict[str, np.ndarray], batch: int = 32) -> Outputs:
    """Every output of the model over `feeds`, run `batch` instances at a time."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    n = len(next(iter(feeds.values())))
    parts: list[list[np.ndarray]] = []
    for i in range(0, n, max(1, batch)):
        outs = sess.run(None, {k: v[i : i + batch] for k, v in feeds.items()})
        # floats kept as float32 (a 640 x 640 map is 1.6 MB per instance); the figures are float64 sums
        parts.append([np.asarray(o, np.float32 if np.asarray(o).dtype.kind == "f" else np.float64) for o in outs])
    return [np.concatenate([p[j] for p in parts], axis=0) for j in range(len(parts[0]))]


def flat(outputs: Outputs) -> np.ndarray:
    """Float outputs flattened per instance and concatenated: ``[n, k]`` (all outputs if none is float)."""
    n = len(outputs[0])
    chosen = [o for o in outputs if o.dtype.kind == "f" and o.size] or outputs
    return np.concatenate([o.reshape(n, -1) for o in chosen], axis=1)


def auto_kind(reference: Outputs) -> str:
    """The fidelity kind `auto` picks from fp32's outputs: `sequence` when the first float output
    is ``[T, C]`` per instance (T, C >= 2) holding a distribution over C at each position (values
    in [0, 1] summing to 1, as a softmax gives), else `centred-l2`."""
    first = next((o for o in reference if o.dtype.kind == "f"), None)
    if first is None or first.ndim != 3 or first.shape[1] < 2 or first.shape[2] < 2:
        return "centred-l2"
    sums = first.sum(axis=-1, dtype=np.float64)
    softmax = bool(first.min() >= 0 and first.max() <= 1 and np.allclose(sums, 1.0, atol=1e-3))
    return "sequence" if softmax else "centred-l2"


def top1_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose argmax equals the label."""
    return float(np.mean(logits.argmax(axis=1) == labels))


def fidelity(outputs: np.ndarray, reference: np.ndarray) -> float:
    """centred-l2 fidelity of `outputs` to `reference` (fp32), both ``[n, k]``; see module docstring."""
    signal = np.linalg.norm(reference - reference.mean(axis=0, keepdims=True))
    error = np.linalg.norm(outputs - reference)
    if signal == 0.0:
        # fp32 outputs do not depend on the input at all: only an exact match is faithful.
        return 1.0 if error == 0.0 else 0.0
    return float(np.clip(1.0 - error / signal, 0.0, 1.0))


def sequence_agreement(outputs: Outputs, reference: Outputs) -> float:
    """Share of positions (over every ``[n, T, C]`` output) whose argmax equals fp32's."""
    pairs = [(o, r) for o, r in zip(outputs, reference) if r.ndim == 3]
    if not pairs:
        raise ValueError("sequence fidelity needs an output shaped [T, C] per instance")
    same = sum(int(np.sum(o.argmax(-1) == r.argmax(-1))) for o, r in pairs)
    return same / sum(r.shape[0] * r.shape[1] for _, r in pairs)


def cosine(outputs: np.ndarray, reference: np.ndarray) -> float:
    outputs, reference = outputs.astype(np.float64), reference.astype(np.float64)
    num = np.sum(outputs * reference, axis=1)
    den = np.linalg.norm(outputs, axis=1) * np.linalg.norm(reference, axis=1)
    sims = np.where(den > 0, num / np.maximum(den, 1e-300), (np.abs(outputs - reference).sum(1) == 0) * 1.0)
    return float(np.clip(np.mean(sims), 0.0, 1.0))


def fidelity_of(kind: str, outputs: Outputs, reference: Outputs) -> float:
    """Fidelity of a variant's outputs to fp32's, by kind (see the module docstring)."""
    if kind == "sequence":
        return sequence_agreement(outputs, reference)
    if kind == "cosine":
        return cosine(flat(outputs), flat(reference))
    return fidelity(flat(outputs), flat(reference))


def fidelity_details(outputs: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Companion figures recorded beside fidelity, so a reader can see why it is what it is."""
    centred_ref = reference - reference.mean(axis=0, keepdims=True)
    centred_out = outputs - reference.mean(axis=0, keepdims=True)
    raw = float(np.linalg.norm(outputs - reference)) / max(float(np.linalg.norm(reference)), 1e-30)
    return {
        "relative_l2_error_raw": float(raw),
        "max_abs_diff": float(np.max(np.abs(outputs - reference))) if outputs.size else 0.0,
        "top1_agreement_raw": float(np.mean(outputs.argmax(1) == reference.argmax(1))),
        "top1_agreement_centred": float(np.mean(centred_out.argmax(1) == centred_ref.argmax(1))),
        "distinct_fp32_top1_classes": int(len(np.unique(reference.argmax(1)))),
    }
