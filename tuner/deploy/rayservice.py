"""The chosen trial as a KubeRay RayService manifest (``tuner promote --format rayservice``).

``spec.serveConfigV2`` is the Serve config `serving.serve_config.make_serve_config` wrote for the
trial, with what differs in a pod: the HTTP proxy binds 0.0.0.0 (the Kubernetes Service reaches it
on the pod's address), ``user_config.model_path`` names the file inside the image
(``--model-dir``/NAME), and ``proxy_location`` is EveryNode, with the head left out of the Service
(``excludeHeadPodFromServeSvc``): the proxy that takes the traffic runs beside the replicas, as
tuner measured them (proxy and replicas on one machine). HeadOnly would put it on another pod, and
KubeRay 1.7's readiness probe of a RayService worker requires a proxy on the worker (its issue
4994: with HeadOnly every worker stays NotReady). ``spec.rayClusterConfig`` holds the trial's layout:

- one worker pod holds every replica, as the trial was measured (on one node; an autoscaled
  deployment: its max_replicas). Ray gets the replicas' CPUs (``num-cpus``: the sum of
  ``num_replicas x ray_actor_options.num_cpus``, replicas x threads for a cpu trial, one host
  thread per replica for a gpu one) and their GPU shares rounded up to whole ``nvidia.com/gpu``;
  the pod gets `PROXY_CPUS` more for the proxy and its HAProxy (what ``serving.stack_cpus``,
  default 1, leaves them in every served trial), which no replica can then take. Requests equal
  limits (Guaranteed QoS, whole cores: with the kubelet's static CPU manager the replicas get
  cores of their own, as tuner pinned them). A trial records no host memory of its own (only a
  gpu trial's device memory), so memory is `REPLICA_MEMORY_MIB` per replica plus twice the model
  file (a session holds its weights twice while loading, `tuner.runner.memory_fit`), plus
  `NODE_MEMORY_MIB` for Ray's own processes and the proxy.
- the head runs Ray's GCS, dashboard, the Serve controller and an idle proxy (Serve starts one on
  the controller's node; no traffic reaches it): `HEAD_CPUS` cores and `HEAD_MEMORY`, KubeRay's
  sample head, and ``num-cpus: "0"`` so Ray places no replica there.
- every container carries `serving.deploy.SERVE_FAST_PATH` (the Serve mode tuner measured with)
  without the HAProxy ports and files tuner picks per local cluster (`serving.ingress.ENV_KEYS`).

Every manifest is checked before it is returned (`tuner.deploy.rayservice_check`: KubeRay's CRD
structure, Ray's own Serve schema). The deprecated ``serviceUnhealthySecondThreshold``-style fields
are not written (unused since KubeRay issue 1685).
"""

from __future__ import annotations

import copy
import importlib.metadata
import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

import tuner
from serving.args import IMPORT_PATH
from serving.auth import check_exposure
from serving.deploy import SERVE_FAST_PATH
from serving.ingress import ENV_KEYS
from tuner.config import TrialConfig
from tuner.deploy.rayservice_check import API_VERSION, KIND, MAX_NAME, check_rayservice
from tuner.errors import field_error
from tuner.models.cache import write_atomic

#: The head: GCS, dashboard, Serve controller (KubeRay's sample head size).
HEAD_CPUS, HEAD_MEMORY = 2, "4Gi"
#: Cores of the worker pod left to Serve's proxy and HAProxy beside the replicas (serving.stack_cpus).
PROXY_CPUS = 1
#: Memory per replica (a Ray worker with Serve and ONNX Runtime; plus twice the model file) and
#: per worker pod (raylet, dashboard agent, log monitor): defaults, as trials record no host memory.
REPLICA_MEMORY_MIB, NODE_MEMORY_MIB = 1024, 1024
GROUP = "replicas"


@dataclass(frozen=True)
class RayServiceOptions:
    """What the manifest needs beyond the Serve config.

    Attributes:
        image: the image every pod runs (Ray, tuner and the model file); None: `default_image()`.
        model_dir: the folder inside the image that holds the model file.
        namespace: metadata.namespace; None: kubectl's current namespace.
        no_auth: the user's ``--no-auth``: the pod's proxy binds 0.0.0.0, so without a token it is refused.
    """

    image: str | None = None
    model_dir: str = "/models"
    namespace: str | None = None
    no_auth: bool = False


