"""Precision variants derived from an fp32 ONNX model: fp16, and int8 by static QDQ quantization.

Recipe notes (measured on this project's CPU, see shared/reference/this-machine.md):
- int8 uses static quantization in QDQ format, per-channel weights, calibrated on real inputs;
  on ResNet-18 it runs about 2.7x faster than fp32 on one thread. Dynamic quantization of
  convolutions is slower than fp32 here, so it is not used.
- The last Gemm/MatMul stays in float so the logits keep their precision.
- fp16 keeps float32 inputs and outputs (Cast nodes at the edges), so clients and the serving
  app see one interface for every precision.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx

from tuner.errors import TunerError

RECIPE_VERSION = "qdq-perchannel-v2"  # v2: a model below opset 13 is converted to 13 first


def make_fp16(fp32_path: Path, out_path: Path) -> None:
    """Write the fp16 variant of `fp32_path` to `out_path` (float32 inputs/outputs kept)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(fp32_path))
    fp16 = convert_float_to_float16(model, keep_io_types=True)
    onnx.save(fp16, str(out_path))


def make_int8(fp32_path: Path, out_path: Path, calibration: list[dict[str, np.ndarray]]) -> None:
    """Write the static-QDQ int8 variant calibrated on `calibration` (one feed dict per batch)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if not calibration:
        raise TunerError("int8 calibration needs at least one input batch; none was given.")

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[dict[str, np.ndarray]] = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    model = onnx.load(str(fp32_path))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    if opset < 13:  # per-channel DequantizeLinear (its `axis`) needs opset 13
        from onnx import version_converter

        model = version_converter.convert_version(model, 13)
        fp32_path = out_path.with_suffix(".opset13.onnx")
        onnx.save(model, str(fp32_path))
    matmuls = [n.name for n in model.graph.node if n.op_type in ("Gemm", "MatMul")]
    exclude = matmuls[-1:]  # keep the logits layer in float
    quant_logger = logging.getLogger()
    level = quant_logger.level
    quant_logger.setLevel(logging.ERROR)  # quantize_static warns about optional pre-processing
    try:
        quantize_static(
            str(fp32_path),
            str(out_path),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_exclude=exclude,
        )
    finally:
        quant_logger.setLevel(level)
        out_path.with_suffix(".opset13.onnx").unlink(missing_ok=True)


def integer_kernel_share(int8_path: Path) -> float:
    """Share of Conv/Gemm/MatMul nodes that ONNX Runtime runs as integer kernels.

    The int8 speed-up depends on it (one recipe left 9 of 20 ResNet convolutions in fp32), so
    it is recorded with the variant.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(int8_path) + ".opt.onnx"
    ort.InferenceSession(str(int8_path), opts, providers=["CPUExecutionProvider"])
    optimized = onnx.load(opts.optimized_model_filepath)
    Path(opts.optimized_model_filepath).unlink(missing_ok=True)
    ops = [n.op_type for n in optimized.graph.node]
    integer = sum(op in ("QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QGemm") for op in ops)
    floating = sum(op in ("Conv", "FusedConv", "Gemm", "MatMul", "FusedMatMul") for op in ops)
    total = integer + floating
    return integer / total if total else 0.0
