"""The answer side of the Open Inference Protocol (KServe V2 REST): which outputs a request asks
for, each as JSON data or binary data (`output_selection`), and the inference response
(`format_infer_response`).

Pure: no Ray, no ONNX Runtime. The bytes on the wire (a binary response's tensor bytes after the
JSON header): `serving.v2.wire`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np

from serving.v2.parse import check_parameters
from serving.v2.types import bad as _bad
from serving.v2.types import v2_datatype

#: Output parameters we understand; anything else is refused rather than silently ignored.
_OUTPUT_PARAMETERS = ("binary_data",)

__all__ = ["format_infer_response", "output_selection", "requested_outputs"]


def output_selection(body: dict[str, Any], output_names: list[str]) -> dict[str, bool]:
    """The outputs a decoded request asks for, each with whether to send it as binary data.

    Every output is sent when the request names none. An output is binary when its own
    ``parameters.binary_data`` says so, else when the request's
    ``parameters.binary_data_output`` does (as Triton decides it).

    Returns:
        Output name -> binary?, in the order the request names them.

    Raises:
        ProtocolError: `outputs` is not a list of ``{"name": ..., "parameters": ...}`` objects
            naming real outputs once each.
    """
    default = bool(body.get("parameters", {}).get("binary_data_output", False))
    wanted = body.get("outputs")
    if wanted is None:
        return {name: default for name in output_names}
    entries = wanted if isinstance(wanted, list) else []
    names = [o.get("name") for o in entries
             if isinstance(o, dict) and set(o) <= {"name", "parameters"}]
    if (not names or len(names) != len(wanted) or len(set(names)) != len(names)
            or not all(n in output_names for n in names)):
        raise _bad("outputs", wanted, f'It must be a list of {{"name": ...}} (plus optional '
                   f'"parameters") naming each of {output_names} at most once.',
                   "Fix the names, or leave 'outputs' out to get every output.")
    selection = {}
    for i, entry in enumerate(entries):
        where = f"outputs[{i}].parameters"
        flag = check_parameters(where, entry.get("parameters", {}), _OUTPUT_PARAMETERS).get(
            "binary_data", default)
        if not isinstance(flag, bool):
            raise _bad(f"{where}.binary_data", flag, "It must be true or false.",
                       "Send true for raw bytes after the JSON header, false for JSON data.")
        selection[entry["name"]] = flag
    return selection


def requested_outputs(body: dict[str, Any], output_names: list[str]) -> list[str]:
    """The output names a decoded request asks for (all of them when it names none).

    Raises:
        ProtocolError: as `output_selection`.
    """
    return list(output_selection(body, output_names))


def _output_entry(name: str, array: np.ndarray, binary: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "shape": list(array.shape),
                             "datatype": v2_datatype(array.dtype)}
    if binary:
        entry["parameters"] = {"binary_data_size": int(array.nbytes)}
    else:
        entry["data"] = np.asarray(array).ravel().tolist()
    return entry


def format_infer_response(
    model_name: str, outputs: dict[str, np.ndarray], request_id: str | None = None,
    binary_outputs: Collection[str] = (),
) -> dict[str, Any]:
    """A V2 inference response (or the JSON header of a binary one).

    Args:
        model_name: the served model's name.
        outputs: output name -> array (any supported numpy dtype).
        request_id: the request's `id`, echoed when given.
        binary_outputs: outputs described by ``parameters.binary_data_size`` instead of
            ``data``; their bytes go after the JSON header (see `serving.v2.wire`).

    Returns:
        The response object; each JSON output's data is flattened in row-major order.
    """
    response: dict[str, Any] = {"model_name": model_name}
    if request_id is not None:
        response["id"] = request_id
    response["outputs"] = [
        _output_entry(name, array, name in binary_outputs) for name, array in outputs.items()
    ]
    return response
