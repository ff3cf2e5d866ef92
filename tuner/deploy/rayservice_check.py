"""`check_rayservice`: a RayService manifest's structure as KubeRay reads it, and its Serve config
as Ray reads it. Our own check (no kubectl, no cluster), written from KubeRay v1.7.0 (ray-project/kuberay
commit feeaf72, August 2026):

- ``ray-operator/config/crd/bases/ray.io_rayservices.yaml``, version v1 (served and stored): its
  ``required:`` lists (``spec.rayClusterConfig``, ``headGroupSpec.template``, ``containers`` with
  ``name``, ``workerGroupSpecs[*].groupName/minReplicas/maxReplicas/template``,
  ``ports[*].containerPort``) and types (``rayStartParams`` values are strings; resource quantities
  are integers or strings of Kubernetes' quantity grammar, so a YAML float is refused);
- ``ray-operator/controllers/ray/utils/validation.go``: a RayService name is a DNS-1035 label of at
  most 47 characters, minReplicas <= maxReplicas;
- what a manifest of tuner's relies on beyond the CRD: ``apiVersion: ray.io/v1``, ``rayVersion``,
  ``rayStartParams``, ``replicas`` within min/max, an image and cpu/memory limits on each group's Ray
  container (KubeRay tells Ray the pod's resources from them), requests within limits, whole GPUs
  (requests equal limits), as Kubernetes requires.

``spec.serveConfigV2`` must parse as YAML and pass Ray's own ``ServeDeploySchema`` and our
``user_config`` (`serving.args.ServeSettings`). The deprecated ``serviceUnhealthySecondThreshold``
fields (unused since KubeRay issue 1685) are neither written nor checked.
"""

from __future__ import annotations

import importlib.metadata
import re
from typing import Any

import yaml
from pydantic import ValidationError

from serving.args import IMPORT_PATH, ServeSettings
from serving.serve_config_check import serve_schema_errors
from tuner.errors import TunerError, field_error

API_VERSION, KIND = "ray.io/v1", "RayService"
MAX_NAME = 47  # KubeRay: MaxRayClusterNameLength (53) - 6
_DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_QUANTITY = re.compile(r"[+-]?(\d+(?:\.\d*)?|\.\d+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?\d+)?")
_SCALE = {"": 1.0, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
          **{f"{p}i": 1024.0 ** (i + 1) for i, p in enumerate("KMGTPE")}}

_MISSING = object()


def _at(node: Any, key: str) -> Any:
    return node.get(key, _MISSING) if isinstance(node, dict) else _MISSING


def _bad(problems: list[str], path: str, value: Any, rule: str) -> None:
    shown = "nothing" if value is _MISSING else repr(value)
    problems.append(f"  {path}: got {shown if len(shown) <= 80 else shown[:77] + '...'}: {rule}")