@dataclass(frozen=True)
class RayService:
    """A manifest (a dict: the Kubernetes edge), how to build its image, and the local model files it needs."""

    manifest: dict[str, Any]
    dockerfile: str
    model_files: tuple[str, ...]


def default_image() -> str:
    return f"tuner-serve:{tuner.__version__}"


def resource_name(text: str) -> str:
    """`text` as a RayService name: a DNS-1035 label (lowercase letters, digits, '-'; a letter first)."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    name = name if name[:1].isalpha() else f"tuner-{name}".rstrip("-")
    return name[:MAX_NAME].rstrip("-")


def dockerfile(model_files: tuple[str, ...], model_dir: str, gpu: bool) -> str:
    """The image's Dockerfile, built from a tuner checkout with the model files copied beside it."""
    ray = importlib.metadata.version("ray")
    py = f"py{sys.version_info.major}{sys.version_info.minor}"
    lines = [f"FROM rayproject/ray:{ray}-{py}-{'gpu' if gpu else 'cpu'}",
             "COPY --chown=1000:100 pyproject.toml README.md /tmp/tuner/",
             "COPY --chown=1000:100 tuner /tmp/tuner/tuner",
             "COPY --chown=1000:100 serving /tmp/tuner/serving",
             "COPY --chown=1000:100 search_spaces /tmp/tuner/search_spaces"]
    if gpu:
        lines += [f'RUN pip install --no-cache-dir "/tmp/tuner[gpu]" "ray[serve]=={ray}" && pip uninstall -y onnxruntime '
                  '&& pip install --no-cache-dir --force-reinstall --no-deps "onnxruntime-gpu>=1.20"']
    else:
        lines += ["RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu "
                  f'/tmp/tuner "ray[serve]=={ray}"']
    lines += [f"COPY {' '.join(os.path.basename(f) for f in model_files)} {model_dir.rstrip('/')}/"]
    return "\n".join(lines)


