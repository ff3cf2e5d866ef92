"""serving: the chosen configuration as a Ray Serve application speaking the Open Inference
Protocol (KServe V2 REST), and the tools to run, deploy and drive it.

- `v2/`: the protocol itself (types, request parsing, bodies on the wire). Pure.
- `args`: the application's typed args in the Serve config, and the limits derived from them.
- `model`: a replica's ONNX Runtime session (the options the trial measured) and tensor metadata.
- `app`: the Ray Serve application (`build_app(ServeArgs)`) and its deployment.
- `replica`: one replica (`ModelServer`): the V2 routes, batching with `serving.batcher`, errors.
- `replica_http`: a replica's request body reading and V2 error answers.
- `batcher`: a replica's dynamic batching (concurrent requests joined into one model call).
- `auth`: optional bearer-token authentication (token files, digests, the non-loopback rule). Pure.
- `metrics`: the application's Prometheus metrics (`ray.serve.metrics`).
- `options`: what a Serve config serves and how it is exposed (`ServedModel`, `ServingOptions`).
- `serve_config`: generate (from a TrialConfig) and write the Serve config YAML.
- `serve_config_check`: load a Serve config and check it (Ray's schema, our args, the model file).
- `deploy`: tuner's local serving cluster and deploys through Serve's REST API.
- `run`: `serve run CONFIG` in the foreground (`tuner serve`).
- `loadgen`: the load generator and verification client (offline / server modes); no Ray.

May import: Ray and Ray Serve (only here and in tuner/runner/), and from tuner only its
vocabulary (`tuner.config`, `tuner.errors`) and `tuner.models`. tuner's deploy/ and cli/
import this package, never the other way round. Importing `serving` itself imports nothing heavy.
"""
