"""The Ray Serve application: one ONNX model behind the Open Inference Protocol (V2 REST).

Ray Serve builds it from the Serve config with ``import_path: serving.app:build_app`` and the
config's ``args``, which Ray validates into `ServeArgs` from `build_app`'s type hint (for that
reason this module does not use ``from __future__ import annotations``: Ray needs the real
class in the signature, not a string).

A replica, its routes, batching, errors and authentication: `serving.replica.ModelServer`.
"""

from ray import serve
from ray.serve import Application, Deployment

from serving.args import DEPLOYMENT_NAME, ServeArgs
from serving.replica import ModelServer

__all__ = ["ModelDeployment", "build_app"]


#: The Serve deployment; its name (`serving.args.DEPLOYMENT_NAME`) is the one the Serve config refers to.
ModelDeployment: Deployment = serve.deployment(name=DEPLOYMENT_NAME)(ModelServer)


def build_app(args: ServeArgs) -> Application:
    """The typed application builder Ray Serve calls with the config's ``args``.

    Defaults for replica options are derived from `args`; the Serve config's ``deployments``
    entry overrides them.

    The deployment's options and its user_config (`ServeSettings`: the model file, batch limits,
    threads) come from the Serve config's ``deployments`` entry; `serving.serve_config` writes
    them, and `serving.serve_config_check` checks that the model file exists.
    """
    return ModelDeployment.bind(args)
