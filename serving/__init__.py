"""serving: deploy the chosen configuration with Ray Serve, speaking the Open Inference Protocol.

- `serving.protocol`: parse and validate V2 (KServe) REST requests, format responses. Pure.
- `serving.app`: the Ray Serve application (`build_app(ServeArgs)`), batching with `@serve.batch`.
- `serving.serve_config`: generate, write and load the Ray Serve config YAML.
- `serving.run`: run `serve run CONFIG` in the foreground and print the endpoint once ready.

Only this package imports `ray.serve`; importing `serving` itself imports nothing heavy.
"""
