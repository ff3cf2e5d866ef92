"""tuner.deploy.rayservice and rayservice_check: the KubeRay RayService manifest of a trial (the Serve
config as its pods run it, pods sized to the trial), our structural check of it, and
`tuner promote --format rayservice` on a study (no Ray started, no kubectl)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from ray.serve.schema import ServeDeploySchema

from serving.deploy import SERVE_FAST_PATH
from serving.ingress import ENV_KEYS
from serving.options import GpuServing, ServedModel, ServingOptions
from serving.serve_config import make_serve_config
from tuner.cli import main
from tuner.config import TrialConfig
from tuner.deploy.rayservice import (
    NODE_MEMORY_MIB,
    REPLICA_MEMORY_MIB,
    RayService,
    RayServiceOptions,
    rayservice_manifest,
    resource_name,
    write_rayservice,
)
from tuner.deploy.rayservice_check import check_rayservice, quantity
from tuner.errors import TunerError

from servers import one_trial_study

OPEN = RayServiceOptions(no_auth=True)
WORKER = ("spec", "rayClusterConfig", "workerGroupSpecs", 0)
CONTAINER = ("template", "spec", "containers", 0)


@pytest.fixture()
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "digits.int8.onnx"
    path.write_bytes(b"\0" * (3 * 2**20 + 1))  # 4 MiB rounded up: the replicas' memory counts it twice
    return path


def _service(model_file: Path, config: TrialConfig, gpu: GpuServing | None = None,
             options: RayServiceOptions = OPEN, **serving: Any) -> tuple[RayService, dict[str, Any]]:
    serve_config = make_serve_config(config, ServedModel("digits", str(model_file)), ServingOptions(gpu=gpu, **serving))
    return rayservice_manifest("Digits_CNN study", serve_config, config, options), serve_config


def _at(manifest: dict[str, Any], *path: Any) -> Any:
    for key in path:
        manifest = manifest[key]
    return manifest


def _worker(manifest: dict[str, Any]) -> dict[str, Any]:
    return _at(manifest, *WORKER, *CONTAINER)


def _pod_serve_config(manifest: dict[str, Any]) -> dict[str, Any]:
    text = manifest["spec"]["serveConfigV2"]
    assert isinstance(text, str)  # KubeRay takes the Serve config as a YAML string
    return yaml.safe_load(text)


# --- the manifest of a trial ---------------------------------------------------------------


def test_a_cpu_trials_manifest_runs_its_serve_config_in_pods_sized_to_replicas_x_threads(model_file: Path) -> None:
    service, local = _service(model_file, TrialConfig("cpu", 16, "int8", 3, 2))
    manifest = service.manifest
    assert (manifest["apiVersion"], manifest["kind"], manifest["metadata"]["name"]) == (
        "ray.io/v1", "RayService", "digits-cnn-study")
    pod = _pod_serve_config(manifest)
    ServeDeploySchema.model_validate(pod)
    assert pod["http_options"]["host"] == "0.0.0.0"
    (deployment,) = pod["applications"][0]["deployments"]
    assert deployment["user_config"]["model_path"] == "/models/digits.int8.onnx"
    # The proxy that takes the traffic is the one beside the replicas, as measured (and as
    # KubeRay's worker readiness probe requires); the head's stays out of the Service.
    assert pod["proxy_location"] == "EveryNode" and manifest["spec"]["excludeHeadPodFromServeSvc"] is True
    # Only what must differ in a pod differs from the config tuner measured with.
    expected = copy.deepcopy(local)
    expected["http_options"]["host"] = "0.0.0.0"
    expected["proxy_location"] = "EveryNode"
    expected["applications"][0]["deployments"][0]["user_config"]["model_path"] = "/models/digits.int8.onnx"
    assert pod == expected
    assert local["http_options"]["host"] == "127.0.0.1"  # the caller's config is left alone
    assert local["applications"][0]["deployments"][0]["user_config"]["model_path"] == str(model_file)

    memory = f"{3 * (REPLICA_MEMORY_MIB + 2 * 4) + NODE_MEMORY_MIB}Mi"
    resources = _worker(manifest)["resources"]
    assert resources["requests"] == resources["limits"] == {"cpu": "7", "memory": memory}  # + 1 for the proxy
    group = _at(manifest, *WORKER)
    assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (1, 1, 1)
    assert group["rayStartParams"] == {"num-cpus": "6"}  # Ray places replicas on 3 x 2 of them
    assert _worker(manifest)["ports"] == [{"name": "serve", "containerPort": 8000}]
    cluster = manifest["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == ray.__version__
    assert cluster["headGroupSpec"]["rayStartParams"] == {"num-cpus": "0"}  # no replica on the head
    head = _at(cluster["headGroupSpec"], *CONTAINER)
    assert {p["name"]: p["containerPort"] for p in head["ports"]} == {"gcs-server": 6379, "dashboard": 8265,
                                                                       "serve": 8000}
    for container in (head, _worker(manifest)):
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env == {k: v for k, v in SERVE_FAST_PATH.items() if k not in ENV_KEYS}
        assert not set(env) & set(ENV_KEYS)
        assert container["image"] == "tuner-serve:0.1.0"
    assert service.model_files == (str(model_file),)
    assert service.dockerfile.splitlines()[0] == f"FROM rayproject/ray:{ray.__version__}-py311-cpu"
    assert service.dockerfile.splitlines()[-1] == "COPY digits.int8.onnx /models/"
    check_rayservice(manifest)


@pytest.mark.parametrize(("replicas", "share", "gpus"), [(2, 1.0, 2), (3, 0.5, 2), (4, 0.25, 1)])
def test_a_gpu_trials_worker_holds_its_replicas_gpu_shares_as_whole_gpus(
        model_file: Path, replicas: int, share: float, gpus: int) -> None:
    config = TrialConfig("gpu", 8, "fp16", replicas, 1, device="t4")
    service, _ = _service(model_file, config, GpuServing(share, ("CUDAExecutionProvider",)))
    pod = _pod_serve_config(service.manifest)
    ServeDeploySchema.model_validate(pod)
    (deployment,) = pod["applications"][0]["deployments"]
    assert deployment["ray_actor_options"] == {"num_cpus": 1, "num_gpus": share}
    assert deployment["user_config"]["providers"] == ["CUDAExecutionProvider"]
    assert pod["http_options"]["host"] == "0.0.0.0"
    assert deployment["user_config"]["model_path"] == "/models/digits.int8.onnx"
    resources = _worker(service.manifest)["resources"]
    assert resources["requests"] == resources["limits"]
    assert resources["limits"]["cpu"] == str(replicas + 1)  # one host thread per gpu replica, one for the proxy
    assert _at(service.manifest, *WORKER)["rayStartParams"] == {"num-cpus": str(replicas)}
    assert resources["limits"]["nvidia.com/gpu"] == str(gpus)
    assert "nvidia.com/gpu" not in _at(service.manifest["spec"]["rayClusterConfig"]["headGroupSpec"],
                                       *CONTAINER)["resources"]["limits"]
    assert "-py311-gpu" in service.dockerfile.splitlines()[0] and "onnxruntime-gpu" in service.dockerfile
    check_rayservice(service.manifest)


def test_image_model_dir_and_namespace_are_the_users(model_file: Path) -> None:
    options = RayServiceOptions(image="registry.example/digits:7", model_dir="/opt/m/", namespace="serving",
                                no_auth=True)
    service, _ = _service(model_file, TrialConfig("cpu", 4, "int8", 1, 1), options=options)
    assert service.manifest["metadata"]["namespace"] == "serving"
    assert _worker(service.manifest)["image"] == "registry.example/digits:7"
    model_path = _pod_serve_config(service.manifest)["applications"][0]["deployments"][0]["user_config"]["model_path"]
    assert model_path == "/opt/m/digits.int8.onnx"
    assert service.dockerfile.endswith("COPY digits.int8.onnx /opt/m/")


def test_a_relative_model_dir_is_refused(model_file: Path) -> None:
    with pytest.raises(TunerError, match="Got 'models' for --model-dir"):
        _service(model_file, TrialConfig("cpu", 4, "int8", 1, 1), options=RayServiceOptions(model_dir="models",
                                                                                            no_auth=True))


def test_the_pods_public_proxy_needs_a_token_or_no_auth(model_file: Path) -> None:
    config = TrialConfig("cpu", 4, "int8", 1, 1)
    with pytest.raises(TunerError, match="http_options.host in the RayService's pods.*--auth-token-file"):
        _service(model_file, config, options=RayServiceOptions())
    service, _ = _service(model_file, config, options=RayServiceOptions(), auth_token_sha256="ab" * 32)
    user_config = _pod_serve_config(service.manifest)["applications"][0]["deployments"][0]["user_config"]
    assert user_config["auth_token_sha256"] == "ab" * 32


def test_an_autoscaled_deployment_gets_a_worker_for_its_max_replicas(model_file: Path) -> None:
    autoscaling = {"min_replicas": 1, "initial_replicas": 2, "max_replicas": 5, "target_ongoing_requests": 4}
    service, _ = _service(model_file, TrialConfig("cpu", 4, "int8", 2, 2), autoscaling_config=autoscaling)
    assert _at(service.manifest, *WORKER)["rayStartParams"] == {"num-cpus": "10"}  # 5 x 2 threads


@pytest.mark.parametrize(("text", "name"), [
    ("Digits_CNN study", "digits-cnn-study"), ("9lives", "tuner-9lives"), ("", "tuner"), ("--x--", "x"),
    ("a" * 60, "a" * 47), ("résnet.50", "r-snet-50")])
def test_study_names_become_dns_1035_labels_kuberay_accepts(text: str, name: str) -> None:
    assert resource_name(text) == name


@pytest.mark.parametrize(("value", "amount"), [
    (2, 2.0), ("2", 2.0), ("500m", 0.5), ("4Gi", 4 * 2**30), ("512Mi", 512 * 2**20), ("1e3", 1000.0), ("1.5", 1.5),
    ("2E", 2e18), ("1Ei", 2.0**60), ("1E3", 1000.0), ("+1k", 1000.0),
    (0.5, None), (True, None), ("4GB", None), ("", None), ("two", None), (None, None)])
def test_quantities_follow_kubernetes_grammar(value: Any, amount: float | None) -> None:
    got = quantity(value)
    assert got == amount if amount is None else math.isclose(got or 0, amount)


def test_the_written_file_says_how_to_build_and_apply_and_reads_back_as_the_manifest(
        model_file: Path, tmp_path: Path) -> None:
    service, _ = _service(model_file, TrialConfig("cpu", 4, "int8", 2, 1))
    path = write_rayservice(service, tmp_path / "k8s" / "rayservice.yaml", "tuner promote: study 's', trial #3")
    text = path.read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert header[0] == "# tuner promote: study 's', trial #3"
    for fragment in (f"cp {model_file} .", f"FROM rayproject/ray:{ray.__version__}-py311-cpu",
                     "COPY digits.int8.onnx /models/", "kubectl apply -f rayservice.yaml",
                     "docker build -f Dockerfile.rayservice -t tuner-serve:0.1.0 .", "svc/digits-cnn-study-serve-svc"):
        assert any(fragment in line for line in header), fragment
    assert "serveConfigV2: |" in text  # a literal block, as KubeRay's samples write it
    assert yaml.safe_load(text) == service.manifest


# --- the check refuses broken manifests, naming the field ----------------------------------


def _set(*path: Any, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(manifest: dict[str, Any]) -> None:
        _at(manifest, *path[:-1])[path[-1]] = value
    return change


def _drop(*path: Any) -> Callable[[dict[str, Any]], None]:
    def change(manifest: dict[str, Any]) -> None:
        del _at(manifest, *path[:-1])[path[-1]]
    return change


def _serve(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def edit(manifest: dict[str, Any]) -> None:
        config = yaml.safe_load(manifest["spec"]["serveConfigV2"])
        change(config)
        manifest["spec"]["serveConfigV2"] = yaml.safe_dump(config)
    return edit


LIMITS = (*WORKER, *CONTAINER, "resources", "limits")
REQUESTS = (*WORKER, *CONTAINER, "resources", "requests")
W = "spec.rayClusterConfig.workerGroupSpecs[0]"
WC = f"{W}.template.spec.containers[0]"


@pytest.mark.parametrize(("change", "message"), [
    (_drop("spec", "rayClusterConfig", "rayVersion"), "spec.rayClusterConfig.rayVersion: got nothing"),
    (_set("apiVersion", value="ray.io/v1alpha1"), "apiVersion: got 'ray.io/v1alpha1': it must be 'ray.io/v1'"),
    (_set("kind", value="RayCluster"), "kind: got 'RayCluster'"),
    (_set("metadata", "name", value="Digits_CNN"), "metadata.name: got 'Digits_CNN': KubeRay takes a DNS-1035 label"),
    (_set("metadata", "name", value="a" * 48), "metadata.name: got 'aaaa"),
    (_set("metadata", "name", value="9-digits"), "metadata.name: got '9-digits'"),
    (_set("metadata", "namespace", value="Prod_NS"), "metadata.namespace: got 'Prod_NS'"),
    (_set(*LIMITS, "cpu", value=0.5), f"{WC}.resources.limits.cpu: got 0.5: a Kubernetes quantity"),
    (_set(*REQUESTS, "memory", value="4GB"), f"{WC}.resources.requests.memory: got '4GB'"),
    (_set(*LIMITS, "nvidia.com/gpu", value="0.5"), f"{WC}.resources.limits.nvidia.com/gpu: got '0.5': Kubernetes "
                                                   "gives whole GPUs"),
    (_set(*REQUESTS, "cpu", value="8"), f"{WC}.resources.requests.cpu: got '8': a request may not exceed its limit"),
    (_drop(*LIMITS, "memory"), f"{WC}.resources.limits.memory: got nothing"),
    (_drop(*WORKER, *CONTAINER, "image"), f"{WC}.image: got nothing"),
    (_set(*WORKER, *CONTAINER, "name", value="Ray Worker"), f"{WC}.name: got 'Ray Worker'"),
    (_set("spec", "rayClusterConfig", "headGroupSpec", "template", "spec", "containers", 0, "ports", 0,
          "containerPort", value="6379"), "headGroupSpec.template.spec.containers[0].ports[0].containerPort: got '6379'"),
    (_set("spec", "rayClusterConfig", "headGroupSpec", "rayStartParams", value={"num-cpus": 0}),
     "spec.rayClusterConfig.headGroupSpec.rayStartParams: got {'num-cpus': 0}"),
    (_drop("spec", "rayClusterConfig", "headGroupSpec"), "spec.rayClusterConfig.headGroupSpec: got nothing"),
    (_set(*WORKER, "template", "spec", "containers", value=[]), f"{W}.template.spec.containers: got []"),
    (_drop(*WORKER, "groupName"), f"{W}.groupName: got nothing"),
    (_drop(*WORKER, "maxReplicas"), f"{W}.maxReplicas: got nothing"),
    (_set(*WORKER, "minReplicas", value=2), f"{W}.replicas: got 1: it must be within minReplicas (2)"),
    (_set(*WORKER, "replicas", value=-1), f"{W}.replicas: got -1: it must be an integer >= 0"),
    (_set("spec", "rayClusterConfig", "workerGroupSpecs", value={}), "spec.rayClusterConfig.workerGroupSpecs: got {}"),
    (_set("spec", "serveConfigV2", value="applications: [\n  - {name"), "spec.serveConfigV2: got 'applications"),
    (_set("spec", "serveConfigV2", value={"applications": []}), "spec.serveConfigV2: got {'applications': []}: it must "
                                                               "be the Serve config as a YAML string"),
    (_set("spec", "serveConfigV2", value="just text"), "spec.serveConfigV2: got 'just text': the Serve config is a "
                                                       "YAML mapping"),
    (_serve(lambda c: c["applications"][0]["deployments"][0].update(num_replicas="lots")),
     "spec.serveConfigV2.applications[0].deployments[0]: got {"),
    (_serve(lambda c: c["applications"][0]["deployments"][0].update(num_replicas="lots")),
     '`num_replicas` must be an int or "auto", but got: lots (Ray\'s ServeDeploySchema)'),
    (_serve(lambda c: c.update(proxy_location="Somewhere")), "spec.serveConfigV2.proxy_location: got 'Somewhere'"),
    (_serve(lambda c: c["applications"][0]["deployments"][0]["user_config"].update(model_path="models/d.onnx")),
     "spec.serveConfigV2.applications[0].deployments[0].user_config.model_path"),
])
def test_check_rayservice_refuses_a_broken_manifest_naming_the_field(
        model_file: Path, change: Callable[[dict[str, Any]], None], message: str) -> None:
    config = TrialConfig("gpu", 8, "fp16", 2, 1, device="t4")
    service, _ = _service(model_file, config, GpuServing(1.0, ("CUDAExecutionProvider",)))
    manifest = copy.deepcopy(service.manifest)
    check_rayservice(manifest)  # whole, it passes: the change alone is what the check refuses
    change(manifest)
    with pytest.raises(TunerError) as caught:
        check_rayservice(manifest)
    text = str(caught.value)
    assert message in text
    assert text.startswith("The RayService manifest would not hold in KubeRay")
    assert text.rstrip().endswith("regenerate it with tuner promote --format rayservice.")


def test_check_rayservice_reports_every_broken_field_at_once(model_file: Path) -> None:
    manifest = copy.deepcopy(_service(model_file, TrialConfig("cpu", 4, "int8", 1, 1))[0].manifest)
    del manifest["spec"]["rayClusterConfig"]["rayVersion"]
    manifest["metadata"]["name"] = "Bad"
    lines = str(pytest.raises(TunerError, check_rayservice, manifest).value).splitlines()
    assert [line.split(":")[0].strip() for line in lines[1:-1]] == ["metadata.name", "spec.rayClusterConfig.rayVersion"]


def test_check_rayservice_refuses_what_is_not_a_mapping() -> None:
    with pytest.raises(TunerError, match="Got 'apiVersion: ray.io/v1' for the RayService manifest"):
        check_rayservice("apiVersion: ray.io/v1")  # type: ignore[arg-type]


# --- tuner promote --format rayservice on a study (no Ray started) -------------------------

SPACE = """
platforms:
  cpu:
    precision: {type: categorical, choices: [fp32]}
    batch_size: {type: int, low: 1, high: 8, pow2: true}
    replicas: {type: int, low: 1, high: 2}
    threads_per_replica: {type: int, low: 1, high: 2}
