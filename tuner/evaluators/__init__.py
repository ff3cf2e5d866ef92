"""Evaluators: one per platform, behind one small contract. None of them imports Ray.

- cpu: ONNX Runtime sessions, one per replica, timed with real clocks (`cpu.ReplicaBench`,
  driven window by window by `protocol.run_protocol`).
- fpga: the analytical DPU cost model (`fpga.evaluate_fpga`); its figures are estimates.
"""
