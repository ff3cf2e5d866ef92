"""The house rules of the layout, read from the code's own imports (AST, nothing imported):

- no import cycle between modules, nor between packages (a module belongs to its own folder);
- `ray` only in tuner/runner/ and serving/, `ray.serve` only in serving/;
- spec/, search/, front/ and evaluators/ reach no Ray through anything they import;
- `tuner.spec` loads in a fresh interpreter without Optuna or Ray.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tuner", "serving", "search_spaces")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


MODULES = _modules()


def _package_of(module: str) -> str:
    """The folder a module lives in (a package's __init__ belongs to the package itself). An
    entry point (``__main__``) stands on its own: nothing imports it."""
    path = MODULES[module]
    if path.name in ("__init__.py", "__main__.py"):
        return module
    return module.rpartition(".")[0]


def _imports(module: str) -> set[str]:
    """Every name this module imports, absolute (function-level imports included:
    they tie modules just as much; `if TYPE_CHECKING:` imports are not counted)."""
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = _package_of(module).split(".")
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES}
    return names


def _internal(name: str) -> str | None:
    """The project module an imported name refers to (the longest known prefix)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


IMPORTS = {m: _imports(m) for m in MODULES}
GRAPH = {m: {t for t in map(_internal, names) if t and t != m} for m, names in IMPORTS.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _ties(graph: dict[str, set[str]], cycle: list[str]) -> list[str]:
    return [f"{a} -> {b}" for a in cycle for b in sorted(graph[a]) if b in cycle]


def test_the_walk_sees_the_whole_house():
    assert len(MODULES) > 60
    assert "tuner.study.loop" in GRAPH["tuner.study.tune"]  # a plain import
    assert "serving.deploy" in GRAPH["tuner.deploy.rollout"]  # a function-level import


def test_no_module_imports_itself_back():
    cycles = _cycles(GRAPH)
    assert not cycles, "module import cycles:\n" + "\n".join("; ".join(_ties(GRAPH, c)) for c in cycles)


def test_no_package_imports_itself_back():
    packages: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        mine = _package_of(module)
        packages.setdefault(mine, set()).update(_package_of(t) for t in targets if _package_of(t) != mine)
    cycles = _cycles(packages)
    detail = []
    for c in cycles:
        edges: dict[tuple[str, str], str] = {}
        for m, ts in GRAPH.items():
            for t in ts:
                a, b = _package_of(m), _package_of(t)
                if a in c and b in c and a != b:
                    edges.setdefault((a, b), f"{m} -> {t}")
        detail.append("; ".join(f"{a} -> {b} ({why})" for (a, b), why in sorted(edges.items())))
    assert not cycles, "package import cycles:\n" + "\n".join(detail)


def _allowed(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_ray_is_imported_only_by_the_runner_and_serving():
    offenders = [m for m, names in IMPORTS.items()
                 if any(n == "ray" or n.startswith("ray.") for n in names)
                 and not _allowed(m, ("tuner.runner", "serving"))]
    assert not offenders, f"modules importing ray outside tuner/runner/ and serving/: {offenders}"


def test_ray_serve_is_imported_only_by_serving():
    offenders = [m for m, names in IMPORTS.items()
                 if any(n == "ray.serve" or n.startswith("ray.serve.") or n == "ray.serve" for n in names)
                 and not _allowed(m, ("serving",))]
    offenders += [m for m, names in IMPORTS.items()
                  if "ray" in names and not _allowed(m, ("serving", "tuner.runner"))]
    assert not offenders, f"modules importing ray.serve outside serving/: {offenders}"


@pytest.mark.parametrize("package", ["tuner.spec", "tuner.front", "tuner.search", "tuner.evaluators"])
def test_pure_packages_reach_no_ray(package):
    """Not directly, nor through any project module they import."""
    seen: set[str] = set()
    todo = [m for m in MODULES if _allowed(m, (package,))]
    assert todo
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(GRAPH[m])
    reach = sorted(m for m in seen if any(n == "ray" or n.startswith("ray.") for n in IMPORTS[m]))
    assert not reach, f"{package} reaches Ray through {reach}"


def test_spec_loads_without_optuna_or_ray():
    code = ("import sys, pkgutil, importlib, tuner.spec\n"
            "for i in pkgutil.walk_packages(tuner.spec.__path__, 'tuner.spec.'): importlib.import_module(i.name)\n"
            "space = importlib.import_module('tuner.spec.load').load_space('default')\n"
            "print(sorted(m for m in ('optuna', 'ray') if m in sys.modules), len(space.enabled_platforms()))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "3"], done.stdout


#: What each part of the house may import (the package docstrings say the same in words). A part
#: is `tuner` (the vocabulary at its top), a second-level package of tuner, or `serving`; its
#: subpackages belong to it. Every part may import itself and the vocabulary.
MAY_IMPORT: dict[str, set[str]] = {
    "tuner": {"tuner.catalog"},
    "tuner.catalog": set(),
    "tuner.spec": set(),
    "tuner.front": set(),
    "tuner.models": set(),
    "tuner.costmodels": {"tuner.models", "tuner.catalog"},
    "tuner.evaluators": {"tuner.spec", "tuner.models", "tuner.costmodels", "serving"},  # serving.client: no Ray
    "tuner.search": {"tuner.spec", "tuner.front"},
    "tuner.runner": {"tuner.spec", "tuner.models", "tuner.evaluators", "serving"},
    "tuner.study": {"tuner.spec", "tuner.search", "tuner.front", "tuner.evaluators", "tuner.costmodels",
                    "tuner.models", "tuner.runner"},
    "tuner.report": {"tuner.study", "tuner.front"},
    "tuner.testing": {"tuner.spec", "tuner.models", "tuner.evaluators"},
    "tuner.deploy": {"tuner.study", "tuner.front", "tuner.search", "tuner.spec", "tuner.models", "tuner.evaluators",
                     "serving"},
    "tuner.cli": {"*"},
    "serving": {"tuner.models"},
    "search_spaces": set(),
}
#: Third-party packages some parts must never import.
NEVER: dict[str, set[str]] = {
    "tuner": {"optuna", "ray"},
    "tuner.spec": {"optuna", "ray"},
    "tuner.front": {"optuna", "ray"},
    "tuner.models": {"optuna", "ray"},
    "tuner.costmodels": {"optuna", "ray"},
    "tuner.evaluators": {"optuna", "ray", "pydantic"},
    "tuner.search": {"ray"},
    "tuner.study": {"ray"},
    "tuner.report": {"ray"},
    "tuner.deploy": {"ray"},
}


def _part(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "tuner" or len(parts) == 1:
        return parts[0]
    return "tuner" if MODULES[".".join(parts[:2])].name != "__init__.py" else ".".join(parts[:2])


def test_every_part_imports_only_what_its_docstring_allows():
    wrong = []
    for module, targets in GRAPH.items():
        mine = _part(module)
        allowed = MAY_IMPORT[mine] | {mine, "tuner"}
        if "*" in allowed or module.endswith("__main__"):
            continue
        wrong += [f"{module} -> {t}" for t in sorted(targets) if _part(t) not in allowed]
    assert not wrong, "imports across the layout's rules:\n" + "\n".join(wrong)


def test_parts_never_import_the_libraries_they_must_not():
    wrong = []
    for module, names in IMPORTS.items():
        banned = NEVER.get(_part(module), set())
        wrong += [f"{module} imports {n}" for n in sorted(names) if n.split(".")[0] in banned]
    assert not wrong, "\n".join(wrong)
