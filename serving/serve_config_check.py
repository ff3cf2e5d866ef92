"""Load a Ray Serve config file and check it as Ray would, plus what Ray cannot know; and Ray's
schema errors as messages (`validation_message`, `serve_schema_errors`).

The file is a standard Ray Serve multi-application config, so ``serve run FILE`` and
``serve deploy FILE`` work on it without tuner. It is validated with Ray's own
`ServeDeploySchema`, plus what Ray cannot know: our application's ``args``, the deployment's
``user_config`` (`serving.args.ServeSettings`: what a running replica changes in place) and that
the model file exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from ray.serve.schema import ServeDeploySchema

from serving.args import IMPORT_PATH, ServeArgs, ServeSettings
from tuner.errors import TunerError, field_error


def validation_message(exc: ValidationError, where: str) -> str:
    """One line per pydantic error: field, value given, rule."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"]) or "(top level)"
        given = "nothing" if err["type"] == "missing" else repr(err.get("input"))
        if loc.endswith("auth_token_sha256"):  # maybe a token pasted by mistake: never echoed
            given = "a value (not shown)"
        lines.append(f"  {where}.{loc}: got {given}: {err['msg']}")
    return "\n".join(lines)


def serve_schema_errors(config: object) -> list[tuple[str, str, str]]:
    """What Ray's own `ServeDeploySchema` refuses in `config`: one (field path such as
    ``applications[0].deployments[0]``, the value given or "nothing", Ray's rule) per error; []
    when Ray accepts it (for callers outside serving/, which may not import Ray)."""
    try:
        ServeDeploySchema.model_validate(config)
    except ValidationError as exc:
        return [("".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip("."),
                 "nothing" if err["type"] == "missing" else repr(err.get("input")), err["msg"])
                for err in exc.errors()]
    return []


def load_serve_config(path: Path) -> dict[str, Any]:
    """Read a Serve config and check it as Ray would, plus our args and the model file.

    Returns:
        The config as a dict (exactly what the file says).

    Raises:
        TunerError: the file is missing or not YAML, Ray's `ServeDeploySchema` rejects it,
            our application's ``args`` are invalid, or the model file is gone.
    """
    path = Path(path)
    if not path.is_file():
        raise field_error("the Serve config path", str(path), "The file does not exist.",
                          "Generate it with tuner (it writes serve_config.yaml) or pass its path.")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TunerError(
            f"{path} is not valid YAML: {exc}. Fix the syntax or regenerate it.") from None
    if not isinstance(config, dict):
        raise field_error(f"the contents of {path}", config, "A Serve config is a YAML mapping "
                          "with an 'applications' list.", "Regenerate the file with tuner.")
    try:
        ServeDeploySchema.model_validate(config)
    except ValidationError as exc:
        raise TunerError(f"{path} is not a valid Ray Serve config:\n"
                         f"{validation_message(exc, 'config')}\nFix these keys or regenerate "
                         "the file.") from None
    for i, app in enumerate(config["applications"]):
        if app.get("import_path") != IMPORT_PATH:
            continue
        try:
            ServeArgs.model_validate(app.get("args") or {})
        except ValidationError as exc:
            raise TunerError(f"{path}: the args of application {app.get('name')!r} are invalid:\n"
                             f"{validation_message(exc, f'applications[{i}].args')}\n"
                             "Fix these keys or regenerate the file.") from None
        for j, deployment in enumerate(app.get("deployments") or []):
            where = f"applications[{i}].deployments[{j}].user_config"
            try:
                settings = ServeSettings.model_validate(deployment.get("user_config") or {})
            except ValidationError as exc:
                raise TunerError(f"{path}: the user_config of deployment {deployment.get('name')!r} is invalid:\n"
                                 f"{validation_message(exc, where)}\n"
                                 "Fix these keys or regenerate the file.") from None
            if not Path(settings.model_path).is_file():
                raise field_error(
                    f"{where}.model_path in {path}", settings.model_path,
                    "The model file does not exist.",
                    "Re-run the tuner to export the model again, or edit model_path to point at it.",
                )
            if settings.shadow_fraction > 0 and not Path(str(settings.shadow_model_path)).is_file():
                raise field_error(
                    f"{where}.shadow_model_path in {path}", settings.shadow_model_path,
                    "The fp32 model file the shadow compares with does not exist.",
                    "Re-run the tuner to export the model again, or set shadow_fraction to 0.",
                )
    return config
