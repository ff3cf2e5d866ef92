"""`LayerCost`: what one ONNX node costs for one instance, as `analyze_graph` describes it.

Conventions:
    * Sizes are int8 element counts (1 byte each), whatever the dtype of the ONNX graph: DPUs
      compute int8 only, so an fp32 graph is priced as its quantized deployment.
    * "Static" tensors (initializers, Constant outputs, shapes, and whatever is computed from
      them only) are folded by the compiler: nodes producing them are free, and when a static
      tensor feeds a weighted op it counts as weights. This also covers QDQ graphs, where weights
      sit behind DequantizeLinear (or QuantizeLinear -> DequantizeLinear).
    * macs: multiply-accumulates per instance for conv/gemm; one per window element for pools;
      one per output element for element-wise ops; 0 for free ops.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS: tuple[str, ...] = ("conv", "depthwise", "gemm", "pool", "eltwise", "other")


@dataclass(frozen=True)
class LayerCost:
    """Cost of one ONNX node for one instance (batch dimension 1).

    Attributes:
        name: node name (or "<op_type>_<index>" when the node is unnamed).
        op_type: ONNX op type.
        kind: "conv", "depthwise", "gemm", "pool", "eltwise" or "other".
        macs: multiply-accumulates (or element operations, see module docstring).
        weight_bytes: int8 weights (and biases) the op reads, 1 byte per element.
        input_bytes: int8 activation bytes read (non-static inputs).
        output_bytes: int8 activation bytes written.
        dpu_supported: False when the op runs on the host CPU.
        c_in / c_out: input / output channels (gemm: K / N).
        h_out / w_out: output height / width (gemm: 1 / rows M).
        kernel_h / kernel_w: kernel (or pooling window) size.
        groups: convolution groups.
        graph_input_bytes / graph_output_bytes: the part of input_bytes / output_bytes that
            are graph inputs / outputs (what crosses the host link every call).
        pad_excluded: an average pool with padding that divides by the valid cells only
            (ONNX count_include_pad=0, the default; TensorFlow's SAME average pool).
    """

    name: str
    op_type: str
    kind: str
    macs: int
    weight_bytes: int
    input_bytes: int
    output_bytes: int
    dpu_supported: bool
    c_in: int = 0
    c_out: int = 0
    h_out: int = 0
    w_out: int = 0
    kernel_h: int = 0
    kernel_w: int = 0
    groups: int = 1
    graph_input_bytes: int = 0
    graph_output_bytes: int = 0
    pad_excluded: bool = False
