"""Read a search space file: a shipped name or a path -> a validated `SearchSpace`.

Errors name the file, the line, the field and the fix (``tuner.spec.yaml_lines`` keeps the line
of every value).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from tuner.errors import TunerError
from tuner.spec.space import SearchSpace
from tuner.spec.yaml_lines import line_of, load_yaml

SHIPPED_DIR = resources.files("search_spaces")
_UNKNOWN_KEY = ("extra_forbidden", "unexpected_keyword_argument")
_TAGS = ("categorical", "int")  # pydantic's names of the discriminated union's branches


def resolve_space_path(name_or_path: str) -> Path:
    """A path as given, or the shipped space of that name (``default`` -> default.yaml)."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return candidate
    shipped = SHIPPED_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return Path(str(shipped))
    names = sorted(p.name[:-5] for p in SHIPPED_DIR.iterdir() if p.name.endswith(".yaml"))
    raise TunerError(
        f"Got {name_or_path!r} for --space. It is neither a YAML file nor a shipped space. "
        f"Pass a path to a .yaml file, or one of: {', '.join(names)}."
    )


def _messages(exc: ValidationError, path: Path, node: yaml.Node | None) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = [x for x in err["loc"] if not (isinstance(x, str) and x in _TAGS)]
        where = ".".join(str(x) for x in loc) or "(top level)"
        line = line_of(node, loc)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] in _UNKNOWN_KEY:
            msg = "unknown key; remove it or fix its spelling (see docs/search-space.md)"
        elif err["type"] == "missing":
            msg = "required key is missing; add it (search_spaces/default.yaml shows every key)"
        shown = err["type"] != "missing" and "input" in err and not isinstance(err["input"], dict)
        got = f" (got {err['input']!r})" if shown else ""
        lines.append(f"{path}:{line}: {where}: {msg}{got}")
    return lines


def load_space(name_or_path: str = "default") -> SearchSpace:
    """Load and validate a search space; errors name the file, line, field and fix."""
    path = resolve_space_path(name_or_path)
    data, node = load_yaml(path)
    if not isinstance(data, dict):
        raise TunerError(
            f"{path}: the search space must be a YAML mapping with a 'platforms' key, "
            f"got {type(data).__name__}. See search_spaces/default.yaml for the format."
        )
    try:
        space = SearchSpace.model_validate(data)
    except ValidationError as exc:
        raise TunerError("Invalid search space:\n  " + "\n  ".join(_messages(exc, path, node))) from None
    if not space.enabled_platforms():
        raise TunerError(
            f"{path}: 'platforms' enables no platform, so there is nothing to search. "
            "Add at least one of cpu, gpu, fpga under 'platforms'."
        )
    return space
