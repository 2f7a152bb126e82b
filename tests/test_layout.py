"""The layout as the design card names it: stage subpackages whose imports point one way, counting every import."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "evol"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """Every evol module ``path`` imports, at any depth: deferred (inside functions) and ``TYPE_CHECKING`` ones too."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names}  # ``from evol.rules import checks``
    # ``import a.b.c`` loads a and a.b too; a package's __init__ is only counted when named itself
    return {m for m in found if m in modules and m != name}


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {name: imports(path, modules) for name, path in paths.items()}


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in sorted(edges[n]):
            if state.get(m) == 1:
                return [*path[path.index(m) :], m]
            if m not in state and (found := visit(m)):
                return found
        state[n] = 2
        path.pop()
        return None

    for n in sorted(edges):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle_through_a_deferred_import():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None
    deferred = "def f():\n    from evol.b import x\n"
    tree_imports = {n.module for n in ast.walk(ast.parse(deferred)) if isinstance(n, ast.ImportFrom)}
    assert tree_imports == {"evol.b"}


def test_no_import_cycle_counting_deferred_and_type_checking_imports():
    edges = graph()
    assert len(edges) > 50  # the walk saw the package
    assert cycle(edges) is None


def stage(module: str) -> str:
    """The stage a module belongs to: its subpackage of evol (``evol.llm``), or itself at the top (``evol.config``)."""
    return ".".join(module.split(".")[:2])


def test_the_stages_depend_on_each_other_one_way():
    """Not only modules: no stage (a subpackage, or a module at the top) reaches back into one that uses it."""
    edges: dict[str, set[str]] = {}
    for name, deps in graph().items():
        edges.setdefault(stage(name), set()).update(stage(d) for d in deps if stage(d) != stage(name))
    for deps in list(edges.values()):
        for d in deps:
            edges.setdefault(d, set())
    assert cycle(edges) is None


def test_the_core_never_imports_prefect():
    """Prefect is a leaf: only the Prefect engine and the command line that starts it import it."""
    leaves = ("evol.engines.prefect", "evol.cli")
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        if name.startswith(leaves):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            offenders += [
                (name, t) for t in targets if t == "prefect" or t.startswith(("prefect.", "evol.engines.prefect"))
            ]
    assert offenders == []


def test_at_most_a_dozen_modules_at_the_top_of_the_package():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 12, top


def test_the_top_level_is_the_design_cards():
    for name in ("pyproject.toml", "README.md", "evol", "flows", "prompts", "datasets", "tests"):
        assert (ROOT / name).exists(), name


def test_prefect_yaml_deploys_from_flows_and_each_entrypoint_names_the_packaged_flow():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    entrypoints = {d["entrypoint"] for d in spec["deployments"]}
    assert entrypoints
    for entry in entrypoints:
        file, _, flow = entry.partition(":")
        assert file.startswith("flows/"), entry
        source = (ROOT / file).read_text(encoding="utf-8")
        # a thin file: the flow comes from the package, so Dask workers can import its tasks
        assert f"from evol.engines.prefect.evol_flow import {flow}" in source
        assert not any(isinstance(n, ast.FunctionDef) for n in ast.walk(ast.parse(source)))


def test_the_wheel_carries_the_top_level_prompts_where_the_package_looks_for_them():
    from evol.prompts import PACKAGED

    build = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["hatch"]["build"]
    assert build["targets"]["wheel"]["force-include"] == {"prompts": f"evol/{PACKAGED}"}
