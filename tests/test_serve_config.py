"""serving.serve_config: the generated Ray Serve config, checked with Ray's own schema."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.serve import Application
from ray.serve.schema import (
    DeploymentSchema,
    HTTPOptionsSchema,
    ServeApplicationSchema,
    ServeDeploySchema,
)

from serving.app import ModelDeployment, build_app
from serving.args import ServeArgs, ServeSettings
from serving.options import ServedModel, ServingOptions
from serving.serve_config import make_serve_config, write_serve_config
from serving.serve_config_check import load_serve_config
from tuner.config import TrialConfig
from tuner.errors import TunerError


@pytest.fixture()
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not read by the config checks")
    return path


def _config(model_file: Path, **overrides: Any) -> dict:
    """make_serve_config with one keyword per knob: the trial's, the model's, the options'."""
    config = TrialConfig("cpu", overrides.pop("batch_size", 16), overrides.pop("precision", "int8"),
                         overrides.pop("replicas", 2), overrides.pop("threads_per_replica", 1))
    model = ServedModel(overrides.pop("model_name", "digits"), overrides.pop("model_path", str(model_file)),
                        overrides.pop("input_shapes", {}))
    return make_serve_config(config, model, ServingOptions(**overrides))


def test_generated_config_validates_with_rays_own_schema(model_file: Path) -> None:
    schema = ServeDeploySchema.model_validate(_config(model_file))
    (app,) = schema.applications
    assert app.import_path == "serving.app:build_app" and app.route_prefix == "/"
    (deployment,) = app.deployments
    assert deployment.num_replicas == 2
    assert deployment.ray_actor_options.num_cpus == 1


def test_generated_config_uses_no_key_ray_would_silently_ignore(model_file: Path) -> None:
    # Ray's schemas accept unknown keys for forward compatibility; a typo would be dropped.
    config = _config(model_file)
    assert set(config) <= set(ServeDeploySchema.model_fields)
    app = config["applications"][0]
    assert set(app) <= set(ServeApplicationSchema.model_fields)
    assert set(app["deployments"][0]) <= set(DeploymentSchema.model_fields)
    assert set(config["http_options"]) <= set(HTTPOptionsSchema.model_fields)


@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_max_ongoing_requests_lets_a_batch_form_while_another_runs(
    model_file: Path, batch_size: int
) -> None:
    deployment = _config(model_file, batch_size=batch_size)["applications"][0]["deployments"][0]
    assert deployment["max_ongoing_requests"] >= 2 * batch_size


def test_binds_loopback_by_default_and_takes_host_and_port(model_file: Path) -> None:
    http = _config(model_file)["http_options"]
    assert (http["host"], http["port"]) == ("127.0.0.1", 8000)
    http = _config(model_file, host="0.0.0.0", port=9123)["http_options"]
    assert (http["host"], http["port"]) == ("0.0.0.0", 9123)


def _deployment(config: dict) -> DeploymentSchema:
    (app,) = ServeDeploySchema.model_validate(config).applications
    return app.deployments[0]


def test_limits_and_update_policy_defaults_as_ray_reads_them(model_file: Path) -> None:
    config = _config(model_file, batch_size=16, replicas=2)
    schema = ServeDeploySchema.model_validate(config)
    assert schema.http_options.request_timeout_s == 30.0
    deployment = _deployment(config)
    assert deployment.max_ongoing_requests == 32
    assert deployment.max_queued_requests == 4 * 32  # about eight batches, per replica
    assert deployment.max_surge_percent == 100  # replacements start beside the old replicas
    assert deployment.graceful_shutdown_timeout_s == 30.0  # in-flight requests may finish
    assert deployment.backpressure_config.status_code == 503
    assert deployment.backpressure_config.retry_after_s == 1.0
    settings = ServeSettings.model_validate(config["applications"][0]["deployments"][0]["user_config"])
    assert settings.max_body_bytes is None and settings.body_timeout_s == 30.0


def test_limits_and_update_policy_can_be_set(model_file: Path) -> None:
    config = _config(model_file, max_ongoing_requests=1, max_queued_requests=1,
                     request_timeout_s=5, graceful_shutdown_timeout_s=12, max_surge_percent=0,
                     max_body_bytes=1000, retry_after_s=3)
    deployment = _deployment(config)
    assert (deployment.max_ongoing_requests, deployment.max_queued_requests) == (1, 1)
    assert deployment.max_surge_percent == 0 and deployment.graceful_shutdown_timeout_s == 12
    assert deployment.backpressure_config.retry_after_s == 3
    assert config["http_options"]["request_timeout_s"] == 5
    settings = ServeSettings.model_validate(config["applications"][0]["deployments"][0]["user_config"])
    assert settings.max_body_bytes == 1000 and settings.body_timeout_s == 5


