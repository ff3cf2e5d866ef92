"""Accuracy of a precision variant: task accuracy where labels exist, else fidelity to fp32.

Fidelity is defined so that it can fail. A network with random weights fed random or
unrelated inputs tends to give nearly the same output for every input (a ResNet-18 with
random weights predicts one class for every photo), so top-1 agreement with fp32 is 1.0 for
any precision and measures nothing, and the plain relative error is dominated by that common
part. We therefore compare the input-dependent part of the outputs:

    fidelity = 1 - ||Y - Y32||_F / ||Y32 - mean(Y32)||_F     (clipped to [0, 1])

where rows of Y are the flattened outputs of one instance and mean(Y32) is the fp32 output
averaged over the evaluation inputs. fp32 scores exactly 1; a variant whose error is as large
as the variation of fp32's outputs across inputs scores 0.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

FIDELITY_DESCRIPTION = (
    "fidelity = 1 - ||Y - Y_fp32|| / ||Y_fp32 - mean(Y_fp32)|| over the evaluation inputs "
    "(relative L2 error of the mean-centred outputs; 1.0 = identical to fp32, 0 = error as "
    "large as the input-dependent signal)"
)
TOP1_DESCRIPTION = "top-1 accuracy on the held-out labelled test set"


def run_outputs(model_path: str, feeds: dict[str, np.ndarray], batch: int = 32) -> np.ndarray:
    """All float outputs of the model, flattened per instance: float64 ``[n, k]``."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    n = len(next(iter(feeds.values())))
    rows = []
    for i in range(0, n, batch):
        outs = sess.run(None, {k: v[i : i + batch] for k, v in feeds.items()})
        flat = [np.asarray(o, np.float64).reshape(len(o), -1) for o in outs if np.asarray(o).dtype.kind == "f"]
        if not flat:
            flat = [np.asarray(o, np.float64).reshape(len(o), -1) for o in outs]
        rows.append(np.concatenate(flat, axis=1))
    return np.concatenate(rows, axis=0)


def top1_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose argmax equals the label."""
    return float(np.mean(logits.argmax(axis=1) == labels))


def fidelity(outputs: np.ndarray, reference: np.ndarray) -> float:
    """Fidelity of `outputs` to `reference` (fp32), both ``[n, k]``; see module docstring."""
    signal = np.linalg.norm(reference - reference.mean(axis=0, keepdims=True))
    error = np.linalg.norm(outputs - reference)
    if signal == 0.0:
        # fp32 outputs do not depend on the input at all: only an exact match is faithful.
        return 1.0 if error == 0.0 else 0.0
    return float(np.clip(1.0 - error / signal, 0.0, 1.0))


def fidelity_details(outputs: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Companion figures recorded beside fidelity, so a reader can see why it is what it is."""
    centred_ref = reference - reference.mean(axis=0, keepdims=True)
    centred_out = outputs - reference.mean(axis=0, keepdims=True)
    raw = float(np.linalg.norm(outputs - reference)) / max(float(np.linalg.norm(reference)), 1e-30)
    return {
        "relative_l2_error_raw": float(raw),
        "top1_agreement_raw": float(np.mean(outputs.argmax(1) == reference.argmax(1))),
        "top1_agreement_centred": float(np.mean(centred_out.argmax(1) == centred_ref.argmax(1))),
        "distinct_fp32_top1_classes": int(len(np.unique(reference.argmax(1)))),
    }
