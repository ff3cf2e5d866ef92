"""Models: where they come from, their precision variants, their accuracy, and the cache.

- `builtin`, `digits`, `resnet`, `zoo/`: models defined in code (digits-cnn is trained on data that
  ships with scikit-learn); `onnx_file`: a user's ONNX file, checked; `export`: torch -> ONNX.
- `prepare`: --model -> `PreparedModel` (every variant on disk, with its measured accuracy);
  `variants`: fp16 and int8 builds; `accuracy`, `data`: how accuracy is measured and on what.
- `sessions`: the ONNX Runtime session options a CPU replica uses, measured and served alike.
- `spec`: the typed descriptions (`InputSpec`, `Variant`, `PreparedModel`); `cache`: the cache.

May import: torch, onnx, onnxruntime, numpy, scikit-learn and the vocabulary. Nothing that runs
trials or studies.
"""