def test_queue_bound_has_a_floor_for_small_batches(model_file: Path) -> None:
    # batch 1: 2 ongoing, 8 queued by the rule alone; a 0.2 s hiccup at 40 req/s overflowed it.
    assert _deployment(_config(model_file, batch_size=1, replicas=1)).max_queued_requests == 64
    assert _deployment(_config(model_file, batch_size=1, replicas=1, max_queued_requests=3)).max_queued_requests == 3


def test_queue_bound_is_per_replica_and_grows_with_the_batch(model_file: Path) -> None:
    # On Serve's fast path every replica takes HTTP itself and holds its own queue.
    one = _deployment(_config(model_file, replicas=1)).max_queued_requests
    three = _deployment(_config(model_file, replicas=3)).max_queued_requests
    assert three == one > 0
    assert _deployment(_config(model_file, batch_size=64)).max_queued_requests == 4 * 128


def test_args_name_the_app_and_user_config_holds_what_replicas_change_in_place(model_file: Path) -> None:
    config = _config(model_file, input_shapes={"x": [1, 8, 8]}, batch_wait_timeout_s=0.01)
    app = config["applications"][0]
    assert ServeArgs.model_validate(app["args"]) == ServeArgs(model_name="digits")
    settings = ServeSettings.model_validate(app["deployments"][0]["user_config"])
    assert settings == ServeSettings(model_path=str(model_file), precision="int8", batch_size=16,
                                     threads_per_replica=1, batch_wait_timeout_s=0.01, input_shapes={"x": [1, 8, 8]})


def test_deployment_name_and_import_path_resolve_to_the_real_application(model_file: Path) -> None:
    app_config = _config(model_file)["applications"][0]
    assert app_config["deployments"][0]["name"] == ModelDeployment.name == "ModelServer"
    # Ray validates the args dict into the builder's annotated pydantic class; a string
    # annotation (from __future__ import annotations) would silently skip that.
    assert inspect.signature(build_app).parameters["args"].annotation is ServeArgs
    app = build_app(ServeArgs.model_validate(app_config["args"]))
    assert isinstance(app, Application)


def test_only_cpu_configurations_are_served(model_file: Path) -> None:
    with pytest.raises(TunerError, match="Got 'fpga' for platform"):
        make_serve_config(TrialConfig("fpga", 8, "int8", 1, 1, "zcu104"), ServedModel("m", str(model_file)))


def test_a_replica_refuses_a_missing_model_or_invalid_settings(tmp_path: Path) -> None:
    from serving.replica import ModelServer

    with pytest.raises(TunerError, match="gone.onnx.*does not exist"):
        ModelServer(ServeArgs(model_name="m"), ServeSettings(model_path=str(tmp_path / "gone.onnx"), precision="fp32",
                                                             batch_size=1, threads_per_replica=1))
    with pytest.raises(TunerError, match=r"user_config\.batch_size"):
        ModelServer(ServeArgs(model_name="m")).reconfigure({"model_path": "/m.onnx", "precision": "fp32",
                                                            "batch_size": 0, "threads_per_replica": 1})


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"batch_size": 0}, "user_config.batch_size"),
        ({"threads_per_replica": 0}, "user_config.threads_per_replica"),
        ({"precision": "fp8"}, "fp8"),
        ({"model_path": "model.onnx"}, "absolute path"),
        ({"model_name": ""}, "args.model_name"),
        ({"replicas": 0}, "replicas"),
        ({"port": 70000}, "port"),
        ({"max_surge_percent": 101}, "max_surge_percent"),
        ({"max_surge_percent": 50.0}, "max_surge_percent"),
        ({"max_queued_requests": 0}, "max_queued_requests"),
        ({"max_ongoing_requests": -1}, "max_ongoing_requests"),
        ({"request_timeout_s": 0}, "request_timeout_s"),
        ({"request_timeout_s": float("inf")}, "request_timeout_s"),
        ({"graceful_shutdown_timeout_s": -1.0}, "graceful_shutdown_timeout_s"),
        ({"retry_after_s": "1"}, "retry_after_s"),
        ({"max_body_bytes": 0}, "user_config.max_body_bytes"),
    ],
)
def test_bad_arguments_raise_tuner_error_naming_the_field(
    model_file: Path, overrides: dict, fragment: str
) -> None:
    with pytest.raises(TunerError, match=fragment):
        _config(model_file, **overrides)


