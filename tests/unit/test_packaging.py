"""What a production code server installs: every module the code imports is declared, the
embedded PostgreSQL is not needed, and the lock file pins what pyproject.toml asks for."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
FIRST_PARTY = {"resources", "orchestration", "benchmarks", "tools", "support", "conftest"}
# Import names that differ from their distribution's name.
DISTRIBUTION_OF = {"yoyo": "yoyo-migrations", "psycopg2": "psycopg2-binary"}


def declared(*extras: str) -> set[str]:
    requirements = PROJECT["dependencies"] + [
        line for extra in extras for line in PROJECT["optional-dependencies"][extra]
    ]
    return {canonicalize_name(Requirement(line).name) for line in requirements}


def third_party_imports(*folders: str) -> dict[str, str]:
    """Top-level third-party modules imported anywhere in these folders, with one file each."""
    found: dict[str, str] = {}
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                        found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_the_code_location_imports_only_its_declared_dependencies():
    runtime = declared()
    for module, where in third_party_imports("resources", "orchestration").items():
        distribution = canonicalize_name(DISTRIBUTION_OF.get(module, module))
        assert distribution in runtime, f"{where} imports {module}, not in dependencies"
    assert "pgserver" not in runtime, "the embedded PostgreSQL is an extra, not a dependency"


def test_tooling_imports_only_declared_packages():
    everything = declared("dev", "embedded")
    for module, where in third_party_imports("tools", "benchmarks", "tests").items():
        distribution = canonicalize_name(DISTRIBUTION_OF.get(module, module))
        assert distribution in everything, f"{where} imports {module}, not declared"


def test_the_lock_file_pins_every_declared_package_within_its_range():
    pinned = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith(("#", " ")):
            name, version = line.split("==")
            pinned[canonicalize_name(name)] = version.strip()
    for line in PROJECT["dependencies"] + [
        requirement
        for extra in ("dev", "embedded")
        for requirement in PROJECT["optional-dependencies"][extra]
    ]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{name} is not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(pinned[name]), f"{name}=={pinned[name]}: make lock"
