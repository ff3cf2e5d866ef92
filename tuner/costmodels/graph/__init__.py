"""ONNX graph analysis, the input of both cost models (FPGA DPU and GPU what-if).

- `layer_cost`: `LayerCost`, the typed cost of one node, and the conventions its figures follow.
- `tensors`: the graph with its inputs fixed to one instance, and its tensors' concrete shapes.
- `analyze`: `analyze_graph`, every node priced as a `LayerCost` (conv, gemm, pool, element-wise).

This file imports nothing.
"""
