"""What one replica serves: its ONNX Runtime session, its tensors' metadata, and running a batch
of requests through it.

No Ray import: tests build sessions and metadata here without a cluster.
"""

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from serving.args import ServeSettings
from serving.v2.types import InputMeta, TensorMeta, v2_datatype
from tuner.errors import TunerError, field_error
from tuner.models.sessions import session_options

#: ONNX Runtime type -> numpy dtype of the tensors we serve.
ORT_TYPES: dict[str, np.dtype] = {
    f"tensor({ort_name})": np.dtype(np_name)
    for ort_name, np_name in [
        ("float", "float32"), ("float16", "float16"), ("double", "float64"), ("bool", "bool"),
        ("int8", "int8"), ("int16", "int16"), ("int32", "int32"), ("int64", "int64"),
        ("uint8", "uint8"), ("uint16", "uint16"), ("uint32", "uint32"), ("uint64", "uint64"),
    ]
}


def require_model_file(model_path: str) -> Path:
    """The model file as a Path, or a TunerError that says how to get it back."""
    path = Path(model_path)
    if not path.is_file():
        raise field_error(
            "model_path", model_path, "The ONNX model file does not exist on this node.",
            "Re-run the tuner to export the model again, or point user_config.model_path in the Serve "
            "config at the .onnx file.",
        )
    return path


def load_session(settings: ServeSettings) -> ort.InferenceSession:
    """An ONNX Runtime session on `settings.providers` with `threads_per_replica` intra-op threads.

    Raises:
        TunerError: the file is missing, or the session did not get the first provider (ONNX
            Runtime falls back to the CPU silently when e.g. CUDA cannot load: a GPU deployment
            must not serve from the CPU unnoticed).
    """
    options = session_options(settings.threads_per_replica)  # the options the trial measured with
    wanted = settings.providers[0]
    available = ort.get_available_providers()
    if wanted not in available:
        raise TunerError(f"Got providers {settings.providers} in the Serve config, but ONNX Runtime "
                         f"{ort.__version__} on this node has {available}. Install onnxruntime-gpu on the GPU "
                         "nodes (pip install 'tuner[gpu]'), or promote a trial this cluster can run.")
    session = ort.InferenceSession(str(require_model_file(settings.model_path)), options,
                                   providers=list(settings.providers))
    if session.get_providers()[0] != wanted:
        raise TunerError(f"The ONNX Runtime session got providers {session.get_providers()}, not {wanted} "
                         "first (ONNX Runtime's log names the library it could not load). Check CUDA and cuDNN "
                         "on this node.")
    return session


def _client_dtype(ort_type: str, what: str) -> np.dtype:
    """The dtype clients see: float16 tensors are exchanged as float32."""
    if ort_type not in ORT_TYPES:
        raise TunerError(f"Got type {ort_type} for {what}. Served types: {list(ORT_TYPES)}.")
    dtype = ORT_TYPES[ort_type]
    return np.dtype(np.float32) if dtype == np.float16 else dtype


def describe_model(
    session: ort.InferenceSession, settings: ServeSettings
) -> tuple[list[InputMeta], list[TensorMeta]]:
    """Client-facing input and output metadata, with dynamic per-instance dims resolved.

    Raises:
        TunerError: an input keeps a dynamic dim that `settings.input_shapes` does not fix, an
            `input_shapes` entry names no input or contradicts the model, or dim 0 is fixed.
    """
    names = [i.name for i in session.get_inputs()]
    unknown = sorted(set(settings.input_shapes) - set(names))
    if unknown:
        raise field_error("user_config.input_shapes", unknown, f"The model's inputs are {names}.",
                          "Remove or rename these entries.")
    inputs = []
    for node in session.get_inputs():
        dims = list(node.shape)
        # A fixed dim 0 only works as a batch of one: requests are concatenated along it.
        if not dims or (isinstance(dims[0], int) and (dims[0], settings.batch_size) != (1, 1)):
            raise field_error(f"the first dimension of input {node.name!r}", dims,
                              "tuner batches along dimension 0, so it must be dynamic.",
                              "Export the model with a dynamic batch axis (dynamic_shapes).")
        given = settings.input_shapes.get(node.name)
        per_instance = [d if isinstance(d, int) else -1 for d in dims[1:]]
        if given is not None:
            if len(given) != len(per_instance) or any(
                g < 1 or (p != -1 and g != p) for g, p in zip(given, per_instance)
            ):
                raise field_error(f"user_config.input_shapes[{node.name!r}]", given,
                                  f"The model's per-instance shape is {dims[1:]} (no batch dim).",
                                  "Give one positive size per dimension, matching fixed ones.")
            per_instance = list(given)
        if -1 in per_instance:
            raise field_error(f"the shape of input {node.name!r}", dims,
                              "Dimensions after the batch must be fixed to validate requests.",
                              f"Set user_config.input_shapes: {{{node.name}: [...]}} in the config.")
        dtype = _client_dtype(node.type, f"input {node.name!r}")
        inputs.append(InputMeta(node.name, v2_datatype(dtype), [-1, *per_instance]))
    outputs = [
        TensorMeta(o.name, v2_datatype(_client_dtype(o.type, f"output {o.name!r}")),
                   [-1] + [d if isinstance(d, int) else -1 for d in o.shape[1:]])
        for o in session.get_outputs()
    ]
    return inputs, outputs


def count_instances(request: dict[str, np.ndarray]) -> int:
    """How many instances a request carries: its first tensor's first dimension."""
    return int(next(iter(request.values())).shape[0])


def run_batch(session: ort.InferenceSession, requests: list[dict[str, np.ndarray]], dtypes: dict[str, np.dtype],
              output_names: list[str], batch_size: int,
              timings: list[tuple[int, float]] | None = None) -> list[dict[str, np.ndarray]]:
    """Concatenate the requests' instances, run them in chunks of `batch_size`, split back.

    Args:
        session: the replica's ONNX Runtime session.
        requests: one tensor dict per request (input name -> array, first dimension the instances).
        dtypes: input name -> the numpy dtype the session takes.
        output_names: the outputs to return, in the session's order.
        batch_size: most instances per ONNX Runtime call.
        timings: if given, gets (instances, seconds) of every ONNX Runtime call appended.
    """
    counts = [count_instances(r) for r in requests]
    merged = {name: np.concatenate([r[name] for r in requests]).astype(dtype, copy=False)
              for name, dtype in dtypes.items()}
    pieces: dict[str, list[np.ndarray]] = {n: [] for n in output_names}
    total = sum(counts)
    for start in range(0, total, batch_size):
        chunk = {n: a[start : start + batch_size] for n, a in merged.items()}
        began = time.perf_counter()
        outs = session.run(output_names, chunk)
        if timings is not None:
            timings.append((min(batch_size, total - start), time.perf_counter() - began))
        for n, out in zip(output_names, outs):
            if out.ndim == 0 or out.shape[0] != min(batch_size, total - start):
                raise RuntimeError(f"Output {n!r} has shape {out.shape}: not one row per instance.")
            pieces[n].append(out.astype(np.float32) if out.dtype == np.float16 else out)
    full = {n: np.concatenate(p) for n, p in pieces.items()}
    bounds = np.cumsum(counts)[:-1]
    split = {n: np.split(a, bounds) for n, a in full.items()}
    return [{n: split[n][i] for n in output_names} for i in range(len(requests))]
