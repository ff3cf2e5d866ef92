"""Model sources, ONNX export, precision variants, accuracy, and the on-disk cache."""