def _pod_serve_config(serve_config: Mapping[str, Any], model_dir: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The Serve config as the pods run it (proxy on 0.0.0.0, model paths in the image) and the local files."""
    pod = copy.deepcopy(dict(serve_config))
    pod["http_options"] = {**pod.get("http_options", {}), "host": "0.0.0.0"}
    pod["proxy_location"] = "EveryNode"  # a proxy beside the replicas (the module docstring says why)
    files: list[str] = []
    for app in pod.get("applications", []):
        for deployment in app.get("deployments", []) if app.get("import_path") == IMPORT_PATH else []:
            for key in ("model_path", "shadow_model_path"):  # the served file, and the fp32 one a shadow compares with
                local = deployment["user_config"].get(key)
                if local:
                    files.append(local)
                    deployment["user_config"][key] = str(PurePosixPath(model_dir) / os.path.basename(local))
    return pod, tuple(dict.fromkeys(files))


def _replicas(deployment: Mapping[str, Any]) -> int:
    """Replicas the worker pod must hold: the fixed count, or an autoscaled deployment's max_replicas."""
    fixed = deployment.get("num_replicas")
    return fixed if isinstance(fixed, int) else int((deployment.get("autoscaling_config") or {}).get("max_replicas", 1))


def _container(name: str, image: str, cpus: int, memory: str, gpus: int, ports: dict[str, int]) -> dict[str, Any]:
    amounts: dict[str, Any] = {"cpu": str(cpus), "memory": memory, **({"nvidia.com/gpu": str(gpus)} if gpus else {})}
    env = [{"name": k, "value": v} for k, v in SERVE_FAST_PATH.items() if k not in ENV_KEYS]
    return {"name": name, "image": image, "env": env, "resources": {"requests": dict(amounts), "limits": amounts},
            **({"ports": [{"name": n, "containerPort": p} for n, p in ports.items()]} if ports else {})}


def rayservice_manifest(name: str, serve_config: Mapping[str, Any], config: TrialConfig,
                        options: RayServiceOptions | None = None, annotations: Mapping[str, str] | None = None
                        ) -> RayService:
    """The RayService that serves `config` with `serve_config` (from `make_serve_config`) on Kubernetes.

    Args:
        name: what to name it (e.g. the study's name); made a DNS-1035 label.
        serve_config: the trial's Serve config; its model files must exist (their sizes set the memory).
        config: the trial's configuration (a gpu trial gets Ray's gpu image).
        options: image, model folder, namespace, --no-auth.
        annotations: metadata.annotations (e.g. the study and trial it came from).

    Raises:
        TunerError: the pod's proxy (0.0.0.0) would serve without a token and without `no_auth`,
            or the result fails `check_rayservice`.
    """
    options = options or RayServiceOptions()
    if not PurePosixPath(options.model_dir).is_absolute():
        raise field_error("--model-dir", options.model_dir, "It must be an absolute path inside the image "
                          "(replicas run in other working directories).", "Pass e.g. /models.")
    pod, files = _pod_serve_config(serve_config, options.model_dir)
    deployments = [d for app in pod.get("applications", []) for d in app.get("deployments", [])]
    check_exposure("0.0.0.0", all(d.get("user_config", {}).get("auth_token_sha256") for d in deployments),
                   options.no_auth, host_field="http_options.host in the RayService's pods",
                   fix="Pass --auth-token-file FILE (every replica then requires that bearer token)")
    counts = [_replicas(d) for d in deployments]
    replicas = sum(counts)
    cpus = math.ceil(sum(n * d["ray_actor_options"].get("num_cpus", 1) for n, d in zip(counts, deployments)))
    gpus = math.ceil(sum(n * d["ray_actor_options"].get("num_gpus", 0) for n, d in zip(counts, deployments)) - 1e-9)
    model_mib = sum(math.ceil(os.path.getsize(f) / 2**20) for f in files if os.path.isfile(f))
    memory = f"{replicas * (REPLICA_MEMORY_MIB + 2 * model_mib) + NODE_MEMORY_MIB}Mi"
    image = options.image or default_image()
    port = int(pod.get("http_options", {}).get("port", 8000))
    metadata: dict[str, Any] = {"name": resource_name(name), "labels": {"app.kubernetes.io/managed-by": "tuner"}}
    if options.namespace is not None:
        metadata["namespace"] = options.namespace
    if annotations:
        metadata["annotations"] = dict(annotations)
    head = {"rayStartParams": {"num-cpus": "0"}, "template": {"spec": {"containers": [_container(
        "ray-head", image, HEAD_CPUS, HEAD_MEMORY, 0, {"gcs-server": 6379, "dashboard": 8265, "serve": port})]}}}
    worker = {"groupName": GROUP, "replicas": 1, "minReplicas": 1, "maxReplicas": 1,
              "rayStartParams": {"num-cpus": str(cpus)}, "template": {"spec": {"containers": [_container(
                  "ray-worker", image, cpus + PROXY_CPUS, memory, gpus, {"serve": port})]}}}
    manifest = {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": {
        "serveConfigV2": yaml.safe_dump(pod, sort_keys=False), "excludeHeadPodFromServeSvc": True,
        "rayClusterConfig": {"rayVersion": importlib.metadata.version("ray"), "headGroupSpec": head,
                             "workerGroupSpecs": [worker]}}}
    check_rayservice(manifest)
    return RayService(manifest, dockerfile(files, options.model_dir, config.platform == "gpu" or gpus > 0), files)


class _Dumper(yaml.SafeDumper):
    """The safe dumper, writing multi-line strings (serveConfigV2) as literal blocks."""


_Dumper.add_representer(str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))


def write_rayservice(service: RayService, path: Path, comment: str = "") -> Path:
    """Write the manifest as YAML, atomically, under a header that says how to build its image and apply it.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    name, namespace = service.manifest["metadata"]["name"], service.manifest["metadata"].get("namespace")
    port = (yaml.safe_load(service.manifest["spec"]["serveConfigV2"]).get("http_options") or {}).get("port", 8000)
    ns = f" -n {namespace}" if namespace else ""
    image = service.manifest["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    header = [*comment.splitlines(), "KubeRay RayService generated by tuner (Ray Serve config in spec.serveConfigV2).",
              f"1. Build the image {image}: in a tuner checkout, copy the model file(s) beside it:",
              *(f"     cp {f} ." for f in service.model_files),
              "   save these lines as Dockerfile.rayservice, run docker build -f Dockerfile.rayservice "
              f"-t {image} . and push it where the cluster pulls from (or pass --image):",
              *(f"     {line}" for line in service.dockerfile.splitlines()),
              f"2. kubectl apply -f {path.name}   (with the KubeRay operator installed)",
              f"3. kubectl{ns} port-forward svc/{name}-serve-svc {port}   then: curl 127.0.0.1:{port}/v2/health/ready"]
    text = "\n".join(f"# {line}".rstrip() for line in header) + "\n"
    text += yaml.dump(service.manifest, Dumper=_Dumper, sort_keys=False)
    write_atomic(path, text.encode("utf-8"))
    return path