"""


@pytest.fixture
def study(tmp_path: Path) -> str:
    """A study named 'Digits_CNN' with one served trial: cpu fp32 b4, 2 replicas x 2 threads."""
    return one_trial_study(tmp_path, "Digits_CNN", SPACE, TrialConfig("cpu", 4, "fp32", 2, 2), None)


def test_promote_writes_a_checked_rayservice_to_rayservice_yaml_by_default(
        study: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["promote", "--study", "Digits_CNN", "--storage", study, "--trial", "0", "--format", "rayservice",
                 "--no-auth", "--namespace", "ml"]) == 0
    assert "kubectl apply -f rayservice.yaml" in capsys.readouterr().out
    assert not (tmp_path / "serve_config.yaml").exists()  # the manifest is written instead, not beside it
    text = (tmp_path / "rayservice.yaml").read_text()
    assert text.startswith("# tuner promote: study 'Digits_CNN', trial #0")
    manifest = yaml.safe_load(text)
    check_rayservice(manifest)
    assert manifest["metadata"]["name"] == "digits-cnn" and manifest["metadata"]["namespace"] == "ml"
    assert manifest["metadata"]["annotations"] == {"tuner/study": "Digits_CNN", "tuner/trial": "0"}
    assert _at(manifest, *WORKER)["rayStartParams"] == {"num-cpus": "4"}  # 2 replicas x 2 threads
    assert _worker(manifest)["resources"]["limits"]["cpu"] == "5"
    pod = _pod_serve_config(manifest)
    assert pod["http_options"]["host"] == "0.0.0.0"
    assert pod["applications"][0]["deployments"][0]["user_config"]["model_path"] == "/models/m.onnx"


def test_promote_keeps_serve_config_yaml_as_the_default_of_the_serve_format(
        study: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["promote", "--study", "Digits_CNN", "--storage", study, "--trial", "0"]) == 0
    assert (tmp_path / "serve_config.yaml").is_file() and not (tmp_path / "rayservice.yaml").exists()


@pytest.mark.parametrize(("args", "fragment"), [
    (["--no-auth", "--deploy"], "Got --deploy with --format rayservice"),
    ([], "http_options.host in the RayService's pods"),
    (["--no-auth", "--model-dir", "models"], "Got 'models' for --model-dir"),
])
def test_promote_refuses_a_rayservice_it_cannot_write_and_writes_nothing(
        study: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], fragment: str) -> None:
    out = tmp_path / "rs.yaml"
    assert main(["promote", "--study", "Digits_CNN", "--storage", study, "--trial", "0", "--format", "rayservice",
                 "--out", str(out), *args]) == 2
    assert fragment in capsys.readouterr().err
    assert not out.exists()
