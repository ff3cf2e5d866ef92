"""serving: deploy the chosen configuration with Ray Serve, speaking the Open Inference Protocol.

- `serving.v2.types`: the V2 vocabulary: datatypes, tensor metadata, `ProtocolError`. Pure.
- `serving.v2.protocol`: parse and validate V2 (KServe) REST requests, format responses. Pure.
- `serving.v2.wire`: bodies on the wire: content types, size limit, JSON or binary tensor data
  (both directions, for the server and for clients). Pure.
- `serving.model`: a replica's typed args (`ServeArgs`), ONNX Runtime session and metadata.
- `serving.app`: the Ray Serve application (`build_app(ServeArgs)`), batching with `@serve.batch`.
- `serving.metrics`: the application's Prometheus metrics (`ray.serve.metrics`).
- `serving.loadgen`: load generator and verification client (offline / server modes); no Ray.
- `serving.serve_config`: generate, write and load the Ray Serve config YAML.
- `serving.run`: run `serve run CONFIG` in the foreground and print the endpoint once ready.

Only this package imports `ray.serve`; importing `serving` itself imports nothing heavy.
"""