def _mapping(problems: list[str], path: str, value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    _bad(problems, path, value, "it must be a mapping.")
    return None


def quantity(value: Any) -> float | None:
    """A Kubernetes resource quantity's value (2, "500m" -> 0.5, "4Gi"); None when it is not one.
    The CRD takes an integer or a string: a YAML float such as 0.5 is refused (quote it: "500m")."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    if isinstance(value, int):
        return float(value)
    match = _QUANTITY.fullmatch(value)
    if match is None:
        return None
    suffix = match.group(2) or ""
    if suffix not in _SCALE:  # a decimal exponent, 1e3
        return float(value)
    return float(value[: len(value) - len(suffix)]) * _SCALE[suffix]


def _check_resources(problems: list[str], path: str, resources: Any) -> None:
    resources = _mapping(problems, path, resources)
    if resources is None:
        return
    values: dict[tuple[str, str], float] = {}
    for part in ("requests", "limits"):
        amounts = _at(resources, part)
        if amounts is _MISSING or _mapping(problems, f"{path}.{part}", amounts) is None:
            continue
        for key, raw in amounts.items():
            where, amount = f"{path}.{part}.{key}", quantity(raw)
            if amount is None:
                _bad(problems, where, raw, "a Kubernetes quantity is an integer or a string like '2', '500m', '4Gi', "
                                           "'512Mi' (a float is refused: quote it).")
            elif amount < 0:
                _bad(problems, where, raw, "a quantity must not be negative.")
            elif key == "nvidia.com/gpu" and amount != int(amount):
                _bad(problems, where, raw, "Kubernetes gives whole GPUs (Ray shares one between replicas in the pod).")
            else:
                values[(part, key)] = amount
    for key in ("cpu", "memory"):
        if key not in (_at(resources, "limits") if isinstance(_at(resources, "limits"), dict) else {}):
            _bad(problems, f"{path}.limits.{key}", _MISSING, "KubeRay tells Ray the pod's CPUs and memory from its "
                                                             "limits; without them Ray takes the whole node's.")
    for (part, key), amount in values.items():
        limit = values.get(("limits", key))
        if part == "requests" and limit is not None and (amount > limit or (key == "nvidia.com/gpu" and amount != limit)):
            _bad(problems, f"{path}.requests.{key}", resources["requests"][key],
                 f"a request may not exceed its limit ({resources['limits'][key]!r}); GPUs: requests equal limits.")


def _check_group(problems: list[str], path: str, group: dict[str, Any]) -> None:
    params = _at(group, "rayStartParams")
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        _bad(problems, f"{path}.rayStartParams", params, "it must be a mapping of `ray start` options to strings "
                                                         '(e.g. num-cpus: "0"; {} for none).')
    containers = _at(_at(_at(group, "template"), "spec"), "containers")
    where = f"{path}.template.spec.containers"
    if not isinstance(containers, list) or not containers:
        _bad(problems, where, containers, "the pod template needs a list of containers, the Ray container first.")
        return
    for i, container in enumerate(containers):
        container = _mapping(problems, f"{where}[{i}]", container)
        name = _at(container, "name")
        if container is not None and not (isinstance(name, str) and len(name) <= 63 and _DNS1123.fullmatch(name)):
            _bad(problems, f"{where}[{i}].name", name, "a container's name is a DNS-1123 label (e.g. ray-head).")
        for j, port in enumerate(_at(container, "ports") if isinstance(_at(container, "ports"), list) else []):
            number = _at(port, "containerPort")
            if isinstance(number, bool) or not isinstance(number, int) or not 0 < number < 65536:
                _bad(problems, f"{where}[{i}].ports[{j}].containerPort", number, "it must be a port, 1 to 65535.")
    first = containers[0] if isinstance(containers[0], dict) else {}
    if not (isinstance(_at(first, "image"), str) and first["image"]):
        _bad(problems, f"{where}[0].image", _at(first, "image"), "the Ray container needs an image (Ray, tuner, the model).")
    _check_resources(problems, f"{where}[0].resources", _at(first, "resources"))


def _check_workers(problems: list[str], path: str, group: dict[str, Any]) -> None:
    name = _at(group, "groupName")
    if not (isinstance(name, str) and name):
        _bad(problems, f"{path}.groupName", name, "each worker group needs a name.")
    counts: dict[str, int] = {}
    for key in ("replicas", "minReplicas", "maxReplicas"):
        value = _at(group, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            _bad(problems, f"{path}.{key}", value, "it must be an integer >= 0 (pods in the group).")
        else:
            counts[key] = value
    if len(counts) == 3 and not counts["minReplicas"] <= counts["replicas"] <= counts["maxReplicas"]:
        _bad(problems, f"{path}.replicas", counts["replicas"], f"it must be within minReplicas ({counts['minReplicas']}) "
                                                               f"and maxReplicas ({counts['maxReplicas']}).")
    _check_group(problems, path, group)


def _check_serve(problems: list[str], text: Any) -> None:
    path = "spec.serveConfigV2"
    if not isinstance(text, str):
        _bad(problems, path, text, "it must be the Serve config as a YAML string (serveConfigV2: |).")
        return
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        _bad(problems, path, text, f"it is not YAML ({str(exc).splitlines()[0]}).")
        return
    if not isinstance(config, dict):
        _bad(problems, path, config, "the Serve config is a YAML mapping with an 'applications' list.")
        return
    for loc, given, rule in serve_schema_errors(config):
        shown = given if len(given) <= 80 else given[:77] + "..."
        problems.append(f"  {path}.{loc}: got {shown}: {rule} (Ray's ServeDeploySchema)")
    for i, app in enumerate(config.get("applications") or []):
        if not isinstance(app, dict) or app.get("import_path") != IMPORT_PATH:
            continue
        for j, deployment in enumerate(app.get("deployments") or []):
            try:
                ServeSettings.model_validate((deployment or {}).get("user_config") or {})
            except ValidationError as exc:
                problems += [f"  {path}.applications[{i}].deployments[{j}].user_config.{'.'.join(map(str, e['loc']))}: "
                             f"{e['msg']}" for e in exc.errors()]  # no value echoed: it may be a token digest


def check_rayservice(manifest: dict[str, Any]) -> None:
    """Check a RayService manifest's structure as KubeRay v1.7.0's CRD and validation read it (the
    module docstring lists what), and its Serve config with Ray's own schema.

    Raises:
        TunerError: one line per wrong or missing field, each with its path and the rule.
    """
    if not isinstance(manifest, dict):
        raise field_error("the RayService manifest", manifest, "It must be a mapping.",
                          "Regenerate it with tuner promote --format rayservice.")
    problems: list[str] = []
    for key, want in (("apiVersion", API_VERSION), ("kind", KIND)):
        if _at(manifest, key) != want:
            _bad(problems, key, _at(manifest, key), f"it must be {want!r}.")
    metadata = _mapping(problems, "metadata", _at(manifest, "metadata")) or {}
    name = _at(metadata, "name")
    if not (isinstance(name, str) and len(name) <= MAX_NAME and _DNS1035.fullmatch(name)):
        _bad(problems, "metadata.name", name, f"KubeRay takes a DNS-1035 label of at most {MAX_NAME} characters: "
                                              "lowercase letters, digits and '-', a letter first, no '-' last.")
    namespace = _at(metadata, "namespace")
    if namespace is not _MISSING and not (isinstance(namespace, str) and len(namespace) <= 63
                                          and _DNS1123.fullmatch(namespace)):
        _bad(problems, "metadata.namespace", namespace, "a namespace is a DNS-1123 label of at most 63 characters.")
    spec = _mapping(problems, "spec", _at(manifest, "spec")) or {}
    _check_serve(problems, _at(spec, "serveConfigV2"))
    cluster = _mapping(problems, "spec.rayClusterConfig", _at(spec, "rayClusterConfig")) or {}
    version = _at(cluster, "rayVersion")
    if not (isinstance(version, str) and version):
        _bad(problems, "spec.rayClusterConfig.rayVersion", version, "it must be the Ray version of the image, "
                                                                     f"e.g. {importlib.metadata.version('ray')!r}.")
    head = _mapping(problems, "spec.rayClusterConfig.headGroupSpec", _at(cluster, "headGroupSpec"))
    if head is not None:
        _check_group(problems, "spec.rayClusterConfig.headGroupSpec", head)
    workers = _at(cluster, "workerGroupSpecs")
    if workers is not _MISSING and not isinstance(workers, list):
        _bad(problems, "spec.rayClusterConfig.workerGroupSpecs", workers, "it must be a list of worker groups.")
    for i, group in enumerate(workers if isinstance(workers, list) else []):
        path = f"spec.rayClusterConfig.workerGroupSpecs[{i}]"
        group = _mapping(problems, path, group)
        if group is not None:
            _check_workers(problems, path, group)
    if problems:
        raise TunerError("The RayService manifest would not hold in KubeRay (v1 CRD, KubeRay 1.7):\n" + "\n".join(problems)
                         + "\nFix these fields, or regenerate it with tuner promote --format rayservice.")
