"""Safe YAML loading that remembers where each value came from, for errors with file:line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tuner.errors import TunerError


def load_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Load a YAML file with the safe loader, returning the data and its node tree.

    Raises:
        TunerError: the file is missing or not valid YAML (with the line), or it uses a
            tag the safe loader refuses (such as ``!!python/object``).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TunerError(
            f"Search space file {str(path)!r} does not exist. Pass an existing YAML file, "
            "or a name of a shipped space such as 'default'."
        ) from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise TunerError(f"Cannot read {str(path)!r} as a UTF-8 YAML file: {exc}.") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.constructor.ConstructorError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise TunerError(
            f"{path}:{line}: {exc.problem}. Only plain YAML is accepted (safe loading): "
            "remove language-specific tags such as '!!python/...'."
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else "?"
        problem = getattr(exc, "problem", None) or str(exc)
        raise TunerError(
            f"{path}:{line}: not valid YAML ({problem}). Fix the syntax at that line "
            "(indentation, a missing ':' or an unclosed bracket are the usual causes)."
        ) from None
    return data, node


def line_of(node: yaml.Node | None, loc: Sequence[Any]) -> int | None:
    """1-based line of the value at `loc` (keys / indices) in a composed YAML tree.

    Falls back to the deepest enclosing node found, so an error about a missing key points at
    the mapping that should hold it.
    """
    if node is None:
        return None
    line = node.start_mark.line + 1
    for key in loc:
        nxt = None
        if isinstance(node, yaml.MappingNode):
            for k_node, v_node in node.value:
                if k_node.value == str(key):
                    nxt = v_node
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
            nxt = node.value[key]
        if nxt is None:
            break
        node = nxt
        line = node.start_mark.line + 1
    return line
