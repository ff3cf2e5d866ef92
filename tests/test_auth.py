"""Bearer-token authentication of the V2 endpoint (`serving.auth`): the token file's rules, the
digest in the Serve config, the non-loopback rule of `tuner promote` and `tuner serve`, the
replica's 401s, and tuner's own client sending the token.

The tests before "A real server" need no Ray; the last ones run the real application with
`serve_foreground` on one Serve config that requires a token.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from pydantic import ValidationError

from serving.args import ServeArgs, ServeSettings
from serving.auth import (
    BearerToken,
    check_config_exposure,
    endpoint_token,
    is_loopback,
    read_token_file,
    token_sha256,
    unauthorized_reason,
)
from serving.options import ServedModel, ServingOptions
from serving.request import request_spec
from serving.serve_config import make_serve_config, write_serve_config
from serving.serve_config_check import load_serve_config
from tuner.cli import main
from tuner.config import TrialConfig
from tuner.errors import TunerError
from tuner.models.spec import InputSpec

from helpers import free_port
from servers import Server, client, matmul_model, start_server

TOKEN = "tok-" + "a1B2c3D4e5F6g7H8i9J0"  # what a token file holds (24 characters)
DIGEST = token_sha256(TOKEN)
INPUTS = (InputSpec("x", (4,), "float32"),)


def _token_file(tmp_path: Path, text: str = TOKEN + "\n", mode: int = 0o600) -> Path:
    path = tmp_path / "token.txt"
    path.write_text(text)
    path.chmod(mode)
    return path


def _settings(path: Path, **kw: object) -> ServeSettings:
    return ServeSettings(model_path=str(path), precision="fp32", batch_size=2, threads_per_replica=1, **kw)


# --- The digest in the Serve config -----------------------------------------------------------

def test_settings_keep_the_token_digest_in_lowercase(tmp_path: Path) -> None:
    assert _settings(tmp_path / "m.onnx", auth_token_sha256=DIGEST.upper()).auth_token_sha256 == DIGEST
    assert _settings(tmp_path / "m.onnx").auth_token_sha256 is None


@pytest.mark.parametrize("value", [TOKEN, DIGEST[:63], DIGEST + "0", "g" * 64, 12345])
def test_settings_refuse_anything_but_a_sha256_hex_digest(tmp_path: Path, value: object) -> None:
    with pytest.raises(ValidationError, match="SHA-256 hex digest"):
        _settings(tmp_path / "m.onnx", auth_token_sha256=value)


def test_a_token_pasted_as_the_digest_is_refused_without_being_echoed(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx")
    with pytest.raises(TunerError, match="auth_token_sha256") as made:
        make_serve_config(TrialConfig("cpu", 2, "fp32", 1, 1), ServedModel("m", str(model)),
                          ServingOptions(auth_token_sha256=TOKEN))
    assert TOKEN not in str(made.value)
    config = make_serve_config(TrialConfig("cpu", 2, "fp32", 1, 1), ServedModel("m", str(model)),
                               ServingOptions(auth_token_sha256=DIGEST))
    config["applications"][0]["deployments"][0]["user_config"]["auth_token_sha256"] = TOKEN
    path = write_serve_config(config, tmp_path / "serve_config.yaml")
    with pytest.raises(TunerError, match="auth_token_sha256") as loaded:
        load_serve_config(path)
    assert TOKEN not in str(loaded.value)


def test_the_serve_config_holds_the_digest_never_the_token(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx")
    config = make_serve_config(TrialConfig("cpu", 2, "fp32", 1, 1), ServedModel("m", str(model)),
                               ServingOptions(auth_token_sha256=read_token_file(_token_file(tmp_path)).sha256))
    text = write_serve_config(config, tmp_path / "serve_config.yaml").read_text()
    assert yaml.safe_load(text)["applications"][0]["deployments"][0]["user_config"]["auth_token_sha256"] == DIGEST
    assert TOKEN not in text


# --- The token file ---------------------------------------------------------------------------

def test_the_token_is_the_file_content_without_surrounding_whitespace(tmp_path: Path) -> None:
    token = read_token_file(_token_file(tmp_path, f"\n  {TOKEN}  \n"))
    assert token.value == TOKEN and token.authorization == f"Bearer {TOKEN}"
    assert TOKEN not in repr(token) and TOKEN not in str(token)


@pytest.mark.parametrize(("text", "mode", "rule"), [
    ("short-token\n", 0o600, "at least 16"),
    (TOKEN[:8] + " " + TOKEN[8:], 0o600, "whitespace inside"),
    (TOKEN, 0o644, "Others can read"),
    (TOKEN, 0o640, "Others can read"),
    (TOKEN, 0o602, "Others can read"),
])
def test_a_bad_token_file_is_refused_with_the_rule_and_the_fix(tmp_path: Path, text: str, mode: int,
                                                               rule: str) -> None:
    path = _token_file(tmp_path, text, mode)
    with pytest.raises(TunerError, match=rule) as error:
        read_token_file(path)
    message = str(error.value)
    assert str(path) in message and "--auth-token-file" in message
    assert "chmod 600" in message
    assert text.strip() not in message


def test_a_missing_token_file_is_refused_with_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(TunerError, match="does not exist.*secrets.token_urlsafe"):
        read_token_file(tmp_path / "absent.txt")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_token_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TunerError, match="cannot be read"):
        read_token_file(_token_file(tmp_path, mode=0o000))


def test_a_token_file_and_no_auth_together_are_refused_before_the_file_is_read(tmp_path: Path) -> None:
    with pytest.raises(TunerError, match="--auth-token-file with --no-auth.*Pass only one"):
        endpoint_token(tmp_path / "absent.txt", no_auth=True)
    assert endpoint_token(None, no_auth=True) is None
    assert endpoint_token(_token_file(tmp_path), no_auth=False) == BearerToken(TOKEN)


# --- The non-loopback rule --------------------------------------------------------------------

@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.4.5.6", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("10.1.2.3", False), ("", False), ("model.example.com", False),
])
def test_only_loopback_addresses_count_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.fixture
def empty_study(tmp_path: Path) -> str:
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    optuna.create_study(study_name="s", storage=storage)
    return storage


def test_promote_refuses_a_public_host_without_a_token_or_no_auth(
        empty_study: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "serve_config.yaml"
    base = ["promote", "--study", "s", "--storage", empty_study, "--out", str(out), "--host", "0.0.0.0"]
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "Got '0.0.0.0' for --host" in err and "--auth-token-file FILE" in err and "--no-auth" in err
    assert not out.exists()
    # --no-auth (or a token) passes the rule: this empty study then fails for another reason
    assert main([*base, "--no-auth"]) == 2
    assert "--host" not in capsys.readouterr().err
    assert main([*base, "--auth-token-file", str(_token_file(tmp_path))]) == 2
    assert "--host" not in capsys.readouterr().err
    assert main([*base[:-2], "--host", "127.0.0.1"]) == 2  # loopback needs nothing
    assert "--host" not in capsys.readouterr().err


def test_promote_refuses_a_token_file_with_no_auth(empty_study: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["promote", "--study", "s", "--storage", empty_study, "--out", str(tmp_path / "c.yaml"),
                 "--auth-token-file", str(_token_file(tmp_path)), "--no-auth"]) == 2
    assert "--auth-token-file with --no-auth" in capsys.readouterr().err


def test_promote_refuses_a_world_readable_token_file(empty_study: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = _token_file(tmp_path, mode=0o644)
    assert main(["promote", "--study", "s", "--storage", empty_study, "--out", str(tmp_path / "c.yaml"),
                 "--auth-token-file", str(path)]) == 2
    assert f"chmod 600 {path}" in capsys.readouterr().err


def _config_file(tmp_path: Path, host: str, digest: str | None) -> Path:
    model = tmp_path / "m.onnx"
    matmul_model(model, ["N", 4])
    config = make_serve_config(TrialConfig("cpu", 2, "fp32", 1, 1), ServedModel("m", str(model)),
                               ServingOptions(host=host, port=free_port(), auth_token_sha256=digest))
    return write_serve_config(config, tmp_path / "serve_config.yaml")


@pytest.mark.parametrize(("host", "digest", "no_auth", "refused"), [
    ("0.0.0.0", None, False, True),
    ("0.0.0.0", None, True, False),
    ("0.0.0.0", DIGEST, False, False),
    ("127.0.0.1", None, False, False),
])
def test_tuner_serve_refuses_a_public_config_without_a_token(tmp_path: Path, host: str, digest: str | None,
                                                              no_auth: bool, refused: bool) -> None:
    path = _config_file(tmp_path, host, digest)
    config = load_serve_config(path)
    if refused:
        with pytest.raises(TunerError, match=r"http_options.host in .*--auth-token-file.*--no-auth"):
            check_config_exposure(config, path, no_auth)
    else:
        check_config_exposure(config, path, no_auth)
    config["applications"][0]["deployments"] = []  # our app without its user_config: no token
    if host != "127.0.0.1" and not no_auth:
        with pytest.raises(TunerError, match="http_options.host"):
            check_config_exposure(config, path, no_auth)


def test_tuner_serve_cli_stops_before_starting_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import serving.run

    def no_server(*_args: object, **_kw: object) -> None:
        raise AssertionError("serve run was started")

    monkeypatch.setattr(serving.run.subprocess, "Popen", no_server)
    assert main(["serve", str(_config_file(tmp_path, "0.0.0.0", None))]) == 2
    err = capsys.readouterr().err
    assert "Got '0.0.0.0' for http_options.host" in err and "--no-auth" in err


# --- The replica's check and tuner's client, without Ray --------------------------------------

@pytest.mark.parametrize(("header", "wrong"), [
    (None, "no Authorization header"),
    ("", "no Authorization header"),
    (f"Basic {TOKEN}", "not of the form"),
    ("Bearer", "not of the form"),
    (TOKEN, "not of the form"),
    ("Bearer not-the-token-0123456789", "does not match"),
    (f"Bearer {TOKEN}x", "does not match"),
])
def test_a_missing_or_wrong_token_says_what_was_wrong_and_never_echoes_it(header: str | None, wrong: str) -> None:
    reason = unauthorized_reason(header, DIGEST)
    assert reason is not None and wrong in reason
    for secret in (TOKEN, "not-the-token-0123456789"):
        assert secret not in reason


@pytest.mark.parametrize("header", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"  Bearer   {TOKEN} "])
def test_the_right_token_authenticates(header: str) -> None:
    assert unauthorized_reason(header, DIGEST) is None
    assert unauthorized_reason(header, DIGEST.upper()) is None


def _call(replica: object, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, dict, dict]:
    from starlette.requests import Request

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": method, "path": path, "query_string": b"",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    response = asyncio.run(replica(Request(scope, receive)))  # type: ignore[operator]
    return response.status_code, json.loads(response.body), dict(response.headers)


def test_a_replica_answers_401_before_any_route_and_leaves_health_open(tmp_path: Path) -> None:
    from serving.replica import ModelServer

    matmul_model(tmp_path / "m.onnx", ["N", 4])
    replica = ModelServer(ServeArgs(model_name="m"), _settings(tmp_path / "m.onnx", auth_token_sha256=DIGEST))
    for path in ("/v2", "/v2/models/m", "/v2/models/m/ready", "/v2/models/other", "/nowhere"):
        status, body, headers = _call(replica, "GET", path, {})
        assert (status, headers["www-authenticate"].split()[0]) == (401, "Bearer"), path
        assert "no Authorization header" in body["error"]
    for path in ("/v2/health/live", "/v2/health/ready"):
        assert _call(replica, "GET", path, {})[0] == 200
    assert _call(replica, "GET", "/v2/models/m", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert _call(replica, "GET", "/v2/models/other", {"Authorization": f"Bearer {TOKEN}"})[0] == 404
    replica.reconfigure(_settings(tmp_path / "m.onnx").model_dump())  # the token removed in place
    assert _call(replica, "GET", "/v2/models/m", {})[0] == 200


def test_tuners_client_sends_the_token_with_every_request() -> None:
    spec = request_spec("http://127.0.0.1:1", "m", INPUTS, "offline", 2, 1, None, True, 0, 5.0, 4,
                        auth_token=BearerToken(TOKEN))
    assert {headers["Authorization"] for _, headers in spec.payloads} == {f"Bearer {TOKEN}"}
    assert TOKEN not in repr(spec)
    plain = request_spec("http://127.0.0.1:1", "m", INPUTS, "offline", 2, 1, None, True, 0, 5.0, 4)
    assert all("Authorization" not in headers for _, headers in plain.payloads)


def test_deploy_refuses_to_verify_a_token_config_without_its_token(tmp_path: Path) -> None:
    from tuner.deploy.promote import Promotion
    from tuner.deploy.rollout import deploy_promotion

    config = load_serve_config(_config_file(tmp_path, "127.0.0.1", DIGEST))
    promotion = Promotion(None, TrialConfig("cpu", 2, "fp32", 1, 1), config, tmp_path / "serve_config.yaml")  # type: ignore[arg-type]
    for token, said in ((None, "no token"), (BearerToken("another-token-0123456789"), "another token")):
        with pytest.raises(TunerError, match=f"requires a bearer token.*{said}.*--auth-token-file"):
            deploy_promotion(None, promotion, address="unused:1", verify_s=5, tolerance=0.1,  # type: ignore[arg-type]
                             auth_token=token)


# --- A real server that requires a token ------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, np.ndarray]]:
    work = tmp_path_factory.mktemp("auth")
    w = matmul_model(work / "m.onnx", ["N", 4])
    config = make_serve_config(TrialConfig("cpu", 2, "fp32", 1, 1), ServedModel("m", str(work / "m.onnx")),
                               ServingOptions(port=free_port(), auth_token_sha256=DIGEST))
    srv = start_server(config, work)  # its readiness poll (/v2/health/ready) sends no token
    try:
        yield srv, w
    finally:
        _, leftovers = srv.stop()
        assert leftovers == []


def _infer_body(x: np.ndarray) -> dict:
    return {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}


@pytest.mark.integration
def test_a_real_server_requires_the_token_on_inference_and_metadata(server: tuple[Server, np.ndarray]) -> None:
    srv, w = server
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    infer = f"{srv.base}/v2/models/m/infer"
    for headers, wrong in (({}, "no Authorization header"), ({"Authorization": "Bearer wrong-token-0123456789"},
                                                             "does not match")):
        for response in (client.post(infer, json=_infer_body(x), headers=headers, timeout=10),
                         client.get(f"{srv.base}/v2/models/m", headers=headers, timeout=10)):
            assert response.status_code == 401, response.text
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert wrong in response.json()["error"] and "wrong-token" not in response.text
    good = {"Authorization": f"Bearer {TOKEN}"}
    response = client.post(infer, json=_infer_body(x), headers=good, timeout=10)
    assert response.status_code == 200, response.text
    (out,) = response.json()["outputs"]
    np.testing.assert_allclose(np.asarray(out["data"], np.float32).reshape(out["shape"]), x @ w, rtol=1e-6)
    assert client.get(f"{srv.base}/v2/models/m", headers=good, timeout=10).json()["name"] == "m"
    for path in ("/v2/health/live", "/v2/health/ready"):
        assert client.get(f"{srv.base}{path}", timeout=10).status_code == 200


@pytest.mark.integration
def test_the_served_bench_that_verification_uses_sends_the_token(server: tuple[Server, np.ndarray]) -> None:
    from tuner.evaluators.served import Endpoint, ServedBench

    srv, _ = server
    for token, failed in ((BearerToken(TOKEN), 0), (None, None)):
        bench = ServedBench(2, auth_token=token)
        try:
            bench.prepare("k", Endpoint(srv.base, "m"), INPUTS, 2)
            sample = bench.run_for(0.5, 4)
            sent, n_failed, kinds, errors = bench.failures()
        finally:
            bench.close()
        if failed == 0:
            assert n_failed == 0 and len(sample.latencies_s) >= 4, errors
        else:
            assert n_failed == sent > 0 and set(kinds) == {"http_status"} and "HTTP 401" in errors[0]