def test_args_and_user_config_reject_unknown_keys(model_file: Path) -> None:
    app = _config(model_file)["applications"][0]
    with pytest.raises(ValueError, match="batchsize"):
        ServeArgs.model_validate(app["args"] | {"batchsize": 4})
    with pytest.raises(ValueError, match="batchsize"):
        ServeSettings.model_validate(app["deployments"][0]["user_config"] | {"batchsize": 4})


def test_written_config_round_trips_with_header_comment(model_file: Path, tmp_path: Path) -> None:
    config = _config(model_file)
    path = write_serve_config(config, tmp_path / "out" / "serve.yaml",
                              comment="study digits, trial 17\ncpu int8 b16 2x1t")
    text = path.read_text()
    assert text.startswith("# study digits, trial 17\n# cpu int8 b16 2x1t\n")
    assert yaml.safe_load(text) == config
    assert load_serve_config(path) == config
    assert [p.name for p in path.parent.iterdir()] == ["serve.yaml"]  # no temp file left


def test_load_rejects_a_config_pointing_at_a_missing_model(
    model_file: Path, tmp_path: Path
) -> None:
    path = write_serve_config(_config(model_file), tmp_path / "serve.yaml")
    model_file.unlink()
    with pytest.raises(TunerError) as info:
        load_serve_config(path)
    message = str(info.value)
    assert str(model_file) in message and str(path) in message
    assert "model_path" in message and "Re-run" in message


def test_load_rejects_missing_file_bad_yaml_and_invalid_schema(tmp_path: Path) -> None:
    with pytest.raises(TunerError, match="does not exist"):
        load_serve_config(tmp_path / "nope.yaml")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("applications: [\n")
    with pytest.raises(TunerError, match="not valid YAML"):
        load_serve_config(bad_yaml)
    not_serve = tmp_path / "not_serve.yaml"
    not_serve.write_text("applications:\n- name: a\n")
    with pytest.raises(TunerError, match=r"(?s)not a valid Ray Serve.*import_path: got nothing"):
        load_serve_config(not_serve)


def test_load_rejects_invalid_application_args_and_user_config(model_file: Path, tmp_path: Path) -> None:
    config = _config(model_file)
    config["applications"][0]["deployments"][0]["user_config"]["batch_size"] = -3
    path = write_serve_config(config, tmp_path / "serve.yaml")
    with pytest.raises(TunerError, match=r"applications\[0\]\.deployments\[0\]\.user_config\.batch_size.*-3"):
        load_serve_config(path)
    config = _config(model_file)
    config["applications"][0]["args"]["model"] = "x"
    path = write_serve_config(config, tmp_path / "serve.yaml")
    with pytest.raises(TunerError, match=r"applications\[0\]\.args\.model"):
        load_serve_config(path)


def test_serving_clusters_start_rays_workers_at_nice_0_unless_the_user_chose() -> None:
    from serving.deploy import serving_env

    env = serving_env({"PATH": "/bin"})
    assert env["RAY_worker_niceness"] == "0" and env["PATH"] == "/bin"
    assert serving_env({"RAY_worker_niceness": "10"})["RAY_worker_niceness"] == "10"


def test_serving_clusters_run_serves_fast_path_unless_the_user_chose() -> None:
    from serving.deploy import SERVE_FAST_PATH, serving_env

    env = serving_env({})
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1" and env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert set(SERVE_FAST_PATH) <= set(env)
    assert serving_env({"RAY_SERVE_ENABLE_HA_PROXY": "0"})["RAY_SERVE_ENABLE_HA_PROXY"] == "0"


def test_access_log_is_off_unless_asked(model_file: Path) -> None:
    assert _deployment(_config(model_file)).logging_config.enable_access_log is False
    assert _deployment(_config(model_file, access_log=True)).logging_config.enable_access_log is True


def test_tuning_and_serving_clusters_export_rays_metrics_alike_unless_the_user_chose() -> None:
    from serving.deploy import METRICS_REPORT_INTERVAL_MS, serving_env

    env = serving_env({})  # what RayCluster (tuning) and local_cluster (serving) both start Ray with
    assert env["RAY_metrics_report_interval_ms"] == str(METRICS_REPORT_INTERVAL_MS)
    assert env["RAY_SERVE_REQUEST_LATENCY_BUCKETS_MS"].startswith("0.25,0.5,")
    assert serving_env({"RAY_metrics_report_interval_ms": "10000"})["RAY_metrics_report_interval_ms"] == "10000"
